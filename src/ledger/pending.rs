//! Hosts that had not finished an `ON CLUSTER` statement when it returned
//! (pure bookkeeping over ledger rows).

use serde::{Deserialize, Serialize};

use crate::ledger::LedgerEntry;
use crate::ledger::vocabulary::EventName;

/// One statement whose distributed task some hosts had not finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTask {
    pub version: String,
    pub direction: String,
    pub statement: i64,
    /// ZooKeeper path of the distributed DDL task.
    pub task: String,
    /// `host:port` of every host that had not finished.
    pub hosts: Vec<String>,
}

/// Details of `hosts_pending` / `hosts_verified` rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PendingDetails {
    pub task: String,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The run whose grouped statements may lack their records: the latest
/// `progress_grouped` has no `progress_recorded` after it (the run
/// stopped before its next durable point).
pub fn open_group(history: &[LedgerEntry]) -> Option<String> {
    let mut open = None;
    for e in history {
        match e.name() {
            Some(EventName::ProgressGrouped) => open = Some(e.run_id.clone()),
            Some(EventName::ProgressRecorded) => open = None,
            _ => {}
        }
    }
    open
}

/// Tasks recorded as pending and not verified since.
pub fn open_tasks(history: &[LedgerEntry]) -> Vec<PendingTask> {
    let mut open: Vec<PendingTask> = Vec::new();
    for e in history {
        let Ok(d) = serde_json::from_str::<PendingDetails>(&e.details) else {
            continue;
        };
        match e.name() {
            Some(EventName::HostsPending) => open.push(PendingTask {
                version: e.version.clone(),
                direction: e.direction.clone(),
                statement: e.statement,
                task: d.task,
                hosts: d.hosts,
            }),
            Some(EventName::HostsVerified) => open.retain(|t| t.task != d.task),
            _ => {}
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_open_until_its_records_are_written() {
        let row = |event: &str, run: &str| LedgerEntry {
            event: event.into(),
            run_id: run.into(),
            ..Default::default()
        };
        let mut h = vec![row("lock_taken", "r1"), row("progress_grouped", "r1")];
        assert_eq!(open_group(&h), Some("r1".to_string()));
        h.push(row("statement_done", "r1"));
        assert_eq!(open_group(&h), Some("r1".to_string()));
        h.push(row("progress_recorded", "r1"));
        assert_eq!(open_group(&h), None);
        h.push(row("progress_grouped", "r2"));
        assert_eq!(open_group(&h), Some("r2".to_string()));
        // Settled by a later run.
        h.push(row("progress_recorded", "r3"));
        assert_eq!(open_group(&h), None);
        assert_eq!(open_group(&[]), None);
    }

    #[test]
    fn verified_tasks_close() {
        let row = |event: &str, task: &str| LedgerEntry {
            event: event.into(),
            version: "3".into(),
            details: serde_json::json!({"task": task, "hosts": ["h4:9004"]}).to_string(),
            ..Default::default()
        };
        let h = vec![
            row("hosts_pending", "/q-1"),
            row("hosts_pending", "/q-2"),
            row("hosts_verified", "/q-1"),
        ];
        let open = open_tasks(&h);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].task, "/q-2");
        assert_eq!(open[0].hosts, vec!["h4:9004".to_string()]);
    }
}
