//! `sync-hosts` (pure): what a [`DriftReport`] calls for. Missing databases
//! and objects are created again on the cluster with `IF NOT EXISTS` (hosts
//! that hold them are untouched), from the definition the reference host
//! holds today (the creating statement with every later change applied: a
//! replica joining a replicated table must match ZooKeeper's metadata), in
//! the order their creating statements ran. A replicated table whose replica
//! ZooKeeper still knows (a host wiped and restarted) is `ATTACH`ed instead,
//! and fetches its parts from its peers. A missing column is added with
//! `ADD COLUMN IF NOT EXISTS` where the server and the engine allow it.
//! Anything else (a column of another type, an extra column or object, an
//! engine that differs) is refused with the reason, never overwritten.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::drift::{Drift, DriftKind, DriftReport, ExpectedSchema};
use crate::sql::ident::{quote, quote_if_needed};
use crate::sql::lexer::{TokenKind, tokenize};
use crate::sql::statement::{OnClusterMode, Rewrite, add_on_cluster};

/// What a repair does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    CreateDatabase,
    Create,
    Attach,
    AddColumn,
}

/// One statement `sync-hosts` sends, on the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub object: String,
    pub kind: RepairKind,
    /// The hosts that lack what it adds.
    pub hosts: Vec<String>,
    pub sql: String,
}

/// A difference `sync-hosts` leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub host: String,
    pub drift: Drift,
    pub reason: String,
}

/// Everything `sync-hosts` would do.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SyncPlan {
    pub repairs: Vec<Repair>,
    pub refused: Vec<Refused>,
}

/// What a plan needs to know of the target besides the report.
#[derive(Debug, Clone, Default)]
pub struct SyncContext<'a> {
    pub cluster: &'a str,
    /// Only the differences of this host (`--host`).
    pub only_host: Option<&'a str>,
    pub server_major: u32,
    /// `(db.name, host)` of missing replicated tables whose replica
    /// ZooKeeper still holds: attached, not created.
    pub known_replicas: BTreeSet<(String, String)>,
}

/// Why a statement could not be rewritten for replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot replay the definition of {object}: {reason}")]
pub struct ReplayError {
    pub object: String,
    pub reason: String,
}

/// The repairs a report calls for, in ledger order: databases, then
/// objects, then columns.
pub fn sync_plan(
    report: &DriftReport,
    expected: &ExpectedSchema,
    ctx: &SyncContext<'_>,
) -> Result<SyncPlan, ReplayError> {
    let mut plan = SyncPlan::default();
    let hosts: Vec<_> = report
        .drifted()
        .filter(|h| ctx.only_host.is_none_or(|o| o == h.host))
        .collect();
    let lacking = |kind: DriftKind, object: &str| -> Vec<String> {
        hosts
            .iter()
            .filter(|h| h.drift.iter().any(|d| d.kind == kind && d.object == object))
            .map(|h| h.host.clone())
            .collect()
    };
    for db in &expected.databases {
        let on = lacking(DriftKind::MissingDatabase, db);
        if !on.is_empty() {
            plan.repairs.push(Repair {
                object: db.clone(),
                kind: RepairKind::CreateDatabase,
                hosts: on,
                sql: format!(
                    "CREATE DATABASE IF NOT EXISTS {} ON CLUSTER {}",
                    quote(db),
                    quote_if_needed(ctx.cluster)
                ),
            });
        }
    }
    for o in &expected.objects {
        let object = o.qualified();
        let on = lacking(DriftKind::MissingObject, &object);
        let Some(reference) = report.references.get(&o.key()) else {
            continue;
        };
        if on.is_empty() {
            continue;
        }
        let (attach, create): (Vec<String>, Vec<String>) = on
            .into_iter()
            .partition(|h| ctx.known_replicas.contains(&(object.clone(), h.clone())));
        for (kind, on) in [(RepairKind::Create, create), (RepairKind::Attach, attach)] {
            if on.is_empty() {
                continue;
            }
            let sql = replay_sql(
                &reference.found.create,
                ctx.cluster,
                kind == RepairKind::Attach,
            )
            .map_err(|reason| ReplayError {
                object: object.clone(),
                reason,
            })?;
            plan.repairs.push(Repair {
                object: object.clone(),
                kind,
                hosts: on,
                sql,
            });
        }
    }
    let mut columns: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for h in &hosts {
        for d in &h.drift {
            let refuse = |reason: &str| Refused {
                host: h.host.clone(),
                drift: d.clone(),
                reason: reason.to_string(),
            };
            match d.kind {
                DriftKind::MissingDatabase | DriftKind::MissingObject => {}
                DriftKind::MissingColumn => {
                    let replicated = expected
                        .objects
                        .iter()
                        .find(|o| o.qualified() == d.object)
                        .and_then(|o| report.references.get(&o.key()))
                        .is_some_and(|r| r.found.engine.starts_with("Replicated"));
                    if ctx.server_major < 20 {
                        plan.refused.push(refuse(
                            "ADD COLUMN IF NOT EXISTS needs ClickHouse 20 or later; add it on this host by hand",
                        ));
                    } else if replicated {
                        plan.refused.push(refuse(
                            "a replica of a replicated table lacks a column its peers have: its metadata disagrees with ZooKeeper; restore the replica",
                        ));
                    } else {
                        let (Some(column), Some(ty)) = (&d.column, &d.expected) else {
                            continue;
                        };
                        columns
                            .entry((d.object.clone(), column.clone(), ty.clone()))
                            .or_default()
                            .push(h.host.clone());
                    }
                }
                DriftKind::ColumnType => plan.refused.push(refuse(
                    "a column of another type is never changed: that could rewrite data",
                )),
                DriftKind::ExtraColumn => plan.refused.push(refuse(
                    "a column no migration made is never dropped: that would lose data",
                )),
                DriftKind::ExtraObject => plan.refused.push(refuse(
                    "an object no migration made is never dropped: that would lose data",
                )),
                DriftKind::EngineDiffers => plan.refused.push(refuse(
                    "an object with another engine is never recreated: that would lose data",
                )),
            }
        }
    }
    for ((object, column, ty), on) in columns {
        let (db, name) = object.split_once('.').unwrap_or(("", object.as_str()));
        plan.repairs.push(Repair {
            sql: format!(
                "ALTER TABLE {}.{} ON CLUSTER {} ADD COLUMN IF NOT EXISTS {} {ty}",
                quote(db),
                quote(name),
                quote_if_needed(ctx.cluster),
                quote(&column)
            ),
            object: format!("{object}.{column}"),
            kind: RepairKind::AddColumn,
            hosts: on,
        });
    }
    Ok(plan)
}

/// A definition as `SHOW CREATE`/`system.tables` gives it, made safe to
/// send to every host: `IF NOT EXISTS` and `ON CLUSTER` added (`ATTACH`
/// instead of `CREATE` when `attach`).
pub fn replay_sql(create: &str, cluster: &str, attach: bool) -> Result<String, String> {
    let tokens = tokenize(create).map_err(|e| e.to_string())?;
    let words: Vec<_> = tokens.iter().filter(|t| !t.kind.is_trivia()).collect();
    let first = words.first().ok_or("the definition is empty")?;
    if !(first.is_word(create, "CREATE") || first.is_word(create, "ATTACH")) {
        return Err(format!(
            "the definition starts with {:?}, not CREATE",
            first.text(create)
        ));
    }
    let mut i = 1;
    if words.get(i).is_some_and(|t| t.is_word(create, "OR"))
        && words
            .get(i + 1)
            .is_some_and(|t| t.is_word(create, "REPLACE"))
    {
        return Err("CREATE OR REPLACE would replace what a host holds".into());
    }
    while words.get(i).is_some_and(|t| {
        ["MATERIALIZED", "LIVE", "WINDOW"]
            .iter()
            .any(|w| t.is_word(create, w))
    }) {
        i += 1;
    }
    let kind = words
        .get(i)
        .filter(|t| {
            ["TABLE", "VIEW", "DICTIONARY"]
                .iter()
                .any(|w| t.is_word(create, w))
        })
        .ok_or("not a table, view or dictionary definition")?;
    let has_if = words.get(i + 1).is_some_and(|t| t.is_word(create, "IF"));
    let mut sql = String::with_capacity(create.len() + 40);
    sql.push_str(if attach { "ATTACH" } else { "CREATE" });
    sql.push_str(&create[first.end..kind.end]);
    if !has_if {
        sql.push_str(" IF NOT EXISTS");
    }
    sql.push_str(&create[kind.end..]);
    match add_on_cluster(&sql, cluster, OnClusterMode::Always).map_err(|e| e.to_string())? {
        Rewrite::Rewritten(s) => Ok(s),
        Rewrite::AlreadyOnCluster => Ok(sql),
        Rewrite::NotApplicable => Err("ON CLUSTER does not apply".into()),
        Rewrite::Unrecognized { reason } => Err(reason),
    }
}

/// The ZooKeeper path and replica name of a `Replicated*` engine
/// (`engine_full`), macros of one host expanded; `None` for other engines
/// or arguments this cannot read.
pub fn replica_path(
    engine_full: &str,
    macros: &BTreeMap<String, String>,
    database: &str,
    table: &str,
) -> Option<(String, String)> {
    if !engine_full.trim_start().starts_with("Replicated") {
        return None;
    }
    let tokens = tokenize(engine_full).ok()?;
    let strings: Vec<String> = tokens
        .iter()
        .filter(|t| !t.kind.is_trivia())
        .skip(2)
        .take(3)
        .filter(|t| t.kind == TokenKind::String)
        .map(|t| unescape(t.text(engine_full)))
        .collect();
    let [path, replica, ..] = strings.as_slice() else {
        return None;
    };
    let expand = |s: &str| -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}')? + open;
            let name = &rest[open + 1..close];
            let value = match name {
                "database" => database.to_string(),
                "table" => table.to_string(),
                _ => macros.get(name)?.clone(),
            };
            out.push_str(&value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Some(out)
    };
    Some((
        expand(path)?.trim_end_matches('/').to_string(),
        expand(replica)?,
    ))
}

/// A single-quoted literal's text.
fn unescape(lit: &str) -> String {
    let inner = lit
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or(lit);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::version::Version;
    use crate::plan::drift::{FoundObject, HostDrift, Reference, expected_objects};

    #[test]
    fn a_definition_is_replayed_with_if_not_exists_on_the_cluster() {
        let create = "CREATE TABLE app.t ( x UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/app/t', '{replica}') ORDER BY x SETTINGS index_granularity = 8192";
        assert_eq!(
            replay_sql(create, "chm_cluster", false).unwrap(),
            "CREATE TABLE IF NOT EXISTS app.t ON CLUSTER chm_cluster ( x UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/app/t', '{replica}') ORDER BY x SETTINGS index_granularity = 8192"
        );
        assert!(
            replay_sql(create, "c", true)
                .unwrap()
                .starts_with("ATTACH TABLE IF NOT EXISTS app.t ON CLUSTER c (")
        );
        assert_eq!(
            replay_sql(
                "CREATE MATERIALIZED VIEW app.mv TO app.t (`x` UInt32) AS SELECT x FROM app.src",
                "c",
                false
            )
            .unwrap(),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS app.mv ON CLUSTER c TO app.t (`x` UInt32) AS SELECT x FROM app.src"
        );
        assert_eq!(
            replay_sql("CREATE VIEW IF NOT EXISTS app.v AS SELECT 1", "c", false).unwrap(),
            "CREATE VIEW IF NOT EXISTS app.v ON CLUSTER c AS SELECT 1"
        );
        assert!(replay_sql("CREATE OR REPLACE VIEW app.v AS SELECT 1", "c", false).is_err());
        assert!(replay_sql("SELECT 1", "c", false).is_err());
        assert!(replay_sql("", "c", false).is_err());
    }

    #[test]
    fn replica_paths_expand_each_hosts_macros() {
        let macros: BTreeMap<String, String> = [("shard", "2"), ("replica", "node4")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(
            replica_path(
                "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}/', '{replica}') ORDER BY x",
                &macros,
                "app",
                "t"
            ),
            Some(("/clickhouse/tables/2/app/t".into(), "node4".into()))
        );
        assert_eq!(
            replica_path("MergeTree ORDER BY x", &macros, "a", "t"),
            None
        );
        assert_eq!(
            replica_path(
                "ReplicatedMergeTree('/t/{layer}', '{replica}')",
                &macros,
                "a",
                "t"
            ),
            None,
            "an unknown macro"
        );
    }

    fn report() -> (DriftReport, ExpectedSchema) {
        let expected = expected_objects(
            &[(
                Version::parse("1").unwrap(),
                "CREATE TABLE t (x UInt32) ENGINE = ReplicatedMergeTree('/p/{shard}/t', '{replica}') ORDER BY x"
                    .to_string(),
            )],
            "app",
            &[],
        );
        let drift =
            |object: &str, kind, column: Option<&str>, e: Option<&str>, f: Option<&str>| Drift {
                object: object.into(),
                kind,
                column: column.map(Into::into),
                expected: e.map(Into::into),
                found: f.map(Into::into),
            };
        let hosts = vec![
            HostDrift {
                host: "a:1".into(),
                unreachable: None,
                drift: vec![drift(
                    "app.t",
                    DriftKind::ExtraColumn,
                    Some("hand"),
                    None,
                    Some("String"),
                )],
            },
            HostDrift {
                host: "b:2".into(),
                unreachable: None,
                drift: vec![drift(
                    "app.t",
                    DriftKind::MissingObject,
                    None,
                    Some("ReplicatedMergeTree"),
                    None,
                )],
            },
            HostDrift {
                host: "c:3".into(),
                unreachable: None,
                drift: vec![
                    drift(
                        "app",
                        DriftKind::MissingDatabase,
                        None,
                        Some("database"),
                        None,
                    ),
                    drift(
                        "app.t",
                        DriftKind::MissingObject,
                        None,
                        Some("ReplicatedMergeTree"),
                        None,
                    ),
                ],
            },
            HostDrift {
                host: "d:4".into(),
                unreachable: None,
                drift: vec![drift(
                    "app.t",
                    DriftKind::MissingColumn,
                    Some("y"),
                    Some("String"),
                    None,
                )],
            },
        ];
        let mut references = BTreeMap::new();
        references.insert(
            ("app".to_string(), "t".to_string()),
            Reference {
                host: "a:1".into(),
                found: FoundObject {
                    engine: "ReplicatedMergeTree".into(),
                    engine_full: "ReplicatedMergeTree('/p/{shard}/t', '{replica}') ORDER BY x".into(),
                    create: "CREATE TABLE app.t (x UInt32) ENGINE = ReplicatedMergeTree('/p/{shard}/t', '{replica}') ORDER BY x".into(),
                },
                columns: vec![("x".into(), "UInt32".into())],
            },
        );
        (DriftReport { hosts, references }, expected)
    }

    #[test]
    fn missing_objects_are_created_or_attached_and_the_rest_is_refused() {
        let (report, expected) = report();
        let ctx = SyncContext {
            cluster: "chm_cluster",
            only_host: None,
            server_major: 18,
            known_replicas: [("app.t".to_string(), "c:3".to_string())].into(),
        };
        let plan = sync_plan(&report, &expected, &ctx).unwrap();
        let got: Vec<(RepairKind, &str, Vec<String>)> = plan
            .repairs
            .iter()
            .map(|r| (r.kind, r.object.as_str(), r.hosts.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (RepairKind::CreateDatabase, "app", vec!["c:3".to_string()]),
                (RepairKind::Create, "app.t", vec!["b:2".to_string()]),
                (RepairKind::Attach, "app.t", vec!["c:3".to_string()]),
            ]
        );
        assert_eq!(
            plan.repairs[0].sql,
            "CREATE DATABASE IF NOT EXISTS `app` ON CLUSTER chm_cluster"
        );
        assert!(
            plan.repairs[2]
                .sql
                .starts_with("ATTACH TABLE IF NOT EXISTS app.t ON CLUSTER")
        );
        let refused: Vec<(&str, DriftKind)> = plan
            .refused
            .iter()
            .map(|r| (r.host.as_str(), r.drift.kind))
            .collect();
        assert_eq!(
            refused,
            [
                ("a:1", DriftKind::ExtraColumn),
                ("d:4", DriftKind::MissingColumn)
            ]
        );
        assert!(plan.refused[1].reason.contains("ClickHouse 20"));
        // --host b:2: only what b lacks.
        let only = SyncContext {
            only_host: Some("b:2"),
            ..ctx.clone()
        };
        let plan = sync_plan(&report, &expected, &only).unwrap();
        assert_eq!(plan.repairs.len(), 1);
        assert_eq!(plan.repairs[0].hosts, ["b:2"]);
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn a_missing_column_of_an_unreplicated_table_is_added_on_current_servers() {
        let (mut report, expected) = report();
        for r in report.references.values_mut() {
            r.found.engine = "MergeTree".into();
        }
        let ctx = SyncContext {
            cluster: "c",
            only_host: Some("d:4"),
            server_major: 24,
            known_replicas: BTreeSet::new(),
        };
        let plan = sync_plan(&report, &expected, &ctx).unwrap();
        assert_eq!(plan.repairs.len(), 1);
        assert_eq!(
            plan.repairs[0].sql,
            "ALTER TABLE `app`.`t` ON CLUSTER c ADD COLUMN IF NOT EXISTS `y` String"
        );
        assert!(plan.refused.is_empty());
    }
}
