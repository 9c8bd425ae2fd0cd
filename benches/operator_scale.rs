//! The operator at scale: the real `chmigrate operator` binary against the
//! in-repo FAKE API server (tests/support/fake_apiserver.rs; no real API
//! server runs on these machines) and the dev ClickHouse single node.
//!
//! SETS MigrationSets (default 20) of PER_SET trivial ClickHouseMigrations
//! each (default 100: 2,000 objects), each set on its own database. Measures
//!
//! - the time from the operator's start until every set is `Ready` with
//!   every migration applied (each migration is one CREATE TABLE);
//! - the operator's peak resident memory (VmHWM) over the whole run;
//! - idle: IDLE_SECONDS (default 60) with nothing changing and sets
//!   rechecked every RECHECK seconds (default 30, so every set is rechecked
//!   during the window): reconciles, API reads and API writes per minute;
//! - the time from creating one more trivial migration in a set to that set
//!   being `Ready` with it applied, ROUNDS times (default 5).
//!
//! Needs the single node of scripts/dev-cluster.sh (bench/run.sh starts
//! it). A benchmark, not a test: it prints numbers and fails only when the
//! operator never converges.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::Value;

use support::fake_apiserver::FakeApiServer;
use support::operator::{Operator, condition, migration, secret, set};
use support::{SINGLE, drop_db, require};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ready_at(obj: &Value, version: u64) -> bool {
    obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        && obj["status"]["appliedVersion"].as_str() == Some(version.to_string().as_str())
        && condition(obj, "Ready").0 == "True"
}

fn trivial(version: u64) -> (String, String) {
    (
        format!("CREATE TABLE ${{database}}.t{version} (id UInt64) ENGINE = Memory"),
        format!("DROP TABLE ${{database}}.t{version}"),
    )
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    require(&[SINGLE]);
    let sets = knob("SETS", 20);
    let per_set = knob("PER_SET", 100);
    let idle_seconds = knob("IDLE_SECONDS", 60);
    let recheck = knob("RECHECK", 30);
    let rounds = knob("ROUNDS", 5).max(1);
    let ns = "bench";
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("a scratch folder");
    api.apply_yaml(&secret(ns));
    let names: Vec<String> = (0..sets).map(|s| format!("s{s:02}")).collect();
    let dbs: Vec<String> = (0..sets)
        .map(|s| format!("chmb_op_{}_{s}", std::process::id()))
        .collect();
    for (name, db) in names.iter().zip(&dbs) {
        api.apply_yaml(&set(ns, name, db, SINGLE, serde_json::json!({})));
        for v in 1..=per_set {
            let (up, down) = trivial(v);
            api.apply_yaml(&migration(ns, name, &v.to_string(), &up, &down));
        }
    }
    eprintln!(
        "operator_scale: {sets} sets × {per_set} migrations = {} ClickHouseMigration objects",
        sets * per_set
    );

    let started = Instant::now();
    let op = Operator::start_with_recheck(&api, dir.path(), "bench", recheck, &["--namespace", ns]);
    let converge_deadline = started + Duration::from_secs(knob("CONVERGE_TIMEOUT", 900));
    loop {
        let ready = names
            .iter()
            .filter(|n| {
                api.get("migrationsets", ns, n)
                    .is_some_and(|o| ready_at(&o, per_set))
            })
            .count();
        if ready == names.len() {
            break;
        }
        if Instant::now() > converge_deadline {
            eprintln!("{}", op.logs());
            panic!("only {ready} of {} sets became Ready", names.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let converge = started.elapsed();
    let converge_requests = api.requests();
    let converge_writes = converge_requests.iter().filter(|r| r.is_write()).count();

    // Idle: nothing changes.
    api.clear_requests();
    let reconciles_before = op.metric("chmigrate_reconciles_total");
    std::thread::sleep(Duration::from_secs(idle_seconds));
    let idle = api.requests();
    let reconciles = op.metric("chmigrate_reconciles_total") - reconciles_before;
    let per_minute = |n: f64| n * 60.0 / idle_seconds.max(1) as f64;
    let idle_writes = idle.iter().filter(|r| r.is_write()).count();

    // One more trivial migration → Ready.
    let mut latency = Vec::new();
    for r in 0..rounds {
        let v = per_set + 1 + r;
        let (up, down) = trivial(v);
        let t0 = Instant::now();
        api.apply_yaml(&migration(ns, &names[0], &v.to_string(), &up, &down));
        let deadline = t0 + Duration::from_secs(120);
        while !api
            .get("migrationsets", ns, &names[0])
            .is_some_and(|o| ready_at(&o, v))
        {
            if Instant::now() > deadline {
                eprintln!("{}", op.logs());
                panic!("V{v} never became Ready");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        latency.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let peak_kib = op.peak_rss_kib().unwrap_or(0);
    drop(op);
    for db in &dbs {
        drop_db(SINGLE, db, false);
    }

    let (lo, hi) = latency
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let med = median(&mut latency);
    println!("| operator at scale ({sets} sets × {per_set} migrations, fake API server) | value |");
    println!("|---|---|");
    println!(
        "| start → every set Ready ({} CREATE TABLEs) | {:.1} s ({:.1} ms per migration) |",
        sets * per_set,
        converge.as_secs_f64(),
        converge.as_secs_f64() * 1e3 / (sets * per_set) as f64
    );
    println!(
        "| API requests while converging | {} ({converge_writes} writes) |",
        converge_requests.len()
    );
    println!(
        "| peak resident memory (VmHWM) | {:.1} MiB |",
        peak_kib as f64 / 1024.0
    );
    println!(
        "| idle {idle_seconds} s, recheck every {recheck} s: reconciles per minute | {:.1} |",
        per_minute(reconciles)
    );
    println!(
        "| idle: API writes per minute | {:.1} |",
        per_minute(idle_writes as f64)
    );
    println!(
        "| idle: API reads per minute (watch reconnects) | {:.1} |",
        per_minute((idle.len() - idle_writes) as f64)
    );
    println!(
        "| new trivial migration → Ready, {rounds} rounds | median {med:.0} ms (min {lo:.0}, max {hi:.0}) |"
    );
}
