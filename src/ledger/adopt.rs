//! Adopting what another tool applied: the rows of Pillar's
//! `pillar_migrations` table read as versions, and which of them the
//! ledger does not record yet (`baseline --from-pillar`). The runtime reads
//! the table; the engine writes one `baselined` event per adopted version,
//! naming the table ([`crate::ledger::Record::Adopted`]).

use serde_json::Value;

use crate::ledger::fold::TargetState;
use crate::model::migration::Migration;
use crate::model::version::Version;

/// One migration a Pillar table lists as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub version: Version,
    /// When the table says it was applied (`inserted_at`, `applied_at`).
    pub applied_at: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The versions a Pillar table's rows (as JSON objects) list: a `version`
/// column, or the leading digits of a `migration` or `name` column (a file
/// name such as `20250528120000_create_users.exs`). Each version once, in
/// order.
pub fn pillar_listed(table: &str, rows: &[Value]) -> Result<Vec<Listed>, String> {
    let mut out: Vec<Listed> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let cell = ["version", "migration", "name"]
            .iter()
            .find_map(|c| row.get(*c).and_then(text).filter(|s| !s.trim().is_empty()));
        let Some(cell) = cell else {
            return Err(format!(
                "{table}: row {} has no `version`, `migration` or `name` column to read a version from",
                i + 1
            ));
        };
        let cell = cell.trim();
        let digits: String = cell.chars().take_while(char::is_ascii_digit).collect();
        let version = Version::parse(&digits).map_err(|_| {
            format!(
                "{table}: row {}: {cell:?} does not start with a version (Pillar's timestamp)",
                i + 1
            )
        })?;
        let applied_at = ["inserted_at", "applied_at", "executed_at"]
            .iter()
            .find_map(|c| row.get(*c).and_then(text));
        if !out.iter().any(|l| l.version == version) {
            out.push(Listed {
                version,
                applied_at,
            });
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

/// The listed migrations to adopt: each must be defined by a migration
/// file; those the ledger already records as applied are left out.
pub fn to_adopt<'a>(
    table: &str,
    listed: &'a [Listed],
    migrations: &'a [Migration],
    state: &TargetState,
) -> Result<Vec<(&'a Listed, &'a Migration)>, String> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for l in listed {
        match migrations.iter().find(|m| m.version == l.version) {
            Some(_) if state.is_applied(&l.version) => {}
            Some(m) => out.push((l, m)),
            None => missing.push(l.version.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{table} lists {} as applied, but no migration file defines {}; add the file(s) (or run from the folder that has them) and adopt again: nothing was recorded",
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_versions_from_the_columns_pillar_writes() {
        let rows = vec![
            json!({"migration": "20250529000000_b.exs", "inserted_at": "2025-05-29 00:00:01"}),
            json!({"version": 20250528120000u64, "name": "a"}),
            json!({"version": "20250528120000"}),
        ];
        let l = pillar_listed("db.pillar_migrations", &rows).unwrap();
        assert_eq!(
            l,
            vec![
                Listed {
                    version: Version::parse("20250528120000").unwrap(),
                    applied_at: None
                },
                Listed {
                    version: Version::parse("20250529000000").unwrap(),
                    applied_at: Some("2025-05-29 00:00:01".into())
                },
            ]
        );
        let e = pillar_listed("t", &[json!({"id": 1})]).unwrap_err();
        assert!(e.contains("row 1 has no `version`"), "{e}");
        let e = pillar_listed("t", &[json!({"migration": "create_users"})]).unwrap_err();
        assert!(
            e.contains("\"create_users\" does not start with a version"),
            "{e}"
        );
    }

    #[test]
    fn every_listed_version_needs_its_file() {
        let migrations = crate::source::memory::load_named(&[
            ("1_a.up.sql", "SELECT 1"),
            ("2_b.up.sql", "SELECT 2"),
        ]);
        let listed = |v: &str| Listed {
            version: Version::parse(v).unwrap(),
            applied_at: None,
        };
        let state = TargetState::default();
        let all = [listed("1"), listed("2")];
        let out = to_adopt("t", &all, &migrations, &state).unwrap();
        assert_eq!(out.len(), 2);
        let gone = [listed("1"), listed("3")];
        let e = to_adopt("t", &gone, &migrations, &state).unwrap_err();
        assert!(
            e.starts_with("t lists 3 as applied, but no migration file defines it"),
            "{e}"
        );
    }
}
