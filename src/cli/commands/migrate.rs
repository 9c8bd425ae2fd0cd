//! `migrate`, `rollback`, `plan` (online and `--offline`): the engine's one
//! migrate path, with progress on stderr and the outcome on stdout.

use std::io::IsTerminal;
use std::time::Duration;

use chmigrate::config::Settings;
use chmigrate::engine::{self, Outcome, Progress, RunContext, StopFlag, TargetSpec};
use chmigrate::ledger::HostResult;
use chmigrate::ledger::fold::TargetState;
use chmigrate::model::diagnostic::{self, Diagnostic};
use chmigrate::model::version::Version;
use chmigrate::plan::prepare::{PreparedStatement, PreparedStep, prepare};
use chmigrate::plan::{Target, plan};

use crate::cli::error::{self, CliError};
use crate::cli::output::{self, Format};
use crate::cli::{load, loaded_or_fail};

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

/// A stop flag that SIGINT/SIGTERM set: the run stops before its next
/// statement, records where, and releases the lock.
pub fn stop_on_signals() -> StopFlag {
    let stop = StopFlag::default();
    let flag = stop.clone();
    tokio::spawn(async move {
        engine::context::terminated().await;
        eprintln!("stopping after the current statement (the ledger records where)…");
        flag.request();
    });
    stop
}

/// `migrate`, `rollback` and their dry runs (`plan`).
/// Pillar's migrations about to run on a target whose `pillar_migrations`
/// table says Pillar already ran migrations there, while the ledger records
/// none of them: running them again could repeat what Pillar did. Refused,
/// nothing runs, with the command that adopts Pillar's record.
async fn refuse_unadopted_pillar(
    session: &chmigrate::runtime::Session,
    settings: &Settings,
    planned: &engine::Planned,
    format: Format,
) -> Result<(), CliError> {
    use chmigrate::model::migration::SourceFormat;
    let pillar: Vec<&chmigrate::Migration> = planned
        .migrations
        .iter()
        .filter(|m| m.format == SourceFormat::Pillar)
        .collect();
    let to_apply = match &planned.plan {
        Ok((p, _)) => p.steps.iter().any(|s| {
            matches!(s, chmigrate::plan::Step::Apply { version, .. }
                if pillar.iter().any(|m| &m.version == version))
        }),
        Err(_) => false,
    };
    if !to_apply
        || pillar
            .iter()
            .any(|m| planned.state.get(&m.version).is_some())
    {
        return Ok(());
    }
    let db = settings.database.as_str();
    let sql = chmigrate::runtime::queries::table_exists_sql(db, "pillar_migrations");
    let rows: Vec<serde_json::Value> = session
        .conn
        .rows(&sql)
        .await
        .map_err(|e| error::engine(format)(e.into()))?;
    let exists = rows
        .first()
        .and_then(|r| r.as_object()?.values().next().cloned())
        .is_some_and(|n| n != 0 && n != "0");
    if exists {
        return Err(CliError::Invalid(format!(
            "{db}.pillar_migrations exists and chmigrate's ledger records none of the Pillar migrations: run `chmigrate baseline --from-pillar` first, so that what Pillar applied is recorded instead of run again (nothing was executed)"
        )));
    }
    Ok(())
}

pub async fn migrate(
    settings: &Settings,
    spec: TargetSpec,
    dry_run: bool,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let stop = if dry_run {
        StopFlag::default()
    } else {
        stop_on_signals()
    };
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let planned = engine::plan(&session, settings, &migrations, spec)
        .await
        .map_err(&fail)?;
    refuse_unadopted_pillar(&session, settings, &planned, format).await?;
    if dry_run {
        return match &planned.plan {
            Ok((p, steps)) => {
                output::print_online_plan(
                    format,
                    settings,
                    p,
                    steps,
                    &planned.hosts,
                    &planned.migrations,
                );
                Ok(())
            }
            Err(blocked) => Err(error::reported(
                CliError::Blocked(blocked.diagnostics()),
                format,
            )),
        };
    }
    let ctx = RunContext::local(stop);
    let outcome = engine::migrate(&session, settings, &planned, &ctx, &Printer::new())
        .await
        .map_err(|e| error::reported(fail(e), format))?;
    let report = match outcome {
        Outcome::Locked(held) => {
            return Err(fail(engine::EngineError::Locked(held)));
        }
        Outcome::Blocked(b) => {
            return Err(error::reported(CliError::Blocked(b.diagnostics()), format));
        }
        Outcome::NothingToDo(r) | Outcome::Done(r) => {
            output::print_outcome(format, &r);
            return Ok(());
        }
        Outcome::HostsPending(r) | Outcome::HostsFailed(r) => r,
    };
    output::print_outcome(format, &report);
    if !report.failed_hosts.is_empty() {
        return Err(CliError::Failed(anyhow::anyhow!(
            "{} host(s) failed a statement that was pending",
            report.failed_hosts.len()
        )));
    }
    Err(CliError::Pending)
}

/// `plan --offline`: against an empty target, without connecting.
pub fn plan_offline(
    settings: &Settings,
    to: Option<Version>,
    format: Format,
) -> Result<(), CliError> {
    let target = match to {
        None => Target::Latest,
        Some(v) => Target::Version(v),
    };
    let migrations = loaded_or_fail(load(settings), format)?;
    let state = TargetState::default();
    let planned = plan(&migrations, &state, &target, &settings.policy()).map_err(|problems| {
        let mut diags: Vec<Diagnostic> = problems.into_iter().map(Diagnostic::from).collect();
        diagnostic::sort(&mut diags);
        output::print_diagnostics(format, &diags);
        CliError::Reported
    })?;
    let steps =
        prepare(&planned, &migrations, &settings.prepare_settings()).map_err(|mut diags| {
            diagnostic::sort(&mut diags);
            output::print_diagnostics(format, &diags);
            CliError::Reported
        })?;
    output::print_plan(format, settings, &planned, &steps, &migrations);
    Ok(())
}
