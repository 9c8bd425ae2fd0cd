//! The history ledger (pure): its rows and SQL ([`rows`]), the typed event
//! vocabulary ([`vocabulary`] to read, [`events`] to write), the fold of events into each version's state
//! ([`fold`]), the host tasks still open ([`pending`]), and what is read
//! from it: backups, `clean`, `profile`, reports. The runtime sends the SQL;
//! nothing here does I/O.

pub mod adopt;
pub mod backups;
pub mod clean;
pub mod events;
pub mod fold;
pub mod pending;
pub mod performance;
pub mod report;
pub mod rows;
pub mod vocabulary;

pub use events::Record;
pub use rows::{
    COLUMNS, COLUMNS_V1, Format, HostResult, LedgerEntry, LedgerTable, RowError, StoredRow,
    format_of, shape_mismatches,
};
pub use vocabulary::EventName;
