//! End-to-end tests of `chmigrate operator`: the real binary, against the
//! in-repo FAKE Kubernetes API server (tests/support/fake_apiserver.rs — no
//! real API server can run on these machines) and the real ClickHouse
//! servers of `scripts/dev-cluster.sh`. Each test uses its own namespace
//! and database.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use support::fake_apiserver::FakeApiServer;
use support::operator::*;
use support::*;

/// Cluster tests stop nodes; they run one at a time.
static CLUSTER_GUARD: Mutex<()> = Mutex::new(());

fn table(version: &str, table: &str) -> (String, String) {
    (
        format!(
            "CREATE TABLE ${{database}}.{table} (id UInt64, v{version} String) ENGINE = MergeTree ORDER BY id"
        ),
        format!("DROP TABLE ${{database}}.{table}"),
    )
}

fn set_obj(api: &FakeApiServer, ns: &str, name: &str) -> Value {
    api.get("migrationsets", ns, name).unwrap_or_default()
}

/// Waits until the set's Ready condition has `status` and `reason`, at the
/// set's current generation.
fn wait_ready(
    api: &FakeApiServer,
    op: &Operator,
    ns: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> Value {
    wait_set(
        api,
        op,
        ns,
        name,
        &format!("Ready={status} ({reason})"),
        |o| {
            let (s, r, _) = condition(o, "Ready");
            s == status && r == reason
        },
    )
}

/// Waits until `check` holds for the set, at its current generation.
fn wait_set(
    api: &FakeApiServer,
    op: &Operator,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let end = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < end {
        last = set_obj(api, ns, name);
        let current = last["status"]["observedGeneration"] == last["metadata"]["generation"];
        if current && check(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "MigrationSet {ns}/{name} never reached {what}; last: {}\noperator log:\n{}",
        serde_json::to_string_pretty(&last["status"]).unwrap_or_default(),
        op.logs()
    );
}

fn events(api: &FakeApiServer, ns: &str) -> Vec<(String, String, String)> {
    api.list("events.events.k8s.io", Some(ns))
        .iter()
        .filter(|e| e["apiVersion"] == "events.k8s.io/v1")
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn completed(url: &str, db: &str, version: &str) -> usize {
    events_of(&ledger(url, db), version, "completed")
}

#[test]
fn a_set_is_applied_kept_idle_blocked_on_tamper_rolled_back_and_retained() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("apps", "orders", unique_db("op_life"));
    let (up1, down1) = table("1", "a");
    let (up2, down2) = table("2", "b");
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    api.apply_yaml(&migration(ns, name, "1", &up1, &down1));
    api.apply_yaml(&migration(ns, name, "2", &up2, &down2));
    let op = Operator::start(&api, dir.path(), "op-a", &[]);

    let obj = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert_eq!(user_tables(SINGLE, &db), ["a", "b"]);
    assert_eq!(obj["status"]["appliedVersion"], "2");
    assert_eq!(obj["status"]["latestVersion"], "2");
    assert_eq!(obj["status"]["pendingCount"], 0);
    assert_eq!(obj["status"]["lastRun"]["applied"], json!(["1", "2"]));
    assert_eq!(condition(&obj, "Stalled").0, "False");
    assert_eq!(condition(&obj, "Reconciling").0, "False");
    let m1 = api
        .get("clickhousemigrations", ns, "orders-v1")
        .expect("m1");
    assert_eq!(m1["status"]["phase"], "Applied", "{}", m1["status"]);
    assert_eq!(m1["status"]["set"], name);
    assert_eq!(m1["status"]["hosts"], "1/1");
    assert!(m1["status"]["sets"][0]["appliedAt"].is_string());
    assert!(
        events(&api, ns)
            .iter()
            .any(|(t, r, n)| t == "Normal" && r == "Applied" && n == "applied V1, V2"),
        "{:?}",
        events(&api, ns)
    );
    let rows = ledger(SINGLE, &db);
    assert_eq!(completed(SINGLE, &db, "1"), 1);
    assert!(
        rows.iter()
            .filter(|r| r["event"] == "completed")
            .all(|r| r["actor"]
                .as_str()
                .unwrap_or_default()
                .starts_with("operator:apps/orders")),
        "the ledger names the operator and the set"
    );

    // Idle: rechecks happen (every 2 s here) and write nothing.
    api.clear_requests();
    let before = op.metric("chmigrate_reconciles_total");
    wait_until("two idle rechecks", Duration::from_secs(30), || {
        op.metric("chmigrate_reconciles_total") >= before + 2.0
    });
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.is_write())
        .collect();
    assert!(writes.is_empty(), "idle operator wrote: {writes:?}");
    assert_eq!(
        ledger(SINGLE, &db).len(),
        rows.len(),
        "and no SQL wrote to the ledger"
    );

    // A new migration is picked up.
    let (up3, down3) = table("3", "c");
    api.apply_yaml(&migration(ns, name, "3", &up3, &down3));
    let obj = wait_set(&api, &op, ns, name, "V3 applied", |o| {
        o["status"]["appliedVersion"] == "3"
    });
    assert_eq!(condition(&obj, "Ready").0, "True");
    assert_eq!(obj["status"]["appliedVersion"], "3");
    assert!(user_tables(SINGLE, &db).contains(&"c".to_string()));

    // Changing an applied migration blocks the set until reverted.
    api.apply_yaml(&migration(
        ns,
        name,
        "1",
        &up1.replace("String", "UInt8"),
        &down1,
    ));
    let obj = wait_ready(&api, &op, ns, name, "False", "ChecksumMismatch");
    assert_eq!(condition(&obj, "Stalled").0, "True");
    assert!(condition(&obj, "Ready").2.contains("checksum"), "{obj}");
    assert!(
        events(&api, ns)
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "ChecksumMismatch")
    );
    api.apply_yaml(&migration(ns, name, "1", &up1, &down1));
    wait_ready(&api, &op, ns, name, "True", "Applied");

    // Rolling back needs the policy.
    let with_target = |allow: bool| {
        set(
            ns,
            name,
            &db,
            SINGLE,
            json!({ "targetVersion": "2", "policy": { "allowRollback": allow } }),
        )
    };
    api.apply_yaml(&with_target(false));
    wait_ready(&api, &op, ns, name, "False", "RollbackForbidden");
    assert!(
        user_tables(SINGLE, &db).contains(&"c".to_string()),
        "nothing was rolled back"
    );
    api.apply_yaml(&with_target(true));
    let obj = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert_eq!(obj["status"]["appliedVersion"], "2");
    assert_eq!(obj["status"]["lastRun"]["rolledBack"], json!(["3"]));
    assert_eq!(user_tables(SINGLE, &db), ["a", "b"]);
    let m3 = api
        .get("clickhousemigrations", ns, "orders-v3")
        .expect("m3");
    assert_eq!(m3["status"]["phase"], "RolledBack", "{}", m3["status"]);

    // Deleting a Retain set leaves the schema alone.
    assert!(set_obj(&api, ns, name)["metadata"]["finalizers"].is_null());
    api.delete("migrationsets", ns, name);
    assert!(api.get("migrationsets", ns, name).is_none());
    assert_eq!(user_tables(SINGLE, &db), ["a", "b"]);
    drop(op);
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_preview_set_rolls_back_on_deletion_and_a_broken_neighbour_stalls_alone() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let ns = "preview";
    let (db, other_db) = (unique_db("op_prev"), unique_db("op_broken"));
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(
        ns,
        "pr-42",
        &db,
        SINGLE,
        json!({ "policy": { "deletionPolicy": "Rollback" } }),
    ));
    for v in ["1", "2"] {
        let (up, down) = table(v, &format!("t{v}"));
        api.apply_yaml(&migration(ns, "pr-42", v, &up, &down));
    }
    // A neighbour that selects an object the API server stored but that is
    // not a valid ClickHouseMigration (the CRD's schema would normally stop
    // it; a fake lets it through, as an old CRD version might).
    api.apply_yaml(&set(ns, "broken", &other_db, SINGLE, json!({})));
    api.apply_yaml(
        &json!({
            "apiVersion": "chmigrate.io/v1alpha1", "kind": "ClickHouseMigration",
            "metadata": { "name": "bad", "namespace": ns, "labels": { "chmigrate.io/set": "broken" } },
            "spec": { "version": 7, "up": ["not", "a", "string"] },
        })
        .to_string(),
    );
    let op = Operator::start(&api, dir.path(), "op-b", &[]);
    let obj = wait_ready(&api, &op, ns, "pr-42", "True", "Applied");
    assert_eq!(
        obj["metadata"]["finalizers"],
        json!(["chmigrate.io/rollback"])
    );
    assert_eq!(user_tables(SINGLE, &db), ["t1", "t2"]);
    let broken = wait_ready(&api, &op, ns, "broken", "False", "InvalidMigrations");
    assert!(
        condition(&broken, "Ready")
            .2
            .contains("ClickHouseMigration preview/bad"),
        "{broken}"
    );

    api.delete("migrationsets", ns, "pr-42");
    wait_until(
        "the preview set to be gone",
        Duration::from_secs(60),
        || api.get("migrationsets", ns, "pr-42").is_none(),
    );
    assert!(
        user_tables(SINGLE, &db).is_empty(),
        "{:?}",
        user_tables(SINGLE, &db)
    );
    let rows = ledger(SINGLE, &db);
    assert_eq!(
        events_of(&rows, "1", "completed"),
        2,
        "applied, then rolled back"
    );
    assert!(events(&api, ns).iter().any(|(_, r, _)| r == "RolledBack"));
    drop(op);
    drop_db(SINGLE, &db, false);
    drop_db(SINGLE, &other_db, false);
}

#[test]
fn a_cluster_set_reports_a_stopped_replica_then_completes_it() {
    let _g = CLUSTER_GUARD.lock().unwrap_or_else(|e| e.into_inner());
    require(&NODES);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("analytics", "events", unique_db("op_cluster"));
    api.apply_yaml(&secret(ns));
    let spec = json!({
        "connection": {
            "url": NODES[0], "database": db, "cluster": CLUSTER,
            "credentials": { "user": "chm_secret", "passwordSecretRef": { "name": "ch", "key": "password" } }
        },
        "policy": { "ddlTimeoutSeconds": 5 },
    });
    api.apply_yaml(&set(ns, name, &db, NODES[0], spec));
    let (up1, down1) = table("1", "e1");
    api.apply_yaml(&migration(ns, name, "1", &up1, &down1));
    let op = Operator::start(&api, dir.path(), "op-c", &[]);
    let obj = wait_ready(&api, &op, ns, name, "True", "Applied");
    for node in NODES {
        assert_eq!(user_tables(node, &db), ["e1"], "on {node}");
    }
    let m1 = api
        .get("clickhousemigrations", ns, "events-v1")
        .expect("m1");
    assert_eq!(m1["status"]["hosts"], "4/4", "{}", m1["status"]);
    assert_eq!(obj["spec"]["connection"]["cluster"], CLUSTER);

    dev_cluster(&["stop-node", "4"]);
    let (up2, down2) = table("2", "e2");
    api.apply_yaml(&migration(ns, name, "2", &up2, &down2));
    let pending = wait_ready(&api, &op, ns, name, "False", "HostsPending");
    assert_eq!(condition(&pending, "Reconciling").0, "True");
    assert_eq!(
        pending["status"]["hosts"][0]["host"], "127.0.0.14:9004",
        "{}",
        pending["status"]
    );
    let m2 = api
        .get("clickhousemigrations", ns, "events-v2")
        .expect("m2");
    assert_eq!(m2["status"]["phase"], "Running");
    assert_eq!(m2["status"]["hosts"], "3/4");
    assert!(
        events(&api, ns)
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "HostsPending")
    );

    dev_cluster(&["start-node", "4"]);
    let done = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert!(done["status"]["hosts"].is_null(), "{}", done["status"]);
    for node in NODES {
        assert_eq!(user_tables(node, &db), ["e1", "e2"], "on {node}");
    }
    assert_eq!(completed(NODES[1], &db, "2"), 1);
    drop(op);
    drop_db(NODES[0], &db, true);
}

#[test]
fn two_operators_elect_one_leader_and_apply_each_migration_once() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("apps", "ha", unique_db("op_ha"));
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    for v in ["1", "2", "3"] {
        let (up, down) = table(v, &format!("h{v}"));
        api.apply_yaml(&migration(ns, name, v, &up, &down));
    }
    let le = ["--leader-election", "--lease-seconds", "3"];
    let a = Operator::start(&api, dir.path(), "op-1", &le);
    let b = Operator::start(&api, dir.path(), "op-2", &le);
    let leader = |o: &Operator| o.metric("chmigrate_leader") as i64;
    wait_until("a leader", Duration::from_secs(30), || {
        leader(&a) + leader(&b) == 1
    });
    wait_ready(&api, &a, ns, name, "True", "Applied");
    for v in ["1", "2", "3"] {
        assert_eq!(completed(SINGLE, &db, v), 1, "V{v} applied exactly once");
    }
    let lease = api
        .get("leases", "default", "chmigrate-operator")
        .expect("lease");
    // The Lease names the instance (its name and a per-process suffix).
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .split('_')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(holder == "op-1" || holder == "op-2", "{lease}");
    assert_eq!(holder == "op-1", leader(&a) == 1);
    assert_eq!(leader(&a) + leader(&b), 1, "never two leaders");

    // The leader dies; the standby takes over and carries on.
    let (mut dead, survivor) = if holder == "op-1" { (a, b) } else { (b, a) };
    dead.kill();
    let (up4, down4) = table("4", "h4");
    api.apply_yaml(&migration(ns, name, "4", &up4, &down4));
    wait_until("the standby to lead", Duration::from_secs(40), || {
        leader(&survivor) == 1
    });
    let obj = wait_set(&api, &survivor, ns, name, "V4 applied", |o| {
        o["status"]["appliedVersion"] == "4"
    });
    assert_eq!(condition(&obj, "Ready").0, "True");
    for v in ["1", "2", "3", "4"] {
        assert_eq!(completed(SINGLE, &db, v), 1, "V{v} applied exactly once");
    }
    drop(survivor);
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_fixed_secret_recovers_the_set_and_no_secret_reaches_status_events_or_logs() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("secrets", "files", unique_db("op_secret"));
    // The wrong password first ("wrong-pw-123" in base64).
    api.apply_yaml(&secret(ns).replace("czNjcmV0LXB3", "d3JvbmctcHctMTIz"));
    // Migrations as files in a ConfigMap, in two formats.
    api.apply_yaml(
        &json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "sql", "namespace": ns, "labels": { "chmigrate.io/migrations": "true" } },
            "data": {
                "V1__first.sql": "CREATE TABLE ${database}.f1 (x UInt8) ENGINE = MergeTree ORDER BY x;\n-- ROLLBACK: DROP TABLE ${database}.f1;\n",
                "2_second.up.sql": "CREATE TABLE ${database}.f2 (x UInt8) ENGINE = MergeTree ORDER BY x;\n",
                "2_second.down.sql": "DROP TABLE ${database}.f2;\n",
            },
        })
        .to_string(),
    );
    api.apply_yaml(&set(
        ns,
        name,
        &db,
        SINGLE,
        json!({ "configMaps": ["sql"] }),
    ));
    let op = Operator::start(&api, dir.path(), "op-s", &[]);
    let failing = wait_ready(&api, &op, ns, name, "False", "ConnectionRefused");
    assert!(
        condition(&failing, "Ready")
            .2
            .contains("authentication failed: Wrong password for user chm_secret"),
        "{failing}"
    );
    assert_eq!(
        condition(&failing, "Stalled").0,
        "True",
        "a person has to fix the Secret"
    );

    api.apply_yaml(&secret(ns));
    let obj = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert_eq!(obj["status"]["appliedVersion"], "2");
    assert_eq!(user_tables(SINGLE, &db), ["f1", "f2"]);

    let mut everything = String::new();
    for plural in [
        "migrationsets",
        "clickhousemigrations",
        "events.events.k8s.io",
        "events",
        "leases",
    ] {
        everything.push_str(&serde_json::to_string(&api.list(plural, None)).unwrap_or_default());
    }
    for r in api.requests().iter().filter(|r| r.is_write()) {
        everything.push_str(&serde_json::to_string(&r.body).unwrap_or_default());
    }
    everything.push_str(&op.logs());
    everything.push_str(&q(
        SINGLE,
        &format!("SELECT * FROM `{db}`.schema_migrations FORMAT JSONEachRow"),
    ));
    for secret in [
        "s3cret-pw",
        "wrong-pw-123",
        "czNjcmV0LXB3",
        "d3JvbmctcHctMTIz",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked into status, events, requests, logs or the ledger"
        );
    }
    drop(op);
    drop_db(SINGLE, &db, false);
}

#[test]
fn only_watched_namespaces_are_reconciled_with_json_logs_and_health_endpoints() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (db_in, db_out) = (unique_db("op_watched"), unique_db("op_ignored"));
    for (ns, db) in [("watched", &db_in), ("ignored", &db_out)] {
        api.apply_yaml(&secret(ns));
        api.apply_yaml(&set(ns, "s", db, SINGLE, json!({})));
        let (up, down) = table("1", "w");
        api.apply_yaml(&migration(ns, "s", "1", &up, &down));
    }
    let op = Operator::start(
        &api,
        dir.path(),
        "op-ns",
        &["--namespace", "watched", "--log-format", "json"],
    );
    wait_ready(&api, &op, "watched", "s", "True", "Applied");
    let base = op.metrics.trim_end_matches("/metrics").to_string();
    assert_eq!(
        http_get(&format!("{base}/healthz")).as_deref(),
        Some("ok\n")
    );
    wait_until("/readyz to answer ok", Duration::from_secs(10), || {
        http_get(&format!("{base}/readyz")).as_deref() == Some("ok\n")
    });
    let metrics = http_get(&op.metrics).unwrap_or_default();
    assert!(
        metrics.contains(r#"chmigrate_migrations_applied_total{namespace="watched",set="s"} 1"#),
        "{metrics}"
    );
    // The other namespace is never looked at: no request names it.
    assert!(api.get("migrationsets", "ignored", "s").expect("set")["status"].is_null());
    assert!(
        !api.requests()
            .iter()
            .any(|r| r.path.contains("/namespaces/ignored/"))
    );
    assert!(user_tables(SINGLE, &db_out).is_empty());
    let logs = op.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    drop(op);
    drop_db(SINGLE, &db_in, false);
}

#[test]
fn an_operator_killed_mid_migration_is_replaced_and_converges_without_help() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("crash", "long", unique_db("op_crash"));
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    let up: String = (0..30)
        .map(|i| {
            format!(
                "CREATE TABLE IF NOT EXISTS ${{database}}.k{i} (x UInt8) ENGINE = MergeTree ORDER BY x;\nSELECT sleep(0.05);\n"
            )
        })
        .collect();
    api.apply_yaml(&migration(ns, name, "1", &up, "SELECT 1"));
    let mut first = Operator::start(&api, dir.path(), "op-crash-1", &[]);
    let done = || ledger_count(SINGLE, &db, "statement_done");
    wait_until(
        "the migration to be half way",
        Duration::from_secs(60),
        || done() >= 20,
    );
    let _ = first.child.kill(); // SIGKILL: no chance to record or release anything
    let _ = first.child.wait();
    let done_at_kill = events_of(&ledger(SINGLE, &db), "1", "statement_done");
    assert!(
        done_at_kill < 60,
        "killed before the end ({done_at_kill} statements done)"
    );

    // Another instance without the leader Lease cannot know the holder is
    // gone: it waits and names the holder, it never takes the lock.
    let other = Operator::start(&api, dir.path(), "op-crash-2", &[]);
    let waiting = wait_ready(&api, &other, ns, name, "False", "LockHeld");
    assert!(
        waiting["status"]["lock"]["holder"]
            .as_str()
            .unwrap_or_default()
            .contains("op-crash-1"),
        "{}",
        waiting["status"]
    );
    drop(other);
    assert!(
        !ledger(SINGLE, &db).iter().any(|r| r["actor"]
            .as_str()
            .unwrap_or_default()
            .contains("op-crash-2")),
        "the instance without the lease wrote nothing: it ran nothing"
    );

    // The killed instance's container restarts (same pod name): it knows
    // the lock is its own earlier life's, takes it over and converges.
    let second = Operator::start(&api, dir.path(), "op-crash-1", &[]);
    let obj = wait_ready(&api, &second, ns, name, "True", "Applied");
    assert_eq!(obj["status"]["appliedVersion"], "1");
    assert_eq!(user_tables(SINGLE, &db).len(), 30);
    let rows = ledger(SINGLE, &db);
    for i in 0..60 {
        let n = rows
            .iter()
            .filter(|r| {
                r["version"] == "1" && r["event"] == "statement_done" && r["statement"] == i
            })
            .count();
        assert_eq!(n, 1, "statement {i} recorded done exactly once");
    }
    let forced: Vec<&Value> = rows
        .iter()
        .filter(|r| r["event"] == "lock_forced")
        .collect();
    assert_eq!(
        forced.len(),
        1,
        "the dead instance's lock was taken over, on the record"
    );
    assert!(
        forced[0]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("op-crash-1")
    );
    assert_eq!(completed(SINGLE, &db, "1"), 1);
    drop(second);
    drop_db(SINGLE, &db, false);
}

#[test]
fn the_cli_and_the_operator_exclude_each_other_through_the_ledger_lock() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("shared", "both", unique_db("op_cli"));
    // One migration, the same SQL for both runners (same checksum).
    let up = "CREATE TABLE IF NOT EXISTS ${database}.slow (x UInt8) ENGINE = MergeTree ORDER BY x;\nSELECT sleep(3);\n";
    let files = folder(&[("V1__slow.sql", &format!("{up}-- ROLLBACK: SELECT 1;\n"))]);
    let cli = spawn(&[
        "--url",
        SINGLE,
        "--user",
        "chm_secret",
        "--password",
        "s3cret-pw",
        "--database",
        &db,
        "--dir",
        files.path().to_str().expect("utf-8"),
        "migrate",
    ]);
    wait_until("the CLI to hold the lock", Duration::from_secs(30), || {
        user_tables(SINGLE, &db).contains(&"slow".to_string())
    });
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    api.apply_yaml(&migration(ns, name, "1", up, "SELECT 1"));
    let op = Operator::start(&api, dir.path(), "op-lock", &[]);
    let waiting = wait_ready(&api, &op, ns, name, "False", "LockHeld");
    assert!(
        waiting["status"]["lock"]["holder"]
            .as_str()
            .unwrap_or_default()
            .contains("chmigrate"),
        "the status names the CLI run holding the lock: {}",
        waiting["status"]
    );
    assert_eq!(condition(&waiting, "Reconciling").0, "True");
    let out = wait_out(cli);
    assert_eq!(out.code, 0, "{}", out.all());
    let done = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert!(done["status"]["lock"].is_null(), "{}", done["status"]);
    assert_eq!(completed(SINGLE, &db, "1"), 1, "applied once, by the CLI");
    let rows = ledger(SINGLE, &db);
    assert!(
        !rows.iter().any(|r| r["event"] == "started"
            && r["actor"]
                .as_str()
                .unwrap_or_default()
                .starts_with("operator:")),
        "the operator found it applied and ran nothing"
    );
    drop(op);
    drop_db(SINGLE, &db, false);
}

#[test]
fn two_cli_runners_and_two_operators_at_once_apply_every_migration_exactly_once() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("race", "four", unique_db("op_race"));
    // Each migration INSERTs its version into a log: one that ran twice
    // leaves a duplicate row.
    let ups: Vec<String> = (1..=8)
        .map(|v| {
            let create = if v == 1 {
                "CREATE TABLE ${database}.log (v UInt16) ENGINE = MergeTree ORDER BY v;\n"
            } else {
                ""
            };
            format!("{create}INSERT INTO ${{database}}.log VALUES ({v});\nSELECT sleep(0.2);\n")
        })
        .collect();
    let files: Vec<(String, String)> = ups
        .iter()
        .enumerate()
        .map(|(i, up)| {
            (
                format!("V{}__step.sql", i + 1),
                format!("{up}-- ROLLBACK: SELECT 1;\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let folder = folder(&files);
    let folder = folder.path().to_str().expect("utf-8").to_string();
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    for (i, up) in ups.iter().enumerate() {
        api.apply_yaml(&migration(ns, name, &(i + 1).to_string(), up, "SELECT 1"));
    }

    // Two operators without leader election (only the ledger lock keeps
    // them apart) and two CLI runners that retry while the target is locked.
    let a = Operator::start(&api, dir.path(), "op-race-a", &[]);
    let b = Operator::start(&api, dir.path(), "op-race-b", &[]);
    let cli = |who: &'static str| {
        let (db, folder) = (db.clone(), folder.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            wait_until(who, Duration::from_secs(120), || {
                let out = chm(&[
                    "--url",
                    SINGLE,
                    "--database",
                    &db,
                    "--dir",
                    &folder,
                    "migrate",
                ]);
                runs += 1;
                assert!(out.code == 0 || out.code == 4, "{who}: {}", out.all());
                out.code == 0
            });
            runs
        })
    };
    let (c1, c2) = (cli("CLI runner 1"), cli("CLI runner 2"));
    let (r1, r2) = (c1.join().expect("runner 1"), c2.join().expect("runner 2"));
    let obj = wait_set(&api, &a, ns, name, "V8 applied", |o| {
        o["status"]["appliedVersion"] == "8" && condition(o, "Ready").0 == "True"
    });
    assert_eq!(condition(&obj, "Ready").1, "Applied");

    let log = rows(
        SINGLE,
        &format!("SELECT v, count() AS n FROM `{db}`.log GROUP BY v ORDER BY v"),
    );
    assert_eq!(log.len(), 8, "every migration ran: {log:?}");
    assert!(
        log.iter().all(|r| r["n"] == "1" || r["n"] == 1),
        "no migration ran twice: {log:?}"
    );
    let rows = ledger(SINGLE, &db);
    for v in 1..=8 {
        let v = v.to_string();
        assert_eq!(events_of(&rows, &v, "started"), 1, "V{v} started once");
        assert_eq!(events_of(&rows, &v, "completed"), 1, "V{v} completed once");
    }
    assert!(
        !rows.iter().any(|r| r["event"] == "lock_forced"),
        "no runner took another's lock"
    );
    let actors: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["event"] == "lock_taken")
        .filter_map(|r| r["actor"].as_str())
        .collect();
    eprintln!("CLI runs: {r1} and {r2}; lock holders: {actors:?}");
    drop((a, b));
    drop_db(SINGLE, &db, false);
}

/// When each set's only migration ran: its `started` and `completed` times.
fn run_span(db: &str) -> (u64, u64) {
    let rows = ledger(SINGLE, db);
    let at = |event: &str| {
        rows.iter()
            .find(|r| r["version"] == "1" && r["event"] == event)
            .and_then(|r| {
                r["event_time_us"]
                    .as_u64()
                    .or_else(|| r["event_time_us"].as_str()?.parse().ok())
            })
            .unwrap_or_else(|| panic!("no {event} event in {db}: {rows:#?}"))
    };
    (at("started"), at("completed"))
}

#[test]
fn different_sets_are_reconciled_at_once_up_to_the_concurrency_and_never_beyond() {
    require(&[SINGLE]);
    for (concurrency, overlap) in [("2", true), ("1", false)] {
        let api = FakeApiServer::start();
        let dir = tempfile::tempdir().expect("tmp");
        let ns = "conc";
        api.apply_yaml(&secret(ns));
        let dbs = [unique_db("op_conc_a"), unique_db("op_conc_b")];
        for (name, db) in ["a", "b"].iter().zip(&dbs) {
            api.apply_yaml(&set(ns, name, db, SINGLE, json!({})));
            api.apply_yaml(&migration(
                ns,
                name,
                "1",
                "SELECT sleep(2);\nCREATE TABLE ${database}.t (x UInt8) ENGINE = MergeTree ORDER BY x;",
                "DROP TABLE ${database}.t",
            ));
        }
        let op = Operator::start(&api, dir.path(), "op-conc", &["--concurrency", concurrency]);
        for name in ["a", "b"] {
            wait_ready(&api, &op, ns, name, "True", "Applied");
        }
        let (a, b) = (run_span(&dbs[0]), run_span(&dbs[1]));
        let overlapped = a.0 < b.1 && b.0 < a.1;
        assert_eq!(
            overlapped, overlap,
            "--concurrency {concurrency}: a ran {a:?}, b ran {b:?}"
        );
        drop(op);
        for db in &dbs {
            drop_db(SINGLE, db, false);
        }
    }
}

#[test]
fn a_new_migration_turns_the_set_and_itself_reconciling_before_any_sql_runs() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("gitops", "app", unique_db("op_gitops"));
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    let (up, down) = table("1", "t1");
    api.apply_yaml(&migration(ns, name, "1", &up, &down));
    // A long recheck: only the watch event can start the next reconcile.
    let op = Operator::start_with_recheck(&api, dir.path(), "op-gitops", 300, &[]);
    let ready = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert!(
        ready["status"]["observedInputs"].is_string(),
        "{}",
        ready["status"]
    );
    let m1 = api
        .get("clickhousemigrations", ns, "app-v1")
        .unwrap_or_default();
    assert_eq!(condition(&m1, "Ready").0, "True", "{}", m1["status"]);
    assert_eq!(
        m1["status"]["observedGeneration"],
        m1["metadata"]["generation"]
    );

    // A new migration whose first statement takes a while: while it runs,
    // nobody may read the old Ready.
    api.apply_yaml(&migration(
        ns,
        name,
        "2",
        "SELECT sleep(2);\nSELECT 1",
        "SELECT 1",
    ));
    let mut seen_reconciling = false;
    wait_until("V2 to start running", Duration::from_secs(30), || {
        let s = set_obj(&api, ns, name);
        let (ready, reason, _) = condition(&s, "Ready");
        if ready == "False" && reason == "Reconciling" {
            seen_reconciling = true;
            assert_eq!(condition(&s, "Reconciling").0, "True");
        }
        events_of(&ledger(SINGLE, &db), "2", "started") > 0
    });
    // The migration has started in ClickHouse: the set and the new
    // migration already say Reconciling (checked while SQL runs).
    let s = set_obj(&api, ns, name);
    assert_eq!(condition(&s, "Ready").0, "False", "{}", s["status"]);
    assert_eq!(condition(&s, "Reconciling").0, "True", "{}", s["status"]);
    assert!(seen_reconciling || condition(&s, "Ready").1 == "Reconciling");
    let m2 = api
        .get("clickhousemigrations", ns, "app-v2")
        .unwrap_or_default();
    assert_eq!(condition(&m2, "Reconciling").0, "True", "{}", m2["status"]);
    assert_eq!(
        m2["status"]["observedGeneration"],
        m2["metadata"]["generation"]
    );
    // Then it settles.
    let done = wait_ready(&api, &op, ns, name, "True", "Applied");
    assert_eq!(done["status"]["appliedVersion"], "2");
    let m2 = api
        .get("clickhousemigrations", ns, "app-v2")
        .unwrap_or_default();
    assert_eq!(condition(&m2, "Ready").0, "True", "{}", m2["status"]);

    // A dry run settles as not ready, not reconciling, not stalled.
    let mut obj = set_obj(&api, ns, name);
    obj["spec"]["policy"]["dryRun"] = json!(true);
    obj["spec"]["targetVersion"] = json!("1");
    obj["spec"]["policy"]["allowRollback"] = json!(true);
    api.apply_yaml(&obj.to_string());
    let idle = wait_ready(&api, &op, ns, name, "False", "DryRun");
    assert_eq!(
        condition(&idle, "Reconciling").0,
        "False",
        "{}",
        idle["status"]
    );
    assert_eq!(condition(&idle, "Stalled").0, "False", "{}", idle["status"]);
    assert_eq!(
        idle["status"]["plan"][0]["action"], "rollback",
        "{}",
        idle["status"]
    );
    assert_eq!(
        user_tables(SINGLE, &db).len(),
        1,
        "a dry run changes nothing"
    );
    // Its migrations are not left pending by a set that applies nothing.
    let m2 = api
        .get("clickhousemigrations", ns, "app-v2")
        .unwrap_or_default();
    assert_eq!(condition(&m2, "Ready").0, "True", "{}", m2["status"]);
    drop(op);
    drop_db(SINGLE, &db, false);
}

#[test]
fn an_unlabelled_secret_stalls_the_set_and_the_operator_never_lists_secrets() {
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name) = ("optin", "steal");
    // A listener that must never see a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    api.apply_yaml(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string(),
    );
    api.apply_yaml(
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ch", "namespace": ns},
                "data": {"password": "czNjcmV0LXB3"}})
        .to_string(),
    );
    let unlabelled = api.get("secrets", ns, "ch").unwrap_or_default();
    assert!(unlabelled["metadata"]["labels"].is_null(), "{unlabelled}");
    api.apply_yaml(&set(ns, name, "d", &url, json!({})));
    let op = Operator::start(&api, dir.path(), "op-optin", &[]);
    let obj = wait_ready(&api, &op, ns, name, "False", "SecretNotAllowed");
    assert_eq!(condition(&obj, "Stalled").0, "True");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection reached the listener: {other:?}"),
    }
    let secret_requests: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| format!("{} {} watch={}", r.method, r.path, r.watch))
        .collect();
    assert!(!secret_requests.is_empty());
    assert!(
        secret_requests
            .iter()
            .all(|r| r == &format!("GET /api/v1/namespaces/{ns}/secrets/ch watch=false")),
        "Secrets are only read by name: {secret_requests:?}"
    );
}

#[test]
fn an_operator_newer_than_its_installed_crds_refuses_to_start_and_names_the_fields() {
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let current = std::fs::read_to_string(repo().join("crds/chmigrate.yaml")).expect("crds");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&current)
        .map(|d| serde::Deserialize::deserialize(d).expect("a CRD document"))
        .collect();
    // The CRDs of an older release: without spec.variablesFrom.
    let mut old = docs.clone();
    for crd in &mut old {
        if let Some(spec) = crd
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties")
            .and_then(Value::as_object_mut)
        {
            spec.remove("variablesFrom");
        }
        api.apply_yaml(&crd.to_string());
    }
    let mut op = Operator::start(&api, dir.path(), "op-old-crds", &[]);
    let status = wait_exit(&mut op.child, Duration::from_secs(30));
    assert!(!status.success(), "it must not run: {}", op.logs());
    let log = op.logs();
    assert!(
        log.contains("migrationsets.chmigrate.io lacks") && log.contains("spec.variablesFrom"),
        "{log}"
    );
    assert!(
        log.contains("kubectl apply -f crds/chmigrate.yaml"),
        "{log}"
    );

    // With the current CRDs it starts and stays up.
    for crd in &docs {
        api.apply_yaml(&crd.to_string());
    }
    let mut op = Operator::start(&api, dir.path(), "op-new-crds", &[]);
    wait_until("the operator to be ready", Duration::from_secs(30), || {
        http_get(&op.metrics.replace("/metrics", "/readyz")).is_some_and(|b| b.contains("ok"))
    });
    assert!(
        op.child.try_wait().expect("status").is_none(),
        "{}",
        op.logs()
    );
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if let Some(status) = child.try_wait().expect("status") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the process did not exit within {limit:?}");
}

#[test]
fn a_deleted_namespace_rolls_back_from_the_ledger_and_a_person_can_release_a_stuck_set() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let ns = "doomed";
    let db = unique_db("op_nsdel");
    api.apply_yaml(&secret(ns));
    let rollback = json!({ "policy": { "deletionPolicy": "Rollback" } });
    api.apply_yaml(&set(ns, "app", &db, SINGLE, rollback.clone()));
    for v in ["1", "2"] {
        let (up, down) = table(v, &format!("t{v}"));
        api.apply_yaml(&migration(ns, "app", v, &up, &down));
    }
    // Migration files in a labelled ConfigMap too (a derived rollback).
    api.apply_yaml(
        &json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "sql", "namespace": ns, "labels": {"chmigrate.io/migrations": "true"}},
                "data": {"V3__c.sql": "CREATE TABLE ${database}.t3 (x UInt8) ENGINE = MergeTree ORDER BY x;\n"}})
        .to_string(),
    );
    let mut obj = set_obj(&api, ns, "app");
    obj["spec"]["configMaps"] = json!(["sql"]);
    api.apply_yaml(&obj.to_string());
    // A set whose target went away: it can never roll back.
    api.apply_yaml(&set(ns, "gone", "nowhere", "http://127.0.0.1:9", rollback));
    let op = Operator::start(&api, dir.path(), "op-nsdel", &[]);
    wait_ready(&api, &op, ns, "app", "True", "Applied");
    assert_eq!(user_tables(SINGLE, &db), ["t1", "t2", "t3"]);
    wait_set(&api, &op, ns, "gone", "the finalizer", |o| {
        o["metadata"]["finalizers"] == json!(["chmigrate.io/rollback"])
    });

    // Namespace deletion, in the worst order: the Secret, the migrations
    // and the ConfigMap go first, then the sets.
    api.delete("secrets", ns, "ch");
    for v in ["1", "2"] {
        api.delete("clickhousemigrations", ns, &format!("app-v{v}"));
    }
    api.delete("configmaps", ns, "sql");
    // The operator sees the set without its sources (and its Secret)
    // before the set itself goes.
    wait_set(
        &api,
        &op,
        ns,
        "app",
        "the set to notice its sources went",
        |o| condition(o, "Ready").0 == "False",
    );
    api.delete("migrationsets", ns, "app");
    api.delete("migrationsets", ns, "gone");
    wait_until(
        "the set to be rolled back and gone",
        Duration::from_secs(60),
        || api.get("migrationsets", ns, "app").is_none(),
    );
    assert!(
        user_tables(SINGLE, &db).is_empty(),
        "{:?}",
        user_tables(SINGLE, &db)
    );
    let rows = ledger(SINGLE, &db);
    for v in ["1", "2", "3"] {
        assert_eq!(
            events_of(&rows, v, "completed"),
            2,
            "V{v} applied, then rolled back"
        );
    }
    // Their sources were gone: each rollback ran what the ledger recorded.
    for v in ["1", "2", "3"] {
        let down = rows
            .iter()
            .find(|r| r["version"] == v && r["direction"] == "down" && r["event"] == "started")
            .unwrap_or_else(|| panic!("V{v} rolled back"));
        assert!(
            down["details"]
                .as_str()
                .unwrap_or_default()
                .contains("rollback recorded when V"),
            "{down}"
        );
    }

    // The other one stays, says why and how to let it go.
    let stuck = wait_set(&api, &op, ns, "gone", "a message naming the way out", |o| {
        condition(o, "Ready")
            .2
            .contains("chmigrate.io/release-finalizer=true")
    });
    assert_eq!(condition(&stuck, "Ready").0, "False");
    let mut obj = set_obj(&api, ns, "gone");
    obj["metadata"]["annotations"] = json!({ "chmigrate.io/release-finalizer": "true" });
    api.apply_yaml(&obj.to_string());
    wait_until(
        "the released set to be gone",
        Duration::from_secs(60),
        || api.get("migrationsets", ns, "gone").is_none(),
    );
    assert!(
        events(&api, ns)
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "FinalizerReleased")
    );
    drop(op);
    drop_db(SINGLE, &db, false);
}

/// A migration of `n` INSERTs (each row must arrive exactly once) with a
/// `SELECT sleep(s)` before each.
fn slow_inserts(n: usize, sleep: f64) -> String {
    let mut up =
        String::from("CREATE TABLE ${database}.seen (i UInt32) ENGINE = MergeTree ORDER BY i;\n");
    for i in 0..n {
        up.push_str(&format!(
            "SELECT sleep({sleep});\nINSERT INTO ${{database}}.seen VALUES ({i});\n"
        ));
    }
    up
}

/// Rows in `db`.seen so far (0 while the table does not exist yet).
fn seen_rows(db: &str) -> usize {
    query(
        SINGLE,
        &format!("SELECT count() FROM `{db}`.seen FORMAT TSV"),
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}

/// Each of the `n` rows exactly once.
fn each_row_once(db: &str, n: usize) {
    let out = q(
        SINGLE,
        &format!("SELECT i, count() FROM `{db}`.seen GROUP BY i ORDER BY i FORMAT TSV"),
    );
    let counts: Vec<(usize, usize)> = out
        .lines()
        .filter_map(|l| {
            let (i, c) = l.split_once('\t')?;
            Some((i.parse().ok()?, c.parse().ok()?))
        })
        .collect();
    assert_eq!(counts.len(), n, "every INSERT ran: {out}");
    assert!(
        counts.iter().all(|(_, c)| *c == 1),
        "an INSERT ran twice: {out}"
    );
}

#[test]
fn a_leader_cut_off_from_the_api_server_stops_before_its_successor_starts() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("split", "brain", unique_db("op_split"));
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    let n = 30;
    api.apply_yaml(&migration(ns, name, "1", &slow_inserts(n, 0.2), "SELECT 1"));
    let le = ["--leader-election", "--lease-seconds", "6"];
    let a = Operator::start_with_token(&api, dir.path(), "op-a", "token-a", &le);
    wait_until("op-a to lead", Duration::from_secs(30), || {
        a.metric("chmigrate_leader") == 1.0
    });
    let b = Operator::start_with_token(&api, dir.path(), "op-b", "token-b", &le);
    let rows = || seen_rows(&db);
    wait_until(
        "the migration to be under way",
        Duration::from_secs(30),
        || rows() >= 3,
    );
    // The network between op-a and the API server goes: op-a can no longer
    // renew its Lease, but still reaches ClickHouse.
    api.partition("token-a");
    let cut = std::time::Instant::now();
    let obj = wait_set(&api, &b, ns, name, "Ready under op-b", |o| {
        condition(o, "Ready").0 == "True"
    });
    assert_eq!(obj["status"]["appliedVersion"], "1");
    assert!(b.metric("chmigrate_leader") == 1.0);
    assert!(
        cut.elapsed() >= Duration::from_secs(4),
        "op-b waited out the lease"
    );
    each_row_once(&db, n);
    let ledger_rows = ledger(SINGLE, &db);
    assert_eq!(completed(SINGLE, &db, "1"), 1);
    // op-a stopped by itself at its renew deadline, on the record, before
    // op-b took over: the two never ran at once.
    let actors: Vec<String> = ledger_rows
        .iter()
        .filter(|r| r["event"] == "statement_done")
        .map(|r| r["actor"].as_str().unwrap_or_default().to_string())
        .collect();
    let first_b = actors
        .iter()
        .position(|a| a.contains("op-b"))
        .expect("op-b ran some");
    assert!(
        actors[..first_b].iter().all(|a| a.contains("op-a, term")),
        "{actors:?}"
    );
    assert!(
        actors[first_b..].iter().all(|a| a.contains("op-b, term")),
        "{actors:?}"
    );
    assert!(a.logs().contains("lost the leadership"), "{}", a.logs());
    drop((a, b));
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_frozen_leader_is_fenced_in_clickhouse_when_its_successor_takes_over() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let (ns, name, db) = ("fence", "frozen", unique_db("op_fence"));
    api.apply_yaml(&secret(ns));
    api.apply_yaml(&set(ns, name, &db, SINGLE, json!({})));
    let n = 20;
    api.apply_yaml(&migration(ns, name, "1", &slow_inserts(n, 1.0), "SELECT 1"));
    let le = ["--leader-election", "--lease-seconds", "4"];
    let a = Operator::start_with_token(&api, dir.path(), "op-a", "token-a", &le);
    wait_until("op-a to lead", Duration::from_secs(30), || {
        a.metric("chmigrate_leader") == 1.0
    });
    let b = Operator::start_with_token(&api, dir.path(), "op-b", "token-b", &le);
    // Freeze op-a while ClickHouse runs one of its sleeps (a GC pause, a
    // stopped VM): it neither renews nor notices anything.
    let running_sleep = || {
        q(
            SINGLE,
            "SELECT count() FROM system.processes WHERE query LIKE 'SELECT sleep%' AND query_id LIKE 'chmigrate-%' AND elapsed < 0.5 FORMAT TSV",
        )
        .trim()
            == "1"
    };
    wait_until(
        "op-a in a sleep, a few rows in",
        Duration::from_secs(60),
        || seen_rows(&db) >= 2 && running_sleep(),
    );
    let pid = a.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    // op-b takes the Lease after it, then the lock (an earlier term's),
    // stopping op-a's statement, and finishes the migration.
    let obj = wait_set(&api, &b, ns, name, "Ready under op-b", |o| {
        condition(o, "Ready").0 == "True"
    });
    assert_eq!(obj["status"]["appliedVersion"], "1");
    // op-a wakes up believing it leads, mid-migration.
    let status = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut a = a;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while a.child.try_wait().expect("wait").is_none() {
        assert!(
            std::time::Instant::now() < end,
            "op-a did not stop: {}",
            a.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    each_row_once(&db, n);
    // It stopped on its own (renew deadline) or at ClickHouse's fence,
    // whichever came first; either way it said so.
    let log = a.logs();
    assert!(
        log.contains("lost the leadership") || log.contains("no longer this run's"),
        "{log}"
    );
    eprintln!("op-a after waking up:\n{log}");
    let rows = ledger(SINGLE, &db);
    let forced: Vec<&Value> = rows
        .iter()
        .filter(|r| r["event"] == "lock_forced")
        .collect();
    assert_eq!(forced.len(), 1, "op-b took the lock over, on the record");
    assert!(
        forced[0]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("op-a, term"),
        "{}",
        forced[0]
    );
    // Nothing op-a wrote after the takeover.
    let taken_at = forced[0]["seq"].as_u64().unwrap_or(0);
    assert!(
        rows.iter()
            .filter(|r| r["seq"].as_u64().unwrap_or(0) > taken_at)
            .all(|r| !r["actor"].as_str().unwrap_or_default().contains("op-a")),
        "op-a wrote after it was fenced"
    );
    assert_eq!(completed(SINGLE, &db, "1"), 1);
    // The status is op-b's: op-a, deposed, wrote nothing to the API.
    let obj = set_obj(&api, ns, name);
    assert_eq!(condition(&obj, "Ready").0, "True", "{}", obj["status"]);
    drop(b);
    drop_db(SINGLE, &db, false);
}
