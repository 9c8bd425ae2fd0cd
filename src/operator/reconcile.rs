//! The reconcile of one `MigrationSet`, as a pipeline: dereference (the
//! caches) → validate and apply (the engine's one migrate path, shared with
//! `chmigrate apply -f`) → update status (the set, its migrations, events).
//! Nothing is written when nothing changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use chmigrate::crd::{ClickHouseMigration, DeletionPolicy, MigrationSet, MigrationSetStatus};
use chmigrate::migration_status;
use chmigrate::set_status::{self, Health, Notice};
use chmigrate::version::Version;

use super::context::{Ctx, Memo};
use super::dereference::{self, Inputs};
use super::metrics::{ResultLabels, SetLabels};
use crate::cli::apply::{self, SetResult};
use crate::cli::online::{ACTOR, STALE_LOCKS, StaleLocks, TargetSpec};

/// The finalizer a set with `deletionPolicy: Rollback` carries.
pub const FINALIZER: &str = "chmigrate.io/rollback";

/// Why a reconcile has to be retried; the category labels metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("MigrationSet {set}: {reason}: {message}")]
    Target {
        set: String,
        reason: String,
        message: String,
    },
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kubernetes",
            Error::Target { .. } => "clickhouse",
        }
    }
}

fn key_of<K: Resource>(o: &K) -> String {
    format!(
        "{}/{}",
        o.meta().namespace.as_deref().unwrap_or_default(),
        o.meta().name.as_deref().unwrap_or_default()
    )
}

/// A JSON merge patch (RFC 7386) that turns `old` into `new`: changed keys,
/// and `null` for keys `new` no longer has.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        out.insert(k.clone(), merge_diff(ov, nv));
                    }
                    None => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// The `status` of a merge patch from `old` to `new` (all of `new` when
/// there was none).
fn status_patch<T: serde::Serialize>(old: Option<&T>, new: &T) -> Value {
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    match old.map(serde_json::to_value) {
        Some(Ok(o)) => merge_diff(&o, &new_v),
        _ => new_v,
    }
}

/// The controller's entry point.
pub async fn reconcile(
    obj: Arc<DeserializeGuard<MigrationSet>>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let r = run(&obj, &ctx).await;
    let m = &ctx.shared.metrics;
    m.reconcile_seconds.observe(started.elapsed().as_secs_f64());
    let result = match &r {
        Ok((_, true)) => "noop",
        Ok((_, false)) => "ok",
        Err(e) => e.category(),
    };
    m.reconciles
        .get_or_create(&ResultLabels {
            result: result.into(),
        })
        .inc();
    r.map(|(a, _)| a)
}

/// Error policy: back off per object.
pub fn error_policy(
    obj: Arc<DeserializeGuard<MigrationSet>>,
    err: &Error,
    ctx: Arc<Ctx>,
) -> Action {
    let wait = ctx.shared.failed(&key_of(obj.as_ref()));
    tracing::warn!(error = %err, retry_in_s = wait.as_secs(), "reconcile failed");
    Action::requeue(wait)
}

/// Returns the action and whether the reconcile was a no-op.
async fn run(obj: &DeserializeGuard<MigrationSet>, ctx: &Ctx) -> Result<(Action, bool), Error> {
    let key = key_of(obj);
    let set = match &obj.0 {
        Ok(set) => set,
        Err(invalid) => return invalid_set(obj, invalid, ctx).await.map(|a| (a, false)),
    };
    if !ctx.stores.ready().await {
        return Ok((Action::requeue(Duration::from_secs(1)), true));
    }
    let api: Api<MigrationSet> = Api::namespaced(
        ctx.shared.client.clone(),
        set.namespace().as_deref().unwrap_or("default"),
    );
    let has_finalizer = set.finalizers().iter().any(|f| f == FINALIZER);
    let wants_finalizer = set.spec.policy.deletion_policy == DeletionPolicy::Rollback;
    if set.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok((Action::await_change(), true));
        }
        if wants_finalizer && !set.spec.policy.dry_run && !cleanup(set, ctx).await? {
            return Ok((Action::requeue(ctx.shared.settings.recheck), false));
        }
        set_finalizer(&api, set, false, ctx).await?;
        ctx.shared.remember(&key, None);
        return Ok((Action::await_change(), false));
    }
    if has_finalizer != wants_finalizer {
        set_finalizer(&api, set, wants_finalizer, ctx).await?;
    }
    let inputs = dereference::inputs(set, &ctx.stores);
    if let Some(memo) = ctx.shared.memo(&key)
        && memo.fingerprint == inputs.fingerprint
    {
        let now = Instant::now();
        if memo.next_check > now {
            return Ok((Action::requeue(memo.next_check - now), true));
        }
    }
    let result = engine(set, &inputs, None, ctx).await;
    publish(set, &result, ctx).await?;
    write_migration_statuses(set, &inputs, &result, ctx).await?;
    if let Some(e) = retry_error(set, &result) {
        ctx.shared.remember(&key, None);
        return Err(e);
    }
    ctx.shared.succeeded(&key);
    let recheck = ctx.shared.settings.recheck;
    ctx.shared.remember(
        &key,
        Some(Memo {
            fingerprint: inputs.fingerprint,
            next_check: Instant::now() + recheck,
        }),
    );
    Ok((Action::requeue(recheck), false))
}

/// The engine, as this operator's actor.
async fn engine(
    set: &MigrationSet,
    inputs: &Inputs,
    target: Option<TargetSpec>,
    ctx: &Ctx,
) -> SetResult {
    let actor = format!(
        "operator:{} ({})",
        key_of(set),
        ctx.shared.settings.identity
    );
    let stale = StaleLocks {
        holder_prefix: format!("operator:{} (", key_of(set)),
        identity: ctx.shared.settings.identity.clone(),
        leader: ctx.shared.settings.leader,
        started_us: ctx.shared.settings.started_us,
    };
    let run = apply::reconcile_to(set, &inputs.manifests, &ctx.shared.settings.policy, target);
    ACTOR.scope(actor, STALE_LOCKS.scope(stale, run)).await
}

/// Writes the outcome: the set's status, its migrations' statuses, events
/// and metrics.
async fn publish(set: &MigrationSet, result: &SetResult, ctx: &Ctx) -> Result<(), Error> {
    let labels = SetLabels {
        namespace: result.namespace.clone(),
        set: result.name.clone(),
    };
    let m = &ctx.shared.metrics;
    m.applied
        .get_or_create(&labels)
        .inc_by(result.applied.len() as u64);
    m.rolled_back
        .get_or_create(&labels)
        .inc_by(result.rolled_back.len() as u64);
    if result.failed_version.is_some() || result.code == crate::cli::exit::FAILED {
        m.failed.get_or_create(&labels).inc();
    }
    m.pending
        .get_or_create(&labels)
        .set(i64::from(result.status.pending_count));
    m.hosts_pending
        .get_or_create(&labels)
        .set(result.status.hosts.len() as i64);
    for n in set_status::notices(
        set.status.as_ref(),
        &result.status,
        &result.applied,
        &result.rolled_back,
    ) {
        event(set, &n, ctx).await;
    }
    write_set_status(set, set.status.as_ref(), &result.status, ctx).await
}

async fn write_set_status(
    set: &MigrationSet,
    old: Option<&MigrationSetStatus>,
    new: &MigrationSetStatus,
    ctx: &Ctx,
) -> Result<(), Error> {
    if old == Some(new) {
        return Ok(());
    }
    let status = status_patch(old, new);
    let api: Api<MigrationSet> = Api::namespaced(
        ctx.shared.client.clone(),
        set.namespace().as_deref().unwrap_or("default"),
    );
    api.patch_status(
        &set.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    ctx.shared.metrics.wrote("status");
    Ok(())
}

/// Updates each selected migration's entry for this set (and drops the
/// entry from migrations the set no longer selects).
async fn write_migration_statuses(
    set: &MigrationSet,
    inputs: &Inputs,
    result: &SetResult,
    ctx: &Ctx,
) -> Result<(), Error> {
    let name = set.name_any();
    let mut changes: Vec<(
        &ClickHouseMigration,
        chmigrate::crd::ClickHouseMigrationStatus,
    )> = Vec::new();
    for m in &inputs.selected {
        let Ok(version) = Version::parse(&m.spec.version) else {
            continue;
        };
        let entry = match (&result.facts, &result.failed_version) {
            (Some(f), _) => migration_status::set_entry(&version, f),
            (None, Some((v, err))) if *v == version => {
                let mut e = m
                    .status
                    .as_ref()
                    .and_then(|s| s.sets.iter().find(|e| e.set == name).cloned())
                    .unwrap_or_default();
                e.set = name.clone();
                e.phase = chmigrate::crd::Phase::Failed;
                e.last_error = Some(err.chars().take(2000).collect());
                e
            }
            _ => continue,
        };
        changes.push((
            m,
            migration_status::merge(m.status.as_ref(), &name, Some(entry)),
        ));
    }
    for m in &inputs.stale {
        changes.push((m, migration_status::merge(m.status.as_ref(), &name, None)));
    }
    for (m, new) in changes {
        if m.status.as_ref() == Some(&new) {
            continue;
        }
        let status = status_patch(m.status.as_ref(), &new);
        let api: Api<ClickHouseMigration> = Api::namespaced(
            ctx.shared.client.clone(),
            m.namespace().as_deref().unwrap_or("default"),
        );
        // The resourceVersion makes this a compare-and-set: two sets that
        // share a migration never overwrite each other's entry.
        api.patch_status(
            &m.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "resourceVersion": m.resource_version() },
                "status": status,
            })),
        )
        .await?;
        ctx.shared.metrics.wrote("migration_status");
    }
    Ok(())
}

/// The error that sends a set to backoff, when trying again may help.
fn retry_error(set: &MigrationSet, result: &SetResult) -> Option<Error> {
    if !result.retry {
        return None;
    }
    let ready = result.status.conditions.iter().find(|c| c.type_ == "Ready");
    Some(Error::Target {
        set: key_of(set),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
    })
}

/// Deletion with `deletionPolicy: Rollback`: roll every migration back.
/// Returns whether the schema is clean so the finalizer can go.
async fn cleanup(set: &MigrationSet, ctx: &Ctx) -> Result<bool, Error> {
    let mut s = set.clone();
    // The author chose to roll back on deletion; the operator's own
    // prohibition (production) still wins inside the engine.
    s.spec.policy.allow_rollback = true;
    s.spec.target_version = None;
    let inputs = dereference::inputs(&s, &ctx.stores);
    let zero = Version::parse("0").unwrap_or_else(|_| unreachable!("0 is a version"));
    let result = engine(&s, &inputs, Some(TargetSpec::Version(zero)), ctx).await;
    publish(set, &result, ctx).await?;
    write_migration_statuses(set, &inputs, &result, ctx).await?;
    if set_status::is_ready(&result.status) {
        event(
            set,
            &Notice {
                warning: false,
                reason: "Deleted".into(),
                note: "every migration of the set was rolled back; releasing the finalizer".into(),
            },
            ctx,
        )
        .await;
        return Ok(true);
    }
    match retry_error(set, &result) {
        Some(e) => Err(e),
        None => Ok(false),
    }
}

/// Adds or removes the finalizer with a compare-and-set merge patch.
async fn set_finalizer(
    api: &Api<MigrationSet>,
    set: &MigrationSet,
    present: bool,
    ctx: &Ctx,
) -> Result<(), Error> {
    let mut finalizers: Vec<String> = set
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    api.patch(
        &set.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {
                "resourceVersion": set.resource_version(),
                "finalizers": finalizers,
            }
        })),
    )
    .await?;
    ctx.shared.metrics.wrote("finalizer");
    Ok(())
}

async fn event<K: Resource<DynamicType = ()>>(obj: &K, n: &Notice, ctx: &Ctx) {
    let ev = KubeEvent {
        type_: if n.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: n.reason.clone(),
        note: Some(n.note.clone()),
        action: "Reconcile".into(),
        secondary: None,
    };
    match ctx.shared.recorder.publish(&ev, &obj.object_ref(&())).await {
        Ok(()) => ctx.shared.metrics.wrote("event"),
        Err(e) => tracing::warn!(error = %e, reason = %n.reason, "could not publish an event"),
    }
}

/// A MigrationSet that does not match the schema: say so once per
/// resourceVersion, and stall.
async fn invalid_set(
    obj: &DeserializeGuard<MigrationSet>,
    invalid: &InvalidObject,
    ctx: &Ctx,
) -> Result<Action, Error> {
    let key = key_of(obj);
    // Our own status write changes the resourceVersion, not the generation.
    let rv = format!("{:?}:{}", obj.meta().generation, invalid.error);
    if ctx.shared.memo(&key).is_some_and(|m| m.fingerprint == rv) {
        return Ok(Action::await_change());
    }
    let message = format!(
        "the object does not match the MigrationSet schema: {}",
        invalid.error
    );
    event(
        obj,
        &Notice {
            warning: true,
            reason: "InvalidSpec".into(),
            note: message.chars().take(1000).collect(),
        },
        ctx,
    )
    .await;
    let status = set_status::finish(
        MigrationSetStatus::default(),
        &Health::Stalled {
            reason: "InvalidSpec".into(),
            message,
        },
        obj.meta().generation,
        None,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let api: Api<MigrationSet> = Api::namespaced(
        ctx.shared.client.clone(),
        obj.meta().namespace.as_deref().unwrap_or("default"),
    );
    api.patch_status(
        obj.meta().name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    ctx.shared.metrics.wrote("status");
    ctx.shared.remember(
        &key,
        Some(Memo {
            fingerprint: rv,
            next_check: Instant::now(),
        }),
    );
    Ok(Action::await_change())
}
