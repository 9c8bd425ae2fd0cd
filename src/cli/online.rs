//! Commands that talk to ClickHouse. Each one is a thin sequence over the
//! library's runtime: connect, read the ledger, take the lock where it
//! writes, plan, run, print.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use chmigrate::config::{PasswordSource, Secret, Settings};
use chmigrate::diagnostic::{self, Diagnostic};
use chmigrate::history::{Event, TargetState, VersionState};
use chmigrate::ledger::{HostResult, LedgerEntry, LedgerTable};
use chmigrate::migration::Migration;
use chmigrate::plan::{Plan, Target, plan};
use chmigrate::prepare::{
    OnClusterNote, PreparedStatement, PreparedStep, effective_on_cluster, prepare,
};
use chmigrate::runtime::lock::{self, LockError};
use chmigrate::runtime::pending::{self, PendingTask};
use chmigrate::runtime::run::{self, Outcome, Progress, RunError};
use chmigrate::runtime::store::{self, LedgerError, Writer, now_us};
use chmigrate::runtime::{ChError, Endpoint, Session, TargetConfig};
use chmigrate::version::Version;

use super::output::{self, Format};
use super::{CliError, load, loaded_or_fail};

/// Where `rollback` ends.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    Latest,
    Version(Version),
    StepsBack(usize),
    /// `migrate --version V`: V alone.
    Only(Version),
}

fn password(settings: &Settings) -> Result<Option<Secret>, CliError> {
    Ok(match &settings.password {
        PasswordSource::None => None,
        PasswordSource::Inline(s) => Some(s.clone()),
        PasswordSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Invalid(format!(
                    "{}: cannot read password file: {e}",
                    path.display()
                ))
            })?;
            Some(Secret::new(text.trim_end_matches(['\n', '\r'])))
        }
        PasswordSource::Env(name) => {
            Some(Secret::new(std::env::var(name).map_err(|_| {
                CliError::Invalid(format!("password variable {name} is not set"))
            })?))
        }
    })
}

pub fn ledger_table(settings: &Settings) -> LedgerTable {
    LedgerTable {
        database: settings.database.clone(),
        table: settings.history_table.clone(),
        cluster: settings.cluster.clone(),
    }
}

fn target_config(settings: &Settings) -> Result<TargetConfig, CliError> {
    let mut endpoint = Endpoint::new(settings.url.clone());
    endpoint.user = settings.user.clone();
    endpoint.password = password(settings)?;
    endpoint.ca_file = settings.ca_file.clone();
    endpoint.tls_verify = settings.tls_verify;
    endpoint.request_timeout =
        Duration::from_secs(settings.ddl_timeout_s.max(settings.mutation_timeout_s) + 60);
    Ok(TargetConfig {
        endpoint,
        ledger: ledger_table(settings),
        ddl_timeout: Duration::from_secs(settings.ddl_timeout_s),
        mutation_timeout: Duration::from_secs(settings.mutation_timeout_s),
        backup: settings.backup,
        parallel: settings.parallel,
    })
}

fn ch(e: ChError) -> CliError {
    CliError::Failed(anyhow::anyhow!(e))
}

fn lock_err(e: LockError) -> CliError {
    match e {
        LockError::Ch(c) => ch(c),
        other => CliError::Failed(anyhow::anyhow!(other)),
    }
}

pub(crate) fn ledger_err(e: LedgerError) -> CliError {
    match e {
        LedgerError::Shape { .. } | LedgerError::Row { .. } => CliError::Invalid(e.to_string()),
        LedgerError::Ch(c) => ch(c),
    }
}

pub async fn connect(settings: &Settings) -> Result<Session, CliError> {
    Session::connect(target_config(settings)?).await.map_err(ch)
}

fn machine() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into())
}

tokio::task_local! {
    /// Who a run is when it is not a person at a terminal: the operator sets
    /// `operator:<namespace>/<name> (<pod>)` around each reconcile.
    pub static ACTOR: String;
}

/// Which held locks a run may take over: the operator's own, left by an
/// instance that is provably gone.
///
/// A lock is only ever taken over when it was taken before this process
/// started (or became the leader) by an operator working on the same set,
/// and either this instance holds the leader Lease (so the holder lost it
/// and stops before its next statement) or the holder has this instance's
/// own identity (this pod's container restarted). Two operators without
/// leader election never take each other's locks: the second waits, the
/// set says `LockHeld` naming the holder.
#[derive(Debug, Clone)]
pub struct StaleLocks {
    /// Holders starting with this are instances of the same operator for
    /// the same set (`operator:<ns>/<name> (`).
    pub holder_prefix: String,
    /// This instance's identity (pod name).
    pub identity: String,
    /// Whether this instance holds the leader Lease.
    pub leader: bool,
    /// When this process started, or became the leader (µs since the
    /// epoch).
    pub started_us: u64,
}

impl StaleLocks {
    pub fn is_stale(&self, holder: &str, acquired_us: u64) -> bool {
        let Some(who) = holder
            .strip_prefix(&self.holder_prefix)
            .and_then(|rest| rest.strip_suffix(')'))
        else {
            return false;
        };
        acquired_us < self.started_us && (self.leader || who == self.identity)
    }
}

tokio::task_local! {
    /// Set by the operator around each reconcile; the CLI never takes over.
    pub static STALE_LOCKS: StaleLocks;
}

/// `user@machine (pid N)`: who a CLI run is (or the operator's [`ACTOR`]).
pub fn actor() -> String {
    if let Ok(a) = ACTOR.try_with(Clone::clone) {
        return a;
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!(
        "{user}@{} (chmigrate {}, pid {})",
        machine(),
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    )
}

fn run_id() -> String {
    format!("{:x}-{:x}", now_us(), std::process::id())
}

fn template(settings: &Settings, run: &str) -> LedgerEntry {
    LedgerEntry {
        run_id: run.to_string(),
        environment: settings.environment.clone(),
        actor: actor(),
        db_user: settings.user.clone(),
        statement: -1,
        ..Default::default()
    }
}

pub(crate) fn events(history: &[LedgerEntry]) -> Result<Vec<Event>, CliError> {
    history
        .iter()
        .map(|e| {
            e.to_event()
                .map_err(|e| CliError::Invalid(format!("ledger: {e}")))
        })
        .collect()
}

fn resolve_target(spec: &TargetSpec, state: &TargetState) -> Target {
    match spec {
        TargetSpec::Latest => Target::Latest,
        TargetSpec::Version(v) | TargetSpec::Only(v) => Target::Version(v.clone()),
        TargetSpec::StepsBack(n) => {
            let applied: Vec<&Version> = state
                .versions
                .iter()
                .filter(|(_, s)| matches!(s, VersionState::Applied { .. }))
                .map(|(v, _)| v)
                .collect();
            match applied.len().checked_sub(*n + 1) {
                Some(i) => Target::Version(applied[i].clone()),
                None => Target::Version(
                    Version::parse("0").unwrap_or_else(|_| unreachable!("0 is a version")),
                ),
            }
        }
    }
}

fn plan_and_prepare(
    settings: &Settings,
    migrations: &[Migration],
    state: &TargetState,
    spec: &TargetSpec,
    database_engine: &str,
) -> Result<(Plan, Vec<PreparedStep>), CliError> {
    let planned = match spec {
        TargetSpec::Only(v) => chmigrate::plan::plan_only(migrations, state, v, &settings.policy()),
        _ => plan(
            migrations,
            state,
            &resolve_target(spec, state),
            &settings.policy(),
        ),
    }
    .map_err(|problems| {
        let mut diags: Vec<Diagnostic> = problems.into_iter().map(Diagnostic::from).collect();
        diagnostic::sort(&mut diags);
        CliError::Blocked(diags)
    })?;
    let mut prep = settings.prepare_settings();
    prep.on_cluster = effective_on_cluster(prep.on_cluster, database_engine);
    if prep.cluster.is_some() && database_engine == "Replicated" {
        tracing::info!("database engine is Replicated: statements are sent without ON CLUSTER");
    }
    let steps = prepare(&planned, migrations, &prep).map_err(|mut diags| {
        diagnostic::sort(&mut diags);
        CliError::Blocked(diags)
    })?;
    Ok((planned, steps))
}

/// Progress on stderr: one rewritten line on a terminal, plain lines otherwise.
struct Printer {
    tty: bool,
}

impl Printer {
    fn new() -> Self {
        Printer {
            tty: std::io::stderr().is_terminal(),
        }
    }
    fn line(&self, s: &str, final_line: bool) {
        if self.tty {
            eprint!("\r\x1b[K{s}");
            if final_line {
                eprintln!();
            }
        } else {
            eprintln!("{s}");
        }
    }
}

fn verb(step: &PreparedStep) -> &'static str {
    match step.step {
        chmigrate::plan::Step::Rollback { .. } => "rolling back",
        _ => "applying",
    }
}

impl Progress for Printer {
    fn step_started(&self, step: &PreparedStep, total: usize) {
        self.line(
            &format!(
                "V{} {}: {} ({total} statement(s))",
                step.step.version(),
                step.description,
                verb(step)
            ),
            !self.tty,
        );
    }
    fn statement_started(&self, step: &PreparedStep, stmt: &PreparedStatement, total: usize) {
        if self.tty {
            self.line(
                &format!(
                    "V{}: statement {}/{total} running ({})",
                    step.step.version(),
                    stmt.index + 1,
                    stmt.location
                ),
                false,
            );
        }
    }
    fn statement_done(
        &self,
        step: &PreparedStep,
        stmt: &PreparedStatement,
        hosts: &[HostResult],
        pending: &[String],
        elapsed: Duration,
    ) {
        let hosts_txt = if hosts.is_empty() && pending.is_empty() {
            String::new()
        } else {
            format!(
                ", {}/{} host(s) done",
                hosts.len(),
                hosts.len() + pending.len()
            )
        };
        self.line(
            &format!(
                "V{}: statement {} done in {} ms{hosts_txt}{}",
                step.step.version(),
                stmt.index + 1,
                elapsed.as_millis(),
                if pending.is_empty() {
                    String::new()
                } else {
                    format!(" (pending: {})", pending.join(", "))
                }
            ),
            !self.tty,
        );
    }
    fn step_done(&self, step: &PreparedStep, elapsed: Duration) {
        self.line(
            &format!(
                "V{} {}: done in {} ms",
                step.step.version(),
                step.description,
                elapsed.as_millis()
            ),
            true,
        );
    }
}

/// Records in the ledger that a lock was broken, and why.
async fn record_lock_forced(
    session: &Session,
    settings: &Settings,
    run: &str,
    details: serde_json::Value,
) -> Result<(), CliError> {
    let mut writer = Writer::open(
        session.conn.clone(),
        session.cfg.ledger.clone(),
        template(settings, run),
    )
    .await
    .map_err(ledger_err)?;
    writer
        .write(|e| {
            e.event = "lock_forced".into();
            e.details = details.to_string();
        })
        .await
        .map_err(ledger_err)?;
    Ok(())
}

/// Holds the lock for `f`, records lock events, and always releases.
pub(crate) async fn locked<T>(
    session: &Session,
    settings: &Settings,
    format: Format,
    f: impl AsyncFnOnce(&mut Writer, Vec<LedgerEntry>) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let ledger = &session.cfg.ledger;
    store::ensure(&session.conn, ledger, session.cfg.ddl_timeout.as_secs())
        .await
        .map_err(ledger_err)?;
    let before = store::read(&session.conn, ledger)
        .await
        .map_err(ledger_err)?;
    let run = run_id();
    let me = actor();
    let acquire = || {
        lock::acquire(
            &session.conn,
            ledger,
            &me,
            &run,
            session.server.major,
            &before,
        )
    };
    let mut held = acquire().await;
    if let Err(LockError::Held { info, .. }) = &held
        && let Ok(rule) = STALE_LOCKS.try_with(Clone::clone)
        && rule.is_stale(&info.holder, info.acquired_us)
    {
        // A previous instance of this operator died holding the lock; only
        // one instance runs at a time (leader Lease), so it is not coming
        // back. Take it over, on the record.
        tracing::warn!(holder = %info.holder, "taking over a lock left by a previous operator instance");
        lock::force(
            &session.conn,
            ledger,
            session.server.major,
            session.cfg.ddl_timeout.as_secs(),
        )
        .await
        .map_err(lock_err)?;
        record_lock_forced(
            session,
            settings,
            &run,
            json!({
                "previous": info,
                "reason": "held by a previous instance of this operator, which is gone",
            }),
        )
        .await?;
        held = acquire().await;
    }
    let lock = match held {
        Ok(l) => l,
        Err(LockError::Held { info, now_us }) => {
            let msg = format!(
                "target is locked: {} — if that runner is gone, run `chmigrate unlock`",
                info.describe(now_us)
            );
            if format == Format::Json {
                output::print_json_value(
                    &json!({ "ok": false, "locked": true, "lock": info, "message": msg }),
                );
            }
            return Err(CliError::Locked(
                msg,
                Some((info.holder.clone(), info.age_secs(now_us))),
            ));
        }
        Err(e) => return Err(lock_err(e)),
    };
    let result = async {
        let history = store::read(&session.conn, ledger)
            .await
            .map_err(ledger_err)?;
        let mut writer = Writer::open(
            session.conn.clone(),
            ledger.clone(),
            template(settings, &run),
        )
        .await
        .map_err(ledger_err)?;
        writer
            .write(|e| {
                e.event = "lock_taken".into();
                e.details = json!({ "token": run }).to_string();
            })
            .await
            .map_err(ledger_err)?;
        let r = f(&mut writer, history).await;
        let released = writer
            .write(|e| {
                e.event = "lock_released".into();
                e.details = json!({ "token": run }).to_string();
            })
            .await;
        match (r, released) {
            (Ok(v), Ok(_)) => Ok(v),
            (Ok(_), Err(e)) => Err(ledger_err(e)),
            (Err(e), _) => Err(e),
        }
    }
    .await;
    if let Err(e) = lock::release(lock).await {
        tracing::warn!(error = %e, "could not release the lock");
        if result.is_ok() {
            return Err(lock_err(e));
        }
    }
    result
}

/// Set by SIGINT/SIGTERM: the run stops before its next statement,
/// records what it did and releases the lock.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks every run in this process to stop before its next statement (the
/// operator's shutdown).
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Resolves on SIGINT or SIGTERM.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn stop_on_signals() {
    tokio::spawn(async {
        terminated().await;
        eprintln!("stopping after the current statement (the ledger records where)…");
        request_stop();
    });
}

/// `migrate`, `rollback` and their dry runs.
/// What a `migrate` run did, for printing or for a resource's status.
#[derive(Debug, Default)]
pub struct MigrateReport {
    /// Dry runs: the plan and its statements.
    pub planned: Option<(
        Plan,
        Vec<PreparedStep>,
        Vec<chmigrate::runtime::ClusterHost>,
    )>,
    pub outcome: Option<Outcome>,
    pub pending: Vec<PendingTask>,
    pub failed: Vec<(PendingTask, String, String)>,
    pub applied_version: Option<Version>,
    /// The ledger after the run (statuses read times and durations from it).
    pub history: Vec<LedgerEntry>,
    /// Hosts of the target: every host of the cluster, or one.
    pub host_count: usize,
    /// Versions the plan skipped (restricted to other environments).
    pub skipped: Vec<Version>,
}

/// The engine's migrate (or rollback) over given migrations: the one code
/// path behind `migrate`, `rollback`, `plan` and `apply -f`.
pub async fn migrate_loaded(
    settings: &Settings,
    migrations: &[Migration],
    spec: &TargetSpec,
    dry_run: bool,
    format: Format,
    progress: &dyn Progress,
) -> Result<MigrateReport, CliError> {
    let resolved = chmigrate::strategy::resolve(migrations, settings.rollback_strategy);
    let migrations = resolved.as_slice();
    let session = connect(settings).await?;
    let ledger = session.cfg.ledger.clone();
    if dry_run {
        let history = store::read_if_exists(&session.conn, &ledger)
            .await
            .map_err(ledger_err)?;
        let state = TargetState::fold(&events(&history)?);
        let engine = session.database_engine().await.map_err(ch)?;
        let (planned, steps) = plan_and_prepare(settings, migrations, &state, spec, &engine)?;
        let hosts = session.cluster_hosts().await.map_err(ch)?;
        return Ok(MigrateReport {
            planned: Some((planned, steps, hosts)),
            applied_version: state.applied_version().cloned(),
            ..Default::default()
        });
    }
    // Nothing to do is decided without the lock and without writing: no
    // unfinished host work in the ledger and an empty plan. Anything else —
    // work, or a plan that is blocked — goes through the lock, so a runner
    // that is still busy is reported as the lock holder, not as a problem.
    let history = store::read_if_exists(&session.conn, &ledger)
        .await
        .map_err(ledger_err)?;
    let host_count = session.cluster_hosts().await.map_err(ch)?.len().max(1);
    let state = TargetState::fold(&events(&history)?);
    let engine = session.database_engine().await.map_err(ch)?;
    let skipped: Vec<Version> = match plan_and_prepare(settings, migrations, &state, spec, &engine)
    {
        Ok((planned, _))
            if pending::open_tasks(&history).is_empty() && planned.steps.is_empty() =>
        {
            return Ok(MigrateReport {
                outcome: Some(Outcome::default()),
                applied_version: state.applied_version().cloned(),
                skipped: planned.skipped.iter().map(|s| s.version.clone()).collect(),
                history,
                host_count,
                ..Default::default()
            });
        }
        Ok((planned, _)) => planned.skipped.iter().map(|s| s.version.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let (outcome, still, failed) = locked(
        &session,
        settings,
        format,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let open = pending::open_tasks(&history);
            let (still, failed) = run::verify_pending(&session, Some(writer), open)
                .await
                .map_err(run_err)?;
            let state = TargetState::fold(&events(&history)?);
            let engine = session.database_engine().await.map_err(ch)?;
            let (_, steps) = plan_and_prepare(settings, migrations, &state, spec, &engine)?;
            let outcome = run::execute(&session, writer, &steps, migrations, progress, &STOP)
                .await
                .map_err(run_err)?;
            Ok((outcome, still, failed))
        },
    )
    .await?;
    let history = store::read(&session.conn, &ledger)
        .await
        .map_err(ledger_err)?;
    let state = TargetState::fold(&events(&history)?);
    let mut pending_all: Vec<PendingTask> = still;
    pending_all.extend(outcome.pending.iter().cloned());
    Ok(MigrateReport {
        planned: None,
        outcome: Some(outcome),
        pending: pending_all,
        failed,
        applied_version: state.applied_version().cloned(),
        history,
        host_count,
        skipped,
    })
}

/// Prints blocked-plan diagnostics the way every command does.
pub fn reported(e: CliError, format: Format) -> CliError {
    match e {
        CliError::Blocked(diags) => {
            output::print_diagnostics(format, &diags);
            CliError::Reported
        }
        other => other,
    }
}

/// `migrate`, `rollback` and their dry runs.
pub async fn migrate(
    settings: &Settings,
    spec: TargetSpec,
    dry_run: bool,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let printer = Printer::new();
    if !dry_run {
        stop_on_signals();
    }
    let report = migrate_loaded(settings, &migrations, &spec, dry_run, format, &printer)
        .await
        .map_err(|e| reported(e, format))?;
    if let Some((planned, steps, hosts)) = &report.planned {
        output::print_online_plan(format, settings, planned, steps, hosts, &migrations);
        return Ok(());
    }
    let outcome = report.outcome.unwrap_or_default();
    output::print_outcome(
        format,
        &outcome,
        report.applied_version.as_ref(),
        &report.pending,
        &report.failed,
    );
    if !report.failed.is_empty() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "{} host(s) failed a statement that was pending",
            report.failed.len()
        )));
    }
    if !report.pending.is_empty() {
        return Err(CliError::Pending);
    }
    Ok(())
}

fn run_err(e: RunError) -> CliError {
    match e {
        RunError::Ledger(l) => ledger_err(l),
        other => CliError::Failed(anyhow::anyhow!(other)),
    }
}

/// What `status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub url: String,
    pub server_version: String,
    pub database: String,
    pub cluster: Option<String>,
    pub environment: String,
    pub applied_version: Option<Version>,
    pub latest_version: Option<Version>,
    pub pending: Vec<Version>,
    pub problems: Vec<String>,
    pub lock: Option<lock::LockInfo>,
    pub hosts: Vec<HostState>,
    pub pending_hosts: Vec<PendingTask>,
    pub migrations: Vec<MigrationStatus>,
}

#[derive(Debug, Serialize)]
pub struct HostState {
    pub host: String,
    pub shard: u32,
    pub replica: u32,
    pub state: String,
}

#[derive(Debug, Serialize)]
pub struct MigrationStatus {
    pub version: Version,
    pub description: String,
    pub state: String,
    /// With `--show-rollback`, for applied migrations: whether and how it
    /// can be rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

pub async fn status(
    settings: &Settings,
    show_rollback: bool,
    format: Format,
) -> Result<(), CliError> {
    let loaded = load(settings);
    let session = connect(settings).await?;
    let ledger = session.cfg.ledger.clone();
    let history = store::read_if_exists(&session.conn, &ledger)
        .await
        .map_err(ledger_err)?;
    let state = TargetState::fold(&events(&history)?);
    let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let pending_versions = match plan(
        &loaded.migrations,
        &state,
        &Target::Latest,
        &settings.policy(),
    ) {
        Ok(p) => p
            .steps
            .iter()
            .filter_map(|s| match s {
                chmigrate::plan::Step::Apply { version, .. } => Some(version.clone()),
                _ => None,
            })
            .collect(),
        Err(ps) => {
            problems.extend(ps.iter().map(ToString::to_string));
            Vec::new()
        }
    };
    let lock = lock::inspect(&session.conn, &ledger, &history)
        .await
        .map_err(ch)?;
    let open = pending::open_tasks(&history);
    let (still, _failed) = run::verify_pending(&session, None, open)
        .await
        .map_err(run_err)?;
    let hosts = session
        .cluster_hosts()
        .await
        .map_err(ch)?
        .into_iter()
        .map(|h| {
            let id = h.id();
            let waiting: Vec<String> = still
                .iter()
                .filter(|t| t.hosts.contains(&id))
                .map(|t| format!("V{} statement {}", t.version, t.statement + 1))
                .collect();
            HostState {
                state: if waiting.is_empty() {
                    "in sync".into()
                } else {
                    format!("pending: {}", waiting.join(", "))
                },
                host: id,
                shard: h.shard_num,
                replica: h.replica_num,
            }
        })
        .collect();
    let vars = settings.prepare_settings().variables;
    let mut migrations: Vec<MigrationStatus> = loaded
        .migrations
        .iter()
        .map(|m| MigrationStatus {
            version: m.version.clone(),
            description: m.description.clone(),
            state: describe_state(
                state.get(&m.version),
                m.environments.includes(&settings.environment),
            ),
            rollback: (show_rollback && state.is_applied(&m.version)).then(|| {
                let s = chmigrate::strategy::rollback_summary(
                    m,
                    settings.allow_rollback,
                    &settings.environment,
                );
                vars.substitute(&s).unwrap_or(s)
            }),
        })
        .collect();
    for (v, s) in &state.versions {
        if !loaded.migrations.iter().any(|m| &m.version == v) {
            migrations.push(MigrationStatus {
                version: v.clone(),
                description: "(no source)".into(),
                state: describe_state(Some(s), true),
                rollback: (show_rollback && state.is_applied(v))
                    .then(|| "no: its source is missing".to_string()),
            });
        }
    }
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    let st = Status {
        url: settings.url.clone(),
        server_version: session.server.version.clone(),
        database: settings.database.as_str().to_string(),
        cluster: settings.cluster.as_ref().map(|c| c.as_str().to_string()),
        environment: settings.environment.clone(),
        applied_version: state.applied_version().cloned(),
        latest_version: loaded.migrations.iter().map(|m| m.version.clone()).max(),
        pending: pending_versions,
        problems,
        lock,
        hosts,
        pending_hosts: still,
        migrations,
    };
    output::print_status(format, &st);
    Ok(())
}

fn describe_state(s: Option<&VersionState>, in_env: bool) -> String {
    match s {
        None if !in_env => "skipped (other environment)".into(),
        None => "pending".into(),
        Some(VersionState::Applied {
            baselined: true, ..
        }) => "baselined".into(),
        Some(VersionState::Applied { .. }) => "applied".into(),
        Some(VersionState::RolledBack) => "rolled back".into(),
        Some(VersionState::InProgress(p)) => format!(
            "{} {}/{} statements{}",
            match p.direction {
                chmigrate::history::Direction::Up => "half applied:",
                chmigrate::history::Direction::Down => "half rolled back:",
            },
            p.completed,
            p.statements,
            p.failed
                .as_ref()
                .map(|e| format!(" (failed: {})", e.lines().next().unwrap_or("")))
                .unwrap_or_default()
        ),
    }
}

pub async fn history(settings: &Settings, format: Format) -> Result<(), CliError> {
    let session = connect(settings).await?;
    let history = store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(ledger_err)?;
    output::print_history(format, &history);
    Ok(())
}

pub async fn validate_online(
    settings: &Settings,
    check_conflicts: bool,
    format: Format,
) -> Result<(), CliError> {
    let (loaded, mut diags) = super::validate_folder(settings);
    let session = connect(settings).await?;
    let history = store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(ledger_err)?;
    let state = TargetState::fold(&events(&history)?);
    if check_conflicts {
        diags.extend(chmigrate::validate::conflicts(
            &loaded.migrations,
            &state,
            &history,
        ));
    }
    match plan(
        &loaded.migrations,
        &state,
        &Target::Latest,
        &settings.policy(),
    ) {
        Err(problems) => diags.extend(problems.into_iter().map(Diagnostic::from)),
        Ok(p) if check_conflicts && settings.parallel > 1 => {
            if let Ok(steps) = prepare(&p, &loaded.migrations, &settings.prepare_settings()) {
                diags.extend(same_table_diagnostics(&steps, &loaded.migrations, settings));
            }
        }
        Ok(_) => {}
    }
    diagnostic::sort(&mut diags);
    diags.dedup();
    output::print_validation(format, settings, loaded.migrations.len(), &diags);
    if diags.iter().any(Diagnostic::is_error) {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// `--check-conflicts` with `parallel` > 1: pending neighbours that change
/// one table with no dependency between them.
fn same_table_diagnostics(
    steps: &[chmigrate::prepare::PreparedStep],
    migrations: &[chmigrate::Migration],
    settings: &Settings,
) -> Vec<Diagnostic> {
    chmigrate::waves::same_table_changes(
        steps,
        migrations,
        settings.parallel,
        settings.database.as_str(),
    )
    .into_iter()
    .filter_map(|(i, j, tables)| {
        let (a, b) = (steps[i].step.version(), steps[j].step.version());
        let later = migrations.iter().find(|m| m.version == *b)?;
        Some(Diagnostic::warning(
            Some(later.location.clone()),
            format!(
                "V{b} and V{a} both change {} and neither depends on the other: with parallel: {} \
                 they cannot share a wave and run in version order; if V{b} was written against \
                 V{a}'s table, say so with `-- Dependencies: {a}` (two branches changing one table \
                 is how conflicting migrations are made)",
                tables.join(", "),
                settings.parallel
            ),
        ))
    })
    .collect()
}

pub async fn baseline(
    settings: &Settings,
    version: Version,
    format: Format,
) -> Result<(), CliError> {
    let session = connect(settings).await?;
    locked(&session, settings, format, async |writer: &mut Writer, history: Vec<LedgerEntry>| {
        let state = TargetState::fold(&events(&history)?);
        if let Some(v) = state.applied_version() {
            return Err(CliError::Invalid(format!(
                "cannot baseline: V{v} is already applied on this target (baseline only an empty ledger)"
            )));
        }
        writer
            .write(|e| {
                e.event = "baselined".into();
                e.version = version.to_string();
                e.description = "baseline".into();
            })
            .await
            .map_err(ledger_err)?;
        Ok(())
    })
    .await?;
    output::print_message(
        format,
        &format!("baselined at V{version}"),
        json!({ "ok": true, "baseline": version }),
    );
    Ok(())
}

/// `repair`: accept changed checksums, or record a decision about a statement.
pub async fn repair(
    settings: &Settings,
    resolve: Option<(Version, usize, bool)>,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let session = connect(settings).await?;
    let done = locked(
        &session,
        settings,
        format,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let state = TargetState::fold(&events(&history)?);
            let mut done = Vec::new();
            if let Some((version, number, took_effect)) = &resolve {
                let Some(VersionState::InProgress(p)) = state.get(version) else {
                    return Err(CliError::Invalid(format!(
                        "V{version} is not half-applied; nothing to resolve"
                    )));
                };
                if p.completed + 1 != *number {
                    return Err(CliError::Invalid(format!(
                        "V{version} stopped at statement {}; --statement {number} does not match",
                        p.completed + 1
                    )));
                }
                let dir = match p.direction {
                    chmigrate::history::Direction::Up => "up",
                    chmigrate::history::Direction::Down => "down",
                };
                writer
                    .write(|e| {
                        e.event = "statement_resolved".into();
                        e.version = version.to_string();
                        e.direction = dir.into();
                        e.statement = (*number - 1) as i64;
                        e.details = json!({ "done": took_effect }).to_string();
                    })
                    .await
                    .map_err(ledger_err)?;
                done.push(format!(
                    "V{version} statement {number} recorded as {}",
                    if *took_effect { "done" } else { "not done" }
                ));
                return Ok(done);
            }
            for m in &migrations {
                let recorded = match state.get(&m.version) {
                    Some(VersionState::Applied {
                        checksum: Some(c),
                        baselined: false,
                    }) => c,
                    Some(VersionState::InProgress(p)) => &p.checksum,
                    _ => continue,
                };
                if *recorded != m.checksum {
                    writer
                        .write(|e| {
                            e.event = "checksum_repaired".into();
                            e.version = m.version.to_string();
                            e.checksum = m.checksum.0.clone();
                            e.details = json!({ "previous": recorded.0 }).to_string();
                        })
                        .await
                        .map_err(ledger_err)?;
                    done.push(format!(
                        "V{}: checksum {} -> {}",
                        m.version,
                        recorded.short(),
                        m.checksum.short()
                    ));
                }
            }
            Ok(done)
        },
    )
    .await?;
    let text = if done.is_empty() {
        "nothing to repair".to_string()
    } else {
        done.join("\n")
    };
    output::print_message(format, &text, json!({ "ok": true, "repaired": done }));
    Ok(())
}

/// `rollback --manual --version V`: records that a person already undid V
/// by hand (nothing runs). Audited like any event: who, when, why. Refused
/// when V is not applied, or when an applied migration that stays applied
/// depends on it.
pub async fn manual_rollback(
    settings: &Settings,
    version: Version,
    reason: Option<String>,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let check = |history: &[LedgerEntry]| -> Result<(), CliError> {
        let state = TargetState::fold(&events(history)?);
        let applied = |v: &Version| matches!(state.get(v), Some(VersionState::Applied { .. }));
        if !applied(&version) {
            return Err(CliError::Invalid(format!(
                "V{version} is not applied on this target; there is nothing to record"
            )));
        }
        if let Some(dependent) = migrations
            .iter()
            .find(|m| m.dependencies.contains(&version) && applied(&m.version))
        {
            return Err(CliError::Invalid(format!(
                "V{version} cannot be recorded as rolled back: V{}, which stays applied, depends on it",
                dependent.version
            )));
        }
        Ok(())
    };
    let session = connect(settings).await?;
    // A refused request writes nothing, not even lock events; the same
    // check runs again under the lock.
    let history = store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(ledger_err)?;
    check(&history)?;
    let checksum = migrations
        .iter()
        .find(|m| m.version == version)
        .map(|m| m.checksum.0.clone())
        .unwrap_or_default();
    locked(
        &session,
        settings,
        format,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            check(&history)?;
            writer
                .write(|e| {
                    e.event = "manual_rollback".into();
                    e.version = version.to_string();
                    e.direction = "down".into();
                    e.checksum = checksum.clone();
                    e.details = json!({ "reason": reason }).to_string();
                })
                .await
                .map_err(ledger_err)?;
            Ok(())
        },
    )
    .await?;
    output::print_message(
        format,
        &format!("V{version} recorded as rolled back by hand (nothing was run)"),
        json!({ "ok": true, "manual_rollback": version.to_string() }),
    );
    Ok(())
}

pub async fn unlock(settings: &Settings, format: Format) -> Result<(), CliError> {
    let session = connect(settings).await?;
    let ledger = session.cfg.ledger.clone();
    let history = store::read_if_exists(&session.conn, &ledger)
        .await
        .map_err(ledger_err)?;
    let held = lock::inspect(&session.conn, &ledger, &history)
        .await
        .map_err(ch)?;
    let Some(info) = held else {
        output::print_message(
            format,
            "no lock is held",
            json!({ "ok": true, "released": false }),
        );
        return Ok(());
    };
    lock::force(
        &session.conn,
        &ledger,
        session.server.major,
        session.cfg.ddl_timeout.as_secs(),
    )
    .await
    .map_err(lock_err)?;
    if store::exists(&session.conn, &ledger)
        .await
        .map_err(ledger_err)?
    {
        record_lock_forced(&session, settings, &run_id(), json!({ "previous": info })).await?;
    }
    let text = format!("lock released (was {})", info.describe(now_us()));
    output::print_message(
        format,
        &text,
        json!({ "ok": true, "released": true, "previous": info }),
    );
    Ok(())
}

#[derive(Debug, Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

pub async fn doctor(settings: &Settings, format: Format) -> Result<(), CliError> {
    let mut checks = Vec::new();
    let mut add = |name: &str, r: Result<String, String>| {
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        checks.push(Check {
            name: name.into(),
            ok,
            detail,
        });
    };
    let session = match connect(settings).await {
        Ok(s) => s,
        Err(e) => {
            add("connection", Err(e.to_string()));
            output::print_checks(format, &checks_json(&checks));
            return Err(CliError::Failed(anyhow::anyhow!("cannot connect")));
        }
    };
    add(
        "connection",
        Ok(format!("{} as {}", settings.url, settings.user)),
    );
    add("server version", Ok(session.server.version.clone()));
    #[derive(Deserialize)]
    struct Setting {
        value: String,
    }
    let ro: Result<Vec<Setting>, ChError> = session
        .conn
        .rows(chmigrate::runtime::queries::readonly_sql())
        .await;
    add(
        "privileges",
        match ro {
            Ok(r) if r.first().is_none_or(|s| s.value == "0") => {
                Ok("user may run DDL (readonly = 0)".into())
            }
            Ok(r) => Err(format!("user is read-only (readonly = {})", r[0].value)),
            Err(e) => Err(e.to_string()),
        },
    );
    match &settings.cluster {
        Some(c) => {
            match session.cluster_hosts().await {
                Ok(h) if !h.is_empty() => {
                    let shards = h.iter().map(|x| x.shard_num).max().unwrap_or(0);
                    add(
                        "cluster topology",
                        Ok(format!(
                            "{} has {shards} shard(s), {} host(s): {}",
                            c.as_str(),
                            h.len(),
                            h.iter().map(|x| x.id()).collect::<Vec<_>>().join(", ")
                        )),
                    );
                }
                Ok(_) => add(
                    "cluster topology",
                    Err(format!("cluster {} is not in system.clusters", c.as_str())),
                ),
                Err(e) => add("cluster topology", Err(e.to_string())),
            }
            let zk: Result<Vec<serde_json::Value>, ChError> = session
                .conn
                .rows("SELECT name FROM system.zookeeper WHERE path = '/'")
                .await;
            add(
                "zookeeper",
                zk.map(|n| format!("reachable ({} top-level node(s))", n.len()))
                    .map_err(|e| e.to_string()),
            );
        }
        None => add(
            "cluster topology",
            Ok("single node (no cluster configured)".into()),
        ),
    }
    let ledger = session.cfg.ledger.clone();
    add(
        "ledger",
        match store::exists(&session.conn, &ledger).await {
            Ok(true) => store::check_shape(&session.conn, &ledger)
                .await
                .map(|_| format!("{} exists and has the expected shape", ledger.qualified()))
                .map_err(|e| e.to_string()),
            Ok(false) => Ok(format!(
                "{} does not exist yet (created on first migrate)",
                ledger.qualified()
            )),
            Err(e) => Err(e.to_string()),
        },
    );
    let history = store::read_if_exists(&session.conn, &ledger)
        .await
        .unwrap_or_default();
    add(
        "lock",
        match lock::inspect(&session.conn, &ledger, &history).await {
            Ok(None) => Ok("free".into()),
            Ok(Some(i)) => Ok(i.describe(now_us())),
            Err(e) => Err(e.to_string()),
        },
    );
    let ok = checks.iter().all(|c| c.ok);
    output::print_checks(format, &checks_json(&checks));
    if ok {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!("some checks failed")))
    }
}

fn checks_json(checks: &[Check]) -> serde_json::Value {
    json!({ "ok": checks.iter().all(|c| c.ok), "checks": checks })
}

/// The export file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub database: String,
    pub table: String,
    pub exported_at_us: u64,
    pub entries: Vec<LedgerEntry>,
}

pub const EXPORT_FORMAT: &str = "chmigrate-ledger/v1";

pub async fn export(settings: &Settings, file: &Path, format: Format) -> Result<(), CliError> {
    let session = connect(settings).await?;
    let entries = store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(ledger_err)?;
    let doc = Export {
        format: EXPORT_FORMAT.into(),
        database: settings.database.as_str().into(),
        table: settings.history_table.as_str().into(),
        exported_at_us: now_us(),
        entries,
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| CliError::Failed(e.into()))?;
    std::fs::write(file, text)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", file.display())))?;
    output::print_message(
        format,
        &format!(
            "exported {} event(s) to {}",
            doc.entries.len(),
            file.display()
        ),
        json!({ "ok": true, "events": doc.entries.len(), "file": file.display().to_string() }),
    );
    Ok(())
}

pub async fn import(settings: &Settings, file: &Path, format: Format) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Invalid(format!("{}: cannot read: {e}", file.display())))?;
    let doc: Export = serde_json::from_str(&text).map_err(|e| {
        CliError::Invalid(format!(
            "{}: not a chmigrate ledger export: {e}",
            file.display()
        ))
    })?;
    if doc.format != EXPORT_FORMAT {
        return Err(CliError::Invalid(format!(
            "{}: format {:?} is not {EXPORT_FORMAT:?}",
            file.display(),
            doc.format
        )));
    }
    for (i, e) in doc.entries.iter().enumerate() {
        e.to_event().map_err(|err| {
            CliError::Invalid(format!("{}: entry {}: {err}", file.display(), i + 1))
        })?;
    }
    let session = connect(settings).await?;
    let n = locked(
        &session,
        settings,
        format,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            if history.iter().any(|e| !e.version.is_empty()) {
                return Err(CliError::Invalid(format!(
                    "{} already has migration history; import only into an empty ledger",
                    session.cfg.ledger.qualified()
                )));
            }
            let rows: Vec<LedgerEntry> = doc
                .entries
                .iter()
                .filter(|e| !e.event.starts_with("lock_"))
                .cloned()
                .collect();
            let n = writer.write_all(rows).await.map_err(ledger_err)?;
            writer
                .write(|e| {
                    e.event = "imported".into();
                    e.details =
                        json!({ "file": file.display().to_string(), "events": n }).to_string();
                })
                .await
                .map_err(ledger_err)?;
            Ok(n)
        },
    )
    .await?;
    output::print_message(
        format,
        &format!("imported {n} event(s) from {}", file.display()),
        json!({ "ok": true, "events": n }),
    );
    Ok(())
}

/// Statements grouped by where they run, for `plan`.
pub fn host_group(note: &OnClusterNote, cluster: Option<&str>, hosts: usize) -> String {
    match (note, cluster) {
        (OnClusterNote::Added | OnClusterNote::AlreadyPresent, Some(c)) => {
            format!("on cluster {c} ({hosts} host(s))")
        }
        _ => "on the entry node".into(),
    }
}

/// Applied outcome for printing.
pub fn outcome_summary(o: &Outcome) -> String {
    let list = |v: &[Version]| {
        v.iter()
            .map(|v| format!("V{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !o.baselined.is_empty() {
        parts.push(format!("baselined {}", list(&o.baselined)));
    }
    if !o.rolled_back.is_empty() {
        parts.push(format!("rolled back {}", list(&o.rolled_back)));
    }
    if !o.applied.is_empty() {
        parts.push(format!("applied {}", list(&o.applied)));
    }
    if parts.is_empty() {
        "nothing to do".into()
    } else {
        format!("{} ({} statement(s))", parts.join(", "), o.statements)
    }
}

pub async fn report(
    settings: &Settings,
    format: Format,
    output: Option<&Path>,
) -> Result<(), CliError> {
    use chmigrate::report::{ReportFormat, ReportMeta, render};
    let session = connect(settings).await?;
    let history = store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(ledger_err)?;
    let meta = ReportMeta {
        title: format!("chmigrate history of {}", session.cfg.ledger.qualified()),
        target: format!(
            "{} database {}{}",
            settings.url,
            settings.database.as_str(),
            settings
                .cluster
                .as_ref()
                .map(|c| format!(" cluster {}", c.as_str()))
                .unwrap_or_default()
        ),
        generated_at_us: now_us(),
    };
    let fmt = match format {
        Format::Html => ReportFormat::Html,
        Format::Json => ReportFormat::Json,
        Format::Markdown | Format::Table => ReportFormat::Markdown,
    };
    let text = render(&history, &meta, fmt);
    match output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| {
                CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", path.display()))
            })?;
            eprintln!("report written to {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// The time `age_s` seconds ago, in the ledger's microseconds.
pub(crate) fn cutoff_us(age_s: u64) -> u64 {
    now_us().saturating_sub(age_s.saturating_mul(1_000_000))
}

/// `clean --older-than D`: deletes ledger events older than `age_s` that
/// no longer define the current state ([`chmigrate::clean`]), under the
/// lock, and records how many.
pub async fn clean(
    settings: &Settings,
    age_s: u64,
    dry_run: bool,
    format: Format,
) -> Result<(), CliError> {
    let session = connect(settings).await?;
    let cutoff = cutoff_us(age_s);
    if dry_run {
        let history = store::read_if_exists(&session.conn, &session.cfg.ledger)
            .await
            .map_err(ledger_err)?;
        let gone = chmigrate::clean::removable(&history, cutoff, "")
            .map_err(|e| CliError::Invalid(e.to_string()))?;
        output::print_message(
            format,
            &format!(
                "would remove {} of {} event(s); nothing was changed",
                gone.len(),
                history.len()
            ),
            json!({ "ok": true, "dry_run": true, "removable": gone.len(), "events": history.len() }),
        );
        return Ok(());
    }
    let (removed, total) = locked(
        &session,
        settings,
        format,
        async |writer: &mut Writer, history: Vec<LedgerEntry>| {
            let run = writer.template.run_id.clone();
            let gone = chmigrate::clean::removable(&history, cutoff, &run)
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            if gone.is_empty() {
                return Ok((0, history.len()));
            }
            let ledger = &session.cfg.ledger;
            for chunk in gone.chunks(10_000) {
                session
                    .conn
                    .execute(&ledger.delete_sql(chunk))
                    .await
                    .map_err(ch)?;
            }
            // Recorded before waiting: on a replicated ledger the newest
            // part written with insert_quorum is not mutated until another
            // quorum insert follows it (seen on 18.16), and this record's
            // block comes after the deletion's, so the deletion skips it.
            writer
                .write(|e| {
                    e.event = "ledger_cleaned".into();
                    e.details = json!({
                        "removed": gone.len(),
                        "older_than_s": age_s,
                        "before_us": cutoff,
                    })
                    .to_string();
                })
                .await
                .map_err(ledger_err)?;
            // 18.16 has no mutations_sync: wait until the deletion is done
            // everywhere, so the next reader sees it.
            chmigrate::runtime::run::wait_for_table_mutations(
                &session,
                ledger.database.as_str(),
                ledger.table.as_str(),
            )
            .await
            .map_err(|e| {
                CliError::Failed(anyhow::anyhow!(
                    "deleting {} ledger event(s): {e}",
                    gone.len()
                ))
            })?;
            Ok((gone.len(), history.len()))
        },
    )
    .await?;
    output::print_message(
        format,
        &format!("removed {removed} of {total} event(s) that no longer define the current state"),
        json!({ "ok": true, "removed": removed, "events": total }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::StaleLocks;

    fn rule(leader: bool) -> StaleLocks {
        StaleLocks {
            holder_prefix: "operator:apps/events (".into(),
            identity: "op-b".into(),
            leader,
            started_us: 1_000,
        }
    }

    #[test]
    fn a_lock_is_taken_over_only_from_a_provably_gone_instance() {
        let follower = rule(false);
        let leader = rule(true);
        // This pod's own earlier life (container restart): taken over.
        assert!(follower.is_stale("operator:apps/events (op-b)", 999));
        // Another instance without the lease: maybe alive, never taken.
        assert!(!follower.is_stale("operator:apps/events (op-a)", 999));
        // The lease holder takes over what a previous leader left.
        assert!(leader.is_stale("operator:apps/events (op-a)", 999));
        // Taken after this instance started or became the leader: alive.
        assert!(!leader.is_stale("operator:apps/events (op-a)", 1_000));
        assert!(!follower.is_stale("operator:apps/events (op-b)", 1_500));
        // Other sets, the CLI and look-alike names are never taken over.
        assert!(!leader.is_stale("operator:apps/events-2 (op-a)", 1));
        assert!(!leader.is_stale("operator:apps/eventsx (op-a)", 1));
        assert!(!leader.is_stale("alice@laptop (pid 7)", 1));
        assert!(!follower.is_stale("operator:apps/events (op-b) extra", 1));
    }
}
