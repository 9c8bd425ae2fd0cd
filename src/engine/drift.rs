//! Replica schema drift, read and repaired: every host of the cluster read
//! through the entry node (`remote('host:port', system, …)` with the
//! addresses `system.clusters` lists, all hosts at once), compared by
//! `plan::drift`; `sync-hosts` repairs what `plan::sync` allows under the
//! lock, each statement recorded as a `host_synced` event.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::config::Settings;
use crate::ledger::fold::TargetState;
use crate::ledger::{HostResult, LedgerEntry, Record};
use crate::model::migration::Migration;
use crate::model::version::Version;
use crate::plan::drift::{
    DriftReport, ExpectedSchema, FoundObject, HostRead, HostSchema, compare, expected_objects,
};
use crate::plan::sync::{Repair, RepairKind, SyncContext, SyncPlan, replica_path, sync_plan};
use crate::runtime::error::ChError;
use crate::runtime::store::{self, Writer};
use crate::runtime::{ClusterHost, Session, ddl, queries};
use crate::sql::ident::Ident;

use super::context::RunContext;
use super::error::EngineError;
use super::lock::with_lock;
use super::session::events;

/// One drift check.
#[derive(Debug, Clone, Default)]
pub struct DriftCheck {
    pub expected: ExpectedSchema,
    pub report: DriftReport,
    /// The cluster's hosts (none on a single node: nothing to compare).
    pub hosts: Vec<ClusterHost>,
}

/// What the applied migrations leave behind, from the ledger as read.
pub fn expected(
    settings: &Settings,
    migrations: &[Migration],
    history: &[LedgerEntry],
) -> Result<ExpectedSchema, EngineError> {
    let state = TargetState::fold(&events(history)?);
    let vars = settings.prepare_settings().variables;
    let mut applied: Vec<&Migration> = migrations
        .iter()
        .filter(|m| state.is_applied(&m.version))
        .collect();
    applied.sort_by(|a, b| a.version.cmp(&b.version));
    let mut statements: Vec<(Version, String)> = Vec::new();
    for m in applied {
        for s in &m.up {
            // A statement whose variables cannot be filled names no object
            // this check could find; the migration ran with them filled.
            if let Ok(sql) = vars.substitute(&s.sql) {
                statements.push((m.version.clone(), sql));
            }
        }
    }
    let ledger = settings.history_table.as_str();
    let db = settings.database.as_str();
    let mut out = expected_objects(&statements, db, &[ledger]);
    // The lock table lives on the entry node only, while a run holds it.
    out.ignored
        .insert((db.to_string(), format!("{ledger}_lock")));
    Ok(out)
}

#[derive(Deserialize)]
struct DbRow {
    name: String,
}

#[derive(Deserialize)]
struct TableRow {
    database: String,
    name: String,
    engine: String,
    engine_full: String,
    create_query: String,
}

#[derive(Deserialize)]
struct ColumnRow {
    database: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Deserialize)]
struct LocalHost {
    host_name: String,
    port: u16,
}

fn system(table: &'static str) -> Result<Ident, EngineError> {
    Ident::new("system table", table).map_err(|e| EngineError::Invalid(e.to_string()))
}

/// Rows of a `remote()` read, bounded in time (a host that is down or
/// frozen fails within seconds).
async fn remote_rows<T: serde::de::DeserializeOwned>(
    session: &Session,
    sql: &str,
) -> Result<Vec<T>, ChError> {
    let text = session
        .conn
        .text(sql, &queries::remote_read_settings())
        .await?;
    crate::runtime::client::parse_rows(&text).map_err(|e| ChError::Decode {
        url: session.conn.url().to_string(),
        reason: e.to_string(),
    })
}

/// One host's schema in `databases`, read through the entry node.
async fn read_host(
    session: &Session,
    host: &ClusterHost,
    databases: &[String],
) -> Result<HostSchema, String> {
    let at = Some((host.host_name.as_str(), host.port));
    let from = |t| system(t).map(|t| queries::system_table(at, &t));
    let sql = |f: Result<String, EngineError>, q: fn(&str, &[String]) -> String| {
        f.map(|from| q(&from, databases)).map_err(|e| e.to_string())
    };
    let (dbs, tables, columns) = (
        sql(from("databases"), queries::drift_databases_sql)?,
        sql(from("tables"), queries::drift_tables_sql)?,
        sql(from("columns"), queries::drift_columns_sql)?,
    );
    let (dbs, tables, columns) = tokio::join!(
        remote_rows::<DbRow>(session, &dbs),
        remote_rows::<TableRow>(session, &tables),
        remote_rows::<ColumnRow>(session, &columns),
    );
    let why = |e: ChError| format!("{}: {e}", host.id());
    let mut schema = HostSchema {
        databases: dbs.map_err(why)?.into_iter().map(|d| d.name).collect(),
        ..Default::default()
    };
    for t in tables.map_err(why)? {
        schema.objects.insert(
            (t.database, t.name),
            FoundObject {
                engine: t.engine,
                engine_full: t.engine_full,
                create: t.create_query,
            },
        );
    }
    for c in columns.map_err(why)? {
        schema
            .columns
            .entry((c.database, c.table))
            .or_default()
            .push((c.name, c.ty));
    }
    Ok(schema)
}

/// Compares every host of the cluster with what the applied migrations
/// leave behind (reads only; a host that cannot be read is reported
/// unreachable, not failed).
pub async fn check(
    session: &Session,
    settings: &Settings,
    migrations: &[Migration],
    history: &[LedgerEntry],
) -> Result<DriftCheck, EngineError> {
    let expected = expected(settings, migrations, history)?;
    let Some(cluster) = &session.cfg.ledger.cluster else {
        return Ok(DriftCheck {
            expected,
            ..Default::default()
        });
    };
    let local_sql = queries::local_cluster_host_sql(cluster.as_str());
    let (hosts, local) = tokio::join!(
        session.cluster_hosts(),
        session.conn.rows::<LocalHost>(&local_sql),
    );
    let hosts = hosts?;
    let entry = local?
        .into_iter()
        .next()
        .map(|l| ddl::host_id(&l.host_name, l.port));
    let reads = futures::future::join_all(
        hosts
            .iter()
            .map(|h| read_host(session, h, &expected.databases)),
    )
    .await;
    let reads: Vec<HostRead> = hosts
        .iter()
        .zip(reads)
        .map(|(h, schema)| HostRead {
            host: h.id(),
            schema,
        })
        .collect();
    let report = compare(&expected, &reads, entry.as_deref());
    Ok(DriftCheck {
        expected,
        report,
        hosts,
    })
}

#[derive(Deserialize)]
struct Macro {
    #[serde(rename = "macro")]
    name: String,
    substitution: String,
}

#[derive(Deserialize)]
struct Child {
    name: String,
}

/// `(db.name, host)` of the missing replicated tables whose replica
/// ZooKeeper still holds (a host wiped and restarted): these are attached.
async fn known_replicas(
    session: &Session,
    found: &DriftCheck,
) -> Result<BTreeSet<(String, String)>, EngineError> {
    let mut out = BTreeSet::new();
    let mut macros: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for h in found.report.drifted() {
        for d in h
            .drift
            .iter()
            .filter(|d| d.kind == crate::plan::drift::DriftKind::MissingObject)
        {
            let Some(o) = found
                .expected
                .objects
                .iter()
                .find(|o| o.qualified() == d.object)
            else {
                continue;
            };
            let Some(r) = found.report.references.get(&o.key()) else {
                continue;
            };
            // A materialized view without TO keeps its data in `.inner.`.
            let inner = (o.database.clone(), format!(".inner.{}", o.name));
            let engine_full = if r.found.engine == "MaterializedView" {
                found
                    .report
                    .references
                    .get(&inner)
                    .map(|i| i.found.engine_full.clone())
                    .unwrap_or_default()
            } else {
                r.found.engine_full.clone()
            };
            if !engine_full.starts_with("Replicated") {
                continue;
            }
            let Some(host) = found.hosts.iter().find(|c| c.id() == h.host) else {
                continue;
            };
            if !macros.contains_key(&h.host) {
                let from = queries::system_table(
                    Some((host.host_name.as_str(), host.port)),
                    &system("macros")?,
                );
                let rows: Vec<Macro> = remote_rows(session, &queries::macros_sql(&from)).await?;
                macros.insert(
                    h.host.clone(),
                    rows.into_iter().map(|m| (m.name, m.substitution)).collect(),
                );
            }
            let Some((path, replica)) =
                replica_path(&engine_full, &macros[&h.host], &o.database, &o.name)
            else {
                continue;
            };
            let children: Vec<Child> = session
                .conn
                .rows(&queries::zookeeper_children_sql(&format!(
                    "{path}/replicas"
                )))
                .await
                .unwrap_or_default();
            if children.iter().any(|c| c.name == replica) {
                out.insert((d.object.clone(), h.host.clone()));
            }
        }
    }
    Ok(out)
}

/// What `sync-hosts` did.
#[derive(Debug, Clone, Default)]
pub struct Synced {
    pub before: DriftCheck,
    pub plan: SyncPlan,
    /// Each repair sent and every host's answer (empty on a dry run).
    pub done: Vec<(Repair, Vec<HostResult>)>,
    /// The hosts read again after the repairs (`None` on a dry run).
    pub after: Option<DriftReport>,
}

async fn plan_for(
    session: &Session,
    settings: &Settings,
    migrations: &[Migration],
    history: &[LedgerEntry],
    only_host: Option<&str>,
) -> Result<(DriftCheck, SyncPlan), EngineError> {
    let found = check(session, settings, migrations, history).await?;
    let Some(cluster) = &session.cfg.ledger.cluster else {
        return Ok((found, SyncPlan::default()));
    };
    if let Some(h) = only_host
        && !found.hosts.iter().any(|c| c.id() == h)
    {
        let known: Vec<String> = found.hosts.iter().map(ClusterHost::id).collect();
        return Err(EngineError::Invalid(format!(
            "--host {h} is not a host of cluster {cluster} ({})",
            known.join(", ")
        )));
    }
    let ctx = SyncContext {
        cluster: cluster.as_str(),
        only_host,
        server_major: session.server.major,
        known_replicas: known_replicas(session, &found).await?,
    };
    let plan = sync_plan(&found.report, &found.expected, &ctx)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    Ok((found, plan))
}

fn action(kind: RepairKind) -> &'static str {
    match kind {
        RepairKind::CreateDatabase => "create database",
        RepairKind::Create => "create",
        RepairKind::Attach => "attach",
        RepairKind::AddColumn => "add column",
    }
}

/// `sync-hosts`: brings the hosts that lack objects of the applied
/// migrations up to them, under the lock, each statement recorded; a dry
/// run only plans (no lock, no writes).
pub async fn sync_hosts(
    session: &Session,
    settings: &Settings,
    ctx: &RunContext,
    migrations: &[Migration],
    only_host: Option<&str>,
    dry_run: bool,
) -> Result<Synced, EngineError> {
    if dry_run {
        let history = store::read_if_exists(&session.conn, &session.cfg.ledger).await?;
        let (before, plan) = plan_for(session, settings, migrations, &history, only_host).await?;
        return Ok(Synced {
            before,
            plan,
            ..Default::default()
        });
    }
    with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let (before, plan) =
                plan_for(session, settings, migrations, &history, only_host).await?;
            let mut done = Vec::new();
            for (i, repair) in plan.repairs.iter().enumerate() {
                let results = send(session, repair, &plan.repairs[i + 1..]).await?;
                writer
                    .write(Record::HostSynced {
                        object: repair.object.clone(),
                        action: action(repair.kind),
                        hosts: repair.hosts.clone(),
                        sql: repair.sql.clone(),
                        results: results.clone(),
                    })
                    .await?;
                done.push((repair.clone(), results));
            }
            let after = if done.is_empty() {
                None
            } else {
                Some(check(session, settings, migrations, &history).await?.report)
            };
            Ok(Synced {
                before,
                plan,
                done,
                after,
            })
        },
    )
    .await
}

/// Sends one repair on the cluster. A `CREATE` may fail on a host whose
/// replica ZooKeeper still holds when the `ATTACH` that follows is for that
/// host: the failure is kept as that host's answer.
async fn send(
    session: &Session,
    repair: &Repair,
    later: &[Repair],
) -> Result<Vec<HostResult>, EngineError> {
    let settings = session.ddl_settings();
    match session.conn.text(&repair.sql, &settings).await {
        Ok(text) => ddl::parse_host_rows(&text).map_err(|e| {
            EngineError::Failed(format!(
                "sync-hosts: {} {}: {e}",
                action(repair.kind),
                repair.object
            ))
        }),
        Err(e) => {
            let attached_later =
                e.server_message()
                    .and_then(ddl::parse_host_error)
                    .filter(|(host, _)| {
                        repair.kind == RepairKind::Create
                            && later.iter().any(|r| {
                                r.kind == RepairKind::Attach
                                    && r.object == repair.object
                                    && r.hosts.contains(host)
                            })
                    });
            match attached_later {
                Some((host, error)) => {
                    let (name, port) = host.rsplit_once(':').unwrap_or((host.as_str(), "0"));
                    Ok(vec![HostResult {
                        host: name.to_string(),
                        port: port.parse().unwrap_or(0),
                        status: e.code().map_or(-1, i64::from),
                        error,
                    }])
                }
                None => Err(EngineError::Sync {
                    object: repair.object.clone(),
                    action: action(repair.kind),
                    source: e,
                }),
            }
        }
    }
}
