//! The custom resources (group `chmigrate.io`, version `v1alpha1`):
//! `MigrationSet` (a ClickHouse target and its policy) and
//! `ClickHouseMigration` (one migration). Pure types; `chmigrate crd` prints
//! their definitions, which are committed under `crds/`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::sql::statement::OnClusterMode;

/// API group of every chmigrate resource.
pub const GROUP: &str = "chmigrate.io";

/// A key of a Secret in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key in the Secret's data.
    pub key: String,
}

/// How to log in. The password comes from a Secret, never inline; say
/// `passwordless: true` for a user without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.passwordSecretRef) != (has(self.passwordless) && self.passwordless)").message("set exactly one source of a password: passwordSecretRef, or passwordless: true"))]
pub struct Credentials {
    /// ClickHouse user.
    #[serde(default = "default_user")]
    pub user: String,
    /// Secret key holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// The user has no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwordless: Option<bool>,
}

fn default_user() -> String {
    "default".into()
}

/// TLS for `https://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret key holding the CA certificate(s) (PEM) to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Skip certificate verification (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The ClickHouse target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// HTTP(S) URL of an entry node.
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("url must start with http:// or https://"))]
    pub url: String,
    /// Target database.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_.-]{1,200}$')").message("database: letters, digits, '_', '-', '.'"))]
    pub database: String,
    /// Cluster for `ON CLUSTER` DDL; empty for a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Login.
    pub credentials: Credentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// What deleting a MigrationSet does to the schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the schema alone (default).
    #[default]
    Retain,
    /// Roll everything back first (preview environments), behind a finalizer.
    Rollback,
}

/// How the set may change its target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Allow rolling back (refused when the operator forbids it).
    #[serde(default)]
    pub allow_rollback: bool,
    /// Apply migrations older than the newest applied one.
    #[serde(default)]
    pub out_of_order: bool,
    #[serde(default)]
    pub on_cluster: OnClusterMode,
    /// Seconds to wait for every host of an `ON CLUSTER` statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ddl_timeout_seconds: Option<u32>,
    /// Plan only: the plan goes into status.
    #[serde(default)]
    pub dry_run: bool,
    /// Do nothing until resumed.
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// How migrations without their own strategy are rolled back:
    /// `script`, `freeze-and-drop`, `forward-only`; default: the operator's
    /// (Helm value `rollbackStrategy`), else `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_strategy: Option<crate::model::strategy::RollbackStrategy>,
    /// `freeze`: freeze every table a statement drops or rewrites, on every
    /// host, before the statement runs.
    #[serde(default)]
    pub backup: crate::ledger::backups::BackupPolicy,
    /// Migrations run at once (independent ones, in waves; 1: serial);
    /// default: the operator's (Helm value `parallel`), else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub parallel: Option<u16>,
    /// On the periodic recheck, bring hosts of the cluster that lack
    /// objects of the applied migrations up to them, as `chmigrate
    /// sync-hosts` would (differences it cannot repair safely stay
    /// reported as `SchemaDrift`).
    #[serde(default)]
    pub sync_hosts: bool,
}

/// A ClickHouse target, its migrations and its policy.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chmigrate.io",
    version = "v1alpha1",
    kind = "MigrationSet",
    namespaced,
    status = "MigrationSetStatus",
    shortname = "chms",
    shortname = "migrationset",
    category = "chmigrate",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.connection.cluster"}"#,
    printcolumn = r#"{"name":"Applied","type":"string","jsonPath":".status.appliedVersion"}"#,
    printcolumn = r#"{"name":"Latest","type":"string","jsonPath":".status.latestVersion"}"#,
    printcolumn = r#"{"name":"Pending","type":"integer","jsonPath":".status.pendingCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSetSpec {
    pub connection: ConnectionSpec,
    /// Ledger table [default: schema_migrations].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_-]{1,200}$')").message("historyTable: letters, digits, '_' or '-'"))]
    pub history_table: Option<String>,
    /// ClickHouseMigrations in this namespace that belong to the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// ConfigMaps in this namespace whose keys are migration files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_maps: Vec<String>,
    /// Environment name used for `Environment:` filters and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9_-]{1,63}$')").message("environment: lowercase letters, digits, '-' or '_'"))]
    pub environment: Option<String>,
    /// Stop at this version; below the applied version means roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)*$')").message("targetVersion: numbers separated by dots, e.g. 3 or 1.10"))]
    pub target_version: Option<String>,
    /// Values for `${name}` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Secrets whose keys become `${variables}`; their values are masked as
    /// `***` in plans, status, Events, logs and the ledger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables_from: Vec<VariablesFrom>,
    #[serde(default)]
    pub policy: PolicySpec,
}

/// A Secret of the set's namespace whose keys are variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VariablesFrom {
    /// The Secret (labelled `chmigrate.io/credentials: "true"`).
    pub secret_ref: LocalSecretRef,
    /// Prepended to every key: `prefix` + key is the variable's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A Secret in the resource's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretRef {
    /// Secret name.
    pub name: String,
}

/// One host's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub host: String,
    /// Statements this host has not finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_statements: Vec<String>,
}

/// Who holds the target's lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    pub holder: String,
    pub age_seconds: u64,
}

/// The last run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub started: String,
    pub finished: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rolled_back: Vec<String>,
}

/// One planned step (dry runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    pub action: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    /// Statements left out to keep the status small (`chmigrate plan`
    /// shows them all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted_statements: Option<u32>,
}

/// What a person or a machine reads at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Digest of what the last reconcile read (spec, migrations,
    /// ConfigMaps; never Secrets): when it differs from what the operator
    /// sees now, the set is `Reconciling` before any SQL runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_inputs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    #[serde(default)]
    pub pending_count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedStep>,
    /// Hosts whose schema differs from the applied migrations' (found on
    /// the periodic recheck).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted_hosts: Vec<DriftedHost>,
}

/// A host of the cluster that lacks or differs from the migrated schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftedHost {
    pub host: String,
    /// Each difference: `db.table: missing`, `db.t.c: extra column (found String)`.
    pub drift: Vec<String>,
}

/// One migration.
#[derive(CustomResource, Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chmigrate.io",
    version = "v1alpha1",
    kind = "ClickHouseMigration",
    namespaced,
    status = "ClickHouseMigrationStatus",
    shortname = "chm",
    shortname = "chmigration",
    shortname = "chmigrations",
    category = "chmigrate",
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Set","type":"string","jsonPath":".status.set"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".status.hosts"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClickHouseMigrationSpec {
    /// `3`, `1.10`, `20250528120000`.
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)*$')").message("version: numbers separated by dots, e.g. 3 or 1.10"))]
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// Forward SQL; statements separated by `;`.
    #[x_kube(validation = Rule::new("size(self.trim()) > 0").message("up must hold at least one statement"))]
    pub up: String,
    /// Rollback SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// Versions that must be applied first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Environments it runs in (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// How it is rolled back; default: the set's `policy.rollbackStrategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_strategy: Option<crate::model::strategy::RollbackStrategy>,
}

/// Phase of a migration in one set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Applied,
    Failed,
    RolledBack,
    Skipped,
}

/// A migration's state in one set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetStatus {
    pub set: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub hosts_done: u32,
    pub hosts_total: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The migration's generation this set's entry was written for: an
    /// older one means this set has not seen the latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status of a ClickHouseMigration: one entry per set that includes it, and
/// the first one's summary for `kubectl get`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClickHouseMigrationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `done/total` hosts, e.g. `4/4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<SetStatus>,
    /// The generation the operator last wrote this status for: older than
    /// `metadata.generation` means the change is not applied yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` (kstatus) over every set that
    /// includes the migration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Every field path of a CRD's schema (`spec.connection.url`,
/// `status.conditions[]`, …) for each served version, as `version:path`.
fn field_paths(crd: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(node: &serde_json::Value, path: &str, out: &mut std::collections::BTreeSet<String>) {
        if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(p.clone());
                walk(v, &p, out);
            }
        }
        if let Some(items) = node.get("items") {
            walk(items, &format!("{path}[]"), out);
        }
        if let Some(extra) = node.get("additionalProperties").filter(|a| a.is_object()) {
            walk(extra, &format!("{path}{{}}"), out);
        }
    }
    let mut out = std::collections::BTreeSet::new();
    for v in crd
        .pointer("/spec/versions")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let name = v.get("name").and_then(|n| n.as_str()).unwrap_or_default();
        let mut paths = std::collections::BTreeSet::new();
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            walk(schema, "", &mut paths);
        }
        out.extend(paths.into_iter().map(|p| format!("{name}:{p}")));
    }
    out
}

/// The fields this release's CRD `wanted` has that the `installed` one
/// (read from the API server) lacks: an operator writing them would have
/// them pruned without a word, so it refuses to start.
pub fn missing_fields(installed: &serde_json::Value, wanted: &serde_json::Value) -> Vec<String> {
    let have = field_paths(installed);
    field_paths(wanted)
        .into_iter()
        .filter(|p| !have.contains(p))
        .collect()
}

/// This release's CRDs: `(name, definition)`.
pub fn definitions() -> Vec<(String, serde_json::Value)> {
    use kube::CustomResourceExt;
    [MigrationSet::crd(), ClickHouseMigration::crd()]
        .into_iter()
        .map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            (name, serde_json::to_value(&c).unwrap_or_default())
        })
        .collect()
}

/// Both CRDs as one multi-document YAML, as `crds/` holds them.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let mut out = String::new();
    for crd in [MigrationSet::crd(), ClickHouseMigration::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    /// Every schema node an API server would reject as non-structural.
    fn non_structural(v: &Value, path: &str, out: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        let ok = obj.contains_key("type")
            || obj.contains_key("x-kubernetes-preserve-unknown-fields")
            || obj.contains_key("x-kubernetes-int-or-string");
        if !ok {
            out.push(format!("{path}: no type"));
        }
        for bad in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(bad).and_then(Value::as_array) {
                // Allowed only as value validations under a typed node, with
                // no types of their own.
                if !obj.contains_key("type") || list.iter().any(|b| b.get("type").is_some()) {
                    out.push(format!("{path}: bare {bad}"));
                }
            }
        }
        if obj.get("type") == Some(&Value::from("object"))
            && !obj.contains_key("properties")
            && !obj.contains_key("additionalProperties")
            && !obj.contains_key("x-kubernetes-preserve-unknown-fields")
        {
            out.push(format!("{path}: untyped map"));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                non_structural(p, &format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = obj.get("items") {
            non_structural(items, &format!("{path}[]"), out);
        }
        if let Some(ap) = obj.get("additionalProperties").filter(|a| a.is_object()) {
            non_structural(ap, &format!("{path}{{}}"), out);
        }
    }

    #[test]
    fn schemas_are_structural() {
        for crd in [MigrationSet::crd(), ClickHouseMigration::crd()] {
            let v = serde_json::to_value(&crd).unwrap();
            let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let mut problems = Vec::new();
            non_structural(schema, &crd.spec.names.kind, &mut problems);
            assert!(problems.is_empty(), "{problems:#?}");
        }
    }

    #[test]
    fn names_columns_and_rules() {
        let ms = MigrationSet::crd();
        assert_eq!(ms.spec.group, GROUP);
        assert_eq!(ms.spec.names.short_names.as_deref().unwrap()[0], "chms");
        let chm = ClickHouseMigration::crd();
        let shorts = chm.spec.names.short_names.clone().unwrap();
        assert!(
            shorts.contains(&"chmigrations".to_string()) && shorts.contains(&"chm".to_string())
        );
        let cols = |c: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| -> Vec<String> {
            c.spec.versions[0]
                .additional_printer_columns
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.name.to_uppercase())
                .collect()
        };
        assert_eq!(cols(&chm), ["VERSION", "SET", "PHASE", "HOSTS", "AGE"]);
        assert_eq!(
            cols(&ms),
            ["CLUSTER", "APPLIED", "LATEST", "PENDING", "READY", "AGE"]
        );
        let yaml = crds_yaml().unwrap();
        assert!(yaml.contains("x-kubernetes-validations"));
        assert!(yaml.contains("set exactly one source of a password"));
        assert!(yaml.contains("subresources"));
    }

    /// Every `x-kubernetes-validations` rule under `v`: (path, rule, message).
    fn rules(v: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
        let Some(obj) = v.as_object() else { return };
        for r in obj
            .get("x-kubernetes-validations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            out.push((path.to_string(), s("rule"), s("message")));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                rules(p, &format!("{path}.{k}"), out);
            }
        }
        if let Some(items) = obj.get("items") {
            rules(items, &format!("{path}[]"), out);
        }
    }

    /// Evaluates one rule with `self` bound to `value`, as the API server's
    /// CEL environment would (standard library plus the strings extension).
    fn eval(rule: &str, value: &Value) -> Result<bool, String> {
        let program = cel::Program::compile(rule).map_err(|e| format!("{rule}: {e}"))?;
        let mut env = cel::Env::stdlib();
        cel::extensions::strings(&mut env).map_err(|e| format!("{e:?}"))?;
        let mut ctx = cel::Context::with_env(std::sync::Arc::new(env));
        ctx.add_variable("self", value.clone())
            .map_err(|e| format!("{e}"))?;
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            other => Err(format!("{rule} on {value}: {other:?}")),
        }
    }

    #[test]
    fn every_cel_rule_admits_good_values_and_refuses_bad_ones() {
        use serde_json::json;
        // Per rule path: values an API server must admit, and values it must
        // refuse with the rule's message. Every rule needs both.
        let cases: Vec<(&str, Vec<Value>, Vec<Value>)> = vec![
            (
                "MigrationSet.spec.connection.credentials",
                vec![
                    json!({"user": "app", "passwordSecretRef": {"name": "ch", "key": "password"}}),
                    json!({"user": "app", "passwordless": true}),
                    json!({"passwordSecretRef": {"name": "ch", "key": "pw"}, "passwordless": false}),
                ],
                vec![
                    json!({"user": "app"}),
                    json!({"user": "app", "passwordless": false}),
                    json!({"passwordSecretRef": {"name": "ch", "key": "pw"}, "passwordless": true}),
                ],
            ),
            (
                "MigrationSet.spec.connection.url",
                vec![
                    json!("http://clickhouse:8123"),
                    json!("https://ch.example:8443"),
                ],
                vec![
                    json!("clickhouse:8123"),
                    json!("tcp://clickhouse:9000"),
                    json!("HTTP://x"),
                    json!(""),
                ],
            ),
            (
                "MigrationSet.spec.connection.database",
                vec![json!("analytics"), json!("team-a.events_2"), json!("_x")],
                vec![
                    json!(""),
                    json!("a b"),
                    json!("x`; DROP DATABASE y"),
                    json!("db\nname"),
                    json!("é"),
                    json!("a".repeat(201)),
                ],
            ),
            (
                "MigrationSet.spec.environment",
                vec![json!("production"), json!("preview-42"), json!("dev_1")],
                vec![
                    json!("Production"),
                    json!(""),
                    json!("prod env"),
                    json!("a".repeat(64)),
                ],
            ),
            (
                "MigrationSet.spec.historyTable",
                vec![json!("schema_migrations"), json!("ledger-2")],
                vec![
                    json!("db.table"),
                    json!("x`y"),
                    json!(""),
                    json!("a".repeat(201)),
                ],
            ),
            (
                "MigrationSet.spec.targetVersion",
                vec![json!("3"), json!("1.10"), json!("2026.12.02")],
                vec![
                    json!("v3"),
                    json!("1."),
                    json!(".1"),
                    json!("1..2"),
                    json!(""),
                    json!("1 2"),
                ],
            ),
            (
                "ClickHouseMigration.spec.version",
                vec![json!("1"), json!("1.2.3"), json!("0010")],
                vec![json!("V1"), json!("1-2"), json!("1.x"), json!("")],
            ),
            (
                "ClickHouseMigration.spec.up",
                vec![
                    json!("CREATE TABLE t (x UInt8) ENGINE = Memory"),
                    json!(" SELECT 1 "),
                ],
                vec![json!(""), json!("   "), json!("\n\t \n")],
            ),
        ];
        let mut found = Vec::new();
        for crd in [MigrationSet::crd(), ClickHouseMigration::crd()] {
            let v = serde_json::to_value(&crd).unwrap();
            let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            rules(schema, &crd.spec.names.kind, &mut found);
        }
        assert!(found.len() >= cases.len(), "{found:#?}");
        for (path, rule, message) in &found {
            let Some((_, good, bad)) = cases.iter().find(|(p, _, _)| p == path) else {
                panic!("rule at {path} ({rule}) has no test cases: add some above");
            };
            assert!(!good.is_empty() && !bad.is_empty(), "{path}");
            assert!(!message.is_empty(), "{path}: a rule needs a message");
            for g in good {
                assert_eq!(eval(rule, g), Ok(true), "{path} must admit {g}");
            }
            for b in bad {
                assert_eq!(
                    eval(rule, b),
                    Ok(false),
                    "{path} must refuse {b} ({message})"
                );
            }
        }
        for (path, _, _) in &cases {
            assert!(
                found.iter().any(|(p, _, _)| p == path),
                "no rule at {path} any more: {found:#?}"
            );
        }
    }

    #[test]
    fn an_older_installed_crd_is_missing_the_new_fields() {
        let defs = definitions();
        let (name, wanted) = &defs[0];
        assert_eq!(name, "migrationsets.chmigrate.io");
        assert!(missing_fields(wanted, wanted).is_empty());
        let mut old = wanted.clone();
        let spec = old
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties")
            .and_then(Value::as_object_mut)
            .unwrap();
        spec.remove("variablesFrom");
        let status = old
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties")
            .and_then(Value::as_object_mut)
            .unwrap();
        status.remove("observedInputs");
        let missing = missing_fields(&old, wanted);
        assert!(
            missing.contains(&"v1alpha1:spec.variablesFrom".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"v1alpha1:spec.variablesFrom[].secretRef.name".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"v1alpha1:status.observedInputs".to_string()),
            "{missing:?}"
        );
        // Nothing installed at that version at all: everything is missing.
        assert!(missing_fields(&json!({}), wanted).len() > 20);
    }

    #[test]
    fn committed_crds_match_the_code() {
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/chmigrate.yaml"
        ))
        .expect(
            "crds/chmigrate.yaml exists (regenerate with `chmigrate crd > crds/chmigrate.yaml`)",
        );
        assert!(
            committed == crds_yaml().unwrap(),
            "crds/chmigrate.yaml is stale: run `cargo run -- crd > crds/chmigrate.yaml`"
        );
    }

    #[test]
    fn manifests_read_back() {
        let yaml = r#"
apiVersion: chmigrate.io/v1alpha1
kind: ClickHouseMigration
metadata: { name: add-users, namespace: team-a, labels: { set: quickstart } }
spec:
  version: "1.10"
  up: CREATE TABLE t (x UInt8) ENGINE = Memory
  dependsOn: ["1"]
"#;
        let m: ClickHouseMigration = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(m.spec.version, "1.10");
        assert_eq!(m.spec.depends_on, ["1"]);
        assert_eq!(m.spec.down, None);
    }
}
