//! The migration model every source produces and every later stage reads.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::version::Version;

/// Where something is defined: a file (or a resource such as
/// `ClickHouseMigration default/add-users`) and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
}

impl Location {
    pub fn new(file: impl Into<Arc<str>>, line: usize) -> Self {
        Location {
            file: file.into(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // A whole folder or resource, not a line in it.
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

pub use crate::sql::Statement;

/// How a migration is undone (see [`crate::model::strategy`]).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RollbackStrategy {
    #[default]
    Script,
    FreezeAndDrop,
    ForwardOnly,
}

impl RollbackStrategy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "script" => Ok(Self::Script),
            "freeze-and-drop" | "freeze_and_drop" => Ok(Self::FreezeAndDrop),
            "forward-only" | "forward_only" => Ok(Self::ForwardOnly),
            other => Err(format!(
                "unknown rollback strategy {other:?} (expected script, freeze-and-drop or forward-only)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::FreezeAndDrop => "freeze-and-drop",
            Self::ForwardOnly => "forward-only",
        }
    }
}

/// The file format a migration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceFormat {
    /// `V3__create_events.sql` with `-- ROLLBACK:` lines (and optional `U3__…` undo file).
    Flyway,
    /// `3_create_events.up.sql` with an optional `.down.sql`.
    UpDown,
    /// `3_create_events.sql` with `-- migrate:up` / `-- migrate:down` sections.
    Dbmate,
    /// Pillar's `20250528120000_create_users.exs` (`def up` / `def down`).
    Pillar,
    /// Built in memory (custom resources).
    Memory,
}

/// Which environments a migration runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environments {
    #[default]
    All,
    Only(Vec<String>),
}

impl Environments {
    pub fn includes(&self, env: &str) -> bool {
        match self {
            Environments::All => true,
            Environments::Only(list) => list.iter().any(|e| e == env),
        }
    }
}

impl fmt::Display for Environments {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Environments::All => f.write_str("all"),
            Environments::Only(list) => f.write_str(&list.join(",")),
        }
    }
}

/// SHA-256 over a migration's normalized statements, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Checksum(pub String);

impl Checksum {
    /// The checksum of a migration's up and down statements.
    ///
    /// What is hashed is what runs: each statement's text with line endings
    /// turned into `\n` and trailing whitespace removed from every line,
    /// before any `${…}` substitution. Comments and blank lines between
    /// statements, header metadata (description, author) and the file format
    /// do not count, so the same SQL has the same checksum whether it comes
    /// from a file, a ConfigMap or a `ClickHouseMigration`, in every
    /// environment.
    pub fn of(up: &[Statement], down: Option<&[Statement]>) -> Self {
        let mut h = Sha256::new();
        h.update(b"chmigrate-checksum-v1\n");
        let feed = |h: &mut Sha256, tag: &[u8], stmts: &[Statement]| {
            for s in stmts {
                let norm = normalize(&s.sql);
                h.update(tag);
                h.update((norm.len() as u64).to_le_bytes());
                h.update(norm.as_bytes());
            }
        };
        feed(&mut h, b"U", up);
        if let Some(down) = down {
            h.update(b"down\n");
            feed(&mut h, b"D", down);
        }
        let digest = h.finalize();
        let mut hex = String::with_capacity(64);
        for b in digest.iter() {
            hex.push_str(&format!("{b:02x}"));
        }
        Checksum(hex)
    }

    /// The first 12 hex digits, for tables meant for people.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Line endings to `\n`, trailing whitespace off every line, and leading and
/// trailing blank lines removed.
pub fn normalize(text: &str) -> String {
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = unified.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let last = lines.iter().rposition(|l| !l.is_empty());
    match (first, last) {
        (Some(a), Some(b)) => lines[a..=b].join("\n"),
        _ => String::new(),
    }
}

/// A migration, whatever its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migration {
    pub version: Version,
    pub description: String,
    pub up: Vec<Statement>,
    /// The rollback: written by the author, or derived from `up` when none
    /// was written and every statement can be undone (`down_derived`).
    /// `None` when there is no rollback (`irreversible` says why).
    pub down: Option<Vec<Statement>>,
    /// `down` was derived by chmigrate (see [`crate::sql::inverse`]); it is
    /// not part of the checksum, which covers what the author wrote.
    pub down_derived: bool,
    /// Why no rollback could be derived, when none was written.
    pub irreversible: Option<String>,
    pub dependencies: Vec<Version>,
    pub environments: Environments,
    /// Where the migration (its up part) is defined.
    pub location: Location,
    /// Where its down part is defined, when that is a separate file.
    pub down_location: Option<Location>,
    pub format: SourceFormat,
    /// The `-- Migration:` header (the seed framework's migration name).
    pub name: Option<String>,
    pub author: Option<String>,
    pub created: Option<String>,
    pub checksum: Checksum,
    /// The rollback strategy the migration asks for (`-- Rollback-Strategy:`).
    pub rollback_strategy: Option<RollbackStrategy>,
    /// The strategy in effect once the environment's default is applied
    /// ([`crate::model::strategy::resolve`]); `FreezeAndDrop` freezes what its
    /// rollback drops.
    pub strategy: RollbackStrategy,
    /// The author said there is no rollback (`-- Rollback: false`, an
    /// empty down file): nothing is derived, and no environment default
    /// gives it one.
    pub rollback_declared_none: bool,
}

impl Migration {
    /// Recomputes the checksum from the statements the author wrote.
    pub fn compute_checksum(&self) -> Checksum {
        let written = if self.down_derived {
            None
        } else {
            self.down.as_deref()
        };
        Checksum::of(&self.up, written)
    }

    /// Derives the rollback when none was written, or records why it
    /// cannot be derived.
    pub fn derive_missing_rollback(&mut self) {
        if self.down.is_some() {
            return;
        }
        match crate::sql::inverse::derive_rollback(&self.up) {
            Ok(down) if !down.is_empty() => {
                self.down = Some(down);
                self.down_derived = true;
            }
            Ok(_) => {
                self.irreversible =
                    Some("no statement changes the schema, so there is nothing to derive".into());
            }
            Err(e) => self.irreversible = Some(e.to_string()),
        }
    }

    /// `V3 (create events)` for messages.
    pub fn label(&self) -> String {
        if self.description.is_empty() {
            format!("V{}", self.version)
        } else {
            format!("V{} ({})", self.version, self.description)
        }
    }

    /// The location of up statement `index`.
    pub fn up_location(&self, index: usize) -> Location {
        let line = self.up.get(index).map_or(self.location.line, |s| s.line);
        Location::new(self.location.file.clone(), line)
    }

    /// Every statement, up then down, each with its index within its part
    /// and where it is written.
    pub fn all_statements(&self) -> impl Iterator<Item = (usize, &Statement, Location)> {
        let down = self.down.as_deref().unwrap_or(&[]);
        self.up
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s, self.up_location(i)))
            .chain(
                down.iter()
                    .enumerate()
                    .map(|(i, s)| (i, s, self.down_statement_location(i))),
            )
    }

    /// The location of down statement `index`.
    pub fn down_statement_location(&self, index: usize) -> Location {
        let loc = self.down_location.as_ref().unwrap_or(&self.location);
        let line = self
            .down
            .as_ref()
            .and_then(|d| d.get(index))
            .map_or(loc.line, |s| s.line);
        Location::new(loc.file.clone(), line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(sql: &str) -> Statement {
        Statement {
            sql: sql.into(),
            line: 1,
        }
    }

    #[test]
    fn normalization_ignores_line_endings_and_trailing_space() {
        assert_eq!(normalize("a  \r\nb\t\r\n\r\n"), "a\nb");
        assert_eq!(normalize("\n\n  x\n"), "  x");
        assert_eq!(normalize(" \n\t\n"), "");
        assert_eq!(normalize("a\rb"), "a\nb");
    }

    #[test]
    fn checksum_is_stable_and_sensitive_to_sql() {
        let a = Checksum::of(
            &[st("CREATE TABLE t (x UInt8)\r\n ENGINE = Memory  ")],
            None,
        );
        let b = Checksum::of(&[st("CREATE TABLE t (x UInt8)\n ENGINE = Memory")], None);
        assert_eq!(a, b);
        assert_eq!(a.0.len(), 64);
        let c = Checksum::of(&[st("CREATE TABLE t (x UInt16)\n ENGINE = Memory")], None);
        assert_ne!(a, c);
        // Moving a statement boundary changes it, and so does the down part.
        assert_ne!(
            Checksum::of(&[st("a"), st("b")], None),
            Checksum::of(&[st("ab")], None)
        );
        assert_ne!(
            Checksum::of(&[st("a")], None),
            Checksum::of(&[st("a")], Some(&[st("b")]))
        );
        assert_ne!(
            Checksum::of(&[st("a")], None),
            Checksum::of(&[st("a")], Some(&[]))
        );
    }

    #[test]
    fn known_checksum_value() {
        // Pinned so that a change to the checksum definition is noticed:
        // it would make every applied migration look tampered with.
        let c = Checksum::of(&[st("SELECT 1")], None);
        assert_eq!(
            c.0,
            "9ae975e7d3bbc9d9ec23de9a10092d1ee38f98be9926ef45c759330547e2515d"
        );
        assert_eq!(c.short(), "9ae975e7d3bb");
        assert_eq!(
            c.0,
            Checksum::of(&[st("SELECT 1   ")], None).0,
            "trailing spaces are ignored"
        );
    }
}
