//! Status of a `MigrationSet` (pure): the kstatus conditions `Ready`,
//! `Reconciling` and `Stalled` that `kubectl wait`, Flux and Argo CD read.
//! A condition's `lastTransitionTime` changes only when its status flips,
//! so recomputing an unchanged status yields an identical object (no write,
//! no reconcile loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::k8s::crd::MigrationSetStatus;

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
    /// Nothing is applied and nothing is under way, on purpose: the set is
    /// suspended or a dry run. Not ready, not reconciling, not stalled, so
    /// that kstatus reads it as settled instead of in progress forever.
    Idle { reason: String, message: String },
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
        Health::Idle { reason, message } => vec![
            c("Ready", false, reason, message),
            c("Reconciling", false, reason, ""),
            c("Stalled", false, reason, ""),
        ],
    }
}

/// Bytes of SQL a dry run's plan may carry in status in all (etcd holds
/// objects up to about 1.5 MB; a status should stay far below).
pub const PLAN_SQL_BUDGET: usize = 64 * 1024;
/// Bytes of one statement shown in a dry run's plan.
pub const PLAN_STATEMENT_MAX: usize = 4 * 1024;

/// A dry run's steps `(action, version, statements)` as status shows them:
/// each statement cut at [`PLAN_STATEMENT_MAX`] bytes, and once
/// [`PLAN_SQL_BUDGET`] bytes are shown, the remaining statements counted
/// instead of shown.
pub fn summarised_plan(
    steps: Vec<(String, String, Vec<String>)>,
) -> Vec<crate::k8s::crd::PlannedStep> {
    let mut budget = PLAN_SQL_BUDGET;
    steps
        .into_iter()
        .map(|(action, version, statements)| {
            let mut shown = Vec::new();
            let mut omitted = 0u32;
            for sql in statements {
                let mut cut = cut_at(&sql, PLAN_STATEMENT_MAX);
                if cut.len() < sql.len() {
                    cut.push_str(" …");
                }
                if cut.len() <= budget {
                    budget -= cut.len();
                    shown.push(cut);
                } else {
                    budget = 0;
                    omitted += 1;
                }
            }
            crate::k8s::crd::PlannedStep {
                action,
                version,
                statements: shown,
                omitted_statements: (omitted > 0).then_some(omitted),
            }
        })
        .collect()
}

/// The longest prefix of `s` of at most `max` bytes ending on a character
/// boundary.
fn cut_at(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// What kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus`, which Flux and
/// `kstatus`-based tools use) computes for an object with these fields:
/// `InProgress` while the observed generation lags or `Reconciling` is
/// true, `Failed` when `Stalled` is true, else `Current`.
pub fn kstatus(
    generation: Option<i64>,
    observed_generation: Option<i64>,
    conditions: &[Condition],
) -> &'static str {
    let on = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let lagging =
        generation.is_some() && observed_generation.is_some_and(|o| Some(o) != generation);
    if lagging || on("Reconciling") {
        "InProgress"
    } else if on("Stalled") {
        "Failed"
    } else {
        "Current"
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

/// `previous` with the conditions of a reconcile that has started on
/// inputs the set has not seen yet (`Reconciling`), everything else as it
/// was.
pub fn reconciling(
    previous: Option<&MigrationSetStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> MigrationSetStatus {
    let status = previous.cloned().unwrap_or_default();
    finish(
        status,
        &Health::Progressing {
            reason: "Reconciling".into(),
            message: "applying a change to the set, its migrations or its ConfigMaps".into(),
        },
        generation,
        previous,
        now,
    )
}

/// Adds `extra` to the message of the `Ready` condition (and of `Stalled`
/// when it is true).
pub fn append_to_ready_message(status: &mut MigrationSetStatus, extra: &str) {
    for c in status.conditions.iter_mut() {
        if c.type_ == "Ready" || (c.type_ == "Stalled" && c.status == "True") {
            c.message.push_str(extra);
        }
    }
}

/// `Ready` is `True`.
pub fn is_ready(status: &MigrationSetStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The longest Event note the operator writes, in bytes (the API server's
/// own limit for `events.k8s.io/v1` notes is 1 kB).
pub const EVENT_NOTE_MAX_BYTES: usize = 1024;

/// `message` cut to [`EVENT_NOTE_MAX_BYTES`] on a character boundary, with
/// `…` marking a cut.
pub fn event_note(message: &str) -> String {
    if message.len() <= EVENT_NOTE_MAX_BYTES {
        return message.to_string();
    }
    format!(
        "{}…",
        cut_at(message, EVENT_NOTE_MAX_BYTES - '…'.len_utf8())
    )
}

/// A Kubernetes Event the operator publishes on a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

fn ready_condition(status: &MigrationSetStatus) -> Option<&Condition> {
    status.conditions.iter().find(|c| c.type_ == "Ready")
}

fn versions(vs: &[crate::model::version::Version]) -> String {
    vs.iter()
        .map(|v| format!("V{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What people want to hear about a reconcile: what it applied or rolled
/// back, and a change of state (each new reason once, not on every
/// recheck).
pub fn notices(
    previous: Option<&MigrationSetStatus>,
    new: &MigrationSetStatus,
    applied: &[crate::model::version::Version],
    rolled_back: &[crate::model::version::Version],
) -> Vec<Notice> {
    let mut out = Vec::new();
    let hosts = if new.hosts.is_empty() {
        String::new()
    } else {
        format!(" ({} host(s) pending)", new.hosts.len())
    };
    if !applied.is_empty() {
        out.push(Notice {
            warning: false,
            reason: "Applied".into(),
            note: format!("applied {}{hosts}", versions(applied)),
        });
    }
    if !rolled_back.is_empty() {
        out.push(Notice {
            warning: false,
            reason: "RolledBack".into(),
            note: format!("rolled back {}{hosts}", versions(rolled_back)),
        });
    }
    let before = previous.and_then(ready_condition);
    let Some(now) = ready_condition(new) else {
        return out;
    };
    let changed = before.is_none_or(|b| b.status != now.status || b.reason != now.reason);
    if !changed {
        return out;
    }
    let stalled = new
        .conditions
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True");
    let note = event_note(&now.message);
    if now.status == "True" {
        if applied.is_empty() && rolled_back.is_empty() {
            out.push(Notice {
                warning: false,
                reason: "Ready".into(),
                note,
            });
        }
    } else {
        let warning = stalled || matches!(now.reason.as_str(), "HostsPending" | "Unavailable");
        out.push(Notice {
            warning,
            reason: now.reason.clone(),
            note,
        });
    }
    out
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

    /// Every reason a set's status can carry: its conditions, what kstatus
    /// (Flux, `kubectl wait`-style tools) and Argo CD's health check make of
    /// it. docs/gitops.md shows this table; charts/argocd/check.lua checks
    /// the Argo CD column for each kind of health.
    const STATES: &[(&str, &str, &str)] = &[
        // reason, health kind, Argo CD
        ("Applied", "ready", "Healthy"),
        ("Reconciling", "progressing", "Progressing"),
        ("HostsPending", "progressing", "Progressing"),
        ("LockHeld", "progressing", "Progressing"),
        ("Unavailable", "progressing", "Progressing"),
        ("DryRun", "idle", "Suspended"),
        ("Suspended", "idle", "Suspended"),
        ("InvalidSpec", "stalled", "Degraded"),
        ("InvalidMigrations", "stalled", "Degraded"),
        ("TargetNotAllowed", "stalled", "Degraded"),
        ("TLSRequired", "stalled", "Degraded"),
        ("SecretNotAllowed", "stalled", "Degraded"),
        ("ConnectionRefused", "stalled", "Degraded"),
        ("ChecksumMismatch", "stalled", "Degraded"),
        ("RollbackForbidden", "stalled", "Degraded"),
        ("Blocked", "stalled", "Degraded"),
        ("MigrationFailed", "stalled", "Degraded"),
        ("HostFailed", "stalled", "Degraded"),
        ("Failed", "stalled", "Degraded"),
        ("SchemaDrift", "stalled", "Degraded"),
    ];

    #[test]
    fn the_documented_state_table_is_what_the_status_says() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/gitops.md"))
            .expect("docs/gitops.md");
        for (reason, kind, argo) in STATES {
            let (reason, message) = (reason.to_string(), "m".to_string());
            let health = match *kind {
                "ready" => Health::Ready,
                "progressing" => Health::Progressing {
                    reason: reason.clone(),
                    message,
                },
                "idle" => Health::Idle {
                    reason: reason.clone(),
                    message,
                },
                _ => Health::Stalled {
                    reason: reason.clone(),
                    message,
                },
            };
            let cs = conditions(&health, Some(4), &[], t(1));
            let get = |ty: &str| {
                cs.iter()
                    .find(|c| c.type_ == ty)
                    .map(|c| c.status.clone())
                    .unwrap_or_default()
            };
            assert!(cs.iter().all(|c| c.reason == reason), "{reason}: {cs:?}");
            let ks = kstatus(Some(4), Some(4), &cs);
            let row = format!(
                "| `{reason}` | {} | {} | {} | {ks} | {argo} |",
                get("Ready"),
                get("Reconciling"),
                get("Stalled")
            );
            assert!(doc.contains(&row), "docs/gitops.md lacks the row\n{row}");
        }
        // A spec the operator has not seen yet is in progress whatever the
        // conditions say.
        let ready = conditions(&Health::Ready, Some(4), &[], t(1));
        assert_eq!(kstatus(Some(5), Some(4), &ready), "InProgress");
    }

    #[test]
    fn a_large_dry_run_plan_is_summarised_far_below_the_object_limit() {
        // 500 migrations of 10 statements of 1 kB, and one huge statement.
        let mut steps: Vec<(String, String, Vec<String>)> = (1..=500)
            .map(|v| ("apply".into(), v.to_string(), vec!["x".repeat(1000); 10]))
            .collect();
        steps.insert(0, ("apply".into(), "0".into(), vec!["é".repeat(10_000)]));
        let plan = summarised_plan(steps);
        assert_eq!(plan.len(), 501, "every step is listed");
        let bytes = serde_json::to_vec(&plan).unwrap().len();
        assert!(bytes < 100 * 1024, "{bytes} bytes");
        assert!(plan[0].statements[0].len() <= PLAN_STATEMENT_MAX + " …".len());
        assert!(plan[0].statements[0].ends_with(" …"));
        let shown: usize = plan.iter().map(|s| s.statements.len()).sum();
        let omitted: u32 = plan.iter().filter_map(|s| s.omitted_statements).sum();
        assert_eq!(
            shown + omitted as usize,
            5001,
            "nothing lost from the count"
        );
        assert!(plan.last().unwrap().omitted_statements == Some(10));
        // A small plan is shown whole.
        let small = summarised_plan(vec![("apply".into(), "1".into(), vec!["SELECT 1".into()])]);
        assert_eq!(small[0].statements, ["SELECT 1"]);
        assert_eq!(small[0].omitted_statements, None);
    }

    #[test]
    fn event_notes_stay_within_1024_bytes_cut_on_a_character_boundary() {
        assert_eq!(event_note("short"), "short");
        // 'é' is two bytes: a cut at an odd byte would split one.
        for msg in ["é".repeat(2000), format!("x{}", "€".repeat(700))] {
            let note = event_note(&msg);
            assert!(note.len() <= EVENT_NOTE_MAX_BYTES, "{}", note.len());
            assert!(note.ends_with('…'));
            assert!(msg.starts_with(note.trim_end_matches('…')));
        }
        let exact = "a".repeat(EVENT_NOTE_MAX_BYTES);
        assert_eq!(event_note(&exact), exact);
    }

    #[test]
    fn notices_report_work_and_each_new_state_once() {
        let v = |s: &str| crate::model::version::Version::parse(s).unwrap();
        let ready = finish(
            MigrationSetStatus::default(),
            &Health::Ready,
            Some(1),
            None,
            t(1),
        );
        let first = notices(None, &ready, &[v("1"), v("2")], &[]);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].reason, "Applied");
        assert_eq!(first[0].note, "applied V1, V2");
        assert!(!first[0].warning);
        assert!(
            notices(Some(&ready), &ready, &[], &[]).is_empty(),
            "a recheck that changes nothing says nothing"
        );
        let mismatch = finish(
            MigrationSetStatus::default(),
            &Health::Stalled {
                reason: "ChecksumMismatch".into(),
                message: "V1 was applied with checksum a, the file has b".into(),
            },
            Some(2),
            Some(&ready),
            t(2),
        );
        let n = notices(Some(&ready), &mismatch, &[], &[]);
        assert_eq!(n.len(), 1);
        assert!(n[0].warning);
        assert_eq!(n[0].reason, "ChecksumMismatch");
        assert!(n[0].note.contains("was applied with checksum"));
        assert!(notices(Some(&mismatch), &mismatch, &[], &[]).is_empty());
        let pending = finish(
            MigrationSetStatus::default(),
            &Health::Progressing {
                reason: "HostsPending".into(),
                message: "1 statement(s) not finished on every host yet".into(),
            },
            Some(2),
            Some(&mismatch),
            t(3),
        );
        let n = notices(Some(&mismatch), &pending, &[], &[v("3")]);
        let reasons: Vec<&str> = n.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["RolledBack", "HostsPending"]);
        assert!(n[1].warning);
        let back = notices(Some(&pending), &ready, &[], &[]);
        assert_eq!(back[0].reason, "Ready");
    }
}
