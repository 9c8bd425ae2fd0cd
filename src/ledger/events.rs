//! The write side of the ledger's event vocabulary: [`Record`] is an event
//! to append — the one place each kind of row is built. (The read side is
//! [`super::vocabulary`].)

use serde_json::{Value, json};

use super::backups::BackupDetails;
use super::fold::Direction;
use super::pending::PendingDetails;
use super::rows::{HostResult, LedgerEntry};
use super::vocabulary::EventName;
use crate::model::migration::Checksum;
use crate::model::version::Version;

/// The version, direction and statement a row is about.
fn at(row: &mut LedgerEntry, version: &Version, direction: Direction, index: usize) {
    row.version = version.to_string();
    row.direction = dir(direction).into();
    row.statement = index as i64;
}

fn dir(d: Direction) -> &'static str {
    match d {
        Direction::Up => "up",
        Direction::Down => "down",
    }
}

/// The audit fields of a migration's header (`-- Migration:`,
/// `-- Author:`, `-- Created:`), recorded with each run so that `history`
/// and reports show them after the file is gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub migration: Option<String>,
    pub author: Option<String>,
    pub created: Option<String>,
}

impl Provenance {
    pub fn of(m: &crate::model::migration::Migration) -> Self {
        Provenance {
            migration: m.name.clone(),
            author: m.author.clone(),
            created: m.created.clone(),
        }
    }

    /// The fields present, as `details` keys.
    fn write(&self, details: &mut Value) {
        for (key, value) in [
            ("migration", &self.migration),
            ("author", &self.author),
            ("created", &self.created),
        ] {
            if let Some(v) = value {
                details[key] = json!(v);
            }
        }
    }

    /// Read back from a row's `details`.
    pub fn read(details: &str) -> Self {
        let d: Value = serde_json::from_str(details).unwrap_or_default();
        let get = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
        Provenance {
            migration: get("migration"),
            author: get("author"),
            created: get("created"),
        }
    }
}

/// An event to append. Fields the run shares (run id, actor, environment,
/// user) come from the writer's template; `seq` and the time from the
/// writer.
#[derive(Debug, Clone)]
pub enum Record {
    /// A run of a migration began.
    Started {
        version: Version,
        direction: Direction,
        checksum: Checksum,
        description: String,
        statements: usize,
        source: String,
        /// A derived rollback's statements: what ran is in no file.
        derived_sql: Option<Vec<String>>,
        /// Applying: the statements that roll the migration back, as
        /// written (variables not substituted, so no secret value), so that
        /// it can be rolled back once its source is gone (a deleted
        /// namespace). `None` when it has no rollback.
        rollback_sql: Option<Vec<String>>,
        /// Run in a wave with other migrations.
        parallel: bool,
        provenance: Provenance,
    },
    StatementDone {
        version: Version,
        direction: Direction,
        index: usize,
        checksum: Checksum,
        duration_ms: u64,
        hosts: Vec<HostResult>,
        query_id: String,
        /// For `CREATE … IF NOT EXISTS`: whether the statement created its
        /// object (it did not exist before), when that was checked.
        created: Option<bool>,
    },
    /// After a run stopped while its progress was grouped: the statement's
    /// effect is on the schema (`seen` says what was looked at), so it
    /// took effect and is not sent again. A `statement_done` row.
    StatementObserved {
        version: Version,
        direction: Direction,
        index: usize,
        checksum: Checksum,
        seen: String,
    },
    /// After a run stopped while its progress was grouped: the statement's
    /// effect is not on the schema, so it did not take effect and runs
    /// now. A `statement_resolved` row with `done: false`.
    StatementNotSeen {
        version: Version,
        direction: Direction,
        index: usize,
        seen: String,
    },
    /// The statements that follow run without a record before each one.
    ProgressGrouped,
    /// The grouped statements' records are all written; `recovered_from`:
    /// settled for a run that stopped while grouping.
    ProgressRecorded {
        recovered_from: Option<String>,
    },
    /// The ledger table was upgraded in place.
    LedgerUpgraded {
        from: u8,
        to: u8,
        rows: usize,
        kept_as: String,
    },
    Failed {
        version: Version,
        direction: Direction,
        index: usize,
        checksum: Checksum,
        duration_ms: u64,
        error: String,
        /// The statement may have taken effect somewhere (other hosts ran
        /// it, a mutation was submitted).
        partial: bool,
    },
    Stopped {
        version: Version,
        direction: Direction,
        index: usize,
    },
    Completed {
        version: Version,
        direction: Direction,
        checksum: Checksum,
        description: String,
        duration_ms: u64,
    },
    Baselined {
        version: Version,
    },
    /// A migration another tool applied, adopted as applied (a
    /// `baselined` row naming its source, with the file's checksum): it
    /// counts as run by chmigrate, so it can be rolled back, but it sets no
    /// baseline floor.
    Adopted {
        version: Version,
        checksum: Checksum,
        description: String,
        /// Where it is recorded as applied, e.g. `analytics.pillar_migrations`.
        source: String,
        /// When that record says it was applied, as written there.
        applied_at: Option<String>,
    },
    ChecksumRepaired {
        version: Version,
        checksum: Checksum,
        previous: Checksum,
    },
    StatementResolved {
        version: Version,
        direction: Direction,
        index: usize,
        done: bool,
    },
    ManualRollback {
        version: Version,
        /// Empty when the source is gone.
        checksum: String,
        reason: Option<String>,
    },
    HostsPending {
        version: String,
        direction: String,
        statement: i64,
        details: PendingDetails,
    },
    HostsVerified {
        version: String,
        direction: String,
        statement: i64,
        details: PendingDetails,
    },
    LockTaken {
        token: String,
        /// How long the holder's lock stays held without renewal: what
        /// others judge its lease by.
        lease_s: u64,
        /// The machine boot and process namespace the holder's pid belongs
        /// to (`<boot id>/<pid namespace>`): only a runner in the same one
        /// may judge that pid gone.
        host: String,
    },
    LockReleased {
        token: String,
    },
    /// A lock broken by `unlock` or taken over; `details` names the
    /// previous holder and why.
    LockForced {
        details: Value,
    },
    Imported {
        file: String,
        events: usize,
    },
    Backup {
        version: Version,
        direction: Direction,
        index: usize,
        details: BackupDetails,
    },
    BackupPruned {
        version: String,
        name: String,
        database: String,
        table: String,
        how: &'static str,
    },
    LedgerCleaned {
        removed: usize,
        older_than_s: u64,
        before_us: u64,
    },
    /// `sync-hosts`: one repair statement sent to the cluster, the hosts it
    /// was for, and each host's answer.
    HostSynced {
        object: String,
        action: &'static str,
        hosts: Vec<String>,
        sql: String,
        results: Vec<HostResult>,
    },
}

impl Record {
    pub fn name(&self) -> EventName {
        match self {
            Record::Started { .. } => EventName::Started,
            Record::StatementDone { .. } | Record::StatementObserved { .. } => {
                EventName::StatementDone
            }
            Record::StatementNotSeen { .. } => EventName::StatementResolved,
            Record::ProgressGrouped => EventName::ProgressGrouped,
            Record::ProgressRecorded { .. } => EventName::ProgressRecorded,
            Record::LedgerUpgraded { .. } => EventName::LedgerUpgraded,
            Record::Failed { .. } => EventName::Failed,
            Record::Stopped { .. } => EventName::Stopped,
            Record::Completed { .. } => EventName::Completed,
            Record::Baselined { .. } | Record::Adopted { .. } => EventName::Baselined,
            Record::ChecksumRepaired { .. } => EventName::ChecksumRepaired,
            Record::StatementResolved { .. } => EventName::StatementResolved,
            Record::ManualRollback { .. } => EventName::ManualRollback,
            Record::HostsPending { .. } => EventName::HostsPending,
            Record::HostsVerified { .. } => EventName::HostsVerified,
            Record::LockTaken { .. } => EventName::LockTaken,
            Record::LockReleased { .. } => EventName::LockReleased,
            Record::LockForced { .. } => EventName::LockForced,
            Record::Imported { .. } => EventName::Imported,
            Record::Backup { .. } => EventName::Backup,
            Record::BackupPruned { .. } => EventName::BackupPruned,
            Record::LedgerCleaned { .. } => EventName::LedgerCleaned,
            Record::HostSynced { .. } => EventName::HostSynced,
        }
    }

    /// Writes the event's fields into `row` (a copy of the run's template).
    pub fn fill(self, row: &mut LedgerEntry) {
        row.event = self.name().as_str().to_string();
        match self {
            Record::Started {
                version,
                direction,
                checksum,
                description,
                statements,
                source,
                derived_sql,
                rollback_sql,
                parallel,
                provenance,
            } => {
                row.version = version.to_string();
                row.direction = dir(direction).into();
                row.checksum = checksum.0;
                row.description = description;
                let mut details = json!({ "statements": statements, "source": source });
                if let Some(sql) = derived_sql {
                    details["derived"] = json!(true);
                    details["sql"] = json!(sql);
                }
                if let Some(sql) = rollback_sql {
                    details["rollback"] = json!(sql);
                }
                if parallel {
                    details["parallel"] = json!(true);
                }
                provenance.write(&mut details);
                row.details = details.to_string();
            }
            Record::StatementDone {
                version,
                direction,
                index,
                checksum,
                duration_ms,
                hosts,
                query_id,
                created,
            } => {
                at(row, &version, direction, index);
                row.checksum = checksum.0;
                row.duration_ms = duration_ms;
                row.hosts = serde_json::to_string(&hosts).unwrap_or_default();
                let mut details = json!({ "query_id": query_id });
                if let Some(c) = created {
                    details["created"] = json!(c);
                }
                row.details = details.to_string();
            }
            Record::StatementObserved {
                version,
                direction,
                index,
                checksum,
                seen,
            } => {
                at(row, &version, direction, index);
                row.checksum = checksum.0;
                row.details = json!({ "observed": seen }).to_string();
            }
            Record::StatementNotSeen {
                version,
                direction,
                index,
                seen,
            } => {
                at(row, &version, direction, index);
                row.details = json!({ "done": false, "observed": seen }).to_string();
            }
            Record::ProgressGrouped => {}
            Record::ProgressRecorded { recovered_from } => {
                if let Some(run) = recovered_from {
                    row.details = json!({ "recovered_from": run }).to_string();
                }
            }
            Record::LedgerUpgraded {
                from,
                to,
                rows,
                kept_as,
            } => {
                row.details =
                    json!({ "from": from, "to": to, "rows": rows, "kept_as": kept_as }).to_string();
            }
            Record::Failed {
                version,
                direction,
                index,
                checksum,
                duration_ms,
                error,
                partial,
            } => {
                at(row, &version, direction, index);
                row.checksum = checksum.0;
                row.duration_ms = duration_ms;
                row.error = error;
                if partial {
                    row.details = json!({ "partial": true }).to_string();
                }
            }
            Record::Stopped {
                version,
                direction,
                index,
            } => {
                at(row, &version, direction, index);
            }
            Record::Completed {
                version,
                direction,
                checksum,
                description,
                duration_ms,
            } => {
                row.version = version.to_string();
                row.direction = dir(direction).into();
                row.checksum = checksum.0;
                row.description = description;
                row.duration_ms = duration_ms;
            }
            Record::Baselined { version } => {
                row.version = version.to_string();
                row.description = "baseline".into();
            }
            Record::Adopted {
                version,
                checksum,
                description,
                source,
                applied_at,
            } => {
                row.version = version.to_string();
                row.checksum = checksum.0;
                row.description = description;
                row.details =
                    json!({ "adopted_from": source, "applied_at": applied_at }).to_string();
            }
            Record::ChecksumRepaired {
                version,
                checksum,
                previous,
            } => {
                row.version = version.to_string();
                row.checksum = checksum.0;
                row.details = json!({ "previous": previous.0 }).to_string();
            }
            Record::StatementResolved {
                version,
                direction,
                index,
                done,
            } => {
                at(row, &version, direction, index);
                row.details = json!({ "done": done }).to_string();
            }
            Record::ManualRollback {
                version,
                checksum,
                reason,
            } => {
                row.version = version.to_string();
                row.direction = "down".into();
                row.checksum = checksum;
                row.details = json!({ "reason": reason }).to_string();
            }
            Record::HostsPending {
                version,
                direction,
                statement,
                details,
            }
            | Record::HostsVerified {
                version,
                direction,
                statement,
                details,
            } => {
                row.version = version;
                row.direction = direction;
                row.statement = statement;
                row.details = serde_json::to_string(&details).unwrap_or_default();
            }
            Record::LockTaken {
                token,
                lease_s,
                host,
            } => {
                row.details =
                    json!({ "token": token, "lease_s": lease_s, "host": host }).to_string();
            }
            Record::LockReleased { token } => {
                row.details = json!({ "token": token }).to_string();
            }
            Record::LockForced { details } => row.details = details.to_string(),
            Record::Imported { file, events } => {
                row.details = json!({ "file": file, "events": events }).to_string();
            }
            Record::Backup {
                version,
                direction,
                index,
                details,
            } => {
                at(row, &version, direction, index);
                row.details = serde_json::to_string(&details).unwrap_or_default();
            }
            Record::BackupPruned {
                version,
                name,
                database,
                table,
                how,
            } => {
                row.version = version;
                row.details = json!({
                    "name": name,
                    "database": database,
                    "table": table,
                    "how": how,
                })
                .to_string();
            }
            Record::LedgerCleaned {
                removed,
                older_than_s,
                before_us,
            } => {
                row.details = json!({
                    "removed": removed,
                    "older_than_s": older_than_s,
                    "before_us": before_us,
                })
                .to_string();
            }
            Record::HostSynced {
                object,
                action,
                hosts,
                sql,
                results,
            } => {
                row.hosts = serde_json::to_string(&results).unwrap_or_default();
                row.error = results
                    .iter()
                    .filter(|r| r.status != 0)
                    .map(|r| format!("{}:{}: {}", r.host, r.port, r.error))
                    .collect::<Vec<_>>()
                    .join("; ");
                row.details = json!({
                    "object": object,
                    "action": action,
                    "for_hosts": hosts,
                    "sql": sql,
                })
                .to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_every_record_reads_back_as_its_event() {
        for n in EventName::ALL {
            assert_eq!(EventName::parse(n.as_str()), Some(n));
        }
        assert_eq!(EventName::parse("nonsense"), None);
        let v = Version::parse("3").unwrap();
        let c = Checksum("abc".into());
        let records = [
            Record::Started {
                version: v.clone(),
                direction: Direction::Down,
                checksum: c.clone(),
                description: "d".into(),
                statements: 2,
                source: "V3__d.sql".into(),
                derived_sql: Some(vec!["DROP TABLE IF EXISTS t".into()]),
                rollback_sql: None,
                parallel: true,
                provenance: Provenance::default(),
            },
            Record::StatementResolved {
                version: v.clone(),
                direction: Direction::Up,
                index: 1,
                done: true,
            },
            Record::Baselined { version: v.clone() },
            Record::Adopted {
                version: v.clone(),
                checksum: Checksum("ab".into()),
                description: "create users".into(),
                source: "db.pillar_migrations".into(),
                applied_at: Some("2025-05-28 12:00:00".into()),
            },
        ];
        for r in records {
            let name = r.name();
            let mut row = LedgerEntry::default();
            r.fill(&mut row);
            assert_eq!(row.name(), Some(name));
            let ev = row.to_event().expect("a written row reads back");
            assert_eq!(ev.version, Some(v.clone()));
        }
        let mut row = LedgerEntry::default();
        Record::Started {
            version: v.clone(),
            direction: Direction::Down,
            checksum: c,
            description: "d".into(),
            statements: 2,
            source: "V3__d.sql".into(),
            derived_sql: Some(vec!["DROP TABLE IF EXISTS t".into()]),
            rollback_sql: Some(vec!["DROP TABLE ${database}.t".into()]),
            parallel: false,
            provenance: Provenance {
                migration: Some("Create users table".into()),
                author: Some("Data Team".into()),
                created: None,
            },
        }
        .fill(&mut row);
        let details: Value = serde_json::from_str(&row.details).unwrap();
        assert_eq!(details["rollback"][0], "DROP TABLE ${database}.t");
        assert_eq!(details["statements"], 2);
        assert_eq!(details["derived"], true);
        assert_eq!(details["sql"][0], "DROP TABLE IF EXISTS t");
        assert!(details.get("parallel").is_none());
        assert_eq!(details["migration"], "Create users table");
        assert_eq!(details["author"], "Data Team");
        assert!(details.get("created").is_none());
        let p = Provenance::read(&row.details);
        assert_eq!(p.author.as_deref(), Some("Data Team"));
    }

    #[test]
    fn a_host_synced_row_names_what_it_did_and_changes_no_migrations_state() {
        use crate::ledger::fold::TargetState;
        let mut row = LedgerEntry {
            seq: 7,
            ..Default::default()
        };
        Record::HostSynced {
            object: "app.t".into(),
            action: "attach",
            hosts: vec!["127.0.0.12:9002".into()],
            sql: "ATTACH TABLE IF NOT EXISTS app.t ON CLUSTER c (x UInt32) ENGINE = Log".into(),
            results: vec![HostResult {
                host: "127.0.0.12".into(),
                port: 9002,
                status: 0,
                error: String::new(),
            }],
        }
        .fill(&mut row);
        assert_eq!(row.event, "host_synced");
        assert!(row.version.is_empty() && row.error.is_empty());
        let details: Value = serde_json::from_str(&row.details).unwrap();
        assert_eq!(details["object"], "app.t");
        assert_eq!(details["for_hosts"][0], "127.0.0.12:9002");
        let hosts: Vec<HostResult> = serde_json::from_str(&row.hosts).unwrap();
        assert_eq!(hosts[0].port, 9002);
        let ev = row.to_event().unwrap();
        assert_eq!(TargetState::fold(&[ev]), TargetState::fold(&[]));
    }
}
