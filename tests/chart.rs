//! The Helm chart: linted and rendered by the real Helm library (PyPI's
//! helm-sdkpy shared object, through scripts/helm.sh), its CRDs identical to
//! what the code generates (rendered as templates, kept on uninstall), its
//! values schema refusing wrong values (production without `allowedUrls`), its
//! pod security restricted, its NetworkPolicy, and its RBAC exactly what the
//! operator uses — scoped to the release namespace unless told otherwise,
//! Secrets read by name only — checked against the requests the operator
//! makes to the fake API server.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use support::fake_apiserver::FakeApiServer;
use support::*;

const CHART: &str = "charts/chmigrate";
const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];
/// What production's values.schema.json requires: somewhere credentials may go.
const PRODUCTION_URL: &str = "https://*.analytics.svc:8443";

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

/// `-f values-ENV.yaml`, plus the `allowedUrls` production requires.
fn env_args(env: &str) -> Vec<String> {
    let mut args = vec!["-f".to_string(), values(env)];
    if env == "production" {
        args.extend([
            "--set".to_string(),
            format!("allowedUrls={{{PRODUCTION_URL}}}"),
        ]);
    }
    args
}

fn render_env(env: &str, extra: &[&str]) -> Vec<Value> {
    let mut args: Vec<&str> = Vec::new();
    let env_args = env_args(env);
    args.extend(env_args.iter().map(String::as_str));
    args.extend_from_slice(extra);
    render(&args)
}

/// `helm template` that must fail; Helm's output.
fn render_fails(extra: &[&str]) -> String {
    let mut args = vec!["template", CHART, "--namespace", "chmigrate"];
    args.extend_from_slice(extra);
    let out = helm(&args);
    assert_ne!(out.code, 0, "helm template {extra:?} was accepted");
    out.all()
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

fn named<'a>(docs: &'a [Value], kind_: &str, name: &str) -> Option<&'a Value> {
    kind(docs, kind_)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
}

fn args(docs: &[Value]) -> Vec<String> {
    let deploy = kind(docs, "Deployment");
    assert_eq!(deploy.len(), 1);
    deploy[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The CRD-reading ClusterRole every mode renders: get on chmigrate's two
/// CRDs, by name, nothing else; bound to the operator's ServiceAccount.
fn assert_crd_reader(docs: &[Value]) {
    let role =
        named(docs, "ClusterRole", "chm-chmigrate-crds").expect("the CRD-reading ClusterRole");
    assert_eq!(
        role["rules"],
        json!([{
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "resourceNames": ["migrationsets.chmigrate.io", "clickhousemigrations.chmigrate.io"],
            "verbs": ["get"],
        }])
    );
    let binding =
        named(docs, "ClusterRoleBinding", "chm-chmigrate-crds").expect("its ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "chm-chmigrate-crds");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "chm-chmigrate", "namespace": "chmigrate"}])
    );
}

/// Every rule of every Role and ClusterRole that covers Secrets grants
/// exactly `get`, and there is one such rule per watch role.
fn assert_secrets_get_only(docs: &[Value], watch_roles: usize) {
    let mut secret_rules = 0;
    for role in kind(docs, "Role")
        .into_iter()
        .chain(kind(docs, "ClusterRole"))
    {
        for rule in role["rules"].as_array().into_iter().flatten() {
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            assert!(
                !groups.contains(&"*")
                    && !resources.contains(&"*")
                    && !strings(&rule["verbs"]).contains(&"*"),
                "no wildcards: {rule}"
            );
            if groups.contains(&"") && resources.contains(&"secrets") {
                assert_eq!(
                    rule["verbs"],
                    json!(["get"]),
                    "Secrets are read by name only: {rule}"
                );
                assert_eq!(resources, ["secrets"], "a rule of its own: {rule}");
                secret_rules += 1;
            }
        }
    }
    assert_eq!(secret_rules, watch_roles);
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let generated = chm(&["crd"]);
    assert_eq!(generated.code, 0);
    for path in [
        "crds/chmigrate.yaml",
        "charts/chmigrate/files/crds/chmigrate.yaml",
    ] {
        let committed = std::fs::read_to_string(repo().join(path)).expect("committed CRDs");
        assert_eq!(
            committed, generated.stdout,
            "{path} differs from `chmigrate crd`: regenerate it (`cargo run -- crd > {path}`)"
        );
    }
    // Helm would install crds/ and then the same CRDs from the templates.
    assert!(
        !repo().join(CHART).join("crds").exists(),
        "the CRDs are templates; {CHART}/crds must not exist"
    );
}

#[test]
fn crds_are_templates_that_upgrades_update_and_uninstalls_keep() {
    let generated: Vec<Value> = serde_yaml::Deserializer::from_str(&chm(&["crd"]).stdout)
        .map(|d| {
            serde_yaml::with::singleton_map_recursive::deserialize::<Value, _>(d).expect("CRD YAML")
        })
        .filter(|v| !v.is_null())
        .collect();
    assert_eq!(generated.len(), 2);
    for env in ENVIRONMENTS {
        let docs = render_env(env, &[]);
        let mut crds: Vec<Value> = kind(&docs, "CustomResourceDefinition")
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(crds.len(), 2, "{env}: both CRDs, rendered from templates/");
        for crd in &mut crds {
            let meta = crd["metadata"].as_object_mut().expect("metadata");
            assert_eq!(
                meta.remove("annotations"),
                Some(json!({"helm.sh/resource-policy": "keep"})),
                "{env}: helm uninstall must not delete the CRDs (and every migration with them)"
            );
            let labels = meta.remove("labels").expect("the chart's labels");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm");
        }
        // Apart from what the template adds, exactly what the code generates.
        assert_eq!(crds, generated, "{env}");
    }
    // A second release in the same cluster leaves them to the first.
    let docs = render(&["--set", "crds.install=false"]);
    assert!(kind(&docs, "CustomResourceDefinition").is_empty());
    assert_eq!(kind(&docs, "Deployment").len(), 1);
}

#[test]
fn the_chart_lints_with_every_environments_values() {
    for env in ENVIRONMENTS {
        let mut args = vec!["lint", CHART];
        let env_args = env_args(env);
        args.extend(env_args.iter().map(String::as_str));
        let out = helm(&args);
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
        ("crds.install=sometimes", "install"),
        ("networkPolicy.apiServer.ports={0}", "ports"),
        ("networkPolicy.apiServer.cidrs={not-a-cidr}", "cidrs"),
        ("networkPolicy.clickhouse.ports=null", "ports"),
        ("networkPolicy.egress=all", "egress"),
    ] {
        let out = helm(&["template", CHART, "--set", set]);
        assert_ne!(out.code, 0, "--set {set} was accepted");
        assert!(out.all().contains(needle), "--set {set}: {}", out.all());
    }
}

#[test]
fn production_forbids_rollback_and_every_environment_elects_a_leader() {
    for env in ENVIRONMENTS {
        let docs = render_env(env, &[]);
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
fn by_default_the_operator_watches_the_release_namespace_only() {
    for env in ENVIRONMENTS {
        let docs = render_env(env, &[]);
        let namespaces: Vec<String> = args(&docs)
            .into_iter()
            .filter(|a| a.starts_with("--namespace="))
            .collect();
        assert_eq!(namespaces, ["--namespace=chmigrate"], "{env}");
        let role = named(&docs, "Role", "chm-chmigrate").expect("the watch Role");
        assert_eq!(role["metadata"]["namespace"], "chmigrate");
        let binding = named(&docs, "RoleBinding", "chm-chmigrate").expect("its RoleBinding");
        assert_eq!(binding["metadata"]["namespace"], "chmigrate");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "chm-chmigrate"})
        );
        // The only cluster-wide grant: reading chmigrate's own CRDs by name.
        let cluster_roles: Vec<&Value> = kind(&docs, "ClusterRole");
        assert_eq!(cluster_roles.len(), 1, "{env}: {cluster_roles:?}");
        assert_eq!(kind(&docs, "ClusterRoleBinding").len(), 1, "{env}");
        assert_crd_reader(&docs);
        assert_secrets_get_only(&docs, 1);
        assert!(
            role["rules"].as_array().expect("rules").contains(
                &json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]})
            ),
            "{role}"
        );
    }
}

#[test]
fn watched_namespaces_get_roles_instead_of_a_cluster_role() {
    let docs = render(&["--set", "watchNamespaces={team-a,team-b}"]);
    assert_eq!(kind(&docs, "ClusterRole").len(), 1, "only the CRD reader");
    assert_crd_reader(&docs);
    let (lease, watch): (Vec<&Value>, Vec<&Value>) =
        kind(&docs, "Role").into_iter().partition(|r| {
            r["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-leader-election"))
        });
    assert_eq!(lease.len(), 1, "the Lease role, in the release namespace");
    assert_eq!(lease[0]["metadata"]["namespace"], "chmigrate");
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
    let bindings: BTreeSet<String> = kind(&docs, "RoleBinding")
        .iter()
        .filter(|b| b["metadata"]["name"] == "chm-chmigrate")
        .map(|b| {
            assert_eq!(
                b["subjects"],
                json!([{"kind": "ServiceAccount", "name": "chm-chmigrate", "namespace": "chmigrate"}])
            );
            b["metadata"]["namespace"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(bindings, roles);
    assert_secrets_get_only(&docs, 2);
    let namespaces: Vec<String> = args(&docs)
        .into_iter()
        .filter(|a| a.starts_with("--namespace"))
        .collect();
    assert_eq!(namespaces, ["--namespace=team-a", "--namespace=team-b"]);
}

#[test]
fn cluster_wide_uses_a_cluster_role_that_still_only_gets_secrets() {
    let docs = render(&["--set", "clusterWide=true"]);
    assert!(
        !args(&docs).iter().any(|a| a.starts_with("--namespace")),
        "no --namespace: every namespace"
    );
    let role = named(&docs, "ClusterRole", "chm-chmigrate").expect("the watch ClusterRole");
    assert_eq!(
        named(&docs, "ClusterRoleBinding", "chm-chmigrate").expect("its binding")["roleRef"]["name"],
        "chm-chmigrate"
    );
    assert!(
        role["rules"]
            .as_array()
            .expect("rules")
            .contains(&json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})),
        "{role}"
    );
    assert_crd_reader(&docs);
    assert_secrets_get_only(&docs, 1);
    let roles: Vec<&Value> = kind(&docs, "Role");
    assert_eq!(roles.len(), 1, "only the Lease role: {roles:?}");
    assert_eq!(
        roles[0]["metadata"]["name"],
        "chm-chmigrate-leader-election"
    );

    // Both at once is a contradiction, refused at install.
    let out = render_fails(&[
        "--set",
        "clusterWide=true",
        "--set",
        "watchNamespaces={team-a}",
    ]);
    assert!(out.contains("empty when clusterWide is true"), "{out}");
    // Without RBAC, nothing of it (the ServiceAccount's rights are the user's).
    let docs = render(&["--set", "rbac.create=false"]);
    assert!(kind(&docs, "Role").is_empty() && kind(&docs, "ClusterRole").is_empty());
    assert_eq!(
        args(&docs)
            .iter()
            .filter(|a| a.starts_with("--namespace"))
            .count(),
        1
    );
}

#[test]
fn production_requires_allowed_urls_and_turns_on_every_protection() {
    // Production values alone: refused, saying why.
    for extra in [
        vec!["-f", "charts/chmigrate/values-production.yaml"],
        vec!["--set", "environment=prod"],
    ] {
        let out = render_fails(&extra);
        assert!(out.contains("/allowedUrls"), "{extra:?}: {out}");
        assert!(
            out.contains("a non-empty list in production: set allowedUrls"),
            "{extra:?}: {out}"
        );
    }
    let docs = render_env("production", &[]);
    let args = args(&docs);
    for flag in [
        format!("--allow-url={PRODUCTION_URL}"),
        "--require-tls".to_string(),
    ] {
        assert!(args.contains(&flag), "{flag}: {args:?}");
    }
    let policies = kind(&docs, "NetworkPolicy");
    assert_eq!(
        policies.len(),
        1,
        "production restricts the operator's traffic"
    );
    let spec = &policies[0]["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "chmigrate", "app.kubernetes.io/instance": "chm"})
    );
    assert_eq!(
        kind(&docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"],
        "chm",
        "the policy selects the operator's pods"
    );
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        spec["ingress"],
        json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}]),
        "metrics (and probes) only"
    );
    let tcp = |ports: &[u16]| -> Value {
        ports
            .iter()
            .map(|p| json!({"port": p, "protocol": "TCP"}))
            .collect()
    };
    assert_eq!(
        spec["egress"],
        json!([
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"ports": tcp(&[443, 6443])},
            {"ports": tcp(&[8123, 8443])},
        ]),
        "DNS, the API server and ClickHouse, nothing else"
    );
    // Staging rehearses the policy; development has none by default.
    assert_eq!(kind(&render_env("staging", &[]), "NetworkPolicy").len(), 1);
    assert!(kind(&render_env("development", &[]), "NetworkPolicy").is_empty());
}

#[test]
fn network_policy_peers_narrow_where_the_operator_may_connect() {
    let clickhouse = json!([
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "analytics"}},
         "podSelector": {"matchLabels": {"app": "clickhouse"}}},
        {"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.9.0/24"]}},
    ]);
    let prometheus = json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]);
    let docs = render(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServer.cidrs={172.18.0.2/32,fd00::1/128}",
        "--set",
        "networkPolicy.clickhouse.ports={9443}",
        "--set",
        "metrics.port=9090",
        "--set-json",
        &format!("networkPolicy.clickhouse.peers={clickhouse}"),
        "--set-json",
        &format!("networkPolicy.metrics.from={prometheus}"),
    ]);
    let spec = &kind(&docs, "NetworkPolicy")[0]["spec"];
    assert_eq!(
        spec["ingress"],
        json!([{"ports": [{"port": 9090, "protocol": "TCP"}], "from": prometheus}])
    );
    assert_eq!(
        spec["egress"][1],
        json!({"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
               "to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}, {"ipBlock": {"cidr": "fd00::1/128"}}]})
    );
    assert_eq!(
        spec["egress"][2],
        json!({"ports": [{"port": 9443, "protocol": "TCP"}], "to": clickhouse})
    );
    // Peers Kubernetes would refuse are refused at install.
    for bad in [
        json!([{}]),
        json!([{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]),
        json!([{"ipBlock": {"cidr": "clickhouse.analytics"}}]),
        json!([{"podSelector": {"matchExpressions": [{"key": "app", "operator": "Like"}]}}]),
        json!([{"service": "clickhouse"}]),
    ] {
        let out = render_fails(&[
            "--set",
            "networkPolicy.enabled=true",
            "--set-json",
            &format!("networkPolicy.clickhouse.peers={bad}"),
        ]);
        assert!(
            out.contains("/networkPolicy/clickhouse/peers/0"),
            "{bad}: {out}"
        );
    }
}

/// What a request the operator made asks of RBAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Access {
    /// `None` for a cluster-scoped request (or a list over all namespaces).
    namespace: Option<String>,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    verb: String,
    name: Option<String>,
}

fn access(r: &fake_apiserver::Recorded) -> Option<Access> {
    let parts: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.first() {
        Some(&"api") => (String::new(), parts.get(2..)?),
        Some(&"apis") => (parts.get(1)?.to_string(), parts.get(3..)?),
        _ => return None,
    };
    let (namespace, rest): (Option<String>, Vec<&str>) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail.to_vec()),
        other => (None, other.to_vec()),
    };
    let (resource, name) = match rest.as_slice() {
        [res] => (res.to_string(), None),
        [res, name] => (res.to_string(), Some(name.to_string())),
        [res, name, sub] => (format!("{res}/{sub}"), Some(name.to_string())),
        _ => return None,
    };
    let verb = match (r.method.as_str(), name.is_some()) {
        ("GET", _) if r.watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some(Access {
        namespace,
        group,
        resource,
        verb: verb.to_string(),
        name,
    })
}

/// One verb on one resource granted by a rule of a Role (in `namespace`) or
/// a ClusterRole (`namespace: None`, every namespace and cluster scope).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    namespace: Option<String>,
    group: String,
    resource: String,
    verb: String,
    /// `resourceNames`; empty: any name.
    names: Vec<String>,
}

impl Grant {
    fn allows(&self, a: &Access) -> bool {
        self.group == a.group
            && self.resource == a.resource
            && self.verb == a.verb
            && (self.names.is_empty() || a.name.as_ref().is_some_and(|n| self.names.contains(n)))
            && (self.namespace.is_none() || self.namespace == a.namespace)
    }
}

fn grants(docs: &[Value]) -> Vec<Grant> {
    let mut out = Vec::new();
    for role in kind(docs, "Role")
        .into_iter()
        .chain(kind(docs, "ClusterRole"))
    {
        let namespace = (role["kind"] == "Role").then(|| {
            role["metadata"]["namespace"]
                .as_str()
                .expect("namespace")
                .to_string()
        });
        for rule in role["rules"].as_array().into_iter().flatten() {
            let names: Vec<String> = strings(&rule["resourceNames"])
                .into_iter()
                .map(str::to_string)
                .collect();
            for g in strings(&rule["apiGroups"]) {
                for res in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push(Grant {
                            namespace: namespace.clone(),
                            group: g.to_string(),
                            resource: res.to_string(),
                            verb: verb.to_string(),
                            names: names.clone(),
                        });
                    }
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
        &json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "ch", "namespace": ns, "labels": {"chmigrate.io/credentials": "true"}},
                "data": {"password": "czNjcmV0LXB3"}})
        .to_string(),
    );
    api.apply_yaml(
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "sql", "namespace": ns, "labels": {"chmigrate.io/migrations": "true"}},
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
    // Started as the chart starts it by default: watching the namespaces it
    // is given (the chart's RBAC is namespaced accordingly), its Lease in the
    // release namespace.
    let mut child = Command::new(env!("CARGO_BIN_EXE_chmigrate"))
        .args([
            "operator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--leader-election",
        ])
        .args(["--lease-seconds", "3", "--identity", "rbac-test"])
        .arg(format!("--namespace={ns}"))
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
    // A run can end before the first renewal of the Lease: wait for one, so
    // that every request an operator makes over time is seen.
    wait_until("a renewal of the Lease", Duration::from_secs(20), || {
        api.requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.contains("/leases/") && r.status < 300)
    });
    let _ = child.kill();
    let _ = child.wait();
    drop_db(SINGLE, &db, false);

    let used: BTreeSet<Access> = api
        .requests()
        .iter()
        .filter(|r| r.status < 500)
        .filter_map(access)
        .collect();
    // The production values, watching the set's namespace; the Lease Role in
    // the release namespace, the CRD reader cluster-wide.
    let docs = render_env(
        "production",
        &["--set", &format!("watchNamespaces={{{ns}}}")],
    );
    let granted = grants(&docs);
    let missing: Vec<&Access> = used
        .iter()
        .filter(|a| !granted.iter().any(|g| g.allows(a)))
        .collect();
    assert!(
        missing.is_empty(),
        "the operator makes requests the chart does not allow: {missing:#?}"
    );
    // Least privilege: every grant is used, except the finalizers subresource
    // that API servers with OwnerReferencesPermissionEnforcement check when a
    // finalizer is set (the fake does not model admission plugins).
    let unused: Vec<&Grant> = granted
        .iter()
        .filter(|g| g.resource != "migrationsets/finalizers")
        .filter(|g| !used.iter().any(|a| g.allows(a)))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never uses: {unused:#?}"
    );
    // No Secret is ever listed or watched, only read by name.
    let secrets: Vec<&Access> = used.iter().filter(|a| a.resource == "secrets").collect();
    assert!(
        !secrets.is_empty()
            && secrets
                .iter()
                .all(|a| a.verb == "get" && a.name.as_deref() == Some("ch")),
        "{secrets:#?}"
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
    let args = args(&docs);
    assert!(
        args.contains(&"--allow-url=https://*.analytics.svc:8443".to_string()),
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
