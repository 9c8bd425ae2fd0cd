//! The reconcile of one `MigrationSet` over its manifests, through the
//! engine's one migrate path: validate the set (its migrations, its spec,
//! the operator's policy) → plan → apply → the status the operator writes.
//! `chmigrate apply -f` and the operator both call [`reconcile_to`]; the
//! status reasons come from typed outcomes and problems.

use kube::ResourceExt;

use crate::config::{CaPem, ConnectionSection, MigrationsSection, Overrides, Settings};
use crate::engine::{
    self, Blocked, EngineError, LockHeld, Outcome, Planned, Report, RunContext, RunError,
    TargetSpec,
};
use crate::k8s::crd::{self, MigrationSet, MigrationSetStatus};
use crate::k8s::drift_status;
use crate::k8s::guard::Refusal;
use crate::k8s::manifest::{self, Manifests};
use crate::k8s::migration_status::SetFacts;
use crate::k8s::set_status::{self, Health};
use crate::ledger::fold::TargetState;
use crate::model::migration::Migration;
use crate::model::secret::{Masker, Secret};
use crate::model::version::Version;
use crate::plan::drift::DriftReport;
use crate::plan::{Problem, snapshot};
use crate::runtime::ChError;

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
    pub default_rollback_strategy: Option<crate::model::strategy::RollbackStrategy>,
    /// The parallelism of sets that name none (`--parallel`).
    pub default_parallel: Option<usize>,
    /// Glob patterns of the URLs sets may connect to (`--allow-url`; none:
    /// any).
    pub allowed_urls: Vec<String>,
    /// Only `https://` with certificate verification (`--require-tls`).
    pub require_tls: bool,
}

/// How a set's reconcile ended, as the command line's exit code and the
/// operator's metrics read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Applied (or nothing to do, suspended, a dry run).
    Ok,
    /// The set or its migrations are invalid, or the plan is blocked.
    Invalid,
    /// A statement, a host, the server or the connection failed.
    Failed,
    /// Applied; some hosts have not finished.
    HostsPending,
    /// Another runner holds the lock.
    Locked,
}

/// The outcome of one set: its status and what it calls for.
#[derive(Debug)]
pub struct SetResult {
    pub namespace: String,
    pub name: String,
    pub status: MigrationSetStatus,
    pub verdict: Verdict,
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
            verdict: Verdict::Ok,
            facts: None,
            applied: Vec::new(),
            rolled_back: Vec::new(),
            failed_version: None,
            retry: false,
        }
    }
}

/// The environment a set runs in: its own, else the runner's, else
/// `development`; a set naming another than its runner's is refused.
fn environment_of(set: &MigrationSet, policy: &Policy) -> Result<String, String> {
    match (&set.spec.environment, &policy.environment) {
        (Some(mine), Some(op)) if mine != op => Err(format!(
            "spec.environment is {mine:?} but this operator runs {op:?}; \
             a set can only run in the environment its operator serves"
        )),
        (Some(e), _) | (None, Some(e)) => Ok(e.clone()),
        (None, None) => Ok("development".into()),
    }
}

/// Step 1, validate: the engine settings of a set, its Secret references
/// resolved, checked against the runner's policy.
pub fn settings_for(
    set: &MigrationSet,
    all: &Manifests,
    policy: &Policy,
) -> Result<Settings, Refusal> {
    let invalid = |message: String| Refusal {
        reason: "InvalidSpec",
        message,
    };
    let ns = set.namespace().unwrap_or_else(|| "default".into());
    let spec = &set.spec;
    let environment = environment_of(set, policy).map_err(invalid)?;
    let creds = &spec.connection.credentials;
    let password = match (&creds.password_secret_ref, creds.passwordless) {
        (Some(r), _) => Some(Secret::new(manifest::secret_value(
            all,
            &ns,
            r,
            "spec.connection.credentials.passwordSecretRef",
        )?)),
        (None, Some(true)) => None,
        (None, _) => {
            return Err(invalid(
                "credentials need passwordSecretRef or passwordless: true".into(),
            ));
        }
    };
    let tls = spec.connection.tls.clone().unwrap_or_default();
    // The CA stays in memory: no file that two sets (or two namespaces'
    // sets of one name) could share.
    let ca_pem = match &tls.ca_secret_ref {
        Some(r) => Some(CaPem {
            origin: format!("Secret {ns}/{} key {}", r.name, r.key),
            pem: manifest::secret_value(all, &ns, r, "spec.connection.tls.caSecretRef")?,
        }),
        None => None,
    };
    let secret_variables = manifest::secret_variables(set, all)?
        .into_iter()
        .map(|(k, v)| (k, Secret::new(v)))
        .collect();
    let overrides = Overrides {
        environment: Some(environment),
        connection: ConnectionSection {
            url: Some(spec.connection.url.clone()),
            user: Some(creds.user.clone()),
            password,
            database: Some(spec.connection.database.clone()),
            cluster: spec.connection.cluster.clone(),
            ca_pem,
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
            secret_variables: Some(secret_variables),
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
                crate::ledger::backups::BackupPolicy::Freeze
            } else {
                spec.policy.backup
            }),
            ..Default::default()
        },
        logging: Default::default(),
    };
    Settings::resolve(None, &overrides).map_err(|e| invalid(e.to_string()))
}

/// Reconciles one set towards its `targetVersion` (or the latest).
pub async fn reconcile(
    set: &MigrationSet,
    all: &Manifests,
    policy: &Policy,
    ctx: &RunContext,
) -> SetResult {
    reconcile_to(set, all, policy, None, false, ctx).await
}

/// What the validate step hands to plan and apply.
struct Valid {
    settings: Settings,
    spec: TargetSpec,
}

/// Step 1: the set's migrations and spec, or the health that stops here.
fn validate(
    set: &MigrationSet,
    all: &Manifests,
    policy: &Policy,
    target: Option<TargetSpec>,
    errors: &[crate::source::SourceError],
    out: &mut SetResult,
) -> Result<Valid, Health> {
    let target_given = target.is_some();
    if set.spec.policy.suspend && target.is_none() {
        return Err(Health::Idle {
            reason: "Suspended".into(),
            message: "spec.policy.suspend is true".into(),
        });
    }
    if !errors.is_empty() {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(stalled("InvalidMigrations", messages.join("; "), out));
    }
    // Where credentials may go is checked before any Secret is read or any
    // connection opened.
    if let Err(r) = crate::k8s::guard::check(set, &policy.allowed_urls, policy.require_tls) {
        return Err(stalled(r.reason, r.message, out));
    }
    let spec = match (target, &set.spec.target_version) {
        (Some(t), _) => Ok(t),
        (None, Some(v)) => Version::parse(v)
            .map(TargetSpec::Version)
            .map_err(|e| format!("targetVersion: {e}")),
        (None, None) => Ok(TargetSpec::Latest),
    };
    let spec = spec.map_err(|msg| stalled("InvalidSpec", msg, out))?;
    let mut settings =
        settings_for(set, all, policy).map_err(|r| stalled(r.reason, r.message, out))?;
    // A target given by the runner is the operator rolling a deleted set
    // back: migrations already gone with their namespace roll back from
    // the ledger's record.
    settings.rollback_from_ledger = target_given;
    Ok(Valid { settings, spec })
}

/// Reconciles one set towards `target` when given (the operator's
/// roll-everything-back on deletion), else towards its spec.
///
/// With `check_drift` (the operator's periodic recheck), a cluster whose
/// migrations are all applied is also checked for replica schema drift,
/// and repaired first when `spec.policy.syncHosts` says so.
pub async fn reconcile_to(
    set: &MigrationSet,
    all: &Manifests,
    policy: &Policy,
    target: Option<TargetSpec>,
    check_drift: bool,
    ctx: &RunContext,
) -> SetResult {
    let mut out = SetResult::new(
        set.namespace().unwrap_or_else(|| "default".into()),
        set.name_any(),
    );
    let loaded = manifest::migrations_for(set, all);
    // Migrations restricted to other environments are neither latest nor
    // pending here.
    let environment = environment_of(set, policy).ok();
    out.status.latest_version = loaded
        .migrations
        .iter()
        .filter(|m| {
            environment
                .as_ref()
                .is_none_or(|e| m.environments.includes(e))
        })
        .map(|m| m.version.clone())
        .max()
        .map(|v| v.to_string());
    // Masked before anything is cut to size, so that no part of a secret
    // value survives a cut.
    let masker = secret_masker(set, all);
    let health = match validate(set, all, policy, target, &loaded.errors, &mut out) {
        Err(health) => health,
        Ok(valid) => {
            let started = crate::clock::format_us(crate::runtime::store::now_us());
            let dry_run = set.spec.policy.dry_run;
            let check = Drift {
                check: check_drift,
                sync: set.spec.policy.sync_hosts,
            };
            let result = plan_and_apply(&valid, &loaded.migrations, dry_run, check, ctx).await;
            match result {
                Ok(Applied::DryRun(planned)) => dry_run_status(&mut out, &planned, &masker),
                Ok(Applied::Ran(outcome, drift)) => {
                    let health = outcome_status(
                        &mut out,
                        (&valid.settings, &valid.spec),
                        &loaded.migrations,
                        outcome,
                        started,
                    );
                    // Unchecked (not a recheck, or the check failed): as
                    // last seen.
                    out.status.drifted_hosts = match drift {
                        Some(report) => drift_status::drifted_hosts(&report),
                        None => set
                            .status
                            .as_ref()
                            .map(|s| s.drifted_hosts.clone())
                            .unwrap_or_default(),
                    };
                    drift_status::health(health, &out.status.drifted_hosts, check.sync)
                }
                Err(e) => error_status(
                    &mut out,
                    Some((&valid.settings, &valid.spec)),
                    &loaded.migrations,
                    e,
                    started,
                ),
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
    let health = mask_health(health, &masker);
    let now = k8s_openapi::jiff::Timestamp::now();
    out.status = set_status::finish(
        std::mem::take(&mut out.status),
        &health,
        set.metadata.generation,
        set.status.as_ref(),
        now,
    );
    mask_secrets(&mut out, &masker);
    out
}

/// The health's message with secret values masked.
fn mask_health(health: Health, masker: &Masker) -> Health {
    if masker.is_empty() {
        return health;
    }
    match health {
        Health::Ready => Health::Ready,
        Health::Progressing { reason, message } => Health::Progressing {
            reason,
            message: masker.mask(&message),
        },
        Health::Stalled { reason, message } => Health::Stalled {
            reason,
            message: masker.mask(&message),
        },
        Health::Idle { reason, message } => Health::Idle {
            reason,
            message: masker.mask(&message),
        },
    }
}

/// Masks the values of a set's `variablesFrom` Secrets (whatever else
/// failed, as far as they can be read).
fn secret_masker(set: &MigrationSet, all: &Manifests) -> Masker {
    let values = manifest::secret_variables(set, all).unwrap_or_default();
    Masker::new(
        values
            .values()
            .flat_map(|v| crate::sql::vars::value_forms(v)),
    )
}

/// Nothing a reconcile reports (status, plan, errors, and so Events and
/// logs made from them) carries a secret value.
fn mask_secrets(out: &mut SetResult, masker: &Masker) {
    if masker.is_empty() {
        return;
    }
    if let Ok(mut v) = serde_json::to_value(&out.status) {
        masker.mask_json(&mut v);
        if let Ok(status) = serde_json::from_value(v) {
            out.status = status;
        }
    }
    if let Some((_, error)) = &mut out.failed_version {
        *error = masker.mask(error);
    }
    // The per-version errors become each migration's lastError.
    if let Some(facts) = &mut out.facts {
        for error in facts.errors.values_mut() {
            *error = masker.mask(error);
        }
    }
}

enum Applied {
    DryRun(Planned),
    /// The outcome, and the drift found when it was checked.
    Ran(Outcome, Option<DriftReport>),
}

/// Whether to check replica drift, and to repair it.
#[derive(Debug, Clone, Copy)]
struct Drift {
    check: bool,
    sync: bool,
}

/// Steps 2 and 3: plan (reads only), then apply through the engine; then,
/// when asked and nothing is left to apply on a cluster, the drift check.
async fn plan_and_apply(
    valid: &Valid,
    migrations: &[Migration],
    dry_run: bool,
    drift: Drift,
    ctx: &RunContext,
) -> Result<Applied, EngineError> {
    let session = engine::connect(&valid.settings).await?;
    let planned = engine::plan(&session, &valid.settings, migrations, valid.spec.clone()).await?;
    if dry_run {
        return Ok(Applied::DryRun(planned));
    }
    let outcome =
        engine::migrate(&session, &valid.settings, &planned, ctx, &engine::Silent).await?;
    let settled = match &outcome {
        Outcome::NothingToDo(r) | Outcome::Done(r) => Some(r),
        _ => None,
    };
    let report = match settled {
        Some(r) if drift.check && valid.settings.cluster.is_some() => {
            let checked = if drift.sync {
                engine::drift::sync_hosts(&session, &valid.settings, ctx, migrations, None, false)
                    .await
                    .map(|s| s.after.unwrap_or(s.before.report))
            } else {
                engine::drift::check(&session, &valid.settings, migrations, &r.history)
                    .await
                    .map(|c| c.report)
            };
            checked
                .inspect_err(|e| tracing::warn!(error = %e, "replica drift check failed"))
                .ok()
        }
        _ => None,
    };
    Ok(Applied::Ran(outcome, report))
}

fn stalled(reason: &str, message: String, out: &mut SetResult) -> Health {
    out.verdict = Verdict::Invalid;
    Health::Stalled {
        reason: reason.into(),
        message,
    }
}

fn facts_of(set: &str, r: &Report) -> SetFacts {
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
    for f in &r.failed_hosts {
        if let Ok(v) = Version::parse(&f.task.version) {
            facts
                .errors
                .insert(v, format!("host {}: {}", f.host, f.error));
        }
    }
    facts
}

fn dry_run_status(out: &mut SetResult, planned: &Planned, masker: &Masker) -> Health {
    let status = &mut out.status;
    status.applied_version = planned.applied_version().map(ToString::to_string);
    out.facts = Some(facts_of(
        &out.name,
        &Report {
            applied_version: planned.applied_version().cloned(),
            host_count: planned.hosts.len().max(1),
            ..Default::default()
        },
    ));
    match &planned.plan {
        Ok((plan, steps)) => {
            status.pending_count = plan.steps.len() as u32;
            let steps: Vec<(String, String, Vec<String>)> = steps
                .iter()
                .map(|s| {
                    let action = match s.step {
                        crate::plan::Step::Apply { .. } => "apply",
                        crate::plan::Step::Rollback { .. } => "rollback",
                        crate::plan::Step::Baseline { .. } => "baseline",
                    };
                    let sql = s.statements.iter().map(|p| masker.mask(&p.sql)).collect();
                    (action.to_string(), s.step.version().to_string(), sql)
                })
                .collect();
            status.plan = set_status::summarised_plan(steps);
            Health::Idle {
                reason: "DryRun".into(),
                message: format!(
                    "dry run: {} step(s) planned, nothing applied",
                    plan.steps.len()
                ),
            }
        }
        Err(blocked) => blocked_health(out, blocked),
    }
}

/// The status reason of a blocked plan, from its typed problems.
fn blocked_reason(blocked: &Blocked) -> &'static str {
    if blocked
        .problems
        .iter()
        .any(|p| matches!(p, Problem::ChecksumChanged { .. }))
    {
        "ChecksumMismatch"
    } else if blocked
        .problems
        .iter()
        .any(|p| matches!(p, Problem::RollbackNotAllowed { .. }))
    {
        "RollbackForbidden"
    } else {
        "Blocked"
    }
}

fn blocked_health(out: &mut SetResult, blocked: &Blocked) -> Health {
    let messages: Vec<String> = blocked
        .diagnostics()
        .iter()
        .map(ToString::to_string)
        .collect();
    stalled(blocked_reason(blocked), messages.join("; "), out)
}

fn locked_health(out: &mut SetResult, held: LockHeld) -> Health {
    out.verdict = Verdict::Locked;
    out.status.lock = Some(crd::LockStatus {
        holder: held.info.holder.clone(),
        age_seconds: held.age_secs,
    });
    out.retry = true;
    Health::Progressing {
        reason: "LockHeld".into(),
        message: held.message,
    }
}

fn outcome_status(
    out: &mut SetResult,
    settings: (&Settings, &TargetSpec),
    migrations: &[Migration],
    outcome: Outcome,
    started: String,
) -> Health {
    let r = match outcome {
        Outcome::Locked(held) => return locked_health(out, held),
        Outcome::Blocked(b) => return blocked_health(out, &b),
        Outcome::NothingToDo(r)
        | Outcome::Done(r)
        | Outcome::HostsPending(r)
        | Outcome::HostsFailed(r) => r,
    };
    report_status(out, settings, migrations, &r, started);
    if !r.failed_hosts.is_empty() {
        let msg = r
            .failed_hosts
            .iter()
            .map(|f| {
                format!(
                    "host {} failed {}: {}",
                    f.host,
                    snapshot::task_label(&f.task),
                    f.error
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        out.verdict = Verdict::Failed;
        return Health::Stalled {
            reason: "HostFailed".into(),
            message: msg,
        };
    }
    if !r.pending.is_empty() {
        out.verdict = Verdict::HostsPending;
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

/// The status fields a run's report gives, also after a failure: the
/// highest fully applied version, the latest and pending versions of this
/// environment, hosts still pending, the last run.
fn report_status(
    out: &mut SetResult,
    (settings, spec): (&Settings, &TargetSpec),
    migrations: &[Migration],
    r: &Report,
    started: String,
) {
    out.facts = Some(facts_of(&out.name, r));
    let state = engine::events(&r.history)
        .map(|e| TargetState::fold(&e))
        .unwrap_or_default();
    // Pending towards the set's own target (its targetVersion, if any).
    let target = match spec {
        TargetSpec::Version(v) => crate::plan::Target::Version(v.clone()),
        _ => crate::plan::Target::Latest,
    };
    let snap = snapshot::snapshot(migrations, &state, &settings.policy(), &r.pending, &target);
    let status = &mut out.status;
    status.applied_version = snap.applied_version.as_ref().map(ToString::to_string);
    status.latest_version = snap.latest_version.as_ref().map(ToString::to_string);
    status.pending_count = snap.pending.as_ref().map_or(0, |p| p.len() as u32);
    out.applied = r.applied.clone();
    out.rolled_back = r.rolled_back.clone();
    if !r.applied.is_empty() || !r.rolled_back.is_empty() {
        status.last_run = Some(crd::RunStatus {
            started,
            finished: crate::clock::format_us(crate::runtime::store::now_us()),
            applied: r.applied.iter().map(ToString::to_string).collect(),
            rolled_back: r.rolled_back.iter().map(ToString::to_string).collect(),
        });
    }
    status.hosts = snap
        .hosts_pending
        .iter()
        .map(|h| crd::HostStatus {
            host: h.host.clone(),
            pending_statements: h.statements.clone(),
        })
        .collect();
}

fn error_status(
    out: &mut SetResult,
    settings: Option<(&Settings, &TargetSpec)>,
    migrations: &[Migration],
    err: EngineError,
    started: String,
) -> Health {
    match err {
        EngineError::Blocked(b) => blocked_health(out, &b),
        EngineError::Locked(held) => locked_health(out, held),
        e if e.is_invalid() => stalled("Failed", e.to_string(), out),
        EngineError::Run { failure, report } if matches!(*failure, RunError::Statement { .. }) => {
            if let Some(settings) = settings {
                report_status(out, settings, migrations, &report, started);
            }
            out.verdict = Verdict::Failed;
            // Resumed with backoff: the server may have been at fault.
            out.retry = true;
            let message = failure.to_string();
            if let RunError::Statement { version, .. } = failure.as_ref() {
                out.failed_version = Some((version.clone(), message.clone()));
                if let Some(f) = out.facts.as_mut() {
                    f.errors.insert(version.clone(), message.clone());
                }
            }
            Health::Stalled {
                reason: "MigrationFailed".into(),
                message,
            }
        }
        e => {
            out.verdict = Verdict::Failed;
            out.retry = true;
            let message = e.to_string();
            match e.clickhouse() {
                // Wrong credentials or TLS settings: a person (or a secret
                // rotation) has to act; the Secret's watch brings it back.
                Some(ChError::Auth { .. } | ChError::Tls { .. } | ChError::Config(_)) => {
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
            default_rollback_strategy: Some(crate::model::strategy::RollbackStrategy::ForwardOnly),
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
            crate::model::strategy::RollbackStrategy::ForwardOnly
        );
        assert_eq!(s.parallel, 3);
        let s = settings("{ rollbackStrategy: script, parallel: 1 }");
        assert_eq!(
            s.rollback_strategy,
            crate::model::strategy::RollbackStrategy::Script
        );
        assert_eq!(s.parallel, 1);
        let all = manifest::parse(&[("s.yaml".into(), yaml("{}"))]).unwrap();
        let s = settings_for(&all.sets[0], &all, &Policy::default()).unwrap();
        assert_eq!((s.rollback_strategy, s.parallel), (Default::default(), 1));
    }

    #[test]
    fn a_held_lock_names_its_holder_in_status_and_is_retried() {
        let mut out = empty();
        let health = error_status(
            &mut out,
            None,
            &[],
            EngineError::Locked(LockHeld {
                info: crate::runtime::lock::LockInfo {
                    token: "t".into(),
                    holder: "ci@runner-7 (chmigrate 0.1.0, pid 7)".into(),
                    acquired_us: 0,
                    node: String::new(),
                },
                age_secs: 42,
                message: "target is locked: held by ci@runner-7 for 42s".into(),
            }),
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
        assert_eq!(out.verdict, Verdict::Locked);
    }

    #[test]
    fn a_failed_statement_names_its_migration_and_stalls() {
        let mut out = empty();
        let failure = RunError::Statement {
            migration: "V3 (events)".into(),
            version: Version::parse("3").unwrap_or_else(|_| unreachable!()),
            location: crate::model::migration::Location::new("V3__events.sql", 4),
            number: 2,
            host: Some("127.0.0.12:9002".into()),
            message: "Code: 62, syntax error".into(),
        };
        let health = error_status(
            &mut out,
            None,
            &[],
            EngineError::Run {
                failure: Box::new(failure),
                report: Box::default(),
            },
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

    #[test]
    fn status_reasons_come_from_typed_problems() {
        let v = Version::parse("1").unwrap();
        let blocked = |p: Problem| Blocked {
            problems: vec![p],
            diagnostics: Vec::new(),
        };
        let checksum = blocked(Problem::ChecksumChanged {
            version: v.clone(),
            location: crate::model::migration::Location::new("V1__a.sql", 1),
            recorded: crate::model::migration::Checksum("a".repeat(64)),
            current: crate::model::migration::Checksum("b".repeat(64)),
        });
        assert_eq!(blocked_reason(&checksum), "ChecksumMismatch");
        let forbidden = blocked(Problem::RollbackNotAllowed {
            versions: vec![v.clone()],
            environment: "production".into(),
        });
        assert_eq!(blocked_reason(&forbidden), "RollbackForbidden");
        let missing = blocked(Problem::MissingSource { version: v });
        assert_eq!(blocked_reason(&missing), "Blocked");
        let mut out = empty();
        let Health::Stalled { reason, .. } = error_status(
            &mut out,
            None,
            &[],
            EngineError::Blocked(checksum),
            String::new(),
        ) else {
            panic!("a blocked plan stalls the set");
        };
        assert_eq!(reason, "ChecksumMismatch");
        assert_eq!(out.verdict, Verdict::Invalid);
    }
}
