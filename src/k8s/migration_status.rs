//! Status of a `ClickHouseMigration` in each set that includes it (pure):
//! its phase, when it was applied and how long it took, how many hosts
//! finished it, and the last error — computed from the set's ledger after a
//! run, never from what the run hoped to do.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::k8s::crd::{ClickHouseMigrationStatus, Phase, SetStatus};
use crate::k8s::set_status::{self, Health};
use crate::ledger::LedgerEntry;
use crate::ledger::fold::{Direction, EventKind, TargetState, VersionState};
use crate::model::version::Version;

/// What one reconcile of a set learnt about its target.
#[derive(Debug, Clone, Default)]
pub struct SetFacts {
    /// `namespace/name` is not needed: the set's name is enough within a
    /// namespace.
    pub set: String,
    pub hosts_total: u32,
    /// The ledger after the run.
    pub history: Vec<LedgerEntry>,
    /// Hosts that have not finished some statement of a version.
    pub pending_hosts: BTreeMap<Version, Vec<String>>,
    /// Errors this run hit, per version.
    pub errors: BTreeMap<Version, String>,
    /// Versions the plan skipped (other environments).
    pub skipped: Vec<Version>,
}

/// Start and completion times (µs) of the latest up run of each version.
fn timings(history: &[LedgerEntry]) -> BTreeMap<Version, (Option<u64>, u64)> {
    let mut started: BTreeMap<Version, u64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in history {
        let Ok(ev) = e.to_event() else { continue };
        let Some(v) = ev.version else { continue };
        match ev.kind {
            EventKind::Started {
                direction: Direction::Up,
                ..
            } => {
                started.insert(v, e.event_time_us);
            }
            EventKind::Completed {
                direction: Direction::Up,
            }
            | EventKind::Baselined { .. } => {
                out.insert(v.clone(), (started.get(&v).copied(), e.event_time_us));
            }
            _ => {}
        }
    }
    out
}

/// The status entry of `version` in the set `facts` describes.
pub fn set_entry(version: &Version, facts: &SetFacts) -> SetStatus {
    let state = {
        let events: Vec<_> = facts
            .history
            .iter()
            .filter_map(|e| e.to_event().ok())
            .collect();
        TargetState::fold(&events)
    };
    let pending = facts.pending_hosts.get(version).map_or(0, Vec::len) as u32;
    let total = facts.hosts_total.max(1);
    let mut entry = SetStatus {
        set: facts.set.clone(),
        hosts_total: total,
        ..Default::default()
    };
    let (phase, error) = match state.get(version) {
        _ if facts.skipped.contains(version) => (Phase::Skipped, None),
        _ if facts.errors.contains_key(version) => {
            (Phase::Failed, facts.errors.get(version).cloned())
        }
        Some(VersionState::Applied { .. }) if pending > 0 => (Phase::Running, None),
        Some(VersionState::Applied { .. }) => (Phase::Applied, None),
        Some(VersionState::RolledBack) => (Phase::RolledBack, None),
        Some(VersionState::InProgress(p)) => match &p.failed {
            Some(err) => (Phase::Failed, Some(err.clone())),
            None => (Phase::Running, None),
        },
        None => (Phase::Pending, None),
    };
    entry.phase = phase;
    // A statement's error may quote the statement: kept small.
    entry.last_error = error.map(|e| e.chars().take(2000).collect());
    entry.hosts_done = match phase {
        Phase::Applied => total,
        Phase::Running => total.saturating_sub(pending),
        _ => 0,
    };
    if matches!(phase, Phase::Applied | Phase::Running)
        && let Some((start, done)) = timings(&facts.history).get(version)
    {
        entry.applied_at = Some(crate::clock::format_us(*done));
        entry.duration_ms = start.map(|s| done.saturating_sub(s) / 1000);
    }
    entry
}

/// A migration's health over every set that includes it: failed in one is
/// stalled, pending or running in one is progressing, else ready.
fn health_of(sets: &[SetStatus]) -> Option<Health> {
    if sets.is_empty() {
        return None;
    }
    if let Some(failed) = sets.iter().find(|e| e.phase == Phase::Failed) {
        return Some(Health::Stalled {
            reason: "MigrationFailed".into(),
            message: format!(
                "failed in set {}: {}",
                failed.set,
                failed.last_error.as_deref().unwrap_or("")
            ),
        });
    }
    if let Some(busy) = sets
        .iter()
        .find(|e| matches!(e.phase, Phase::Pending | Phase::Running))
    {
        return Some(Health::Progressing {
            reason: format!("{:?}", busy.phase),
            message: format!(
                "{:?} in set {} ({}/{} hosts)",
                busy.phase, busy.set, busy.hosts_done, busy.hosts_total
            ),
        });
    }
    Some(Health::Ready)
}

/// `existing` with the entry of `entry.set` replaced (or removed when
/// `entry` is `None`), entries sorted by set, the summary fields `kubectl
/// get` shows taken from the first entry, and the migration's own kstatus
/// conditions for `generation` (each keeping its transition time while its
/// status holds, so an unchanged status is an identical object).
pub fn merge(
    existing: Option<&ClickHouseMigrationStatus>,
    set: &str,
    entry: Option<SetStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> ClickHouseMigrationStatus {
    let mut sets: Vec<SetStatus> = existing
        .map(|s| s.sets.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.set != set)
        .collect();
    sets.extend(entry);
    sets.sort_by(|a, b| a.set.cmp(&b.set));
    let first = sets.first();
    let previous = existing
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = match health_of(&sets) {
        Some(h) => {
            let mut cs = set_status::conditions(&h, generation, previous, now);
            if h == Health::Ready
                && let Some(ready) = cs.iter_mut().find(|c| c.type_ == "Ready")
            {
                ready.message =
                    "applied (or skipped on purpose) in every set that includes it".into();
            }
            cs
        }
        None => Vec::new(),
    };
    ClickHouseMigrationStatus {
        set: first.map(|e| e.set.clone()),
        phase: first.map(|e| e.phase),
        hosts: first.map(|e| format!("{}/{}", e.hosts_done, e.hosts_total)),
        sets,
        observed_generation: generation,
        conditions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, at: u64, version: &str, event: &str, statement: i64) -> LedgerEntry {
        LedgerEntry {
            seq,
            event_time_us: at,
            version: version.into(),
            event: event.into(),
            direction: "up".into(),
            statement,
            checksum: "9ae975e7".repeat(8),
            details: if event == "started" {
                r#"{"statements":1}"#.into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn applied_history() -> Vec<LedgerEntry> {
        vec![
            entry(1, 1_700_000_000_000_000, "1", "started", -1),
            entry(2, 1_700_000_000_250_000, "1", "statement_done", 0),
            entry(3, 1_700_000_000_400_000, "1", "completed", -1),
        ]
    }

    fn facts(history: Vec<LedgerEntry>) -> SetFacts {
        SetFacts {
            set: "app".into(),
            hosts_total: 4,
            history,
            ..Default::default()
        }
    }

    #[test]
    fn applied_version_reports_time_duration_and_all_hosts() {
        let h = applied_history();
        assert!(
            h.iter().all(|e| e.to_event().is_ok()),
            "fixture rows are valid ledger rows: {:?}",
            h.iter().map(|e| e.to_event()).collect::<Vec<_>>()
        );
        let e = set_entry(&v("1"), &facts(h));
        assert_eq!(e.phase, Phase::Applied);
        assert_eq!(e.hosts_done, 4);
        assert_eq!(e.hosts_total, 4);
        assert_eq!(e.duration_ms, Some(400));
        assert_eq!(e.applied_at.as_deref(), Some("2023-11-14 22:13:20"));
        assert_eq!(e.last_error, None);
    }

    #[test]
    fn pending_hosts_make_an_applied_version_running() {
        let mut f = facts(applied_history());
        f.pending_hosts
            .insert(v("1"), vec!["127.0.0.14:9004".into()]);
        let e = set_entry(&v("1"), &f);
        assert_eq!(e.phase, Phase::Running);
        assert_eq!((e.hosts_done, e.hosts_total), (3, 4));
    }

    #[test]
    fn unknown_skipped_and_failed_versions() {
        let mut f = facts(applied_history());
        assert_eq!(set_entry(&v("2"), &f).phase, Phase::Pending);
        assert_eq!(set_entry(&v("2"), &f).hosts_done, 0);
        f.skipped.push(v("3"));
        assert_eq!(set_entry(&v("3"), &f).phase, Phase::Skipped);
        f.errors.insert(v("4"), "Code: 62, syntax error".into());
        let e = set_entry(&v("4"), &f);
        assert_eq!(e.phase, Phase::Failed);
        assert_eq!(e.last_error.as_deref(), Some("Code: 62, syntax error"));
    }

    #[test]
    fn merge_replaces_only_this_sets_entry_and_summarises_the_first() {
        let a = SetStatus {
            set: "b-set".into(),
            phase: Phase::Applied,
            hosts_done: 4,
            hosts_total: 4,
            ..Default::default()
        };
        let t = |s| Timestamp::from_second(s).unwrap();
        let cond = |st: &ClickHouseMigrationStatus, ty: &str| {
            st.conditions
                .iter()
                .find(|c| c.type_ == ty)
                .map(|c| (c.status.clone(), c.reason.clone()))
        };
        let one = merge(None, "b-set", Some(a.clone()), Some(1), t(10));
        assert_eq!(one.hosts.as_deref(), Some("4/4"));
        assert_eq!(one.observed_generation, Some(1));
        assert_eq!(cond(&one, "Ready"), Some(("True".into(), "Applied".into())));
        let two = merge(
            Some(&one),
            "a-set",
            Some(SetStatus {
                set: "a-set".into(),
                phase: Phase::Pending,
                hosts_total: 1,
                ..Default::default()
            }),
            Some(1),
            t(20),
        );
        assert_eq!(two.sets.len(), 2);
        assert_eq!(two.set.as_deref(), Some("a-set"));
        assert_eq!(two.phase, Some(Phase::Pending));
        // Pending in one set: not ready, reconciling (kstatus InProgress).
        assert_eq!(
            cond(&two, "Ready"),
            Some(("False".into(), "Pending".into()))
        );
        assert_eq!(cond(&two, "Reconciling").map(|c| c.0), Some("True".into()));
        assert_eq!(
            set_status::kstatus(Some(1), two.observed_generation, &two.conditions),
            "InProgress"
        );
        let again = merge(Some(&two), "b-set", Some(a), Some(1), t(30));
        assert_eq!(again, two, "the same entry again changes nothing");
        let removed = merge(Some(&two), "a-set", None, Some(1), t(40));
        assert_eq!(removed.sets, one.sets);
        assert_eq!(removed.set.as_deref(), Some("b-set"));
        assert_eq!(
            set_status::kstatus(Some(1), removed.observed_generation, &removed.conditions),
            "Current"
        );
        // A change to the migration (generation 2) not yet written for:
        // kstatus waits.
        assert_eq!(
            set_status::kstatus(Some(2), removed.observed_generation, &removed.conditions),
            "InProgress"
        );
        let failed = merge(
            Some(&removed),
            "b-set",
            Some(SetStatus {
                set: "b-set".into(),
                phase: Phase::Failed,
                last_error: Some("code 62".into()),
                ..Default::default()
            }),
            Some(2),
            t(50),
        );
        assert_eq!(
            cond(&failed, "Stalled"),
            Some(("True".into(), "MigrationFailed".into()))
        );
        assert_eq!(
            set_status::kstatus(Some(2), failed.observed_generation, &failed.conditions),
            "Failed"
        );
    }
}
