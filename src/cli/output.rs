//! Output for people (tables) and machines (`--format json`).

use std::path::Path;

use clap::ValueEnum;
use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::diagnostic::Diagnostic;
use chmigrate::migration::Migration;
use chmigrate::plan::{Plan, Step};
use chmigrate::prepare::{OnClusterNote, PreparedStep};
use chmigrate::version::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
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
        Format::Table => {
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
        Format::Table => {
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

fn opt_version(v: &Option<Version>) -> String {
    v.as_ref()
        .map_or_else(|| "none".to_string(), |v| format!("V{v}"))
}

pub fn print_plan(
    format: Format,
    settings: &Settings,
    plan: &Plan,
    steps: &[PreparedStep],
    migrations: &[Migration],
) {
    let cluster = settings.cluster.as_ref().map(|c| c.as_str().to_string());
    match format {
        Format::Json => print_json(&json!({
            "ok": true,
            "environment": settings.environment,
            "database": settings.database.as_str(),
            "cluster": cluster,
            "on_cluster": settings.on_cluster,
            "applied_version": plan.applied_version,
            "target_version": plan.target_version,
            "steps": steps,
            "skipped": plan.skipped,
        })),
        Format::Table => {
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
            for step in steps {
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
                println!("  [{file}, checksum {short}]");
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
        Format::Table => println!(
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
