//! `chmigrate apply -f PATH`: the operator's reconcile for MigrationSet and
//! ClickHouseMigration manifests read from files, against ClickHouse,
//! without Kubernetes. Secrets and ConfigMaps come from the same files.
//! It runs the engine's one migrate path and prints the status the
//! operator would write.

use std::path::{Path, PathBuf};

use kube::ResourceExt;
use serde_json::json;

use chmigrate::config::{ConnectionSection, MigrationsSection, Overrides, Secret, Settings};
use chmigrate::crd::{self, MigrationSet, MigrationSetStatus, PlannedStep};
use chmigrate::manifest::{self, Manifests};
use chmigrate::migration_status::SetFacts;
use chmigrate::runtime::run::RunError;
use chmigrate::set_status::{self, Health};
use chmigrate::version::Version;

use super::online::{self, MigrateReport, TargetSpec};
use super::output::Format;
use super::{CliError, exit};

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

/// Engine settings for a set, resolving its Secret references.
fn settings_for(set: &MigrationSet, all: &Manifests, policy: &Policy) -> Result<Settings, String> {
    let ns = set.namespace().unwrap_or_else(|| "default".into());
    let spec = &set.spec;
    let environment = match (&spec.environment, &policy.environment) {
        (Some(mine), Some(op)) if mine != op => {
            return Err(format!(
                "spec.environment is {mine:?} but this operator runs {op:?}; \
                 a set can only run in the environment its operator serves"
            ));
        }
        (Some(e), _) | (None, Some(e)) => e.clone(),
        (None, None) => "development".into(),
    };
    let creds = &spec.connection.credentials;
    let password = match (&creds.password_secret_ref, creds.passwordless) {
        (Some(r), _) => Some(Secret::new(manifest::secret_value(all, &ns, r)?)),
        (None, Some(true)) => None,
        (None, _) => return Err("credentials need passwordSecretRef or passwordless: true".into()),
    };
    let tls = spec.connection.tls.clone().unwrap_or_default();
    let ca_file = match &tls.ca_secret_ref {
        Some(r) => {
            let pem = manifest::secret_value(all, &ns, r)?;
            let path = std::env::temp_dir().join(format!(
                "chmigrate-ca-{}-{}.pem",
                std::process::id(),
                set.name_any()
            ));
            std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    let overrides = Overrides {
        environment: Some(environment),
        connection: ConnectionSection {
            url: Some(spec.connection.url.clone()),
            user: Some(creds.user.clone()),
            password,
            database: Some(spec.connection.database.clone()),
            cluster: spec.connection.cluster.clone(),
            ca_file,
            tls_verify: Some(!tls.insecure_skip_verify),
            ddl_timeout: spec.policy.ddl_timeout_seconds.map(u64::from),
            ..Default::default()
        },
        migrations: MigrationsSection {
            history_table: spec.history_table.clone(),
            on_cluster: Some(spec.policy.on_cluster),
            // The operator's (here: the command line's) prohibition wins.
            allow_rollback: Some(spec.policy.allow_rollback && !policy.forbid_rollback),
            out_of_order: Some(spec.policy.out_of_order),
            variables: Some(spec.variables.clone()),
            rollback_strategy: spec
                .policy
                .rollback_strategy
                .or(policy.default_rollback_strategy),
            parallel: spec
                .policy
                .parallel
                .map(usize::from)
                .or(policy.default_parallel),
            backup: Some(if policy.always_freeze {
                chmigrate::backup::BackupPolicy::Freeze
            } else {
                spec.policy.backup
            }),
            ..Default::default()
        },
        logging: Default::default(),
    };
    Settings::resolve(None, &overrides).map_err(|e| e.to_string())
}

/// What the operator (or the command line) forbids or sets for every set.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// No set may roll back, whatever its own policy says.
    pub forbid_rollback: bool,
    /// The environment this runner serves; sets naming another are refused.
    pub environment: Option<String>,
    /// Every set freezes before destructive statements, whatever its own
    /// `policy.backup` says (`--backup freeze`; production).
    pub always_freeze: bool,
    /// The rollback strategy of sets that name none (`--rollback-strategy`).
    pub default_rollback_strategy: Option<chmigrate::strategy::RollbackStrategy>,
    /// The parallelism of sets that name none (`--parallel`).
    pub default_parallel: Option<usize>,
}

/// The outcome of one set: its status and the exit code it calls for.
pub struct SetResult {
    pub namespace: String,
    pub name: String,
    pub status: MigrationSetStatus,
    pub code: i32,
    /// What the target's ledger says, when it was reached.
    pub facts: Option<SetFacts>,
    /// Versions applied and rolled back by this reconcile.
    pub applied: Vec<Version>,
    pub rolled_back: Vec<Version>,
    /// The migration whose statement failed, and the error.
    pub failed_version: Option<(Version, String)>,
    /// Trying again later may succeed without a person acting (the server
    /// was unreachable, the lock was held, a statement failed).
    pub retry: bool,
}

impl SetResult {
    /// Nothing known yet about the set `namespace/name`.
    pub fn new(namespace: String, name: String) -> Self {
        SetResult {
            namespace,
            name,
            status: MigrationSetStatus::default(),
            code: exit::OK,
            facts: None,
            applied: Vec::new(),
            rolled_back: Vec::new(),
            failed_version: None,
            retry: false,
        }
    }
}

/// Reconciles one set towards its `targetVersion` (or the latest).
pub async fn reconcile(set: &MigrationSet, all: &Manifests, policy: &Policy) -> SetResult {
    reconcile_to(set, all, policy, None).await
}

/// Reconciles one set towards `target` when given (the operator's
/// roll-everything-back on deletion), else towards its spec.
pub async fn reconcile_to(
    set: &MigrationSet,
    all: &Manifests,
    policy: &Policy,
    target: Option<TargetSpec>,
) -> SetResult {
    let mut out = SetResult::new(
        set.namespace().unwrap_or_else(|| "default".into()),
        set.name_any(),
    );
    let loaded = manifest::migrations_for(set, all);
    out.status.latest_version = loaded
        .migrations
        .iter()
        .map(|m| m.version.clone())
        .max()
        .map(|v| v.to_string());
    let health = if set.spec.policy.suspend && target.is_none() {
        Health::Progressing {
            reason: "Suspended".into(),
            message: "spec.policy.suspend is true".into(),
        }
    } else if !loaded.errors.is_empty() {
        let messages: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        stalled("InvalidMigrations", messages.join("; "), &mut out)
    } else {
        let spec = match (target, &set.spec.target_version) {
            (Some(t), _) => Ok(t),
            (None, Some(v)) => Version::parse(v)
                .map(TargetSpec::Version)
                .map_err(|e| format!("targetVersion: {e}")),
            (None, None) => Ok(TargetSpec::Latest),
        };
        match spec.and_then(|spec| Ok((spec, settings_for(set, all, policy)?))) {
            Err(msg) => stalled("InvalidSpec", msg, &mut out),
            Ok((spec, settings)) => {
                let started = chmigrate::clock::format_us(chmigrate::runtime::store::now_us());
                let report = online::migrate_loaded(
                    &settings,
                    &loaded.migrations,
                    &spec,
                    set.spec.policy.dry_run,
                    Format::Json,
                    &chmigrate::runtime::run::Silent,
                )
                .await;
                apply_report(&mut out, report, started)
            }
        }
    };
    // What this reconcile could not observe stays as last seen.
    if let Some(prev) = &set.status {
        if out.status.last_run.is_none() {
            out.status.last_run = prev.last_run.clone();
        }
        if out.facts.is_none() && out.status.applied_version.is_none() {
            out.status.applied_version = prev.applied_version.clone();
        }
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    out.status = set_status::finish(
        std::mem::take(&mut out.status),
        &health,
        set.metadata.generation,
        set.status.as_ref(),
        now,
    );
    out
}

fn stalled(reason: &str, message: String, out: &mut SetResult) -> Health {
    out.code = exit::INVALID;
    Health::Stalled {
        reason: reason.into(),
        message,
    }
}

fn facts_of(set: &str, r: &MigrateReport) -> SetFacts {
    let mut facts = SetFacts {
        set: set.to_string(),
        hosts_total: r.host_count as u32,
        history: r.history.clone(),
        skipped: r.skipped.clone(),
        ..Default::default()
    };
    for t in &r.pending {
        if let Ok(v) = Version::parse(&t.version) {
            let hosts = facts.pending_hosts.entry(v).or_default();
            for h in &t.hosts {
                if !hosts.contains(h) {
                    hosts.push(h.clone());
                }
            }
        }
    }
    for (t, h, e) in &r.failed {
        if let Ok(v) = Version::parse(&t.version) {
            facts.errors.insert(v, format!("host {h}: {e}"));
        }
    }
    facts
}

fn apply_report(
    out: &mut SetResult,
    report: Result<MigrateReport, CliError>,
    started: String,
) -> Health {
    let status = &mut out.status;
    match report {
        Ok(r) => {
            status.applied_version = r.applied_version.as_ref().map(ToString::to_string);
            out.facts = Some(facts_of(&out.name, &r));
            if let Some((plan, steps, _)) = &r.planned {
                status.pending_count = plan.steps.len() as u32;
                status.plan = steps
                    .iter()
                    .map(|s| PlannedStep {
                        action: match s.step {
                            chmigrate::plan::Step::Apply { .. } => "apply".into(),
                            chmigrate::plan::Step::Rollback { .. } => "rollback".into(),
                            chmigrate::plan::Step::Baseline { .. } => "baseline".into(),
                        },
                        version: s.step.version().to_string(),
                        statements: s.statements.iter().map(|p| p.sql.clone()).collect(),
                    })
                    .collect();
                return Health::Progressing {
                    reason: "DryRun".into(),
                    message: format!(
                        "dry run: {} step(s) planned, nothing applied",
                        plan.steps.len()
                    ),
                };
            }
            if let Some(o) = &r.outcome {
                out.applied = o.applied.clone();
                out.rolled_back = o.rolled_back.clone();
                if !o.applied.is_empty() || !o.rolled_back.is_empty() {
                    status.last_run = Some(crd::RunStatus {
                        started,
                        finished: chmigrate::clock::format_us(chmigrate::runtime::store::now_us()),
                        applied: o.applied.iter().map(ToString::to_string).collect(),
                        rolled_back: o.rolled_back.iter().map(ToString::to_string).collect(),
                    });
                }
            }
            let mut hosts: Vec<crd::HostStatus> = Vec::new();
            for t in &r.pending {
                for h in &t.hosts {
                    let label = format!("V{} statement {}", t.version, t.statement + 1);
                    match hosts.iter_mut().find(|x| &x.host == h) {
                        Some(x) => x.pending_statements.push(label),
                        None => hosts.push(crd::HostStatus {
                            host: h.clone(),
                            pending_statements: vec![label],
                        }),
                    }
                }
            }
            status.hosts = hosts;
            if !r.failed.is_empty() {
                let msg = r
                    .failed
                    .iter()
                    .map(|(t, h, e)| {
                        format!(
                            "host {h} failed V{} statement {}: {e}",
                            t.version,
                            t.statement + 1
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                out.code = exit::FAILED;
                return Health::Stalled {
                    reason: "HostFailed".into(),
                    message: msg,
                };
            }
            if !r.pending.is_empty() {
                out.code = exit::HOSTS_PENDING;
                out.retry = true;
                return Health::Progressing {
                    reason: "HostsPending".into(),
                    message: format!(
                        "{} statement(s) not finished on every host yet",
                        r.pending.len()
                    ),
                };
            }
            Health::Ready
        }
        Err(CliError::Blocked(diags)) => {
            let reason = if diags
                .iter()
                .any(|d| d.message.contains("was applied with checksum"))
            {
                "ChecksumMismatch"
            } else if diags
                .iter()
                .any(|d| d.message.contains("rollback is not allowed"))
            {
                "RollbackForbidden"
            } else {
                "Blocked"
            };
            let messages: Vec<String> = diags.iter().map(ToString::to_string).collect();
            stalled(reason, messages.join("; "), out)
        }
        Err(CliError::Locked(msg, holder)) => {
            out.code = exit::LOCKED;
            status.lock = holder.map(|(holder, age_seconds)| crd::LockStatus {
                holder,
                age_seconds,
            });
            out.retry = true;
            Health::Progressing {
                reason: "LockHeld".into(),
                message: msg,
            }
        }
        Err(CliError::Failed(err)) => {
            out.code = exit::FAILED;
            out.retry = true;
            let message = format!("{err:#}");
            match err.downcast_ref::<RunError>() {
                Some(RunError::Statement { version, .. }) => {
                    out.failed_version = Some((version.clone(), message.clone()));
                    Health::Stalled {
                        reason: "MigrationFailed".into(),
                        message,
                    }
                }
                // Wrong credentials or TLS settings: a person (or a secret
                // rotation) has to act; the Secret's watch brings it back.
                _ if matches!(
                    err.downcast_ref::<chmigrate::runtime::ChError>(),
                    Some(
                        chmigrate::runtime::ChError::Auth { .. }
                            | chmigrate::runtime::ChError::Tls { .. }
                            | chmigrate::runtime::ChError::Config(_)
                    )
                ) =>
                {
                    Health::Stalled {
                        reason: "ConnectionRefused".into(),
                        message,
                    }
                }
                // The server, ZooKeeper or the network: it comes back.
                _ => Health::Progressing {
                    reason: "Unavailable".into(),
                    message,
                },
            }
        }
        Err(e) => {
            out.code = e.code();
            Health::Stalled {
                reason: "Failed".into(),
                message: e.to_string(),
            }
        }
    }
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
    let mut results = Vec::new();
    for set in sets {
        results.push(reconcile(set, &all, policy).await);
    }
    match format {
        Format::Json => super::output::print_json_value(&json!(
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
    match results.iter().map(|r| r.code).find(|c| *c != exit::OK) {
        None => Ok(()),
        Some(exit::HOSTS_PENDING) => Err(CliError::Pending),
        Some(exit::LOCKED) => Err(CliError::Locked(
            "a target is locked by another runner".into(),
            None,
        )),
        Some(exit::FAILED) => Err(CliError::Failed(anyhow::anyhow!("a MigrationSet failed"))),
        Some(_) => Err(CliError::Reported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> SetResult {
        SetResult::new("apps".into(), "orders".into())
    }

    #[test]
    fn operator_defaults_apply_only_where_the_set_names_nothing() {
        let yaml = |policy: &str| {
            format!(
                "apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: s, namespace: apps }}\n\
                 spec:\n  connection:\n    url: http://127.0.0.1:8123\n    database: d\n    credentials: {{ user: u, passwordless: true }}\n\
                 \x20 policy: {policy}\n"
            )
        };
        let policy = Policy {
            default_rollback_strategy: Some(chmigrate::strategy::RollbackStrategy::ForwardOnly),
            default_parallel: Some(3),
            ..Default::default()
        };
        let settings = |p: &str| {
            let all = manifest::parse(&[("s.yaml".into(), yaml(p))]).unwrap();
            settings_for(&all.sets[0], &all, &policy).unwrap()
        };
        let s = settings("{}");
        assert_eq!(
            s.rollback_strategy,
            chmigrate::strategy::RollbackStrategy::ForwardOnly
        );
        assert_eq!(s.parallel, 3);
        let s = settings("{ rollbackStrategy: script, parallel: 1 }");
        assert_eq!(
            s.rollback_strategy,
            chmigrate::strategy::RollbackStrategy::Script
        );
        assert_eq!(s.parallel, 1);
        let all = manifest::parse(&[("s.yaml".into(), yaml("{}"))]).unwrap();
        let s = settings_for(&all.sets[0], &all, &Policy::default()).unwrap();
        assert_eq!((s.rollback_strategy, s.parallel), (Default::default(), 1));
    }

    #[test]
    fn a_held_lock_names_its_holder_in_status_and_is_retried() {
        let mut out = empty();
        let health = apply_report(
            &mut out,
            Err(CliError::Locked(
                "target is locked: held by ci@runner-7 for 42s".into(),
                Some(("ci@runner-7 (chmigrate 0.1.0, pid 7)".into(), 42)),
            )),
            String::new(),
        );
        assert_eq!(
            health,
            Health::Progressing {
                reason: "LockHeld".into(),
                message: "target is locked: held by ci@runner-7 for 42s".into()
            }
        );
        assert_eq!(
            out.status.lock,
            Some(crd::LockStatus {
                holder: "ci@runner-7 (chmigrate 0.1.0, pid 7)".into(),
                age_seconds: 42
            })
        );
        assert!(out.retry);
        assert_eq!(out.code, exit::LOCKED);
    }

    #[test]
    fn a_failed_statement_names_its_migration_and_stalls() {
        let mut out = empty();
        let err = RunError::Statement {
            migration: "V3 (events)".into(),
            version: Version::parse("3").unwrap_or_else(|_| unreachable!()),
            location: chmigrate::migration::Location::new("V3__events.sql", 4),
            number: 2,
            host: Some("127.0.0.12:9002".into()),
            message: "Code: 62, syntax error".into(),
        };
        let health = apply_report(
            &mut out,
            Err(CliError::Failed(anyhow::anyhow!(err))),
            String::new(),
        );
        let Health::Stalled { reason, message } = health else {
            panic!("a failed statement stalls the set");
        };
        assert_eq!(reason, "MigrationFailed");
        assert!(
            message.contains(
                "V3 (events) statement 2 (V3__events.sql:4) failed on host 127.0.0.12:9002"
            ),
            "{message}"
        );
        assert_eq!(
            out.failed_version.map(|(v, _)| v.to_string()),
            Some("3".into())
        );
        assert!(
            out.retry,
            "resumed with backoff: the server may have been at fault"
        );
    }
}
