//! Status of a `MigrationSet` (pure): the kstatus conditions `Ready`,
//! `Reconciling` and `Stalled` that `kubectl wait`, Flux and Argo CD read.
//! A condition's `lastTransitionTime` changes only when its status flips,
//! so recomputing an unchanged status yields an identical object (no write,
//! no reconcile loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::MigrationSetStatus;

/// What the last reconcile found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Everything selected is applied and verified on every host.
    Ready,
    /// Work is under way or waiting on something that will resolve itself
    /// (hosts pending, lock held, dry run, suspended).
    Progressing { reason: String, message: String },
    /// Blocked until a person acts (changed checksum, invalid migrations,
    /// failed statement, rollback forbidden).
    Stalled { reason: String, message: String },
}

fn condition(
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.chars().take(32 * 1024).collect(),
        last_transition_time,
        observed_generation: generation,
    }
}

/// The three conditions for `health`, keyed by type, in a fixed order.
pub fn conditions(
    health: &Health,
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let c = |t: &str, on: bool, reason: &str, msg: &str| {
        condition(t, on, reason, msg, generation, previous, now)
    };
    match health {
        Health::Ready => vec![
            c(
                "Ready",
                true,
                "Applied",
                "all migrations are applied on every host",
            ),
            c("Reconciling", false, "Applied", ""),
            c("Stalled", false, "Applied", ""),
        ],
        Health::Progressing { reason, message } => vec![
            c("Ready", false, reason, message),
            c("Reconciling", true, reason, message),
            c("Stalled", false, reason, ""),
        ],
        Health::Stalled { reason, message } => vec![
            c("Ready", false, reason, message),
            c("Reconciling", false, reason, ""),
            c("Stalled", true, reason, message),
        ],
    }
}

/// Sets the conditions and generation on a computed status.
pub fn finish(
    mut status: MigrationSetStatus,
    health: &Health,
    generation: Option<i64>,
    previous: Option<&MigrationSetStatus>,
    now: Timestamp,
) -> MigrationSetStatus {
    let prev = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    status.conditions = conditions(health, generation, prev, now);
    status.observed_generation = generation;
    status
}

/// `Ready` is `True`.
pub fn is_ready(status: &MigrationSetStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn ready_sets_kstatus_conditions() {
        let cs = conditions(&Health::Ready, Some(3), &[], t(100));
        let v: Vec<(&str, &str)> = cs
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            v,
            [
                ("Ready", "True"),
                ("Reconciling", "False"),
                ("Stalled", "False")
            ]
        );
        assert!(cs.iter().all(|c| c.observed_generation == Some(3)));
    }

    #[test]
    fn stalled_names_the_reason() {
        let h = Health::Stalled {
            reason: "ChecksumMismatch".into(),
            message: "V1 was applied with checksum …".into(),
        };
        let cs = conditions(&h, Some(1), &[], t(5));
        assert_eq!(cs[0].status, "False");
        assert_eq!(cs[2].status, "True");
        assert_eq!(cs[2].reason, "ChecksumMismatch");
        assert!(cs[0].message.starts_with("V1 was applied"));
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = conditions(&Health::Ready, Some(1), &[], t(100));
        let same = conditions(&Health::Ready, Some(1), &first, t(200));
        assert_eq!(
            first, same,
            "recomputing an unchanged status changes nothing"
        );
        let flipped = conditions(
            &Health::Progressing {
                reason: "HostsPending".into(),
                message: "127.0.0.14:9004".into(),
            },
            Some(2),
            &same,
            t(300),
        );
        assert_eq!(
            flipped[0].last_transition_time,
            Time(t(300)),
            "Ready flipped"
        );
        assert_eq!(
            flipped[2].last_transition_time,
            Time(t(100)),
            "Stalled stayed False"
        );
        let mut st = MigrationSetStatus::default();
        st = finish(st, &Health::Ready, Some(4), None, t(1));
        assert!(is_ready(&st));
        assert_eq!(st.observed_generation, Some(4));
    }
}
