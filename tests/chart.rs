//! The Helm chart: linted and rendered by the real Helm library (PyPI's
//! helm-sdkpy shared object, through scripts/helm.sh), its CRDs identical to
//! what the code generates, its values schema refusing wrong values, its pod
//! security restricted, and its RBAC exactly what the operator uses — checked
//! against the requests the operator makes to the fake API server.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use support::fake_apiserver::FakeApiServer;
use support::*;

const CHART: &str = "charts/chmigrate";
const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];

fn helm(args: &[&str]) -> Out {
    let out = Command::new("bash")
        .arg(repo().join("scripts/helm.sh"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("scripts/helm.sh runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn values(env: &str) -> String {
    format!("{CHART}/values-{env}.yaml")
}

/// The rendered chart's documents.
fn render(extra: &[&str]) -> Vec<Value> {
    let mut args = vec![
        "template",
        CHART,
        "--namespace",
        "chmigrate",
        "--release",
        "chm",
    ];
    args.extend_from_slice(extra);
    let out = helm(&args);
    assert_eq!(out.code, 0, "helm template {extra:?}: {}", out.all());
    serde_yaml::Deserializer::from_str(&out.stdout)
        .filter_map(|d| serde_yaml::with::singleton_map_recursive::deserialize::<Value, _>(d).ok())
        .filter(|v| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let generated = chm(&["crd"]);
    assert_eq!(generated.code, 0);
    for path in [
        "crds/chmigrate.yaml",
        "charts/chmigrate/crds/chmigrate.yaml",
    ] {
        let committed = std::fs::read_to_string(repo().join(path)).expect("committed CRDs");
        assert_eq!(
            committed, generated.stdout,
            "{path} differs from `chmigrate crd`: regenerate it"
        );
    }
}

#[test]
fn the_chart_lints_with_every_environments_values() {
    for env in ENVIRONMENTS {
        let out = helm(&["lint", CHART, "-f", &values(env)]);
        assert_eq!(
            out.code,
            0,
            "helm lint with values-{env}.yaml: {}",
            out.all()
        );
    }
}

#[test]
fn wrong_values_fail_at_install_time_with_a_clear_message() {
    for (set, needle) in [
        ("environment=Prod!", "environment"),
        ("logFormat=xml", "logFormat"),
        ("concurrency=0", "concurrency"),
        ("allowRollback=maybe", "allowRollback"),
        ("rollbackStrategy=undo", "rollbackStrategy"),
        ("parallel=0", "parallel"),
        ("unknownKey=1", "unknownKey"),
    ] {
        let out = helm(&["template", CHART, "--set", set]);
        assert_ne!(out.code, 0, "--set {set} was accepted");
        assert!(out.all().contains(needle), "--set {set}: {}", out.all());
    }
}

#[test]
fn production_forbids_rollback_and_every_environment_elects_a_leader() {
    for env in ENVIRONMENTS {
        let docs = render(&["-f", &values(env)]);
        let deploy = kind(&docs, "Deployment");
        assert_eq!(deploy.len(), 1);
        let pod = &deploy[0]["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            args.contains(&format!("--env={env}").as_str()),
            "{env}: {args:?}"
        );
        assert_eq!(
            args.contains(&"--forbid-rollback"),
            env == "production",
            "{env}: {args:?}"
        );
        assert_eq!(
            args.contains(&"--backup=freeze"),
            env == "production",
            "{env}: {args:?}"
        );
        assert_eq!(
            args.contains(&"--rollback-strategy=forward-only"),
            env == "production",
            "{env}: {args:?}"
        );
        assert_eq!(
            args.contains(&"--require-tls"),
            env == "production",
            "production sends credentials only over verified TLS: {env}: {args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--parallel")),
            "serial unless asked: {env}: {args:?}"
        );
        assert!(args.contains(&"--leader-election"), "{env}: {args:?}");
        // Restricted pod security.
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(kind(&docs, "Service").len(), 1, "metrics Service");
        assert!(
            kind(&docs, "ServiceMonitor").is_empty(),
            "ServiceMonitor is opt-in"
        );
    }
    let docs = render(&[
        "--set",
        "parallel=4",
        "--set",
        "rollbackStrategy=freeze-and-drop",
    ]);
    let args = &kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"];
    for flag in ["--parallel=4", "--rollback-strategy=freeze-and-drop"] {
        assert!(
            args.as_array().expect("args").contains(&json!(flag)),
            "{args}"
        );
    }
    let docs = render(&["--set", "metrics.serviceMonitor.enabled=true"]);
    assert_eq!(kind(&docs, "ServiceMonitor").len(), 1);
    // One replica without a Lease: no flag, and never two pods at once.
    let docs = render(&["--set", "leaderElection.enabled=false"]);
    let deploy = &kind(&docs, "Deployment")[0];
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    assert!(
        !deploy["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .contains(&json!("--leader-election"))
    );
}

#[test]
fn watched_namespaces_get_roles_instead_of_a_cluster_role() {
    let docs = render(&["--set", "watchNamespaces={team-a,team-b}"]);
    assert!(kind(&docs, "ClusterRole").is_empty());
    let (lease, watch): (Vec<&Value>, Vec<&Value>) =
        kind(&docs, "Role").into_iter().partition(|r| {
            r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-leader-election"))
        });
    assert_eq!(lease.len(), 1, "the Lease role, in the release namespace");
    let roles: BTreeSet<String> = watch
        .iter()
        .map(|r| {
            r["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from(["team-a".to_string(), "team-b".to_string()])
    );
    let args =
        kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        args.as_array()
            .expect("args")
            .contains(&json!("--namespace=team-a"))
    );
}

/// `(apiGroup, resource[/subresource], verb)` of a request the operator made.
fn permission(r: &fake_apiserver::Recorded) -> Option<(String, String, String)> {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), &parts[2..]),
        Some(&"apis") => (parts.get(1)?.to_string(), &parts[3..]),
        _ => return None,
    };
    let rest: Vec<&str> = match rest {
        ["namespaces", _ns, tail @ ..] => tail.to_vec(),
        other => other.to_vec(),
    };
    let (resource, named) = match rest.as_slice() {
        [res] => (res.to_string(), false),
        [res, _name] => (res.to_string(), true),
        [res, _name, sub] => (format!("{res}/{sub}"), true),
        _ => return None,
    };
    let verb = match (r.method.as_str(), named) {
        ("GET", _) if r.watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some((group, resource, verb.to_string()))
}

fn allowed(rules: &[&Value]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        for g in rule["apiGroups"].as_array().into_iter().flatten() {
            for res in rule["resources"].as_array().into_iter().flatten() {
                for verb in rule["verbs"].as_array().into_iter().flatten() {
                    out.insert((
                        g.as_str().unwrap_or_default().to_string(),
                        res.as_str().unwrap_or_default().to_string(),
                        verb.as_str().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn rbac_allows_exactly_the_requests_the_operator_makes() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let db = unique_db("chart_rbac");
    let ns = "rbac";
    api.apply_yaml(&format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{ns}\"}}}}"
    ));
    api.apply_yaml(
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ch", "namespace": ns},
                "data": {"password": "czNjcmV0LXB3"}})
        .to_string(),
    );
    api.apply_yaml(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sql", "namespace": ns},
                "data": {"V2__b.sql": "CREATE TABLE ${database}.b (x UInt8) ENGINE = MergeTree ORDER BY x;\n-- ROLLBACK: DROP TABLE ${database}.b;\n"}})
        .to_string(),
    );
    api.apply_yaml(
        &json!({"apiVersion": "chmigrate.io/v1alpha1", "kind": "ClickHouseMigration",
                "metadata": {"name": "a", "namespace": ns, "labels": {"chmigrate.io/set": "s"}},
                "spec": {"version": "1", "up": "CREATE TABLE ${database}.a (x UInt8) ENGINE = MergeTree ORDER BY x",
                         "down": "DROP TABLE ${database}.a"}})
        .to_string(),
    );
    api.apply_yaml(
        &json!({"apiVersion": "chmigrate.io/v1alpha1", "kind": "MigrationSet",
                "metadata": {"name": "s", "namespace": ns},
                "spec": {"connection": {"url": SINGLE, "database": db,
                          "credentials": {"user": "chm_secret", "passwordSecretRef": {"name": "ch", "key": "password"}}},
                         "selector": {"matchLabels": {"chmigrate.io/set": "s"}}, "configMaps": ["sql"],
                         "policy": {"deletionPolicy": "Rollback", "allowRollback": true}}})
        .to_string(),
    );
    api.apply_yaml(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"chmigrate"}}"#);
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chmigrate"))
        .args([
            "operator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--leader-election",
        ])
        .args(["--lease-seconds", "3", "--identity", "rbac-test"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "chmigrate")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("operator starts");
    let ready = |api: &FakeApiServer| {
        api.get("migrationsets", ns, "s").is_some_and(|o| {
            o["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    };
    wait_until("the set to be Ready", Duration::from_secs(60), || {
        ready(&api)
    });
    api.delete("migrationsets", ns, "s");
    wait_until(
        "the set to be rolled back and gone",
        Duration::from_secs(60),
        || api.get("migrationsets", ns, "s").is_none(),
    );
    let _ = child.kill();
    let _ = child.wait();
    drop_db(SINGLE, &db, false);

    let used: BTreeSet<(String, String, String)> = api
        .requests()
        .iter()
        .filter(|r| r.status < 500)
        .filter_map(permission)
        .collect();
    let docs = render(&["-f", &values("production")]);
    let cluster_roles = kind(&docs, "ClusterRole");
    let roles = kind(&docs, "Role");
    let mut rules: Vec<&Value> = Vec::new();
    for r in cluster_roles.iter().chain(roles.iter()) {
        rules.extend(r["rules"].as_array().into_iter().flatten());
    }
    let granted = allowed(&rules);
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the operator needs permissions the chart does not grant: {missing:?}"
    );
    // Least privilege: every grant is used, except the finalizers subresource
    // that API servers with OwnerReferencesPermissionEnforcement check when a
    // finalizer is set (the fake does not model admission plugins).
    let exempt = (
        "chmigrate.io".to_string(),
        "migrationsets/finalizers".to_string(),
        "update".to_string(),
    );
    let unused: Vec<_> = granted
        .difference(&used)
        .filter(|g| **g != exempt)
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never uses: {unused:?}"
    );
}

#[test]
fn allowed_urls_reach_the_operator_and_bad_ones_are_refused_at_install() {
    let docs = render(&[
        "-f",
        &values("staging"),
        "--set",
        "allowedUrls[0]=https://*.analytics.svc:8443",
    ]);
    let deploy = kind(&docs, "Deployment");
    let args: Vec<&str> = deploy[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--allow-url=https://*.analytics.svc:8443"),
        "{args:?}"
    );
    let out = helm(&[
        "lint",
        CHART,
        "-f",
        &values("staging"),
        "--set-string",
        "requireTls=yes-please",
    ]);
    assert_ne!(
        out.code,
        0,
        "values.schema.json refuses a non-boolean requireTls: {}",
        out.all()
    );
}
