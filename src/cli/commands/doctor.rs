//! `doctor`: connection, server version, privileges, cluster topology,
//! ZooKeeper, ledger and lock, each checked and reported.

use serde::{Deserialize, Serialize};
use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine;
use chmigrate::runtime::ChError;
use chmigrate::runtime::lock;
use chmigrate::runtime::store::{self, now_us};

use crate::cli::error::CliError;
use crate::cli::output::{self, Format};

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Check {
    /// A check named `name`: passed with its detail, or failed with why.
    fn of(name: &str, r: Result<String, String>) -> Check {
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Check {
            name: name.into(),
            ok,
            detail,
        }
    }
}

pub async fn doctor(settings: &Settings, format: Format) -> Result<(), CliError> {
    let mut checks = Vec::new();
    let mut add = |name: &str, r: Result<String, String>| checks.push(Check::of(name, r));
    let session = match engine::connect(settings).await {
        Ok(s) => s,
        Err(e) => {
            add("connection", Err(CliError::from(e).to_string()));
            output::print_checks(format, &checks_json(&checks));
            return Err(CliError::Failed(anyhow::anyhow!("cannot connect")));
        }
    };
    add(
        "connection",
        Ok(format!("{} as {}", settings.url, settings.user)),
    );
    add("server version", Ok(session.server.version.clone()));
    #[derive(Deserialize)]
    struct Setting {
        value: String,
    }
    let ro: Result<Vec<Setting>, ChError> = session
        .conn
        .rows(chmigrate::runtime::queries::readonly_sql())
        .await;
    add(
        "privileges",
        match ro {
            Ok(r) if r.first().is_none_or(|s| s.value == "0") => {
                Ok("user may run DDL (readonly = 0)".into())
            }
            Ok(r) => Err(format!("user is read-only (readonly = {})", r[0].value)),
            Err(e) => Err(e.to_string()),
        },
    );
    match &settings.cluster {
        Some(c) => {
            match session.cluster_hosts().await {
                Ok(h) if !h.is_empty() => {
                    let shards = h.iter().map(|x| x.shard_num).max().unwrap_or(0);
                    add(
                        "cluster topology",
                        Ok(format!(
                            "{} has {shards} shard(s), {} host(s): {}",
                            c.as_str(),
                            h.len(),
                            h.iter().map(|x| x.id()).collect::<Vec<_>>().join(", ")
                        )),
                    );
                }
                Ok(_) => add(
                    "cluster topology",
                    Err(format!("cluster {} is not in system.clusters", c.as_str())),
                ),
                Err(e) => add("cluster topology", Err(e.to_string())),
            }
            let zk: Result<Vec<serde_json::Value>, ChError> = session
                .conn
                .rows("SELECT name FROM system.zookeeper WHERE path = '/'")
                .await;
            add(
                "zookeeper",
                zk.map(|n| format!("reachable ({} top-level node(s))", n.len()))
                    .map_err(|e| e.to_string()),
            );
        }
        None => add(
            "cluster topology",
            Ok("single node (no cluster configured)".into()),
        ),
    }
    let ledger = session.cfg.ledger.clone();
    add(
        "ledger",
        match store::exists(&session.conn, &ledger).await {
            Ok(true) => store::check_shape(&session.conn, &ledger)
                .await
                .map(|_| format!("{} exists and has the expected shape", ledger.qualified()))
                .map_err(|e| e.to_string()),
            Ok(false) => Ok(format!(
                "{} does not exist yet (created on first migrate)",
                ledger.qualified()
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    let history = store::read_if_exists(&session.conn, &ledger)
        .await
        .unwrap_or_default();
    add(
        "lock",
        match lock::inspect(&session.conn, &ledger, &history).await {
            Ok(None) => Ok("free".into()),
            Ok(Some(i)) => Ok(i.describe(now_us())),
            Err(e) => Err(e.to_string()),
        },
    );
    let ok = checks.iter().all(|c| c.ok);
    output::print_checks(format, &checks_json(&checks));
    if ok {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!("some checks failed")))
    }
}

fn checks_json(checks: &[Check]) -> serde_json::Value {
    json!({ "ok": checks.iter().all(|c| c.ok), "checks": checks })
}

/// `test-connection` (the seed framework's command): the server answers,
/// its version, the credentials are accepted, the target database exists
/// and, with a cluster, every host answers. Reads only; creates nothing.
pub async fn test_connection(settings: &Settings, format: Format) -> Result<(), CliError> {
    let mut checks = Vec::new();
    let mut add = |name: &str, r: Result<String, String>| checks.push(Check::of(name, r));
    let session = match engine::connect(settings).await {
        Ok(s) => s,
        Err(e) => {
            add("connection", Err(CliError::from(e).to_string()));
            output::print_checks(format, &checks_json(&checks));
            return Err(CliError::Failed(anyhow::anyhow!(
                "cannot connect to {}",
                settings.url
            )));
        }
    };
    add("server", Ok(format!("{} answers", settings.url)));
    add(
        "server version",
        Ok(format!("ClickHouse {}", session.server.version)),
    );
    add(
        "credentials",
        Ok(format!("user {} accepted", settings.user)),
    );
    #[derive(Deserialize)]
    struct Count {
        n: serde_json::Value,
    }
    let db = settings.database.as_str();
    let exists: Result<Vec<Count>, ChError> = session
        .conn
        .rows(&chmigrate::runtime::queries::database_exists_sql(db))
        .await;
    add(
        "database",
        match exists {
            Ok(r) if r.first().is_some_and(|c| c.n != 0 && c.n != "0") => {
                Ok(format!("{db} exists"))
            }
            Ok(_) => Err(format!(
                "{db} does not exist on the server (check the name; the first `migrate` creates it)"
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    if let Some(cluster) = &settings.cluster {
        let hosts = chmigrate::runtime::backup::hosts(&session).await;
        add(
            "cluster hosts",
            match hosts {
                Err(e) => Err(e.to_string()),
                Ok(hosts) => {
                    let mut silent = Vec::new();
                    for h in &hosts {
                        if let Err(e) = h
                            .conn
                            .text(chmigrate::runtime::queries::version_sql(), &[])
                            .await
                        {
                            silent.push(format!("{}: {e}", h.id));
                        }
                    }
                    if silent.is_empty() {
                        Ok(format!(
                            "{} host(s) of {} answer: {}",
                            hosts.len(),
                            cluster.as_str(),
                            hosts
                                .iter()
                                .map(|h| h.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    } else {
                        Err(format!(
                            "{} of {} host(s) of {} do not answer: {}",
                            silent.len(),
                            hosts.len(),
                            cluster.as_str(),
                            silent.join("; ")
                        ))
                    }
                }
            },
        );
    }
    let ok = checks.iter().all(|c| c.ok);
    output::print_checks(format, &checks_json(&checks));
    if ok {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!(
            "the connection check failed"
        )))
    }
}
