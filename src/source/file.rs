//! Parsing one migration file (pure: a name and a text in, parts out).
//!
//! File names:
//! - `V{version}__{description}.sql` (Flyway; `_` inside the version reads as
//!   `.`, so `V1_2__x.sql` is version 1.2), with rollback SQL on
//!   `-- ROLLBACK: <sql>` lines; `U{version}__{description}.sql` is Flyway's
//!   undo file and becomes the down part.
//! - `{version}_{name}.up.sql` and `{version}_{name}.down.sql` (golang-migrate,
//!   Pillar).
//! - `{version}_{name}.sql` holding `-- migrate:up` and optionally
//!   `-- migrate:down` sections (dbmate).
//! - `{timestamp}_{name}.exs`: Pillar's Elixir migrations, read by [`super::exs`]
//!   (`load_dir` hands them there).
//!
//! Files ending in neither `.sql` nor `.exs` are not migrations: `load_dir`
//! lists them for `validate` to warn about.
//!
//! `-- ROLLBACK:` lines: the text after `ROLLBACK:` on each such line, in file
//! order, joined with newlines, forms the rollback script, which is split into
//! statements like any SQL: a `;` ends a statement, and a line without one
//! continues the statement on the next `-- ROLLBACK:` line. The last
//! statement needs no `;`.

use std::sync::Arc;

use super::header::{Header, parse_header};
use super::{SourceError, SourceErrorKind};
use crate::model::migration::{Location, SourceFormat, Statement};
use crate::model::version::Version;
use crate::sql::lexer::{LexError, TokenKind, tokenize};
use crate::sql::split::line_of_offset;

/// What a file name says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileName {
    Flyway {
        version: Version,
        description: String,
    },
    FlywayUndo {
        version: Version,
        description: String,
    },
    Up {
        version: Version,
        name: String,
    },
    Down {
        version: Version,
        name: String,
    },
    Dbmate {
        version: Version,
        name: String,
    },
}

const EXPECTED_NAMES: &str = "expected V<version>__<description>.sql, \
<version>_<name>.up.sql / .down.sql, or <version>_<name>.sql with -- migrate:up";

/// Reads a file name. `Ok(None)`: not a migration file (no `.sql` ending).
pub fn classify_name(file_name: &str) -> Result<Option<FileName>, String> {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return Ok(None);
    };
    let bad = |why: &str| Err(format!("{file_name:?}: {why}"));
    if stem.starts_with("R__") {
        return bad("repeatable migrations (R__) are not supported; use a versioned migration");
    }
    if let Some(rest) = stem.strip_prefix(['V', 'U'])
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        let undo = stem.starts_with('U');
        let Some((v, desc)) = rest.split_once("__") else {
            return bad("Flyway-style names need two underscores: V<version>__<description>.sql");
        };
        let version = match Version::parse(&v.replace('_', ".")) {
            Ok(v) => v,
            Err(e) => return bad(&e.to_string()),
        };
        let description = desc.replace('_', " ").trim().to_string();
        return Ok(Some(if undo {
            FileName::FlywayUndo {
                version,
                description,
            }
        } else {
            FileName::Flyway {
                version,
                description,
            }
        }));
    }
    let (body, dir) = if let Some(b) = stem.strip_suffix(".up") {
        (b, Some(true))
    } else if let Some(b) = stem.strip_suffix(".down") {
        (b, Some(false))
    } else {
        (stem, None)
    };
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return bad(EXPECTED_NAMES);
    }
    let (v, name) = match body.split_once('_') {
        Some((v, n)) => (v, n),
        None if dir.is_some() => (body, ""),
        None => return bad(EXPECTED_NAMES),
    };
    let version = match Version::parse(v) {
        Ok(v) => v,
        Err(e) => return bad(&e.to_string()),
    };
    let name = name.to_string();
    Ok(Some(match dir {
        Some(true) => FileName::Up { version, name },
        Some(false) => FileName::Down { version, name },
        None => FileName::Dbmate { version, name },
    }))
}

/// A migration's forward part, before a separate down file is attached.
#[derive(Debug, Clone)]
pub struct Draft {
    pub version: Version,
    pub description: String,
    pub up: Vec<Statement>,
    pub down: Option<Vec<Statement>>,
    pub header: Header,
    pub location: Location,
    pub format: SourceFormat,
    /// Lines read but not used that the author should know about (a
    /// mixed-case `-- Rollback:` line holding SQL).
    pub warnings: Vec<SourceError>,
}

/// A down part in a file of its own.
#[derive(Debug, Clone)]
pub struct DownPart {
    pub version: Version,
    pub statements: Vec<Statement>,
    pub location: Location,
}

/// What one file contributes.
#[derive(Debug, Clone)]
pub enum FilePart {
    Forward(Box<Draft>),
    Down(DownPart),
}

/// Parses one file. `display` names it in messages (a path, or
/// `ConfigMap ns/name key`); `file_name` is its base name; `max_bytes` is the
/// size limit. `Ok(None)` when the name is not a migration file's.
pub fn parse_file(
    display: &str,
    file_name: &str,
    content: &str,
    max_bytes: u64,
) -> Result<Option<FilePart>, Vec<SourceError>> {
    let file: Arc<str> = Arc::from(display);
    let at = |line: usize, kind: SourceErrorKind| {
        SourceError::new(Location::new(file.clone(), line), kind)
    };
    let kind = match classify_name(file_name) {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(None),
        Err(why) => return Err(vec![at(1, SourceErrorKind::BadFileName(why))]),
    };
    if content.len() as u64 > max_bytes {
        return Err(vec![at(
            1,
            SourceErrorKind::TooLarge {
                size: content.len() as u64,
                limit: max_bytes,
            },
        )]);
    }
    let lex_err = |e: LexError| {
        at(
            line_of_offset(content, e.offset),
            SourceErrorKind::Unterminated(e.what),
        )
    };
    let tokens = tokenize(content).map_err(|e| vec![lex_err(e)])?;
    let mut errors = Vec::new();
    let (header, header_errors) = parse_header(content);
    for e in header_errors {
        errors.push(at(e.line, SourceErrorKind::InvalidHeader(e.message)));
    }

    let (version, description, format) = match &kind {
        FileName::Flyway {
            version,
            description,
        }
        | FileName::FlywayUndo {
            version,
            description,
        } => (version.clone(), description.clone(), SourceFormat::Flyway),
        FileName::Up { version, name } | FileName::Down { version, name } => (
            version.clone(),
            name.replace('_', " "),
            SourceFormat::UpDown,
        ),
        FileName::Dbmate { version, name } => (
            version.clone(),
            name.replace('_', " "),
            SourceFormat::Dbmate,
        ),
    };
    if let Some((hv, line)) = &header.version
        && *hv != version
    {
        errors.push(at(
            *line,
            SourceErrorKind::HeaderVersionMismatch {
                header: hv.clone(),
                file: version.clone(),
            },
        ));
    }

    // Marker comments: `-- ROLLBACK:` lines and dbmate section markers, each
    // a line comment standing first on its line.
    let mut rollback_lines: Vec<(usize, String)> = Vec::new();
    let mut up_marker: Option<(usize, usize)> = None; // (line, byte end)
    let mut down_marker: Option<(usize, usize, usize)> = None; // (line, start, end)
    let mut blank_ranges: Vec<(usize, usize)> = Vec::new();
    let mut warnings = Vec::new();
    let header_end = header_block_end(content);
    for t in tokens.iter().filter(|t| t.kind == TokenKind::LineComment) {
        let line_start = content[..t.start].rfind('\n').map_or(0, |p| p + 1);
        if !content[line_start..t.start].trim().is_empty() {
            continue;
        }
        let text = t.text(content);
        let body = text.trim_start_matches('-').trim_start();
        let line = line_of_offset(content, t.start);
        if let Some(sql) = body.strip_prefix("ROLLBACK:") {
            rollback_lines.push((line, sql.strip_prefix(' ').unwrap_or(sql).to_string()));
            blank_ranges.push((t.start, t.end));
        } else if line > header_end
            && let Some((key, value)) = body.split_once(':')
            && key.trim().eq_ignore_ascii_case("rollback")
        {
            // Below the header, `-- Rollback: true|false` means nothing and
            // `-- Rollback: <SQL>` is not rollback SQL: say so rather than
            // ignore it.
            let value = value.trim();
            let hint = if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
            {
                "the `-- Rollback: true|false` header is read only in the comment block at the top of the file".to_string()
            } else {
                format!(
                    "`{}` is not read as rollback SQL: only `-- ROLLBACK:` in capitals is; write `-- ROLLBACK: {value}` to make it the rollback, or reword the comment",
                    text.trim()
                )
            };
            warnings.push(at(line, SourceErrorKind::InvalidHeader(hint)));
        } else if body.starts_with("migrate:up") {
            if up_marker.is_some() {
                errors.push(at(
                    line,
                    SourceErrorKind::Sections("second '-- migrate:up' marker".into()),
                ));
            }
            up_marker = Some((line, t.end));
        } else if body.starts_with("migrate:down") {
            if down_marker.is_some() {
                errors.push(at(
                    line,
                    SourceErrorKind::Sections("second '-- migrate:down' marker".into()),
                ));
            }
            down_marker = Some((line, t.start, t.end));
        }
    }

    let location = Location::new(file.clone(), 1);
    let split = |text: &str| super::statements(text, &file, |l| l);

    let (up, mut down) = match &kind {
        FileName::Flyway { .. } => {
            let up_text = blank(content, &blank_ranges);
            let up = split(&up_text).map_err(|e| vec![e])?;
            let down = if rollback_lines.is_empty() {
                None
            } else {
                Some(rollback_statements(&rollback_lines, &file).map_err(|e| vec![e])?)
            };
            (up, down)
        }
        FileName::FlywayUndo { .. } | FileName::Down { .. } => {
            let stmts = split(content).map_err(|e| vec![e])?;
            if !errors.is_empty() {
                return Err(errors);
            }
            return Ok(Some(FilePart::Down(DownPart {
                version,
                statements: stmts,
                location,
            })));
        }
        FileName::Up { .. } => (split(content).map_err(|e| vec![e])?, None),
        FileName::Dbmate { .. } => {
            let Some((_, up_end)) = up_marker else {
                errors.push(at(
                    1,
                    SourceErrorKind::Sections(
                        "dbmate-style file has no '-- migrate:up' marker (or rename it to V<version>__<description>.sql)"
                            .into(),
                    ),
                ));
                return Err(errors);
            };
            // Nothing but comments may stand before `-- migrate:up`.
            let before = split(&content[..content.len().min(up_end)]).map_err(|e| vec![e])?;
            if let Some(s) = before.first() {
                errors.push(at(
                    s.line,
                    SourceErrorKind::Sections("SQL before the '-- migrate:up' marker".into()),
                ));
            }
            match down_marker {
                Some((_, down_start, down_end)) if down_start > up_end => {
                    let up_text = blank(content, &[(0, up_end), (down_start, content.len())]);
                    let down_text = blank(content, &[(0, down_end)]);
                    (
                        split(&up_text).map_err(|e| vec![e])?,
                        Some(split(&down_text).map_err(|e| vec![e])?),
                    )
                }
                Some((down_line, _, _)) => {
                    errors.push(at(
                        down_line,
                        SourceErrorKind::Sections(
                            "'-- migrate:down' must come after '-- migrate:up'".into(),
                        ),
                    ));
                    return Err(errors);
                }
                None => {
                    let up_text = blank(content, &[(0, up_end)]);
                    (split(&up_text).map_err(|e| vec![e])?, None)
                }
            }
        }
    };

    if up.is_empty() {
        errors.push(at(1, SourceErrorKind::Empty));
    }
    if format == SourceFormat::Flyway && matches!(kind, FileName::Flyway { .. }) {
        match (header.rollback, &down) {
            (Some((false, line)), Some(_)) => errors.push(at(
                line,
                SourceErrorKind::RollbackConflict(
                    "header says Rollback: false but the file has -- ROLLBACK: lines".into(),
                ),
            )),
            (Some((true, line)), None) => errors.push(at(
                line,
                SourceErrorKind::RollbackConflict(
                    "header says Rollback: true but the file has no -- ROLLBACK: lines".into(),
                ),
            )),
            _ => {}
        }
    }
    // A dbmate down section with nothing in it is no rollback.
    if down.as_ref().is_some_and(Vec::is_empty) {
        down = None;
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let description = header.description.clone().unwrap_or(description);
    Ok(Some(FilePart::Forward(Box::new(Draft {
        version,
        description,
        up,
        down,
        header,
        location,
        format,
        warnings,
    }))))
}

/// The last line of the header block: the run of `--` comments and blank
/// lines at the top of the file (0 when the file starts with SQL).
fn header_block_end(content: &str) -> usize {
    let mut end = 0;
    for (i, raw) in content.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with("--") {
            end = i + 1;
        } else {
            break;
        }
    }
    end
}

/// `text` with the given byte ranges replaced by spaces (newlines kept), so
/// lines and offsets of the rest stay where they were.
fn blank(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(s, e) in ranges {
        for b in &mut bytes[s.min(text.len())..e.min(text.len())] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Replacing whole token ranges (comments, sections cut at token
    // boundaries) keeps UTF-8 valid; a lossy conversion is only a guard.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Statements of the `-- ROLLBACK:` lines, each located at its file line.
fn rollback_statements(
    lines: &[(usize, String)],
    file: &Arc<str>,
) -> Result<Vec<Statement>, SourceError> {
    let script: Vec<&str> = lines.iter().map(|(_, s)| s.as_str()).collect();
    let file_line = |k: usize| lines.get(k.saturating_sub(1)).map_or(1, |(l, _)| *l);
    super::statements(&script.join("\n"), file, file_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(name: &str, content: &str) -> Draft {
        match parse_file(name, name, content, 1 << 20) {
            Ok(Some(FilePart::Forward(d))) => *d,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn errors(name: &str, content: &str) -> Vec<String> {
        match parse_file(name, name, content, 1 << 20) {
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
            other => panic!("{name}: expected errors, got {other:?}"),
        }
    }

    fn sqls(stmts: &[Statement]) -> Vec<(&str, usize)> {
        stmts.iter().map(|s| (s.sql.as_str(), s.line)).collect()
    }

    #[test]
    fn classifies_file_names() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(
            classify_name("V3__create_events.sql").unwrap(),
            Some(FileName::Flyway {
                version: v("3"),
                description: "create events".into()
            })
        );
        assert_eq!(
            classify_name("V1_2__x.sql").unwrap(),
            Some(FileName::Flyway {
                version: v("1.2"),
                description: "x".into()
            })
        );
        assert_eq!(
            classify_name("20250528120000_add_users.up.sql").unwrap(),
            Some(FileName::Up {
                version: v("20250528120000"),
                name: "add_users".into()
            })
        );
        assert_eq!(
            classify_name("2_add_users.down.sql").unwrap(),
            Some(FileName::Down {
                version: v("2"),
                name: "add_users".into()
            })
        );
        assert_eq!(
            classify_name("7_thing.sql").unwrap(),
            Some(FileName::Dbmate {
                version: v("7"),
                name: "thing".into()
            })
        );
        assert!(matches!(
            classify_name("U3__undo.sql"),
            Ok(Some(FileName::FlywayUndo { .. }))
        ));
        assert_eq!(classify_name("README.md").unwrap(), None);
        for bad in [
            "V1_create.sql",
            "create.sql",
            "R__view.sql",
            "Vx__a.sql",
            "1.sql",
            "V1..2__a.sql",
        ] {
            assert!(classify_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mixed_case_rollback_lines_in_the_body_are_warned_about() {
        let content = "-- Migration: users\n-- Rollback: true\n\nCREATE TABLE users (id UInt32) ENGINE = Memory;\n\n\
-- Rollback Migration\n-- ROLLBACK: DROP TABLE IF EXISTS users;\n-- Rollback: DROP TABLE IF EXISTS users_old;\n-- rollback: false\n";
        let d = forward("V1__users.sql", content);
        assert_eq!(
            sqls(d.down.as_deref().unwrap()),
            vec![("DROP TABLE IF EXISTS users", 7)],
            "only the capitalised line is rollback SQL"
        );
        let w: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("V1__users.sql:8: `-- Rollback: DROP TABLE IF EXISTS users_old;` is not read as rollback SQL: only `-- ROLLBACK:` in capitals is"),
            "{w:?}"
        );
        assert!(w[1].starts_with("V1__users.sql:9: the `-- Rollback: true|false` header is read only in the comment block"), "{w:?}");
        // In the header block it is the header, not a warning.
        assert!(d.header.rollback.is_some());
    }

    #[test]
    fn parses_flyway_with_header_and_rollback_lines() {
        let content = "-- Migration: create_users\n-- Version: 1\n-- Description: Users table\n\
-- Dependencies: none\n-- Rollback: true\n\nCREATE TABLE users (\n    id UInt64\n) ENGINE = MergeTree ORDER BY id;\n\n\
CREATE TABLE users_buffer AS users ENGINE = Memory;\n\n-- ROLLBACK: DROP TABLE IF EXISTS users_buffer;\n\
-- ROLLBACK: DROP TABLE\n-- ROLLBACK:   IF EXISTS users;\n";
        let d = forward("V1__create_users.sql", content);
        assert_eq!(d.description, "Users table");
        assert_eq!(
            sqls(&d.up),
            vec![
                (
                    "CREATE TABLE users (\n    id UInt64\n) ENGINE = MergeTree ORDER BY id",
                    7
                ),
                ("CREATE TABLE users_buffer AS users ENGINE = Memory", 11),
            ]
        );
        assert_eq!(
            sqls(d.down.as_ref().unwrap()),
            vec![
                ("DROP TABLE IF EXISTS users_buffer", 13),
                ("DROP TABLE\n  IF EXISTS users", 14),
            ]
        );
    }

    #[test]
    fn rollback_lines_inside_statements_do_not_leak_into_them() {
        let content =
            "ALTER TABLE t\n-- ROLLBACK: ALTER TABLE t DROP COLUMN c\n  ADD COLUMN c UInt8;\n";
        let d = forward("V2__c.sql", content);
        assert_eq!(d.up.len(), 1);
        assert!(!d.up[0].sql.contains("ROLLBACK"), "{}", d.up[0].sql);
        assert!(
            d.up[0].sql.starts_with("ALTER TABLE t\n")
                && d.up[0].sql.ends_with("ADD COLUMN c UInt8")
        );
    }

    #[test]
    fn header_version_must_match_file_name() {
        let errs = errors("V3__x.sql", "-- Version: 4\nSELECT 1;");
        assert_eq!(
            errs,
            ["V3__x.sql:1: header says Version 4 but the file name says 3"]
        );
        // Equal versions written differently are fine.
        forward("V3__x.sql", "-- Version: 3.0\nSELECT 1;");
    }

    #[test]
    fn rollback_header_must_agree_with_rollback_lines() {
        let errs = errors("V3__x.sql", "-- Rollback: true\nSELECT 1;");
        assert_eq!(
            errs,
            ["V3__x.sql:1: header says Rollback: true but the file has no -- ROLLBACK: lines"]
        );
        let errs = errors(
            "V3__x.sql",
            "-- Rollback: false\nSELECT 1;\n-- ROLLBACK: SELECT 2;",
        );
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("Rollback: false"));
    }

    #[test]
    fn parses_dbmate_sections() {
        let content = "-- Description: events\n-- migrate:up\nCREATE TABLE e (x UInt8) ENGINE = Memory;\n\
ALTER TABLE e ADD COLUMN y UInt8;\n\n-- migrate:down\nDROP TABLE e;\n";
        let d = forward("20250101000000_events.sql", content);
        assert_eq!(d.format, SourceFormat::Dbmate);
        assert_eq!(d.description, "events");
        assert_eq!(
            sqls(&d.up),
            vec![
                ("CREATE TABLE e (x UInt8) ENGINE = Memory", 3),
                ("ALTER TABLE e ADD COLUMN y UInt8", 4)
            ]
        );
        assert_eq!(sqls(d.down.as_ref().unwrap()), vec![("DROP TABLE e", 7)]);
        // Without a down section, or with an empty one, there is no rollback.
        let d = forward("3_x.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\n");
        assert_eq!(d.down, None);
    }

    #[test]
    fn dbmate_errors() {
        assert!(errors("3_x.sql", "SELECT 1;")[0].contains("no '-- migrate:up' marker"));
        assert!(errors("3_x.sql", "SELECT 0;\n-- migrate:up\nSELECT 1;")[0].contains("SQL before"));
        let errs = errors(
            "3_x.sql",
            "-- migrate:down\nSELECT 0;\n-- migrate:up\nSELECT 1;",
        );
        assert!(
            errs.iter()
                .any(|e| e == "3_x.sql:1: '-- migrate:down' must come after '-- migrate:up'"),
            "{errs:?}"
        );
    }

    #[test]
    fn parses_up_and_down_files() {
        let d = forward("5_add.up.sql", "ALTER TABLE t ADD COLUMN c UInt8;");
        assert_eq!(d.format, SourceFormat::UpDown);
        assert_eq!(d.description, "add");
        match parse_file(
            "5_add.down.sql",
            "5_add.down.sql",
            "ALTER TABLE t DROP COLUMN c;",
            100,
        ) {
            Ok(Some(FilePart::Down(p))) => {
                assert_eq!(p.version, Version::parse("5").unwrap());
                assert_eq!(
                    sqls(&p.statements),
                    vec![("ALTER TABLE t DROP COLUMN c", 1)]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_errors_name_file_and_line() {
        assert_eq!(
            errors("V1__a.sql", "-- nothing\n\n"),
            ["V1__a.sql:1: migration has no SQL statements"]
        );
        assert_eq!(
            errors("V1__a.sql", "SELECT 1;\nSELECT 'oops\n;"),
            ["V1__a.sql:2: unterminated string literal"]
        );
        assert_eq!(
            errors("V1__a.sql", "SELECT 1;\n/* never\nclosed"),
            ["V1__a.sql:2: unterminated block comment"]
        );
        assert_eq!(
            errors(
                "V1__a.sql",
                "SELECT 1;\n-- ROLLBACK: SELECT 'x\n-- ROLLBACK: y"
            ),
            ["V1__a.sql:2: unterminated string literal"]
        );
        let big = "SELECT 1;".repeat(20);
        let e = parse_file("V1__a.sql", "V1__a.sql", &big, 100).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "V1__a.sql:1: migration is 180 bytes, over the limit of 100 bytes (max_file_size)"
        );
        assert!(
            errors("V1_a.sql", "SELECT 1")[0].starts_with("V1_a.sql:1: bad migration file name")
        );
    }

    #[test]
    fn ignores_non_sql_files() {
        assert!(
            parse_file("README.md", "README.md", "# hi", 100)
                .unwrap()
                .is_none()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: crate::fuzz_cases(1000), .. proptest::prelude::ProptestConfig::default() })]

        /// Any content under any of the accepted file names (and some that
        /// are not) never panics the parser; what it refuses names the file
        /// and a line inside it, and what it accepts has statements.
        #[test]
        fn any_file_is_parsed_or_refused_with_its_name_and_line(
            name in proptest::prop_oneof![
                proptest::prelude::Just("V1__a.sql".to_string()),
                proptest::prelude::Just("U1__a.sql".to_string()),
                proptest::prelude::Just("1_a.up.sql".to_string()),
                proptest::prelude::Just("1_a.down.sql".to_string()),
                proptest::prelude::Just("20260101_a.sql".to_string()),
                "[A-Za-z0-9_.]{0,20}(\\.sql)?",
            ],
            parts in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just("-- ROLLBACK: "), proptest::prelude::Just("-- Rollback: true\n"),
                proptest::prelude::Just("-- migrate:up\n"), proptest::prelude::Just("-- migrate:down\n"),
                proptest::prelude::Just("-- Version: 2\n"), proptest::prelude::Just("-- Dependencies: 1, x\n"),
                proptest::prelude::Just("-- Environments: production\n"), proptest::prelude::Just("SELECT 1"),
                proptest::prelude::Just("CREATE TABLE t (x UInt8) ENGINE = Memory"), proptest::prelude::Just(";"),
                proptest::prelude::Just("\n"), proptest::prelude::Just("'"), proptest::prelude::Just("/*"),
                proptest::prelude::Just("$$"), proptest::prelude::Just("${database}"), proptest::prelude::Just("é"),
                proptest::prelude::Just("\r\n"), proptest::prelude::Just("\u{0}"),
            ], 0..30),
        ) {
            let content: String = parts.concat();
            let lines = content.lines().count().max(1);
            match parse_file(&name, &name, &content, 1 << 20) {
                Ok(Some(FilePart::Forward(d))) => {
                    proptest::prop_assert!(!d.up.is_empty());
                    for st in &d.up {
                        proptest::prop_assert!(!st.sql.trim().is_empty());
                    }
                }
                // An empty down file is allowed: it means "no rollback"
                // (source::assemble), as with golang-migrate.
                Ok(Some(FilePart::Down(d))) => {
                    for st in &d.statements {
                        proptest::prop_assert!(!st.sql.trim().is_empty());
                    }
                }
                Ok(None) => {}
                Err(errs) => {
                    proptest::prop_assert!(!errs.is_empty());
                    for e in errs {
                        proptest::prop_assert_eq!(&*e.location.file, name.as_str());
                        proptest::prop_assert!(e.location.line >= 1 && e.location.line <= lines + 1, "{:?} of {}", e, lines);
                    }
                }
            }
        }
    }
}
