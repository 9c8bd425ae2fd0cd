//! `chmigrate clean --older-than D` (pure half): which ledger events no
//! longer define the target's current state and may be deleted.
//!
//! For each version, everything before its latest `started` or
//! `baselined` event is superseded: the fold starts over there
//! (host tasks among them only once no host is pending). Lock events
//! (`lock_taken`, `lock_released`), notes and `imported` markers define
//! nothing. Kept whatever their age: the events from each
//! version's latest anchor on, `hosts_pending` tasks still open, backups not
//! yet pruned, `lock_forced` and `ledger_cleaned` (the audit trail of
//! overrides), and everything of the run doing the cleaning. Before
//! anything is deleted, [`removable`] checks that the remaining events fold
//! to exactly the same state, open tasks and backups.

use std::collections::BTreeMap;

use crate::ledger::LedgerEntry;
use crate::ledger::fold::TargetState;
use crate::ledger::vocabulary::EventName;

/// Events that start a version's state afresh. (`manual_rollback` does
/// not: the fold turns an applied version back into "not applied" with it,
/// so the run before it must stay.)
const ANCHORS: [EventName; 2] = [EventName::Started, EventName::Baselined];

/// Never deleted.
const KEEP: [EventName; 2] = [EventName::LockForced, EventName::LedgerCleaned];

/// Why a clean was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanError {
    #[error("ledger row seq {seq} cannot be read: {message}")]
    Row { seq: u64, message: String },
    #[error("removing the events would change {0}; nothing was removed (please report this)")]
    WouldChange(&'static str),
}

fn fold(entries: &[LedgerEntry]) -> Result<TargetState, CleanError> {
    let events = entries
        .iter()
        .map(|e| {
            e.to_event().map_err(|r| CleanError::Row {
                seq: e.seq,
                message: r.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TargetState::fold(&events))
}

/// The `seq` of every event older than `cutoff_us` that defines nothing
/// current, leaving out events of `own_run`.
pub fn removable(
    entries: &[LedgerEntry],
    cutoff_us: u64,
    own_run: &str,
) -> Result<Vec<u64>, CleanError> {
    let mut sorted: Vec<&LedgerEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut anchor: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &sorted {
        if !e.version.is_empty() && e.name().is_some_and(|n| ANCHORS.contains(&n)) {
            anchor.insert(&e.version, e.seq);
        }
    }
    let open: Vec<String> = crate::ledger::pending::open_tasks(entries)
        .into_iter()
        .map(|t| t.task)
        .collect();
    let unpruned: Vec<(String, String, String)> = crate::ledger::backups::list(entries)
        .into_iter()
        .filter(|b| !b.pruned)
        .map(|b| (b.details.name, b.details.database, b.details.table))
        .collect();
    let backup_key = |e: &LedgerEntry| -> Option<(String, String, String)> {
        let d: serde_json::Value = serde_json::from_str(&e.details).ok()?;
        Some((
            d["name"].as_str()?.to_string(),
            d["database"].as_str()?.to_string(),
            d["table"].as_str()?.to_string(),
        ))
    };
    let mut out = Vec::new();
    for e in &sorted {
        if e.event_time_us >= cutoff_us
            || e.run_id == own_run
            || e.name().is_some_and(|n| KEEP.contains(&n))
        {
            continue;
        }
        let superseded = match e.name() {
            Some(
                EventName::LockTaken
                | EventName::LockReleased
                | EventName::Note
                | EventName::Imported,
            ) => true,
            Some(EventName::Backup | EventName::BackupPruned) => {
                backup_key(e).is_some_and(|k| !unpruned.contains(&k))
            }
            Some(EventName::HostsPending | EventName::HostsVerified) => {
                let task = serde_json::from_str::<serde_json::Value>(&e.details)
                    .ok()
                    .and_then(|d| d["task"].as_str().map(str::to_string));
                task.is_some_and(|t| !open.contains(&t))
                    && anchor.get(e.version.as_str()).is_some_and(|a| e.seq < *a)
            }
            _ => anchor.get(e.version.as_str()).is_some_and(|a| e.seq < *a),
        };
        if superseded {
            out.push(e.seq);
        }
    }
    let kept: Vec<LedgerEntry> = entries
        .iter()
        .filter(|e| !out.contains(&e.seq))
        .cloned()
        .collect();
    if fold(&kept)? != fold(entries)? {
        return Err(CleanError::WouldChange("the state of a migration"));
    }
    let open_after: Vec<String> = crate::ledger::pending::open_tasks(&kept)
        .into_iter()
        .map(|t| t.task)
        .collect();
    if open_after != open {
        return Err(CleanError::WouldChange("the hosts still pending"));
    }
    let unpruned_after = crate::ledger::backups::list(&kept)
        .into_iter()
        .filter(|b| !b.pruned)
        .count();
    if unpruned_after != unpruned.len() {
        return Err(CleanError::WouldChange("the backups list"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, version: &str, event: &str, direction: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            event_time_us: seq,
            run_id: format!("r{}", seq / 100),
            version: version.into(),
            event: event.into(),
            direction: direction.into(),
            statement: if event.starts_with("statement") || event == "failed" {
                0
            } else {
                -1
            },
            checksum: "c".into(),
            details: if event == "started" {
                r#"{"statements":1}"#.into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    fn history() -> Vec<LedgerEntry> {
        vec![
            ev(1, "", "lock_taken", ""),
            ev(2, "1", "started", "up"),
            ev(3, "1", "statement_done", "up"),
            ev(4, "1", "completed", "up"),
            ev(5, "", "lock_released", ""),
            // Rolled back, then applied again.
            ev(6, "1", "started", "down"),
            ev(7, "1", "statement_done", "down"),
            ev(8, "1", "completed", "down"),
            ev(9, "1", "started", "up"),
            ev(10, "1", "statement_done", "up"),
            ev(11, "1", "completed", "up"),
            ev(12, "", "lock_forced", ""),
            ev(13, "2", "started", "up"),
            ev(14, "2", "failed", "up"),
        ]
    }

    #[test]
    fn superseded_runs_and_lock_events_go_current_state_stays() {
        let h = history();
        let r = removable(&h, u64::MAX, "none").unwrap();
        assert_eq!(r, [1, 2, 3, 4, 5, 6, 7, 8]);
        let kept: Vec<LedgerEntry> = h.iter().filter(|e| !r.contains(&e.seq)).cloned().collect();
        assert_eq!(fold(&kept).unwrap(), fold(&h).unwrap());
    }

    #[test]
    fn young_events_and_the_own_run_stay() {
        let h = history();
        assert_eq!(removable(&h, 5, "none").unwrap(), [1, 2, 3, 4]);
        assert_eq!(removable(&h, u64::MAX, "r0").unwrap(), Vec::<u64>::new());
        assert!(removable(&h, 0, "none").unwrap().is_empty());
    }

    fn backup(seq: u64, event: &str) -> LedgerEntry {
        let mut b = ev(seq, "1", event, "up");
        b.details = r#"{"name":"n","database":"d","table":"t","hosts":["h"],"statement":0}"#.into();
        b
    }

    #[test]
    fn unpruned_backups_stay_pruned_ones_go() {
        // Taken in V1's first run, before its latest anchor (seq 9).
        let mut h = history();
        h.push(backup(3, "backup"));
        h.sort_by_key(|e| e.seq);
        h.iter_mut()
            .enumerate()
            .for_each(|(i, e)| e.seq = i as u64 + 1);
        let seq_of_backup = h.iter().find(|e| e.event == "backup").unwrap().seq;
        let r = removable(&h, u64::MAX, "none").unwrap();
        assert!(!r.contains(&seq_of_backup), "{r:?}");
        // Once pruned, both records define nothing.
        let mut pruned = backup(100, "backup_pruned");
        pruned.event_time_us = 100;
        h.push(pruned);
        let r = removable(&h, u64::MAX, "none").unwrap();
        assert!(r.contains(&seq_of_backup) && r.contains(&100), "{r:?}");
    }

    #[test]
    fn a_manual_rollback_keeps_the_run_it_undoes() {
        // Applied, undone by hand, applied again, undone by hand again.
        let h = vec![
            ev(1, "1", "started", "up"),
            ev(2, "1", "statement_done", "up"),
            ev(3, "1", "completed", "up"),
            ev(4, "1", "manual_rollback", ""),
            ev(5, "1", "started", "up"),
            ev(6, "1", "statement_done", "up"),
            ev(7, "1", "completed", "up"),
            ev(8, "1", "manual_rollback", ""),
        ];
        let r = removable(&h, u64::MAX, "none").unwrap();
        assert_eq!(r, [1, 2, 3, 4]);
        let kept: Vec<LedgerEntry> = h.iter().filter(|e| !r.contains(&e.seq)).cloned().collect();
        assert_eq!(fold(&kept).unwrap(), fold(&h).unwrap());
        // Cleaning again finds nothing more, and does not fail.
        assert!(removable(&kept, u64::MAX, "none").unwrap().is_empty());
    }
}
