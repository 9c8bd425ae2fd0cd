//! The model every later stage reads (pure): versions, migrations and their
//! checksums, rollback strategies, secrets and the diagnostics reported to
//! people. It imports only `sql` and `clock`.

pub mod diagnostic;
pub mod migration;
pub mod secret;
pub mod strategy;
pub mod version;

pub use migration::{Checksum, Location, Migration, Statement};
pub use version::Version;
