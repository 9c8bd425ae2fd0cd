//! The read side of the ledger's event vocabulary: [`EventName`] is what a
//! row's `event` column says (readers match on it, never on strings), and
//! [`LedgerEntry::to_event`] reads a row as the [`Event`] the fold takes.

use super::fold::{Direction, Event, EventKind};
use super::rows::{LedgerEntry, RowError};
use crate::model::migration::Checksum;
use crate::model::version::Version;

/// Every event a ledger row may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventName {
    Started,
    StatementDone,
    Failed,
    Stopped,
    Completed,
    Baselined,
    ChecksumRepaired,
    StatementResolved,
    ManualRollback,
    HostsPending,
    HostsVerified,
    LockTaken,
    LockReleased,
    LockForced,
    Imported,
    /// Written by earlier releases; read, never written.
    Note,
    Backup,
    BackupPruned,
    LedgerCleaned,
    /// `sync-hosts` sent a statement to bring hosts up to the migrated
    /// schema; history only, it changes no migration's state.
    HostSynced,
    /// A run sends the statements that follow without a record before each
    /// one: their effects can be observed afterwards or are safe to repeat
    /// (see `sql::effect`). Until `progress_recorded`, a later run checks
    /// the schema to tell what took effect.
    ProgressGrouped,
    /// Every record of the grouped statements before it is in the ledger
    /// (or, after a stopped run, was settled by observing the schema).
    ProgressRecorded,
    /// The ledger table was upgraded to a newer format in place.
    LedgerUpgraded,
}

impl EventName {
    pub const ALL: [EventName; 23] = [
        EventName::Started,
        EventName::StatementDone,
        EventName::Failed,
        EventName::Stopped,
        EventName::Completed,
        EventName::Baselined,
        EventName::ChecksumRepaired,
        EventName::StatementResolved,
        EventName::ManualRollback,
        EventName::HostsPending,
        EventName::HostsVerified,
        EventName::LockTaken,
        EventName::LockReleased,
        EventName::LockForced,
        EventName::Imported,
        EventName::Note,
        EventName::Backup,
        EventName::BackupPruned,
        EventName::LedgerCleaned,
        EventName::HostSynced,
        EventName::ProgressGrouped,
        EventName::ProgressRecorded,
        EventName::LedgerUpgraded,
    ];

    /// The name in the `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Started => "started",
            EventName::StatementDone => "statement_done",
            EventName::Failed => "failed",
            EventName::Stopped => "stopped",
            EventName::Completed => "completed",
            EventName::Baselined => "baselined",
            EventName::ChecksumRepaired => "checksum_repaired",
            EventName::StatementResolved => "statement_resolved",
            EventName::ManualRollback => "manual_rollback",
            EventName::HostsPending => "hosts_pending",
            EventName::HostsVerified => "hosts_verified",
            EventName::LockTaken => "lock_taken",
            EventName::LockReleased => "lock_released",
            EventName::LockForced => "lock_forced",
            EventName::Imported => "imported",
            EventName::Note => "note",
            EventName::Backup => "backup",
            EventName::BackupPruned => "backup_pruned",
            EventName::LedgerCleaned => "ledger_cleaned",
            EventName::HostSynced => "host_synced",
            EventName::ProgressGrouped => "progress_grouped",
            EventName::ProgressRecorded => "progress_recorded",
            EventName::LedgerUpgraded => "ledger_upgraded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// Lock bookkeeping rather than migration history.
    pub fn is_lock(self) -> bool {
        matches!(
            self,
            EventName::LockTaken | EventName::LockReleased | EventName::LockForced
        )
    }
}

impl LedgerEntry {
    /// The row's event, `None` for a name this release does not know.
    pub fn name(&self) -> Option<EventName> {
        EventName::parse(&self.event)
    }

    /// Whether the row records `name`.
    pub fn is(&self, name: EventName) -> bool {
        self.event == name.as_str()
    }
}

fn direction(s: &str, seq: u64) -> Result<Direction, RowError> {
    match s {
        "up" => Ok(Direction::Up),
        "down" => Ok(Direction::Down),
        other => Err(RowError {
            seq,
            message: format!("unknown direction {other:?}"),
        }),
    }
}

fn index(i: i64, seq: u64) -> Result<usize, RowError> {
    usize::try_from(i).map_err(|_| RowError {
        seq,
        message: format!("invalid statement index {i}"),
    })
}

impl LedgerEntry {
    /// The event this row records, for folding.
    pub fn to_event(&self) -> Result<Event, RowError> {
        let seq = self.seq;
        let version = if self.version.is_empty() {
            None
        } else {
            Some(Version::parse(&self.version).map_err(|e| RowError {
                seq,
                message: e.to_string(),
            })?)
        };
        let checksum = || Checksum(self.checksum.clone());
        let Some(name) = self.name() else {
            return Err(RowError {
                seq,
                message: format!("unknown event {:?}", self.event),
            });
        };
        let kind = match name {
            EventName::Started => EventKind::Started {
                direction: direction(&self.direction, seq)?,
                checksum: checksum(),
                statements: serde_json::from_str::<serde_json::Value>(&self.details)
                    .ok()
                    .and_then(|d| d.get("statements").and_then(|n| n.as_u64()))
                    .unwrap_or(0) as usize,
            },
            EventName::StatementDone => EventKind::StatementDone {
                direction: direction(&self.direction, seq)?,
                index: index(self.statement, seq)?,
            },
            EventName::Failed => EventKind::Failed {
                direction: direction(&self.direction, seq)?,
                index: index(self.statement, seq)?,
                error: self.error.clone(),
                partial: serde_json::from_str::<serde_json::Value>(&self.details)
                    .ok()
                    .and_then(|d| d.get("partial").and_then(|b| b.as_bool()))
                    .unwrap_or(false),
            },
            EventName::Stopped => EventKind::Stopped {
                direction: direction(&self.direction, seq)?,
                index: index(self.statement, seq)?,
            },
            EventName::Completed => EventKind::Completed {
                direction: direction(&self.direction, seq)?,
            },
            EventName::Baselined => EventKind::Baselined {
                checksum: (!self.checksum.is_empty()).then(checksum),
                adopted: serde_json::from_str::<serde_json::Value>(&self.details)
                    .ok()
                    .is_some_and(|d| d.get("adopted_from").is_some()),
            },
            EventName::ChecksumRepaired => EventKind::ChecksumRepaired {
                checksum: checksum(),
            },
            EventName::StatementResolved => EventKind::StatementResolved {
                direction: direction(&self.direction, seq)?,
                index: index(self.statement, seq)?,
                done: serde_json::from_str::<serde_json::Value>(&self.details)
                    .ok()
                    .and_then(|d| d.get("done").and_then(|b| b.as_bool()))
                    .unwrap_or(false),
            },
            EventName::ManualRollback => EventKind::ManualRollback,
            other => EventKind::Note {
                message: other.as_str().to_string(),
            },
        };
        Ok(Event { seq, version, kind })
    }
}
