//! Migrations held in memory: files from ConfigMap keys, and migrations
//! built field by field from `ClickHouseMigration` resources.

use std::sync::Arc;

use super::file::{Draft, FilePart};
use super::header::{Header, parse_dependencies, parse_environments};
use super::{Loaded, SourceError, SourceErrorKind, assemble};
use crate::model::migration::{Location, SourceFormat};
use crate::model::version::Version;

/// A migration given field by field (what the operator reads from a
/// `ClickHouseMigration`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryMigration {
    /// Names the origin in messages, e.g. `ClickHouseMigration team-a/add-users`.
    pub origin: String,
    pub version: String,
    pub description: String,
    pub up: String,
    pub down: Option<String>,
    pub depends_on: Vec<String>,
    pub environments: Vec<String>,
    /// `script`, `freeze-and-drop` or `forward-only`.
    pub rollback_strategy: Option<String>,
}

/// Test files named as their content says (`(file name, content)`), loaded
/// with the default size limit; any source error fails the test.
#[cfg(test)]
pub(crate) fn load_named(files: &[(&str, &str)]) -> Vec<crate::model::migration::Migration> {
    let files: Vec<(String, String, String)> = files
        .iter()
        .map(|(n, c)| (n.to_string(), n.to_string(), c.to_string()))
        .collect();
    let l = from_files(&files, 1 << 20);
    assert!(l.errors.is_empty(), "{:?}", l.errors);
    l.migrations
}

/// Parses files held in memory: `(display name, file name, content)`, as a
/// ConfigMap's keys are. The same rules as files in a folder apply.
pub fn from_files(files: &[(String, String, String)], max_bytes: u64) -> Loaded {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    for (display, name, content) in files {
        match super::parse_any(display, name, content, max_bytes) {
            Ok(Some(p)) => parts.push(p),
            Ok(None) => {}
            Err(e) => errors.extend(e),
        }
    }
    let mut loaded = assemble(parts);
    errors.append(&mut loaded.errors);
    loaded.errors = errors;
    loaded
}

/// Builds migrations from in-memory definitions.
pub fn from_memory(items: &[MemoryMigration], max_bytes: u64) -> Loaded {
    let mut parts = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        match draft(item, max_bytes) {
            Ok(d) => parts.push(FilePart::Forward(Box::new(d))),
            Err(e) => errors.extend(e),
        }
    }
    let mut loaded = assemble(parts);
    errors.append(&mut loaded.errors);
    loaded.errors = errors;
    loaded
}

fn draft(item: &MemoryMigration, max_bytes: u64) -> Result<Draft, Vec<SourceError>> {
    let origin: Arc<str> = Arc::from(item.origin.as_str());
    let err = |field: &str, line: usize, kind: SourceErrorKind| {
        SourceError::new(
            Location::new(Arc::from(format!("{origin} {field}")), line),
            kind,
        )
    };
    let mut errors = Vec::new();
    let version = Version::parse(
        item.version
            .strip_prefix(['V', 'v'])
            .unwrap_or(&item.version),
    )
    .map_err(|e| {
        err(
            "version",
            1,
            SourceErrorKind::InvalidResource(e.to_string()),
        )
    });
    let size = (item.up.len() + item.down.as_ref().map_or(0, String::len)) as u64;
    if size > max_bytes {
        errors.push(err(
            "up",
            1,
            SourceErrorKind::TooLarge {
                size,
                limit: max_bytes,
            },
        ));
    }
    let split = |field: &str, text: &str| {
        super::statements(text, &Arc::from(format!("{origin} {field}")), |l| l)
    };
    let up = split("up", &item.up)
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
    if up.is_empty() && errors.is_empty() {
        errors.push(err("up", 1, SourceErrorKind::Empty));
    }
    let down = match &item.down {
        Some(text) => match split("down", text) {
            Ok(v) if v.is_empty() => None,
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        None => None,
    };
    let mut header = Header::default();
    match parse_dependencies(&item.depends_on.join(",")) {
        Ok(d) => header.dependencies = d,
        Err(e) => errors.push(err("dependsOn", 1, SourceErrorKind::InvalidResource(e))),
    }
    if !item.environments.is_empty() {
        match parse_environments(&item.environments.join(",")) {
            Ok(e) => header.environments = e,
            Err(e) => errors.push(err("environments", 1, SourceErrorKind::InvalidResource(e))),
        }
    }
    if let Some(s) = &item.rollback_strategy {
        match crate::model::strategy::RollbackStrategy::parse(s) {
            Ok(s) => header.rollback_strategy = Some(s),
            Err(e) => errors.push(err(
                "rollbackStrategy",
                1,
                SourceErrorKind::InvalidResource(e),
            )),
        }
    }
    let version = match version {
        Ok(v) => v,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Draft {
        version,
        description: item.description.clone(),
        up,
        down,
        header,
        location: Location::new(origin, 1),
        format: SourceFormat::Memory,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(version: &str, up: &str) -> MemoryMigration {
        MemoryMigration {
            origin: format!("ClickHouseMigration ns/m{version}"),
            version: version.into(),
            description: "d".into(),
            up: up.into(),
            ..Default::default()
        }
    }

    #[test]
    fn builds_migrations_with_the_same_checksum_as_files() {
        let mut a = item("1", "CREATE TABLE a (x UInt8) ENGINE = Memory;");
        a.down = Some("DROP TABLE a;".into());
        a.depends_on = vec!["0.5".into()];
        a.environments = vec!["staging".into()];
        let mem = from_memory(&[a], 1 << 20);
        assert!(mem.errors.is_empty(), "{:?}", mem.errors);
        let files = from_files(
            &[(
                "cm/key".into(),
                "V1__a.sql".into(),
                "CREATE TABLE a (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE a;".into(),
            )],
            1 << 20,
        );
        assert!(files.errors.is_empty(), "{:?}", files.errors);
        assert_eq!(mem.migrations[0].checksum, files.migrations[0].checksum);
        assert_eq!(
            mem.migrations[0].dependencies,
            vec![Version::parse("0.5").unwrap()]
        );
        assert!(!mem.migrations[0].environments.includes("production"));
    }

    #[test]
    fn reports_bad_fields_by_resource_and_field() {
        let mem = from_memory(
            &[
                item("x1", "SELECT 1"),
                item("2", "SELECT 'a"),
                item("3", ""),
            ],
            1 << 20,
        );
        let msgs: Vec<String> = mem.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            msgs,
            [
                "ClickHouseMigration ns/mx1 version:1: version \"x1\" has a non-numeric segment \"x1\"",
                "ClickHouseMigration ns/m2 up:1: unterminated string literal",
                "ClickHouseMigration ns/m3 up:1: migration has no SQL statements",
            ]
        );
    }

    #[test]
    fn duplicate_versions_across_resources() {
        let mem = from_memory(&[item("1", "SELECT 1"), item("1.0", "SELECT 2")], 1 << 20);
        assert_eq!(mem.errors.len(), 1);
        assert!(mem.errors[0].to_string().contains("defined twice"));
        assert!(
            mem.errors[0]
                .to_string()
                .contains("ClickHouseMigration ns/m1:1")
        );
    }

    #[test]
    fn configmap_keys_holding_pillar_files_are_read() {
        let files = vec![(
            "ConfigMap ns/m 20250528120000_users.exs".to_string(),
            "20250528120000_users.exs".to_string(),
            "defmodule M do\n  def up do\n    \"CREATE TABLE users (id UInt64) ENGINE = Memory\"\n  end\nend\n".to_string(),
        )];
        let loaded = from_files(&files, 1 << 20);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.migrations.len(), 1);
        assert_eq!(loaded.migrations[0].version.to_string(), "20250528120000");
        assert_eq!(loaded.migrations[0].up[0].line, 3);
    }
}
