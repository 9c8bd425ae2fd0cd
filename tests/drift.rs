//! Replica schema drift on the real 2 shards x 2 replicas cluster: a table
//! dropped by hand on one replica, a replica whose data was wiped and that
//! restarted empty, a column added by hand on one host — each seen by
//! `status` and `validate --online` with its host and object; the first two
//! repaired by `sync-hosts` (data back through replication), the third
//! reported and left alone. The tests share one mutex; the one that stops a
//! node restarts it on drop, whatever happens.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_apiserver::FakeApiServer;
use support::operator::{Operator, condition, migration, secret, set};
use support::*;

static DRIFT_LOCK: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    DRIFT_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Node `n` (1..4) restarted and answering when dropped, even when the test
/// panicked with it down.
struct NodeBack(usize);

impl Drop for NodeBack {
    fn drop(&mut self) {
        dev_cluster(&["start-node", &self.0.to_string()]);
        require(&[NODES[self.0 - 1]]);
    }
}

fn args<'a>(db: &'a str, dir: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--url",
        NODES[0],
        "--cluster",
        CLUSTER,
        "--database",
        db,
        "--dir",
        dir,
    ];
    v.extend_from_slice(rest);
    v
}

/// A sharded replicated table changed by a later migration (so a replica
/// joining it must match ZooKeeper's current metadata), an unreplicated
/// table, and a view; rows on both shards.
fn migrated(prefix: &str) -> (String, tempfile::TempDir) {
    // Other suites stop and restart nodes of the shared cluster: wait for
    // every node rather than fail on one being restarted.
    wait_until("every node answers", Duration::from_secs(180), || {
        NODES.iter().all(|n| query(n, "SELECT 1").is_ok())
    });
    let db = unique_db(prefix);
    let dir = folder(&[
        (
            "V1__events.sql",
            "CREATE TABLE ${database}.events (id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/events', '{replica}') ORDER BY id;",
        ),
        (
            "V2__notes.sql",
            "CREATE TABLE ${database}.notes (id UInt64, note String) ENGINE = MergeTree ORDER BY id;\n\
             CREATE VIEW ${database}.recent AS SELECT id FROM ${database}.events WHERE id > 1;",
        ),
        (
            "V3__kind.sql",
            "ALTER TABLE ${database}.events ADD COLUMN kind String DEFAULT 'x';",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    q(
        NODES[0],
        &format!("INSERT INTO `{db}`.events (id) VALUES (1), (2), (3)"),
    );
    q(
        NODES[2],
        &format!("INSERT INTO `{db}`.events (id) VALUES (10), (20)"),
    );
    for node in [NODES[1], NODES[3]] {
        wait_until("rows replicated", Duration::from_secs(30), || {
            count(node, &format!("SELECT count() FROM `{db}`.events")) > 0
        });
    }
    (db, dir)
}

fn host_of(node: usize) -> String {
    format!("127.0.0.{}:{}", 10 + node, 9000 + node)
}

/// `status --format json`'s host entries by host.
fn status_hosts(db: &str, dir: &str) -> Vec<Value> {
    let st = chm(&args(db, dir, &["status", "--format", "json"]));
    assert_eq!(st.code, 0, "{}", st.all());
    st.json()["hosts"].as_array().unwrap().clone()
}

fn drift_of(hosts: &[Value], host: &str) -> Vec<Value> {
    hosts
        .iter()
        .find(|h| h["host"] == host)
        .unwrap_or_else(|| panic!("no host {host} in {hosts:?}"))["drift"]
        .as_array()
        .unwrap()
        .clone()
}

fn assert_all_in_sync(db: &str, dir: &str) {
    let hosts = status_hosts(db, dir);
    assert_eq!(hosts.len(), 4);
    for h in &hosts {
        assert_eq!(h["state"], "in sync", "{h}");
        assert_eq!(h["drift"], serde_json::json!([]), "{h}");
    }
}

/// A table's columns on one node, in order.
fn columns(node: &str, db: &str, table: &str) -> Vec<String> {
    rows(
        node,
        &format!("SELECT name FROM system.columns WHERE database = '{db}' AND table = '{table}'"),
    )
    .iter()
    .map(|r| r["name"].as_str().unwrap_or_default().to_string())
    .collect()
}

fn host_synced(db: &str) -> Vec<Value> {
    ledger(NODES[0], db)
        .into_iter()
        .filter(|r| r["event"] == "host_synced")
        .collect()
}

#[test]
fn a_table_dropped_by_hand_on_one_replica_is_seen_and_synced_back_with_its_data() {
    let _g = serial();
    let (db, dir) = migrated("drift_drop");
    let d = dir.path().to_str().unwrap();
    assert_all_in_sync(&db, d);
    q(NODES[1], &format!("DROP TABLE `{db}`.events"));

    let hosts = status_hosts(&db, d);
    let node2 = drift_of(&hosts, &host_of(2));
    assert_eq!(node2.len(), 1, "{node2:?}");
    assert_eq!(node2[0]["object"], format!("{db}.events"));
    assert_eq!(node2[0]["kind"], "missing_object");
    assert_eq!(node2[0]["expected"], "ReplicatedMergeTree");
    assert_eq!(node2[0]["found"], Value::Null);
    for n in [1, 3, 4] {
        assert!(
            drift_of(&hosts, &host_of(n)).is_empty(),
            "node {n}: {hosts:?}"
        );
    }
    let text = chm(&args(&db, d, &["status"]));
    assert!(
        text.stdout
            .contains(&format!("drift: {db}.events: missing")),
        "{}",
        text.stdout
    );
    let v = chm(&args(&db, d, &["validate", "--online"]));
    assert_eq!(v.code, 5, "{}", v.all());
    assert!(
        v.all()
            .contains(&format!("{}: {db}.events: missing", host_of(2))),
        "{}",
        v.all()
    );

    // A dry run says what it would send and sends nothing.
    let dry = chm(&args(&db, d, &["sync-hosts", "--dry-run"]));
    assert_eq!(dry.code, 0, "{}", dry.all());
    assert!(
        dry.stdout
            .contains(&format!("would send for {db}.events ({})", host_of(2))),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("CREATE TABLE IF NOT EXISTS"),
        "{}",
        dry.stdout
    );
    assert!(!tables(NODES[1], &db).contains(&"events".to_string()));
    assert!(host_synced(&db).is_empty());

    let out = chm(&args(&db, d, &["sync-hosts"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("every host is in sync now"),
        "{}",
        out.stdout
    );
    // Back with its current columns, and its shard's rows fetched from its
    // peer.
    assert_eq!(columns(NODES[1], &db, "events"), ["id", "kind"]);
    wait_until(
        "rows fetched from the peer",
        Duration::from_secs(30),
        || count(NODES[1], &format!("SELECT count() FROM `{db}`.events")) == 3,
    );
    let synced = host_synced(&db);
    assert_eq!(synced.len(), 1, "{synced:?}");
    let details: Value = serde_json::from_str(synced[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["object"], format!("{db}.events"));
    assert_eq!(details["action"], "create");
    assert_eq!(details["for_hosts"][0], host_of(2));
    assert_all_in_sync(&db, d);
    let v = chm(&args(&db, d, &["validate", "--online"]));
    assert_eq!(v.code, 0, "{}", v.all());
    drop_db(NODES[0], &db, true);
}

#[test]
fn a_replica_wiped_and_restarted_empty_gets_the_schema_and_its_data_back() {
    let _g = serial();
    let (db, dir) = migrated("drift_wipe");
    let d = dir.path().to_str().unwrap();
    {
        // Only this test's database is wiped on node 2: other tests'
        // databases on the shared node survive.
        let _back = NodeBack(2);
        dev_cluster(&["stop-node", "2"]);
        let data = server_data_dir("node2");
        for p in [data.join("data").join(&db), data.join("metadata").join(&db)] {
            if p.exists() {
                std::fs::remove_dir_all(&p).unwrap();
            }
        }
        let sql = data.join("metadata").join(format!("{db}.sql"));
        if sql.exists() {
            std::fs::remove_file(&sql).unwrap();
        }
    }
    assert_eq!(
        count(
            NODES[1],
            &format!("SELECT count() FROM system.databases WHERE name = '{db}'")
        ),
        0
    );

    let hosts = status_hosts(&db, d);
    let node2 = drift_of(&hosts, &host_of(2));
    let got: Vec<(String, String)> = node2
        .iter()
        .map(|x| {
            (
                x["object"].as_str().unwrap().to_string(),
                x["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        got.contains(&(db.clone(), "missing_database".into())),
        "{got:?}"
    );
    for t in ["schema_migrations", "events", "notes", "recent"] {
        assert!(
            got.contains(&(format!("{db}.{t}"), "missing_object".into())),
            "{t}: {got:?}"
        );
    }
    for n in [1, 3, 4] {
        assert!(
            drift_of(&hosts, &host_of(n)).is_empty(),
            "node {n}: {hosts:?}"
        );
    }

    let out = chm(&args(
        &db,
        d,
        &["sync-hosts", "--host", &host_of(2), "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let j = out.json();
    let kinds: Vec<(String, String)> = j["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["object"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // ZooKeeper still knew node 2's replicas: attached, not created.
    assert!(
        kinds.contains(&(db.clone(), "create_database".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(format!("{db}.events"), "attach".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(format!("{db}.notes"), "create".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(format!("{db}.schema_migrations"), "attach".into())),
        "{kinds:?}"
    );
    let pos = |o: &str| kinds.iter().position(|k| k.0 == o).unwrap();
    assert!(pos(&format!("{db}.events")) < pos(&format!("{db}.recent")));

    let mut want = tables(NODES[0], &db);
    want.sort();
    let mut have = tables(NODES[1], &db);
    have.sort();
    assert_eq!(have, want);
    wait_until(
        "node 2 fetched its shard's rows",
        Duration::from_secs(60),
        || count(NODES[1], &format!("SELECT count() FROM `{db}`.events")) == 3,
    );
    let l = ledger(NODES[0], &db);
    wait_until("node 2 fetched the ledger", Duration::from_secs(60), || {
        ledger(NODES[1], &db).len() >= l.len()
    });
    assert!(host_synced(&db).len() >= 4);
    assert_all_in_sync(&db, d);
    drop_db(NODES[0], &db, true);
}

#[test]
fn a_column_added_by_hand_on_one_host_is_reported_and_left_alone() {
    let _g = serial();
    let (db, dir) = migrated("drift_col");
    let d = dir.path().to_str().unwrap();
    q(
        NODES[2],
        &format!("ALTER TABLE `{db}`.notes ADD COLUMN hand String"),
    );
    let hosts = status_hosts(&db, d);
    let node3 = drift_of(&hosts, &host_of(3));
    assert_eq!(
        node3,
        [serde_json::json!({
            "object": format!("{db}.notes"),
            "kind": "extra_column",
            "column": "hand",
            "expected": null,
            "found": "String",
        })]
    );
    for n in [1, 2, 4] {
        assert!(drift_of(&hosts, &host_of(n)).is_empty(), "node {n}");
    }
    let v = chm(&args(&db, d, &["validate", "--online"]));
    assert_eq!(v.code, 5, "{}", v.all());

    let out = chm(&args(&db, d, &["sync-hosts"]));
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "left alone on {}: {db}.notes.hand: extra column",
            host_of(3)
        )),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("nothing to repair"), "{}", out.stdout);
    assert!(host_synced(&db).is_empty());
    assert_eq!(columns(NODES[2], &db, "notes"), ["id", "note", "hand"]);
    for node in [NODES[0], NODES[1], NODES[3]] {
        assert_eq!(columns(node, &db, "notes"), ["id", "note"], "{node}");
    }
    drop_db(NODES[0], &db, true);
}

/// Waits until the set's Ready condition has `reason`, at its generation.
fn wait_reason(api: &FakeApiServer, op: &Operator, ns: &str, name: &str, reason: &str) -> Value {
    let end = std::time::Instant::now() + Duration::from_secs(90);
    let mut last = Value::Null;
    while std::time::Instant::now() < end {
        last = api.get("migrationsets", ns, name).unwrap_or_default();
        let current = last["status"]["observedGeneration"] == last["metadata"]["generation"];
        if current && condition(&last, "Ready").1 == reason {
            return last;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{ns}/{name} never reached {reason}; last: {}\noperator log:\n{}",
        last["status"],
        op.logs()
    );
}

#[test]
fn the_operator_reports_drift_on_its_recheck_and_repairs_it_with_sync_hosts() {
    let _g = serial();
    wait_until("every node answers", Duration::from_secs(180), || {
        NODES.iter().all(|n| query(n, "SELECT 1").is_ok())
    });
    let db = unique_db("drift_op");
    let api = FakeApiServer::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let (ns, name) = ("drift", "events");
    api.apply_yaml(&secret(ns));
    let spec = |sync: bool| {
        json!({
            "connection": {
                "url": NODES[0], "database": db, "cluster": CLUSTER,
                "credentials": { "user": "chm_secret", "passwordSecretRef": { "name": "ch", "key": "password" } }
            },
            "policy": { "ddlTimeoutSeconds": 10, "syncHosts": sync },
        })
    };
    api.apply_yaml(&set(ns, name, &db, NODES[0], spec(false)));
    let up = "CREATE TABLE ${database}.op_t (id UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/op_t', '{replica}') ORDER BY id";
    api.apply_yaml(&migration(ns, name, "1", up, "DROP TABLE ${database}.op_t"));
    let op = Operator::start(&api, tmp.path(), "op-drift", &[]);
    wait_reason(&api, &op, ns, name, "Applied");
    q(
        NODES[0],
        &format!("INSERT INTO `{db}`.op_t VALUES (1), (2)"),
    );

    // Dropped by hand on node 2: seen on a recheck, with host and object.
    q(NODES[1], &format!("DROP TABLE `{db}`.op_t"));
    let drifted = wait_reason(&api, &op, ns, name, "SchemaDrift");
    let (ready, _, message) = condition(&drifted, "Ready");
    assert_eq!(ready, "False");
    assert_eq!(condition(&drifted, "Stalled").0, "True");
    assert!(
        message.starts_with(&format!("host {}: {db}.op_t: missing", host_of(2))),
        "{message}"
    );
    assert_eq!(
        drifted["status"]["driftedHosts"],
        json!([{ "host": host_of(2), "drift": [format!("{db}.op_t: missing (expected ReplicatedMergeTree)")] }])
    );
    let warned = api
        .list("events.events.k8s.io", Some(ns))
        .iter()
        .any(|e| e["type"] == "Warning" && e["reason"] == "SchemaDrift");
    assert!(warned, "no SchemaDrift event");
    // Later rechecks finding the same drift write nothing to the API.
    api.clear_requests();
    std::thread::sleep(Duration::from_secs(7));
    let writes: Vec<String> = api
        .writes()
        .iter()
        .map(|w| format!("{} {}", w.method, w.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(!tables(NODES[1], &db).contains(&"op_t".to_string()));

    // syncHosts: the next recheck repairs it; the data comes back.
    api.apply_yaml(&set(ns, name, &db, NODES[0], spec(true)));
    let ready = wait_reason(&api, &op, ns, name, "Applied");
    assert!(
        ready["status"]["driftedHosts"].is_null(),
        "{}",
        ready["status"]
    );
    wait_until(
        "op_t back on node 2 with its rows",
        Duration::from_secs(30),
        || {
            query(NODES[1], &format!("SELECT count() FROM `{db}`.op_t"))
                .is_ok_and(|t| t.contains("2"))
        },
    );
    let synced = host_synced(&db);
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert!(
        synced[0]["actor"]
            .as_str()
            .unwrap_or_default()
            .starts_with("operator:")
    );
    // In sync: rechecks write nothing.
    api.clear_requests();
    std::thread::sleep(Duration::from_secs(7));
    assert!(api.writes().is_empty(), "{:?}", api.writes().len());
    drop(op);
    drop_db(NODES[0], &db, true);
}
