//! The engine: the one migrate / rollback / verify loop, as a library API.
//! The command line, `apply -f`, the operator, `test`, the tests and the
//! benchmarks all run migrations through it; there is no second way.
//!
//! ```text
//! connect(&Settings) -> Session
//! plan(&Session, &Settings, &[Migration], TargetSpec) -> Planned     reads only
//! migrate(&Session, &Settings, &Planned, &RunContext, &dyn Progress)
//!     -> Outcome (done, nothing to do, hosts pending, locked, blocked …)
//!      | EngineError (with the partial Report of what ran)
//! ```
//!
//! Nothing here prints, knows exit codes or command-line types: who runs
//! (the ledger's actor, which stale locks may be taken over, the stop flag)
//! comes in a [`RunContext`]; what happens goes out through [`Progress`],
//! `tracing`, and the returned values.

pub mod context;
pub mod drift;
pub mod error;
pub mod execute;
pub mod inspect;
pub mod lock;
pub mod maintenance;
pub mod migrate;
pub mod report;
pub mod session;
pub mod settle;

pub use context::{RunContext, StaleLocks, StopFlag};
pub use error::{Blocked, EngineError, LockHeld};
pub use execute::{Progress, RunError, Silent};
pub use lock::{unlock, with_lock};
pub use migrate::{Outcome, Planned, TargetSpec, migrate, plan};
pub use report::{HostFailure, Report};
pub use session::{connect, events, ledger_table};
