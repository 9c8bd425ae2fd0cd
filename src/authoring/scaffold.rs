//! `chmigrate new`: the next migration file from a built-in template (pure
//! except for the caller writing the result).

use crate::model::version::Version;

/// The built-in templates (files under `src/templates/`, embedded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Table,
    Alter,
    Index,
    Data,
    View,
}

impl Template {
    pub const ALL: [Template; 5] = [
        Template::Table,
        Template::Alter,
        Template::Index,
        Template::Data,
        Template::View,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Template::Table => "table",
            Template::Alter => "alter",
            Template::Index => "index",
            Template::Data => "data",
            Template::View => "view",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            Template::Table => include_str!("templates/table.sql"),
            Template::Alter => include_str!("templates/alter.sql"),
            Template::Index => include_str!("templates/index.sql"),
            Template::Data => include_str!("templates/data.sql"),
            Template::View => include_str!("templates/view.sql"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaffoldError {
    #[error("unknown template {0:?} (known: table, alter, index, data, view)")]
    UnknownTemplate(String),
    #[error(
        "migration name {0:?} must contain a letter and start with a letter after cleaning (letters, digits and '_')"
    )]
    BadName(String),
    #[error("no version above the existing ones can be written")]
    NoNextVersion,
}

impl std::str::FromStr for Template {
    type Err = ScaffoldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ScaffoldError::UnknownTemplate(s.to_string()))
    }
}

/// `Add Users Table!` → `add_users_table`.
pub fn snake_name(name: &str) -> Result<String, ScaffoldError> {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) || out.len() > 100 {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    Ok(out)
}

/// `YYYYMMDDHHMMSS` in UTC for a Unix time.
pub fn timestamp(unix_secs: u64) -> String {
    crate::clock::compact(unix_secs)
}

/// The version for a new migration: a timestamp when asked (or when the
/// folder already uses timestamps), else one more than the highest major.
pub fn next_version(
    existing: &[Version],
    use_timestamp: bool,
    now_unix: u64,
) -> Result<Version, ScaffoldError> {
    let max_major = existing
        .iter()
        .filter_map(|v| v.segments().first().copied())
        .max();
    let stamp = timestamp(now_unix);
    let next = |m: u64| m.checked_add(1).ok_or(ScaffoldError::NoNextVersion);
    let text = match max_major {
        _ if use_timestamp => stamp,
        Some(m) if m >= 10_000_000_000 => {
            // Timestamps already: a new one, kept above the newest.
            let s: u64 = stamp.parse().unwrap_or(0);
            s.max(next(m)?).to_string()
        }
        Some(m) => next(m)?.to_string(),
        None => "1".to_string(),
    };
    Version::parse(&text).map_err(|_| ScaffoldError::NoNextVersion)
}

/// File name for a new Flyway-style migration.
pub fn file_name(version: &Version, name: &str) -> String {
    format!("V{version}__{name}.sql")
}

/// Fills a template.
pub fn render(
    template: Template,
    version: &Version,
    name: &str,
    author: &str,
    created: &str,
) -> String {
    let description = name.replace('_', " ");
    template
        .text()
        .replace("{{version}}", version.as_str())
        .replace("{{name}}", name)
        .replace("{{description}}", &description)
        .replace("{{author}}", author)
        .replace("{{created}}", created)
}

/// The commented `chmigrate.yaml` that `init` writes.
pub fn config_template(database: &str, dir: &str) -> String {
    include_str!("templates/chmigrate.yaml")
        .replace("${DATABASE}", database)
        .replace("${DIR}", dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file::{FilePart, parse_file};
    use crate::sql::vars::Variables;
    use std::collections::BTreeMap;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(snake_name("Add Users Table!").unwrap(), "add_users_table");
        assert_eq!(snake_name("create-events").unwrap(), "create_events");
        assert!(snake_name("123").is_err());
        assert!(snake_name("  ").is_err());
        assert_eq!(next_version(&[], false, 0).unwrap().as_str(), "1");
        assert_eq!(
            next_version(&[v("1"), v("4.2"), v("3")], false, 0)
                .unwrap()
                .as_str(),
            "5"
        );
        assert_eq!(timestamp(0), "19700101000000");
        assert_eq!(timestamp(1_748_433_600), "20250528120000");
        assert_eq!(
            next_version(&[v("1")], true, 1_748_433_600)
                .unwrap()
                .as_str(),
            "20250528120000"
        );
        assert_eq!(
            next_version(&[v("20250528120000")], false, 1_748_433_600)
                .unwrap()
                .as_str(),
            "20250528120001"
        );
        assert!(next_version(&[v(&u64::MAX.to_string())], false, 0).is_err());
        assert_eq!("VIEW".parse::<Template>().unwrap(), Template::View);
        assert_eq!(
            "nope".parse::<Template>().unwrap_err().to_string(),
            "unknown template \"nope\" (known: table, alter, index, data, view)"
        );
    }

    #[test]
    fn every_template_renders_a_valid_migration() {
        let vars = Variables::new("db", None, "development", &BTreeMap::new()).unwrap();
        for t in Template::ALL {
            let text = render(t, &v("7"), "my_table", "me", "2025-01-01");
            let name = file_name(&v("7"), "my_table");
            let part =
                parse_file(&name, &name, &text, 1 << 20).unwrap_or_else(|e| panic!("{t:?}: {e:?}"));
            let Some(FilePart::Forward(d)) = part else {
                panic!("{t:?}")
            };
            assert_eq!(d.version, v("7"), "{t:?}");
            assert!(!d.up.is_empty(), "{t:?}");
            assert_eq!(d.down.is_some(), t != Template::Data, "{t:?}");
            for s in d.up.iter().chain(d.down.iter().flatten()) {
                assert!(vars.unknown_in(&s.sql).is_empty(), "{t:?}: {}", s.sql);
                assert!(!s.sql.contains("{{"), "{t:?}: {}", s.sql);
            }
        }
    }
}
