//! The reconcile of one `MigrationSet`, as a pipeline, one module a step:
//! [`dereference`](super::dereference) (the caches) →
//! [`validate`](super::validate) (schema, finalizer) →
//! [`apply`](super::apply) (plan and apply through the engine, shared with
//! `chmigrate apply -f`) → [`status`](super::status) (the set, its
//! migrations, Events, metrics). Nothing is written when nothing changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;

use chmigrate::k8s::crd::{DeletionPolicy, MigrationSet};

use super::context::{Ctx, FINALIZER, Memo, RELEASE_ANNOTATION, key_of};
use super::dereference;
use super::error::{Error, retry_error};
use super::metrics::ResultLabels;
use super::status::{event, mark_reconciling, publish, write_migration_statuses};
use super::{apply, validate};
use chmigrate::k8s::manifest;
use chmigrate::k8s::set_status::Notice;

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
        Err(invalid) => {
            return validate::invalid_set(obj, invalid, ctx)
                .await
                .map(|a| (a, false));
        }
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
        let released = set
            .annotations()
            .get(RELEASE_ANNOTATION)
            .is_some_and(|v| v == "true");
        if released {
            event(
                set,
                &Notice {
                    warning: true,
                    reason: "FinalizerReleased".into(),
                    note: format!(
                        "{RELEASE_ANNOTATION}=true: the finalizer is released without rolling back; the schema stays as it is"
                    ),
                },
                ctx,
            )
            .await;
        } else if wants_finalizer && !set.spec.policy.dry_run && !apply::cleanup(set, ctx).await? {
            return Ok((Action::requeue(ctx.shared.settings.recheck), false));
        }
        validate::set_finalizer(&api, set, false, ctx).await?;
        ctx.shared.remember(&key, None);
        ctx.shared.keep_secrets(&key, None);
        return Ok((Action::await_change(), false));
    }
    if has_finalizer != wants_finalizer {
        validate::set_finalizer(&api, set, wants_finalizer, ctx).await?;
    }
    let mut inputs = dereference::inputs(
        set,
        &ctx.stores,
        &ctx.shared.client,
        &ctx.shared.settings.policy,
    )
    .await?;
    if wants_finalizer {
        // Only Secrets meant for chmigrate are kept.
        let labelled: Vec<_> = inputs
            .manifests
            .secrets
            .iter()
            .filter(|s| {
                [manifest::CREDENTIALS_LABEL, manifest::VARIABLES_LABEL]
                    .iter()
                    .any(|l| s.labels().get(*l).is_some_and(|v| v == "true"))
            })
            .cloned()
            .collect();
        ctx.shared.keep_secrets(&key, Some(labelled));
    }
    // The same inputs seen before: wait for the recheck; a recheck also
    // checks replica drift.
    let mut recheck = false;
    if let Some(memo) = ctx.shared.memo(&key)
        && memo.fingerprint == inputs.fingerprint
    {
        let now = Instant::now();
        if memo.next_check > now {
            return Ok((Action::requeue(memo.next_check - now), true));
        }
        recheck = true;
    }
    // Inputs the set's status has not seen: say so before any SQL runs.
    let mut seen = set.clone();
    let unseen = set
        .status
        .as_ref()
        .and_then(|s| s.observed_inputs.as_deref())
        != Some(inputs.digest.as_str());
    if unseen && !set.spec.policy.suspend {
        seen.status = Some(mark_reconciling(set, &mut inputs, ctx).await?);
    }
    // One namespace runs at most its share of the slots at once.
    let namespace = seen.namespace().unwrap_or_default();
    let namespaces = ctx
        .stores
        .sets
        .state()
        .iter()
        .filter_map(|s| s.namespace())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let Some(_slot) = ctx.shared.fair.try_acquire(&namespace, namespaces) else {
        tracing::debug!(set = %key, "namespace at its share of reconcile slots; later");
        return Ok((Action::requeue(Duration::from_secs(2)), true));
    };
    let set = &seen;
    let mut result = apply::run(set, &inputs, None, recheck, ctx).await;
    result.status.observed_inputs = Some(inputs.digest.clone());
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
