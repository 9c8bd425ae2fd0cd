//! `chmigrate test`: migrations rehearsed in a throw-away database on the
//! target server, through the same engine and ledger code as `migrate`.
//! Each tested migration is applied after a schema snapshot; with
//! `--rollback` it is rolled back, the schema compared with the snapshot,
//! and applied again. The server's own parser checks every statement.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine::{self, EngineError, Outcome, RunContext, Silent, StopFlag, TargetSpec};
use chmigrate::ledger::fold::TargetState;
use chmigrate::model::diagnostic::{self, Diagnostic};
use chmigrate::model::migration::Migration;
use chmigrate::model::version::Version;
use chmigrate::plan::prepare::prepare_statement;
use chmigrate::plan::sandbox::{self, ObjectSnapshot, Schema};
use chmigrate::plan::{Step, Target, plan};
use chmigrate::runtime::queries::{
    drop_database_sql, schema_columns_sql, schema_objects_sql, show_create_sql,
};
use chmigrate::runtime::store::now_us;
use chmigrate::sql::Ident;

use crate::cli::error::CliError;
use crate::cli::output::{self, Format};
use crate::cli::{load, loaded_or_fail};

/// What happened to one tested migration.
#[derive(Debug, Serialize)]
struct Tested {
    version: String,
    description: String,
    applied: bool,
    /// `identical`, `differs`, `failed`, `none` (no rollback to run, none
    /// derivable: a problem), `forward-only` or `declared-none` (the
    /// author's choice: not a problem), or empty without `--rollback`.
    rollback: String,
    problems: Vec<String>,
}

pub async fn test(
    settings: &Settings,
    only: Option<Version>,
    rollback: bool,
    keep: bool,
    format: Format,
) -> Result<(), CliError> {
    let mut migrations = loaded_or_fail(load(settings), format)?;
    let name = sandbox::sandbox_name(now_us(), std::process::id());
    let mut sb = settings.clone();
    sb.database =
        Ident::new("database name", &name).map_err(|e| CliError::Invalid(e.to_string()))?;
    sb.allow_rollback = true;
    sb.baseline = None;
    sb.out_of_order = false;
    // Nothing in the throw-away database is worth a backup: no freezes,
    // whatever the environment's policy (a freeze-and-drop rollback still
    // drops what it would drop, without freezing it first).
    sb.backup = chmigrate::ledger::backups::BackupPolicy::None;
    for m in &mut migrations {
        if m.strategy == chmigrate::model::strategy::RollbackStrategy::FreezeAndDrop {
            m.strategy = chmigrate::model::strategy::RollbackStrategy::Script;
        }
    }

    // Plan order on an empty target: what `migrate` would apply, in order.
    let order: Vec<Version> = plan(
        &migrations,
        &TargetState::default(),
        &Target::Latest,
        &sb.policy(),
    )
    .map_err(|problems| {
        let mut diags: Vec<Diagnostic> = problems.into_iter().map(Diagnostic::from).collect();
        diagnostic::sort(&mut diags);
        output::print_diagnostics(format, &diags);
        CliError::Reported
    })?
    .steps
    .iter()
    .filter_map(|s| match s {
        Step::Apply { version, .. } => Some(version.clone()),
        _ => None,
    })
    .collect();
    let last = match &only {
        Some(v) if !order.contains(v) => {
            return Err(CliError::Invalid(format!(
                "--migration {v}: no such migration in environment {}",
                settings.environment
            )));
        }
        Some(v) => v.clone(),
        None => match order.last() {
            Some(v) => v.clone(),
            None => {
                output::print_message(
                    format,
                    "no migrations to test",
                    json!({"ok": true, "results": []}),
                );
                return Ok(());
            }
        },
    };
    let by_version: BTreeMap<&Version, &Migration> =
        migrations.iter().map(|m| (&m.version, m)).collect();
    let upto: Vec<&Migration> = order
        .iter()
        .take_while(|v| **v <= last)
        .filter_map(|v| by_version.get(v).copied())
        .collect();

    // Nothing may leave the throw-away database: refuse before creating it.
    let prep = sb.prepare_settings();
    let mut escapes = Vec::new();
    for m in &upto {
        for (i, stmt, loc) in m.all_statements() {
            match prepare_statement(i, stmt, loc, &prep) {
                Ok(p) => {
                    if let Some(why) = sandbox::escapes(&p.sql, &name, settings.database.as_str()) {
                        escapes.push(Diagnostic::error(
                            Some(p.location),
                            format!("V{}: this statement {why}; `test` runs migrations only inside a throw-away database", m.version),
                        ));
                    }
                }
                Err(d) => escapes.push(d),
            }
        }
    }
    if !escapes.is_empty() {
        diagnostic::sort(&mut escapes);
        escapes.dedup();
        output::print_diagnostics(format, &escapes);
        return Err(CliError::Reported);
    }

    let tested: Vec<&Migration> = match &only {
        Some(v) => upto.iter().copied().filter(|m| &m.version == v).collect(),
        None => upto.clone(),
    };
    eprintln!("testing in throw-away database {name}");
    let results = rehearse(&sb, &migrations, &order, &tested, rollback).await;
    if keep {
        eprintln!("kept database {name} (--keep)");
    } else if let Err(e) = drop_sandbox(&sb).await {
        eprintln!("could not drop the throw-away database {name}: {e}");
    }
    let results = results?;
    let failed = results.iter().filter(|r| !r.problems.is_empty()).count();
    match format {
        Format::Json => output::print_json_value(&json!({
            "ok": failed == 0,
            "database": name,
            "rollback": rollback,
            "results": results,
        })),
        _ => {
            for r in &results {
                let status = match (r.applied, r.rollback.as_str()) {
                    (false, _) => "FAILED to apply".to_string(),
                    (true, "") => "applied".to_string(),
                    (true, "identical") => {
                        "applied, rolled back to the identical schema, applied again".into()
                    }
                    (true, "forward-only") => "applied (forward-only: not rolled back)".into(),
                    (true, "declared-none") => {
                        "applied (its author declared no rollback: not rolled back)".into()
                    }
                    (true, other) => format!("applied; rollback {other}"),
                };
                println!("V{} {}: {status}", r.version, r.description);
                for p in &r.problems {
                    println!("  {p}");
                }
            }
            println!("{} migration(s) tested, {failed} failed", results.len());
        }
    }
    if failed > 0 {
        return Err(CliError::Failed(anyhow::anyhow!(
            "{failed} migration(s) failed the test"
        )));
    }
    Ok(())
}

/// Migrates the throw-away database to `spec` through the engine; the
/// reason as text when it does not get there.
async fn run_to(
    session: &chmigrate::runtime::Session,
    sb: &Settings,
    migrations: &[Migration],
    spec: TargetSpec,
    ctx: &RunContext,
) -> Result<(), String> {
    let blocked = |b: engine::Blocked| {
        b.diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let planned = engine::plan(session, sb, migrations, spec)
        .await
        .map_err(|e| CliError::from(e).to_string())?;
    match engine::migrate(session, sb, &planned, ctx, &Silent).await {
        Ok(Outcome::Blocked(b)) | Err(EngineError::Blocked(b)) => Err(blocked(b)),
        Ok(Outcome::Locked(held)) => Err(held.message),
        Ok(_) => Ok(()),
        Err(e) => Err(CliError::from(e).to_string()),
    }
}

/// The version before `v` in plan order (`0`: none).
fn before(order: &[Version], v: &Version) -> Version {
    order
        .iter()
        .take_while(|x| *x < v)
        .last()
        .cloned()
        .unwrap_or_else(Version::zero)
}

async fn rehearse(
    sb: &Settings,
    migrations: &[Migration],
    order: &[Version],
    tested: &[&Migration],
    rollback: bool,
) -> Result<Vec<Tested>, CliError> {
    let session = engine::connect(sb).await?;
    let ctx = RunContext::local(StopFlag::default());
    let go = |spec: TargetSpec| {
        let (session, ctx) = (&session, &ctx);
        async move { run_to(session, sb, migrations, spec, ctx).await }
    };
    let mut out = Vec::new();
    for m in tested {
        let mut r = Tested {
            version: m.version.to_string(),
            description: m.description.clone(),
            applied: false,
            rollback: String::new(),
            problems: Vec::new(),
        };
        let prev = before(order, &m.version);
        if let Err(e) = go(TargetSpec::Version(prev.clone())).await {
            r.problems
                .push(format!("applying what comes before it failed: {e}"));
            out.push(r);
            break;
        }
        let snap_before = snapshot(&session, sb).await?;
        if let Err(e) = go(TargetSpec::Version(m.version.clone())).await {
            r.problems.push(e);
            out.push(r);
            break;
        }
        r.applied = true;
        if rollback {
            if m.strategy == chmigrate::model::strategy::RollbackStrategy::ForwardOnly {
                // Chosen on purpose: the way back is a new migration.
                r.rollback = "forward-only".into();
            } else if m.down.is_none() && m.rollback_declared_none {
                r.rollback = "declared-none".into();
            } else if m.down.is_none() {
                r.rollback = "none".into();
                r.problems.push(format!(
                    "no rollback to test: {}",
                    m.irreversible.as_deref().unwrap_or("none written")
                ));
            } else if let Err(e) = go(TargetSpec::Version(prev)).await {
                r.rollback = "failed".into();
                r.problems.push(format!("rollback failed: {e}"));
            } else {
                let d = sandbox::diff(&snap_before, &snapshot(&session, sb).await?);
                if d.is_empty() {
                    r.rollback = "identical".into();
                    if let Err(e) = go(TargetSpec::Version(m.version.clone())).await {
                        r.problems
                            .push(format!("applying it again after the rollback failed: {e}"));
                    }
                } else {
                    r.rollback = "differs".into();
                    r.problems
                        .push("the rollback does not restore the schema it started from:".into());
                    r.problems.extend(d.into_iter().map(|l| format!("  {l}")));
                }
            }
        }
        let stop = !r.problems.is_empty();
        out.push(r);
        if stop {
            break;
        }
    }
    Ok(out)
}

async fn snapshot(
    session: &chmigrate::runtime::Session,
    sb: &Settings,
) -> Result<Schema, CliError> {
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    #[derive(Deserialize)]
    struct Column {
        table: String,
        name: String,
        r#type: String,
    }
    #[derive(Deserialize)]
    struct Create {
        statement: String,
    }
    let fail = |e: chmigrate::runtime::ChError| CliError::from(EngineError::from(e));
    let db = &sb.database;
    let names: Vec<Name> = session
        .conn
        .rows(&schema_objects_sql(db.as_str(), sb.history_table.as_str()))
        .await
        .map_err(fail)?;
    let columns: Vec<Column> = session
        .conn
        .rows(&schema_columns_sql(db.as_str()))
        .await
        .map_err(fail)?;
    let mut schema = Schema::new();
    for n in names {
        let create: Vec<Create> = session
            .conn
            .rows(&show_create_sql(db, &n.name))
            .await
            .map_err(fail)?;
        let cols = columns
            .iter()
            .filter(|c| c.table == n.name)
            .map(|c| (c.name.clone(), c.r#type.clone()))
            .collect();
        schema.insert(
            n.name,
            ObjectSnapshot {
                create: create
                    .into_iter()
                    .next()
                    .map(|c| c.statement)
                    .unwrap_or_default(),
                columns: cols,
            },
        );
    }
    Ok(schema)
}

async fn drop_sandbox(sb: &Settings) -> Result<(), CliError> {
    let session = engine::connect(sb).await?;
    let sql = drop_database_sql(&sb.database, sb.cluster.as_ref());
    session
        .conn
        .execute_with(&sql, &session.ddl_settings())
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!(e)))
}
