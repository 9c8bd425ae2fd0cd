//! Freezing tables before a statement drops or rewrites their data, and
//! removing frozen backups (the I/O half of [`crate::backup`]).

use serde::Deserialize;

use super::queries::{freeze_sql, mergetree_tables_sql, unfreeze_sql};
use super::{ChError, Connection, Session};
use crate::backup::{BackupDetails, host_url};
use crate::sql::destructive::{AtRisk, at_risk};
use crate::sql::ident::split_qualified;

/// A freeze or unfreeze that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot tell which tables the statement affects: {0}")]
    Unreadable(String),
    #[error("cannot reach host {host} for the backup: {source}")]
    Connect { host: String, source: ChError },
    #[error("backup {name} of {table} failed on host {host}: {source}")]
    Freeze {
        name: String,
        table: String,
        host: String,
        source: ChError,
    },
}

/// One host of the target: its `host:port` id and a connection to it.
pub struct Host {
    pub id: String,
    pub conn: Connection,
}

/// Every host of the target (each replica of each shard), or the entry
/// node alone without a cluster.
pub async fn hosts(session: &Session) -> Result<Vec<Host>, BackupError> {
    let cluster = session
        .cluster_hosts()
        .await
        .map_err(|source| BackupError::Connect {
            host: session.cfg.endpoint.url.clone(),
            source,
        })?;
    if cluster.is_empty() {
        return Ok(vec![Host {
            id: session.cfg.endpoint.url.clone(),
            conn: session.conn.clone(),
        }]);
    }
    let mut out = Vec::new();
    for h in cluster {
        let url = host_url(&session.cfg.endpoint.url, &h.host_name).ok_or_else(|| {
            BackupError::Connect {
                host: h.id(),
                source: ChError::Config(format!(
                    "cannot derive the URL of {} from {}",
                    h.host_name, session.cfg.endpoint.url
                )),
            }
        })?;
        let conn = Connection::new(session.cfg.endpoint.with_url(url)).map_err(|source| {
            BackupError::Connect {
                host: h.id(),
                source,
            }
        })?;
        out.push(Host { id: h.id(), conn });
    }
    Ok(out)
}

/// The `*MergeTree` tables (`db`, `table`) whose data `sql` puts at risk
/// and that exist now; names without a database are the target's.
async fn tables_at_risk(
    session: &Session,
    sql: &str,
) -> Result<Vec<(String, String)>, BackupError> {
    let risks = at_risk(sql).map_err(|e| BackupError::Unreadable(e.to_string()))?;
    #[derive(Deserialize)]
    struct Row {
        name: String,
    }
    let default_db = session.cfg.ledger.database.as_str().to_string();
    let mut out = Vec::new();
    for r in risks {
        let (db, only) = match r {
            AtRisk::Table(name) => {
                let (db, t) = split_qualified(&name);
                (db.unwrap_or_else(|| default_db.clone()), Some(t))
            }
            AtRisk::Database(name) => (split_qualified(&name).1, None),
        };
        let rows: Vec<Row> = session
            .conn
            .rows(&mergetree_tables_sql(&db, only.as_deref()))
            .await
            .map_err(|source| BackupError::Connect {
                host: session.cfg.endpoint.url.clone(),
                source,
            })?;
        for row in rows {
            if !out.contains(&(db.clone(), row.name.clone())) {
                out.push((db.clone(), row.name));
            }
        }
    }
    Ok(out)
}

/// Freezes, on every host, each table whose data `sql` drops or rewrites,
/// under `name`. Returns what was frozen (nothing when no table is at risk).
pub async fn freeze_before(
    session: &Session,
    sql: &str,
    name: &str,
    statement: usize,
) -> Result<Vec<BackupDetails>, BackupError> {
    let tables = tables_at_risk(session, sql).await?;
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let hosts = hosts(session).await?;
    let mut out = Vec::new();
    for (db, table) in tables {
        let sql = freeze_sql(&db, &table, name);
        let mut frozen = Vec::new();
        for h in &hosts {
            h.conn
                .execute(&sql)
                .await
                .map_err(|source| BackupError::Freeze {
                    name: name.to_string(),
                    table: format!("{db}.{table}"),
                    host: h.id.clone(),
                    source,
                })?;
            frozen.push(h.id.clone());
        }
        tracing::info!(backup = name, table = %format!("{db}.{table}"), hosts = frozen.len(), "frozen before a destructive statement");
        out.push(BackupDetails {
            name: name.to_string(),
            database: db,
            table,
            hosts: frozen,
            statement,
        });
    }
    Ok(out)
}

/// Removes a backup on each host that has it (`ALTER TABLE … UNFREEZE`,
/// ClickHouse 22 and later). Hosts where it failed are returned with why.
pub async fn unfreeze(hosts: &[Host], b: &BackupDetails) -> Vec<(String, ChError)> {
    let sql = unfreeze_sql(&b.database, &b.table, &b.name);
    let mut failed = Vec::new();
    for h in hosts.iter().filter(|h| b.hosts.contains(&h.id)) {
        if let Err(e) = h.conn.execute(&sql).await {
            failed.push((h.id.clone(), e));
        }
    }
    failed
}
