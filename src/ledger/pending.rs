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
