//! A target seen against its migrations (pure): the one snapshot that
//! `chmigrate status`, `apply -f` and the operator's `MigrationSet` status
//! are all computed from, so the numbers agree everywhere.

use std::fmt;

use crate::ledger::fold::{Direction, TargetState, VersionState};
use crate::ledger::pending::PendingTask;
use crate::model::migration::Migration;
use crate::model::version::Version;

use super::{Policy, Problem, Step, Target};

/// One version's state, as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationState {
    Pending,
    /// Restricted to other environments.
    Skipped,
    Applied,
    Baselined,
    RolledBack,
    /// Started and not finished: `completed` of `statements` done, and the
    /// server's error of the next one when it failed.
    Partial {
        direction: Direction,
        completed: usize,
        statements: usize,
        failed: Option<String>,
        /// The failed statement may have run on some hosts.
        partial: bool,
    },
}

impl MigrationState {
    fn of(state: Option<&VersionState>, in_environment: bool) -> Self {
        match state {
            None if !in_environment => MigrationState::Skipped,
            None => MigrationState::Pending,
            Some(VersionState::Applied {
                baselined: true, ..
            }) => MigrationState::Baselined,
            Some(VersionState::Applied { .. }) => MigrationState::Applied,
            Some(VersionState::RolledBack) => MigrationState::RolledBack,
            Some(VersionState::InProgress(p)) => MigrationState::Partial {
                direction: p.direction,
                completed: p.completed,
                statements: p.statements,
                failed: p.failed.clone(),
                partial: p.partial,
            },
        }
    }
}

impl fmt::Display for MigrationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrationState::Pending => f.write_str("pending"),
            MigrationState::Skipped => f.write_str("skipped (other environment)"),
            MigrationState::Applied => f.write_str("applied"),
            MigrationState::Baselined => f.write_str("baselined"),
            MigrationState::RolledBack => f.write_str("rolled back"),
            MigrationState::Partial {
                direction: Direction::Up,
                completed: 0,
                failed: Some(e),
                partial: false,
                ..
            } => write!(
                f,
                "failed before its first statement: {}",
                e.lines().next().unwrap_or("")
            ),
            MigrationState::Partial {
                direction,
                completed,
                statements,
                failed,
                ..
            } => write!(
                f,
                "{} {completed}/{statements} statements{}",
                match direction {
                    Direction::Up => "half applied:",
                    Direction::Down => "half rolled back:",
                },
                failed
                    .as_ref()
                    .map(|e| format!(" (failed: {})", e.lines().next().unwrap_or("")))
                    .unwrap_or_default()
            ),
        }
    }
}

/// One version: a migration's source, the ledger's record, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub version: Version,
    /// `(no source)` when the ledger names a version no source has.
    pub description: String,
    pub state: MigrationState,
    pub has_source: bool,
}

/// Statements a host has not finished, labelled `V2 statement 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPending {
    pub host: String,
    pub statements: Vec<String>,
}

/// The target against its migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub applied_version: Option<Version>,
    /// The newest version among the sources that run in this environment.
    pub latest_version: Option<Version>,
    /// What a migrate to the target would apply, in order; the plan's
    /// problems instead when it is blocked.
    pub pending: Result<Vec<Version>, Vec<Problem>>,
    /// Every version, in version order.
    pub versions: Vec<VersionRow>,
    /// Hosts with unfinished `ON CLUSTER` statements, in the order the
    /// tasks name them.
    pub hosts_pending: Vec<HostPending>,
}

impl Snapshot {
    /// Unfinished statements of `host`.
    pub fn pending_on(&self, host: &str) -> &[String] {
        self.hosts_pending
            .iter()
            .find(|h| h.host == host)
            .map_or(&[], |h| h.statements.as_slice())
    }
}

/// The label of an unfinished statement: `V2 statement 1`.
pub fn task_label(t: &PendingTask) -> String {
    format!("V{} statement {}", t.version, t.statement + 1)
}

/// What a migrate to `target` would apply, in order, or why it is blocked.
fn pending_to(
    migrations: &[Migration],
    state: &TargetState,
    policy: &Policy,
    target: &Target,
) -> Result<Vec<Version>, Vec<Problem>> {
    super::plan(migrations, state, target, policy).map(|p| {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Apply { version, .. } => Some(version.clone()),
                _ => None,
            })
            .collect()
    })
}

/// The snapshot of `state` (the folded ledger) against `migrations` under
/// `policy`, with the host tasks still open; pending counts towards
/// `target` (a set's `targetVersion`, else the latest).
pub fn snapshot(
    migrations: &[Migration],
    state: &TargetState,
    policy: &Policy,
    open_tasks: &[PendingTask],
    target: &Target,
) -> Snapshot {
    let pending = pending_to(migrations, state, policy, target);
    let mut versions: Vec<VersionRow> = migrations
        .iter()
        .map(|m| VersionRow {
            version: m.version.clone(),
            description: m.description.clone(),
            state: MigrationState::of(
                state.get(&m.version),
                m.environments.includes(&policy.environment),
            ),
            has_source: true,
        })
        .collect();
    for (v, s) in &state.versions {
        if !migrations.iter().any(|m| &m.version == v) {
            versions.push(VersionRow {
                version: v.clone(),
                description: "(no source)".into(),
                state: MigrationState::of(Some(s), true),
                has_source: false,
            });
        }
    }
    versions.sort_by(|a, b| a.version.cmp(&b.version));
    let mut hosts_pending: Vec<HostPending> = Vec::new();
    for t in open_tasks {
        let label = task_label(t);
        for h in &t.hosts {
            match hosts_pending.iter_mut().find(|x| &x.host == h) {
                Some(x) => x.statements.push(label.clone()),
                None => hosts_pending.push(HostPending {
                    host: h.clone(),
                    statements: vec![label.clone()],
                }),
            }
        }
    }
    Snapshot {
        applied_version: state.applied_version().cloned(),
        latest_version: migrations
            .iter()
            .filter(|m| m.environments.includes(&policy.environment))
            .map(|m| m.version.clone())
            .max(),
        pending,
        versions,
        hosts_pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fold::Progress;
    use crate::model::migration::Checksum;
    use crate::source::memory::load_named;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn one_snapshot_names_states_pending_versions_and_hosts() {
        let loaded = load_named(&[
            ("V1__a.sql", "CREATE TABLE a (x UInt8) ENGINE = Memory;"),
            ("V2__b.sql", "CREATE TABLE b (x UInt8) ENGINE = Memory;"),
            (
                "V3__c.sql",
                "-- Environment: production\nCREATE TABLE c (x UInt8) ENGINE = Memory;",
            ),
        ]);
        let mut state = TargetState::default();
        state.versions.insert(
            v("1"),
            VersionState::Applied {
                checksum: Some(loaded[0].checksum.clone()),
                baselined: false,
            },
        );
        state.versions.insert(
            v("9"),
            VersionState::InProgress(Progress {
                direction: Direction::Up,
                checksum: Checksum("x".into()),
                statements: 3,
                completed: 1,
                failed: Some("Code: 62\nmore".into()),
                next_known_not_run: true,
                partial: false,
            }),
        );
        let policy = Policy {
            environment: "development".into(),
            allow_rollback: true,
            out_of_order: false,
            baseline: None,
        };
        let task = PendingTask {
            version: "1".into(),
            direction: "up".into(),
            statement: 0,
            task: "/clickhouse/task_queue/ddl/query-1".into(),
            hosts: vec!["h2:9000".into()],
        };
        let s = snapshot(&loaded, &state, &policy, &[task], &Target::Latest);
        assert_eq!(s.applied_version, Some(v("1")));
        // V3 runs only in production: neither latest nor pending here.
        assert_eq!(s.latest_version, Some(v("2")));
        let states: Vec<String> = s.versions.iter().map(|r| r.state.to_string()).collect();
        assert_eq!(
            states,
            [
                "applied",
                "pending",
                "skipped (other environment)",
                "half applied: 1/3 statements (failed: Code: 62)"
            ]
        );
        assert!(!s.versions[3].has_source);
        assert_eq!(s.pending_on("h2:9000"), ["V1 statement 1".to_string()]);
        assert!(s.pending_on("h1:9000").is_empty());
        // V9 has no source: the plan is blocked and says so.
        assert!(s.pending.is_err());
    }
}
