//! Renumbering a migration file whose version collides with another's
//! (two branches each added "the next" migration): the new file name and
//! the header with the new version (pure; `chmigrate resolve` does the I/O).

use crate::model::version::Version;
use crate::source::file::{FileName, classify_name};

/// The version a migration file's name carries, and whether the file is the
/// forward half (`V…`, `.up.sql`, a dbmate file) or a down/undo half.
pub fn name_version(file_name: &str) -> Option<(Version, bool)> {
    match classify_name(file_name).ok()?? {
        FileName::Flyway { version, .. }
        | FileName::Up { version, .. }
        | FileName::Dbmate { version, .. } => Some((version, true)),
        FileName::FlywayUndo { version, .. } | FileName::Down { version, .. } => {
            Some((version, false))
        }
    }
}

/// What pairs a forward file with its down half: the name without the
/// version, the `V`/`U` prefix and the `.up`/`.down` ending.
pub fn pair_key(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".sql")?;
    if let Some(rest) = stem.strip_prefix(['V', 'U'])
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        return rest.split_once("__").map(|(_, d)| format!("flyway:{d}"));
    }
    let body = stem
        .strip_suffix(".up")
        .or_else(|| stem.strip_suffix(".down"))
        .unwrap_or(stem);
    let name = body.split_once('_').map_or("", |(_, n)| n);
    Some(format!("plain:{name}"))
}

/// `file_name` with its version replaced by `to`; `None` when the name is
/// not a migration file name.
pub fn renamed(file_name: &str, to: &Version) -> Option<String> {
    name_version(file_name)?;
    let stem = file_name.strip_suffix(".sql")?;
    if let Some(rest) = stem.strip_prefix(['V', 'U'])
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        let prefix = &stem[..1];
        let (_, desc) = rest.split_once("__")?;
        return Some(format!("{prefix}{to}__{desc}.sql"));
    }
    let digits = stem
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(stem.len());
    // A trailing `.up`/`.down` right after the digits is not part of the version.
    let version_end = match &stem[..digits].rfind('.') {
        Some(dot) if stem[*dot..].starts_with(".up") || stem[*dot..].starts_with(".down") => *dot,
        _ => digits,
    };
    Some(format!("{to}{}.sql", &stem[version_end..]))
}

/// `text` with the value of its `-- Version:` header line (in the leading
/// comment block) set to `to`; unchanged when there is no such line.
pub fn rewrite_header(text: &str, to: &Version) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_header = true;
    let mut done = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if in_header && !trimmed.is_empty() && !trimmed.starts_with("--") {
            in_header = false;
        }
        let body = trimmed.strip_prefix("--").map(str::trim_start);
        match body.and_then(|b| b.strip_prefix("Version:")) {
            Some(_) if in_header && !done => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let ending = if line.ends_with("\r\n") {
                    "\r\n"
                } else if line.ends_with('\n') {
                    "\n"
                } else {
                    ""
                };
                out.push_str(&format!("{indent}-- Version: {to}{ending}"));
                done = true;
            }
            _ => out.push_str(line),
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

    #[test]
    fn renames_every_naming_style() {
        let to = v("7");
        for (from, want) in [
            ("V3__create_orders.sql", "V7__create_orders.sql"),
            ("U3__create_orders.sql", "U7__create_orders.sql"),
            ("V3_1__create_orders.sql", "V7__create_orders.sql"),
            ("003_create_orders.up.sql", "7_create_orders.up.sql"),
            ("003_create_orders.down.sql", "7_create_orders.down.sql"),
            ("3.up.sql", "7.up.sql"),
            ("20240101120000_orders.sql", "7_orders.sql"),
        ] {
            assert_eq!(renamed(from, &to).as_deref(), Some(want), "{from}");
        }
        assert_eq!(renamed("notes.txt", &to), None);
        assert_eq!(renamed("README.sql", &to), None);
    }

    #[test]
    fn pairs_halves_by_name_not_version() {
        assert_eq!(
            pair_key("V3__orders.sql"),
            pair_key("U3__orders.sql"),
            "flyway undo"
        );
        assert_eq!(pair_key("3_orders.up.sql"), pair_key("3_orders.down.sql"));
        assert_ne!(pair_key("V3__orders.sql"), pair_key("V3__users.sql"));
        assert_eq!(name_version("3_orders.down.sql"), Some((v("3"), false)));
        assert_eq!(name_version("V3__orders.sql"), Some((v("3"), true)));
    }

    #[test]
    fn rewrites_only_the_header_version_line() {
        let text = "-- Migration: orders\n--   Version: 3\n-- Dependencies: 2\n\nSELECT 1; -- Version: 3\n-- Version: 3\n";
        let out = rewrite_header(text, &v("9"));
        assert_eq!(
            out,
            "-- Migration: orders\n-- Version: 9\n-- Dependencies: 2\n\nSELECT 1; -- Version: 3\n-- Version: 3\n"
        );
        let crlf = rewrite_header("-- Version: 3\r\nSELECT 1;\r\n", &v("4"));
        assert_eq!(crlf, "-- Version: 4\r\nSELECT 1;\r\n");
        assert_eq!(rewrite_header("SELECT 1;\n", &v("4")), "SELECT 1;\n");
    }
}
