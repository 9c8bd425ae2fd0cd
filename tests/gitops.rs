//! Delivery: every Kubernetes example applied with `chmigrate apply -f`
//! against the real dev servers, the GitOps overlays built with `kubectl
//! kustomize`, and the Argo CD health checks run by a real Lua 5.1.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

/// An example with its fixed database name swapped for a unique one.
fn example(path: &str, db_in_file: &str, db: &str) -> tempfile::TempDir {
    let text = std::fs::read_to_string(repo().join(path)).expect("example exists");
    assert!(
        text.contains(&format!("database: {db_in_file}")),
        "{path} names database {db_in_file}"
    );
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("set.yaml"),
        text.replace(
            &format!("database: {db_in_file}"),
            &format!("database: {db}"),
        ),
    )
    .expect("write");
    dir
}

fn apply(dir: &Path, extra: &[&str]) -> (Out, Value) {
    let file = dir.join("set.yaml");
    let mut a = vec![
        "apply",
        "-f",
        file.to_str().expect("utf-8 path"),
        "--format",
        "json",
    ];
    a.extend_from_slice(extra);
    let out = chm(&a);
    let status = out.json()[0]["status"].clone();
    (out, status)
}

fn ready(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or_default().into(),
        c["reason"].as_str().unwrap_or_default().into(),
    )
}

#[test]
fn the_cluster_example_applies_on_every_replica() {
    require(&NODES);
    let db = unique_db("ex_cluster");
    let dir = example("examples/k8s/cluster.yaml", "k8s_cluster", &db);
    let (out, st) = apply(dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(ready(&st), ("True".into(), "Applied".into()));
    for node in NODES {
        assert_eq!(
            user_tables(node, &db),
            ["events", "events_local"],
            "on {node}"
        );
    }
    drop_db(NODES[0], &db, true);
}

#[test]
fn the_production_example_stops_at_its_target_and_refuses_rollback() {
    require(&[SINGLE]);
    let db = unique_db("ex_prod");
    let dir = example("examples/k8s/production.yaml", "k8s_production", &db);
    let (out, st) = apply(dir.path(), &["--forbid-rollback"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(ready(&st).0, "True");
    assert_eq!(st["appliedVersion"], "2");
    assert_eq!(st["latestVersion"], "3");
    assert_eq!(user_tables(SINGLE, &db), ["invoices"]);
    // Moving the target back is refused by the set and by the operator.
    let file = dir.path().join("set.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace("targetVersion: \"2\"", "targetVersion: \"1\""),
    )
    .expect("write");
    let (out, st) = apply(dir.path(), &["--forbid-rollback"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(ready(&st), ("False".into(), "RollbackForbidden".into()));
    drop_db(SINGLE, &db, false);
}

#[test]
fn the_preview_example_applies_with_its_variables() {
    require(&[SINGLE]);
    let db = unique_db("ex_preview");
    let dir = example("examples/k8s/preview.yaml", "k8s_preview_pr_42", &db);
    let (out, st) = apply(dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(ready(&st).0, "True");
    let ddl = q(
        SINGLE,
        &format!("SHOW CREATE TABLE `{db}`.sessions FORMAT TSVRaw"),
    );
    assert!(
        ddl.contains("7 * 86400"),
        "retention_days came from spec.variables: {ddl}"
    );
    drop_db(SINGLE, &db, false);
}

fn kustomize(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join(overlay))
        .output()
        .expect("kubectl runs (it is on the machine)");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_gitops_overlays_build_and_development_applies_on_the_cluster() {
    require(&NODES);
    let prod = kustomize("examples/gitops/environments/production");
    assert!(prod.contains("environment: production"));
    assert!(prod.contains("allowRollback: false"));
    assert!(prod.contains("namespace: app-production"));
    let staging = kustomize("examples/gitops/environments/staging");
    assert!(staging.contains("environment: staging"));

    let db = unique_db("ex_gitops");
    let dev = kustomize("examples/gitops/environments/development");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("set.yaml"),
        dev.replace("database: app", &format!("database: {db}")),
    )
    .expect("write");
    let (out, st) = apply(dir.path(), &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(ready(&st).0, "True", "{st}");
    assert_eq!(st["appliedVersion"], "4");
    for node in NODES {
        assert!(
            user_tables(node, &db).contains(&"users".to_string()),
            "on {node}"
        );
    }
    drop_db(NODES[0], &db, true);
}

#[test]
fn the_committed_gitops_base_is_what_render_produces() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = chm(&[
        "render",
        "--dir",
        repo().join("migrations").to_str().expect("utf-8"),
        "--set",
        "app",
        "--out",
        dir.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    for entry in std::fs::read_dir(dir.path()).expect("rendered") {
        let p = entry.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let want = std::fs::read_to_string(&p).expect("read");
        let have =
            std::fs::read_to_string(repo().join("examples/gitops/base/migrations").join(&name))
                .unwrap_or_default();
        // The source annotation names the folder given on the command line.
        let want = want.replace(
            &format!("{}/", repo().join("migrations").display()),
            "migrations/",
        );
        assert_eq!(
            have, want,
            "examples/gitops/base/migrations/{name} is stale: re-run chmigrate render"
        );
    }
}

#[test]
fn argo_cd_health_checks_pass_their_cases_in_lua_5_1() {
    let out = Command::new("lua5.1")
        .arg(repo().join("charts/argocd/check.lua"))
        .output()
        .expect("lua5.1 is installed by scripts/test.sh (Debian package lua5.1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("all health check cases passed"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok")).count(),
        13,
        "{text}"
    );
}
