//! A set's replica drift as its status says it (pure): the drifted hosts,
//! and `SchemaDrift` (`Ready=False`, stalled: a person or
//! `spec.policy.syncHosts` acts) naming the first host and object.

use super::crd::DriftedHost;
use super::set_status::Health;
use crate::plan::drift::DriftReport;

/// Every host that differs, with its differences.
pub fn drifted_hosts(report: &DriftReport) -> Vec<DriftedHost> {
    report
        .drifted()
        .map(|h| DriftedHost {
            host: h.host.clone(),
            drift: h.drift.iter().map(ToString::to_string).collect(),
        })
        .collect()
}

/// The health a ready set has with these drifted hosts: itself when there
/// are none, else `SchemaDrift`.
pub fn health(ready: Health, drifted: &[DriftedHost], sync_hosts: bool) -> Health {
    let Some(first) = drifted.first() else {
        return ready;
    };
    if !matches!(ready, Health::Ready) {
        return ready;
    }
    let total: usize = drifted.iter().map(|h| h.drift.len()).sum();
    let what = first.drift.first().cloned().unwrap_or_default();
    let more = if total > 1 {
        format!(" (+{} more on {} host(s))", total - 1, drifted.len())
    } else {
        String::new()
    };
    let act = if sync_hosts {
        "spec.policy.syncHosts could not repair it; it is left alone"
    } else {
        "repair with `chmigrate sync-hosts` or set spec.policy.syncHosts: true"
    };
    Health::Stalled {
        reason: "SchemaDrift".into(),
        message: format!("host {}: {what}{more}; {act}", first.host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::drift::{Drift, DriftKind, HostDrift};

    fn report(drift: Vec<Drift>) -> DriftReport {
        DriftReport {
            hosts: vec![
                HostDrift {
                    host: "127.0.0.11:9001".into(),
                    unreachable: None,
                    drift: Vec::new(),
                },
                HostDrift {
                    host: "127.0.0.12:9002".into(),
                    unreachable: None,
                    drift,
                },
            ],
            references: Default::default(),
        }
    }

    #[test]
    fn a_drifted_host_makes_a_ready_set_stalled_with_the_host_and_object() {
        let missing = Drift {
            object: "app.events".into(),
            kind: DriftKind::MissingObject,
            column: None,
            expected: Some("ReplicatedMergeTree".into()),
            found: None,
        };
        let hosts = drifted_hosts(&report(vec![missing.clone(), missing]));
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].host, "127.0.0.12:9002");
        assert_eq!(
            hosts[0].drift[0],
            "app.events: missing (expected ReplicatedMergeTree)"
        );
        let Health::Stalled { reason, message } = health(Health::Ready, &hosts, false) else {
            panic!("not stalled");
        };
        assert_eq!(reason, "SchemaDrift");
        assert!(
            message.starts_with(
                "host 127.0.0.12:9002: app.events: missing (expected ReplicatedMergeTree) (+1 more on 1 host(s))"
            ),
            "{message}"
        );
        assert!(message.contains("sync-hosts"));
        // In sync: ready stays ready; another state is not hidden by drift.
        assert_eq!(health(Health::Ready, &[], false), Health::Ready);
        let pending = Health::Progressing {
            reason: "HostsPending".into(),
            message: "m".into(),
        };
        assert_eq!(health(pending.clone(), &hosts, true), pending);
    }
}
