//! chmigrate: versioned ClickHouse schema migrations applied safely across
//! every replica of a cluster.
//!
//! The crate is layered, pure at the bottom (see `docs/design.md`, and
//! `tests/layers.rs`, which fails when a module imports from a layer above
//! its own):
//!
//! 1. [`clock`], [`sql`]: calendar arithmetic, SQL text (lexing, splitting,
//!    statement analysis, `ON CLUSTER` rewriting, variables).
//! 2. [`model`]: versions, migrations, checksums, strategies, diagnostics.
//! 3. [`source`]: migration files and in-memory definitions → [`model`].
//! 4. [`ledger`]: ledger rows, the typed event vocabulary, the fold into
//!    per-version state, and everything read from it.
//! 5. [`plan`]: the planner, preparation of exact SQL, offline validation,
//!    parallel waves, status snapshots.
//! 6. [`authoring`], [`config`]: writing migrations; `chmigrate.yaml`.
//! 7. [`runtime`]: ClickHouse I/O only (connection, ledger store, lock, DDL
//!    answers, backups).
//! 8. [`engine`]: the one migrate / rollback / verify loop, as a library API.
//! 9. [`k8s`]: the custom resources, their status, and the reconcile of one
//!    `MigrationSet` through the engine.
//!
//! Layers 1–6 do no I/O (but for [`source::dir`] and
//! [`config::FileConfig::load`], which read files) and are unit tested. The
//! binary's `cli` and `operator` sit on top and import from here only.

pub mod authoring;
pub mod clock;
pub mod config;
pub mod engine;
pub mod k8s;
pub mod ledger;
pub mod model;
pub mod plan;
pub mod runtime;
pub mod source;
pub mod sql;

/// Cases per property test: `CHMIGRATE_FUZZ_CASES` raises them for a longer
/// bounded fuzzing run (`scripts/fuzz.sh`); the suite uses `default`.
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("CHMIGRATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub use model::migration::{Checksum, Location, Migration, Statement};
pub use model::version::Version;
