//! Steps 3 and 4 of a reconcile, plan and apply: the set's reconcile
//! ([`chmigrate::k8s::reconcile`]: its spec validated, planned and applied
//! through the engine) run as this operator instance, and the roll-back of
//! a deleted set whose policy asks for it.

use kube::ResourceExt;

use chmigrate::engine::{RunContext, StaleLocks, TargetSpec};
use chmigrate::k8s::crd::MigrationSet;
use chmigrate::k8s::reconcile::{self, SetResult};
use chmigrate::k8s::set_status::{self, Notice};
use chmigrate::model::version::Version;

use super::context::Ctx;
use super::context::key_of;
use super::dereference::{self, Inputs};
use super::error::{Error, retry_error};
use super::status::{event, publish, write_migration_statuses};

/// Who this instance is when it runs a set: the ledger's actor, which
/// locks it may take over (its own, left by an instance that is gone), and
/// the process's stop flag.
fn run_context(set: &MigrationSet, ctx: &Ctx) -> RunContext {
    let settings = &ctx.shared.settings;
    let term = settings
        .term
        .map(|t| format!(", term {t}"))
        .unwrap_or_default();
    RunContext {
        actor: format!("operator:{} ({}{term})", key_of(set), settings.identity),
        stale_locks: Some(StaleLocks {
            holder_prefix: format!("operator:{} (", key_of(set)),
            identity: settings.identity.clone(),
            leader: settings.leader,
            started_us: settings.started_us,
            term: settings.term,
        }),
        stop: settings.stop.clone(),
        fence: settings.leader,
    }
}

/// Runs the set through the engine towards `target` (else its spec).
///
/// `recheck`: the periodic recheck of a set whose inputs did not change,
/// the only reconcile that checks replica drift.
pub async fn run(
    set: &MigrationSet,
    inputs: &Inputs,
    target: Option<TargetSpec>,
    recheck: bool,
    ctx: &Ctx,
) -> SetResult {
    reconcile::reconcile_to(
        set,
        &inputs.manifests,
        &ctx.shared.settings.policy,
        target,
        recheck,
        &run_context(set, ctx),
    )
    .await
}

/// Deletion with `deletionPolicy: Rollback`: roll every migration back.
/// Returns whether the schema is clean so the finalizer can go.
pub async fn cleanup(set: &MigrationSet, ctx: &Ctx) -> Result<bool, Error> {
    let mut s = set.clone();
    // The author chose to roll back on deletion; the operator's own
    // prohibition (production) still wins inside the engine.
    s.spec.policy.allow_rollback = true;
    s.spec.target_version = None;
    // A namespace being deleted takes its ConfigMaps, migrations and
    // Secrets with it, in no order: what is gone is rolled back from the
    // ledger's record, with the credentials last used.
    let ns = set.namespace().unwrap_or_default();
    s.spec.config_maps.retain(|name| {
        ctx.stores
            .config_maps
            .state()
            .iter()
            .any(|c| c.namespace().as_deref() == Some(ns.as_str()) && &c.name_any() == name)
    });
    let mut inputs = dereference::inputs(
        &s,
        &ctx.stores,
        &ctx.shared.client,
        &ctx.shared.settings.policy,
    )
    .await?;
    ctx.shared
        .fill_kept_secrets(&key_of(set), &mut inputs.manifests.secrets);
    let mut result = run(
        &s,
        &inputs,
        Some(TargetSpec::Version(Version::zero())),
        false,
        ctx,
    )
    .await;
    if !set_status::is_ready(&result.status) {
        set_status::append_to_ready_message(
            &mut result.status,
            &format!(
                " — the set cannot be rolled back for its deletion; to delete it anyway, \
                 leaving the schema as it is: kubectl annotate migrationset {} {}=true",
                set.name_any(),
                super::context::RELEASE_ANNOTATION
            ),
        );
    }
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
        tracing::info!(set = %set.name_any(), "rolled back for deletion");
        return Ok(true);
    }
    match retry_error(set, &result) {
        Some(e) => Err(e),
        None => Ok(false),
    }
}
