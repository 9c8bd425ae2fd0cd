//! The CLI against the real 2 shards x 2 replicas cluster (127.0.0.11-14,
//! ZooKeeper on 127.0.0.1:12181) started by `scripts/dev-cluster.sh
//! start-cluster`. Tests that stop a node or ZooKeeper must not overlap with
//! the others, so every test here holds one mutex.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use support::*;

static CLUSTER_LOCK: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn args<'a>(node: usize, db: &'a str, dir: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--url",
        NODES[node],
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

/// A fresh database with its ledger on every node, and a folder holding one
/// migration that creates a sharded, replicated table.
fn replicated_target(prefix: &str) -> (String, tempfile::TempDir) {
    let db = unique_db(prefix);
    let dir = folder(&[(
        "V1__t.sql",
        "CREATE TABLE ${database}.t (x UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/t', '{replica}') ORDER BY x;",
    )]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        chm(&args(0, &db, d, &["baseline", "--version", "0"])).code,
        0
    );
    (db, dir)
}

/// Every node up and ON CLUSTER DDL working (after a test stopped something).
fn healthy() {
    dev_cluster(&["start-cluster"]);
    require(&NODES);
}

#[test]
fn migrate_through_one_node_read_status_through_another() {
    let _g = serial();
    healthy();
    let db = unique_db("cl");
    let out = chm(&args(0, &db, "migrations", &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("applied V1, V2, V3, V4 (6 statement(s))"),
        "{}",
        out.stdout
    );
    let want = [
        "events",
        "events_monthly",
        "events_monthly_mv",
        "schema_migrations",
        "users",
        "users_by_email",
        "users_by_email_mv",
    ];
    for node in NODES {
        assert_eq!(tables(node, &db), want, "schema on {node}");
    }
    // Every statement was confirmed by all four hosts.
    let l = ledger(NODES[0], &db);
    for r in l.iter().filter(|r| r["event"] == "statement_done") {
        let hosts: Vec<serde_json::Value> =
            serde_json::from_str(r["hosts"].as_str().unwrap()).unwrap();
        assert_eq!(hosts.len(), 4, "{r}");
        assert!(hosts.iter().all(|h| h["status"] == 0));
    }
    // The whole ledger is on every node, and status through node 3 sees it.
    for node in NODES {
        wait_until("ledger replicated", Duration::from_secs(20), || {
            ledger(node, &db).len() == l.len()
        });
    }
    let st = chm(&args(2, &db, "migrations", &["status", "--format", "json"])).json();
    assert_eq!(st["applied_version"], "4");
    assert_eq!(st["hosts"].as_array().unwrap().len(), 4);
    assert!(
        st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["state"] == "in sync"),
        "{st}"
    );
    // A run through node 4 right after has nothing to do.
    let out = chm(&args(3, &db, "migrations", &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    // Rollback on the cluster removes the objects everywhere.
    let out = chm(&args(1, &db, "migrations", &["rollback", "--to", "2"]));
    assert_eq!(out.code, 0, "{}", out.all());
    for node in NODES {
        assert_eq!(
            tables(node, &db),
            [
                "schema_migrations",
                "users",
                "users_by_email",
                "users_by_email_mv"
            ],
            "{node}"
        );
    }
    drop_db(NODES[0], &db, true);
}

/// Node 4 is taken down by `down` before an ON CLUSTER migration; the run
/// reports it pending (exit 3) and, while it stays down, keeps saying so;
/// `still_down` may change how it is down (a paused node killed); once it is
/// back, a run verifies it without re-running the DDL anywhere.
fn replica_down_is_reported_then_verified(down: &[&str], still_down: &[&str]) {
    let _g = serial();
    healthy();
    // The ledger exists on every node before anything is stopped.
    let (db, dir) = replicated_target("down");
    let d = dir.path().to_str().unwrap();
    dev_cluster(down);
    let out = chm(&args(0, &db, d, &["migrate", "--ddl-timeout", "3"]));
    assert_eq!(out.code, 3, "applied, hosts pending: {}", out.all());
    assert!(
        out.stdout
            .contains("Hosts pending for V1 statement 1: 127.0.0.14:9004"),
        "{}",
        out.stdout
    );
    for node in &NODES[..3] {
        assert!(tables(node, &db).contains(&"t".to_string()), "{node}");
    }
    let st = chm(&args(1, &db, d, &["status", "--format", "json"])).json();
    let h4 = st["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "127.0.0.14:9004")
        .cloned()
        .unwrap();
    assert!(
        h4["state"]
            .as_str()
            .unwrap()
            .starts_with("pending: V1 statement 1"),
        "{st}"
    );
    if !still_down.is_empty() {
        dev_cluster(still_down);
    }
    // While the host is still down, another run still says pending (exit 3).
    assert_eq!(
        chm(&args(0, &db, d, &["migrate", "--ddl-timeout", "3"])).code,
        3
    );
    dev_cluster(&["start-node", "4"]);
    wait_until(
        "node 4 runs the queued DDL",
        Duration::from_secs(60),
        || {
            query(
                NODES[3],
                &format!(
                    "SELECT count() FROM system.tables WHERE database = '{db}' AND name = 't'"
                ),
            )
            .map(|t| t.contains("1"))
            .unwrap_or(false)
        },
    );
    let out = chm(&args(0, &db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let l = ledger(NODES[0], &db);
    assert_eq!(
        events_of(&l, "1", "statement_done"),
        1,
        "not re-run on the hosts that had finished"
    );
    assert_eq!(events_of(&l, "1", "hosts_pending"), 1);
    assert_eq!(events_of(&l, "1", "hosts_verified"), 1);
    let st = chm(&args(3, &db, d, &["status", "--format", "json"])).json();
    assert!(
        st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["state"] == "in sync"),
        "{st}"
    );
    for node in NODES {
        assert!(tables(node, &db).contains(&"t".to_string()), "{node}");
    }
    drop_db(NODES[0], &db, true);
}

#[test]
fn a_replica_down_during_on_cluster_is_reported_then_verified() {
    replica_down_is_reported_then_verified(&["stop-node", "4"], &[]);
}

#[test]
fn a_replica_paused_then_killed_during_on_cluster_is_reported_then_verified() {
    // SIGSTOP: the node keeps its connections and its ZooKeeper session but
    // answers nothing; then SIGKILL, a crash, before it is started again.
    replica_down_is_reported_then_verified(&["pause-node", "4"], &["kill-node", "4"]);
}

#[test]
fn zookeeper_down_fails_clearly_and_the_next_run_completes() {
    let _g = serial();
    healthy();
    // The ledger exists on every node before anything is stopped.
    let (db, dir) = replicated_target("zk");
    let d = dir.path().to_str().unwrap();
    let before = ledger(NODES[0], &db).len();
    dev_cluster(&["stop-zk"]);
    let out = chm(&args(0, &db, d, &["migrate", "--ddl-timeout", "5"]));
    dev_cluster(&["start-zk"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("ZooKeeper"), "{}", out.stderr);
    // Once ZooKeeper is back, the next run applies the migration exactly once.
    let mut last = String::new();
    wait_until(
        "a run succeeds after ZooKeeper is back",
        Duration::from_secs(90),
        || {
            let out = chm(&args(0, &db, d, &["migrate", "--ddl-timeout", "10"]));
            if out.code == 4 {
                // A lock left by the failed attempt, if it got that far.
                let _ = chm(&args(0, &db, d, &["unlock"]));
            }
            last = out.all();
            out.code == 0
        },
    );
    let l = ledger(NODES[0], &db);
    assert!(l.len() > before, "{last}");
    assert_eq!(events_of(&l, "1", "completed"), 1);
    for node in NODES {
        wait_until("table on every node", Duration::from_secs(30), || {
            tables(node, &db).contains(&"t".to_string())
        });
    }
    drop_db(NODES[0], &db, true);
}

#[test]
fn zookeeper_stopped_during_a_run_fails_clearly_and_the_next_run_resumes() {
    let _g = serial();
    healthy();
    let db = unique_db("zkrun");
    let rmt = |t: &str| {
        format!(
            "CREATE TABLE ${{database}}.{t} (x UInt32) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/${{database}}/{t}', '{{replica}}') ORDER BY x;\n"
        )
    };
    // ZooKeeper is stopped while the sleeps run, between the two DDLs.
    let sql = format!(
        "{}SELECT sleep(3);\nSELECT sleep(3);\n{}",
        rmt("a"),
        rmt("b")
    );
    let dir = folder(&[("V1__two.sql", &sql)]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        chm(&args(0, &db, d, &["baseline", "--version", "0"])).code,
        0
    );
    let run = spawn(&args(0, &db, d, &["migrate", "--ddl-timeout", "10"]));
    wait_until("the first DDL done", Duration::from_secs(30), || {
        ledger_count(NODES[0], &db, "statement_done") >= 1
    });
    dev_cluster(&["stop-zk"]);
    let out = wait_out(run);
    dev_cluster(&["start-zk"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("ZooKeeper")
            || out.stderr.contains("read-only")
            || out.stderr.contains("readonly"),
        "the error says what is wrong: {}",
        out.stderr
    );
    // The runbook: once ZooKeeper is back, run again; a lock left by the
    // failed run (it could not release it without ZooKeeper) is unlocked.
    let mut unlocked = 0;
    let mut last = String::new();
    wait_until(
        "a run succeeds after ZooKeeper is back",
        Duration::from_secs(120),
        || {
            let out = chm(&args(0, &db, d, &["migrate", "--ddl-timeout", "10"]));
            if out.code == 4 {
                assert_eq!(chm(&args(0, &db, d, &["unlock"])).code, 0);
                unlocked += 1;
            }
            assert_ne!(out.code, 2, "no repair needed: {}", out.all());
            last = out.all();
            out.code == 0
        },
    );
    assert!(unlocked <= 1, "{last}");
    let l = ledger(NODES[0], &db);
    assert_eq!(events_of(&l, "1", "completed"), 1, "{l:?}");
    let first_ddl = l
        .iter()
        .filter(|r| r["event"] == "statement_done" && r["statement"] == 0)
        .count();
    assert_eq!(first_ddl, 1, "the first DDL ran once: {l:?}");
    for node in NODES {
        wait_until("both tables on every node", Duration::from_secs(30), || {
            let t = tables(node, &db);
            t.contains(&"a".to_string()) && t.contains(&"b".to_string())
        });
    }
    drop_db(NODES[0], &db, true);
}

#[test]
fn runners_through_different_nodes_exclude_each_other() {
    let _g = serial();
    healthy();
    let db = unique_db("race");
    let dir = folder(&[(
        "V1__slow.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/a', '{replica}') ORDER BY x;\nSELECT sleep(3);\n",
    )]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        chm(&args(0, &db, d, &["baseline", "--version", "0"])).code,
        0
    );
    let a = spawn(&args(0, &db, d, &["migrate"]));
    let b = spawn(&args(2, &db, d, &["migrate"]));
    let (a, b) = (wait_out(a), wait_out(b));
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(codes, [0, 4], "{}\n{}", a.all(), b.all());
    let loser = if a.code == 4 { &a } else { &b };
    assert!(
        loser.stderr.contains("target is locked"),
        "{}",
        loser.stderr
    );
    assert_eq!(events_of(&ledger(NODES[1], &db), "1", "started"), 1);
    drop_db(NODES[0], &db, true);
}

#[test]
fn test_rehearses_on_every_host_and_drops_its_database_everywhere() {
    let _g = serial();
    healthy();
    let db = unique_db("cl_rehearse");
    let out = chm(&args(
        1,
        &db,
        "migrations",
        &["test", "--rollback", "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let v = out.json();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{v}");
    for r in results {
        assert_eq!(r["rollback"], "identical", "{v}");
    }
    // Created and dropped cluster-wide; the real target never existed.
    let sandbox = v["database"].as_str().unwrap();
    for node in NODES {
        for name in [sandbox, db.as_str()] {
            let n = count(
                node,
                &format!("SELECT count() AS n FROM system.databases WHERE name = '{name}'"),
            );
            assert_eq!(n, 0, "{name} on {node}");
        }
    }
}

/// Where the dev cluster keeps node N's data (scripts/dev-cluster.sh).
fn node_data_dir(n: usize) -> std::path::PathBuf {
    server_data_dir(&format!("node{n}"))
}

#[test]
fn backup_freeze_exists_on_every_replica_before_a_drop() {
    let _g = serial();
    healthy();
    let (db, dir) = replicated_target("cl_backup");
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(0, &db, d, &["migrate"])).code, 0);
    // Rows on both shards (each replica holds its shard's part).
    for node in [NODES[0], NODES[2]] {
        q(node, &format!("INSERT INTO `{db}`.t VALUES (1), (2), (3)"));
    }
    write_files(
        dir.path(),
        &[
            (
                "V2__add_note.sql",
                "ALTER TABLE ${database}.t ADD COLUMN note String DEFAULT '';",
            ),
            (
                "V3__drop_t.sql",
                "-- Rollback: false\nDROP TABLE ${database}.t;",
            ),
        ],
    );
    let out = chm(&args(1, &db, d, &["--backup", "freeze", "migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let ledger = ledger(NODES[1], &db);
    // Adding a column puts no data at risk: one backup, for the DROP.
    let backups: Vec<&serde_json::Value> =
        ledger.iter().filter(|e| e["event"] == "backup").collect();
    assert_eq!(backups.len(), 1, "{ledger:#?}");
    let b = backups[0];
    assert_eq!(b["version"], "3");
    let details: serde_json::Value = serde_json::from_str(b["details"].as_str().unwrap()).unwrap();
    let name = details["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("V3_") && name.ends_with("_s1"), "{name}");
    assert_eq!(details["table"], "t");
    assert_eq!(details["hosts"].as_array().unwrap().len(), 4, "{details}");
    // Recorded before the DROP ran.
    let seq = |e: &serde_json::Value| e["seq"].as_u64().unwrap();
    let drop_done = ledger
        .iter()
        .find(|e| e["event"] == "statement_done" && e["version"] == "3")
        .expect("the drop ran");
    assert!(seq(b) < seq(drop_done));
    // The frozen parts exist on every replica, and the table is gone.
    for n in 1..=4 {
        let shadow = node_data_dir(n).join("shadow").join(&name);
        let files = walk(&shadow);
        assert!(
            files.iter().any(|f| f.ends_with("checksums.txt")),
            "node{n}: no frozen part under {}: {files:?}",
            shadow.display()
        );
    }
    assert!(user_tables(NODES[0], &db).is_empty());

    // Listed; pruning on 18.16 (no UNFREEZE) says so and records nothing,
    // --forget records the removal a person did.
    let out = chm(&args(2, &db, d, &["backups", "list", "--format", "json"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.json()["backups"][0]["name"], name.as_str());
    assert_eq!(out.json()["backups"][0]["pruned"], false);
    let out = chm(&args(
        2,
        &db,
        d,
        &["backups", "prune", "--older-than", "0s"],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!("NOT removed {name}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("--forget"), "{}", out.stdout);
    let out = chm(&args(
        2,
        &db,
        d,
        &["backups", "prune", "--older-than", "0s", "--forget"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let out = chm(&args(2, &db, d, &["backups", "list", "--format", "json"]));
    assert_eq!(out.json()["backups"][0]["pruned"], true, "{}", out.stdout);
    let out = chm(&args(
        2,
        &db,
        d,
        &["backups", "prune", "--older-than", "bad"],
    ));
    assert_eq!(out.code, 2, "{}", out.all());
    drop_db(NODES[0], &db, true);
    for n in 1..=4 {
        let _ = std::fs::remove_dir_all(node_data_dir(n).join("shadow").join(&name));
    }
}

#[test]
fn clean_on_a_cluster_removes_superseded_events_on_every_replica() {
    let _g = serial();
    healthy();
    let (db, dir) = replicated_target("cl_clean");
    let d = dir.path().to_str().unwrap();
    for cmd in [&["migrate"][..], &["rollback", "--to", "0"], &["migrate"]] {
        let out = chm(&args(0, &db, d, cmd));
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let before = ledger(NODES[0], &db).len();
    let out = chm(&args(
        1,
        &db,
        d,
        &["clean", "--older-than", "0s", "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let removed = out.json()["removed"].as_u64().unwrap() as usize;
    assert!(removed > 0, "{}", out.stdout);
    for node in NODES {
        wait_until(
            "the deletion reached every replica",
            Duration::from_secs(30),
            || ledger(node, &db).len() == before - removed + 3,
        );
        assert_eq!(events_of(&ledger(node, &db), "1", "started"), 1, "{node}");
    }
    let out = chm(&args(3, &db, d, &["status", "--format", "json"]));
    assert_eq!(out.json()["applied_version"], "1", "{}", out.stdout);
    drop_db(NODES[0], &db, true);
}

#[test]
fn targets_migrate_a_single_node_and_a_cluster_at_once() {
    let _g = serial();
    healthy();
    require(&[SINGLE]);
    let (local_db, cluster_db) = (unique_db("tg_local"), unique_db("tg_cluster"));
    let dir = folder(&[
        (
            "migrations/V1__t.sql",
            "CREATE TABLE ${database}.t (x UInt8) ENGINE = MergeTree ORDER BY x;",
        ),
        // Unqualified: the target database's, on every host.
        (
            "migrations/V2__u.sql",
            "CREATE TABLE u (x UInt8) ENGINE = MergeTree ORDER BY x;\nINSERT INTO u VALUES (7);",
        ),
        (
            "chmigrate.yaml",
            &format!(
                "migrations: {{ dir: migrations }}\n\
                 environments:\n\
                 \x20 local: {{ connection: {{ url: '{SINGLE}', database: {local_db} }} }}\n\
                 \x20 replicated: {{ connection: {{ url: '{}', database: {cluster_db}, cluster: {CLUSTER} }} }}\n\
                 \x20 twin: {{ connection: {{ url: '{SINGLE}/', database: {local_db} }} }}\n\
                 \x20 broken: {{ connection: {{ url: 'http://127.0.0.1:1', database: {local_db}_x }} }}\n\
                 groups:\n  all: [local, replicated]\n",
                NODES[1]
            ),
        ),
    ]);
    let config = dir.path().join("chmigrate.yaml");
    let c = config.to_str().unwrap();
    let run = |rest: &[&str]| {
        let mut a = vec!["--config", c];
        a.extend_from_slice(rest);
        chm(&a)
    };

    // Two environments naming one ledger, or an unknown name: refused,
    // nothing runs anywhere.
    let out = run(&["--targets", "local,twin", "migrate"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("local and twin name the same target"),
        "{}",
        out.stderr
    );
    let out = run(&["--targets", "nope", "migrate"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("\"nope\" is neither an environment nor a group"),
        "{}",
        out.stderr
    );
    let out = run(&["--targets", "all", "new", "x"]);
    assert_eq!(out.code, 2, "{}", out.all());
    let exists = |url: &str, db: &str| {
        count(
            url,
            &format!("SELECT count() AS n FROM system.databases WHERE name = '{db}'"),
        ) > 0
    };
    assert!(!exists(SINGLE, &local_db), "nothing ran");

    // The group: both targets migrated, each with its own ledger.
    let out = run(&["--targets", "all", "--format", "json", "migrate"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let v = out.json();
    let names: Vec<&str> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "replicated"], "{v}");
    assert!(
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["exit_code"] == 0),
        "{v}"
    );
    assert_eq!(events_of(&ledger(SINGLE, &local_db), "1", "completed"), 1);
    assert_eq!(
        events_of(&ledger(NODES[0], &cluster_db), "1", "completed"),
        1
    );
    for node in NODES {
        assert_eq!(user_tables(node, &cluster_db), ["t", "u"], "{node}");
        assert!(
            !exists(node, "default")
                || count(
                    node,
                    "SELECT count() AS n FROM system.tables WHERE database = 'default' AND name = 'u'"
                ) == 0
        );
    }
    assert_eq!(user_tables(SINGLE, &local_db), ["t", "u"]);
    assert_eq!(
        count(
            SINGLE,
            &format!("SELECT count() AS n FROM `{local_db}`.u WHERE x = 7")
        ),
        1
    );
    assert!(
        out.stderr.contains("[replicated] ") || out.stderr.is_empty(),
        "{}",
        out.stderr
    );

    // Status of both, as blocks; a target that fails does not stop the
    // other, and the worst exit code wins.
    let out = run(&["--targets", "local,broken", "status"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("== local (exit 0)"), "{}", out.stdout);
    assert!(out.stdout.contains("== broken (exit 1)"), "{}", out.stdout);
    assert!(out.stderr.contains("[broken] error:"), "{}", out.stderr);
    let out = run(&["--targets", "all", "--jobs", "1", "status"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("2 target(s): local exit 0, replicated exit 0"),
        "{}",
        out.stdout
    );
    drop_db(SINGLE, &local_db, false);
    drop_db(NODES[0], &cluster_db, true);
}

#[test]
fn a_freeze_that_fails_on_one_replica_records_what_it_took_and_runs_nothing() {
    let _g = serial();
    healthy();
    let (db, dir) = replicated_target("cl_partial_backup");
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(0, &db, d, &["migrate"])).code, 0);
    for node in [NODES[0], NODES[2]] {
        q(node, &format!("INSERT INTO `{db}`.t VALUES (1), (2)"));
    }
    write_files(
        dir.path(),
        &[(
            "V2__drop_t.sql",
            "-- Rollback: false\nDROP TABLE ${database}.t;",
        )],
    );
    // node4 is down: the freeze succeeds on three replicas, then fails.
    dev_cluster(&["stop-node", "4"]);
    let out = chm(&args(
        0,
        &db,
        d,
        &["--backup", "freeze", "--ddl-timeout", "5", "migrate"],
    ));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all()
            .contains("the backup before the statement failed, so it did not run"),
        "{}",
        out.all()
    );
    assert_eq!(user_tables(NODES[0], &db), ["t"], "the DROP did not run");
    let ledger_now = ledger(NODES[0], &db);
    let backups: Vec<serde_json::Value> = ledger_now
        .iter()
        .filter(|e| e["event"] == "backup")
        .map(|e| serde_json::from_str(e["details"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(backups.len(), 1, "{ledger_now:#?}");
    assert_eq!(
        backups[0]["hosts"].as_array().unwrap().len(),
        3,
        "{}",
        backups[0]
    );
    let first = backups[0]["name"].as_str().unwrap().to_string();
    // Back up: the next run freezes everywhere and drops.
    dev_cluster(&["start-node", "4"]);
    require(&NODES);
    let out = chm(&args(0, &db, d, &["--backup", "freeze", "migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(user_tables(NODES[0], &db).is_empty());
    let out = chm(&args(1, &db, d, &["backups", "list", "--format", "json"]));
    let listed = out.json()["backups"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["name"], first.as_str());
    drop_db(NODES[0], &db, true);
    for n in 1..=4 {
        for b in &listed {
            let _ = std::fs::remove_dir_all(
                node_data_dir(n)
                    .join("shadow")
                    .join(b["name"].as_str().unwrap()),
            );
        }
    }
}

#[test]
fn a_lock_whose_lease_expired_is_taken_over_through_another_node() {
    let _g = serial();
    healthy();
    let (db, dir) = replicated_target("lease");
    let d = dir.path().to_str().unwrap();
    // A runner on another machine (a CI job) takes the lock through node 1
    // and is killed mid-migration: its lock table lives on node 1 only and
    // is never renewed again.
    write_files(dir.path(), &[("V2__slow.sql", "SELECT sleep(3);")]);
    let mut elsewhere = spawn_on_host(
        &args(0, &db, d, &["migrate", "--lock-lease", "2"]),
        "elsewhere-7",
    );
    wait_until(
        "the other runner started V2",
        Duration::from_secs(60),
        || events_of(&ledger(NODES[0], &db), "2", "started") > 0,
    );
    elsewhere.kill().expect("kill -9");
    let _ = elsewhere.wait();
    // Through node 3, which does not hold the lock table: its lease is
    // read from ZooKeeper; fresh, it is the holder's (exit 4)…
    let mut run = args(2, &db, d, &["migrate", "--lock-lease", "2"]);
    run.extend(["--ddl-timeout", "30"]);
    let out = chm(&run);
    assert_eq!(out.code, 4, "{}", out.all());
    // …expired, it is taken over (dropped on the cluster), on the record,
    // and the migration applies once on every host.
    let mut last = String::new();
    wait_until(
        "the expired lease is taken over",
        Duration::from_secs(60),
        || {
            let out = chm(&run);
            last = out.all();
            out.code == 0
        },
    );
    let l = ledger(NODES[3], &db);
    let forced: Vec<&serde_json::Value> =
        l.iter().filter(|r| r["event"] == "lock_forced").collect();
    assert_eq!(forced.len(), 1, "{last}");
    let details = forced[0]["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("lease expired") && details.contains("@elsewhere-7 (chmigrate"),
        "{details}"
    );
    assert_eq!(events_of(&l, "1", "completed"), 1);
    assert_eq!(events_of(&l, "2", "completed"), 1);
    assert_eq!(
        events_of(&l, "2", "statement_done"),
        1,
        "ran to completion once"
    );
    for node in NODES {
        wait_until("table on every node", Duration::from_secs(30), || {
            tables(node, &db).contains(&"t".to_string())
        });
    }
    drop_db(NODES[0], &db, true);
}

#[test]
fn unqualified_names_reach_every_host_in_the_target_database() {
    let _g = serial();
    healthy();
    // A database name that needs quoting, and migrations written the way
    // teams write them: no database in any name.
    let db = format!("{}-dash", unique_db("unq"));
    let dir = folder(&[
        (
            "V1__events_local.sql",
            "CREATE TABLE IF NOT EXISTS events_local (d Date, id UInt64) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/events_local', '{replica}') ORDER BY id;",
        ),
        (
            "V2__events.sql",
            "CREATE TABLE IF NOT EXISTS events AS events_local \
             ENGINE = Distributed(${cluster}, currentDatabase(), events_local, rand());",
        ),
        (
            "V3__view.sql",
            "CREATE VIEW IF NOT EXISTS per_day AS SELECT d, count() AS n FROM events_local GROUP BY d;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    // The plan shows the SQL as sent: every name qualified.
    let out = chm(&args(0, &db, d, &["plan"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(&format!("AS `{db}`.events_local"))
            && out
                .stdout
                .contains(&format!("Distributed(chm_cluster, '{db}', events_local"))
            && out.stdout.contains(&format!("FROM `{db}`.events_local")),
        "{}",
        out.stdout
    );
    let out = chm(&args(0, &db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    for node in NODES {
        wait_until("the objects on every host", Duration::from_secs(30), || {
            let t = tables(node, &db);
            ["events", "events_local", "per_day"]
                .iter()
                .all(|n| t.contains(&n.to_string()))
        });
        assert!(
            !tables(node, "default")
                .iter()
                .any(|t| t == "events_local" || t == "events"),
            "nothing lands in the default database of {node}"
        );
    }
    // Rows written through the Distributed table on one host are read
    // through the view on another.
    q(
        NODES[1],
        &format!(
            "INSERT INTO `{db}`.events VALUES ('2026-12-01', 1), ('2026-12-01', 2), ('2026-12-02', 3)"
        ),
    );
    wait_until("rows reach their shards", Duration::from_secs(30), || {
        count(NODES[3], &format!("SELECT count() FROM `{db}`.events")) == 3
    });
    drop_db(NODES[0], &db, true);
}

#[test]
fn an_alter_the_server_would_refuse_half_way_is_refused_before_anything_runs() {
    let _g = serial();
    healthy();
    let db = unique_db("alter371");
    let dir = folder(&[(
        "V1__events.sql",
        "CREATE TABLE events_local (d Date, id UInt64) \
         ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/events_local', '{replica}') ORDER BY id;\n\
         CREATE TABLE events AS events_local ENGINE = Distributed(${cluster}, ${database}, events_local, rand());",
    )]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(0, &db, d, &["migrate"])).code, 0);
    // The second ALTER is one 18.16 refuses on every host (code 371), after
    // the first one ran: refused before either runs.
    write_files(
        dir.path(),
        &[(
            "V2__add_x.sql",
            "ALTER TABLE events_local ADD COLUMN x UInt8;\nALTER TABLE events ADD COLUMN x UInt8;",
        )],
    );
    let out = chm(&args(0, &db, d, &["plan"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("V2__add_x.sql:2: ClickHouse 18 refuses ALTER … ON CLUSTER")
            && out.stderr.contains("drop it and create it again"),
        "{}",
        out.stderr
    );
    let out = chm(&args(0, &db, d, &["migrate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(events_of(&ledger(NODES[0], &db), "2", "started"), 0);
    for node in NODES {
        let cols = rows(
            node,
            &format!(
                "SELECT name FROM system.columns WHERE database = '{db}' AND table = 'events_local' FORMAT JSONEachRow"
            ),
        );
        assert_eq!(cols.len(), 2, "nothing ran on {node}: {cols:?}");
    }
    // Written the way the message says, it applies.
    write_files(
        dir.path(),
        &[(
            "V2__add_x.sql",
            "ALTER TABLE events_local ADD COLUMN x UInt8;\nDROP TABLE events;\n\
             CREATE TABLE events AS events_local ENGINE = Distributed(${cluster}, ${database}, events_local, rand());",
        )],
    );
    let out = chm(&args(0, &db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    drop_db(NODES[0], &db, true);
}
