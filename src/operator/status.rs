//! Step 5 of a reconcile, update status: the set's status, its migrations'
//! statuses, Events and metrics. Every status goes through one helper,
//! [`patch_status`], which writes nothing when nothing changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use chmigrate::k8s::crd::{ClickHouseMigration, ClickHouseMigrationStatus, MigrationSet};
use chmigrate::k8s::migration_status;
use chmigrate::k8s::reconcile::{SetResult, Verdict};
use chmigrate::k8s::set_status::{self, Notice};
use chmigrate::model::version::Version;

use super::context::Ctx;
use super::dereference::Inputs;
use super::error::Error;
use super::metrics::SetLabels;

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

/// Writes `new` as the status of the `K` named by `meta` (a merge patch of the difference
/// from `old` on the `/status` subresource); nothing when they are equal.
/// With `compare_and_set`, the object's resourceVersion rides along, so
/// two writers never overwrite each other's change.
pub async fn patch_status<K, S>(
    meta: &ObjectMeta,
    old: Option<&S>,
    new: &S,
    compare_and_set: bool,
    what: &str,
    ctx: &Ctx,
) -> Result<Option<K>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(None);
    }
    if ctx.shared.settings.is_deposed() {
        tracing::warn!(what, "not written: this instance is no longer the leader");
        return Ok(None);
    }
    let new_v = serde_json::to_value(new).unwrap_or(Value::Null);
    let status = match old.map(serde_json::to_value) {
        Some(Ok(o)) => merge_diff(&o, &new_v),
        _ => new_v,
    };
    let mut body = json!({ "status": status });
    if compare_and_set {
        body["metadata"] = json!({ "resourceVersion": meta.resource_version });
    }
    let api: Api<K> = Api::namespaced(
        ctx.shared.client.clone(),
        meta.namespace.as_deref().unwrap_or("default"),
    );
    let written = api
        .patch_status(
            meta.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(body),
        )
        .await?;
    ctx.shared.metrics.wrote(what);
    Ok(Some(written))
}

/// Publishes a Kubernetes Event on `obj` (a failure is logged, not fatal).
pub async fn event<K: Resource<DynamicType = ()>>(obj: &K, n: &Notice, ctx: &Ctx) {
    if ctx.shared.settings.is_deposed() {
        return;
    }
    let ev = KubeEvent {
        type_: if n.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: n.reason.clone(),
        note: Some(set_status::event_note(&n.note)),
        action: "Reconcile".into(),
        secondary: None,
    };
    match ctx.shared.recorder.publish(&ev, &obj.object_ref(&())).await {
        Ok(()) => ctx.shared.metrics.wrote("event"),
        Err(e) => tracing::warn!(error = %e, reason = %n.reason, "could not publish an event"),
    }
}

/// Writes the outcome: metrics, the Events a change of state calls for,
/// and the set's status.
pub async fn publish(set: &MigrationSet, result: &SetResult, ctx: &Ctx) -> Result<(), Error> {
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
    if result.failed_version.is_some() || result.verdict == Verdict::Failed {
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
    patch_status::<MigrationSet, _>(
        &set.metadata,
        set.status.as_ref(),
        &result.status,
        false,
        "status",
        ctx,
    )
    .await
    .map(|_| ())
}

/// The entry of the set `name` in a migration's status.
fn own_entry(m: &ClickHouseMigration, name: &str) -> Option<chmigrate::k8s::crd::SetStatus> {
    m.status
        .as_ref()
        .and_then(|s| s.sets.iter().find(|e| e.set == name).cloned())
}

/// Before any SQL runs for inputs the set has not seen: the set becomes
/// `Ready=False`/`Reconciling=True`, and each selected migration this set's
/// entry has not caught up with (new, or changed since) becomes `Pending`
/// in it, so that `kubectl wait`, Flux and Argo CD never pass on a `Ready`
/// that predates the change. Returns the set's status as written.
pub async fn mark_reconciling(
    set: &MigrationSet,
    inputs: &mut Inputs,
    ctx: &Ctx,
) -> Result<chmigrate::k8s::crd::MigrationSetStatus, Error> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let status = set_status::reconciling(set.status.as_ref(), set.metadata.generation, now);
    patch_status::<MigrationSet, _>(
        &set.metadata,
        set.status.as_ref(),
        &status,
        false,
        "status",
        ctx,
    )
    .await?;
    let name = set.name_any();
    for m in inputs.selected.iter_mut() {
        // This set's own entry must have seen the migration's generation
        // (another set's write does not count). Dry runs apply nothing.
        let current = m.status.as_ref().is_some_and(|s| {
            s.sets
                .iter()
                .any(|e| e.set == name && e.observed_generation == m.metadata.generation)
        });
        if current || set.spec.policy.dry_run {
            continue;
        }
        let mut entry = own_entry(m, &name).unwrap_or_default();
        entry.set = name.clone();
        entry.phase = chmigrate::k8s::crd::Phase::Pending;
        entry.hosts_done = 0;
        entry.observed_generation = m.metadata.generation;
        let new = migration_status::merge(
            m.status.as_ref(),
            &name,
            Some(entry),
            m.metadata.generation,
            now,
        );
        if let Some(written) = patch_status::<ClickHouseMigration, _>(
            &m.metadata,
            m.status.as_ref(),
            &new,
            true,
            "migration_status",
            ctx,
        )
        .await?
        {
            // The final write compares against (and sets) this version.
            *m = std::sync::Arc::new(written);
        }
    }
    Ok(status)
}

/// Updates each selected migration's entry for this set (and drops the
/// entry from migrations the set no longer selects).
pub async fn write_migration_statuses(
    set: &MigrationSet,
    inputs: &Inputs,
    result: &SetResult,
    ctx: &Ctx,
) -> Result<(), Error> {
    let name = set.name_any();
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut changes: Vec<(&ClickHouseMigration, ClickHouseMigrationStatus)> = Vec::new();
    // A dry run or a suspended set applies nothing: it leaves its
    // migrations' entries alone instead of showing them pending forever.
    let idle = set.spec.policy.dry_run || set.spec.policy.suspend;
    // A set that stalled before running anything (its target refused, a
    // bad spec): entries waiting on it fail with its reason.
    let stalled = result.facts.is_none().then(|| {
        result
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
            .map(|c| format!("the set is stalled: {}: {}", c.reason, c.message))
    });
    for m in &inputs.selected {
        let Ok(version) = Version::parse(&m.spec.version) else {
            continue;
        };
        if idle {
            continue;
        }
        let previous = own_entry(m, &name);
        let entry = match (&result.facts, &result.failed_version) {
            (Some(f), _) => migration_status::set_entry(&version, f),
            (None, Some((v, err))) if *v == version => {
                let mut e = previous.clone().unwrap_or_default();
                e.set = name.clone();
                e.phase = chmigrate::k8s::crd::Phase::Failed;
                e.last_error = Some(err.chars().take(2000).collect());
                e
            }
            (None, _) => match (previous, &stalled) {
                (Some(mut e), Some(Some(why)))
                    if e.phase == chmigrate::k8s::crd::Phase::Pending =>
                {
                    e.phase = chmigrate::k8s::crd::Phase::Failed;
                    e.last_error = Some(why.chars().take(2000).collect());
                    e
                }
                _ => continue,
            },
        };
        let entry = chmigrate::k8s::crd::SetStatus {
            observed_generation: m.metadata.generation,
            ..entry
        };
        changes.push((
            m,
            migration_status::merge(
                m.status.as_ref(),
                &name,
                Some(entry),
                m.metadata.generation,
                now,
            ),
        ));
    }
    for m in &inputs.stale {
        let generation = m.metadata.generation;
        let new = migration_status::merge(m.status.as_ref(), &name, None, generation, now);
        changes.push((m, new));
    }
    for (m, new) in changes {
        // Compare-and-set: two sets that share a migration never overwrite
        // each other's entry.
        patch_status::<ClickHouseMigration, _>(
            &m.metadata,
            m.status.as_ref(),
            &new,
            true,
            "migration_status",
            ctx,
        )
        .await?;
    }
    Ok(())
}
