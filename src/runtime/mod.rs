//! The ClickHouse runtime: the I/O half of the engine. It connects, keeps the
//! ledger, takes the lock, runs prepared statements (with `ON CLUSTER`
//! results checked host by host) and records every step before the next one
//! starts. The CLI and the operator both drive it through [`Session`].

pub mod backup;
pub mod client;
pub mod ddl;
pub mod error;
pub mod lock;
pub mod queries;
pub mod store;
pub mod transport;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::{Connection, Endpoint};
pub use error::ChError;

use crate::ledger::LedgerTable;

/// How long the first request of a session (the server's version) may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a session talks to its target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub endpoint: Endpoint,
    pub ledger: LedgerTable,
    /// `distributed_ddl_task_timeout` for `ON CLUSTER` statements.
    pub ddl_timeout: Duration,
    /// How long to wait for a mutation to finish.
    pub mutation_timeout: Duration,
    /// Backups taken before statements that drop or rewrite data.
    pub backup: crate::ledger::backups::BackupPolicy,
    /// Migrations run at once within the target ([`crate::plan::waves`]; 1:
    /// serial).
    pub parallel: usize,
}

/// What the server is.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub version: String,
    pub major: u32,
}

/// A cluster member as `system.clusters` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHost {
    pub shard_num: u32,
    pub replica_num: u32,
    pub host_name: String,
    pub port: u16,
}

impl ClusterHost {
    pub fn id(&self) -> String {
        ddl::host_id(&self.host_name, self.port)
    }
}

/// A connected target.
#[derive(Debug, Clone)]
pub struct Session {
    pub conn: Connection,
    /// For the migrations' own statements: `conn` with the target database
    /// as the current database, so unqualified names mean its tables (on
    /// every host, for `ON CLUSTER` DDL too).
    pub statements: Connection,
    pub cfg: TargetConfig,
    pub server: ServerInfo,
}

impl Session {
    /// Connects and asks the server's version (this is where an unreachable
    /// server, a TLS failure or a wrong password shows).
    pub async fn connect(cfg: TargetConfig) -> Result<Session, ChError> {
        let conn = Connection::new(cfg.endpoint.clone())?;
        #[derive(Deserialize)]
        struct V {
            version: String,
        }
        // A server that accepts connections but never answers fails here
        // fast, not after the long statement timeout: one unreachable
        // target must not hold a reconcile slot for minutes.
        let rows: Vec<V> = tokio::time::timeout(PROBE_TIMEOUT, conn.rows(queries::version_sql()))
            .await
            .map_err(|_| ChError::Timeout {
                url: cfg.endpoint.url.clone(),
                after: PROBE_TIMEOUT,
            })??;
        let version = rows
            .into_iter()
            .next()
            .map(|v| v.version)
            .unwrap_or_default();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        tracing::info!(url = %cfg.endpoint.url, %version, "connected");
        Ok(Session {
            statements: conn.in_database(cfg.ledger.database.as_str()),
            conn,
            server: ServerInfo { version, major },
            cfg,
        })
    }

    /// Settings sent with `ON CLUSTER` statements.
    pub fn ddl_settings(&self) -> Vec<(&'static str, String)> {
        vec![(
            "distributed_ddl_task_timeout",
            self.cfg.ddl_timeout.as_secs().max(1).to_string(),
        )]
    }

    /// The engine of the target database (empty when it does not exist yet).
    pub async fn database_engine(&self) -> Result<String, ChError> {
        #[derive(Deserialize)]
        struct E {
            engine: String,
        }
        let rows: Vec<E> = self
            .conn
            .rows(&queries::database_engine_sql(
                self.cfg.ledger.database.as_str(),
            ))
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|e| e.engine)
            .unwrap_or_default())
    }

    /// `(database, table)` → engine of every table of the target database.
    pub async fn table_engines(
        &self,
    ) -> Result<std::collections::BTreeMap<(String, String), String>, ChError> {
        #[derive(Deserialize)]
        struct T {
            database: String,
            name: String,
            engine: String,
        }
        let rows: Vec<T> = self
            .conn
            .rows(&queries::table_engines_sql(
                self.cfg.ledger.database.as_str(),
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|t| ((t.database, t.name), t.engine))
            .collect())
    }

    /// The configured cluster's hosts.
    pub async fn cluster_hosts(&self) -> Result<Vec<ClusterHost>, ChError> {
        let Some(cluster) = &self.cfg.ledger.cluster else {
            return Ok(Vec::new());
        };
        self.conn
            .rows(&queries::cluster_hosts_sql(cluster.as_str()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ident::Ident;

    #[tokio::test]
    async fn a_server_that_accepts_but_never_answers_fails_the_probe_fast() {
        // Accepts connections (the backlog does) and never reads or answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut endpoint = Endpoint::new(format!("http://{}", listener.local_addr().unwrap()));
        endpoint.request_timeout = Duration::from_secs(600);
        let cfg = TargetConfig {
            endpoint,
            ledger: LedgerTable {
                database: Ident::new("database name", "d").unwrap(),
                table: Ident::new("history table name", "schema_migrations").unwrap(),
                cluster: None,
            },
            ddl_timeout: Duration::from_secs(180),
            mutation_timeout: Duration::from_secs(600),
            backup: Default::default(),
            parallel: 1,
        };
        let started = std::time::Instant::now();
        let Err(err) = Session::connect(cfg).await else {
            panic!("no answer, no session");
        };
        assert!(
            matches!(err, ChError::Timeout { after, .. } if after == PROBE_TIMEOUT),
            "{err:?}"
        );
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_secs(5));
        drop(listener);
    }
}
