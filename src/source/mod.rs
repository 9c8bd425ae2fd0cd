//! Migration sources: files in a folder (three formats, freely mixed), files
//! held in memory (ConfigMap keys), and migrations built in memory (custom
//! resources). All of them produce [`Migration`]s through [`assemble`], which
//! pairs up/down halves and rejects duplicate versions.
//!
//! Parsing is pure ([`file::parse_file`] takes a name and a text); only
//! [`dir::load_dir`] touches the file system.

pub mod assemble;
pub mod dir;
pub mod exs;
pub mod file;
pub mod header;
pub mod memory;

use std::fmt;

use crate::model::migration::{Location, Migration};
use crate::model::version::Version;

pub use assemble::assemble;
pub use dir::load_dir;
pub use file::{FilePart, parse_file};
pub use memory::{MemoryMigration, from_memory};

/// Default largest migration file accepted (1 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A problem with a migration source, located at a file (or resource) and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct SourceError {
    pub location: Location,
    pub kind: SourceErrorKind,
}

impl SourceError {
    pub fn new(location: Location, kind: SourceErrorKind) -> Self {
        SourceError { location, kind }
    }
}

/// What is wrong with a migration source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceErrorKind {
    BadFileName(String),
    DuplicateVersion {
        version: Version,
        other: Location,
    },
    HeaderVersionMismatch {
        header: Version,
        file: Version,
    },
    Unterminated(crate::sql::lexer::Unterminated),
    Empty,
    TooLarge {
        size: u64,
        limit: u64,
    },
    InvalidHeader(String),
    NotUtf8,
    Io(String),
    DownWithoutUp,
    RollbackConflict(String),
    Sections(String),
    InvalidResource(String),
    /// A Pillar `.exs` file outside the forms chmigrate reads.
    Exs(String),
    /// A file in the migrations folder that is no migration file.
    NotRead,
}

impl fmt::Display for SourceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SourceErrorKind::*;
        match self {
            BadFileName(why) => write!(f, "bad migration file name: {why}"),
            DuplicateVersion { version, other } => {
                write!(f, "version {version} is defined twice: here and at {other}")
            }
            HeaderVersionMismatch { header, file } => write!(
                f,
                "header says Version {header} but the file name says {file}"
            ),
            Unterminated(what) => write!(f, "unterminated {what}"),
            Empty => write!(f, "migration has no SQL statements"),
            TooLarge { size, limit } => write!(
                f,
                "migration is {size} bytes, over the limit of {limit} bytes (max_file_size)"
            ),
            InvalidHeader(why) => write!(f, "{why}"),
            NotUtf8 => write!(f, "file is not valid UTF-8"),
            Io(why) => write!(f, "cannot read: {why}"),
            DownWithoutUp => write!(f, "down migration has no matching up migration"),
            RollbackConflict(why) => write!(f, "{why}"),
            Sections(why) => write!(f, "{why}"),
            InvalidResource(why) => write!(f, "{why}"),
            Exs(why) => write!(f, "{why}"),
            NotRead => write!(
                f,
                "not a migration file chmigrate reads (it reads .sql files and Pillar's .exs files); ignored"
            ),
        }
    }
}

/// Parses one migration file of any format: Pillar's `.exs` through
/// [`exs::parse_exs`], the rest through [`file::parse_file`]. `Ok(None)`:
/// not a migration file's name.
pub fn parse_any(
    display: &str,
    file_name: &str,
    content: &str,
    max_bytes: u64,
) -> Result<Option<FilePart>, Vec<SourceError>> {
    if file_name.ends_with(".exs") {
        exs::parse_exs(display, file_name, content, max_bytes)
    } else {
        file::parse_file(display, file_name, content, max_bytes)
    }
}

/// The version a migration file's name gives (`V3__x.sql`, `3_x.up.sql`,
/// `20250528120000_x.exs`, …); `Ok(None)` for a name that is no migration
/// file's (no `.sql` or `.exs` ending).
pub fn version_of_file_name(name: &str) -> Result<Option<Version>, String> {
    use file::FileName;
    if let Some((v, _)) = exs::classify_exs_name(name)? {
        return Ok(Some(v));
    }
    Ok(file::classify_name(name)?.map(|k| match k {
        FileName::Flyway { version, .. }
        | FileName::FlywayUndo { version, .. }
        | FileName::Up { version, .. }
        | FileName::Down { version, .. }
        | FileName::Dbmate { version, .. } => version,
    }))
}

/// Splits `text` into statements located in `file`; `line_of` maps a line
/// of `text` to the line of the source it came from. An unterminated string,
/// comment or heredoc is reported at its line.
pub(crate) fn statements(
    text: &str,
    file: &std::sync::Arc<str>,
    line_of: impl Fn(usize) -> usize,
) -> Result<Vec<crate::model::migration::Statement>, SourceError> {
    use crate::sql::split::{line_of_offset, split_statements};
    let stmts = split_statements(text).map_err(|e| {
        SourceError::new(
            Location::new(file.clone(), line_of(line_of_offset(text, e.offset))),
            SourceErrorKind::Unterminated(e.what),
        )
    })?;
    Ok(stmts
        .into_iter()
        .map(|s| crate::model::migration::Statement {
            sql: s.text,
            line: line_of(s.line),
        })
        .collect())
}

/// The migrations a source produced and the problems it found. Loading does
/// not stop at the first problem, so `validate` can report all of them.
#[derive(Debug, Default)]
pub struct Loaded {
    pub migrations: Vec<Migration>,
    pub errors: Vec<SourceError>,
    /// What `validate` warns about without refusing: files in the folder
    /// chmigrate does not read, lines it reads differently than their
    /// author may expect.
    pub warnings: Vec<SourceError>,
    /// Files that define a version another file already defines (the one
    /// kept is in `migrations`); `validate --check-conflicts` tells which
    /// of them the target applied.
    pub duplicates: Vec<Duplicate>,
}

/// A second definition of a version: where, and the checksum of what it
/// holds (its up statements and any rollback written in the same file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub version: Version,
    pub location: Location,
    pub checksum: crate::model::migration::Checksum,
}

impl From<SourceError> for crate::model::diagnostic::Diagnostic {
    fn from(e: SourceError) -> Self {
        crate::model::diagnostic::Diagnostic::error(Some(e.location), e.kind.to_string())
    }
}
