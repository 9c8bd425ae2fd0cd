//! Offline validation (pure): every check that needs no database, collected
//! into one list of diagnostics so a person sees all problems at once.

use crate::ledger::EventName;
use crate::ledger::fold::TargetState;
use crate::model::diagnostic::{self, Diagnostic};
use crate::model::migration::Migration;
use crate::plan::prepare::{OnClusterNote, PrepareSettings, prepare_statement};
use crate::plan::{Policy, Target, plan};
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
        for (i, stmt, loc) in m.all_statements() {
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
/// can be derived. The CLI passes the migrations under the `script`
/// strategy (their own `-- Rollback-Strategy:` applied, not the
/// environment's default), so a forward-only environment still checks that
/// each migration carries one.
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

/// `validate --check-syntax` (`migrations.check_syntax`): every written
/// statement, up and down, through [`crate::sql::syntax::check`]. A typo of
/// a leading keyword is an error; a statement the parser cannot read, a
/// warning. Derived rollbacks are chmigrate's own and not checked.
pub fn syntax(migrations: &[Migration]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for m in migrations {
        let down: &[crate::model::migration::Statement] = match (&m.down, m.down_derived) {
            (Some(d), false) => d,
            _ => &[],
        };
        let ups = m.up.iter().enumerate().map(|(i, s)| (s, m.up_location(i)));
        let downs = down
            .iter()
            .enumerate()
            .map(|(i, s)| (s, m.down_statement_location(i)));
        for (s, at) in ups.chain(downs) {
            match crate::sql::syntax::check(&s.sql) {
                None => {}
                Some(f @ crate::sql::syntax::SyntaxFinding::Typo { .. }) => {
                    out.push(Diagnostic::error(Some(at), f.to_string()));
                }
                Some(f) => out.push(Diagnostic::warning(Some(at), f.to_string())),
            }
        }
    }
    out
}

/// `validate --check-conflicts` for two files of one version: which one the
/// target applied (its checksum is the one recorded), so the other is the
/// file to renumber with `chmigrate resolve`.
pub fn duplicate_conflicts(
    migrations: &[Migration],
    duplicates: &[crate::source::Duplicate],
    state: &TargetState,
) -> Vec<Diagnostic> {
    use crate::ledger::fold::VersionState;
    let mut out = Vec::new();
    for kept in migrations {
        let dups: Vec<&crate::source::Duplicate> = duplicates
            .iter()
            .filter(|d| d.version == kept.version)
            .collect();
        if dups.is_empty() {
            continue;
        }
        let v = &kept.version;
        let mut files: Vec<(
            &crate::model::migration::Location,
            &crate::model::migration::Checksum,
        )> = vec![(&kept.location, &kept.checksum)];
        files.extend(dups.iter().map(|d| (&d.location, &d.checksum)));
        let names = |skip: &crate::model::migration::Location| {
            files
                .iter()
                .filter(|(l, _)| *l != skip)
                .map(|(l, _)| l.file.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let applied = match state.get(v) {
            Some(VersionState::Applied { checksum, .. }) => Some(checksum.clone()),
            _ => None,
        };
        match applied {
            None => out.push(Diagnostic::error(
                Some(kept.location.clone()),
                format!(
                    "version {v} is defined by {} files and the target applied none of them yet: renumber the one that should run later (`chmigrate resolve --migration FILE`)",
                    files.len()
                ),
            )),
            Some(recorded) => {
                let matching: Vec<_> = files
                    .iter()
                    .filter(|(_, c)| recorded.as_ref() == Some(*c))
                    .map(|(l, _)| *l)
                    .collect();
                match matching.as_slice() {
                    [applied_file] => {
                        for (l, _) in files.iter().filter(|(l, _)| l != applied_file) {
                            out.push(Diagnostic::error(
                                Some((*l).clone()),
                                format!(
                                    "version {v} is also defined by {}, which is the one the target applied (its checksum is recorded): this file is not applied anywhere yet; renumber it with `chmigrate resolve --migration {}`",
                                    applied_file.file, l.file
                                ),
                            ));
                        }
                    }
                    _ => out.push(Diagnostic::error(
                        Some(kept.location.clone()),
                        format!(
                            "version {v} is applied on the target, but none of its files ({}, {}) holds what was applied (checksum {}): compare them with the ledger (`chmigrate history`) before renumbering one",
                            kept.location.file,
                            names(&kept.location),
                            recorded.as_ref().map_or("unknown", |c| c.short())
                        ),
                    )),
                }
            }
        }
    }
    out
}

/// `validate --check-conflicts`, against the target's ledger: migrations
/// that look renumbered across branches. A version the ledger applied that
/// no file defines any more, while a pending file carries the same
/// description under another version, is almost always one migration moved
/// to a new number after a merge: applying it again would run it twice.
/// Also flags pending files numbered below the applied version (a branch
/// merged after newer migrations went out).
pub fn conflicts(
    migrations: &[Migration],
    state: &TargetState,
    history: &[crate::ledger::LedgerEntry],
) -> Vec<Diagnostic> {
    use crate::ledger::fold::VersionState;
    use std::collections::BTreeMap;
    let norm = |d: &str| d.trim().to_lowercase().replace(['_', '-'], " ");
    let mut applied_desc: BTreeMap<&str, String> = BTreeMap::new();
    for e in history {
        if e.is(EventName::Started) && !e.description.is_empty() {
            applied_desc.insert(e.version.as_str(), norm(&e.description));
        }
    }
    let defined: std::collections::BTreeSet<&crate::model::version::Version> =
        migrations.iter().map(|m| &m.version).collect();
    let mut out = Vec::new();
    for (version, st) in &state.versions {
        if !matches!(st, VersionState::Applied { .. }) || defined.contains(version) {
            continue;
        }
        let Some(desc) = applied_desc.get(version.to_string().as_str()) else {
            continue;
        };
        for m in migrations {
            if norm(&m.description) == *desc && !state.is_applied(&m.version) {
                out.push(Diagnostic::error(
                    Some(m.location.clone()),
                    format!(
                        "V{} {:?} looks renumbered: the target applied it as version {version}, which no file defines now; \
                         applying it again would run it twice (give it back version {version}, or baseline it)",
                        m.version, m.description
                    ),
                ));
            }
        }
    }
    if let Some(top) = state.applied_version() {
        for m in migrations {
            if &m.version < top && state.get(&m.version).is_none() {
                out.push(Diagnostic::warning(
                    Some(m.location.clone()),
                    format!(
                        "V{} is pending below the applied version {top}: a branch merged after newer migrations went out \
                         (it runs only with out_of_order; or renumber it: chmigrate resolve --migration {})",
                        m.version, m.location.file
                    ),
                ));
            }
        }
    }
    diagnostic::sort(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::from_files;
    use crate::sql::statement::OnClusterMode;
    use crate::sql::vars::Variables;
    use std::collections::BTreeMap;

    #[test]
    fn two_files_of_one_version_name_the_one_not_applied() {
        use crate::ledger::fold::tests::Log;
        let files: Vec<(String, String, String)> = [
            (
                "m/V3__add_email.sql",
                "ALTER TABLE u ADD COLUMN email String;",
            ),
            (
                "m/V3__add_phone.sql",
                "ALTER TABLE u ADD COLUMN phone String;",
            ),
        ]
        .iter()
        .map(|(n, c)| {
            (
                n.to_string(),
                n.rsplit('/').next().unwrap().to_string(),
                c.to_string(),
            )
        })
        .collect();
        let loaded = from_files(&files, 1 << 20);
        assert_eq!(loaded.duplicates.len(), 1);
        // The target applied the second file in name order (add_phone): the
        // one to renumber is add_email, although the loader kept it.
        let phone = loaded.duplicates[0].checksum.0.clone();
        let mut log = Log(Vec::new());
        log.applied("3", &phone, 1);
        let d = duplicate_conflicts(&loaded.migrations, &loaded.duplicates, &log.state());
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(
            text[0].starts_with("m/V3__add_email.sql:1: version 3 is also defined by m/V3__add_phone.sql, which is the one the target applied")
                && text[0].ends_with("chmigrate resolve --migration m/V3__add_email.sql`"),
            "{text:?}"
        );
        // Applied from the first file: the second is named.
        let email = loaded.migrations[0].checksum.0.clone();
        let mut log = Log(Vec::new());
        log.applied("3", &email, 1);
        let d = duplicate_conflicts(&loaded.migrations, &loaded.duplicates, &log.state());
        assert!(d[0].to_string().starts_with(
            "m/V3__add_phone.sql:1: version 3 is also defined by m/V3__add_email.sql"
        ));
        // Not applied: both named, no guess.
        let d = duplicate_conflicts(
            &loaded.migrations,
            &loaded.duplicates,
            &Log(Vec::new()).state(),
        );
        assert!(
            d[0].to_string().contains("applied none of them yet"),
            "{d:?}"
        );
    }

    #[test]
    fn conflicts_find_renumbered_and_merged_below_applied() {
        use crate::ledger::LedgerEntry;
        use crate::ledger::fold::tests::Log;
        let files: Vec<(String, String, String)> = [
            ("V1__users.sql", "SELECT 1;"),
            ("V2__late_branch.sql", "SELECT 1;"),
            ("V4__create_orders.sql", "SELECT 1;"),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), n.to_string(), c.to_string()))
        .collect();
        let loaded = from_files(&files, 1 << 20);
        let mut log = Log(Vec::new());
        log.applied("1", "x", 1).applied("3", "y", 1);
        let started = |v: &str, d: &str| LedgerEntry {
            version: v.into(),
            event: "started".into(),
            description: d.into(),
            ..Default::default()
        };
        let history = [started("1", "users"), started("3", "create orders")];
        let text: Vec<String> = conflicts(&loaded.migrations, &log.state(), &history)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(text.len(), 2, "{text:#?}");
        assert!(
            text[0].starts_with(
                "V2__late_branch.sql:1: warning: V2 is pending below the applied version 3"
            ),
            "{text:#?}"
        );
        assert!(text[1].starts_with("V4__create_orders.sql:1: V4 \"create orders\" looks renumbered: the target applied it as version 3"), "{text:#?}");
        // Nothing applied: nothing conflicts.
        assert!(conflicts(&loaded.migrations, &TargetState::default(), &[]).is_empty());
    }

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
            lookups: Default::default(),
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
