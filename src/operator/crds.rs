//! At start: the installed CRDs must carry every field this release
//! writes. Helm never upgrades a chart's `crds/` folder, and an API server
//! silently prunes fields its schema lacks, so an operator newer than its
//! CRDs would lose status and spec fields without a word. It refuses to
//! start instead, naming the fields.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;

use chmigrate::k8s::crd;

/// Checks every CRD of this release against the installed one. A CRD the
/// operator may not read (RBAC) or that is absent is logged, not fatal:
/// the watches then fail loudly on their own.
pub async fn check(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut stale = Vec::new();
    for (name, wanted) in crd::definitions() {
        match api.get_opt(&name).await {
            Ok(Some(installed)) => {
                let installed = serde_json::to_value(&installed).unwrap_or_default();
                let missing = crd::missing_fields(&installed, &wanted);
                if !missing.is_empty() {
                    stale.push(format!("{name} lacks {}", missing.join(", ")));
                }
            }
            Ok(None) => tracing::error!(
                crd = %name,
                "the CRD is not installed: install the chart (crds.install: true) or `kubectl apply -f crds/chmigrate.yaml`"
            ),
            Err(e) => {
                tracing::warn!(crd = %name, error = %e, "cannot read the installed CRD to check its fields")
            }
        }
    }
    if !stale.is_empty() {
        let msg = format!(
            "the installed CRDs are older than this operator: {}. Upgrade them first \
             (`helm upgrade` with crds.install: true, or `kubectl apply -f crds/chmigrate.yaml`)",
            stale.join("; ")
        );
        tracing::error!("{msg}");
        anyhow::bail!(msg);
    }
    Ok(())
}
