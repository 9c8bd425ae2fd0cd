//! Fault injection against the real single node: the runner is killed with
//! SIGKILL at seeded random points of a 50-statement migration, recovered
//! the way the runbook says (unlock a dead runner's lock; for an in-flight
//! statement that is not safe to repeat, look at the data and `repair`), and
//! the end state must equal an uninterrupted run's: same tables, every
//! non-idempotent INSERT applied exactly once, every statement recorded once.
//!
//! `CHMIGRATE_FAULT_ROUNDS` sets the number of kills (CI: 6; the full
//! setting, `CHMIGRATE_FAULT_ROUNDS=20`, is run by `bench/faults.sh`).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

const STATEMENTS: usize = 50;

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

#[test]
fn killed_at_random_points_the_end_state_equals_an_uninterrupted_run() {
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

    // The reference: an uninterrupted run.
    let reference_db = unique_db("fault_ref");
    assert_eq!(chm(&args(&reference_db, dir, &["migrate"])).code, 0);
    let reference = end_state(&reference_db);
    let mut ref_tables = reference.0.clone();
    ref_tables.retain(|t| !t.starts_with("schema_migrations"));
    assert_eq!(
        ref_tables.len(),
        STATEMENTS / 2,
        "the log and 24 tables: {ref_tables:?}"
    );
    drop_db(SINGLE, &reference_db, false);

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
        let state = end_state(&db);
        assert_eq!(
            state, reference,
            "round {round} (seed {seed}, killed after {kill_after} statements, then {actions:?})"
        );
        // Every statement is recorded once: done, or resolved by repair.
        let ledger = ledger(SINGLE, &db);
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
                "round {round}: statement {i} recorded {n} times: {ledger:?}"
            );
        }
        assert_eq!(events_of(&ledger, "1", "completed"), 1);
        drop_db(SINGLE, &db, false);
    }
    eprintln!("{rounds} kills, seed {seed}: recovery actions {summary:?}");
}
