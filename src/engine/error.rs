//! How an engine call fails: typed, with what ran before the failure.

use crate::model::diagnostic::{self, Diagnostic};
use crate::plan::Problem;
use crate::runtime::ChError;
use crate::runtime::lock::{LockError, LockInfo};
use crate::runtime::store::LedgerError;

use super::execute::RunError;
use super::report::Report;

/// Another runner holds the target's lock.
#[derive(Debug, Clone)]
pub struct LockHeld {
    pub info: LockInfo,
    pub age_secs: u64,
    /// `target is locked: held by … — if that runner is gone, run
    /// `chmigrate unlock``
    pub message: String,
}

/// Why a plan cannot run: the planner's typed problems and the
/// preparation's diagnostics (variables, `ON CLUSTER`), each with its file
/// and line. Nothing was executed.
#[derive(Debug, Clone, Default)]
pub struct Blocked {
    pub problems: Vec<Problem>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Blocked {
    /// Every problem as `file:line: message`, sorted.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut all: Vec<Diagnostic> = self
            .problems
            .iter()
            .cloned()
            .map(Diagnostic::from)
            .chain(self.diagnostics.iter().cloned())
            .collect();
        diagnostic::sort(&mut all);
        all
    }
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.diagnostics().iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Input found bad at run time (a password file that cannot be read, a
    /// ledger row this release cannot read, a request the ledger refuses):
    /// nothing was executed.
    #[error("{0}")]
    Invalid(String),
    /// The server, the network, TLS or credentials.
    #[error(transparent)]
    ClickHouse(#[from] ChError),
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Lock(LockError),
    #[error("{}", .0.message)]
    Locked(LockHeld),
    #[error("{0}")]
    Blocked(Blocked),
    /// A statement failed, or the run was asked to stop; `report` holds
    /// what ran before (the ledger has every step).
    #[error("{failure}")]
    Run {
        failure: Box<RunError>,
        report: Box<Report>,
    },
    /// Anything else that stopped an operation part-way (a mutation that did
    /// not finish, a backup that could not be removed).
    #[error("{0}")]
    Failed(String),
    /// A `sync-hosts` repair the server refused: the object, what was
    /// sent, and the server's answer (which names the host).
    #[error("sync-hosts: {action} {object} on the cluster failed: {source}")]
    Sync {
        object: String,
        action: &'static str,
        source: ChError,
    },
}

impl EngineError {
    /// Whether the input is at fault (the command line's exit code 2):
    /// nothing was executed.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            EngineError::Invalid(_)
                | EngineError::Blocked(_)
                | EngineError::Ledger(LedgerError::Shape { .. } | LedgerError::Row { .. })
        )
    }

    /// The ClickHouse error underneath, if any.
    pub fn clickhouse(&self) -> Option<&ChError> {
        match self {
            EngineError::ClickHouse(c)
            | EngineError::Sync { source: c, .. }
            | EngineError::Ledger(LedgerError::Ch(c))
            | EngineError::Lock(LockError::Ch(c)) => Some(c),
            EngineError::Run { failure, .. } => match failure.as_ref() {
                RunError::Ledger(LedgerError::Ch(c)) => Some(c),
                _ => None,
            },
            _ => None,
        }
    }
}

impl From<LedgerError> for EngineError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Ch(c) => EngineError::ClickHouse(c),
            other => EngineError::Ledger(other),
        }
    }
}

impl From<LockError> for EngineError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Ch(c) => EngineError::ClickHouse(c),
            other => EngineError::Lock(other),
        }
    }
}

impl From<RunError> for EngineError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Ledger(l) => l.into(),
            failure => EngineError::Run {
                failure: Box::new(failure),
                report: Box::default(),
            },
        }
    }
}
