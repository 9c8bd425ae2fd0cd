//! The CLI against a real single ClickHouse node (127.0.0.1:8123, started by
//! `scripts/dev-cluster.sh start-single`). Every test uses its own database.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

fn args<'a>(db: &'a str, dir: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--url", SINGLE, "--database", db, "--dir", dir];
    v.extend_from_slice(rest);
    v
}

#[test]
fn migrate_status_history_and_rollback() {
    require(&[SINGLE]);
    let db = unique_db("flow");
    let out = chm(&args(&db, "examples/flyway", &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("applied V1, V1.1, V2, V3 (5 statement(s))"),
        "{}",
        out.stdout
    );
    assert_eq!(
        tables(SINGLE, &db),
        [
            "daily_views",
            "daily_views_mv",
            "page_views",
            "schema_migrations"
        ]
    );
    assert_eq!(
        count(SINGLE, &format!("SELECT count() FROM `{db}`.page_views")),
        2
    );

    let st = chm(&args(
        &db,
        "examples/flyway",
        &["status", "--format", "json"],
    ))
    .json();
    assert_eq!(st["applied_version"], "3");
    assert_eq!(st["pending"].as_array().unwrap().len(), 0);
    assert!(st["lock"].is_null());

    // Running again does nothing and writes nothing: no lock, no ledger row.
    let before = ledger(SINGLE, &db).len();
    let out = chm(&args(&db, "examples/flyway", &["migrate"]));
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    assert_eq!(ledger(SINGLE, &db).len(), before);
    assert!(
        !tables(SINGLE, &db).iter().any(|t| t.contains("lock")),
        "no lock table was created: {:?}",
        tables(SINGLE, &db)
    );

    let hist = chm(&args(
        &db,
        "examples/flyway",
        &["history", "--format", "json"],
    ))
    .json();
    let evs = hist["events"].as_array().unwrap();
    assert_eq!(evs.iter().filter(|e| e["event"] == "completed").count(), 4);
    assert!(evs.iter().all(|e| e["environment"] == "development"));

    // Roll back the newest one: the data migration's rollback deletes its rows.
    let out = chm(&args(&db, "examples/flyway", &["rollback"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("rolled back V3"), "{}", out.stdout);
    wait_until("the rollback mutation", Duration::from_secs(10), || {
        count(SINGLE, &format!("SELECT count() FROM `{db}`.page_views")) == 0
    });
    // Production forbids rollback: exit 2, nothing runs.
    let out = chm(&args(
        &db,
        "examples/flyway",
        &["rollback", "--to", "0", "--env", "production"],
    ));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("rollback is not allowed in environment \"production\"")
    );
    assert_eq!(tables(SINGLE, &db).len(), 4);
    // A dry run shows what would run and changes nothing.
    let out = chm(&args(
        &db,
        "examples/flyway",
        &["rollback", "--to", "0", "--dry-run"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("Roll back V2"), "{}", out.stdout);
    assert!(
        out.stdout.contains("DROP TABLE IF EXISTS"),
        "{}",
        out.stdout
    );
    assert_eq!(tables(SINGLE, &db).len(), 4);
    // Everything down.
    let out = chm(&args(&db, "examples/flyway", &["rollback", "--to", "0"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(tables(SINGLE, &db), ["schema_migrations"]);
    let st = chm(&args(
        &db,
        "examples/flyway",
        &["status", "--format", "json"],
    ))
    .json();
    assert_eq!(st["applied_version"], serde_json::Value::Null);
    assert_eq!(
        st["pending"].as_array().unwrap().len(),
        4,
        "all four are pending again in development"
    );
    drop_db(SINGLE, &db, false);
}

#[test]
fn every_file_format_applies_and_rolls_back() {
    require(&[SINGLE]);
    for dir in ["examples/updown", "examples/dbmate"] {
        let db = unique_db("fmt");
        let out = chm(&args(&db, dir, &["migrate"]));
        assert_eq!(out.code, 0, "{dir}: {}", out.all());
        assert!(tables(SINGLE, &db).len() >= 2, "{dir}");
        // updown's last migration has no down file and creates its view
        // IF NOT EXISTS: the ledger recorded that it created the view, so
        // its rollback is derived (DROP VIEW) and everything rolls back.
        let out = chm(&args(&db, dir, &["rollback", "--to", "0"]));
        assert_eq!(out.code, 0, "{dir}: {}", out.all());
        assert_eq!(tables(SINGLE, &db), ["schema_migrations"], "{dir}");
        drop_db(SINGLE, &db, false);
    }
}

#[test]
fn a_tampered_applied_migration_blocks_until_repaired() {
    require(&[SINGLE]);
    let db = unique_db("tamper");
    let dir = folder(&[(
        "V1__a.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${database}.a;\n",
    )]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    write_files(
        dir.path(),
        &[
            (
                "V1__a.sql",
                "CREATE TABLE ${database}.a (x UInt16) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${database}.a;\n",
            ),
            (
                "V2__b.sql",
                "CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;",
            ),
        ],
    );
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("V1 was applied with checksum"),
        "{}",
        out.stderr
    );
    assert!(
        !tables(SINGLE, &db).contains(&"b".to_string()),
        "nothing ran"
    );
    let out = chm(&args(&db, d, &["validate", "--online"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout
            .contains("V1__a.sql:1: V1 was applied with checksum"),
        "{}",
        out.stdout
    );
    // repair accepts the change, recorded in the ledger.
    let out = chm(&args(&db, d, &["repair"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("V1: checksum"), "{}", out.stdout);
    assert_eq!(events_of(&ledger(SINGLE, &db), "1", "checksum_repaired"), 1);
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    assert!(tables(SINGLE, &db).contains(&"b".to_string()));
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_server_error_mid_migration_is_recorded_and_resumed_after_repair() {
    require(&[SINGLE]);
    let db = unique_db("midfail");
    let dir = folder(&[(
        "V1__three.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\nCREATE TABLE ${database}.b (x UInt8) ENGINE = NoSuchEngine;\nCREATE TABLE ${database}.c (x UInt8) ENGINE = Memory;\n",
    )]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("V1 (three) statement 2 ("),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("V1__three.sql:2)"), "{}", out.stderr);
    assert!(out.stderr.contains("NoSuchEngine"), "{}", out.stderr);
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "1", "statement_done"), 1);
    assert_eq!(events_of(&l, "1", "failed"), 1);
    assert_eq!(tables(SINGLE, &db), ["a", "schema_migrations"]);
    let st = chm(&args(&db, d, &["status", "--format", "json"])).json();
    assert!(
        st["migrations"][0]["state"]
            .as_str()
            .unwrap()
            .starts_with("half applied: 1/3"),
        "{st}"
    );
    // Fix the statement; the changed checksum must be accepted with repair,
    // then the run resumes at statement 2 without re-running statement 1.
    write_files(
        dir.path(),
        &[(
            "V1__three.sql",
            "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\nCREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;\nCREATE TABLE ${database}.c (x UInt8) ENGINE = Memory;\n",
        )],
    );
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 2);
    assert_eq!(chm(&args(&db, d, &["repair"])).code, 0);
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(tables(SINGLE, &db), ["a", "b", "c", "schema_migrations"]);
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "1", "started"), 1, "resumed, not restarted");
    assert_eq!(events_of(&l, "1", "statement_done"), 3);
    drop_db(SINGLE, &db, false);
}

const SLOW: &str = "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\nSELECT sleep(3);\nCREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;\n";

fn wait_for_statement_done(db: &str, version: &str, n: usize) {
    wait_until("statement recorded", Duration::from_secs(30), || {
        query(
            SINGLE,
            &format!("SELECT 1 FROM `{db}`.schema_migrations LIMIT 1"),
        )
        .is_ok()
            && events_of(&ledger(SINGLE, db), version, "statement_done") >= n
    });
}

#[test]
fn a_killed_run_is_resumed_at_the_first_unrecorded_statement() {
    require(&[SINGLE]);
    let db = unique_db("kill");
    let dir = folder(&[("V1__slow.sql", SLOW)]);
    let d = dir.path().to_str().unwrap();
    let mut child = spawn(&args(&db, d, &["migrate"]));
    wait_for_statement_done(&db, "1", 1);
    child.kill().expect("kill -9");
    let _ = child.wait();
    // The dead runner's lock is still there, naming its holder…
    let st = chm(&args(&db, d, &["status", "--format", "json"])).json();
    let holder = st["lock"]["holder"].as_str().unwrap().to_string();
    assert!(holder.contains("chmigrate"), "{st}");
    // …and the next run, on the same machine, sees that its process is gone
    // and takes it over at once, on the record: no `unlock` needed.
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let forced: Vec<serde_json::Value> = ledger(SINGLE, &db)
        .into_iter()
        .filter(|r| r["event"] == "lock_forced")
        .collect();
    assert_eq!(forced.len(), 1, "{forced:?}");
    let details: serde_json::Value =
        serde_json::from_str(forced[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["previous"]["holder"], holder.as_str());
    assert!(
        details["reason"]
            .as_str()
            .unwrap()
            .contains("no longer exists"),
        "{details}"
    );
    // The in-flight statement was a SELECT (safe to repeat): resumed there.
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "1", "started"), 1);
    let done: Vec<i64> = l
        .iter()
        .filter(|r| r["version"] == "1" && r["event"] == "statement_done")
        .map(|r| r["statement"].as_i64().unwrap())
        .collect();
    assert_eq!(done, [0, 1, 2], "statement 1 ran once, nothing skipped");
    assert_eq!(tables(SINGLE, &db), ["a", "b", "schema_migrations"]);
    drop_db(SINGLE, &db, false);
}

#[test]
fn an_unsafe_in_flight_statement_needs_a_repair_decision() {
    require(&[SINGLE]);
    let db = unique_db("inflight");
    let dir = folder(&[(
        "V1__insert.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\nINSERT INTO ${database}.a SELECT sleep(3);\nCREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;\n",
    )]);
    let d = dir.path().to_str().unwrap();
    let mut child = spawn(&args(&db, d, &["migrate"]));
    wait_for_statement_done(&db, "1", 1);
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(chm(&args(&db, d, &["unlock"])).code, 0);
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("V1__insert.sql:2: V1 stopped while its up statement 2 was running"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("chmigrate repair --version 1 --statement 2 --done"),
        "{}",
        out.stderr
    );
    // Wrong statement number is refused.
    assert_eq!(
        chm(&args(
            &db,
            d,
            &["repair", "--version", "1", "--statement", "3", "--done"]
        ))
        .code,
        2
    );
    // The INSERT finished on the server: record it as done; it is not run again.
    wait_until("the orphaned INSERT", Duration::from_secs(15), || {
        count(SINGLE, &format!("SELECT count() FROM `{db}`.a")) == 1
    });
    let out = chm(&args(
        &db,
        d,
        &["repair", "--version", "1", "--statement", "2", "--done"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    assert_eq!(
        count(SINGLE, &format!("SELECT count() FROM `{db}`.a")),
        1,
        "the INSERT ran once"
    );
    assert_eq!(tables(SINGLE, &db), ["a", "b", "schema_migrations"]);
    drop_db(SINGLE, &db, false);
}

#[test]
fn two_concurrent_runners_never_both_migrate() {
    require(&[SINGLE]);
    let db = unique_db("race");
    let dir = folder(&[
        ("V1__slow.sql", SLOW),
        (
            "V2__more.sql",
            "CREATE TABLE ${database}.c (x UInt8) ENGINE = Memory;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    // Create the ledger first so both runners race for the lock, not the table.
    assert_eq!(chm(&args(&db, d, &["baseline", "--version", "0"])).code, 0);
    let a = spawn(&args(&db, d, &["migrate"]));
    let b = spawn(&args(&db, d, &["migrate"]));
    let (a, b) = (wait_out(a), wait_out(b));
    let mut codes = [a.code, b.code];
    codes.sort();
    assert_eq!(
        codes,
        [0, 4],
        "one migrates, the other is refused:\n{}\n{}",
        a.all(),
        b.all()
    );
    let loser = if a.code == 4 { &a } else { &b };
    assert!(
        loser.stderr.contains("target is locked: held by"),
        "{}",
        loser.stderr
    );
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "1", "completed"), 1);
    assert_eq!(events_of(&l, "2", "completed"), 1);
    assert_eq!(events_of(&l, "1", "started"), 1);
    drop_db(SINGLE, &db, false);
}

#[test]
fn connection_failures_are_clear_and_never_show_the_password() {
    require(&[SINGLE]);
    let out = chm(&["--url", "http://127.0.0.1:1", "status"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("http://127.0.0.1:1: cannot connect"),
        "{}",
        out.stderr
    );

    let out = chm(&[
        "--url",
        SINGLE,
        "--user",
        "chm_secret",
        "--password",
        "wrong-pw",
        "status",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("authentication failed: Wrong password for user chm_secret"),
        "{}",
        out.stderr
    );
    assert!(!out.all().contains("wrong-pw"));

    // The right password from CHMIGRATE_PASSWORD works, and never shows up
    // in output, logs (even at trace level) or the ledger.
    let db = unique_db("secret");
    let logs = tempfile::tempdir().unwrap();
    let log_file = logs.path().join("chmigrate.log");
    let pw_args = [
        "--url",
        SINGLE,
        "--user",
        "chm_secret",
        "--database",
        &db,
        "--dir",
        "examples/dbmate",
        "-vvv",
        "--log-format",
        "json",
        "--log-file",
        log_file.to_str().unwrap(),
    ];
    let run = |cmd: &[&str]| {
        let mut a: Vec<&str> = pw_args.to_vec();
        a.extend_from_slice(cmd);
        let out = chm_env(&a, &[("CHMIGRATE_PASSWORD", "s3cret-pw")]);
        assert_eq!(out.code, 0, "{cmd:?}: {}", out.all());
        assert!(
            !out.all().contains("s3cret-pw"),
            "{cmd:?} leaked the password"
        );
        out
    };
    run(&["migrate"]);
    run(&["status", "--format", "json"]);
    let hist = run(&["history", "--format", "json"]);
    assert!(
        hist.stdout.contains("\"db_user\": \"chm_secret\""),
        "{}",
        hist.stdout
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let f = file.path().to_str().unwrap();
    run(&["export", "--file", f]);
    assert!(!std::fs::read_to_string(f).unwrap().contains("s3cret-pw"));
    // The log file got every run's lines, as JSON, and no password.
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        !logged.contains("s3cret-pw"),
        "the log file leaked the password"
    );
    let lines: Vec<Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let connected = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "connected")
        .count();
    assert!(connected >= 4, "one per run, appended: {logged}");
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "TRACE" || l["level"] == "DEBUG")
    );
    // --password-file works the same way.
    let pwf = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pwf.path(), "s3cret-pw\n").unwrap();
    let out = chm(&[
        "--url",
        SINGLE,
        "--user",
        "chm_secret",
        "--password-file",
        pwf.path().to_str().unwrap(),
        "--database",
        &db,
        "status",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    drop_db(SINGLE, &db, false);
}

#[test]
fn tls_is_verified_by_default() {
    require(&[SINGLE]);
    let ca = std::process::Command::new("bash")
        .arg(repo().join("scripts/dev-cluster.sh"))
        .arg("tls-ca-path")
        .output()
        .expect("dev-cluster.sh runs");
    let ca = String::from_utf8_lossy(&ca.stdout).trim().to_string();
    assert!(
        std::path::Path::new(&ca).is_file(),
        "dev CA missing at {ca:?}"
    );
    let https = "https://127.0.0.1:8443";
    let out = chm(&["--url", https, "status"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("TLS failure"), "{}", out.stderr);
    let out = chm(&["--url", https, "--ca-file", &ca, "status"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let out = chm(&["--url", https, "--tls-insecure", "status"]);
    assert_eq!(out.code, 0, "{}", out.all());
    // TLS spoken to a plain HTTP port is a TLS-level failure within the
    // connection set-up bound, not a hang.
    let t = std::time::Instant::now();
    let out = chm(&["--url", "https://127.0.0.1:8123", "status"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("TLS failure"), "{}", out.stderr);
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_foreign_ledger_table_is_refused() {
    require(&[SINGLE]);
    let db = unique_db("shape");
    q(SINGLE, &format!("CREATE DATABASE `{db}`"));
    q(
        SINGLE,
        &format!(
            "CREATE TABLE `{db}`.schema_migrations (version String, applied UInt8) ENGINE = Memory"
        ),
    );
    let out = chm(&args(&db, "examples/dbmate", &["migrate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("has a different shape"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("missing column seq UInt64"),
        "{}",
        out.stderr
    );
    assert_eq!(tables(SINGLE, &db), ["schema_migrations"], "nothing ran");
    // Another ledger name works.
    let out = chm(&args(
        &db,
        "examples/dbmate",
        &["--history-table", "chm_history", "migrate"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    drop_db(SINGLE, &db, false);
}

#[test]
fn export_import_round_trip_and_baseline() {
    require(&[SINGLE]);
    let (a, b) = (unique_db("exp"), unique_db("imp"));
    assert_eq!(chm(&args(&a, "examples/flyway", &["migrate"])).code, 0);
    let file = tempfile::NamedTempFile::new().unwrap();
    let f = file.path().to_str().unwrap();
    assert_eq!(
        chm(&args(&a, "examples/flyway", &["export", "--file", f])).code,
        0
    );
    let out = chm(&args(&b, "examples/flyway", &["import", "--file", f]));
    assert_eq!(out.code, 0, "{}", out.all());
    // B's ledger says everything is applied (its schema is not touched).
    let st = chm(&args(
        &b,
        "examples/flyway",
        &["status", "--format", "json"],
    ))
    .json();
    assert_eq!(st["applied_version"], "3");
    let key = |rows: Vec<serde_json::Value>| -> Vec<String> {
        rows.iter()
            .filter(|r| r["version"] != "")
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r["version"], r["event"], r["direction"], r["statement"], r["checksum"]
                )
            })
            .collect()
    };
    assert_eq!(key(ledger(SINGLE, &a)), key(ledger(SINGLE, &b)));
    // Every exported event is kept, lock events included, with its run,
    // actor and time.
    let exported = ledger(SINGLE, &a);
    let imported = ledger(SINGLE, &b);
    let ident = |r: &serde_json::Value| {
        format!(
            "{} {} {} {} {}",
            r["event"], r["run_id"], r["actor"], r["event_time_us"], r["version"]
        )
    };
    let b_rows: Vec<String> = imported.iter().map(ident).collect();
    for r in &exported {
        assert!(
            b_rows.contains(&ident(r)),
            "{} missing from {b_rows:#?}",
            ident(r)
        );
    }
    assert!(exported.iter().any(|r| r["event"] == "lock_taken"));
    let record = imported.iter().find(|r| r["event"] == "imported").unwrap();
    let details: serde_json::Value =
        serde_json::from_str(record["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["events"].as_u64(), Some(exported.len() as u64));
    // Importing twice is refused.
    assert_eq!(
        chm(&args(&b, "examples/flyway", &["import", "--file", f])).code,
        2
    );
    // A corrupt file is refused before anything is written.
    std::fs::write(f, "{\"format\":\"nope\"}").unwrap();
    assert_eq!(
        chm(&args(&b, "examples/flyway", &["import", "--file", f])).code,
        2
    );

    let c = unique_db("base");
    assert_eq!(
        chm(&args(
            &c,
            "examples/flyway",
            &["baseline", "--version", "1.1"]
        ))
        .code,
        0
    );
    q(
        SINGLE,
        &format!(
            "CREATE TABLE `{c}`.page_views (view_time DateTime, url String, user_id UInt64, referrer String) ENGINE = MergeTree() ORDER BY url"
        ),
    );
    let out = chm(&args(&c, "examples/flyway", &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("applied V2, V3"), "{}", out.stdout);
    assert_eq!(
        chm(&args(
            &c,
            "examples/flyway",
            &["baseline", "--version", "1"]
        ))
        .code,
        2,
        "only an empty ledger"
    );
    for db in [a, b, c] {
        drop_db(SINGLE, &db, false);
    }
}

#[test]
fn mutations_are_awaited_and_doctor_reports() {
    require(&[SINGLE]);
    let db = unique_db("mut");
    let dir = folder(&[(
        "V1__data.sql",
        "CREATE TABLE ${database}.t (id UInt32, v String) ENGINE = MergeTree() ORDER BY id;\nINSERT INTO ${database}.t SELECT number, 'old' FROM system.numbers LIMIT 1000;\nALTER TABLE ${database}.t UPDATE v = 'new' WHERE id % 2 = 0;\n",
    )]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    // Immediately after the run the mutation is finished.
    assert_eq!(
        count(
            SINGLE,
            &format!("SELECT count() FROM `{db}`.t WHERE v = 'new'")
        ),
        500
    );
    let out = chm(&args(&db, d, &["doctor"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("ok   server version     18.")
            || out.stdout.contains("ok   server version"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("has the expected shape"),
        "{}",
        out.stdout
    );
    drop_db(SINGLE, &db, false);
}

#[test]
fn every_statement_chmigrate_sends_runs_on_this_server() {
    require(&[SINGLE]);
    let db = unique_db("compat");
    let out = chm(&["compat-sql", "--database", &db, "--server-major", "18"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let catalog = out.json();
    let entries = catalog.as_array().unwrap();
    assert!(entries.len() > 15);
    for e in entries {
        let (name, sql) = (e["name"].as_str().unwrap(), e["sql"].as_str().unwrap());
        let result = query(SINGLE, sql);
        match e["expect"].as_str().unwrap() {
            "ok" => {
                let text = result.unwrap_or_else(|err| panic!("{name}: {sql}\n{err}"));
                if let Some(want) = e["contains"].as_str() {
                    assert!(text.contains(want), "{name}: {text:?} lacks {want:?}");
                }
            }
            _ => assert!(result.is_err(), "{name} should fail: {sql}"),
        }
    }
    drop_db(SINGLE, &db, false);
}

#[test]
fn report_renders_the_history_in_every_format() {
    require(&[SINGLE]);
    let db = unique_db("report");
    assert_eq!(chm(&args(&db, "examples/flyway", &["migrate"])).code, 0);
    assert_eq!(chm(&args(&db, "examples/flyway", &["rollback"])).code, 0);
    let json = chm(&args(
        &db,
        "examples/flyway",
        &["report", "--format", "json"],
    ));
    assert_eq!(json.code, 0, "{}", json.all());
    let v = json.json();
    assert_eq!(v["totals"]["migrations_applied"], 3, "{v}");
    let states: Vec<&str> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied", "applied", "applied", "rolled_back"]);
    let md = chm(&args(
        &db,
        "examples/flyway",
        &["report", "--format", "markdown"],
    ));
    assert!(
        md.stdout.contains("| 1.1 | Referrer column"),
        "{}",
        md.stdout
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = chm(&args(
        &db,
        "examples/flyway",
        &[
            "report",
            "--format",
            "html",
            "--output",
            file.path().to_str().unwrap(),
        ],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let html = std::fs::read_to_string(file.path()).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"),
        "{}",
        &html[..40]
    );
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "timeline and durations charts"
    );
    // html/markdown are for report only.
    assert_eq!(
        chm(&args(
            &db,
            "examples/flyway",
            &["status", "--format", "html"]
        ))
        .code,
        2
    );
    drop_db(SINGLE, &db, false);
}

#[test]
fn sigterm_stops_before_the_next_statement_and_releases_the_lock() {
    require(&[SINGLE]);
    let db = unique_db("term");
    let dir = folder(&[("V1__slow.sql", SLOW)]);
    let d = dir.path().to_str().unwrap();
    let child = spawn(&args(&db, d, &["migrate"]));
    wait_for_statement_done(&db, "1", 1);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = wait_out(child);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("stopped on request before V1 (slow) statement 3"),
        "{}",
        out.stderr
    );
    // The lock was released: no unlock needed; the next run finishes.
    let st = chm(&args(&db, d, &["status", "--format", "json"])).json();
    assert!(st["lock"].is_null(), "{st}");
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "1", "started"), 1);
    assert_eq!(events_of(&l, "1", "statement_done"), 3);
    drop_db(SINGLE, &db, false);
}

/// `SHOW CREATE` of every object of `db` but chmigrate's own.
fn schema(db: &str) -> Vec<(String, String)> {
    user_tables(SINGLE, db)
        .into_iter()
        .map(|t| {
            let create = q(SINGLE, &format!("SHOW CREATE TABLE `{db}`.`{t}`"));
            (t, create)
        })
        .collect()
}

#[test]
fn derived_rollbacks_round_trip_to_the_identical_schema() {
    require(&[SINGLE]);
    let db = unique_db("derived");
    let dir = folder(&[
        (
            "V1__base.sql",
            "CREATE TABLE ${database}.base (id UInt64) ENGINE = MergeTree ORDER BY id;\n-- ROLLBACK: DROP TABLE ${database}.base;\n",
        ),
        // No rollback written: every statement can be undone.
        (
            "V2__grow.sql",
            "CREATE TABLE ${database}.events (id UInt64, at DateTime) ENGINE = MergeTree ORDER BY id;\n\
             ALTER TABLE ${database}.base ADD COLUMN note String DEFAULT '', ADD COLUMN score UInt8 DEFAULT 0;\n\
             CREATE VIEW ${database}.recent AS SELECT id FROM ${database}.events;\n\
             RENAME TABLE ${database}.events TO ${database}.events_v2;\n\
             SELECT 1;\n",
        ),
        // A data migration: nothing can be derived.
        (
            "V3__seed.sql",
            "INSERT INTO ${database}.base (id) VALUES (1);\n",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate", "--to", "1"])).code, 0);
    let before = schema(&db);
    assert_eq!(before.len(), 1, "{before:?}");
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(schema(&db).len(), 3, "base, events_v2, recent");

    // V3 cannot be rolled back, and the refusal says why.
    let out = chm(&args(&db, d, &["rollback", "--to", "2"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(
            "none can be derived: statement 1 (line 1) cannot be undone automatically: an INSERT is a data migration"
        ),
        "{}",
        out.stderr
    );
    // The round trip, on a second database that stops at V2.
    let db2 = unique_db("derived2");
    assert_eq!(chm(&args(&db2, d, &["migrate", "--to", "1"])).code, 0);
    let before = schema(&db2);
    assert_eq!(chm(&args(&db2, d, &["migrate", "--to", "2"])).code, 0);

    // The dry run shows the derived statements, marked, in reverse order.
    let out = chm(&args(&db2, d, &["rollback", "--to", "1", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("rollback derived by chmigrate"),
        "{}",
        out.stdout
    );
    let at = |needle: String| {
        out.stdout
            .find(&needle)
            .unwrap_or_else(|| panic!("{needle:?} not in:\n{}", out.stdout))
    };
    let order = [
        at(format!("RENAME TABLE {db2}.events_v2 TO {db2}.events")),
        at(format!("DROP TABLE IF EXISTS {db2}.recent")),
        at(format!(
            "ALTER TABLE {db2}.base DROP COLUMN score, DROP COLUMN note"
        )),
        at(format!("DROP TABLE IF EXISTS {db2}.events\n")),
    ];
    assert!(
        order.is_sorted(),
        "reverse order of the forward statements: {}",
        out.stdout
    );
    let plan = chm(&args(
        &db2,
        d,
        &["rollback", "--to", "1", "--dry-run", "--format", "json"],
    ))
    .json();
    assert_eq!(plan["steps"][0]["derived"], true, "{plan}");

    // Rolled back for real: the schema is the one before V2, byte for byte.
    let out = chm(&args(&db2, d, &["rollback", "--to", "1"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(schema(&db2), before);
    let rows = ledger(SINGLE, &db2);
    let started = rows
        .iter()
        .find(|r| r["event"] == "started" && r["direction"] == "down" && r["version"] == "2")
        .expect("the rollback's start is recorded");
    let details: Value =
        serde_json::from_str(started["details"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(details["derived"], true, "{details}");
    assert_eq!(
        details["sql"].as_array().map(Vec::len),
        Some(4),
        "{details}"
    );

    // And forward again: the same migration re-applies on the restored schema.
    assert_eq!(chm(&args(&db2, d, &["migrate", "--to", "2"])).code, 0);
    assert_eq!(schema(&db2).len(), 3);
    drop_db(SINGLE, &db, false);
    drop_db(SINGLE, &db2, false);
}

#[test]
fn a_rollback_done_by_hand_is_recorded_audited_and_reapplied_later() {
    require(&[SINGLE]);
    let db = unique_db("manual");
    let dir = folder(&[
        (
            "V1__a.sql",
            "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
        ),
        (
            "V2__b.sql",
            "-- Dependencies: 1\nCREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;",
        ),
        ("V3__c.sql", "INSERT INTO ${database}.a VALUES (3);"),
    ]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);

    // Bad requests change nothing.
    let before = ledger(SINGLE, &db).len();
    let out = chm(&args(&db, d, &["rollback", "--manual", "--version", "1"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("V2, which stays applied, depends on it"),
        "{}",
        out.stderr
    );
    let out = chm(&args(&db, d, &["rollback", "--manual", "--version", "9"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("V9 is not applied"), "{}", out.stderr);
    assert_eq!(
        chm(&args(&db, d, &["rollback", "--manual"])).code,
        2,
        "needs --version"
    );
    assert_eq!(ledger(SINGLE, &db).len(), before, "nothing recorded");

    // A person deleted V3's row by hand (V3 cannot be rolled back by chmigrate).
    q(SINGLE, &format!("TRUNCATE TABLE `{db}`.a"));
    let out = chm(&args(
        &db,
        d,
        &[
            "rollback",
            "--manual",
            "--version",
            "3",
            "--reason",
            "incident 42: seed row removed",
        ],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("V3 recorded as rolled back by hand"),
        "{}",
        out.stdout
    );
    let rows = ledger(SINGLE, &db);
    let manual = rows
        .iter()
        .find(|r| r["event"] == "manual_rollback")
        .expect("recorded");
    assert_eq!(manual["version"], "3");
    assert!(
        !manual["actor"].as_str().unwrap_or_default().is_empty(),
        "who"
    );
    assert!(
        manual["details"]
            .as_str()
            .unwrap_or_default()
            .contains("incident 42"),
        "why: {manual}"
    );
    let st = chm(&args(&db, d, &["status", "--format", "json"])).json();
    assert_eq!(st["applied_version"], "2", "{st}");

    // The next migrate applies V3 again.
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    assert_eq!(count(SINGLE, &format!("SELECT count() FROM `{db}`.a")), 1);
    drop_db(SINGLE, &db, false);
}

fn database_exists(name: &str) -> bool {
    count(
        SINGLE,
        &format!("SELECT count() AS n FROM system.databases WHERE name = '{name}'"),
    ) > 0
}

/// The throw-away database a `test` run names on stderr.
fn sandbox_of(out: &Out) -> String {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("testing in throw-away database "))
        .unwrap_or_else(|| panic!("no throw-away database named: {}", out.all()))
        .trim()
        .to_string()
}

#[test]
fn test_rollback_catches_a_rollback_that_leaves_a_column_behind() {
    require(&[SINGLE]);
    let db = unique_db("rehearse");
    let dir = folder(&[
        (
            "V1__events.sql",
            "CREATE TABLE ${database}.events (id UInt64) ENGINE = MergeTree ORDER BY id;",
        ),
        (
            "V2__add_note.sql",
            "ALTER TABLE ${database}.events ADD COLUMN note String DEFAULT '';\n\
             ALTER TABLE ${database}.events ADD COLUMN tag String DEFAULT '';\n\
             -- ROLLBACK: ALTER TABLE ${database}.events DROP COLUMN tag;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(&db, d, &["test", "--rollback", "--format", "json"]));
    assert_eq!(out.code, 1, "{}", out.all());
    let v = out.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["results"][0]["rollback"], "identical", "{v}");
    assert_eq!(v["results"][1]["version"], "2");
    assert_eq!(v["results"][1]["rollback"], "differs", "{v}");
    let problems = v["results"][1]["problems"].to_string();
    assert!(
        problems.contains("`events`: column `note` (String) was left behind"),
        "{problems}"
    );
    // The throw-away database is gone, and the real target was never touched.
    let sandbox = v["database"].as_str().unwrap().to_string();
    assert!(sandbox.starts_with("chm_test_"), "{sandbox}");
    assert!(!database_exists(&sandbox));
    assert!(!database_exists(&db));

    // Fixed rollback: every migration round-trips.
    std::fs::write(
        dir.path().join("V2__add_note.sql"),
        "ALTER TABLE ${database}.events ADD COLUMN note String DEFAULT '';\n\
         ALTER TABLE ${database}.events ADD COLUMN tag String DEFAULT '';",
    )
    .unwrap();
    let out = chm(&args(&db, d, &["test", "--rollback", "--migration", "2"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("V2 add note: applied, rolled back to the identical schema, applied again"),
        "{}",
        out.stdout
    );
    assert!(!database_exists(&sandbox_of(&out)));

    // Migrations whose authors chose no rollback are applied and not rolled
    // back, and that is no failure.
    std::fs::write(
        dir.path().join("V3__fwd.sql"),
        "-- Rollback-Strategy: forward-only\n\
         ALTER TABLE ${database}.events ADD COLUMN f UInt8 DEFAULT 0;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("V4__kept.sql"),
        "-- Rollback: false\n\
         CREATE TABLE ${database}.kept (x UInt8) ENGINE = MergeTree ORDER BY x;",
    )
    .unwrap();
    // --backup freeze (production's policy) takes no backups of the
    // throw-away database: V1's DROP TABLE of a table with rows (a freeze
    // of an empty table leaves no folder) is not frozen.
    std::fs::write(
        dir.path().join("V1__events.sql"),
        "CREATE TABLE ${database}.events (id UInt64) ENGINE = MergeTree ORDER BY id;\n\
         INSERT INTO ${database}.events VALUES (1);\n\
         -- ROLLBACK: DROP TABLE ${database}.events;",
    )
    .unwrap();
    let out = chm(&args(
        &db,
        d,
        &[
            "--backup",
            "freeze",
            "test",
            "--rollback",
            "--format",
            "json",
        ],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let v = out.json();
    let sandbox = v["database"].as_str().unwrap().to_string();
    let shadow = server_data_dir("single").join("shadow");
    for backup in std::fs::read_dir(&shadow).into_iter().flatten().flatten() {
        assert!(
            !backup.path().join("data").join(&sandbox).exists(),
            "a backup of the throw-away database: {}",
            backup.path().display()
        );
    }
    let rollbacks: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rollback"].as_str().unwrap())
        .collect();
    assert_eq!(
        rollbacks,
        ["identical", "identical", "forward-only", "declared-none"],
        "{v}"
    );
}

#[test]
fn test_reports_server_errors_with_file_and_line_and_refuses_escapes() {
    require(&[SINGLE]);
    let db = unique_db("rehearse_err");
    let dir = folder(&[(
        "V1__t.sql",
        "CREATE TABLE ${database}.t (id UInt64) ENGINE = MergeTree ORDER BY id;\n\n\
             ALTER TABLE ${database}.t ADD COLUMN x NoSuchType;",
    )]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(&db, d, &["test"]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("V1__t.sql:3"), "{}", out.stdout);
    assert!(out.stdout.contains("NoSuchType"), "{}", out.stdout);
    assert!(!database_exists(&sandbox_of(&out)));

    // A statement that would write outside the throw-away database is
    // refused before anything is created.
    let other = unique_db("rehearse_other");
    let dir = folder(&[(
        "V1__t.sql",
        &format!("CREATE TABLE {other}.t (id UInt64) ENGINE = Memory;"),
    )]);
    let out = chm(&args(&db, dir.path().to_str().unwrap(), &["test"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("V1__t.sql:1")
            && out
                .stderr
                .contains(&format!("writes to database `{other}`")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("testing in throw-away database"),
        "{}",
        out.stderr
    );
    assert!(!database_exists(&other));
}

#[test]
fn check_conflicts_finds_a_migration_renumbered_after_it_was_applied() {
    require(&[SINGLE]);
    let db = unique_db("renumbered");
    let dir = folder(&[
        (
            "V1__users.sql",
            "CREATE TABLE ${database}.users (id UInt64) ENGINE = Memory;",
        ),
        (
            "V2__orders.sql",
            "CREATE TABLE ${database}.orders (id UInt64) ENGINE = Memory;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    // Another branch took version 2; this one was renumbered to 3 after it
    // had already been applied here.
    std::fs::rename(
        dir.path().join("V2__orders.sql"),
        dir.path().join("V3__orders.sql"),
    )
    .unwrap();
    let out = chm(&args(&db, d, &["validate", "--check-conflicts"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.contains(
            "V3__orders.sql:1: V3 \"orders\" looks renumbered: the target applied it as version 2"
        ),
        "{}",
        out.stdout
    );

    // Give the renumbered file its version back; two branches then each
    // add a change of `users`, with no dependency between them.
    std::fs::rename(
        dir.path().join("V3__orders.sql"),
        dir.path().join("V2__orders.sql"),
    )
    .unwrap();
    write_files(
        dir.path(),
        &[
            (
                "V3__users_email.sql",
                "ALTER TABLE ${database}.users ADD COLUMN email String DEFAULT '';",
            ),
            (
                "V4__users_name.sql",
                "ALTER TABLE ${database}.users ADD COLUMN name String DEFAULT '';",
            ),
        ],
    );
    let out = chm(&args(&db, d, &["validate", "--check-conflicts"]));
    assert_eq!(out.code, 0, "serial: no waves to share: {}", out.all());
    assert!(!out.stdout.contains("both change"), "{}", out.stdout);
    let out = chm(&args(
        &db,
        d,
        &[
            "--parallel",
            "4",
            "validate",
            "--check-conflicts",
            "--format",
            "json",
        ],
    ));
    assert_eq!(out.code, 0, "a warning: {}", out.all());
    let found = out.json()["diagnostics"].to_string();
    assert!(
        found.contains(&format!(
            "V4 and V3 both change {db}.users and neither depends on the other"
        )),
        "{found}"
    );
    assert!(found.contains("V4__users_name.sql"), "{found}");
}

#[test]
fn rollback_strategies_version_only_and_show_rollback() {
    require(&[SINGLE]);
    let db = unique_db("strategy");
    let dir = folder(&[
        (
            "V1__events.sql",
            "-- Rollback-Strategy: freeze-and-drop\n\
             CREATE TABLE ${database}.events (id UInt64) ENGINE = MergeTree ORDER BY id;\n\
             INSERT INTO ${database}.events VALUES (1), (2);",
        ),
        (
            "V2__note.sql",
            "-- Dependencies: 1\nALTER TABLE ${database}.events ADD COLUMN note String DEFAULT '';",
        ),
        (
            "V3__audit.sql",
            "-- Rollback-Strategy: forward-only\n\
             CREATE TABLE ${database}.audit (id UInt64) ENGINE = MergeTree ORDER BY id;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    // --version applies one migration once its dependencies are applied.
    let out = chm(&args(&db, d, &["migrate", "--version", "2"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains("V2 depends on V1, which is not applied"),
        "{}",
        out.all()
    );
    assert_eq!(chm(&args(&db, d, &["migrate", "--version", "1"])).code, 0);
    assert_eq!(user_tables(SINGLE, &db), ["events"]);
    let out = chm(&args(&db, d, &["migrate", "--version", "1"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all()
            .contains("V1 cannot be applied on its own: it is already applied"),
        "{}",
        out.all()
    );
    assert_eq!(chm(&args(&db, d, &["migrate", "--version", "2"])).code, 0);
    assert_eq!(user_tables(SINGLE, &db), ["events"], "V3 stays pending");
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);

    let out = chm(&args(
        &db,
        d,
        &["status", "--show-rollback", "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let v = out.json();
    let rb: Vec<&str> = v["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["rollback"].as_str().unwrap())
        .collect();
    assert_eq!(
        rb,
        [
            format!("freeze-and-drop: freezes, then drops {db}.events").as_str(),
            "script (derived): 1 statement(s)",
            "no: forward-only (the way back is a new migration)",
        ]
    );

    // Forward-only blocks every rollback past it, and nothing runs.
    let out = chm(&args(&db, d, &["rollback", "--to", "0"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains(
            "V3 must be rolled back to reach the target, but its rollback strategy is forward-only"
        ),
        "{}",
        out.all()
    );
    assert_eq!(user_tables(SINGLE, &db), ["audit", "events"]);
    // A forward-only environment makes every migration forward-only.
    let out = chm(&args(
        &db,
        d,
        &[
            "--rollback-strategy",
            "forward-only",
            "rollback",
            "--to",
            "2",
            "--dry-run",
        ],
    ));
    assert_eq!(out.code, 2, "{}", out.all());

    // With V3's own strategy lifted (the header is outside the checksum),
    // the way back runs: freeze-and-drop freezes events, then drops it.
    std::fs::write(
        dir.path().join("V3__audit.sql"),
        "CREATE TABLE ${database}.audit (id UInt64) ENGINE = MergeTree ORDER BY id;",
    )
    .unwrap();
    let out = chm(&args(&db, d, &["rollback", "--to", "0"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(user_tables(SINGLE, &db).is_empty());
    let out = chm(&args(&db, d, &["backups", "list", "--format", "json"]));
    let backups = out.json()["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(backups[0]["table"], "events");
    assert_eq!(backups[0]["version"], "1");
    let shadow = server_data_dir("single")
        .join("shadow")
        .join(backups[0]["name"].as_str().unwrap());
    assert!(shadow.is_dir(), "{}", shadow.display());
    let _ = std::fs::remove_dir_all(&shadow);
}

#[test]
fn backup_freeze_keeps_a_materialized_views_inner_rows_before_it_is_dropped() {
    require(&[SINGLE]);
    let db = unique_db("mv_backup");
    let dir = folder(&[
        (
            "V1__views.sql",
            "CREATE TABLE src (x UInt8) ENGINE = MergeTree ORDER BY x;\n\
             CREATE TABLE dest (x UInt8) ENGINE = MergeTree ORDER BY x;\n\
             CREATE MATERIALIZED VIEW inner_mv ENGINE = MergeTree ORDER BY x AS SELECT x FROM src;\n\
             CREATE MATERIALIZED VIEW to_mv TO dest AS SELECT x FROM src;\n\
             INSERT INTO src VALUES (1), (2);",
        ),
        (
            "V2__drop_views.sql",
            "-- Rollback: false\nDROP TABLE inner_mv;\nDROP TABLE to_mv;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(&db, d, &["--backup", "freeze", "migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(user_tables(SINGLE, &db), ["dest", "src"]);
    let out = chm(&args(&db, d, &["backups", "list", "--format", "json"]));
    let backups = out.json()["backups"].as_array().unwrap().clone();
    // The view that kept its own rows is frozen; the one writing TO dest
    // loses nothing when dropped (dest stays).
    let tables: Vec<&str> = backups
        .iter()
        .map(|b| b["table"].as_str().unwrap())
        .collect();
    assert_eq!(tables, ["inner_mv"], "{backups:?}");
    let shadow = server_data_dir("single")
        .join("shadow")
        .join(backups[0]["name"].as_str().unwrap());
    assert!(
        walk(&shadow).iter().any(|f| f.ends_with("checksums.txt")),
        "no frozen part under {}",
        shadow.display()
    );
    let _ = std::fs::remove_dir_all(&shadow);
}

#[test]
fn a_failure_in_a_parallel_wave_stops_its_siblings_before_their_next_statement() {
    require(&[SINGLE]);
    let db = unique_db("par_fail");
    let dir = folder(&[
        (
            "V1__slow.sql",
            "SELECT sleep(2);\nCREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
        ),
        (
            "V2__bad.sql",
            "CREATE TABLE ${database}.b (x NoSuchType) ENGINE = Memory;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    let out = chm(&args(
        &db,
        d,
        &["--parallel", "2", "plan", "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let waves: Vec<u64> = out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["wave"].as_u64().unwrap())
        .collect();
    assert_eq!(waves, [1, 1], "one wave");
    let out = chm(&args(&db, d, &["--parallel", "2", "migrate"]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("V2__bad.sql:1"), "{}", out.stderr);
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "2", "failed"), 1);
    assert_eq!(
        events_of(&l, "1", "stopped"),
        1,
        "V1 stopped before its CREATE"
    );
    assert!(user_tables(SINGLE, &db).is_empty());
    // Fixed (and the fix accepted, as in serial mode), the next run resumes
    // V1 at its CREATE and applies V2.
    std::fs::write(
        dir.path().join("V2__bad.sql"),
        "CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;",
    )
    .unwrap();
    assert_eq!(chm(&args(&db, d, &["repair"])).code, 0);
    let out = chm(&args(&db, d, &["--parallel", "2", "migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(user_tables(SINGLE, &db), ["a", "b"]);
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "1", "started"), 1);
    assert_eq!(events_of(&l, "1", "statement_done"), 2);
}

#[test]
fn profile_joins_the_server_query_log_and_report_ranks_the_slowest() {
    require(&[SINGLE]);
    let db = unique_db("profile");
    let dir = folder(&[
        (
            "V1__t.sql",
            "CREATE TABLE ${database}.t (x UInt64) ENGINE = MergeTree ORDER BY x;\n\
             INSERT INTO ${database}.t SELECT number FROM numbers(100000);",
        ),
        (
            "V2__u.sql",
            "CREATE TABLE ${database}.u (x UInt64) ENGINE = Memory;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    // The server flushes its query log every few seconds: poll.
    let mut last = Value::Null;
    wait_until("query log rows", Duration::from_secs(40), || {
        let out = chm(&args(
            &db,
            d,
            &["profile", "--migration", "1", "--format", "json"],
        ));
        assert_eq!(out.code, 0, "{}", out.all());
        last = out.json();
        last["statements"][1]["server"].is_object()
    });
    let s = &last["statements"];
    assert_eq!(s.as_array().unwrap().len(), 2, "{last}");
    assert_eq!(s[1]["statement"]["number"], 2);
    assert!(
        s[1]["location"].as_str().unwrap().ends_with("V1__t.sql:2"),
        "{last}"
    );
    assert!(
        s[1]["sql"].as_str().unwrap().starts_with("INSERT INTO"),
        "{last}"
    );
    assert_eq!(s[1]["server"]["written_rows"], 100000, "{last}");
    assert!(
        s[1]["statement"]["query_id"]
            .as_str()
            .unwrap()
            .starts_with("chmigrate-"),
        "{last}"
    );
    let out = chm(&args(&db, d, &["profile", "--migration", "7"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("V7 has never run on this target"),
        "{}",
        out.stderr
    );

    let out = chm(&args(
        &db,
        d,
        &["report", "--performance", "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let v = out.json();
    let ms: Vec<u64> = v["slowest_migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["duration_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(ms.len(), 2, "{v}");
    assert!(ms[0] >= ms[1], "slowest first: {ms:?}");
    let out = chm(&args(&db, d, &["report", "--performance"]));
    assert!(
        out.stdout.contains("## Slowest statements"),
        "{}",
        out.stdout
    );
}

#[test]
fn clean_prunes_superseded_events_and_leaves_the_state_alone() {
    require(&[SINGLE]);
    let db = unique_db("clean");
    let dir = folder(&[
        (
            "V1__a.sql",
            "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
        ),
        (
            "V2__b.sql",
            "CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    for cmd in [&["migrate"][..], &["rollback", "--to", "0"], &["migrate"]] {
        assert_eq!(chm(&args(&db, d, cmd)).code, 0);
    }
    let status = |db: &str| {
        let mut v = chm(&args(db, d, &["status", "--format", "json"])).json();
        v["lock"] = Value::Null;
        v
    };
    let before = status(&db);
    let rows_before = ledger(SINGLE, &db).len();
    let out = chm(&args(
        &db,
        d,
        &[
            "clean",
            "--older-than",
            "0s",
            "--dry-run",
            "--format",
            "json",
        ],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let would = out.json()["removable"].as_u64().unwrap();
    assert!(would > 0, "{}", out.stdout);
    assert_eq!(
        ledger(SINGLE, &db).len(),
        rows_before,
        "dry run changes nothing"
    );

    let out = chm(&args(
        &db,
        d,
        &["clean", "--older-than", "0s", "--format", "json"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let removed = out.json()["removed"].as_u64().unwrap();
    assert!(removed >= would, "{}", out.stdout);
    let l = ledger(SINGLE, &db);
    // The clean run's lock events and its record are added.
    assert_eq!(l.len() as u64, rows_before as u64 - removed + 3, "{l:#?}");
    assert_eq!(events_of(&l, "", "ledger_cleaned"), 1);
    // Only the latest run of each migration is left, and it folds the same.
    assert_eq!(events_of(&l, "1", "started"), 1);
    assert_eq!(status(&db), before);
    // Nothing runs again; an old age removes nothing.
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("nothing to do") || out.stdout.contains("up to date"),
        "{}",
        out.stdout
    );
    let out = chm(&args(
        &db,
        d,
        &["clean", "--older-than", "30d", "--format", "json"],
    ));
    assert_eq!(out.json()["removed"], 0, "{}", out.stdout);
}

#[test]
fn messages_name_what_happened_and_runs_recover_without_needless_steps() {
    require(&[SINGLE]);
    let db = unique_db("recover");
    // A migration that fails on its first statement ran nothing: it is
    // "failed before its first statement", and fixing its file needs no
    // repair (no "applied with checksum" refusal).
    let dir = folder(&[(
        "V1__a.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = NoSuchEngine;\nCREATE TABLE ${database}.a2 (x UInt8) ENGINE = Memory;",
    )]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 1);
    let st = chm(&args(&db, d, &["status", "--format", "json"])).json();
    let state = st["migrations"][0]["state"].as_str().unwrap_or_default();
    assert!(
        state.starts_with("failed before its first statement: ") && state.contains("NoSuchEngine"),
        "{st}"
    );
    write_files(
        dir.path(),
        &[(
            "V1__a.sql",
            "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\nCREATE TABLE ${database}.a2 (x UInt8) ENGINE = Memory;",
        )],
    );
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        !out.all().contains("applied with checksum"),
        "{}",
        out.all()
    );
    assert_eq!(tables(SINGLE, &db), ["a", "a2", "schema_migrations"]);

    // A manual rollback of a migration that is not the newest: the next
    // migrate applies it again, without the out-of-order setting.
    write_files(
        dir.path(),
        &[
            (
                "V2__b.sql",
                "CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${database}.b;\n-- ROLLBACK: DROP TABLE ${database}.no_such_table;",
            ),
            (
                "V3__c.sql",
                "CREATE TABLE ${database}.c (x UInt8) ENGINE = Memory;",
            ),
        ],
    );
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    q(SINGLE, &format!("DROP TABLE `{db}`.b"));
    let out = chm(&args(&db, d, &["rollback", "--manual", "--version", "2"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(
        out.code,
        0,
        "re-applying is not out of order: {}",
        out.all()
    );
    assert!(out.stdout.contains("applied V2 "), "{}", out.stdout);
    assert_eq!(
        tables(SINGLE, &db),
        ["a", "a2", "b", "c", "schema_migrations"]
    );

    // A rollback that fails part-way, repaired, then `rollback`: one step
    // (V3 was rolled back before; V2 finishes), V1 stays.
    let out = chm(&args(&db, d, &["rollback", "--steps", "2"]));
    assert_eq!(
        out.code,
        1,
        "V2's second down statement fails: {}",
        out.all()
    );
    let out = chm(&args(
        &db,
        d,
        &["repair", "--version", "2", "--statement", "2", "--done"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let out = chm(&args(&db, d, &["rollback"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("rolled back V2 "), "{}", out.stdout);
    assert!(
        !out.stdout.contains("rolled back V2, V1"),
        "V1 stays applied: {}",
        out.stdout
    );
    let st = chm(&args(&db, d, &["status", "--format", "json"])).json();
    assert_eq!(st["applied_version"], "1", "{st}");
    assert_eq!(tables(SINGLE, &db), ["a", "a2", "schema_migrations"]);
    drop_db(SINGLE, &db, false);

    // A run of many migrations is summarised, not listed.
    let db = unique_db("many");
    let files: Vec<(String, String)> = (1..=12)
        .map(|i| (format!("V{i}__m{i}.sql"), "SELECT 1;".to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let many = folder(&refs);
    let out = chm(&args(&db, many.path().to_str().unwrap(), &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("applied 12 migrations, V1 … V12 (12 statement(s))"),
        "{}",
        out.stdout
    );
    drop_db(SINGLE, &db, false);

    // A dependency cycle names every member with its file and line.
    let cyc = folder(&[
        ("V1__a.sql", "-- Dependencies: 2\nSELECT 1;"),
        ("V2__b.sql", "-- Dependencies: 1\nSELECT 2;"),
    ]);
    let db = unique_db("cycle");
    let out = chm(&args(&db, cyc.path().to_str().unwrap(), &["migrate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains("V1__a.sql:1: dependency cycle: V1 (")
            && out.stderr.contains("V2__b.sql:1) -> V1"),
        "{}",
        out.stderr
    );
}

#[test]
fn runs_killed_at_several_points_are_finished_by_the_next_run_without_help() {
    require(&[SINGLE]);
    let db = unique_db("killpoints");
    let dir = folder(&[(
        "V1__steps.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;\nSELECT sleep(1);\n\
         CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;\nSELECT sleep(1);\n\
         CREATE TABLE ${database}.c (x UInt8) ENGINE = Memory;\nSELECT sleep(1);\n\
         CREATE TABLE ${database}.d (x UInt8) ENGINE = Memory;\n",
    )]);
    let d = dir.path().to_str().unwrap();
    // Killed after statement 1, then (resumed) after 3, then after 5.
    for done in [1, 3, 5] {
        let mut child = spawn(&args(&db, d, &["migrate"]));
        wait_for_statement_done(&db, "1", done);
        child.kill().expect("kill -9");
        let _ = child.wait();
    }
    let out = chm(&args(&db, d, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let l = ledger(SINGLE, &db);
    let mut done: Vec<i64> = l
        .iter()
        .filter(|r| r["version"] == "1" && r["event"] == "statement_done")
        .map(|r| r["statement"].as_i64().unwrap())
        .collect();
    done.sort();
    assert_eq!(done, [0, 1, 2, 3, 4, 5, 6], "every statement once");
    assert_eq!(events_of(&l, "1", "completed"), 1);
    // Each dead runner's lock was taken over by the next run, on the record.
    let forced = l.iter().filter(|r| r["event"] == "lock_forced").count();
    assert_eq!(forced, 3, "{l:?}");
    assert_eq!(
        tables(SINGLE, &db),
        ["a", "b", "c", "d", "schema_migrations"]
    );
    drop_db(SINGLE, &db, false);
}

#[test]
fn an_expired_lease_is_taken_over_and_a_live_holder_is_waited_for() {
    require(&[SINGLE]);
    let db = unique_db("lease");
    let dir = folder(&[(
        "V1__a.sql",
        "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
    )]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    let lease = ["--lock-lease", "2"];
    let mut with_lease = args(&db, d, &["migrate"]);
    with_lease.extend(lease);
    // A lock made by hand (or by a release before leases) announces no
    // lease: it is never taken over, only `unlock` releases it.
    let lock_table = format!(
        "CREATE TABLE `{db}`.schema_migrations_lock (`token` String, `holder` String, `acquired_us` UInt64) ENGINE = MergeTree() ORDER BY token"
    );
    q(SINGLE, &lock_table);
    q(
        SINGLE,
        &format!(
            "INSERT INTO `{db}`.schema_migrations_lock VALUES ('t-old', 'ci@elsewhere-7 (chmigrate 0.0.9, pid 42)', 1)"
        ),
    );
    write_files(
        dir.path(),
        &[(
            "V2__b.sql",
            "CREATE TABLE ${database}.b (x UInt8) ENGINE = Memory;",
        )],
    );
    let out = chm(&with_lease);
    assert_eq!(out.code, 4, "{}", out.all());
    wait_until(
        "the lock is older than the lease",
        Duration::from_secs(30),
        || {
            count(
                SINGLE,
                &format!(
                    "SELECT toUInt64(now() - max(modification_time)) FROM system.parts WHERE database = '{db}' AND table = 'schema_migrations_lock' AND active"
                ),
            ) > 2
        },
    );
    assert_eq!(
        chm(&with_lease).code,
        4,
        "no lease announced: not taken over"
    );
    assert_eq!(chm(&args(&db, d, &["unlock"])).code, 0);
    // A runner on another machine takes the lock and is killed mid-run (its
    // CI job was cancelled): it stops renewing its lease.
    write_files(dir.path(), &[("V3__slow.sql", "SELECT sleep(3);")]);
    let mut elsewhere = spawn_on_host(&with_lease, "elsewhere-7");
    wait_until(
        "the other runner started V3",
        Duration::from_secs(30),
        || events_of(&ledger(SINGLE, &db), "3", "started") > 0,
    );
    elsewhere.kill().expect("kill -9");
    let _ = elsewhere.wait();
    // While its lease is fresh the lock is the holder's (exit 4)…
    let out = chm(&with_lease);
    assert_eq!(out.code, 4, "{}", out.all());
    assert!(
        out.stderr.contains("its lease was renewed"),
        "{}",
        out.stderr
    );
    // …once it is older than the lease, the next run takes it over.
    let mut last = String::new();
    wait_until(
        "the expired lease is taken over",
        Duration::from_secs(30),
        || {
            let out = chm(&with_lease);
            last = out.all();
            out.code == 0
        },
    );
    let forced: Vec<serde_json::Value> = ledger(SINGLE, &db)
        .into_iter()
        .filter(|r| r["event"] == "lock_forced")
        .collect();
    // One forced by `unlock`, one by the takeover.
    assert_eq!(forced.len(), 2, "{last}");
    let details = forced[1]["details"].as_str().unwrap();
    assert!(
        details.contains("lease expired") && details.contains("@elsewhere-7 (chmigrate"),
        "{details}"
    );
    assert_eq!(tables(SINGLE, &db), ["a", "b", "schema_migrations"]);

    // A live holder is never taken over, even when its statement runs
    // longer than the lease (it renews the lease meanwhile): with
    // --lock-wait the second run waits for it and then finds nothing left
    // to do.
    write_files(
        dir.path(),
        &[("V4__slow.sql", "SELECT sleep(3);\nSELECT sleep(3);")],
    );
    let mut holder = args(&db, d, &["migrate"]);
    holder.extend(lease);
    let first = spawn(&holder);
    wait_until(
        "the first runner holds the lock",
        Duration::from_secs(30),
        || events_of(&ledger(SINGLE, &db), "4", "started") > 0,
    );
    let mut waiting = args(&db, d, &["migrate", "--lock-wait", "60"]);
    waiting.extend(lease);
    let out = chm(&waiting);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(wait_out(first).code, 0);
    let l = ledger(SINGLE, &db);
    assert_eq!(events_of(&l, "4", "completed"), 1, "applied once");
    assert_eq!(
        l.iter().filter(|r| r["event"] == "lock_forced").count(),
        2,
        "the live holder's lock was not taken over"
    );
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_database_name_that_needs_quoting_works_in_code_and_in_strings() {
    require(&[SINGLE]);
    // The CRD admits '-' and '.' in database names.
    let db = format!("{}-dash", unique_db("acc"));
    let dir = folder(&[
        (
            "V1__events.sql",
            "CREATE TABLE ${database}.events (x UInt8, src String) ENGINE = MergeTree ORDER BY x;\n\
             -- ROLLBACK: DROP TABLE ${database}.events;",
        ),
        (
            "V2__seed.sql",
            "INSERT INTO ${database}.events SELECT 1, '${database}' WHERE '${database}' = currentDatabase();\n\
             INSERT INTO ${raw_db}.events SELECT 2, 'from an identifier variable';",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    let ident_var = format!("raw_db={db}");
    let mut run = args(&db, d, &["migrate"]);
    run.extend(["--ident-var", ident_var.as_str()]);
    let out = chm(&run);
    assert_eq!(out.code, 0, "{}", out.all());
    let rows = rows(
        SINGLE,
        &format!("SELECT x, src FROM `{db}`.events ORDER BY x FORMAT JSONEachRow"),
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0]["src"],
        db.as_str(),
        "escaped text inside the string"
    );
    // The plan shows the quoted identifier.
    let mut plan = args(&db, d, &["plan", "--offline"]);
    plan.extend(["--ident-var", ident_var.as_str()]);
    let out = chm(&plan);
    assert!(
        out.stdout.contains(&format!("CREATE TABLE `{db}`.events")),
        "{}",
        out.stdout
    );
    // The ledger and lock chmigrate keeps in that database work too.
    let out = chm(&args(&db, d, &["status", "--format", "json"]));
    assert_eq!(out.json()["applied_version"], "2", "{}", out.all());
    drop_db(SINGLE, &db, false);
}

#[test]
fn if_not_exists_creations_roll_back_only_what_the_migration_created() {
    require(&[SINGLE]);
    let db = unique_db("ifne");
    let dir = folder(&[
        (
            "V1__a.sql",
            "CREATE TABLE IF NOT EXISTS ${database}.a (x UInt8) ENGINE = Memory;",
        ),
        (
            "V2__b_c.sql",
            "CREATE TABLE IF NOT EXISTS ${database}.b (x UInt8) ENGINE = Memory;\n\
             CREATE TABLE IF NOT EXISTS ${database}.c (x UInt8) ENGINE = Memory;",
        ),
    ]);
    let d = dir.path().to_str().unwrap();
    // `b` was there before the migrations (made by hand, holding data).
    q(SINGLE, &format!("CREATE DATABASE `{db}`"));
    q(
        SINGLE,
        &format!("CREATE TABLE `{db}`.b (x UInt8) ENGINE = Memory"),
    );
    q(SINGLE, &format!("INSERT INTO `{db}`.b VALUES (7)"));
    assert_eq!(chm(&args(&db, d, &["migrate"])).code, 0);
    // The ledger recorded which statement created its object.
    let done: Vec<(String, i64, bool)> = ledger(SINGLE, &db)
        .iter()
        .filter(|r| r["event"] == "statement_done")
        .map(|r| {
            let details: serde_json::Value =
                serde_json::from_str(r["details"].as_str().unwrap()).unwrap();
            (
                r["version"].as_str().unwrap().to_string(),
                r["statement"].as_i64().unwrap(),
                details["created"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        done,
        [
            ("1".to_string(), 0, true),
            ("2".to_string(), 0, false),
            ("2".to_string(), 1, true)
        ]
    );
    // The rollback drops what the migrations created, and only that.
    let out = chm(&args(&db, d, &["rollback", "--to", "0", "--dry-run"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("rollback derived by chmigrate"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(".b"),
        "b is not dropped: {}",
        out.stdout
    );
    let out = chm(&args(&db, d, &["rollback", "--to", "0"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(tables(SINGLE, &db), ["b", "schema_migrations"]);
    assert_eq!(count(SINGLE, &format!("SELECT count() FROM `{db}`.b")), 1);
    drop_db(SINGLE, &db, false);
}
