//! Freezing tables before a statement drops or rewrites their data, and
//! removing frozen backups (the I/O half of [`crate::ledger::backups`]).

use serde::Deserialize;

use super::queries::{freezable_tables_sql, freeze_sql, system_unfreeze_sql, unfreeze_sql};
use super::{ChError, Connection, Session};
use crate::ledger::backups::{BackupDetails, host_url};
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

/// The tables (`db`, `table`) whose data `sql` puts at risk, that exist
/// now and that a freeze can back up (`*MergeTree` tables, materialized
/// views with an inner `*MergeTree` table); names without a database are
/// the target's (the current database of the migration's statements).
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
            .rows(&freezable_tables_sql(&db, only.as_deref()))
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

/// What a freeze before a statement did: every backup taken (a table
/// frozen on only some hosts names just those), and the failure that
/// stopped it, if one did. What was taken is recorded either way, so that
/// `backups list` and `prune` know every `shadow/<name>/` there is.
#[derive(Debug, Default)]
pub struct Frozen {
    pub taken: Vec<BackupDetails>,
    pub failed: Option<BackupError>,
}

/// Freezes, on every host, each table whose data `sql` drops or rewrites,
/// under `name` (nothing when no table is at risk), stopping at the first
/// failure.
pub async fn freeze_before(session: &Session, sql: &str, name: &str, statement: usize) -> Frozen {
    let mut out = Frozen::default();
    let tables = match tables_at_risk(session, sql).await {
        Ok(t) if t.is_empty() => return out,
        Ok(t) => t,
        Err(e) => {
            out.failed = Some(e);
            return out;
        }
    };
    let hosts = match hosts(session).await {
        Ok(h) => h,
        Err(e) => {
            out.failed = Some(e);
            return out;
        }
    };
    for (db, table) in tables {
        let sql = freeze_sql(&db, &table, name);
        let mut frozen = Vec::new();
        for h in &hosts {
            if let Err(source) = h.conn.execute(&sql).await {
                out.failed = Some(BackupError::Freeze {
                    name: name.to_string(),
                    table: format!("{db}.{table}"),
                    host: h.id.clone(),
                    source,
                });
                break;
            }
            frozen.push(h.id.clone());
        }
        tracing::info!(backup = name, table = %format!("{db}.{table}"), hosts = frozen.len(), "frozen before a destructive statement");
        if !frozen.is_empty() {
            out.taken.push(BackupDetails {
                name: name.to_string(),
                database: db,
                table,
                hosts: frozen,
                statement,
            });
        }
        if out.failed.is_some() {
            break;
        }
    }
    out
}

/// Removes a backup on each host the ledger says has it (`ALTER TABLE …
/// UNFREEZE`, ClickHouse 22 and later; when the table itself is gone, as
/// after the `DROP` the backup was taken for, `SYSTEM UNFREEZE WITH NAME`,
/// which servers allow only with `enable_system_unfreeze`). Hosts where it
/// failed are returned with why, and so is every recorded host that is not
/// among `hosts` now: nothing is called removed that was not removed.
pub async fn unfreeze(hosts: &[Host], b: &BackupDetails) -> Vec<(String, String)> {
    let sql = unfreeze_sql(&b.database, &b.table, &b.name);
    let mut failed = Vec::new();
    for recorded in &b.hosts {
        let Some(h) = hosts.iter().find(|h| &h.id == recorded) else {
            let now: Vec<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
            failed.push((
                recorded.clone(),
                format!(
                    "not among the target's hosts now ({}); reach it through the URL it was taken through, or remove shadow/{}/ there by hand and use --forget",
                    now.join(", "),
                    b.name
                ),
            ));
            continue;
        };
        match h.conn.execute(&sql).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(super::error::codes::UNKNOWN_TABLE) => {
                if let Err(e2) = h.conn.execute(&system_unfreeze_sql(&b.name)).await {
                    failed.push((
                        h.id.clone(),
                        format!(
                            "{}.{} no longer exists and SYSTEM UNFREEZE failed ({e2}); remove shadow/{}/ on this host by hand, then use --forget",
                            b.database, b.table, b.name
                        ),
                    ));
                }
            }
            Err(e) => failed.push((h.id.clone(), e.to_string())),
        }
    }
    failed
}
