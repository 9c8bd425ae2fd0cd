//! Ledger v2 against the real servers: the narrow ledger, grouped progress
//! and what a crash at any point leaves, and ledgers written by the release
//! before it (format 1) upgraded in place, continued and rolled back.
//!
//! Kill points: `CHMIGRATE_CRASH_AT=before:N|after:N` makes the binary abort
//! (what a SIGKILL leaves: nothing staged is written) right before its N-th
//! statement is sent or right after it returned, before anything about it
//! is recorded. Every point of a migration set that mixes statements whose
//! records are grouped (observable, repeatable) and statements recorded one
//! by one (INSERTs) is tried, on the single node and on the 2×2 cluster;
//! the next `migrate` (with `repair` where the runbook says, for an INSERT
//! left in flight) must end where an uninterrupted run ends, with every
//! statement recorded once and every INSERT's row there once.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use support::*;

/// The migrations of the kill-point tests. `engine` is the table engine
/// clause (replicated on the cluster).
fn kill_point_migrations(engine: &str) -> Vec<(String, String)> {
    let e = |t: &str| engine.replace("{t}", t);
    vec![
        (
            "V1__a.sql".into(),
            format!(
                "CREATE TABLE a (x UInt8) ENGINE = {};\n\
                 ALTER TABLE a ADD COLUMN c String DEFAULT 'n/a';\n\
                 CREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = {};\n\
                 INSERT INTO a (x) VALUES (1);\n",
                e("a"),
                e("b")
            ),
        ),
        (
            "V2__b.sql".into(),
            "RENAME TABLE b TO b2;\n\
             CREATE VIEW v AS SELECT x FROM a;\n\
             DROP TABLE IF EXISTS never_there;\n\
             INSERT INTO a (x) VALUES (2);\n\
             ALTER TABLE a DROP COLUMN c;\n"
                .into(),
        ),
        (
            "V3__d.sql".into(),
            format!(
                "CREATE TABLE d (x UInt8) ENGINE = {};\n\
                 CREATE TABLE e (x UInt8) ENGINE = {};\n\
                 DROP TABLE e;\n\
                 CREATE TABLE IF NOT EXISTS f (x UInt8) ENGINE = {};\n",
                e("d"),
                e("e"),
                e("f")
            ),
        ),
    ]
}

/// Statements per version, in order (what the ledger must record once).
const STATEMENTS: [(&str, usize); 3] = [("1", 4), ("2", 5), ("3", 4)];

/// The 1-based numbers of the INSERTs among the run's statements.
const INSERTS: [usize; 2] = [4, 8];

struct Target<'a> {
    url: &'a str,
    cluster: bool,
}

impl Target<'_> {
    fn args<'a>(&'a self, db: &'a str, dir: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["--url", self.url, "--database", db, "--dir", dir];
        if self.cluster {
            a.extend_from_slice(&["--cluster", CLUSTER]);
        }
        a.extend_from_slice(rest);
        a
    }

    /// Where the end state is read: every node on the cluster.
    fn nodes(&self) -> Vec<&str> {
        if self.cluster {
            NODES.to_vec()
        } else {
            vec![self.url]
        }
    }
}

/// Tables, `a`'s columns and `a`'s rows, as every node sees them.
fn end_state(t: &Target<'_>, db: &str) -> Vec<(Vec<String>, Vec<String>, Vec<u64>)> {
    t.nodes()
        .into_iter()
        .map(|url| {
            if t.cluster {
                let _ = query(url, &format!("SYSTEM SYNC REPLICA `{db}`.a"));
            }
            let cols: Vec<String> = rows(
                url,
                &format!(
                    "SELECT name FROM system.columns WHERE database = '{db}' AND table = 'a' ORDER BY name"
                ),
            )
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect();
            let xs: Vec<u64> = rows(url, &format!("SELECT x FROM `{db}`.a ORDER BY x"))
                .iter()
                .filter_map(|r| r["x"].as_u64())
                .collect();
            (user_tables(url, db), cols, xs)
        })
        .collect()
}

/// Runs `migrate` until it succeeds, doing what the runbook says for an
/// INSERT left in flight: look at the data, `repair`. Returns the repairs.
fn recover(t: &Target<'_>, db: &str, dir: &str) -> Vec<String> {
    let mut actions = Vec::new();
    for _ in 0..4 {
        let out = chm(&t.args(db, dir, &["migrate"]));
        match out.code {
            0 => return actions,
            2 if out.stderr.contains("up statement ") => {
                let n: usize = out
                    .stderr
                    .split("up statement ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no statement named: {}", out.all()));
                let version = out
                    .stderr
                    .split(" V")
                    .nth(1)
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .unwrap_or_else(|| panic!("no version named: {}", out.all()))
                    .to_string();
                // Only an INSERT may be left in flight: every other
                // statement's progress is settled by looking at the schema.
                let value = match (version.as_str(), n) {
                    ("1", 4) => 1,
                    ("2", 4) => 2,
                    _ => panic!("V{version} statement {n} left in flight: {}", out.all()),
                };
                let rows = count(
                    t.url,
                    &format!("SELECT count() FROM `{db}`.a WHERE x = {value}"),
                );
                let decision = if rows == 1 { "--done" } else { "--not-done" };
                let statement = n.to_string();
                let r = chm(&t.args(
                    db,
                    dir,
                    &[
                        "repair",
                        "--version",
                        &version,
                        "--statement",
                        &statement,
                        decision,
                    ],
                ));
                assert_eq!(r.code, 0, "{}", r.all());
                actions.push(format!("repair V{version} {n} {decision}"));
            }
            _ => panic!("unexpected outcome of migrate: {}", out.all()),
        }
    }
    panic!("did not converge: {actions:?}");
}

/// Every statement recorded once (done, or resolved done), every version
/// completed once, no group left open.
fn assert_recorded_once(url: &str, db: &str, context: &str) {
    let ledger = ledger(url, db);
    for (version, n) in STATEMENTS {
        for i in 0..n as i64 {
            let k = ledger
                .iter()
                .filter(|r| r["version"] == version && r["statement"] == i)
                .filter(|r| {
                    r["event"] == "statement_done"
                        || (r["event"] == "statement_resolved"
                            && r["details"]
                                .as_str()
                                .unwrap_or_default()
                                .contains("\"done\":true"))
                })
                .count();
            assert_eq!(
                k, 1,
                "{context}: V{version} statement {i} recorded {k} times"
            );
        }
        assert_eq!(
            events_of(&ledger, version, "completed"),
            1,
            "{context}: V{version}"
        );
    }
    let last_group_event = ledger
        .iter()
        .rev()
        .find(|r| r["event"] == "progress_grouped" || r["event"] == "progress_recorded");
    assert_eq!(
        last_group_event.map(|r| r["event"].clone()),
        Some(Value::from("progress_recorded")),
        "{context}: a group was left open"
    );
}

/// What settling did in one round: statements recorded by observation, and
/// statements found not to have run.
fn settled(url: &str, db: &str) -> (usize, usize) {
    let l = ledger(url, db);
    let observed = l
        .iter()
        .filter(|r| r["event"] == "statement_done")
        .filter(|r| {
            r["details"]
                .as_str()
                .unwrap_or_default()
                .contains("observed")
        })
        .count();
    let not_seen = l
        .iter()
        .filter(|r| r["event"] == "statement_resolved")
        .filter(|r| {
            r["details"]
                .as_str()
                .unwrap_or_default()
                .contains("observed")
        })
        .count();
    (observed, not_seen)
}

fn kill_points(t: &Target<'_>, engine: &str, prefix: &str) {
    let files = kill_point_migrations(engine);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let dir = folder(&refs);
    let dir = dir.path().to_str().unwrap().to_string();
    let total: usize = STATEMENTS.iter().map(|(_, n)| n).sum();

    let reference_db = unique_db(&format!("{prefix}_ref"));
    let out = chm(&t.args(&reference_db, &dir, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let reference = end_state(t, &reference_db);
    assert_eq!(
        reference[0].0,
        ["a", "b2", "d", "f", "v"],
        "the uninterrupted run"
    );
    assert_eq!(reference[0].1, ["x"]);
    assert_recorded_once(t.url, &reference_db, "uninterrupted");
    drop_db(t.url, &reference_db, t.cluster);

    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    let (mut observed_total, mut not_seen_total) = (0, 0);
    for n in 1..=total {
        for moment in ["before", "after"] {
            let point = format!("{moment}:{n}");
            let db = unique_db(prefix);
            let crashed = chm_env(
                &t.args(&db, &dir, &["migrate"]),
                &[("CHMIGRATE_CRASH_AT", &point)],
            );
            assert_ne!(crashed.code, 0, "{point}: the run did not crash");
            assert!(
                crashed.stderr.contains("CHMIGRATE_CRASH_AT: aborting"),
                "{point}: {}",
                crashed.all()
            );
            let actions = recover(t, &db, &dir);
            let context = format!("crash {point}, then {actions:?}");
            assert_eq!(end_state(t, &db), reference, "{context}");
            assert_recorded_once(t.url, &db, &context);
            let (observed, not_seen) = settled(t.url, &db);
            observed_total += observed;
            not_seen_total += not_seen;
            if INSERTS.contains(&n) {
                // An INSERT is recorded before the next statement: a crash
                // right before or after one is settled by a person.
                assert_eq!(actions.len(), 1, "{context}");
            } else {
                assert!(actions.is_empty(), "{context}: no person needed");
            }
            *summary
                .entry(if actions.is_empty() {
                    "settled by the schema".into()
                } else {
                    actions[0].split(' ').next_back().unwrap_or_default().into()
                })
                .or_default() += 1;
            drop_db(t.url, &db, t.cluster);
        }
    }
    eprintln!(
        "{} kill points: {summary:?}; {observed_total} statements recorded by observation, {not_seen_total} found not run",
        2 * total
    );
    assert!(
        observed_total > 0,
        "no kill point was settled by observation"
    );
    assert!(
        not_seen_total > 0,
        "no kill point left an observable statement unrun"
    );
}

#[test]
fn a_crash_at_any_statement_on_the_single_node_resumes_exactly() {
    require(&[SINGLE]);
    kill_points(
        &Target {
            url: SINGLE,
            cluster: false,
        },
        "MergeTree ORDER BY x",
        "kp1",
    );
}

#[test]
fn a_crash_at_any_statement_on_the_cluster_resumes_exactly() {
    require(&NODES);
    kill_points(
        &Target {
            url: NODES[0],
            cluster: true,
        },
        "ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/{t}', '{replica}') ORDER BY x",
        "kpc",
    );
}

// ---------------------------------------------------------------------------
// Ledgers written by the release before ledger v2 (tests/fixtures/ledger_v1).

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/ledger_v1").join(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Loads a format-1 ledger (and its lock, when given) into `db` on `urls`
/// (the rows on the first).
fn load_v1(urls: &[&str], db: &str, create: &str, rows_file: &str) {
    for url in urls {
        q(url, &format!("CREATE DATABASE IF NOT EXISTS `{db}`"));
        q(
            url,
            &fixture(create).replace("${database}", &format!("`{db}`")),
        );
    }
    q(
        urls[0],
        &format!(
            "INSERT INTO `{db}`.schema_migrations FORMAT JSONEachRow\n{}",
            fixture(rows_file)
        ),
    );
}

fn copy_dir(from: &str, to: &Path) {
    for entry in std::fs::read_dir(repo().join("tests/fixtures/ledger_v1").join(from)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn columns(url: &str, db: &str, table: &str) -> Vec<String> {
    rows(
        url,
        &format!("SELECT name FROM system.columns WHERE database = '{db}' AND table = '{table}'"),
    )
    .iter()
    .filter_map(|r| r["name"].as_str().map(str::to_string))
    .collect()
}

const V2_COLUMNS: [&str; 5] = ["seq", "event_time_us", "run_id", "event", "payload"];

#[test]
fn a_ledger_an_earlier_release_wrote_is_read_upgraded_continued_and_rolled_back() {
    require(&[SINGLE]);
    let db = unique_db("v1_single");
    load_v1(&[SINGLE], &db, "single.create.sql", "single.rows.jsonl");
    // The schema the fixture's migrations made.
    q(
        SINGLE,
        &format!(
            "CREATE TABLE `{db}`.events (id UInt64, name String, country String DEFAULT '') ENGINE = MergeTree ORDER BY id"
        ),
    );
    q(
        SINGLE,
        &format!("INSERT INTO `{db}`.events VALUES (1, 'a', 'x')"),
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir("migrations", dir.path());
    let d = dir.path().to_str().unwrap();
    let args = |rest: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["--url", SINGLE, "--database", &db, "--dir", d]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    };
    let run = |rest: &[&str]| {
        let a = args(rest);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        chm(&refs)
    };

    // Read without the lock: nothing is written, the format stays.
    let st = run(&["--format", "json", "status"]);
    assert_eq!(st.code, 0, "{}", st.all());
    assert!(st.stdout.contains("applied"), "{}", st.stdout);
    let export = dir.path().join("history.json");
    let ex = run(&["export", "--file", export.to_str().unwrap()]);
    assert_eq!(ex.code, 0, "{}", ex.all());
    assert_eq!(columns(SINGLE, &db, "schema_migrations").len(), 16);
    let nothing = run(&["migrate"]);
    assert_eq!(nothing.code, 0, "{}", nothing.all());
    assert_eq!(
        columns(SINGLE, &db, "schema_migrations").len(),
        16,
        "nothing to do: no lock, no upgrade"
    );

    // New work: the ledger is upgraded under the lock, then continued.
    write_files(
        dir.path(),
        &[(
            "V4__t4.sql",
            "CREATE TABLE t4 (x UInt8) ENGINE = MergeTree ORDER BY x;\n-- ROLLBACK: DROP TABLE t4;\n",
        )],
    );
    let out = run(&["migrate"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(columns(SINGLE, &db, "schema_migrations"), V2_COLUMNS);
    assert_eq!(
        count(
            SINGLE,
            &format!("SELECT count() FROM `{db}`.schema_migrations_v1")
        ),
        21,
        "the old table is kept as it was"
    );
    let l = ledger(SINGLE, &db);
    let old: Vec<Value> = fixture("single.rows.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    for o in &old {
        let seq: u64 = o["seq"].as_str().unwrap().parse().unwrap();
        let n = l
            .iter()
            .find(|r| r["seq"].as_u64() == Some(seq))
            .unwrap_or_else(|| panic!("row {seq} lost"));
        for key in [
            "event",
            "version",
            "direction",
            "checksum",
            "actor",
            "details",
        ] {
            assert_eq!(n[key], o[key], "row {seq} field {key}");
        }
        assert_eq!(
            n["statement"].as_i64().map(|s| s.to_string()),
            o["statement"].as_str().map(str::to_string),
            "row {seq} statement"
        );
    }
    let upgraded: Vec<&Value> = l
        .iter()
        .filter(|r| r["event"] == "ledger_upgraded")
        .collect();
    assert_eq!(upgraded.len(), 1);
    let details: Value = serde_json::from_str(upgraded[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["rows"], 21);
    assert_eq!(details["from"], 1);
    assert_eq!(details["to"], 2);
    assert_eq!(events_of(&l, "4", "completed"), 1);
    assert!(tables(SINGLE, &db).contains(&"t4".to_string()));

    // Rolled back by the new release, through what the old one applied.
    let back = run(&["rollback", "--steps", "2"]);
    assert_eq!(back.code, 0, "{}", back.all());
    assert!(!tables(SINGLE, &db).contains(&"t4".to_string()));
    wait_until(
        "V3's rollback deleted its row",
        std::time::Duration::from_secs(30),
        || count(SINGLE, &format!("SELECT count() FROM `{db}`.events")) == 0,
    );
    let h = run(&["--format", "json", "history"]);
    assert_eq!(h.code, 0, "{}", h.all());
    assert!(h.stdout.contains("ledger_upgraded"), "{}", h.stdout);

    // The export taken from the format-1 ledger imports into a new one.
    let db2 = unique_db("v1_import");
    let imp = chm(&[
        "--url",
        SINGLE,
        "--database",
        &db2,
        "--dir",
        d,
        "import",
        "--file",
        export.to_str().unwrap(),
    ]);
    assert_eq!(imp.code, 0, "{}", imp.all());
    assert_eq!(columns(SINGLE, &db2, "schema_migrations"), V2_COLUMNS);
    let l2 = ledger(SINGLE, &db2);
    // V3: applied, rolled back, applied again.
    assert_eq!(events_of(&l2, "3", "completed"), 3);
    let st2 = chm(&[
        "--url",
        SINGLE,
        "--database",
        &db2,
        "--dir",
        d,
        "--format",
        "json",
        "status",
    ]);
    assert_eq!(st2.code, 0, "{}", st2.all());
    drop_db(SINGLE, &db, false);
    drop_db(SINGLE, &db2, false);
}

#[test]
fn a_run_an_earlier_release_left_half_done_is_finished_by_the_new_one() {
    require(&[SINGLE]);
    let db = unique_db("v1_half");
    load_v1(&[SINGLE], &db, "half.create.sql", "half.rows.jsonl");
    q(
        SINGLE,
        &fixture("half.lock.create.sql").replace("${database}", &format!("`{db}`")),
    );
    q(
        SINGLE,
        &format!(
            "INSERT INTO `{db}`.schema_migrations_lock FORMAT JSONEachRow\n{}",
            fixture("half.lock.rows.jsonl")
        ),
    );
    q(
        SINGLE,
        &format!(
            "CREATE TABLE `{db}`.events (id UInt64, name String, country String DEFAULT '') ENGINE = MergeTree ORDER BY id"
        ),
    );
    q(
        SINGLE,
        &format!("CREATE TABLE `{db}`.t4 (x UInt8) ENGINE = MergeTree ORDER BY x"),
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir("migrations_half", dir.path());
    let d = dir.path().to_str().unwrap();
    let args = |rest: &'static str| vec!["--url", SINGLE, "--database", &db, "--dir", d, rest];
    // The dead run's lock is taken over or broken, as the runbook says.
    let mut out = chm(&args("migrate"));
    if out.code == 4 {
        assert_eq!(chm(&args("unlock")).code, 0);
        out = chm(&args("migrate"));
    }
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(columns(SINGLE, &db, "schema_migrations"), V2_COLUMNS);
    assert_eq!(
        count(SINGLE, &format!("SELECT count() FROM `{db}`.t4")),
        1,
        "the INSERT ran once"
    );
    let l = ledger(SINGLE, &db);
    for i in 0..3 {
        let n = l
            .iter()
            .filter(|r| {
                r["version"] == "4" && r["statement"] == i && r["event"] == "statement_done"
            })
            .count();
        assert_eq!(n, 1, "V4 statement {i}");
    }
    assert_eq!(events_of(&l, "4", "completed"), 1);
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_replicated_ledger_an_earlier_release_wrote_is_upgraded_on_every_node() {
    require(&NODES);
    let db = unique_db("v1_cluster");
    q(
        NODES[0],
        &format!("CREATE DATABASE IF NOT EXISTS `{db}` ON CLUSTER {CLUSTER}"),
    );
    load_v1(&NODES, &db, "cluster.create.sql", "cluster.rows.jsonl");
    q(
        NODES[0],
        &format!(
            "CREATE TABLE `{db}`.events ON CLUSTER {CLUSTER} (id UInt64, name String, country String DEFAULT '') \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{db}/events', '{{replica}}') ORDER BY id"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir("migrations_cluster", dir.path());
    write_files(
        dir.path(),
        &[(
            "V3__t3.sql",
            "CREATE TABLE t3 (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/${database}/t3', '{replica}') ORDER BY x;\n-- ROLLBACK: DROP TABLE t3;\n",
        )],
    );
    let d = dir.path().to_str().unwrap();
    let args = |rest: &'static str| {
        vec![
            "--url",
            NODES[0],
            "--cluster",
            CLUSTER,
            "--database",
            &db,
            "--dir",
            d,
            rest,
        ]
    };
    let out = chm(&args("migrate"));
    assert_eq!(out.code, 0, "{}", out.all());
    for url in NODES {
        assert_eq!(columns(url, &db, "schema_migrations"), V2_COLUMNS, "{url}");
        let _ = query(
            url,
            &format!("SYSTEM SYNC REPLICA `{db}`.schema_migrations"),
        );
        let l = ledger(url, &db);
        assert_eq!(events_of(&l, "2", "completed"), 1, "{url}: the old history");
        assert_eq!(events_of(&l, "3", "completed"), 1, "{url}: the new run");
        assert!(tables(url, &db).contains(&"t3".to_string()), "{url}");
    }
    let back = chm(&args("rollback"));
    assert_eq!(back.code, 0, "{}", back.all());
    for url in NODES {
        assert!(!tables(url, &db).contains(&"t3".to_string()), "{url}");
    }
    drop_db(NODES[0], &db, true);
}
