//! `chmigrate apply -f PATH`: the operator's reconcile
//! ([`chmigrate::k8s::reconcile`]) for MigrationSet and ClickHouseMigration
//! manifests read from files, against ClickHouse, without Kubernetes.
//! Secrets and ConfigMaps come from the same files. It prints the status
//! the operator would write.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde_json::json;

use chmigrate::engine::{RunContext, StopFlag};
use chmigrate::k8s::crd::MigrationSet;
use chmigrate::k8s::manifest::{self, Manifests};
use chmigrate::k8s::reconcile::{self, Policy, Verdict};

use crate::cli::error::CliError;
use crate::cli::output::{self, Format};

fn yaml_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            yaml_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads and parses every manifest under `paths`.
pub fn read(paths: &[PathBuf]) -> Result<Manifests, CliError> {
    let mut files = Vec::new();
    for p in paths {
        yaml_files(p, &mut files)?;
    }
    files.sort();
    let mut texts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| CliError::Invalid(format!("{}: {e}", f.display())))?;
        texts.push((f.display().to_string(), text));
    }
    manifest::parse(&texts).map_err(|errs| {
        CliError::Invalid(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// `chmigrate apply -f PATH…`
pub async fn apply(paths: &[PathBuf], format: Format, policy: &Policy) -> Result<(), CliError> {
    let all = read(paths)?;
    if all.sets.is_empty() {
        return Err(CliError::Invalid(
            "no MigrationSet in the given manifests".into(),
        ));
    }
    let mut sets: Vec<&MigrationSet> = all.sets.iter().collect();
    sets.sort_by_key(|s| (s.namespace(), s.name_any()));
    let ctx = RunContext::local(StopFlag::default());
    let mut results = Vec::new();
    for set in sets {
        results.push(reconcile::reconcile(set, &all, policy, &ctx).await);
    }
    match format {
        Format::Json => output::print_json_value(&json!(
            results
                .iter()
                .map(|r| json!({ "namespace": r.namespace, "name": r.name, "status": r.status }))
                .collect::<Vec<_>>()
        )),
        _ => {
            for r in &results {
                let ready = r.status.conditions.iter().find(|c| c.type_ == "Ready");
                println!(
                    "MigrationSet {}/{}: Ready={} applied={} latest={} pending={}",
                    r.namespace,
                    r.name,
                    ready.map_or("Unknown", |c| c.status.as_str()),
                    r.status.applied_version.as_deref().unwrap_or("none"),
                    r.status.latest_version.as_deref().unwrap_or("none"),
                    r.status.pending_count
                );
                for c in &r.status.conditions {
                    if c.status == "True" || !c.message.is_empty() {
                        println!("  {}={} ({}) {}", c.type_, c.status, c.reason, c.message);
                    }
                }
                for h in &r.status.hosts {
                    println!(
                        "  host {} pending: {}",
                        h.host,
                        h.pending_statements.join(", ")
                    );
                }
            }
        }
    }
    match results
        .iter()
        .map(|r| r.verdict)
        .find(|v| *v != Verdict::Ok)
    {
        None => Ok(()),
        Some(Verdict::HostsPending) => Err(CliError::Pending),
        Some(Verdict::Locked) => Err(CliError::Locked(
            "a target is locked by another runner".into(),
        )),
        Some(Verdict::Failed) => Err(CliError::Failed(anyhow::anyhow!("a MigrationSet failed"))),
        Some(_) => Err(CliError::Reported),
    }
}
