//! Running prepared steps: a statement whose effect could not be told
//! afterwards has its completion in the ledger before the next statement
//! starts; the records of statements whose effect can be observed (or that
//! are safe to repeat) are grouped (see `runtime::store::Writer` and
//! [`super::settle`]); `ON CLUSTER` answers are checked host by host;
//! mutations are awaited.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::ledger::backups::BackupPolicy;
use crate::ledger::fold::Direction;
use crate::ledger::pending::{PendingDetails, PendingTask};
use crate::ledger::{HostResult, Record};
use crate::model::migration::{Location, Migration};
use crate::model::version::Version;
use crate::plan::Step;
use crate::plan::prepare::{OnClusterNote, PreparedStatement, PreparedStep};
use crate::runtime::Session;
use crate::runtime::ddl::{self, TimedOutTask};
use crate::runtime::error::{ChError, codes};
use crate::runtime::queries;
use crate::runtime::store::{LedgerError, Writer, now_us};
use crate::sql::effect::{Effect, effect};
use crate::sql::ident::split_qualified;
use crate::sql::inverse::creates_if_not_exists;
use crate::sql::statement::{ObjectKind, StatementKind, analyze};

/// Crash points for the kill-point tests: with `CHMIGRATE_CRASH_AT` set to
/// `before:N` or `after:N`, the process aborts (no cleanup, nothing staged
/// is written: what a SIGKILL leaves) right before the run's N-th statement
/// (1-based, counted over the whole run) is sent, or right after it
/// returned and before anything about it is recorded. Unset, nothing
/// happens.
pub mod crash_point {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Moment {
        Before,
        After,
    }

    static SENT: AtomicUsize = AtomicUsize::new(0);

    /// Parses `before:N` / `after:N`.
    pub fn parse(text: &str) -> Option<(Moment, usize)> {
        let (moment, n) = text.split_once(':')?;
        let moment = match moment {
            "before" => Moment::Before,
            "after" => Moment::After,
            _ => return None,
        };
        Some((moment, n.parse().ok()?))
    }

    fn configured() -> Option<(Moment, usize)> {
        static AT: OnceLock<Option<(Moment, usize)>> = OnceLock::new();
        *AT.get_or_init(|| parse(&std::env::var("CHMIGRATE_CRASH_AT").ok()?))
    }

    /// Counts one more statement of this process; returns its number.
    pub fn next_statement() -> usize {
        SENT.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn maybe_crash(moment: Moment, statement: usize) {
        if configured() == Some((moment, statement)) {
            eprintln!("CHMIGRATE_CRASH_AT: aborting {moment:?} statement {statement}");
            std::process::abort();
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn crash_points_parse() {
            assert_eq!(parse("before:3"), Some((Moment::Before, 3)));
            assert_eq!(parse("after:12"), Some((Moment::After, 12)));
            assert_eq!(parse("during:1"), None);
            assert_eq!(parse("after:x"), None);
            assert_eq!(parse(""), None);
        }
    }
}

/// Progress reports for people (the CLI prints them; the operator logs them).
pub trait Progress: Send + Sync {
    fn step_started(&self, _step: &PreparedStep, _total_statements: usize) {}
    fn statement_started(&self, _step: &PreparedStep, _stmt: &PreparedStatement, _total: usize) {}
    fn statement_done(
        &self,
        _step: &PreparedStep,
        _stmt: &PreparedStatement,
        _hosts: &[HostResult],
        _pending: &[String],
        _elapsed: Duration,
    ) {
    }
    fn step_done(&self, _step: &PreparedStep, _elapsed: Duration) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// What a run did, also when it stopped part-way.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Ran {
    pub applied: Vec<Version>,
    pub rolled_back: Vec<Version>,
    pub baselined: Vec<Version>,
    pub statements: usize,
    /// Statements some hosts had not finished when they returned.
    pub pending: Vec<PendingTask>,
}

/// A run that stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("stopped on request before {migration} statement {number}; the next run resumes there")]
    Interrupted { migration: String, number: usize },
    #[error(
        "stopped before {migration} statement {number}: the lock's lease could not be renewed (the server or ZooKeeper did not answer), so the lock may no longer be this run's; the next run resumes there"
    )]
    LockLost { migration: String, number: usize },
    #[error(
        "stopped before {migration} statement {number}: another runner took the lock over (this run had stopped acting, e.g. a leader that lost its Lease); nothing more was written, its new holder carries on"
    )]
    LockTakenOver { migration: String, number: usize },
    #[error("{migration} statement {number} ({location}){}: {message}", host.as_ref().map(|h| format!(" failed on host {h}")).unwrap_or_default())]
    Statement {
        migration: String,
        version: crate::model::version::Version,
        location: Location,
        /// 1-based.
        number: usize,
        host: Option<String>,
        message: String,
    },
}

/// The result of one statement.
struct StatementResult {
    hosts: Vec<HostResult>,
    pending: Option<(TimedOutTask, Vec<String>)>,
}

#[derive(Deserialize)]
struct ZkNode {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

/// Hosts named in a DDL task node's value (`hosts: ['127%2E0%2E0%2E11:9001',…]`).
fn task_hosts(value: &str) -> Vec<String> {
    value
        .lines()
        .find_map(|l| l.strip_prefix("hosts: "))
        .map(|list| {
            list.trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|h| ddl::unescape_host_id(h.trim().trim_matches(|c| c == '\'' || c == '\\')))
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Which hosts of a task finished, and how: `(host, Ok | Err(error))`.
pub async fn task_progress(
    session: &Session,
    task: &str,
) -> Result<(Vec<String>, Vec<(String, Result<(), String>)>), ChError> {
    let parent = task.rsplit_once('/').map_or("", |(p, _)| p);
    let name = task.rsplit_once('/').map_or(task, |(_, n)| n);
    let entries: Vec<ZkNode> = session
        .conn
        .rows(&queries::zookeeper_children_sql(parent))
        .await?;
    let all = entries
        .iter()
        .find(|e| e.name == name)
        .map(|e| task_hosts(&e.value))
        .unwrap_or_default();
    let finished: Vec<ZkNode> = match session
        .conn
        .rows(&queries::zookeeper_children_sql(&format!(
            "{task}/finished"
        )))
        .await
    {
        Ok(f) => f,
        Err(e) if e.code() == Some(codes::KEEPER_EXCEPTION) => Vec::new(),
        Err(e) => return Err(e),
    };
    let done = finished
        .into_iter()
        .map(|n| {
            (
                ddl::unescape_host_id(&n.name),
                ddl::finished_status(&n.value),
            )
        })
        .collect();
    Ok((all, done))
}

/// The `query_id` a statement is sent with (unique per run): what `profile`
/// finds the statement by in the server's `system.query_log`.
pub fn query_id(run_id: &str, version: &Version, direction: &str, index: usize) -> String {
    let v: String = version
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("chmigrate-{run_id}-V{v}-{direction}-{}", index + 1)
}

/// Why a statement failed: the host that said so, its message, and whether
/// it may have taken effect somewhere (other hosts ran it, a mutation was
/// submitted).
struct Failure {
    host: Option<String>,
    message: String,
    partial: bool,
}

fn failure(host: Option<String>, message: String, partial: bool) -> Failure {
    Failure {
        host,
        message,
        partial,
    }
}

async fn run_statement(
    session: &Session,
    ps: &PreparedStatement,
    query_id: &str,
) -> Result<StatementResult, Failure> {
    let on_cluster = matches!(
        ps.note,
        OnClusterNote::Added | OnClusterNote::AlreadyPresent
    );
    let mut result = StatementResult {
        hosts: Vec::new(),
        pending: None,
    };
    let id = [("query_id", query_id.to_string())];
    if on_cluster {
        let mut settings = session.ddl_settings();
        settings.extend(id.iter().cloned());
        match session.statements.text(&ps.sql, &settings).await {
            Ok(text) => {
                let hosts = ddl::parse_host_rows(&text).map_err(|e| failure(None, e, true))?;
                if let Some(bad) = hosts.iter().find(|h| h.status != 0) {
                    return Err(failure(
                        Some(ddl::host_id(&bad.host, bad.port)),
                        bad.error.clone(),
                        hosts.iter().any(|h| h.status == 0),
                    ));
                }
                result.hosts = hosts;
            }
            Err(e) if e.code() == Some(codes::TIMEOUT_EXCEEDED) => {
                let msg = e.server_message().unwrap_or_default().to_string();
                let Some(task) = ddl::parse_timeout(&msg) else {
                    return Err(failure(None, e.to_string(), true));
                };
                let (all, done) = task_progress(session, &task.task_path)
                    .await
                    .map_err(|e| failure(None, e.to_string(), true))?;
                if let Some((host, Err(err))) = done.iter().find(|(_, r)| r.is_err()) {
                    return Err(failure(
                        Some(host.clone()),
                        err.clone(),
                        done.iter().any(|(_, r)| r.is_ok()),
                    ));
                }
                let finished: Vec<&String> = done.iter().map(|(h, _)| h).collect();
                let pending: Vec<String> =
                    all.into_iter().filter(|h| !finished.contains(&h)).collect();
                result.hosts = done
                    .iter()
                    .map(|(h, _)| {
                        let (host, port) = h.rsplit_once(':').unwrap_or((h, "0"));
                        HostResult {
                            host: host.to_string(),
                            port: port.parse().unwrap_or(0),
                            status: 0,
                            error: String::new(),
                        }
                    })
                    .collect();
                result.pending = Some((task, pending));
            }
            Err(e) => {
                let msg = e.server_message().unwrap_or_default();
                // A host's error: the others may have run it. The entry
                // node's own refusal: nothing ran.
                return Err(match ddl::parse_host_error(msg) {
                    Some((host, inner)) => failure(Some(host), inner, true),
                    None => failure(None, e.to_string(), false),
                });
            }
        }
    } else {
        session
            .statements
            .execute_with(&ps.sql, &id)
            .await
            .map_err(|e| failure(None, e.to_string(), false))?;
    }
    if ps.kind == StatementKind::Mutation {
        // Submitted: it runs on the server whatever the wait says.
        wait_for_mutations(session, &ps.sql)
            .await
            .map_err(|e| failure(None, e, true))?;
    }
    Ok(result)
}

/// Whether the object `sql` creates exists already (on the entry node);
/// `None` when that cannot be told.
/// On a cluster it asks one replica of every shard too (`cluster()`); the
/// object counts as existing when any host has it. Functions and other
/// objects outside `system.tables` are not told.
async fn object_exists(session: &Session, sql: &str) -> Option<bool> {
    let info = analyze(sql).ok()?;
    let name = info.object_name?;
    let (db, object) = split_qualified(&name);
    let db = db.unwrap_or_else(|| session.cfg.ledger.database.as_str().to_string());
    let database = matches!(
        info.kind,
        StatementKind::Ddl {
            object: ObjectKind::Database,
            ..
        }
    );
    let mut queries_to_ask = match info.kind {
        StatementKind::Ddl {
            object: ObjectKind::Function,
            ..
        } => return None,
        StatementKind::Ddl { .. } if database => vec![queries::database_exists_sql(&object)],
        StatementKind::Ddl { .. } => vec![queries::table_exists_sql(&db, &object)],
        _ => return None,
    };
    if let Some(cluster) = &session.cfg.ledger.cluster {
        queries_to_ask.push(queries::exists_on_cluster_sql(
            cluster.as_str(),
            database.then_some(object.as_str()),
            (!database).then_some((db.as_str(), object.as_str())),
        ));
    }
    for q in queries_to_ask {
        let rows: Vec<Count> = session.conn.rows(&q).await.ok()?;
        if rows.first()?.n > 0 {
            return Some(true);
        }
    }
    Some(false)
}

/// Polls until no mutation of the statement's table is left unfinished (on
/// one replica of every shard when a cluster is configured: 18.16 has no
/// `mutations_sync`).
async fn wait_for_mutations(session: &Session, sql: &str) -> Result<(), String> {
    let info = analyze(sql).map_err(|e| e.to_string())?;
    let Some(name) = info.object_name else {
        return Ok(());
    };
    let (db, table) = split_qualified(&name);
    let db = db.unwrap_or_else(|| session.cfg.ledger.database.as_str().to_string());
    wait_for_table_mutations(session, &db, &table).await
}

/// Polls until no mutation of `db.table` is left unfinished (one replica of
/// every shard on a cluster), within the session's mutation timeout.
pub async fn wait_for_table_mutations(
    session: &Session,
    db: &str,
    table: &str,
) -> Result<(), String> {
    let q = queries::mutations_pending_sql(
        session.cfg.ledger.cluster.as_ref().map(|c| c.as_str()),
        db,
        table,
    );
    let deadline = Instant::now() + session.cfg.mutation_timeout;
    loop {
        let rows: Vec<Count> = session.conn.rows(&q).await.map_err(|e| e.to_string())?;
        if rows.first().is_none_or(|r| r.n == 0) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "mutation on {db}.{table} not finished after {:?} (it keeps running on the server; check system.mutations)",
                session.cfg.mutation_timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `backup: freeze`: freezes what `ps` would lose, on every host, and
/// records each backup before the statement runs. A failed backup fails the
/// statement before it runs (the next run retries both).
async fn backup_before(
    session: &Session,
    writer: &mut Writer,
    version: &Version,
    direction: Direction,
    ps: &PreparedStatement,
) -> Result<Result<(), Failure>, RunError> {
    let name = crate::ledger::backups::backup_name(&version.to_string(), now_us(), ps.index + 1);
    let frozen = crate::runtime::backup::freeze_before(session, &ps.sql, &name, ps.index).await;
    // Everything taken is recorded, also when a later freeze failed.
    for b in frozen.taken {
        writer
            .write(Record::Backup {
                version: version.clone(),
                direction,
                index: ps.index,
                details: b,
            })
            .await?;
    }
    match frozen.failed {
        None => Ok(Ok(())),
        Some(e) => {
            let host = match &e {
                crate::runtime::backup::BackupError::Freeze { host, .. }
                | crate::runtime::backup::BackupError::Connect { host, .. } => Some(host.clone()),
                crate::runtime::backup::BackupError::Unreadable(_) => None,
            };
            Ok(Err(failure(
                host,
                format!("the backup before the statement failed, so it did not run: {e}"),
                false,
            )))
        }
    }
}

/// Runs `steps` (prepared from a plan over `migrations`), recording each
/// event. Returns what ran, and why the run stopped early if it did.
pub async fn execute(
    session: &Session,
    writer: &mut Writer,
    steps: &[PreparedStep],
    migrations: &[Migration],
    progress: &dyn Progress,
    stop: &AtomicBool,
    in_doubt: &BTreeSet<(Version, usize)>,
) -> (Ran, Result<(), RunError>) {
    let mut out = Ran::default();
    let result = execute_steps(
        session, writer, steps, migrations, progress, stop, in_doubt, &mut out,
    )
    .await;
    // Whatever happened, what was staged reaches the ledger.
    let flushed = writer.flush().await;
    let result = result.and(flushed.map_err(RunError::from));
    (out, result)
}

/// What one step did.
#[derive(Default)]
struct StepDone {
    statements: usize,
    pending: Vec<PendingTask>,
    finished: bool,
}

/// Runs the steps wave by wave ([`crate::plan::waves`]): the steps of one wave
/// at once, each recording its own events through the one writer (which
/// keeps `seq` strictly increasing). A failure in a wave stops the other
/// members before their next statement (recorded as `stopped`, resumed by
/// the next run); the failure is what the run reports.
#[allow(clippy::too_many_arguments)]
async fn execute_steps(
    session: &Session,
    writer: &mut Writer,
    steps: &[PreparedStep],
    migrations: &[Migration],
    progress: &dyn Progress,
    stop: &AtomicBool,
    in_doubt: &BTreeSet<(Version, usize)>,
    out: &mut Ran,
) -> Result<(), RunError> {
    let waves = crate::plan::waves::assign(
        steps,
        migrations,
        session.cfg.parallel,
        session.cfg.ledger.database.as_str(),
    );
    let writer = tokio::sync::Mutex::new(writer);
    let mut start = 0;
    while start < steps.len() {
        let end = (start..steps.len())
            .find(|&k| waves[k] != waves[start])
            .unwrap_or(steps.len());
        let wave = &steps[start..end];
        if wave.len() > 1 {
            tracing::info!(
                wave = waves[start] + 1,
                migrations = %wave.iter().map(|s| format!("V{}", s.step.version())).collect::<Vec<_>>().join(", "),
                "running a wave in parallel"
            );
        }
        let abort = AtomicBool::new(false);
        let results = futures::future::join_all(wave.iter().map(|step| async {
            let r = run_step(
                session,
                &writer,
                step,
                migrations,
                progress,
                stop,
                &abort,
                wave.len() > 1,
                in_doubt,
            )
            .await;
            // Any failure of a member (a statement, the ledger, a backup)
            // stops the others before their next statement.
            if r.is_err() {
                abort.store(true, Ordering::SeqCst);
            }
            r
        }))
        .await;
        let mut first_err = None;
        for (step, r) in wave.iter().zip(results) {
            match r {
                Ok(done) => {
                    out.statements += done.statements;
                    out.pending.extend(done.pending);
                    if done.finished {
                        let v = step.step.version().clone();
                        match step.step {
                            Step::Baseline { .. } => out.baselined.push(v),
                            Step::Apply { .. } => out.applied.push(v),
                            Step::Rollback { .. } => out.rolled_back.push(v),
                        }
                    }
                }
                // A member stopped because another failed: the failure is
                // the news.
                Err(RunError::Interrupted { .. })
                    if abort.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        start = end;
    }
    Ok(())
}

/// The `started` record of a run of `m` in `direction`.
pub(super) fn started_record(
    m: &Migration,
    step: &PreparedStep,
    direction: Direction,
    in_wave: bool,
) -> Record {
    let total = match direction {
        Direction::Up => m.up.len(),
        Direction::Down => m.down.as_ref().map_or(0, Vec::len),
    };
    Record::Started {
        version: m.version.clone(),
        direction,
        checksum: m.checksum.clone(),
        description: m.description.clone(),
        statements: total,
        source: m.location.file.to_string(),
        // What a derived rollback runs is in no file: keep it on the
        // record.
        derived_sql: (direction == Direction::Down && m.down_derived)
            .then(|| step.statements.iter().map(|s| s.sql.clone()).collect()),
        // A forward-only migration has no way back to keep; a rollback
        // derived from `IF NOT EXISTS` creations depends on what this
        // very run creates, so it is not known yet and not kept.
        rollback_sql: (direction == Direction::Up
            && m.strategy != crate::model::migration::RollbackStrategy::ForwardOnly
            && !(m.down_derived
                && m.up
                    .iter()
                    .any(|st| st.sql.to_ascii_uppercase().contains("IF NOT EXISTS"))))
        .then(|| {
            m.down
                .as_ref()
                .map(|d| d.iter().map(|s| s.sql.clone()).collect())
        })
        .flatten(),
        parallel: in_wave,
        provenance: crate::ledger::events::Provenance::of(m),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_step(
    session: &Session,
    writer: &tokio::sync::Mutex<&mut Writer>,
    step: &PreparedStep,
    migrations: &[Migration],
    progress: &dyn Progress,
    stop: &AtomicBool,
    abort: &AtomicBool,
    in_wave: bool,
    in_doubt: &BTreeSet<(Version, usize)>,
) -> Result<StepDone, RunError> {
    let mut done = StepDone::default();
    let (version, from, direction) = match &step.step {
        Step::Baseline { version } => {
            writer
                .lock()
                .await
                .write(Record::Baselined {
                    version: version.clone(),
                })
                .await?;
            done.finished = true;
            return Ok(done);
        }
        Step::Apply {
            version,
            from_statement,
        } => (version, *from_statement, Direction::Up),
        Step::Rollback {
            version,
            from_statement,
        } => (version, *from_statement, Direction::Down),
    };
    let Some(m) = migrations.iter().find(|m| &m.version == version) else {
        return Ok(done);
    };
    let dir = match direction {
        Direction::Up => "up",
        Direction::Down => "down",
    };
    let total = match direction {
        Direction::Up => m.up.len(),
        Direction::Down => m.down.as_ref().map_or(0, Vec::len),
    };
    let started = Instant::now();
    progress.step_started(step, total);
    if from == 0 {
        writer
            .lock()
            .await
            .stage(started_record(m, step, direction, in_wave));
    }
    for ps in &step.statements {
        // Everything staged so far is durable before a statement whose
        // effect could not be told afterwards; before one whose effect can
        // be observed or that is safe to repeat, records may wait (a
        // parallel wave and a rollback record every statement first).
        let effect = if direction == Direction::Up && !in_wave {
            effect(&ps.sql, session.cfg.ledger.database.as_str())
        } else {
            Effect::Opaque
        };
        writer.lock().await.before_statement(&effect).await?;
        let lock_lost = writer.lock().await.lock_lost();
        if stop.load(Ordering::SeqCst) || abort.load(Ordering::SeqCst) || lock_lost {
            writer
                .lock()
                .await
                .write(Record::Stopped {
                    version: version.clone(),
                    direction,
                    index: ps.index,
                })
                .await?;
            let fenced = writer.lock().await.fenced();
            return Err(if fenced {
                RunError::LockTakenOver {
                    migration: m.label(),
                    number: ps.index + 1,
                }
            } else if lock_lost {
                RunError::LockLost {
                    migration: m.label(),
                    number: ps.index + 1,
                }
            } else {
                RunError::Interrupted {
                    migration: m.label(),
                    number: ps.index + 1,
                }
            });
        }
        progress.statement_started(step, ps, total);
        let t0 = Instant::now();
        let backed_up = if session.cfg.backup == BackupPolicy::Freeze || step.freeze {
            let mut w = writer.lock().await;
            backup_before(session, &mut w, version, direction, ps).await?
        } else {
            Ok(())
        };
        let qid = query_id(&writer.lock().await.template.run_id, version, dir, ps.index);
        // Whether an `IF NOT EXISTS` creation creates its object or finds it
        // there, for the rollback derived from it later.
        // A statement an earlier run left in flight may have created its
        // object already: nothing is recorded for it.
        let created = if direction == Direction::Up
            && creates_if_not_exists(&ps.sql)
            && !in_doubt.contains(&(version.clone(), ps.index))
        {
            object_exists(session, &ps.sql).await.map(|e| !e)
        } else {
            None
        };
        let sent = crash_point::next_statement();
        crash_point::maybe_crash(crash_point::Moment::Before, sent);
        let result = match backed_up {
            Ok(()) => run_statement(session, ps, &qid).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                crash_point::maybe_crash(crash_point::Moment::After, sent);
                let elapsed = t0.elapsed();
                let pending_hosts = r
                    .pending
                    .as_ref()
                    .map(|(_, h)| h.clone())
                    .unwrap_or_default();
                let mut w = writer.lock().await;
                w.stage(Record::StatementDone {
                    version: version.clone(),
                    direction,
                    index: ps.index,
                    checksum: m.checksum.clone(),
                    duration_ms: elapsed.as_millis() as u64,
                    hosts: r.hosts.clone(),
                    query_id: qid.clone(),
                    created,
                });
                if let Some((task, hosts)) = r.pending {
                    let details = PendingDetails {
                        task: task.task_path.clone(),
                        hosts: hosts.clone(),
                    };
                    w.stage(Record::HostsPending {
                        version: version.to_string(),
                        direction: dir.into(),
                        statement: ps.index as i64,
                        details,
                    });
                    done.pending.push(PendingTask {
                        version: version.to_string(),
                        direction: dir.into(),
                        statement: ps.index as i64,
                        task: task.task_path,
                        hosts,
                    });
                    // Which hosts still owe the statement is known only
                    // now, not from the schema later: on the record at once.
                    w.flush().await?;
                }
                drop(w);
                done.statements += 1;
                progress.statement_done(step, ps, &r.hosts, &pending_hosts, elapsed);
            }
            Err(Failure {
                host,
                message,
                partial,
            }) => {
                abort.store(true, Ordering::SeqCst);
                let elapsed = t0.elapsed();
                writer
                    .lock()
                    .await
                    .write(Record::Failed {
                        version: version.clone(),
                        direction,
                        index: ps.index,
                        checksum: m.checksum.clone(),
                        duration_ms: elapsed.as_millis() as u64,
                        error: match &host {
                            Some(h) => format!("on {h}: {message}"),
                            None => message.clone(),
                        },
                        partial,
                    })
                    .await?;
                return Err(RunError::Statement {
                    migration: m.label(),
                    version: m.version.clone(),
                    location: ps.location.clone(),
                    number: ps.index + 1,
                    host,
                    message,
                });
            }
        }
    }
    let elapsed = started.elapsed();
    writer.lock().await.stage(Record::Completed {
        version: version.clone(),
        direction,
        checksum: m.checksum.clone(),
        description: m.description.clone(),
        duration_ms: elapsed.as_millis() as u64,
    });
    progress.step_done(step, elapsed);
    done.finished = true;
    Ok(done)
}

/// Checks the hosts of earlier pending tasks; records `hosts_verified` for
/// tasks every host has now finished. Returns the tasks still pending and
/// the hosts that finished with an error.
pub async fn verify_pending(
    session: &Session,
    writer: Option<&mut Writer>,
    open: Vec<PendingTask>,
) -> Result<(Vec<PendingTask>, Vec<(PendingTask, String, String)>), RunError> {
    let mut still = Vec::new();
    let mut failed = Vec::new();
    let mut verified = Vec::new();
    for t in open {
        let (_, done) = task_progress(session, &t.task)
            .await
            .map_err(LedgerError::from)?;
        let mut remaining = Vec::new();
        for h in &t.hosts {
            match done.iter().find(|(d, _)| d == h) {
                Some((_, Ok(()))) => {}
                Some((_, Err(err))) => failed.push((t.clone(), h.clone(), err.clone())),
                None => remaining.push(h.clone()),
            }
        }
        if remaining.is_empty() && !failed.iter().any(|(f, _, _)| f.task == t.task) {
            verified.push(t);
        } else {
            still.push(PendingTask {
                hosts: remaining,
                ..t
            });
        }
    }
    if let Some(w) = writer {
        for t in verified {
            let details = PendingDetails {
                task: t.task.clone(),
                hosts: t.hosts.clone(),
            };
            w.write(Record::HostsVerified {
                version: t.version.clone(),
                direction: t.direction.clone(),
                statement: t.statement,
                details,
            })
            .await?;
        }
    }
    Ok((still, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_task_hosts() {
        let v = "version: 1\nquery: CREATE TABLE x\nhosts: ['127%2E0%2E0%2E11:9001','127%2E0%2E0%2E12:9002']\ninitiator: vm:9001\n";
        assert_eq!(
            task_hosts(v),
            vec!["127.0.0.11:9001".to_string(), "127.0.0.12:9002".to_string()]
        );
        assert!(task_hosts("nothing").is_empty());
    }
}
