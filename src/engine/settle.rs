//! Settling grouped progress a stopped run left unrecorded.
//!
//! A run records the statements whose effect can be observed afterwards (or
//! that are safe to repeat) in groups ([`crate::sql::effect`],
//! `runtime::store::Writer`). When it stops between two durable points —
//! killed, its machine gone — the ledger says `progress_grouped` without a
//! `progress_recorded` after it, and some of the statements it ran may have
//! no record. Under the lock, before planning, the next run walks the
//! statements the stopped run had next, in the same order, and looks at the
//! schema:
//!
//! - an observable statement whose effect is there took effect: it is
//!   recorded (`statement_done` with `observed`), and so is every
//!   repeatable statement before it (statements run in order);
//! - one whose effect is not there did not: the walk stops, and the run
//!   goes on from the first statement not proven done (a repeatable one is
//!   sent again; an observable one is recorded as not run);
//! - one whose effect is on some hosts only is still being carried out by
//!   the cluster's DDL queue: looked at again for a while, then left in
//!   flight, which the planner refuses loudly (`repair` decides);
//! - an opaque statement (`INSERT`, a mutation) is never in a group: the
//!   stopped run wrote everything before it durably, so the walk stops.
//!
//! Nothing here sends a migration's statement; it only reads the schema and
//! writes records.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::ledger::fold::{Direction, TargetState, VersionState};
use crate::ledger::{LedgerEntry, Record};
use crate::model::migration::Migration;
use crate::model::version::Version;
use crate::plan::Step;
use crate::plan::prepare::PreparedStep;
use crate::runtime::Session;
use crate::runtime::queries;
use crate::runtime::store::Writer;
use crate::sql::effect::{Check, Effect, effect};

use super::error::EngineError;
use super::execute::started_record;
use super::session::events;

/// How long a statement seen on some hosts only is looked at again.
const MIXED_WAIT: Duration = Duration::from_secs(15);

/// What settling wrote and which statements may have run without a record.
#[derive(Debug, Default)]
pub struct Settled {
    /// The rows written, in order (the caller's history continues with them).
    pub written: Vec<LedgerEntry>,
    /// Statements the stopped run may have sent: an `IF NOT EXISTS`
    /// creation among them cannot tell whether it created its object.
    pub in_doubt: BTreeSet<(Version, usize)>,
}

/// How many hosts show a check's expected state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    All,
    None,
    /// Some hosts only: the DDL queue is still at work, or a host failed.
    Some,
}

impl Seen {
    /// The combined answer for every check of one statement.
    pub fn of(each: &[Seen]) -> Seen {
        if each.iter().all(|s| *s == Seen::All) {
            Seen::All
        } else if each.iter().all(|s| *s == Seen::None) {
            Seen::None
        } else {
            Seen::Some
        }
    }
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

async fn count(session: &Session, sql: &str) -> Result<u64, EngineError> {
    let rows: Vec<Count> = session
        .conn
        .rows(sql)
        .await
        .map_err(crate::runtime::store::LedgerError::from)?;
    Ok(rows.first().map_or(0, |r| r.n))
}

/// Looks at one check on every host that is asked (`hosts` of them).
async fn look(session: &Session, check: &Check, hosts: u64) -> Result<Seen, EngineError> {
    let cluster = session.cfg.ledger.cluster.as_ref().map(|c| c.as_str());
    let n = count(session, &queries::observe_sql(check, cluster)).await?;
    let present = match check {
        Check::Table { present, .. }
        | Check::Database { present, .. }
        | Check::Column { present, .. } => *present,
    };
    let with = if present { n } else { hosts.saturating_sub(n) };
    Ok(if with >= hosts {
        Seen::All
    } else if with == 0 {
        Seen::None
    } else {
        Seen::Some
    })
}

/// Looks at every check of a statement; a partial answer is looked at
/// again until [`MIXED_WAIT`] has passed.
async fn observe(session: &Session, checks: &[Check], hosts: u64) -> Result<Seen, EngineError> {
    let deadline = Instant::now() + MIXED_WAIT;
    loop {
        let mut each = Vec::with_capacity(checks.len());
        for c in checks {
            each.push(look(session, c, hosts).await?);
        }
        let seen = Seen::of(&each);
        if seen != Seen::Some || Instant::now() >= deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The state as the stopped run left it, had every statement in flight
/// not run: planning over it gives the order and starting points that run
/// had (the real state may refuse to plan: an in-flight statement that is
/// not safe to repeat is exactly what this module settles).
pub fn as_if_not_run(state: &TargetState) -> TargetState {
    let mut s = state.clone();
    for v in s.versions.values_mut() {
        if let VersionState::InProgress(p) = v
            && p.direction == Direction::Up
        {
            p.next_known_not_run = true;
        }
    }
    s
}

/// Settles the open group of the stopped run `run` (see the module's
/// text). `steps` are planned over [`as_if_not_run`] of the ledger's state:
/// the statements that run had next, in its order. The caller holds the
/// lock.
pub async fn settle(
    session: &Session,
    writer: &mut Writer,
    migrations: &[Migration],
    history: &[LedgerEntry],
    run: &str,
    steps: &[PreparedStep],
) -> Result<Settled, EngineError> {
    let state = TargetState::fold(&events(history)?);
    let hosts = match &session.cfg.ledger.cluster {
        Some(c) => count(session, &queries::cluster_shards_sql(c.as_str()))
            .await?
            .max(1),
        None => 1,
    };
    let database = session.cfg.ledger.database.as_str().to_string();
    let mut out = Settled::default();
    // Records that hold once a later statement is seen to have taken
    // effect (a repeatable statement, a migration's start and end).
    let mut waiting: Vec<Record> = Vec::new();
    'walk: for step in steps {
        let Step::Apply {
            version,
            from_statement,
        } = &step.step
        else {
            break;
        };
        let Some(m) = migrations.iter().find(|m| &m.version == version) else {
            break;
        };
        let started = matches!(
            state.versions.get(version),
            Some(VersionState::InProgress(p)) if p.direction == Direction::Up
        );
        if !started {
            waiting.push(started_record(m, step, Direction::Up, false));
        }
        for ps in step
            .statements
            .iter()
            .filter(|s| s.index >= *from_statement)
        {
            out.in_doubt.insert((version.clone(), ps.index));
            let observed = |seen: String| Record::StatementObserved {
                version: version.clone(),
                direction: Direction::Up,
                index: ps.index,
                checksum: m.checksum.clone(),
                seen,
            };
            match effect(&ps.sql, &database) {
                Effect::Opaque => break 'walk,
                Effect::Repeatable(_) => waiting.push(observed(
                    "safe to repeat; a later statement of the stopped run took effect".into(),
                )),
                Effect::Observable(checks) => {
                    let described: Vec<String> = checks.iter().map(Check::describe).collect();
                    match observe(session, &checks, hosts).await? {
                        Seen::All => {
                            waiting.push(observed(described.join(", ")));
                            for r in waiting.drain(..) {
                                out.written.push(writer.stage(r));
                            }
                        }
                        Seen::None => {
                            // Everything before it is on the record (the
                            // migration's start too): it is the statement
                            // in flight, and it did not run.
                            if waiting.is_empty() {
                                out.written.push(
                                    writer.stage(Record::StatementNotSeen {
                                        version: version.clone(),
                                        direction: Direction::Up,
                                        index: ps.index,
                                        seen: described
                                            .iter()
                                            .map(|d| format!("not so: {d}"))
                                            .collect::<Vec<_>>()
                                            .join(", "),
                                    }),
                                );
                            }
                            break 'walk;
                        }
                        Seen::Some => {
                            // It started: everything before it ran. It stays
                            // in flight, for a person to decide.
                            tracing::warn!(
                                migration = %m.label(),
                                statement = ps.index + 1,
                                "a statement of the stopped run took effect on some hosts only"
                            );
                            for r in waiting.drain(..) {
                                out.written.push(writer.stage(r));
                            }
                            break 'walk;
                        }
                    }
                }
            }
        }
        let completed = Record::Completed {
            version: version.clone(),
            direction: Direction::Up,
            checksum: m.checksum.clone(),
            description: m.description.clone(),
            duration_ms: 0,
        };
        if waiting.is_empty() {
            out.written.push(writer.stage(completed));
        } else {
            waiting.push(completed);
        }
    }
    out.written.push(writer.stage(Record::ProgressRecorded {
        recovered_from: Some(run.to_string()),
    }));
    writer.flush().await?;
    tracing::info!(
        stopped_run = %run,
        records = out.written.len(),
        "settled the grouped statements of a stopped run by looking at the schema"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fold::Progress;
    use crate::model::migration::Checksum;

    #[test]
    fn a_statement_is_seen_when_every_check_holds_everywhere() {
        assert_eq!(Seen::of(&[Seen::All, Seen::All]), Seen::All);
        assert_eq!(Seen::of(&[Seen::None, Seen::None]), Seen::None);
        assert_eq!(Seen::of(&[Seen::All, Seen::None]), Seen::Some);
        assert_eq!(Seen::of(&[Seen::Some]), Seen::Some);
    }

    #[test]
    fn planning_as_if_in_flight_statements_had_not_run_keeps_rollbacks_as_they_are() {
        let progress = |direction| {
            VersionState::InProgress(Progress {
                direction,
                checksum: Checksum("c".into()),
                statements: 3,
                completed: 1,
                failed: None,
                next_known_not_run: false,
                partial: false,
            })
        };
        let mut state = TargetState::default();
        state
            .versions
            .insert(Version::parse("1").unwrap(), progress(Direction::Up));
        state
            .versions
            .insert(Version::parse("2").unwrap(), progress(Direction::Down));
        let s = as_if_not_run(&state);
        let known = |v: &str| match &s.versions[&Version::parse(v).unwrap()] {
            VersionState::InProgress(p) => p.next_known_not_run,
            _ => unreachable!(),
        };
        assert!(known("1"));
        assert!(!known("2"));
    }
}
