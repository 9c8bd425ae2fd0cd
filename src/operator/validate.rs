//! Step 2 of a reconcile, validate: a set that does not match the schema is
//! stalled (once per generation), and a set carries the finalizer its
//! deletion policy needs. Its spec and migrations are validated with the
//! engine's settings in [`chmigrate::k8s::reconcile`].

use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use chmigrate::k8s::crd::{MigrationSet, MigrationSetStatus};
use chmigrate::k8s::set_status::{self, Health, Notice};

use super::context::{Ctx, Memo};
use super::context::{FINALIZER, key_of};
use super::error::Error;
use super::status::{event, patch_status};

/// Adds or removes the finalizer with a compare-and-set merge patch.
pub async fn set_finalizer(
    api: &Api<MigrationSet>,
    set: &MigrationSet,
    present: bool,
    ctx: &Ctx,
) -> Result<(), Error> {
    if ctx.shared.settings.is_deposed() {
        return Ok(());
    }
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

/// A MigrationSet that does not match the schema: say so once per
/// resourceVersion, and stall.
pub async fn invalid_set(
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
    patch_status::<MigrationSet, _>(obj.meta(), None, &status, false, "status", ctx).await?;
    ctx.shared.remember(
        &key,
        Some(Memo {
            fingerprint: rv,
            next_check: Instant::now(),
        }),
    );
    Ok(Action::await_change())
}
