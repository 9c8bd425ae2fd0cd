//! Output for people (tables) and machines (`--format json`).

use std::path::Path;

use clap::ValueEnum;
use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine::Report;
use chmigrate::model::diagnostic::Diagnostic;
use chmigrate::model::migration::Migration;
use chmigrate::model::version::Version;
use chmigrate::plan::prepare::{OnClusterNote, PreparedStep};
use chmigrate::plan::{Plan, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// `report` only.
    Html,
    /// `report` only.
    Markdown,
}

fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON output: {e}"),
    }
}

/// Problems that stopped a command: stderr for people, stdout as JSON.
pub fn print_diagnostics(format: Format, diags: &[Diagnostic]) {
    match format {
        Format::Table | Format::Html | Format::Markdown => {
            for d in diags {
                eprintln!("{d}");
            }
            let errors = diags.iter().filter(|d| d.is_error()).count();
            eprintln!("{errors} error(s); nothing was executed");
        }
        Format::Json => print_json(&json!({ "ok": false, "diagnostics": diags })),
    }
}

pub fn print_validation(
    format: Format,
    settings: &Settings,
    migrations: usize,
    diags: &[Diagnostic],
) {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    match format {
        Format::Table | Format::Html | Format::Markdown => {
            for d in diags {
                println!("{d}");
            }
            println!(
                "{}: {migrations} migration(s), {errors} error(s), {warnings} warning(s) (environment {})",
                settings.dir.display(),
                settings.environment
            );
        }
        Format::Json => print_json(&json!({
            "ok": errors == 0,
            "dir": settings.dir.display().to_string(),
            "environment": settings.environment,
            "migrations": migrations,
            "errors": errors,
            "warnings": warnings,
            "diagnostics": diags,
        })),
    }
}

pub fn opt_version(v: &Option<Version>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_string(), |v| format!("V{v}"))
}

/// Each step's wave (1-based) when the run is parallel; `None` serially.
fn waves(
    settings: &Settings,
    steps: &[PreparedStep],
    migrations: &[Migration],
) -> Option<Vec<usize>> {
    (settings.parallel > 1).then(|| {
        chmigrate::plan::waves::assign(
            steps,
            migrations,
            settings.parallel,
            settings.database.as_str(),
        )
        .into_iter()
        .map(|w| w + 1)
        .collect()
    })
}

/// The steps as JSON, each with its wave when the run is parallel.
fn steps_json(steps: &[PreparedStep], waves: Option<&[usize]>) -> Vec<serde_json::Value> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            if let Some(w) = waves.and_then(|w| w.get(i)) {
                v["wave"] = json!(w);
            }
            v
        })
        .collect()
}

fn wave_note(waves: Option<&[usize]>, i: usize) -> String {
    waves
        .and_then(|w| w.get(i))
        .map(|w| format!("  (wave {w})"))
        .unwrap_or_default()
}

pub fn print_plan(
    format: Format,
    settings: &Settings,
    plan: &Plan,
    steps: &[PreparedStep],
    migrations: &[Migration],
) {
    let cluster = settings.cluster.as_ref().map(|c| c.as_str().to_string());
    let waves = waves(settings, steps, migrations);
    let waves = waves.as_deref();
    match format {
        Format::Json => print_json(&json!({
            "ok": true,
            "environment": settings.environment,
            "database": settings.database.as_str(),
            "cluster": cluster,
            "on_cluster": settings.on_cluster,
            "applied_version": plan.applied_version,
            "target_version": plan.target_version,
            "parallel": settings.parallel,
            "steps": steps_json(steps, waves),
            "skipped": plan.skipped,
        })),
        Format::Table | Format::Html | Format::Markdown => {
            println!(
                "Plan for environment {}, database {}, {} (offline: against an empty target)",
                settings.environment,
                settings.database.as_str(),
                match &cluster {
                    Some(c) => format!("cluster {c} (ON CLUSTER {})", settings.on_cluster),
                    None => "single node".to_string(),
                }
            );
            println!(
                "Applied: {}  ->  target: {}\n",
                opt_version(&plan.applied_version),
                opt_version(&plan.target_version)
            );
            let mut statements = 0;
            for (i, step) in steps.iter().enumerate() {
                let (verb, resume) = match &step.step {
                    Step::Baseline { version } => {
                        println!("Baseline V{version} (recorded as applied; nothing runs)\n");
                        continue;
                    }
                    Step::Apply { from_statement, .. } => ("Apply", *from_statement),
                    Step::Rollback { from_statement, .. } => ("Roll back", *from_statement),
                };
                let v = step.step.version();
                let file = migrations
                    .iter()
                    .find(|m| &m.version == v)
                    .map(|m| m.location.file.to_string())
                    .unwrap_or_default();
                let short = step
                    .checksum
                    .as_deref()
                    .map_or("", |c| &c[..c.len().min(12)]);
                print!("{verb} V{v}");
                if !step.description.is_empty() {
                    print!("  {}", step.description);
                }
                println!("  [{file}, checksum {short}]{}", wave_note(waves, i));
                if step.derived {
                    println!(
                        "  (rollback derived by chmigrate: the migration has none written; each line names the statement it undoes)"
                    );
                }
                if resume > 0 {
                    println!("  (resuming at statement {})", resume + 1);
                }
                for s in &step.statements {
                    statements += 1;
                    let note = match &s.note {
                        OnClusterNote::Added => "  (ON CLUSTER added)".to_string(),
                        OnClusterNote::Unrecognized(r) => {
                            format!("  (warning: sent without ON CLUSTER: {r})")
                        }
                        _ => String::new(),
                    };
                    println!("  [{}] {}{note}", s.index + 1, s.location);
                    for line in s.sql.lines() {
                        println!("      {line}");
                    }
                }
                println!();
            }
            for s in &plan.skipped {
                println!("Skip V{}: {}", s.version, s.reason);
            }
            let applies = plan
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Apply { .. }))
                .count();
            let rollbacks = plan
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Rollback { .. }))
                .count();
            println!(
                "{applies} migration(s) to apply, {rollbacks} to roll back, {statements} statement(s), {} skipped",
                plan.skipped.len()
            );
        }
    }
}

pub fn print_created(format: Format, path: &Path, version: &Version, template: &str) {
    match format {
        Format::Table | Format::Html | Format::Markdown => println!(
            "created {} (version {version}, template {template})",
            path.display()
        ),
        Format::Json => print_json(&json!({
            "ok": true,
            "path": path.display().to_string(),
            "version": version,
            "template": template,
        })),
    }
}

pub fn print_json_value(value: &serde_json::Value) {
    print_json(value);
}

/// A one-line result for people, a JSON object for machines.
pub fn print_message(format: Format, text: &str, value: serde_json::Value) {
    match format {
        Format::Table | Format::Html | Format::Markdown => println!("{text}"),
        Format::Json => print_json(&value),
    }
}

fn time_us(us: u64) -> String {
    if us == 0 {
        return "-".into();
    }
    chmigrate::clock::format_us(us)
}

pub fn print_online_plan(
    format: Format,
    settings: &Settings,
    plan: &Plan,
    steps: &[PreparedStep],
    hosts: &[chmigrate::runtime::ClusterHost],
    migrations: &[Migration],
) {
    let cluster = settings.cluster.as_ref().map(|c| c.as_str().to_string());
    let waves = waves(settings, steps, migrations);
    let waves = waves.as_deref();
    match format {
        Format::Json => {
            let steps_json: Vec<serde_json::Value> = steps_json(steps, waves)
                .into_iter()
                .zip(steps)
                .map(|(mut v, s)| {
                    if let Some(stmts) = v.get_mut("statements").and_then(|x| x.as_array_mut()) {
                        for (st, p) in stmts.iter_mut().zip(&s.statements) {
                            st["runs_on"] =
                                json!(host_group(&p.note, cluster.as_deref(), hosts.len()));
                        }
                    }
                    v
                })
                .collect();
            print_json(&json!({
                "ok": true,
                "environment": settings.environment,
                "database": settings.database.as_str(),
                "cluster": cluster,
                "hosts": hosts.iter().map(|h| h.id()).collect::<Vec<_>>(),
                "applied_version": plan.applied_version,
                "target_version": plan.target_version,
                "parallel": settings.parallel,
                "steps": steps_json,
                "skipped": plan.skipped,
            }))
        }
        Format::Table | Format::Html | Format::Markdown => {
            println!(
                "Plan for {} (environment {}, database {}{})",
                settings.url,
                settings.environment,
                settings.database.as_str(),
                cluster
                    .as_ref()
                    .map(|c| format!(", cluster {c} with {} host(s)", hosts.len()))
                    .unwrap_or_default()
            );
            println!(
                "Applied: {}  ->  target: {}\n",
                opt_version(&plan.applied_version),
                opt_version(&plan.target_version)
            );
            for (i, step) in steps.iter().enumerate() {
                match &step.step {
                    Step::Baseline { version } => {
                        println!("Baseline V{version}\n");
                        continue;
                    }
                    Step::Apply { from_statement, .. } | Step::Rollback { from_statement, .. } => {
                        let verb = if matches!(step.step, Step::Apply { .. }) {
                            "Apply"
                        } else {
                            "Roll back"
                        };
                        print!("{verb} V{}  {}", step.step.version(), step.description);
                        if *from_statement > 0 {
                            print!("  (resuming at statement {})", from_statement + 1);
                        }
                        println!("{}", wave_note(waves, i));
                        if step.derived {
                            println!(
                                "  (rollback derived by chmigrate: the migration has none written; each line names the statement it undoes)"
                            );
                        }
                    }
                }
                for s in &step.statements {
                    println!(
                        "  [{}] {}  {}",
                        s.index + 1,
                        s.location,
                        host_group(&s.note, cluster.as_deref(), hosts.len())
                    );
                    for line in s.sql.lines() {
                        println!("      {line}");
                    }
                }
                println!();
            }
            for s in &plan.skipped {
                println!("Skip V{}: {}", s.version, s.reason);
            }
            if steps.is_empty() {
                println!("Nothing to do: the target is up to date.");
            }
        }
    }
}

pub fn print_outcome(format: Format, r: &Report) {
    match format {
        Format::Json => print_json(&json!({
            "ok": r.failed_hosts.is_empty(),
            "outcome": {
                "applied": r.applied,
                "rolled_back": r.rolled_back,
                "baselined": r.baselined,
                "statements": r.statements,
                "pending": r.pending,
            },
            "applied_version": r.applied_version,
            "hosts_pending": r.pending,
            "hosts_failed": r.failed_hosts.iter().map(|f| json!({"version": f.task.version, "statement": f.task.statement + 1, "host": f.host, "error": f.error})).collect::<Vec<_>>(),
        })),
        Format::Table | Format::Html | Format::Markdown => {
            println!("{}", outcome_summary(r));
            println!(
                "Applied version: {}",
                r.applied_version
                    .as_ref()
                    .map_or("none".into(), |v| format!("V{v}"))
            );
            for t in &r.pending {
                println!(
                    "Hosts pending for V{} statement {}: {} (they run it when they are back; the next run verifies them)",
                    t.version,
                    t.statement + 1,
                    t.hosts.join(", ")
                );
            }
            for f in &r.failed_hosts {
                println!(
                    "Host {} failed V{} statement {}: {}",
                    f.host,
                    f.task.version,
                    f.task.statement + 1,
                    f.error
                );
            }
        }
    }
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

/// What a run did, in one line.
pub fn outcome_summary(o: &Report) -> String {
    // Hundreds of versions are summarised, not listed.
    let list = |v: &[Version]| match v {
        [first, .., last] if v.len() > 10 => {
            format!("{} migrations, V{first} … V{last}", v.len())
        }
        _ => v
            .iter()
            .map(|v| format!("V{v}"))
            .collect::<Vec<_>>()
            .join(", "),
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

pub fn print_history(format: Format, rows: &[chmigrate::ledger::LedgerEntry]) {
    match format {
        Format::Json => print_json(&json!({ "ok": true, "events": rows })),
        Format::Table | Format::Html | Format::Markdown => {
            println!(
                "SEQ   TIME (UTC)           VERSION          EVENT               DIR   STMT  MS      WHO"
            );
            for r in rows {
                let stmt = if r.statement >= 0 {
                    (r.statement + 1).to_string()
                } else {
                    "-".into()
                };
                println!(
                    "{:<5} {:<20} {:<16} {:<19} {:<5} {:<5} {:<7} {}{}",
                    r.seq,
                    time_us(r.event_time_us),
                    if r.version.is_empty() {
                        "-".to_string()
                    } else {
                        format!("V{}", r.version)
                    },
                    r.event,
                    if r.direction.is_empty() {
                        "-"
                    } else {
                        &r.direction
                    },
                    stmt,
                    r.duration_ms,
                    r.actor,
                    if r.error.is_empty() {
                        audit(r)
                    } else {
                        format!("  error: {}", r.error.lines().next().unwrap_or(""))
                    }
                );
            }
            if rows.is_empty() {
                println!("(no history)");
            }
        }
    }
}

/// A `started` row's header fields (`migration`, `author`, `created`), as
/// `  migration "…" by … created …`; empty for other rows.
fn audit(r: &chmigrate::ledger::LedgerEntry) -> String {
    if r.event != "started" {
        return String::new();
    }
    let p = chmigrate::ledger::events::Provenance::read(&r.details);
    let mut out = String::new();
    if let Some(m) = p.migration {
        out.push_str(&format!("  migration {m:?}"));
    }
    if let Some(a) = p.author {
        out.push_str(&format!("  by {a}"));
    }
    if let Some(c) = p.created {
        out.push_str(&format!("  created {c}"));
    }
    out
}

pub fn print_checks(format: Format, value: &serde_json::Value) {
    match format {
        Format::Json => print_json(value),
        Format::Table | Format::Html | Format::Markdown => {
            for c in value["checks"].as_array().into_iter().flatten() {
                println!(
                    "{} {:<18} {}",
                    if c["ok"].as_bool() == Some(true) {
                        "ok  "
                    } else {
                        "FAIL"
                    },
                    c["name"].as_str().unwrap_or(""),
                    c["detail"].as_str().unwrap_or("")
                );
            }
        }
    }
}
