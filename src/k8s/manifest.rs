//! Kubernetes manifests read from files (pure): `MigrationSet`,
//! `ClickHouseMigration`, `Secret` and `ConfigMap` documents, the
//! migrations a set selects, and the values its Secret references name.
//! `chmigrate apply -f` and the operator both build a set's inputs here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use crate::k8s::crd::{ClickHouseMigration, MigrationSet, SecretKeyRef};
use crate::k8s::guard::Refusal;
use crate::source::memory::{MemoryMigration, from_files, from_memory};
use crate::source::{DEFAULT_MAX_FILE_BYTES, Loaded};

/// Everything read from a set of manifest files.
#[derive(Debug, Default)]
pub struct Manifests {
    pub sets: Vec<MigrationSet>,
    pub migrations: Vec<ClickHouseMigration>,
    pub secrets: Vec<Secret>,
    pub config_maps: Vec<ConfigMap>,
    /// `ClickHouseMigration` objects that could not be read as one (the
    /// operator's `DeserializeGuard`); a set that selects one is blocked.
    pub invalid_migrations: Vec<InvalidMigration>,
}

/// A `ClickHouseMigration` object whose body does not match the schema.
#[derive(Debug, Clone, Default)]
pub struct InvalidMigration {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub error: String,
}

/// A document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: document {document}: {message}")]
pub struct ManifestError {
    pub file: String,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    pub message: String,
}

fn ns(meta_ns: Option<String>) -> String {
    meta_ns.unwrap_or_else(|| "default".to_string())
}

/// Parses multi-document YAML files: `(display name, text)`.
pub fn parse(files: &[(String, String)]) -> Result<Manifests, Vec<ManifestError>> {
    use serde::Deserialize;
    let mut m = Manifests::default();
    let mut errors = Vec::new();
    for (file, text) in files {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let err = |message: String| ManifestError {
                file: file.clone(),
                document: i + 1,
                message,
            };
            let value = match serde_yaml::Value::deserialize(doc) {
                Ok(serde_yaml::Value::Null) => continue,
                Ok(v) => v,
                Err(e) => {
                    errors.push(err(e.to_string()));
                    continue;
                }
            };
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            let api = value
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_string();
            fn typed<T: serde::de::DeserializeOwned>(
                v: serde_yaml::Value,
                into: &mut Vec<T>,
            ) -> Result<(), serde_yaml::Error> {
                into.push(serde_yaml::from_value(v)?);
                Ok(())
            }
            let read = match (api.as_str(), kind.as_str()) {
                ("chmigrate.io/v1alpha1", "MigrationSet") => typed(value, &mut m.sets),
                ("chmigrate.io/v1alpha1", "ClickHouseMigration") => typed(value, &mut m.migrations),
                ("v1", "Secret") => typed(value, &mut m.secrets),
                ("v1", "ConfigMap") => typed(value, &mut m.config_maps),
                // Kustomizations of a GitOps folder are not chmigrate's business.
                ("kustomize.config.k8s.io/v1beta1", _) => Ok(()),
                _ => {
                    errors.push(err(format!(
                        "{api}/{kind} is not a resource chmigrate applies (MigrationSet, ClickHouseMigration, Secret, ConfigMap)"
                    )));
                    Ok(())
                }
            };
            if let Err(e) = read {
                errors.push(err(format!("{kind}: {e}")));
            }
        }
    }
    if errors.is_empty() {
        Ok(m)
    } else {
        Err(errors)
    }
}

/// Kubernetes label-selector semantics: a missing selector selects nothing,
/// an empty one everything.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The migrations a set includes: selected `ClickHouseMigration`s of its
/// namespace and the files of its ConfigMaps, through the same sources as
/// files on disk (same checksums, same errors).
pub fn migrations_for(set: &MigrationSet, all: &Manifests) -> Loaded {
    let set_ns = ns(set.namespace());
    let items: Vec<MemoryMigration> = all
        .migrations
        .iter()
        .filter(|m| ns(m.namespace()) == set_ns)
        .filter(|m| {
            set.spec
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, m.labels()))
        })
        .map(|m| MemoryMigration {
            origin: format!("ClickHouseMigration {set_ns}/{}", m.name_any()),
            version: m.spec.version.clone(),
            description: m.spec.description.clone(),
            up: m.spec.up.clone(),
            down: m.spec.down.clone(),
            depends_on: m.spec.depends_on.clone(),
            environments: m.spec.environments.clone(),
            rollback_strategy: m.spec.rollback_strategy.map(|s| s.name().to_string()),
        })
        .collect();
    let mut loaded = from_memory(&items, DEFAULT_MAX_FILE_BYTES);
    for bad in all.invalid_migrations.iter().filter(|b| {
        b.namespace == set_ns
            && set
                .spec
                .selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &b.labels))
    }) {
        loaded.errors.push(crate::source::SourceError::new(
            crate::model::migration::Location::new(
                format!("ClickHouseMigration {set_ns}/{}", bad.name),
                0,
            ),
            crate::source::SourceErrorKind::InvalidResource(bad.error.clone()),
        ));
    }
    let mut files = Vec::new();
    for name in &set.spec.config_maps {
        match all
            .config_maps
            .iter()
            .find(|c| ns(c.namespace()) == set_ns && &c.name_any() == name)
        {
            Some(cm) if !labelled(cm.labels(), MIGRATIONS_LABEL) => {
                loaded.errors.push(crate::source::SourceError::new(
                    crate::model::migration::Location::new(
                        format!("MigrationSet {set_ns}/{}", set.name_any()),
                        0,
                    ),
                    crate::source::SourceErrorKind::InvalidResource(format!(
                        "spec.configMaps: ConfigMap {set_ns}/{name} is not labelled \
                         {MIGRATIONS_LABEL}: \"true\" (the operator reads only labelled ConfigMaps)"
                    )),
                ))
            }
            Some(cm) => {
                for (key, text) in cm.data.iter().flatten() {
                    files.push((
                        format!("ConfigMap {set_ns}/{name} {key}"),
                        key.clone(),
                        text.clone(),
                    ));
                }
            }
            None => loaded.errors.push(crate::source::SourceError::new(
                crate::model::migration::Location::new(
                    format!("MigrationSet {set_ns}/{}", set.name_any()),
                    0,
                ),
                crate::source::SourceErrorKind::InvalidResource(format!(
                    "spec.configMaps: ConfigMap {name} not found in namespace {set_ns} \
                     (it must carry the label {MIGRATIONS_LABEL}: \"true\")"
                )),
            )),
        }
    }
    files.sort();
    let mut from_cm = from_files(&files, DEFAULT_MAX_FILE_BYTES);
    // Versions defined both as resources and as ConfigMap files collide.
    loaded.migrations.append(&mut from_cm.migrations);
    loaded.errors.append(&mut from_cm.errors);
    loaded.migrations.sort_by(|a, b| a.version.cmp(&b.version));
    for w in loaded.migrations.windows(2) {
        if w[0].version == w[1].version {
            loaded.errors.push(crate::source::SourceError::new(
                w[1].location.clone(),
                crate::source::SourceErrorKind::DuplicateVersion {
                    version: w[1].version.clone(),
                    other: w[0].location.clone(),
                },
            ));
        }
    }
    loaded
}

/// The label a Secret must carry before a set may read it (password, CA,
/// `variablesFrom`): someone who may edit a set but not read Secrets can
/// only reach Secrets that were meant for chmigrate.
pub const CREDENTIALS_LABEL: &str = "chmigrate.io/credentials";

/// The label a Secret must carry before its keys may become `${variables}`
/// (`variablesFrom`): a value substituted into SQL can be sent anywhere by
/// the SQL itself (`url()`), so a credentials Secret never qualifies.
pub const VARIABLES_LABEL: &str = "chmigrate.io/variables";

/// The label a ConfigMap must carry to hold a set's migration files (the
/// operator caches only those).
pub const MIGRATIONS_LABEL: &str = "chmigrate.io/migrations";

fn labelled(labels: &BTreeMap<String, String>, label: &str) -> bool {
    labels.get(label).is_some_and(|v| v == "true")
}

/// The Secrets a set reads (password, CA, `variablesFrom`).
pub fn secret_names(set: &MigrationSet) -> Vec<String> {
    let conn = &set.spec.connection;
    let mut names: Vec<String> = conn
        .credentials
        .password_secret_ref
        .iter()
        .chain(conn.tls.iter().flat_map(|t| t.ca_secret_ref.iter()))
        .map(|r| r.name.clone())
        .chain(
            set.spec
                .variables_from
                .iter()
                .map(|v| v.secret_ref.name.clone()),
        )
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether a change to a namespaced object of `kind` named `name` with
/// `labels` can change what `set` does: the operator's watch mapping.
pub fn set_uses(
    set: &MigrationSet,
    kind: &str,
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    if ns(set.namespace()) != namespace {
        return false;
    }
    match kind {
        "ClickHouseMigration" => set
            .spec
            .selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, labels)),
        "ConfigMap" => set.spec.config_maps.iter().any(|c| c == name),
        "Secret" => secret_names(set).iter().any(|s| s == name),
        _ => false,
    }
}

/// A Secret the set may read: present, and labelled `label: "true"`
/// (else `SecretNotAllowed`, and none of its values is used).
fn allowed_secret<'a>(
    all: &'a Manifests,
    namespace: &str,
    name: &str,
    field: &str,
    label: &str,
) -> Result<&'a Secret, Refusal> {
    let secret = all
        .secrets
        .iter()
        .find(|s| ns(s.namespace()) == namespace && s.name_any() == name)
        .ok_or_else(|| Refusal {
            reason: "InvalidSpec",
            message: format!("{field}: Secret {namespace}/{name} not found"),
        })?;
    if !labelled(secret.labels(), label) {
        return Err(Refusal {
            reason: "SecretNotAllowed",
            message: format!(
                "{field}: Secret {namespace}/{name} is not labelled {label}: \"true\"; \
                 chmigrate reads only Secrets meant for it, and nothing was sent"
            ),
        });
    }
    Ok(secret)
}

/// The keys and values of a Secret (`stringData` over `data`).
fn secret_entries(
    secret: &Secret,
    namespace: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    for (k, bytes) in secret.data.iter().flatten() {
        let v = String::from_utf8(bytes.0.clone()).map_err(|_| Refusal {
            reason: "InvalidSpec",
            message: format!(
                "{field}: Secret {namespace}/{} key {k} is not UTF-8",
                secret.name_any()
            ),
        })?;
        out.insert(k.clone(), v);
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// A Secret key's value from the manifests; `field` names the reference
/// (`spec.connection.credentials.passwordSecretRef`, …) in messages.
pub fn secret_value(
    all: &Manifests,
    namespace: &str,
    r: &SecretKeyRef,
    field: &str,
) -> Result<String, Refusal> {
    let secret = allowed_secret(all, namespace, &r.name, field, CREDENTIALS_LABEL)?;
    secret_entries(secret, namespace, field)?
        .remove(&r.key)
        .ok_or_else(|| Refusal {
            reason: "InvalidSpec",
            message: format!(
                "{field}: Secret {namespace}/{} has no key {}",
                r.name, r.key
            ),
        })
}

/// The variables of a set's `variablesFrom` Secrets (`prefix` + key →
/// value). Their values are secrets: the caller masks them.
pub fn secret_variables(
    set: &MigrationSet,
    all: &Manifests,
) -> Result<BTreeMap<String, String>, Refusal> {
    let namespace = ns(set.namespace());
    let mut out = BTreeMap::new();
    for (i, from) in set.spec.variables_from.iter().enumerate() {
        let field = format!("spec.variablesFrom[{i}]");
        let conn = &set.spec.connection;
        let credentials = conn
            .credentials
            .password_secret_ref
            .iter()
            .chain(conn.tls.iter().flat_map(|t| t.ca_secret_ref.iter()))
            .any(|r| r.name == from.secret_ref.name);
        if credentials {
            return Err(Refusal {
                reason: "SecretNotAllowed",
                message: format!(
                    "{field}: Secret {namespace}/{} also holds the set's credentials; \
                     its values cannot become variables",
                    from.secret_ref.name
                ),
            });
        }
        let secret = allowed_secret(
            all,
            &namespace,
            &from.secret_ref.name,
            &field,
            VARIABLES_LABEL,
        )?;
        if labelled(secret.labels(), CREDENTIALS_LABEL) {
            return Err(Refusal {
                reason: "SecretNotAllowed",
                message: format!(
                    "{field}: Secret {namespace}/{} is labelled {CREDENTIALS_LABEL} (credentials); \
                     a credentials Secret's values cannot become variables",
                    from.secret_ref.name
                ),
            });
        }
        for (k, v) in secret_entries(secret, &namespace, &field)? {
            let name = format!("{}{k}", from.prefix.as_deref().unwrap_or_default());
            if !crate::sql::vars::is_variable_name(&name) {
                return Err(Refusal {
                    reason: "InvalidSpec",
                    message: format!(
                        "{field}: Secret {namespace}/{} key {k:?} does not make a variable name \
                         (letters, digits and '_', not starting with a digit)",
                        from.secret_ref.name
                    ),
                });
            }
            out.insert(name, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = r#"
apiVersion: chmigrate.io/v1alpha1
kind: MigrationSet
metadata: { name: qs, namespace: team-a }
spec:
  connection:
    url: http://127.0.0.1:8123
    database: qs
    credentials: { user: chm_secret, passwordSecretRef: { name: ch, key: password } }
  selector: { matchLabels: { set: qs } }
  configMaps: [more]
---
apiVersion: chmigrate.io/v1alpha1
kind: ClickHouseMigration
metadata: { name: m1, namespace: team-a, labels: { set: qs } }
spec: { version: "1", up: "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory" }
---
apiVersion: chmigrate.io/v1alpha1
kind: ClickHouseMigration
metadata: { name: other, namespace: team-a, labels: { set: nope } }
spec: { version: "9", up: "SELECT 1" }
---
apiVersion: chmigrate.io/v1alpha1
kind: ClickHouseMigration
metadata: { name: elsewhere, namespace: team-b, labels: { set: qs } }
spec: { version: "8", up: "SELECT 1" }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: more, namespace: team-a, labels: { chmigrate.io/migrations: "true" } }
data:
  V2__b.sql: "CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${database}.b;"
---
apiVersion: v1
kind: Secret
metadata: { name: ch, namespace: team-a, labels: { chmigrate.io/credentials: "true" } }
data: { password: czNjcmV0LXB3 }
"#;

    fn all() -> Manifests {
        parse(&[("m.yaml".into(), DOCS.into())]).unwrap()
    }

    #[test]
    fn selects_migrations_by_label_namespace_and_configmap() {
        let a = all();
        let loaded = migrations_for(&a.sets[0], &a);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let versions: Vec<String> = loaded
            .migrations
            .iter()
            .map(|m| m.version.to_string())
            .collect();
        assert_eq!(versions, ["1", "2"]);
        assert_eq!(
            loaded.migrations[0].location.to_string(),
            "ClickHouseMigration team-a/m1:1"
        );
        assert_eq!(
            loaded.migrations[1].location.file.as_ref(),
            "ConfigMap team-a/more V2__b.sql"
        );
        assert!(loaded.migrations[1].down.is_some());
    }

    #[test]
    fn maps_changed_objects_back_to_the_sets_that_use_them() {
        let a = all();
        let set = &a.sets[0];
        let qs: BTreeMap<String, String> = [("set".to_string(), "qs".to_string())].into();
        let none = BTreeMap::new();
        assert!(set_uses(set, "ClickHouseMigration", "team-a", "m9", &qs));
        assert!(!set_uses(set, "ClickHouseMigration", "team-b", "m9", &qs));
        assert!(!set_uses(set, "ClickHouseMigration", "team-a", "m9", &none));
        assert!(set_uses(set, "ConfigMap", "team-a", "more", &none));
        assert!(!set_uses(set, "ConfigMap", "team-a", "other", &none));
        assert!(set_uses(set, "Secret", "team-a", "ch", &none));
        assert!(!set_uses(set, "Secret", "team-b", "ch", &none));
        assert_eq!(secret_names(set), ["ch"]);
    }

    #[test]
    fn a_selected_invalid_object_blocks_the_set_and_names_itself() {
        let mut a = all();
        a.invalid_migrations.push(InvalidMigration {
            namespace: "team-a".into(),
            name: "broken".into(),
            labels: [("set".to_string(), "qs".to_string())].into(),
            error: "spec.version: invalid type: integer `3`, expected a string".into(),
        });
        a.invalid_migrations.push(InvalidMigration {
            namespace: "team-a".into(),
            name: "unrelated".into(),
            labels: BTreeMap::new(),
            error: "missing field `up`".into(),
        });
        let loaded = migrations_for(&a.sets[0], &a);
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        let msg = loaded.errors[0].to_string();
        assert!(msg.contains("ClickHouseMigration team-a/broken"), "{msg}");
        assert!(msg.contains("expected a string"), "{msg}");
    }

    #[test]
    fn reads_only_labelled_secrets() {
        let a = all();
        let f = "spec.connection.credentials.passwordSecretRef";
        let r = SecretKeyRef {
            name: "ch".into(),
            key: "password".into(),
        };
        assert_eq!(secret_value(&a, "team-a", &r, f).unwrap(), "s3cret-pw");
        let e = secret_value(&a, "team-b", &r, f).unwrap_err();
        assert_eq!(e.reason, "InvalidSpec");
        assert!(
            e.message.contains("not found") && e.message.contains(f),
            "{e:?}"
        );
        let r = SecretKeyRef {
            name: "ch".into(),
            key: "nope".into(),
        };
        let e = secret_value(&a, "team-a", &r, f).unwrap_err();
        assert!(e.message.contains("has no key nope"), "{e:?}");
        // The same Secret without the opt-in label: refused, whatever key.
        let unlabelled = parse(&[(
            "m.yaml".into(),
            "apiVersion: v1\nkind: Secret\nmetadata: { name: ch, namespace: team-a, labels: { chmigrate.io/credentials: \"yes\" } }\nstringData: { password: s3cret-pw }\n".into(),
        )])
        .unwrap();
        let r = SecretKeyRef {
            name: "ch".into(),
            key: "password".into(),
        };
        let e = secret_value(&unlabelled, "team-a", &r, f).unwrap_err();
        assert_eq!(e.reason, "SecretNotAllowed");
        assert!(!e.message.contains("s3cret-pw"));
        assert!(e.message.contains("chmigrate.io/credentials"), "{e:?}");
    }

    #[test]
    fn variables_from_labelled_secrets_with_prefix_and_checked_names() {
        let docs = |extra: &str, label: &str| {
            parse(&[(
                "m.yaml".into(),
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata: {{ name: v, namespace: a, labels: {{ {label}: \"true\" }} }}\nstringData: {{ token: t0k3n, {extra} }}\n---\n\
                     apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: s, namespace: a }}\nspec:\n  connection: {{ url: http://x, database: d, credentials: {{ passwordless: true }} }}\n  variablesFrom: [{{ secretRef: {{ name: v }}, prefix: s3_ }}]\n"
                ),
            )])
            .unwrap()
        };
        let m = docs("region: eu", VARIABLES_LABEL);
        let vars = secret_variables(&m.sets[0], &m).unwrap();
        assert_eq!(vars.get("s3_token").map(String::as_str), Some("t0k3n"));
        assert_eq!(vars.get("s3_region").map(String::as_str), Some("eu"));
        let m = docs("\"bad-key\": x", VARIABLES_LABEL);
        let e = secret_variables(&m.sets[0], &m).unwrap_err();
        assert!(
            e.message.contains("spec.variablesFrom[0]") && e.message.contains("bad-key"),
            "{e:?}"
        );
        // A credentials Secret never becomes variables: its values could be
        // sent anywhere by the SQL (`url()`).
        let m = docs("region: eu", CREDENTIALS_LABEL);
        let e = secret_variables(&m.sets[0], &m).unwrap_err();
        assert_eq!(e.reason, "SecretNotAllowed");
        assert!(e.message.contains(VARIABLES_LABEL), "{e:?}");
        let mut m = docs("region: eu", VARIABLES_LABEL);
        m.sets[0].spec.connection.credentials.password_secret_ref = Some(SecretKeyRef {
            name: "v".into(),
            key: "token".into(),
        });
        let e = secret_variables(&m.sets[0], &m).unwrap_err();
        assert!(
            e.message.contains("also holds the set's credentials"),
            "{e:?}"
        );
    }

    #[test]
    fn label_selector_semantics() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let labels: BTreeMap<String, String> = [
            ("set".to_string(), "qs".to_string()),
            ("tier".to_string(), "db".to_string()),
        ]
        .into();
        let sel = |exprs: Vec<(&str, &str, Vec<&str>)>| LabelSelector {
            match_labels: None,
            match_expressions: Some(
                exprs
                    .into_iter()
                    .map(|(k, op, vals)| LabelSelectorRequirement {
                        key: k.into(),
                        operator: op.into(),
                        values: Some(vals.into_iter().map(String::from).collect()),
                    })
                    .collect(),
            ),
        };
        assert!(
            selector_matches(&LabelSelector::default(), &labels),
            "empty selects all"
        );
        assert!(selector_matches(
            &sel(vec![("set", "In", vec!["qs", "x"])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(vec![("set", "NotIn", vec!["qs"])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![("tier", "Exists", vec![])]),
            &labels
        ));
        assert!(!selector_matches(
            &sel(vec![("zone", "Exists", vec![])]),
            &labels
        ));
        assert!(selector_matches(
            &sel(vec![("zone", "DoesNotExist", vec![])]),
            &labels
        ));
    }

    #[test]
    fn bad_documents_are_named() {
        let errs = parse(&[(
            "x.yaml".into(),
            "apiVersion: apps/v1\nkind: Deployment\n---\napiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\nmetadata: {name: a}\nspec: {up: x}\n".into(),
        )])
        .unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0]
                .to_string()
                .starts_with("x.yaml: document 1: apps/v1/Deployment is not a resource")
        );
        assert!(
            errs[1]
                .to_string()
                .contains("document 2: ClickHouseMigration: "),
            "{}",
            errs[1]
        );
        assert!(errs[1].to_string().contains("version"), "{}", errs[1]);
    }

    #[test]
    fn duplicate_versions_across_resources_and_configmaps() {
        let mut a = all();
        a.migrations[0].spec.version = "2".into();
        let loaded = migrations_for(&a.sets[0], &a);
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0]
                .to_string()
                .contains("version 2 is defined twice"),
            "{}",
            loaded.errors[0]
        );
    }
}
