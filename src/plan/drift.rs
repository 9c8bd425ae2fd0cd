//! Replica schema drift (pure): the objects the applied migrations leave
//! behind ([`expected_objects`]), what each host of the cluster was found to
//! hold ([`HostSchema`], read by `engine::drift`), and how every host
//! differs ([`compare`]).
//!
//! The expected *set* of objects comes from the migrations' statements, in
//! ledger order (a `CREATE` adds, a `DROP`/`DETACH` removes, a `RENAME`
//! moves). The expected *definition* of an object (its engine and columns)
//! is the one most hosts that hold it share; a tie goes to the entry node.
//! An object no host holds is not replica drift, and an object every host
//! holds is not an extra one: drift is replicas disagreeing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::version::Version;
use crate::sql::ident::split_qualified;
use crate::sql::lexer::{TokenKind, tokenize};
use crate::sql::statement::{ObjectKind, StatementKind, Verb, analyze};

/// An object the applied migrations leave behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub database: String,
    pub name: String,
    pub kind: ObjectKind,
    /// The migration whose statement created it (`None`: chmigrate's own).
    pub version: Option<Version>,
}

impl Expected {
    pub fn key(&self) -> (String, String) {
        (self.database.clone(), self.name.clone())
    }
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }
}

/// What the applied migrations leave behind: databases and objects, the
/// objects in the order their creating statements ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedSchema {
    pub databases: Vec<String>,
    pub objects: Vec<Expected>,
    /// Objects that exist on some hosts only by design (the lock table,
    /// made on the entry node while a run holds the lock): never drift.
    pub ignored: BTreeSet<(String, String)>,
}

/// The objects named by `statements` (each with the migration it belongs
/// to, in ledger order, variables already substituted), unqualified names
/// meaning `default_db`; `own` are chmigrate's own tables in `default_db`
/// (the ledger and its lock), expected on every host too.
pub fn expected_objects(
    statements: &[(Version, String)],
    default_db: &str,
    own: &[&str],
) -> ExpectedSchema {
    let mut out = ExpectedSchema {
        databases: vec![default_db.to_string()],
        objects: own
            .iter()
            .map(|n| Expected {
                database: default_db.to_string(),
                name: n.to_string(),
                kind: ObjectKind::Table,
                version: None,
            })
            .collect(),
        ignored: BTreeSet::new(),
    };
    let resolve = |name: &str| {
        let (db, n) = split_qualified(name);
        (db.unwrap_or_else(|| default_db.to_string()), n)
    };
    for (version, sql) in statements {
        let Ok(info) = analyze(sql) else { continue };
        let StatementKind::Ddl { verb, object } = info.kind else {
            continue;
        };
        if object == ObjectKind::Function {
            continue;
        }
        match verb {
            Verb::Create | Verb::Attach => {
                let Some(name) = &info.object_name else {
                    continue;
                };
                if object == ObjectKind::Database {
                    let (_, db) = split_qualified(name);
                    if !out.databases.contains(&db) {
                        out.databases.push(db);
                    }
                    continue;
                }
                let (database, name) = resolve(name);
                if !out
                    .objects
                    .iter()
                    .any(|o| o.database == database && o.name == name)
                {
                    out.objects.push(Expected {
                        database,
                        name,
                        kind: object,
                        version: Some(version.clone()),
                    });
                }
            }
            Verb::Drop | Verb::Detach => {
                let Some(name) = &info.object_name else {
                    continue;
                };
                if object == ObjectKind::Database {
                    let (_, db) = split_qualified(name);
                    out.databases.retain(|d| *d != db);
                    out.objects.retain(|o| o.database != db);
                } else {
                    let key = resolve(name);
                    out.objects.retain(|o| o.key() != key);
                }
            }
            Verb::Rename if object != ObjectKind::Database => {
                for (from, to) in rename_pairs(sql) {
                    let from = resolve(&from);
                    let (database, name) = resolve(&to);
                    for o in out.objects.iter_mut().filter(|o| o.key() == from) {
                        o.database = database.clone();
                        o.name = name.clone();
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The `a TO b` pairs of a `RENAME TABLE a TO b, c TO d` statement, names as
/// written.
fn rename_pairs(sql: &str) -> Vec<(String, String)> {
    let Ok(tokens) = tokenize(sql) else {
        return Vec::new();
    };
    let toks: Vec<_> = tokens.iter().filter(|t| !t.kind.is_trivia()).collect();
    let mut pairs = Vec::new();
    // Skip RENAME TABLE(S)/DICTIONARY.
    let mut i = 2;
    let name_at = |i: &mut usize| -> Option<String> {
        let start = toks.get(*i)?;
        if !matches!(start.kind, TokenKind::Word | TokenKind::QuotedIdent) {
            return None;
        }
        let mut end = start.end;
        *i += 1;
        if toks.get(*i).is_some_and(|t| t.text(sql) == ".")
            && let Some(t) = toks.get(*i + 1)
        {
            end = t.end;
            *i += 2;
        }
        Some(sql[start.start..end].to_string())
    };
    while i < toks.len() {
        let Some(from) = name_at(&mut i) else { break };
        if !toks.get(i).is_some_and(|t| t.is_word(sql, "TO")) {
            break;
        }
        i += 1;
        let Some(to) = name_at(&mut i) else { break };
        pairs.push((from, to));
        if toks.get(i).is_some_and(|t| t.text(sql) == ",") {
            i += 1;
        } else {
            break;
        }
    }
    pairs
}

/// One object as a host holds it (from `system.tables`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoundObject {
    pub engine: String,
    pub engine_full: String,
    pub create: String,
}

/// What one host holds in the databases the migrations use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostSchema {
    pub databases: BTreeSet<String>,
    pub objects: BTreeMap<(String, String), FoundObject>,
    /// Each object's columns (name, type) in their order.
    pub columns: BTreeMap<(String, String), Vec<(String, String)>>,
}

/// One host as read: its schema, or why it could not be read.
#[derive(Debug, Clone)]
pub struct HostRead {
    /// `host:port`, as `status` names hosts.
    pub host: String,
    pub schema: Result<HostSchema, String>,
}

/// How a host differs from the expected state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    MissingDatabase,
    MissingObject,
    MissingColumn,
    ColumnType,
    ExtraColumn,
    EngineDiffers,
    ExtraObject,
}

impl DriftKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::MissingDatabase => "missing database",
            DriftKind::MissingObject => "missing",
            DriftKind::MissingColumn => "missing column",
            DriftKind::ColumnType => "column type differs",
            DriftKind::ExtraColumn => "extra column",
            DriftKind::EngineDiffers => "engine differs",
            DriftKind::ExtraObject => "extra object",
        }
    }
}

/// One difference on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// `db.name` (a database alone for a missing database).
    pub object: String,
    pub kind: DriftKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub expected: Option<String>,
    pub found: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.object)?;
        if let Some(c) = &self.column {
            write!(f, ".{c}")?;
        }
        write!(f, ": {}", self.kind.as_str())?;
        match (&self.expected, &self.found) {
            (Some(e), Some(x)) => write!(f, " (expected {e}, found {x})"),
            (Some(e), None) => write!(f, " (expected {e})"),
            (None, Some(x)) => write!(f, " (found {x})"),
            (None, None) => Ok(()),
        }
    }
}

/// One host's differences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostDrift {
    pub host: String,
    /// Why the host could not be read (nothing is known of it then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    pub drift: Vec<Drift>,
}

impl HostDrift {
    pub fn in_sync(&self) -> bool {
        self.unreachable.is_none() && self.drift.is_empty()
    }
}

/// The expected definition of an object and the host it was taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub found: FoundObject,
    pub columns: Vec<(String, String)>,
}

/// Every host compared with the expected state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftReport {
    pub hosts: Vec<HostDrift>,
    /// Expected objects some host holds, keyed by `(database, name)`.
    pub references: BTreeMap<(String, String), Reference>,
}

impl DriftReport {
    pub fn drifted(&self) -> impl Iterator<Item = &HostDrift> {
        self.hosts.iter().filter(|h| !h.drift.is_empty())
    }
    pub fn has_drift(&self) -> bool {
        self.drifted().next().is_some()
    }
    pub fn host(&self, id: &str) -> Option<&HostDrift> {
        self.hosts.iter().find(|h| h.host == id)
    }
}

fn qualified(key: &(String, String)) -> String {
    format!("{}.{}", key.0, key.1)
}

/// Tables ClickHouse makes for a materialized view without `TO`.
fn is_inner(name: &str) -> bool {
    name.starts_with(".inner.")
}

/// Compares every host read with `expected`; `entry` is the host the
/// connection goes to (it wins ties).
pub fn compare(expected: &ExpectedSchema, hosts: &[HostRead], entry: Option<&str>) -> DriftReport {
    let read: Vec<(&str, &HostSchema)> = hosts
        .iter()
        .filter_map(|h| h.schema.as_ref().ok().map(|s| (h.host.as_str(), s)))
        .collect();
    let mut references = BTreeMap::new();
    for o in &expected.objects {
        if let Some(r) = reference(&o.key(), &read, entry) {
            references.insert(o.key(), r);
        }
    }
    let expected_keys: BTreeSet<(String, String)> =
        expected.objects.iter().map(Expected::key).collect();
    let mut out = Vec::new();
    for h in hosts {
        let schema = match &h.schema {
            Ok(s) => s,
            Err(e) => {
                out.push(HostDrift {
                    host: h.host.clone(),
                    unreachable: Some(e.clone()),
                    drift: Vec::new(),
                });
                continue;
            }
        };
        let mut drift = Vec::new();
        for db in &expected.databases {
            let elsewhere = read.iter().any(|(_, s)| s.databases.contains(db));
            if elsewhere && !schema.databases.contains(db) {
                drift.push(Drift {
                    object: db.clone(),
                    kind: DriftKind::MissingDatabase,
                    column: None,
                    expected: Some("database".into()),
                    found: None,
                });
            }
        }
        for o in &expected.objects {
            let key = o.key();
            let Some(r) = references.get(&key) else {
                continue;
            };
            let Some(found) = schema.objects.get(&key) else {
                drift.push(Drift {
                    object: o.qualified(),
                    kind: DriftKind::MissingObject,
                    column: None,
                    expected: Some(r.found.engine.clone()),
                    found: None,
                });
                continue;
            };
            if found.engine != r.found.engine {
                drift.push(Drift {
                    object: o.qualified(),
                    kind: DriftKind::EngineDiffers,
                    column: None,
                    expected: Some(r.found.engine.clone()),
                    found: Some(found.engine.clone()),
                });
            }
            let cols = schema.columns.get(&key).cloned().unwrap_or_default();
            drift.extend(column_drift(&o.qualified(), &r.columns, &cols));
        }
        for key in schema.objects.keys() {
            let watched = expected.databases.contains(&key.0);
            let everywhere = read.iter().all(|(_, s)| s.objects.contains_key(key));
            let known = expected_keys.contains(key) || expected.ignored.contains(key);
            if watched && !is_inner(&key.1) && !known && !everywhere {
                drift.push(Drift {
                    object: qualified(key),
                    kind: DriftKind::ExtraObject,
                    column: None,
                    expected: None,
                    found: schema.objects.get(key).map(|f| f.engine.clone()),
                });
            }
        }
        out.push(HostDrift {
            host: h.host.clone(),
            unreachable: None,
            drift,
        });
    }
    DriftReport {
        hosts: out,
        references,
    }
}

/// The definition most hosts holding `key` share (ties: the entry node's,
/// else the first host's).
fn reference(
    key: &(String, String),
    read: &[(&str, &HostSchema)],
    entry: Option<&str>,
) -> Option<Reference> {
    let holders: Vec<(&str, &HostSchema)> = read
        .iter()
        .filter(|(_, s)| s.objects.contains_key(key))
        .copied()
        .collect();
    let shape = |s: &HostSchema| {
        (
            s.objects.get(key).map(|f| f.engine.clone()),
            s.columns.get(key).cloned().unwrap_or_default(),
        )
    };
    let count = |s: &HostSchema| holders.iter().filter(|(_, o)| shape(o) == shape(s)).count();
    let best = holders.iter().map(|(_, s)| count(s)).max()?;
    let pick = holders
        .iter()
        .filter(|(_, s)| count(s) == best)
        .find(|(h, _)| Some(*h) == entry)
        .or_else(|| holders.iter().find(|(_, s)| count(s) == best))?;
    Some(Reference {
        host: pick.0.to_string(),
        found: pick.1.objects.get(key).cloned().unwrap_or_default(),
        columns: pick.1.columns.get(key).cloned().unwrap_or_default(),
    })
}

fn column_drift(object: &str, want: &[(String, String)], got: &[(String, String)]) -> Vec<Drift> {
    let mut out = Vec::new();
    let diff = |kind, column: &str, expected: Option<&String>, found: Option<&String>| Drift {
        object: object.to_string(),
        kind,
        column: Some(column.to_string()),
        expected: expected.cloned(),
        found: found.cloned(),
    };
    for (name, ty) in want {
        match got.iter().find(|(n, _)| n == name) {
            None => out.push(diff(DriftKind::MissingColumn, name, Some(ty), None)),
            Some((_, t)) if t != ty => {
                out.push(diff(DriftKind::ColumnType, name, Some(ty), Some(t)));
            }
            Some(_) => {}
        }
    }
    for (name, ty) in got {
        if !want.iter().any(|(n, _)| n == name) {
            out.push(diff(DriftKind::ExtraColumn, name, None, Some(ty)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn stmts(list: &[(&str, &str)]) -> Vec<(Version, String)> {
        list.iter().map(|(a, b)| (v(a), b.to_string())).collect()
    }

    fn names(e: &ExpectedSchema) -> Vec<String> {
        e.objects.iter().map(Expected::qualified).collect()
    }

    #[test]
    fn expected_objects_follow_creates_drops_and_renames_in_ledger_order() {
        let e = expected_objects(
            &stmts(&[
                (
                    "1",
                    "CREATE TABLE events (x UInt32) ENGINE = MergeTree ORDER BY x",
                ),
                (
                    "1",
                    "CREATE TABLE IF NOT EXISTS `app`.users (id UInt64) ENGINE = Log",
                ),
                (
                    "2",
                    "CREATE MATERIALIZED VIEW app.mv TO app.users AS SELECT 1 AS id",
                ),
                ("2", "INSERT INTO app.events VALUES (1)"),
                ("3", "CREATE TABLE tmp (x UInt8) ENGINE = Log"),
                (
                    "3",
                    "RENAME TABLE app.tmp TO app.kept, app.nothing TO app.other",
                ),
                ("4", "DROP TABLE IF EXISTS app.users"),
                ("4", "ALTER TABLE app.events ADD COLUMN y String"),
                ("5", "CREATE DATABASE IF NOT EXISTS extra"),
                ("5", "CREATE VIEW extra.v AS SELECT 1"),
                ("6", "CREATE FUNCTION f AS x -> x"),
            ]),
            "app",
            &["schema_migrations"],
        );
        assert_eq!(e.databases, ["app", "extra"]);
        assert_eq!(
            names(&e),
            [
                "app.schema_migrations",
                "app.events",
                "app.mv",
                "app.kept",
                "extra.v"
            ]
        );
        assert_eq!(e.objects[2].kind, ObjectKind::MaterializedView);
        assert_eq!(e.objects[1].version, Some(v("1")));
        let dropped = expected_objects(
            &stmts(&[
                ("1", "CREATE DATABASE other"),
                ("1", "CREATE TABLE other.t (x UInt8) ENGINE = Log"),
                ("2", "DROP DATABASE other"),
            ]),
            "app",
            &[],
        );
        assert_eq!(dropped.databases, ["app"]);
        assert!(dropped.objects.is_empty());
    }

    /// An object as a test writes it: name, engine, columns.
    type Obj = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );

    fn schema(objects: &[Obj]) -> HostSchema {
        let mut s = HostSchema::default();
        s.databases.insert("app".into());
        for (name, engine, cols) in objects {
            let key = ("app".to_string(), name.to_string());
            s.objects.insert(
                key.clone(),
                FoundObject {
                    engine: engine.to_string(),
                    engine_full: format!("{engine}()"),
                    create: format!("CREATE TABLE app.{name} (x UInt32) ENGINE = {engine}"),
                },
            );
            s.columns.insert(
                key,
                cols.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            );
        }
        s
    }

    fn host(id: &str, s: HostSchema) -> HostRead {
        HostRead {
            host: id.into(),
            schema: Ok(s),
        }
    }

    const T: Obj = ("t", "ReplicatedMergeTree", &[("x", "UInt32")]);

    fn expected_t() -> ExpectedSchema {
        expected_objects(
            &stmts(&[(
                "1",
                "CREATE TABLE t (x UInt32) ENGINE = MergeTree ORDER BY x",
            )]),
            "app",
            &[],
        )
    }

    #[test]
    fn hosts_that_agree_are_in_sync_and_a_missing_table_is_named_on_its_host() {
        let hosts = [
            host("a:9001", schema(&[T])),
            host("b:9002", schema(&[])),
            host("c:9003", schema(&[T])),
        ];
        let r = compare(&expected_t(), &hosts, Some("a:9001"));
        assert!(r.hosts[0].in_sync() && r.hosts[2].in_sync());
        assert_eq!(
            r.hosts[1].drift,
            [Drift {
                object: "app.t".into(),
                kind: DriftKind::MissingObject,
                column: None,
                expected: Some("ReplicatedMergeTree".into()),
                found: None,
            }]
        );
        assert_eq!(r.references[&("app".into(), "t".into())].host, "a:9001");
        assert_eq!(
            r.drifted().map(|h| h.host.as_str()).collect::<Vec<_>>(),
            ["b:9002"]
        );
    }

    #[test]
    fn a_wiped_host_lacks_the_database_and_every_object() {
        let mut empty = HostSchema::default();
        empty.databases.insert("default".into());
        let hosts = [host("a:1", schema(&[T])), host("b:2", empty)];
        let r = compare(&expected_t(), &hosts, Some("a:1"));
        let kinds: Vec<DriftKind> = r.hosts[1].drift.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [DriftKind::MissingDatabase, DriftKind::MissingObject]
        );
        assert_eq!(r.hosts[1].drift[0].object, "app");
    }

    #[test]
    fn the_majority_definition_wins_even_against_the_entry_node() {
        let extra: Obj = (
            "t",
            "ReplicatedMergeTree",
            &[("x", "UInt32"), ("hand", "String")],
        );
        let hosts = [
            host("a:1", schema(&[extra])),
            host("b:2", schema(&[T])),
            host("c:3", schema(&[T])),
        ];
        let r = compare(&expected_t(), &hosts, Some("a:1"));
        assert!(r.hosts[1].in_sync() && r.hosts[2].in_sync(), "{r:?}");
        assert_eq!(r.hosts[0].drift.len(), 1);
        let d = &r.hosts[0].drift[0];
        assert_eq!(
            (d.kind, d.column.as_deref(), d.found.as_deref()),
            (DriftKind::ExtraColumn, Some("hand"), Some("String"))
        );
        assert_eq!(d.to_string(), "app.t.hand: extra column (found String)");
        // Two against two: the entry node's definition.
        let hosts = [host("a:1", schema(&[extra])), host("b:2", schema(&[T]))];
        let r = compare(&expected_t(), &hosts, Some("b:2"));
        assert_eq!(r.hosts[0].drift[0].kind, DriftKind::ExtraColumn);
        assert!(r.hosts[1].in_sync());
    }

    #[test]
    fn columns_of_another_type_engines_and_extra_objects_are_differences() {
        let other: Obj = ("t", "MergeTree", &[("x", "UInt64")]);
        let stray: Obj = ("stray", "Log", &[("x", "UInt8")]);
        let inner: Obj = (".inner.mv", "Log", &[("x", "UInt8")]);
        let shared: Obj = ("shared", "Log", &[("x", "UInt8")]);
        let hosts = [
            host("a:1", schema(&[T, shared])),
            host("b:2", schema(&[T, shared])),
            host("c:3", schema(&[other, stray, inner, shared])),
        ];
        let r = compare(&expected_t(), &hosts, Some("a:1"));
        assert!(r.hosts[0].in_sync());
        let kinds: Vec<(DriftKind, String)> = r.hosts[2]
            .drift
            .iter()
            .map(|d| (d.kind, d.object.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (DriftKind::EngineDiffers, "app.t".into()),
                (DriftKind::ColumnType, "app.t".into()),
                (DriftKind::ExtraObject, "app.stray".into()),
            ]
        );
        // The lock table is on the entry node only, by design.
        let mut expected = expected_t();
        expected.ignored.insert(("app".into(), "stray".into()));
        let r = compare(&expected, &hosts, Some("a:1"));
        assert!(
            !r.hosts[2]
                .drift
                .iter()
                .any(|d| d.kind == DriftKind::ExtraObject)
        );
    }

    #[test]
    fn an_unreachable_host_is_reported_not_compared_and_nobody_has_no_reference() {
        let hosts = [
            host("a:1", schema(&[])),
            HostRead {
                host: "b:2".into(),
                schema: Err("Connection refused".into()),
            },
        ];
        let r = compare(&expected_t(), &hosts, None);
        assert!(r.hosts[0].in_sync());
        assert_eq!(
            r.hosts[1].unreachable.as_deref(),
            Some("Connection refused")
        );
        assert!(!r.has_drift());
        assert!(r.references.is_empty());
    }
}
