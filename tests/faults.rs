//! Fault injection against the real single node: the runner is killed with
//! SIGKILL at seeded random points of a 50-statement migration, recovered
//! the way the runbook says (unlock a dead runner's lock; for an in-flight
//! statement that is not safe to repeat, look at the data and `repair`), and
//! the end state must equal an uninterrupted run's: same tables, every
//! non-idempotent INSERT applied exactly once, every statement recorded once.
//!
//! `CHMIGRATE_FAULT_ROUNDS` sets the number of kills (CI: 6; the full
//! setting, `CHMIGRATE_FAULT_ROUNDS=20`, is run by `bench/faults.sh`).
//!
//! The server itself is also killed (SIGKILL) and restarted in the middle of
//! a run; the tests here run one at a time, since that takes the single node
//! away from everyone.

mod support;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use support::*;

const STATEMENTS: usize = 50;

static SINGLE_NODE: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SINGLE_NODE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Statement 0 creates the log; odd statements INSERT their number into it
/// (running one twice would leave a duplicate row); even ones create a
/// table with IF NOT EXISTS (safe to repeat).
fn migration() -> String {
    let mut sql = String::from(
        "CREATE TABLE IF NOT EXISTS ${database}.log (i UInt16) ENGINE = MergeTree ORDER BY i;\n",
    );
    for i in 1..STATEMENTS {
        if i % 2 == 1 {
            sql.push_str(&format!("INSERT INTO ${{database}}.log VALUES ({i});\n"));
        } else {
            sql.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS ${{database}}.s{i} (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
            ));
        }
    }
    sql
}

/// A small deterministic generator (64-bit LCG), so a failing seed can be
/// replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn args<'a>(db: &'a str, dir: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["--url", SINGLE, "--database", db, "--dir", dir];
    a.extend_from_slice(rest);
    a
}

fn done_count(db: &str) -> u64 {
    ledger_count(SINGLE, db, "statement_done")
}

/// Runs `migrate` until it succeeds, doing what the runbook says for each
/// refusal; returns what it had to do.
fn recover(db: &str, dir: &str) -> Vec<String> {
    let mut actions = Vec::new();
    for _ in 0..6 {
        let out = chm(&args(db, dir, &["migrate"]));
        eprintln!(
            "recover: migrate exit {}: {}",
            out.code,
            out.stderr.lines().next().unwrap_or_default()
        );
        match out.code {
            0 => return actions,
            1 if out.stderr.contains("cannot connect") => {
                // The server is still coming back.
                wait_until("the server answers", Duration::from_secs(60), || {
                    query(SINGLE, "SELECT 1").is_ok()
                });
                actions.push("wait".into());
            }
            4 => {
                assert!(
                    out.stderr.contains("target is locked: held by"),
                    "{}",
                    out.all()
                );
                assert_eq!(chm(&args(db, dir, &["unlock"])).code, 0);
                actions.push("unlock".into());
            }
            2 => {
                // "… stopped while its up statement N was running …"
                let n: usize = out
                    .stderr
                    .split("up statement ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no in-flight statement named: {}", out.all()));
                let i = n - 1;
                assert_eq!(
                    i % 2,
                    1,
                    "only the INSERTs are unsafe to repeat: {}",
                    out.all()
                );
                // Did the INSERT take effect? Look at the data, as a person would.
                let rows = count(
                    SINGLE,
                    &format!("SELECT count() FROM `{db}`.log WHERE i = {i}"),
                );
                let decision = if rows == 1 { "--done" } else { "--not-done" };
                let statement = n.to_string();
                let r = chm(&args(
                    db,
                    dir,
                    &[
                        "repair",
                        "--version",
                        "1",
                        "--statement",
                        &statement,
                        decision,
                    ],
                ));
                assert_eq!(r.code, 0, "{}", r.all());
                actions.push(format!("repair {n} {decision}"));
            }
            _ => panic!("unexpected outcome: {}", out.all()),
        }
    }
    panic!("did not converge: {actions:?}");
}

fn end_state(db: &str) -> (Vec<String>, Vec<u64>) {
    let rows: Vec<u64> = rows(SINGLE, &format!("SELECT i FROM `{db}`.log ORDER BY i"))
        .iter()
        .filter_map(|r| r["i"].as_u64())
        .collect();
    (tables(SINGLE, db), rows)
}

/// The end state of an uninterrupted run of the migration in `dir`.
fn uninterrupted(dir: &str) -> (Vec<String>, Vec<u64>) {
    let db = unique_db("fault_ref");
    assert_eq!(chm(&args(&db, dir, &["migrate"])).code, 0);
    let reference = end_state(&db);
    let user = user_tables(SINGLE, &db);
    assert_eq!(
        user.len(),
        STATEMENTS / 2,
        "the log and 24 tables: {user:?}"
    );
    drop_db(SINGLE, &db, false);
    reference
}

/// The end state equals the uninterrupted run's, and every statement is
/// recorded once: done, or resolved by repair.
fn assert_converged(db: &str, reference: &(Vec<String>, Vec<u64>), context: &str) {
    assert_eq!(end_state(db), *reference, "{context}");
    let ledger = ledger(SINGLE, db);
    for i in 0..STATEMENTS as i64 {
        let n = ledger
            .iter()
            .filter(|r| r["statement"] == i)
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
            n, 1,
            "{context}: statement {i} recorded {n} times: {ledger:?}"
        );
    }
    assert_eq!(events_of(&ledger, "1", "completed"), 1, "{context}");
}

#[test]
fn killed_at_random_points_the_end_state_equals_an_uninterrupted_run() {
    let _g = serial();
    require(&[SINGLE]);
    let rounds: usize = std::env::var("CHMIGRATE_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("CHMIGRATE_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20261122);
    let files = folder(&[("V1__fifty.sql", &migration())]);
    let dir = files.path().to_str().expect("utf-8");

    let reference = uninterrupted(dir);

    let mut rng = Lcg(seed);
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for round in 0..rounds {
        let db = unique_db("fault");
        let kill_after = rng.next(STATEMENTS as u64);
        let mut child = spawn(&args(&db, dir, &["migrate"]));
        wait_until("the kill point", Duration::from_secs(60), || {
            done_count(&db) >= kill_after || child.try_wait().ok().flatten().is_some()
        });
        let _ = child.kill();
        let _ = child.wait();
        let actions = recover(&db, dir);
        for a in &actions {
            *summary
                .entry(a.split(' ').next().unwrap_or_default().to_string())
                .or_default() += 1;
        }
        assert_converged(
            &db,
            &reference,
            &format!(
                "round {round} (seed {seed}, killed after {kill_after} statements, then {actions:?})"
            ),
        );
        drop_db(SINGLE, &db, false);
    }
    eprintln!("{rounds} kills, seed {seed}: recovery actions {summary:?}");
}

#[test]
fn the_server_killed_and_restarted_during_a_run_loses_and_repeats_nothing() {
    let _g = serial();
    require(&[SINGLE]);
    let files = folder(&[("V1__fifty.sql", &migration())]);
    let dir = files.path().to_str().expect("utf-8");
    let reference = uninterrupted(dir);
    let db = unique_db("fault_server");
    let run = spawn(&args(&db, dir, &["migrate"]));
    wait_until("a third of the statements", Duration::from_secs(60), || {
        done_count(&db) >= (STATEMENTS / 3) as u64
    });
    // A crash of the server: no shutdown, connections cut mid-request.
    dev_cluster(&["kill-single"]);
    let out = wait_out(run);
    dev_cluster(&["start-single"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("cannot connect") || out.stderr.contains("127.0.0.1:8123"),
        "the error names the server: {}",
        out.stderr
    );
    let actions = recover(&db, dir);
    assert_converged(&db, &reference, &format!("server killed, then {actions:?}"));
    drop_db(SINGLE, &db, false);
}

#[test]
fn a_parallel_wave_killed_with_sigkill_resumes_like_serial_mode() {
    let _g = serial();
    require(&[SINGLE]);
    let db = unique_db("par_kill");
    let files: Vec<(String, String)> = (1..=4)
        .map(|k| {
            (
                format!("V{k}__t{k}.sql"),
                format!(
                    "CREATE TABLE ${{database}}.t{k} (x UInt64) ENGINE = MergeTree ORDER BY x;\n\
                     SELECT sleep(3);\n\
                     INSERT INTO ${{database}}.t{k} VALUES ({k});\n"
                ),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    let dir = folder(&refs);
    let d = dir.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut a = vec![
            "--url",
            SINGLE,
            "--database",
            &db,
            "--dir",
            d,
            "--parallel",
            "4",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let args = run(&["migrate"]);
    let mut child = spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Every migration's CREATE is recorded: all four are in their sleep.
    wait_until("four CREATEs recorded", Duration::from_secs(30), || {
        query(
            SINGLE,
            &format!("SELECT 1 FROM `{db}`.schema_migrations LIMIT 1"),
        )
        .is_ok()
            && (1..=4)
                .all(|k| events_of(&ledger(SINGLE, &db), &k.to_string(), "statement_done") >= 1)
    });
    child.kill().expect("kill -9");
    let _ = child.wait();
    let l = ledger(SINGLE, &db);
    assert_eq!(
        l.iter().filter(|e| e["event"] == "completed").count(),
        0,
        "killed mid-wave"
    );
    let unlock = run(&["unlock"]);
    assert_eq!(
        chm(&unlock.iter().map(String::as_str).collect::<Vec<_>>()).code,
        0
    );
    // The next run resumes each migration at its first unrecorded statement
    // (the SELECT, safe to repeat), again in parallel.
    let out = chm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, 0, "{}", out.all());
    let l = ledger(SINGLE, &db);
    for k in 1..=4 {
        let v = k.to_string();
        assert_eq!(events_of(&l, &v, "started"), 1, "V{k}");
        assert_eq!(events_of(&l, &v, "completed"), 1, "V{k}");
        let done: Vec<i64> = l
            .iter()
            .filter(|r| r["version"] == v.as_str() && r["event"] == "statement_done")
            .map(|r| r["statement"].as_i64().unwrap())
            .collect();
        assert_eq!(done, [0, 1, 2], "V{k}: each statement once, none skipped");
        assert_eq!(
            count(
                SINGLE,
                &format!("SELECT count() AS n FROM `{db}`.t{k} WHERE x = {k}")
            ),
            1,
            "V{k}'s INSERT landed once"
        );
    }
    // seq stays strictly increasing with four writers.
    let seqs: Vec<u64> = l.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    drop_db(SINGLE, &db, false);
}
