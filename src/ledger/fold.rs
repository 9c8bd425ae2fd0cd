//! The history ledger's events and the state they fold into (pure).
//!
//! The ledger is append-only: every change to a target's migration state is
//! a new event, never an update. [`TargetState::fold`] replays events in order
//! to know, per version, whether it is applied, rolled back, or stopped half
//! way (and at which statement). The ClickHouse runtime stores and reads the
//! events; the planner reads the folded state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::migration::Checksum;
use crate::model::version::Version;

/// Which way a migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// What happened, for one version (or for the lock, which has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A run of `version` began in `direction` with `statements` statements.
    Started {
        direction: Direction,
        checksum: Checksum,
        statements: usize,
    },
    /// Statement `index` (0-based) finished on every host it ran on.
    StatementDone { direction: Direction, index: usize },
    /// Statement `index` failed; the server's error is recorded.
    Failed {
        direction: Direction,
        index: usize,
        error: String,
        /// The statement may have taken effect somewhere.
        #[serde(default)]
        partial: bool,
    },
    /// The run stopped on request before statement `index`, which did not run.
    Stopped { direction: Direction, index: usize },
    /// Every statement finished: up means applied, down means rolled back.
    Completed { direction: Direction },
    /// Marked applied without running (the target's schema already had it).
    /// `adopted`: applied by another tool and adopted (no baseline floor;
    /// rolled back like a migration chmigrate ran).
    Baselined {
        checksum: Option<Checksum>,
        adopted: bool,
    },
    /// `repair`: the recorded checksum is replaced by the current one.
    ChecksumRepaired { checksum: Checksum },
    /// `repair`: a person decided whether the statement that was in flight
    /// when a run stopped took effect (`done`) or not.
    StatementResolved {
        direction: Direction,
        index: usize,
        done: bool,
    },
    /// A person undid the migration by hand (`rollback --manual`).
    ManualRollback,
    /// Events that do not change a version's state (locks, notes).
    Note { message: String },
}

/// One ledger event as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Strictly increasing order of events on a target.
    pub seq: u64,
    pub version: Option<Version>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Where a migration that stopped half way stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub direction: Direction,
    pub checksum: Checksum,
    pub statements: usize,
    /// Statements `0..completed` finished.
    pub completed: usize,
    /// The error of statement `completed`, when the server reported one.
    pub failed: Option<String>,
    /// Whether statement `completed` is known not to have taken effect: it
    /// failed with a server error, or a person said so with `repair`.
    pub next_known_not_run: bool,
    /// The failure of statement `completed` may have left it done on some
    /// hosts (others ran it, a mutation was submitted).
    pub partial: bool,
}

/// The state of one version on a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VersionState {
    Applied {
        checksum: Option<Checksum>,
        baselined: bool,
    },
    /// Started and not finished (killed, failed, or hosts pending).
    InProgress(Progress),
    RolledBack,
}

/// The folded state of a target: every version the ledger mentions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TargetState {
    pub versions: BTreeMap<Version, VersionState>,
}

impl TargetState {
    /// Replays `events` (sorted by `seq`) into the state they leave.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut versions: BTreeMap<Version, VersionState> = BTreeMap::new();
        for ev in events {
            let Some(version) = &ev.version else { continue };
            let current = versions.get_mut(version);
            let next = match (&ev.kind, current) {
                (
                    EventKind::Started {
                        direction,
                        checksum,
                        statements,
                    },
                    _,
                ) => Some(VersionState::InProgress(Progress {
                    direction: *direction,
                    checksum: checksum.clone(),
                    statements: *statements,
                    completed: 0,
                    failed: None,
                    next_known_not_run: false,
                    partial: false,
                })),
                (
                    EventKind::StatementDone { direction, index },
                    Some(VersionState::InProgress(p)),
                ) if p.direction == *direction && *index == p.completed => {
                    p.completed += 1;
                    p.failed = None;
                    p.next_known_not_run = false;
                    p.partial = false;
                    None
                }
                (
                    EventKind::Failed {
                        direction,
                        index,
                        error,
                        partial,
                    },
                    Some(VersionState::InProgress(p)),
                ) if p.direction == *direction && *index == p.completed => {
                    p.failed = Some(error.clone());
                    p.next_known_not_run = true;
                    p.partial = *partial;
                    None
                }
                (EventKind::Stopped { direction, index }, Some(VersionState::InProgress(p)))
                    if p.direction == *direction && *index == p.completed =>
                {
                    p.next_known_not_run = true;
                    None
                }
                (
                    EventKind::StatementResolved {
                        direction,
                        index,
                        done,
                    },
                    Some(VersionState::InProgress(p)),
                ) if p.direction == *direction && *index == p.completed => {
                    // Either way the run that stopped never reached the
                    // statement after the resolved one, and a person has now
                    // said whether the resolved one took effect.
                    if *done {
                        p.completed += 1;
                    }
                    p.next_known_not_run = true;
                    p.failed = None;
                    None
                }
                (EventKind::Completed { direction }, Some(VersionState::InProgress(p)))
                    if p.direction == *direction =>
                {
                    Some(match direction {
                        Direction::Up => VersionState::Applied {
                            checksum: Some(p.checksum.clone()),
                            baselined: false,
                        },
                        Direction::Down => VersionState::RolledBack,
                    })
                }
                (EventKind::Baselined { checksum, adopted }, _) => Some(VersionState::Applied {
                    checksum: checksum.clone(),
                    baselined: !adopted,
                }),
                (
                    EventKind::ChecksumRepaired { checksum },
                    Some(VersionState::Applied { checksum: c, .. }),
                ) => {
                    *c = Some(checksum.clone());
                    None
                }
                (EventKind::ChecksumRepaired { checksum }, Some(VersionState::InProgress(p))) => {
                    p.checksum = checksum.clone();
                    None
                }
                (EventKind::ManualRollback, Some(_)) => Some(VersionState::RolledBack),
                // Anything else (notes, or an event that does not fit the
                // state, such as a duplicate) leaves the state as it is.
                _ => None,
            };
            if let Some(state) = next {
                versions.insert(version.clone(), state);
            }
        }
        TargetState { versions }
    }

    pub fn get(&self, v: &Version) -> Option<&VersionState> {
        self.versions.get(v)
    }

    pub fn is_applied(&self, v: &Version) -> bool {
        matches!(self.versions.get(v), Some(VersionState::Applied { .. }))
    }

    /// Highest applied version.
    pub fn applied_version(&self) -> Option<&Version> {
        self.versions
            .iter()
            .rev()
            .find(|(_, s)| matches!(s, VersionState::Applied { .. }))
            .map(|(v, _)| v)
    }

    /// True when the ledger records nothing for any version.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    pub fn sum(s: &str) -> Checksum {
        Checksum(s.to_string())
    }

    /// Builds events with increasing sequence numbers.
    #[derive(Default)]
    pub struct Log(pub Vec<Event>);

    impl Log {
        pub fn push(&mut self, version: &str, kind: EventKind) -> &mut Self {
            let seq = self.0.len() as u64 + 1;
            self.0.push(Event {
                seq,
                version: Some(v(version)),
                kind,
            });
            self
        }
        pub fn applied(&mut self, version: &str, checksum: &str, statements: usize) -> &mut Self {
            self.push(
                version,
                EventKind::Started {
                    direction: Direction::Up,
                    checksum: sum(checksum),
                    statements,
                },
            );
            for index in 0..statements {
                self.push(
                    version,
                    EventKind::StatementDone {
                        direction: Direction::Up,
                        index,
                    },
                );
            }
            self.push(
                version,
                EventKind::Completed {
                    direction: Direction::Up,
                },
            )
        }
        pub fn state(&self) -> TargetState {
            TargetState::fold(&self.0)
        }
    }

    #[test]
    fn applied_then_rolled_back() {
        let mut log = Log::default();
        log.applied("1", "a", 2).applied("2", "b", 1);
        assert_eq!(log.state().applied_version(), Some(&v("2")));
        log.push(
            "2",
            EventKind::Started {
                direction: Direction::Down,
                checksum: sum("b"),
                statements: 1,
            },
        )
        .push(
            "2",
            EventKind::StatementDone {
                direction: Direction::Down,
                index: 0,
            },
        )
        .push(
            "2",
            EventKind::Completed {
                direction: Direction::Down,
            },
        );
        let s = log.state();
        assert_eq!(s.get(&v("2")), Some(&VersionState::RolledBack));
        assert_eq!(s.applied_version(), Some(&v("1")));
        assert_eq!(
            s.get(&v("1")),
            Some(&VersionState::Applied {
                checksum: Some(sum("a")),
                baselined: false
            })
        );
    }

    #[test]
    fn a_killed_run_stops_at_the_first_unrecorded_statement() {
        let mut log = Log::default();
        log.push(
            "3",
            EventKind::Started {
                direction: Direction::Up,
                checksum: sum("c"),
                statements: 4,
            },
        )
        .push(
            "3",
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 0,
            },
        )
        .push(
            "3",
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 1,
            },
        );
        match log.state().get(&v("3")) {
            Some(VersionState::InProgress(p)) => {
                assert_eq!(p.completed, 2);
                assert!(!p.next_known_not_run, "statement 2 may have run");
                assert_eq!(p.failed, None);
            }
            other => panic!("{other:?}"),
        }
        // A duplicate or out-of-order completion record changes nothing.
        log.push(
            "3",
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 0,
            },
        );
        log.push(
            "3",
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 3,
            },
        );
        assert!(
            matches!(log.state().get(&v("3")), Some(VersionState::InProgress(p)) if p.completed == 2)
        );
    }

    #[test]
    fn failures_and_repair_decisions() {
        let mut log = Log::default();
        log.push(
            "4",
            EventKind::Started {
                direction: Direction::Up,
                checksum: sum("d"),
                statements: 3,
            },
        )
        .push(
            "4",
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 0,
            },
        )
        .push(
            "4",
            EventKind::Failed {
                direction: Direction::Up,
                index: 1,
                error: "Code: 62".into(),
                partial: false,
            },
        );
        match log.state().get(&v("4")) {
            Some(VersionState::InProgress(p)) => {
                assert_eq!(p.completed, 1);
                assert!(p.next_known_not_run);
                assert_eq!(p.failed.as_deref(), Some("Code: 62"));
            }
            other => panic!("{other:?}"),
        }
        log.push(
            "4",
            EventKind::StatementResolved {
                direction: Direction::Up,
                index: 1,
                done: true,
            },
        );
        assert!(
            matches!(log.state().get(&v("4")), Some(VersionState::InProgress(p)) if p.completed == 2 && p.failed.is_none())
        );
    }

    #[test]
    fn a_requested_stop_marks_the_next_statement_as_not_run() {
        let mut log = Log::default();
        log.push(
            "7",
            EventKind::Started {
                direction: Direction::Up,
                checksum: sum("g"),
                statements: 3,
            },
        )
        .push(
            "7",
            EventKind::StatementDone {
                direction: Direction::Up,
                index: 0,
            },
        )
        .push(
            "7",
            EventKind::Stopped {
                direction: Direction::Up,
                index: 1,
            },
        );
        assert!(
            matches!(log.state().get(&v("7")), Some(VersionState::InProgress(p)) if p.completed == 1 && p.next_known_not_run)
        );
    }

    #[test]
    fn baseline_checksum_repair_and_manual_rollback() {
        let mut log = Log::default();
        log.push(
            "5",
            EventKind::Baselined {
                checksum: None,
                adopted: false,
            },
        );
        assert_eq!(
            log.state().get(&v("5")),
            Some(&VersionState::Applied {
                checksum: None,
                baselined: true
            })
        );
        log.applied("6", "old", 1).push(
            "6",
            EventKind::ChecksumRepaired {
                checksum: sum("new"),
            },
        );
        assert_eq!(
            log.state().get(&v("6")),
            Some(&VersionState::Applied {
                checksum: Some(sum("new")),
                baselined: false
            })
        );
        log.push("6", EventKind::ManualRollback);
        assert_eq!(log.state().get(&v("6")), Some(&VersionState::RolledBack));
        // Notes and version-less events change nothing.
        log.0.push(Event {
            seq: 99,
            version: None,
            kind: EventKind::Note {
                message: "lock".into(),
            },
        });
        assert_eq!(log.state().applied_version(), Some(&v("5")));
    }

    #[test]
    fn events_serialize_with_a_tag() {
        let e = Event {
            seq: 1,
            version: Some(v("1.1")),
            kind: EventKind::Completed {
                direction: Direction::Up,
            },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"seq":1,"version":"1.1","event":"completed","direction":"up"}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}
