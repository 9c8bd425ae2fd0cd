//! chmigrate: versioned ClickHouse schema migrations applied safely across
//! every replica of a cluster.
//!
//! The crate is one engine with thin edges. The pure core — [`version`],
//! [`sql`], [`source`] parsing, [`migration`], [`vars`], [`history`],
//! [`ledger`], [`plan`], [`prepare`], [`validate`] and [`report`] — does no
//! I/O and is unit tested. The I/O lives in [`runtime`] (ClickHouse: the
//! ledger, the lock, execution) and in the file-system edges
//! ([`source::dir`], [`config`]). See `docs/design.md`.

pub mod backup;
pub mod clean;
pub mod clock;
pub mod config;
pub mod crd;
pub mod diagnostic;
pub mod history;
pub mod ledger;
pub mod manifest;
pub mod migration;
pub mod migration_status;
pub mod performance;
pub mod plan;
pub mod prepare;
pub mod render;
pub mod renumber;
pub mod report;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod set_status;
pub mod source;
pub mod sql;
pub mod strategy;
pub mod validate;
pub mod vars;
pub mod version;
pub mod waves;

/// Cases per property test: `CHMIGRATE_FUZZ_CASES` raises them for a longer
/// bounded fuzzing run (`scripts/fuzz.sh`); the suite uses `default`.
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("CHMIGRATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub use migration::{Checksum, Location, Migration, Statement};
pub use version::Version;
