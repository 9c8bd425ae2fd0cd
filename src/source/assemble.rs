//! Pairing file parts into migrations and rejecting duplicate versions.

use std::collections::BTreeMap;

use super::file::{DownPart, Draft, FilePart};
use super::{Loaded, SourceError, SourceErrorKind};
use crate::model::migration::{Checksum, Migration, SourceFormat};
use crate::model::version::Version;

/// Builds migrations from the parts of many files. Parts are taken in the
/// order given (callers sort them by path), so the second definition of a
/// version is the one reported, naming the first.
pub fn assemble(parts: Vec<FilePart>) -> Loaded {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut duplicates = Vec::new();
    let mut forwards: BTreeMap<Version, Draft> = BTreeMap::new();
    let mut downs: BTreeMap<Version, DownPart> = BTreeMap::new();
    for part in parts {
        match part {
            FilePart::Forward(mut d) => {
                warnings.append(&mut d.warnings);
                if let Some(first) = forwards.get(&d.version) {
                    duplicates.push(super::Duplicate {
                        version: d.version.clone(),
                        location: d.location.clone(),
                        checksum: Checksum::of(&d.up, d.down.as_deref()),
                    });
                    errors.push(SourceError::new(
                        d.location.clone(),
                        SourceErrorKind::DuplicateVersion {
                            version: d.version.clone(),
                            other: first.location.clone(),
                        },
                    ));
                } else {
                    forwards.insert(d.version.clone(), *d);
                }
            }
            FilePart::Down(p) => {
                if let Some(first) = downs.get(&p.version) {
                    errors.push(SourceError::new(
                        p.location.clone(),
                        SourceErrorKind::DuplicateVersion {
                            version: p.version.clone(),
                            other: first.location.clone(),
                        },
                    ));
                } else {
                    downs.insert(p.version.clone(), p);
                }
            }
        }
    }
    let mut migrations = Vec::with_capacity(forwards.len());
    for (version, draft) in forwards {
        let mut down = draft.down;
        let mut down_location = None;
        if let Some(part) = downs.remove(&version) {
            if down.is_some() {
                errors.push(SourceError::new(
                    part.location.clone(),
                    SourceErrorKind::RollbackConflict(format!(
                        "rollback for version {version} is written twice: here and as -- ROLLBACK: lines in {}",
                        draft.location.file
                    )),
                ));
                continue;
            }
            if !part.statements.is_empty() {
                down = Some(part.statements);
            }
            down_location = Some(part.location);
        }
        if draft.format != SourceFormat::Flyway || down_location.is_some() {
            match (draft.header.rollback, &down) {
                (Some((true, line)), None) => errors.push(SourceError::new(
                    crate::model::migration::Location::new(draft.location.file.clone(), line),
                    SourceErrorKind::RollbackConflict(
                        "header says Rollback: true but no rollback is written".into(),
                    ),
                )),
                (Some((false, line)), Some(_)) => errors.push(SourceError::new(
                    crate::model::migration::Location::new(draft.location.file.clone(), line),
                    SourceErrorKind::RollbackConflict(
                        "header says Rollback: false but a rollback is written".into(),
                    ),
                )),
                _ => {}
            }
        }
        let declared_none = matches!(draft.header.rollback, Some((false, _)));
        let checksum = Checksum::of(&draft.up, down.as_deref());
        let mut migration = Migration {
            version,
            description: draft.description,
            up: draft.up,
            down,
            dependencies: draft.header.dependencies,
            environments: draft.header.environments,
            location: draft.location,
            down_location,
            format: draft.format,
            name: draft.header.migration,
            author: draft.header.author,
            created: draft.header.created,
            checksum,
            down_derived: false,
            irreversible: None,
            rollback_strategy: draft.header.rollback_strategy,
            strategy: Default::default(),
            rollback_declared_none: false,
        };
        if migration.down.is_none() && migration.down_location.is_some() {
            // An empty down file is the author saying "no rollback".
            migration.irreversible = Some("its down file is empty".into());
            migration.rollback_declared_none = true;
        } else if migration.down.is_none() && declared_none {
            migration.irreversible = Some("its header says Rollback: false".into());
            migration.rollback_declared_none = true;
        } else {
            migration.derive_missing_rollback();
        }
        migrations.push(migration);
    }
    for (_, part) in downs {
        errors.push(SourceError::new(
            part.location,
            SourceErrorKind::DownWithoutUp,
        ));
    }
    Loaded {
        migrations,
        errors,
        warnings,
        duplicates,
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::parse_file;
    use super::*;

    fn parts(files: &[(&str, &str)]) -> Vec<FilePart> {
        files
            .iter()
            .filter_map(|(n, c)| parse_file(n, n, c, 1 << 20).unwrap())
            .collect()
    }

    #[test]
    fn pairs_up_and_down_files() {
        let loaded = assemble(parts(&[
            ("1_a.up.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory;"),
            ("1_a.down.sql", "DROP TABLE a;"),
            ("2_b.up.sql", "CREATE TABLE b (x UInt8) ENGINE = Memory;"),
        ]));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let m = &loaded.migrations;
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].down.as_ref().unwrap()[0].sql, "DROP TABLE a");
        assert_eq!(
            m[0].down_location.as_ref().unwrap().to_string(),
            "1_a.down.sql:1"
        );
        // No down file: derived from the CREATE, and marked so.
        assert_eq!(m[1].down.as_ref().unwrap()[0].sql, "DROP TABLE IF EXISTS b");
        assert!(m[1].down_derived && !m[0].down_derived);
        // The checksum covers what was written only.
        assert_eq!(m[1].checksum, Checksum::of(&m[1].up, None));
        assert_eq!(m[1].compute_checksum(), m[1].checksum);
    }

    #[test]
    fn an_empty_down_file_means_no_rollback() {
        // golang-migrate's convention for an irreversible migration.
        for down in ["1_a.down.sql", "U1__a.sql"] {
            let up = if down.starts_with('U') {
                "V1__a.sql"
            } else {
                "1_a.up.sql"
            };
            let loaded = assemble(parts(&[
                (up, "CREATE TABLE a (x UInt8) ENGINE = Memory;"),
                (down, "-- nothing to undo\n"),
            ]));
            assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
            let m = &loaded.migrations[0];
            assert_eq!(m.down, None, "{down}");
            assert_eq!(m.irreversible.as_deref(), Some("its down file is empty"));
        }
    }

    #[test]
    fn duplicate_versions_name_both_files() {
        let loaded = assemble(parts(&[
            ("V1__a.sql", "SELECT 1;"),
            ("1_b.up.sql", "SELECT 2;"),
            ("1.0_c.sql", "-- migrate:up\nSELECT 3;"),
        ]));
        let msgs: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "1_b.up.sql:1: version 1 is defined twice: here and at V1__a.sql:1",
                "1.0_c.sql:1: version 1.0 is defined twice: here and at V1__a.sql:1",
            ]
        );
    }

    #[test]
    fn orphan_down_and_double_rollback_are_errors() {
        let loaded = assemble(parts(&[
            ("V1__a.sql", "SELECT 1;\n-- ROLLBACK: SELECT 0;"),
            ("U1__a.sql", "SELECT 0;"),
            ("9_z.down.sql", "SELECT 0;"),
        ]));
        let msgs: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("U1__a.sql:1: rollback for version 1 is written twice"));
        assert_eq!(
            msgs[1],
            "9_z.down.sql:1: down migration has no matching up migration"
        );
    }

    #[test]
    fn flyway_undo_file_becomes_the_down_part() {
        let loaded = assemble(parts(&[
            ("V1__a.sql", "SELECT 1;"),
            ("U1__a.sql", "SELECT 0;"),
        ]));
        assert!(loaded.errors.is_empty());
        assert_eq!(
            loaded.migrations[0].down.as_ref().unwrap()[0].sql,
            "SELECT 0"
        );
    }

    #[test]
    fn same_sql_has_same_checksum_in_every_format() {
        let loaded = assemble(parts(&[
            (
                "V1__a.sql",
                "-- Author: x\nCREATE TABLE a (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE a;",
            ),
            (
                "2_a.up.sql",
                "CREATE TABLE a (x UInt8) ENGINE = Memory;\r\n",
            ),
            ("2_a.down.sql", "DROP TABLE a"),
            (
                "3_a.sql",
                "-- migrate:up\nCREATE TABLE a (x UInt8) ENGINE = Memory;   \n-- migrate:down\nDROP TABLE a;\n",
            ),
        ]));
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let sums: Vec<&str> = loaded
            .migrations
            .iter()
            .map(|m| m.checksum.0.as_str())
            .collect();
        assert_eq!(sums[0], sums[1]);
        assert_eq!(sums[1], sums[2]);
    }
}
