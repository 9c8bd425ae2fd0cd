//! Turning a plan into the exact SQL to send (pure): variables substituted,
//! then `ON CLUSTER` added when a cluster is configured, and in statements
//! sent `ON CLUSTER` every unqualified table reference qualified with the
//! target database ([`crate::sql::qualify`]).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::model::diagnostic::Diagnostic;
use crate::model::migration::{Location, Migration, Statement};
use crate::model::version::Version;
use crate::plan::{Plan, Step};
use crate::sql::qualify::{created_lookup_names, qualify};
use crate::sql::statement::{OnClusterMode, Rewrite, StatementKind, add_on_cluster, analyze};
use crate::sql::vars::Variables;

/// How statements are turned into SQL for one target.
#[derive(Debug, Clone)]
pub struct PrepareSettings {
    pub cluster: Option<String>,
    pub on_cluster: OnClusterMode,
    pub variables: Variables,
    /// Dictionaries and `Join` tables the migrations create: their names in
    /// `dictGet*`/`joinGet` strings are qualified too ([`prepare`] fills it).
    pub lookups: BTreeSet<String>,
}

impl PrepareSettings {
    /// These settings knowing the lookup objects `migrations` create.
    pub fn with_lookups_of(&self, migrations: &[Migration]) -> PrepareSettings {
        let mut s = self.clone();
        for m in migrations {
            for st in &m.up {
                if let Ok(sql) = self.variables.substitute(&st.sql) {
                    s.lookups.extend(created_lookup_names(&sql));
                }
            }
        }
        s
    }

    /// Qualifies the unqualified table references of a statement sent
    /// `ON CLUSTER`.
    fn qualified(&self, sql: String, location: &Location) -> Result<String, Diagnostic> {
        let Some(database) = self.variables.get("database") else {
            return Ok(sql);
        };
        qualify(&sql, database, &self.lookups).map_err(|e| {
            Diagnostic::error(
                Some(location.clone()),
                format!("sent ON CLUSTER, so names must not depend on the current database: {e}"),
            )
        })
    }
}

/// The `ON CLUSTER` mode to use against a database with `engine`: a
/// `Replicated` database replicates DDL itself and rejects `ON CLUSTER`, so
/// nothing is rewritten there.
pub fn effective_on_cluster(mode: OnClusterMode, database_engine: &str) -> OnClusterMode {
    if database_engine == "Replicated" {
        OnClusterMode::Never
    } else {
        mode
    }
}

/// What happened to a statement's `ON CLUSTER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "on_cluster", content = "reason")]
pub enum OnClusterNote {
    /// No cluster configured, or mode `never`.
    Off,
    Added,
    AlreadyPresent,
    /// INSERT, SELECT, SET: runs once, through the entry node.
    NotApplicable,
    /// Sent as written; chmigrate did not know where to put ON CLUSTER.
    Unrecognized(String),
}

/// One statement ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreparedStatement {
    /// 0-based index within its migration's up or down statements.
    pub index: usize,
    pub sql: String,
    pub location: Location,
    pub kind: StatementKind,
    pub note: OnClusterNote,
}

/// One plan step with its statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreparedStep {
    #[serde(flatten)]
    pub step: Step,
    pub description: String,
    pub checksum: Option<String>,
    /// A rollback chmigrate derived from the forward statements (none was
    /// written).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub derived: bool,
    /// Freeze what each statement drops before it runs, whatever the
    /// backup policy (a `freeze-and-drop` rollback).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub freeze: bool,
    pub statements: Vec<PreparedStatement>,
}

/// Prepares one statement found at `location`.
pub fn prepare_statement(
    index: usize,
    stmt: &Statement,
    location: Location,
    settings: &PrepareSettings,
) -> Result<PreparedStatement, Diagnostic> {
    let sql = settings.variables.substitute(&stmt.sql).map_err(|u| {
        let line = location.line + stmt.sql[..u.offset].matches('\n').count();
        Diagnostic::error(
            Some(Location::new(location.file.clone(), line)),
            u.message(),
        )
    })?;
    let info = analyze(&sql).map_err(|e| {
        Diagnostic::error(Some(location.clone()), format!("after substitution: {e}"))
    })?;
    let note = match (&settings.cluster, settings.on_cluster) {
        (None, _) | (_, OnClusterMode::Never) => OnClusterNote::Off,
        (Some(cluster), mode) => match add_on_cluster(&sql, cluster, mode)
            .map_err(|e| Diagnostic::error(Some(location.clone()), e.to_string()))?
        {
            Rewrite::Rewritten(s) => {
                return Ok(PreparedStatement {
                    index,
                    sql: settings.qualified(s, &location)?,
                    location,
                    kind: info.kind,
                    note: OnClusterNote::Added,
                });
            }
            Rewrite::AlreadyOnCluster => OnClusterNote::AlreadyPresent,
            Rewrite::NotApplicable => OnClusterNote::NotApplicable,
            Rewrite::Unrecognized { reason } => {
                if mode == OnClusterMode::Always {
                    return Err(Diagnostic::error(
                        Some(location),
                        format!(
                            "cannot add ON CLUSTER ({reason}) and on_cluster is 'always'; write ON CLUSTER yourself or use mode 'auto'"
                        ),
                    ));
                }
                OnClusterNote::Unrecognized(reason)
            }
        },
    };
    // Sent ON CLUSTER as written (also where no cluster is configured):
    // qualified as well.
    let sql = if note == OnClusterNote::AlreadyPresent || info.has_on_cluster {
        settings.qualified(sql, &location)?
    } else {
        sql
    };
    Ok(PreparedStatement {
        index,
        sql,
        location,
        kind: info.kind,
        note,
    })
}

/// Prepares every step of `plan`; collects every problem.
pub fn prepare(
    plan: &Plan,
    migrations: &[Migration],
    settings: &PrepareSettings,
) -> Result<Vec<PreparedStep>, Vec<Diagnostic>> {
    let settings = &settings.with_lookups_of(migrations);
    let find = |v: &Version| migrations.iter().find(|m| &m.version == v);
    let mut out = Vec::with_capacity(plan.steps.len());
    let mut errors = Vec::new();
    for step in &plan.steps {
        let (migration, stmts, from, down) = match step {
            Step::Baseline { .. } => {
                out.push(PreparedStep {
                    step: step.clone(),
                    description: "baseline".into(),
                    checksum: None,
                    derived: false,
                    freeze: false,
                    statements: Vec::new(),
                });
                continue;
            }
            Step::Apply {
                version,
                from_statement,
            } => {
                let Some(m) = find(version) else { continue };
                (m, m.up.as_slice(), *from_statement, false)
            }
            Step::Rollback {
                version,
                from_statement,
            } => {
                let Some(m) = find(version) else { continue };
                (m, m.down.as_deref().unwrap_or(&[]), *from_statement, true)
            }
        };
        let mut statements = Vec::new();
        for (index, stmt) in stmts.iter().enumerate().skip(from) {
            let loc = if down {
                migration.down_statement_location(index)
            } else {
                migration.up_location(index)
            };
            match prepare_statement(index, stmt, loc, settings) {
                Ok(p) => statements.push(p),
                Err(d) => errors.push(d),
            }
        }
        out.push(PreparedStep {
            step: step.clone(),
            description: migration.description.clone(),
            checksum: Some(migration.checksum.0.clone()),
            derived: down && migration.down_derived,
            freeze: down
                && migration.strategy == crate::model::strategy::RollbackStrategy::FreezeAndDrop,
            statements,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(cluster: Option<&str>, mode: OnClusterMode) -> PrepareSettings {
        PrepareSettings {
            lookups: Default::default(),
            cluster: cluster.map(str::to_string),
            on_cluster: mode,
            variables: Variables::new("analytics", cluster, "dev", &BTreeMap::new()).unwrap(),
        }
    }

    fn st(sql: &str) -> Statement {
        Statement {
            sql: sql.into(),
            line: 10,
        }
    }

    #[test]
    fn substitutes_then_adds_on_cluster() {
        let p = prepare_statement(
            0,
            &st("CREATE TABLE ${database}.t (x UInt8) ENGINE = Memory"),
            Location::new("V1__a.sql", 10),
            &settings(Some("chm_cluster"), OnClusterMode::Auto),
        )
        .unwrap();
        assert_eq!(
            p.sql,
            "CREATE TABLE analytics.t ON CLUSTER chm_cluster (x UInt8) ENGINE = Memory"
        );
        assert_eq!(p.note, OnClusterNote::Added);
        let p = prepare_statement(
            0,
            &st("INSERT INTO ${database}.t VALUES (1)"),
            Location::new("f", 1),
            &settings(Some("c"), OnClusterMode::Auto),
        )
        .unwrap();
        assert_eq!(p.sql, "INSERT INTO analytics.t VALUES (1)");
        assert_eq!(p.note, OnClusterNote::NotApplicable);
        let p = prepare_statement(
            0,
            &st("DROP TABLE t"),
            Location::new("f", 1),
            &settings(None, OnClusterMode::Always),
        )
        .unwrap();
        assert_eq!(
            (p.sql.as_str(), p.note),
            ("DROP TABLE t", OnClusterNote::Off)
        );
    }

    #[test]
    fn replicated_databases_get_no_on_cluster() {
        assert_eq!(
            effective_on_cluster(OnClusterMode::Always, "Replicated"),
            OnClusterMode::Never
        );
        assert_eq!(
            effective_on_cluster(OnClusterMode::Auto, "Atomic"),
            OnClusterMode::Auto
        );
        assert_eq!(
            effective_on_cluster(OnClusterMode::Auto, "Ordinary"),
            OnClusterMode::Auto
        );
    }

    #[test]
    fn always_mode_refuses_what_it_cannot_place() {
        let s = st("SYSTEM RELOAD DICTIONARIES");
        let auto = prepare_statement(
            0,
            &s,
            Location::new("f", 1),
            &settings(Some("c"), OnClusterMode::Auto),
        )
        .unwrap();
        assert!(matches!(auto.note, OnClusterNote::Unrecognized(_)));
        assert_eq!(auto.sql, "SYSTEM RELOAD DICTIONARIES");
        let err = prepare_statement(
            0,
            &s,
            Location::new("f", 1),
            &settings(Some("c"), OnClusterMode::Always),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("f:1: cannot add ON CLUSTER"),
            "{err}"
        );
    }

    #[test]
    fn unknown_placeholder_is_located_on_its_line() {
        let err = prepare_statement(
            0,
            &st("CREATE TABLE t\n(\n  x ${typ}\n)"),
            Location::new("V1__a.sql", 10),
            &settings(None, OnClusterMode::Auto),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "V1__a.sql:12: unknown placeholder ${typ}");
    }
}
