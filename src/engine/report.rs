//! What a run did and what the target looks like after it: returned in an
//! [`Outcome`](super::Outcome), and carried by an
//! [`EngineError`](super::EngineError) when the run failed part-way.

use crate::ledger::LedgerEntry;
use crate::ledger::pending::PendingTask;
use crate::model::version::Version;

/// A host that finished a statement left pending by an earlier run with an
/// error.
#[derive(Debug, Clone)]
pub struct HostFailure {
    pub task: PendingTask,
    pub host: String,
    pub error: String,
}

/// What a run did and what the target looks like after it.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub applied: Vec<Version>,
    pub rolled_back: Vec<Version>,
    pub baselined: Vec<Version>,
    /// Statements run.
    pub statements: usize,
    /// Statements some hosts have not finished (from this run and earlier
    /// ones).
    pub pending: Vec<PendingTask>,
    /// Hosts that finished an earlier pending statement with an error.
    pub failed_hosts: Vec<HostFailure>,
    /// The highest applied version after the run.
    pub applied_version: Option<Version>,
    /// The ledger after the run (statuses read times and durations from it).
    pub history: Vec<LedgerEntry>,
    /// Hosts of the target: every host of the cluster, or one.
    pub host_count: usize,
    /// Versions the plan skipped (restricted to other environments).
    pub skipped: Vec<Version>,
}
