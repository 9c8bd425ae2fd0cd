//! From resolved settings to a connected [`Session`], and the ledger read
//! as events.

use std::time::Duration;

use crate::config::{PasswordSource, Settings};
use crate::ledger::fold::Event;
use crate::ledger::{LedgerEntry, LedgerTable};
use crate::model::secret::Secret;
use crate::runtime::{Endpoint, Session, TargetConfig};

use super::error::EngineError;

fn password(settings: &Settings) -> Result<Option<Secret>, EngineError> {
    Ok(match &settings.password {
        PasswordSource::None => None,
        PasswordSource::Inline(s) => Some(s.clone()),
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                EngineError::Invalid(format!(
                    "{}: cannot read password file: {e}",
                    path.display()
                ))
            })?;
            Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
        }
        PasswordSource::Env(name) => {
            Some(Secret::new(std::env::var(name).map_err(|_| {
                EngineError::Invalid(format!("password variable {name} is not set"))
            })?))
        }
    })
}

/// Where the settings' ledger lives.
pub fn ledger_table(settings: &Settings) -> LedgerTable {
    LedgerTable {
        database: settings.database.clone(),
        table: settings.history_table.clone(),
        cluster: settings.cluster.clone(),
    }
}

fn target_config(settings: &Settings) -> Result<TargetConfig, EngineError> {
    let mut endpoint = Endpoint::new(settings.url.clone());
    endpoint.user = settings.user.clone();
    endpoint.password = password(settings)?;
    endpoint.ca = settings.ca.clone();
    endpoint.tls_verify = settings.tls_verify;
    endpoint.request_timeout =
        Duration::from_secs(settings.ddl_timeout_s.max(settings.mutation_timeout_s) + 60);
    Ok(TargetConfig {
        endpoint,
        ledger: ledger_table(settings),
        ddl_timeout: Duration::from_secs(settings.ddl_timeout_s),
        mutation_timeout: Duration::from_secs(settings.mutation_timeout_s),
        backup: settings.backup,
        parallel: settings.parallel,
    })
}

/// Connects to the settings' target (this is where an unreachable server, a
/// TLS failure or a wrong password shows).
pub async fn connect(settings: &Settings) -> Result<Session, EngineError> {
    Ok(Session::connect(target_config(settings)?).await?)
}

/// Ledger rows as events; a row this release cannot read is bad input.
pub fn events(history: &[LedgerEntry]) -> Result<Vec<Event>, EngineError> {
    history
        .iter()
        .map(|e| {
            e.to_event()
                .map_err(|e| EngineError::Invalid(format!("ledger: {e}")))
        })
        .collect()
}
