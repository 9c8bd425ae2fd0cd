//! The one migrate path: plan against the target's ledger without the lock,
//! then — when there is work — take the lock, verify hosts left pending by
//! earlier runs, plan again on the ledger as it is now, and execute.
//! `migrate`, `rollback`, `plan`, `test`, `apply -f` and the operator all
//! come through here.

use crate::config::Settings;
use crate::ledger::LedgerEntry;
use crate::ledger::fold::{TargetState, VersionState};
use crate::ledger::pending::{self, PendingTask};
use crate::model::migration::Migration;
use crate::model::version::Version;
use crate::plan::preflight::{self, TargetFacts};
use crate::plan::prepare::{PreparedStep, effective_on_cluster, prepare};
use crate::plan::{Plan, Target};
use crate::runtime::store::{self, Writer};
use crate::runtime::{ClusterHost, Session};

use super::context::RunContext;
use super::error::{Blocked, EngineError, LockHeld};
use super::execute::{self, Progress};
use super::lock::with_lock;
use super::report::{HostFailure, Report};
use super::session::events;
use super::settle;

/// Where a run ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Latest,
    Version(Version),
    /// Roll back this many of the newest applied migrations.
    StepsBack(usize),
    /// `migrate --version V`: V alone.
    Only(Version),
}

/// How a `migrate` ended, when it did not fail.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing pending and no host work left: decided with reads only (no
    /// lock, no ledger writes).
    NothingToDo(Report),
    /// Every step ran and every host finished.
    Done(Report),
    /// Every step ran; some hosts have not finished yet (a later run
    /// verifies them).
    HostsPending(Report),
    /// Hosts finished an earlier pending statement with an error.
    HostsFailed(Report),
    /// Another runner holds the lock; nothing ran.
    Locked(LockHeld),
    /// The plan is blocked; nothing ran.
    Blocked(Blocked),
}

impl Outcome {
    /// The report, for outcomes that ran (or decided nothing was to run).
    pub fn report(&self) -> Option<&Report> {
        match self {
            Outcome::NothingToDo(r)
            | Outcome::Done(r)
            | Outcome::HostsPending(r)
            | Outcome::HostsFailed(r) => Some(r),
            Outcome::Locked(_) | Outcome::Blocked(_) => None,
        }
    }
}

/// The target's state and the plan towards a [`TargetSpec`], read without
/// the lock: what `plan` prints and what [`migrate`] starts from.
#[derive(Debug)]
pub struct Planned {
    /// The migrations with the environment's rollback strategy applied.
    pub migrations: Vec<Migration>,
    pub spec: TargetSpec,
    /// The ledger as read (empty when it does not exist yet).
    pub history: Vec<LedgerEntry>,
    pub state: TargetState,
    /// The plan and its exact statements, or why it cannot run.
    pub plan: Result<(Plan, Vec<PreparedStep>), Blocked>,
    /// The cluster's hosts (none on a single node).
    pub hosts: Vec<ClusterHost>,
    /// `ON CLUSTER` statements some hosts had not finished.
    pub open_tasks: Vec<PendingTask>,
    /// What the target is, for the checks before anything runs (clusters).
    pub facts: Option<TargetFacts>,
}

impl Planned {
    /// No step to run and no host work to verify.
    pub fn nothing_to_do(&self) -> bool {
        self.open_tasks.is_empty() && matches!(&self.plan, Ok((p, _)) if p.steps.is_empty())
    }

    pub fn applied_version(&self) -> Option<&Version> {
        self.state.applied_version()
    }

    pub fn skipped(&self) -> Vec<Version> {
        match &self.plan {
            Ok((p, _)) => p.skipped.iter().map(|s| s.version.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn resolve_target(spec: &TargetSpec, state: &TargetState) -> Target {
    match spec {
        TargetSpec::Latest => Target::Latest,
        TargetSpec::Version(v) | TargetSpec::Only(v) => Target::Version(v.clone()),
        TargetSpec::StepsBack(n) => {
            // A migration half applied or half rolled back counts as a step:
            // after `repair` of a failed rollback, `rollback` finishes that
            // one and goes no further.
            let applied: Vec<&Version> = state
                .versions
                .iter()
                .filter(|(_, s)| {
                    matches!(
                        s,
                        VersionState::Applied { .. } | VersionState::InProgress(_)
                    )
                })
                .map(|(v, _)| v)
                .collect();
            match applied.len().checked_sub(*n + 1) {
                Some(i) => Target::Version(applied[i].clone()),
                None => Target::Version(Version::zero()),
            }
        }
    }
}

/// Plans and prepares `migrations` against `state` (pure).
pub fn plan_and_prepare(
    settings: &Settings,
    migrations: &[Migration],
    state: &TargetState,
    spec: &TargetSpec,
    database_engine: &str,
) -> Result<(Plan, Vec<PreparedStep>), Blocked> {
    let planned = match spec {
        TargetSpec::Only(v) => crate::plan::plan_only(migrations, state, v, &settings.policy()),
        _ => crate::plan::plan(
            migrations,
            state,
            &resolve_target(spec, state),
            &settings.policy(),
        ),
    }
    .map_err(|problems| Blocked {
        problems,
        diagnostics: Vec::new(),
    })?;
    let mut prep = settings.prepare_settings();
    prep.on_cluster = effective_on_cluster(prep.on_cluster, database_engine);
    let steps = prepare(&planned, migrations, &prep).map_err(|diagnostics| Blocked {
        problems: Vec::new(),
        diagnostics,
    })?;
    Ok((planned, steps))
}

/// `plan` refused when the target is known to refuse one of its statements
/// part-way ([`preflight`]).
fn preflighted(
    plan: Result<(Plan, Vec<PreparedStep>), Blocked>,
    facts: Option<&TargetFacts>,
) -> Result<(Plan, Vec<PreparedStep>), Blocked> {
    let (planned, steps) = plan?;
    let refused = facts
        .map(|f| preflight::check(&steps, f))
        .unwrap_or_default();
    if refused.is_empty() {
        Ok((planned, steps))
    } else {
        Err(Blocked {
            problems: Vec::new(),
            diagnostics: refused,
        })
    }
}

/// Reads the target (no lock, no writes) and plans towards `spec`.
pub async fn plan(
    session: &Session,
    settings: &Settings,
    migrations: &[Migration],
    spec: TargetSpec,
) -> Result<Planned, EngineError> {
    let migrations = crate::model::strategy::resolve(migrations, settings.rollback_strategy);
    let history = store::read_if_exists(&session.conn, &session.cfg.ledger).await?;
    // Rollbacks the ledger's records of IF NOT EXISTS creations make
    // derivable.
    let migrations = crate::plan::rollbacks::complete(&migrations, &history);
    let migrations = if settings.rollback_from_ledger {
        crate::plan::rollbacks::from_ledger(&migrations, &history)
    } else {
        migrations
    };
    let state = TargetState::fold(&events(&history)?);
    let engine = session.database_engine().await?;
    if settings.cluster.is_some() && engine == "Replicated" {
        tracing::info!("database engine is Replicated: statements are sent without ON CLUSTER");
    }
    let hosts = session.cluster_hosts().await?;
    let plan = plan_and_prepare(settings, &migrations, &state, &spec, &engine);
    let open_tasks = pending::open_tasks(&history);
    // What the server is known to refuse part-way is checked before
    // anything runs; the table engines are read only when there is work
    // and the check applies (a cluster with replicas, servers before 20).
    let has_work = !open_tasks.is_empty() || !matches!(&plan, Ok((p, _)) if p.steps.is_empty());
    let facts = if settings.cluster.is_some()
        && session.server.major < 20
        && hosts.iter().any(|h| h.replica_num > 1)
        && has_work
    {
        Some(TargetFacts {
            server_major: session.server.major,
            replicated_shards: true,
            engines: session.table_engines().await?,
            database: settings.database.as_str().to_string(),
        })
    } else {
        None
    };
    let plan = preflighted(plan, facts.as_ref());
    Ok(Planned {
        migrations,
        spec,
        history,
        state,
        plan,
        hosts,
        open_tasks,
        facts,
    })
}

/// Runs what `planned` found to do. Nothing to do is decided without the
/// lock and without writing; anything else — work, or a plan that is
/// blocked — goes through the lock, so that a runner still busy is reported
/// as the lock holder rather than as a problem. Under the lock the ledger is
/// read and the plan made again: another runner may have moved it.
pub async fn migrate(
    session: &Session,
    settings: &Settings,
    planned: &Planned,
    ctx: &RunContext,
    progress: &dyn Progress,
) -> Result<Outcome, EngineError> {
    let host_count = planned.hosts.len().max(1);
    if planned.nothing_to_do() {
        return Ok(Outcome::NothingToDo(Report {
            applied_version: planned.applied_version().cloned(),
            skipped: planned.skipped(),
            history: planned.history.clone(),
            host_count,
            ..Default::default()
        }));
    }
    let migrations = planned.migrations.as_slice();
    let spec = &planned.spec;
    let run = with_lock(
        session,
        settings,
        ctx,
        async |writer: &mut Writer, mut history: Vec<LedgerEntry>| {
            let open = pending::open_tasks(&history);
            let (still, failed) = execute::verify_pending(session, Some(writer), open).await?;
            let engine = session.database_engine().await?;
            // Grouped statements a stopped run left unrecorded are settled
            // by looking at the schema before anything is planned.
            let settled = match pending::open_group(&history) {
                Some(run) => {
                    let state = TargetState::fold(&events(&history)?);
                    let steps = plan_and_prepare(
                        settings,
                        migrations,
                        &settle::as_if_not_run(&state),
                        spec,
                        &engine,
                    )
                    // Nothing can run anyway; the real plan says why.
                    .map(|(_, steps)| steps)
                    .unwrap_or_default();
                    settle::settle(session, writer, migrations, &history, &run, &steps).await?
                }
                None => settle::Settled::default(),
            };
            history.extend(settled.written);
            let state = TargetState::fold(&events(&history)?);
            let (_, steps) = preflighted(
                plan_and_prepare(settings, migrations, &state, spec, &engine),
                planned.facts.as_ref(),
            )
            .map_err(EngineError::Blocked)?;
            // Statements an earlier run left in flight (they may have run).
            let mut in_doubt: std::collections::BTreeSet<_> = state
                .versions
                .iter()
                .filter_map(|(v, s)| match s {
                    VersionState::InProgress(p)
                        if p.direction == crate::ledger::fold::Direction::Up
                            && !p.next_known_not_run =>
                    {
                        Some((v.clone(), p.completed))
                    }
                    _ => None,
                })
                .collect();
            in_doubt.extend(settled.in_doubt);
            let (ran, result) = execute::execute(
                session,
                writer,
                &steps,
                migrations,
                progress,
                ctx.stop.flag(),
                &in_doubt,
            )
            .await;
            Ok::<_, EngineError>((ran, result, still, failed))
        },
    )
    .await;
    let (ran, result, still, failed) = match run {
        Ok(r) => r,
        Err(EngineError::Locked(held)) => return Ok(Outcome::Locked(held)),
        Err(EngineError::Blocked(b)) => return Ok(Outcome::Blocked(b)),
        Err(e) => return Err(e),
    };
    let failure = match result {
        Ok(()) => None,
        Err(e) => match EngineError::from(e) {
            EngineError::Run { failure, .. } => Some(failure),
            other => return Err(other),
        },
    };
    // After a failed statement the report is best effort: the failure is
    // the news, and the ledger has every step.
    let history = match store::read(&session.conn, &session.cfg.ledger).await {
        Ok(h) => h,
        Err(e) if failure.is_none() => return Err(e.into()),
        Err(_) => Vec::new(),
    };
    let evs = match events(&history) {
        Ok(e) => e,
        Err(e) if failure.is_none() => return Err(e),
        Err(_) => Vec::new(),
    };
    let state = TargetState::fold(&evs);
    let mut pending_all = still;
    pending_all.extend(ran.pending.iter().cloned());
    let report = Report {
        applied: ran.applied,
        rolled_back: ran.rolled_back,
        baselined: ran.baselined,
        statements: ran.statements,
        pending: pending_all,
        failed_hosts: failed
            .into_iter()
            .map(|(task, host, error)| HostFailure { task, host, error })
            .collect(),
        applied_version: state.applied_version().cloned(),
        history,
        host_count,
        skipped: planned.skipped(),
    };
    if let Some(failure) = failure {
        return Err(EngineError::Run {
            failure,
            report: Box::new(report),
        });
    }
    Ok(if !report.failed_hosts.is_empty() {
        Outcome::HostsFailed(report)
    } else if !report.pending.is_empty() {
        Outcome::HostsPending(report)
    } else {
        Outcome::Done(report)
    })
}
