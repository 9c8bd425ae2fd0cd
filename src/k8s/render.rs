//! `chmigrate render` (pure): a folder's migrations as GitOps manifests —
//! one `ClickHouseMigration` per migration, or ConfigMaps holding the files
//! (split below the 1 MiB object limit) — plus a `kustomization.yaml`.
//! Output is deterministic: same input, same bytes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::model::migration::{Migration, Statement};

/// Largest total of file contents put in one ConfigMap (the API server
/// limits objects to 1 MiB including metadata).
pub const CONFIGMAP_DATA_LIMIT: usize = 900 * 1024;

/// Rendered files: `(file name, YAML)`.
pub type Rendered = Vec<(String, String)>;

/// What to render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub set: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "--set {0:?} is not a valid Kubernetes name (lowercase letters, digits, '-', at most 40 characters)"
    )]
    BadSet(String),
    #[error("file {name} alone is {size} bytes, over the ConfigMap limit of {limit} bytes")]
    FileTooLarge {
        name: String,
        size: usize,
        limit: usize,
    },
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `<set>-v1-10` for version 1.10.
pub fn resource_name(set: &str, m: &Migration) -> String {
    format!("{set}-v{}", m.version.as_str().replace('.', "-"))
}

fn script(stmts: &[Statement]) -> String {
    let mut s: Vec<String> = stmts.iter().map(|st| format!("{};", st.sql)).collect();
    s.push(String::new());
    s.join("\n")
}

fn metadata(name: &str, opts: &RenderOptions, annotations: BTreeMap<String, String>) -> Value {
    let mut labels = opts.labels.clone();
    labels.insert("chmigrate.io/set".into(), opts.set.clone());
    let mut meta = json!({ "name": name, "labels": labels });
    if let Some(ns) = &opts.namespace {
        meta["namespace"] = json!(ns);
    }
    if !annotations.is_empty() {
        meta["annotations"] = json!(annotations);
    }
    meta
}

fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

fn kustomization(resources: &[String], namespace: Option<&str>) -> String {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    if let Some(ns) = namespace {
        k["namespace"] = json!(ns);
    }
    to_yaml(&k)
}

/// One `ClickHouseMigration` per migration: `(file name, YAML)`, then
/// `kustomization.yaml`. The SQL is the parsed statements, so each resource
/// has the same checksum as its file.
pub fn render_resources(
    migrations: &[Migration],
    opts: &RenderOptions,
) -> Result<Vec<(String, String)>, RenderError> {
    if !valid_name(&opts.set) {
        return Err(RenderError::BadSet(opts.set.clone()));
    }
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by(|a, b| a.version.cmp(&b.version));
    let mut out = Vec::new();
    for m in sorted {
        let name = resource_name(&opts.set, m);
        let mut spec = json!({
            "version": m.version.as_str(),
            "description": m.description,
            "up": script(&m.up),
        });
        // Only what the author wrote: a derived rollback is derived again
        // from the manifest, and is not part of the checksum.
        if let Some(down) = m.down.as_ref().filter(|_| !m.down_derived) {
            spec["down"] = json!(script(down));
        }
        if !m.dependencies.is_empty() {
            spec["dependsOn"] = json!(
                m.dependencies
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
            );
        }
        if let crate::model::migration::Environments::Only(list) = &m.environments {
            spec["environments"] = json!(list);
        }
        let annotations = BTreeMap::from([
            (
                "chmigrate.io/source".to_string(),
                m.location.file.to_string(),
            ),
            ("chmigrate.io/checksum".to_string(), m.checksum.0.clone()),
        ]);
        let doc = json!({
            "apiVersion": "chmigrate.io/v1alpha1",
            "kind": "ClickHouseMigration",
            "metadata": metadata(&name, opts, annotations),
            "spec": spec,
        });
        out.push((format!("{name}.yaml"), to_yaml(&doc)));
    }
    let resources: Vec<String> = out.iter().map(|(f, _)| f.clone()).collect();
    out.push((
        "kustomization.yaml".into(),
        kustomization(&resources, opts.namespace.as_deref()),
    ));
    Ok(out)
}

/// ConfigMaps holding the migration files (`(file name, content)`), as many
/// as needed to stay under [`CONFIGMAP_DATA_LIMIT`], then
/// `kustomization.yaml`. Returns the files and the ConfigMap names (for the
/// MigrationSet's `configMaps`).
pub fn render_configmaps(
    files: &[(String, String)],
    opts: &RenderOptions,
) -> Result<(Rendered, Vec<String>), RenderError> {
    if !valid_name(&opts.set) {
        return Err(RenderError::BadSet(opts.set.clone()));
    }
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort();
    let mut groups: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    let mut size = 0;
    for (name, content) in sorted {
        let n = name.len() + content.len();
        if n > CONFIGMAP_DATA_LIMIT {
            return Err(RenderError::FileTooLarge {
                name: name.clone(),
                size: n,
                limit: CONFIGMAP_DATA_LIMIT,
            });
        }
        if size + n > CONFIGMAP_DATA_LIMIT {
            groups.push(BTreeMap::new());
            size = 0;
        }
        size += n;
        if let Some(g) = groups.last_mut() {
            g.insert(name.clone(), content.clone());
        }
    }
    let single = groups.len() == 1;
    let mut out = Vec::new();
    let mut names = Vec::new();
    for (i, data) in groups.into_iter().enumerate() {
        let name = if single {
            format!("{}-migrations", opts.set)
        } else {
            format!("{}-migrations-{}", opts.set, i + 1)
        };
        let doc = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(&name, opts, BTreeMap::new()),
            "data": data,
        });
        out.push((format!("{name}.yaml"), to_yaml(&doc)));
        names.push(name);
    }
    let resources: Vec<String> = out.iter().map(|(f, _)| f.clone()).collect();
    out.push((
        "kustomization.yaml".into(),
        kustomization(&resources, opts.namespace.as_deref()),
    ));
    Ok((out, names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::manifest;
    use crate::source::memory::from_files;

    fn opts() -> RenderOptions {
        RenderOptions {
            set: "web".into(),
            namespace: Some("analytics".into()),
            labels: BTreeMap::from([("team".to_string(), "web".to_string())]),
        }
    }

    fn files() -> Vec<(String, String, String)> {
        [
            ("V1__a.sql", "-- Author: x\nCREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${database}.a;\n"),
            ("V1_10__b.sql", "-- Dependencies: 1\n-- Environment: staging\nALTER TABLE ${database}.a ADD COLUMN s String DEFAULT 'x;y';\n"),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), n.to_string(), c.to_string()))
        .collect()
    }

    #[test]
    fn resources_keep_checksums_and_are_deterministic() {
        let loaded = from_files(&files(), 1 << 20);
        assert!(loaded.errors.is_empty());
        let out = render_resources(&loaded.migrations, &opts()).unwrap();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["web-v1.yaml", "web-v1-10.yaml", "kustomization.yaml"]
        );
        assert_eq!(out, render_resources(&loaded.migrations, &opts()).unwrap());
        // Read back as the operator would: same checksums as the files.
        let texts: Vec<(String, String)> =
            out.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
        let mut all = manifest::parse(&texts).unwrap();
        all.sets.push(serde_yaml::from_str(
            "apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {name: web, namespace: analytics}\nspec:\n  connection: {url: 'http://x:8123', database: d, credentials: {passwordless: true}}\n  selector: {matchLabels: {chmigrate.io/set: web}}\n",
        ).unwrap());
        let back = manifest::migrations_for(&all.sets[0], &all);
        assert!(back.errors.is_empty(), "{:?}", back.errors);
        let sums = |ms: &[Migration]| ms.iter().map(|m| m.checksum.0.clone()).collect::<Vec<_>>();
        assert_eq!(sums(&back.migrations), sums(&loaded.migrations));
        assert_eq!(
            back.migrations[1].dependencies,
            loaded.migrations[1].dependencies
        );
        assert_eq!(
            back.migrations[1].environments,
            loaded.migrations[1].environments
        );
        assert!(out[2].1.contains("- web-v1.yaml"));
        assert!(
            render_resources(
                &loaded.migrations,
                &RenderOptions {
                    set: "Bad_Name".into(),
                    ..opts()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn configmaps_split_below_the_object_limit() {
        let big = "x".repeat(400 * 1024);
        let files: Vec<(String, String)> = (1..=5)
            .map(|i| (format!("V{i}__f.sql"), format!("SELECT '{big}';")))
            .collect();
        let (out, names) = render_configmaps(&files, &opts()).unwrap();
        assert_eq!(
            names,
            ["web-migrations-1", "web-migrations-2", "web-migrations-3"]
        );
        assert_eq!(out.len(), 4);
        for (_, yaml) in &out[..3] {
            assert!(yaml.len() < 1024 * 1024, "{}", yaml.len());
        }
        let (out, names) = render_configmaps(&files[..1], &opts()).unwrap();
        assert_eq!(names, ["web-migrations"]);
        assert!(out[0].1.contains("V1__f.sql"));
        let huge = vec![(
            "V1__h.sql".to_string(),
            "y".repeat(CONFIGMAP_DATA_LIMIT + 1),
        )];
        assert!(matches!(
            render_configmaps(&huge, &opts()),
            Err(RenderError::FileTooLarge { .. })
        ));
    }
}
