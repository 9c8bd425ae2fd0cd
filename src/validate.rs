//! Offline validation (pure): every check that needs no database, collected
//! into one list of diagnostics so a person sees all problems at once.

use crate::diagnostic::{self, Diagnostic};
use crate::history::TargetState;
use crate::migration::Migration;
use crate::plan::{Policy, Target, plan};
use crate::prepare::{OnClusterNote, PrepareSettings, prepare_statement};
use crate::source::SourceError;

/// Runs the offline checks: source errors, placeholders and `ON CLUSTER`
/// placement of every up and down statement, dependencies (missing, cyclic,
/// in another environment).
pub fn validate_offline(
    migrations: &[Migration],
    source_errors: &[SourceError],
    settings: &PrepareSettings,
    policy: &Policy,
) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = source_errors
        .iter()
        .cloned()
        .map(Diagnostic::from)
        .collect();
    for m in migrations {
        let down = m.down.as_deref().unwrap_or(&[]);
        let stmts =
            m.up.iter()
                .enumerate()
                .map(|(i, s)| (i, s, m.up_location(i)))
                .chain(
                    down.iter()
                        .enumerate()
                        .map(|(i, s)| (i, s, m.down_statement_location(i))),
                );
        for (i, stmt, loc) in stmts {
            match prepare_statement(i, stmt, loc, settings) {
                Ok(p) => {
                    if let OnClusterNote::Unrecognized(reason) = p.note {
                        out.push(Diagnostic::warning(
                            Some(p.location),
                            format!("sent without ON CLUSTER: {reason}"),
                        ));
                    }
                }
                Err(d) => out.push(d),
            }
        }
    }
    if let Err(problems) = plan(migrations, &TargetState::default(), &Target::Latest, policy) {
        out.extend(problems.into_iter().map(Diagnostic::from));
    }
    diagnostic::sort(&mut out);
    out.dedup();
    out
}

/// The `require_rollback` policy (`validate --require-rollback`): every
/// migration with neither a written nor a derivable rollback, and why none
/// can be derived.
pub fn require_rollback(migrations: &[Migration]) -> Vec<Diagnostic> {
    migrations
        .iter()
        .filter(|m| m.down.is_none())
        .map(|m| {
            Diagnostic::error(
                Some(m.location.clone()),
                format!(
                    "V{} has no rollback, written or derivable ({}): write one (-- ROLLBACK: lines, a down file or a down section)",
                    m.version,
                    m.irreversible.as_deref().unwrap_or("none written")
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::from_files;
    use crate::sql::statement::OnClusterMode;
    use crate::vars::Variables;
    use std::collections::BTreeMap;

    #[test]
    fn require_rollback_names_what_has_none_and_why() {
        let files: Vec<(String, String, String)> = [
            ("V1__a.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory;"),
            (
                "V2__b.sql",
                "CREATE TABLE b (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE b;",
            ),
            ("V3__c.sql", "INSERT INTO a VALUES (1);"),
            ("4_d.up.sql", "CREATE TABLE d (x UInt8) ENGINE = Memory;"),
            ("4_d.down.sql", "-- irreversible"),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), n.to_string(), c.to_string()))
        .collect();
        let loaded = from_files(&files, 1 << 20);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let text: Vec<String> = require_rollback(&loaded.migrations)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "V3__c.sql:1: V3 has no rollback, written or derivable (statement 1 (line 1) cannot be undone automatically: an INSERT is a data migration): write one (-- ROLLBACK: lines, a down file or a down section)",
                "4_d.up.sql:1: V4 has no rollback, written or derivable (its down file is empty): write one (-- ROLLBACK: lines, a down file or a down section)",
            ]
        );
    }

    #[test]
    fn reports_every_problem_with_file_and_line() {
        let files: Vec<(String, String, String)> = [
            ("V1__a.sql", "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${databse}.a;"),
            ("V2__b.sql", "-- Dependencies: 7\nSELECT 1;"),
            ("V3__c.sql", "SYSTEM FLUSH LOGS;"),
            ("V4_bad.sql", "SELECT 1;"),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), n.to_string(), c.to_string()))
        .collect();
        let loaded = from_files(&files, 1 << 20);
        let settings = PrepareSettings {
            cluster: Some("c".into()),
            on_cluster: OnClusterMode::Auto,
            variables: Variables::new("db", Some("c"), "dev", &BTreeMap::new()).unwrap(),
        };
        let policy = Policy {
            environment: "dev".into(),
            ..Default::default()
        };
        let diags = validate_offline(&loaded.migrations, &loaded.errors, &settings, &policy);
        let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "V1__a.sql:2: unknown placeholder ${databse}",
                "V2__b.sql:1: V2 depends on V7, which no source defines",
                "V3__c.sql:1: warning: sent without ON CLUSTER: statements starting with \"SYSTEM\" are not rewritten",
                "V4_bad.sql:1: bad migration file name: \"V4_bad.sql\": Flyway-style names need two underscores: V<version>__<description>.sql",
            ]
        );
    }
}
