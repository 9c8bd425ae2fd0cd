//! The header comments at the top of a migration file:
//!
//! ```sql
//! -- Migration: create_events
//! -- Version: 3
//! -- Description: Events table
//! -- Author: data-platform
//! -- Created: 2025-05-28
//! -- Dependencies: 1, 2
//! -- Environment: all            (or: staging,production)
//! -- Rollback: true              (true|false: whether a rollback is written)
//! ```
//!
//! The header is the run of `--` comment lines (blank lines allowed) before
//! the first line of anything else. Keys are case-insensitive, except that a
//! line starting `-- ROLLBACK:` in capitals is rollback SQL, not a header.
//! Unknown `-- Key: value` lines are ordinary comments.

use crate::model::migration::Environments;
use crate::model::version::Version;

/// A parsed header. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub migration: Option<String>,
    pub version: Option<(Version, usize)>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub created: Option<String>,
    pub dependencies: Vec<Version>,
    pub environments: Environments,
    /// `-- Rollback: true|false` and its line.
    pub rollback: Option<(bool, usize)>,
    /// `-- Rollback-Strategy: script|freeze-and-drop|forward-only`.
    pub rollback_strategy: Option<crate::model::strategy::RollbackStrategy>,
}

/// A header line that could not be read: its 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError {
    pub line: usize,
    pub message: String,
}

/// Environment names: lowercase letters, digits, `-` and `_`.
pub fn valid_environment_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Parses `all`, `*` or a comma-separated list of environment names.
pub fn parse_environments(value: &str) -> Result<Environments, String> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("all") || v == "*" {
        return Ok(Environments::All);
    }
    let mut list = Vec::new();
    for part in v.split(',') {
        let name = part.trim().to_ascii_lowercase();
        if !valid_environment_name(&name) {
            return Err(format!(
                "invalid environment name {:?} (use lowercase letters, digits, '-' or '_', or 'all')",
                part.trim()
            ));
        }
        if !list.contains(&name) {
            list.push(name);
        }
    }
    Ok(Environments::Only(list))
}

/// Parses a comma-separated list of versions; `none` or empty is no list.
pub fn parse_dependencies(value: &str) -> Result<Vec<Version>, String> {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|p| {
            let p = p.trim();
            let p = p.strip_prefix(['V', 'v']).unwrap_or(p);
            Version::parse(p).map_err(|e| format!("invalid dependency: {e}"))
        })
        .collect()
}

/// Reads the header block of `text`. Returns the header and the problems
/// found in it; unreadable lines are reported and skipped.
pub fn parse_header(text: &str) -> (Header, Vec<HeaderError>) {
    let mut h = Header::default();
    let mut errors = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let comment = comment.trim();
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let key = key.trim();
        let value = value.trim();
        if key == "ROLLBACK" || key.contains(char::is_whitespace) {
            continue;
        }
        let mut err = |message: String| {
            errors.push(HeaderError {
                line: line_no,
                message,
            })
        };
        match key.to_ascii_lowercase().as_str() {
            "migration" => h.migration = Some(value.to_string()),
            "description" => h.description = Some(value.to_string()),
            "author" => h.author = Some(value.to_string()),
            "created" => h.created = Some(value.to_string()),
            "version" => {
                let v = value.strip_prefix(['V', 'v']).unwrap_or(value);
                match Version::parse(v) {
                    Ok(v) => h.version = Some((v, line_no)),
                    Err(e) => err(format!("invalid Version header: {e}")),
                }
            }
            "dependencies" | "depends" | "depends-on" | "dependson" => {
                match parse_dependencies(value) {
                    Ok(d) => h.dependencies = d,
                    Err(e) => err(e),
                }
            }
            "environment" | "environments" => match parse_environments(value) {
                Ok(e) => h.environments = e,
                Err(e) => err(e),
            },
            "rollback" => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" => h.rollback = Some((true, line_no)),
                "false" | "no" => h.rollback = Some((false, line_no)),
                _ => err(format!(
                    "invalid Rollback header {value:?} (expected true or false; rollback SQL goes on '-- ROLLBACK:' lines)"
                )),
            },
            "rollback-strategy" | "rollback_strategy" | "rollbackstrategy" => {
                match crate::model::strategy::RollbackStrategy::parse(value) {
                    Ok(s) => h.rollback_strategy = Some(s),
                    Err(e) => err(format!("invalid Rollback-Strategy header: {e}")),
                }
            }
            _ => {}
        }
    }
    (h, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_seed_header() {
        let text = "-- Migration: create_events\n-- Version: 3\n-- Description: Events table\n\
                    -- Author: data-platform\n-- Created: 2025-05-28\n-- Dependencies: 1, 2\n\
                    -- Environment: staging, production\n-- Rollback: true\n\nCREATE TABLE x;\n\
                    -- Version: 99\n";
        let (h, errs) = parse_header(text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(h.migration.as_deref(), Some("create_events"));
        assert_eq!(h.version, Some((Version::parse("3").unwrap(), 2)));
        assert_eq!(h.description.as_deref(), Some("Events table"));
        assert_eq!(h.author.as_deref(), Some("data-platform"));
        assert_eq!(h.created.as_deref(), Some("2025-05-28"));
        assert_eq!(
            h.dependencies,
            vec![Version::parse("1").unwrap(), Version::parse("2").unwrap()]
        );
        assert_eq!(
            h.environments,
            Environments::Only(vec!["staging".into(), "production".into()])
        );
        assert_eq!(h.rollback, Some((true, 8)));
    }

    #[test]
    fn header_stops_at_the_first_sql_line() {
        let (h, _) = parse_header("SELECT 1;\n-- Version: 2\n");
        assert_eq!(h.version, None);
    }

    #[test]
    fn rollback_sql_lines_are_not_headers() {
        let (h, errs) = parse_header("-- ROLLBACK: DROP TABLE x;\n-- Rollback: false\n");
        assert!(errs.is_empty());
        assert_eq!(h.rollback, Some((false, 2)));
    }

    #[test]
    fn reports_bad_values_with_lines() {
        let (_, errs) = parse_header(
            "-- Version: one\n-- Dependencies: 1, x\n-- Environment: Prod!\n-- Rollback: maybe\n",
        );
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        assert!(errs[3].message.contains("true or false"));
    }

    #[test]
    fn environments_and_dependencies_lists() {
        assert_eq!(parse_environments("ALL").unwrap(), Environments::All);
        assert_eq!(
            parse_environments("dev,dev").unwrap(),
            Environments::Only(vec!["dev".into()])
        );
        assert!(parse_environments("a,,b").is_err());
        assert_eq!(parse_dependencies("none").unwrap(), vec![]);
        assert_eq!(
            parse_dependencies("V1.1, 2").unwrap(),
            vec![Version::parse("1.1").unwrap(), Version::parse("2").unwrap()]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(1000), .. ProptestConfig::default() })]

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_header(&s);
        }

        // Headers written from arbitrary valid values read back to the same values.
        #[test]
        fn round_trips(
            version in proptest::collection::vec(0u64..100_000, 1..4),
            deps in proptest::collection::vec(0u64..1000, 0..5),
            envs in proptest::collection::vec("[a-z][a-z0-9_-]{0,8}", 1..4),
            desc in "[A-Za-z0-9 ,._()-]{0,40}",
            rollback: bool,
        ) {
            prop_assume!(!envs.iter().any(|e| e == "all"));
            let vtext: Vec<String> = version.iter().map(u64::to_string).collect();
            let dtext: Vec<String> = deps.iter().map(u64::to_string).collect();
            let text = format!(
                "-- Version: {}\n-- Description: {}\n-- Dependencies: {}\n-- Environment: {}\n-- Rollback: {}\nSELECT 1;\n",
                vtext.join("."), desc, dtext.join(", "), envs.join(","), rollback
            );
            let (h, errs) = parse_header(&text);
            prop_assert!(errs.is_empty(), "{:?}", errs);
            prop_assert_eq!(h.version.map(|v| v.0), Some(Version::parse(&vtext.join(".")).unwrap()));
            prop_assert_eq!(h.description.unwrap_or_default(), desc.trim().to_string());
            let want_deps: Vec<Version> = dtext.iter().map(|d| Version::parse(d).unwrap()).collect();
            prop_assert_eq!(h.dependencies, want_deps);
            let mut want_envs: Vec<String> = Vec::new();
            for e in &envs { if !want_envs.contains(e) { want_envs.push(e.clone()); } }
            prop_assert_eq!(h.environments, Environments::Only(want_envs));
            prop_assert_eq!(h.rollback.map(|r| r.0), Some(rollback));
        }
    }
}
