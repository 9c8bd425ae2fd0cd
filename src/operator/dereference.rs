//! Step 1 of a reconcile: gather what a set reads — its migrations and
//! ConfigMaps from the caches, the Secrets it names read by name (the
//! operator caches no Secret) — and fingerprint them so that a reconcile
//! with nothing new can stop here.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use chmigrate::k8s::crd::{ClickHouseMigration, MigrationSet};
use chmigrate::k8s::manifest::{self, InvalidMigration, Manifests};

use super::context::Stores;

/// A set's inputs.
pub struct Inputs {
    pub manifests: Manifests,
    /// The migration objects the set selects (for their status).
    pub selected: Vec<Arc<ClickHouseMigration>>,
    /// Objects of the namespace whose status still names this set but that
    /// it no longer selects.
    pub stale: Vec<Arc<ClickHouseMigration>>,
    /// Changes whenever anything the set's outcome depends on changes; never
    /// contains a secret (only its hash). Kept in memory only.
    pub fingerprint: String,
    /// The same without the Secrets: written to status as
    /// `observedInputs`, so that a change is seen across restarts.
    pub digest: String,
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn inputs(
    set: &MigrationSet,
    stores: &Stores,
    client: &Client,
    policy: &chmigrate::k8s::reconcile::Policy,
) -> Result<Inputs, kube::Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let mut manifests = Manifests {
        sets: vec![set.clone()],
        ..Default::default()
    };
    let mut selected = Vec::new();
    let mut stale = Vec::new();
    let mut objects = stores.migrations.state();
    objects.sort_by_key(|o| o.name_any());
    for obj in objects {
        if obj.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        let chosen = manifest::set_uses(
            set,
            "ClickHouseMigration",
            &ns,
            &obj.name_any(),
            obj.labels(),
        );
        match &obj.0 {
            Ok(m) => {
                if chosen {
                    selected.push(Arc::new(m.clone()));
                    manifests.migrations.push(m.clone());
                } else if m
                    .status
                    .as_ref()
                    .is_some_and(|s| s.sets.iter().any(|e| e.set == name))
                {
                    stale.push(Arc::new(m.clone()));
                }
            }
            Err(invalid) => manifests.invalid_migrations.push(InvalidMigration {
                namespace: ns.clone(),
                name: obj.name_any(),
                labels: obj.labels().clone(),
                error: invalid.error.clone(),
            }),
        }
    }
    for cm in stores.config_maps.state() {
        if cm.namespace().as_deref() == Some(ns.as_str())
            && set.spec.config_maps.contains(&cm.name_any())
        {
            manifests.config_maps.push((*cm).clone());
        }
    }
    // Read by name, only those the set names (a missing one is reported by
    // the validate step); changes are seen on the next reconcile. A set
    // whose target the operator refuses gets none read at all.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let refused =
        chmigrate::k8s::guard::check(set, &policy.allowed_urls, policy.require_tls).is_err();
    let names = if refused {
        Vec::new()
    } else {
        manifest::secret_names(set)
    };
    for name in names {
        if let Some(s) = secrets.get_opt(&name).await? {
            manifests.secrets.push(s);
        }
    }
    manifests.config_maps.sort_by_key(|c| c.name_any());
    manifests.secrets.sort_by_key(|s| s.name_any());
    let digest = sha(json!({
        "generation": set.metadata.generation,
        "spec": set.spec,
        "migrations": manifests.migrations.iter().map(|m| json!([m.name_any(), m.spec])).collect::<Vec<_>>(),
        "invalid": manifests.invalid_migrations.iter().map(|m| json!([m.name, m.error])).collect::<Vec<_>>(),
        "configMaps": manifests.config_maps.iter().map(|c| json!([c.name_any(), c.data])).collect::<Vec<_>>(),
    })
    .to_string()
    .as_bytes());
    let fingerprint = sha(json!({
        "digest": digest,
        "secrets": manifests.secrets.iter().map(|s| {
            let data = serde_json::to_vec(&(&s.data, &s.string_data)).unwrap_or_default();
            json!([s.name_any(), sha(&data)])
        }).collect::<Vec<_>>(),
    })
    .to_string()
    .as_bytes());
    // Short enough to read in status, long enough to never collide.
    let digest = digest.chars().take(16).collect();
    Ok(Inputs {
        manifests,
        selected,
        stale,
        fingerprint,
        digest,
    })
}
