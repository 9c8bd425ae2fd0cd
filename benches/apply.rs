//! Apply throughput on a real single node: 200 single-statement migrations
//! applied by `chmigrate migrate` (process start, parsing, planning, ledger,
//! lock) next to the floor: the same 200 statements sent over one keep-alive
//! HTTP connection with no bookkeeping. Fresh database each round; medians
//! of several rounds. Needs the dev single node (`bash bench/run.sh` starts it).

use std::process::Command;
use std::time::{Duration, Instant};

use chmigrate::runtime::{Connection, Endpoint};

const URL: &str = "http://127.0.0.1:8123";
const N: usize = 200;
const ROUNDS: usize = 5;

fn statement(db: &str, i: usize) -> String {
    format!("CREATE TABLE {db}.t{i} (id UInt64, v String) ENGINE = MergeTree() ORDER BY id")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    let conn = Connection::new(Endpoint::new(URL)).unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = rt.block_on(conn.execute("SELECT 1")) {
        eprintln!("ClickHouse is not running at {URL} ({e}); run `bash bench/run.sh`");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for i in 0..N {
        let sql = statement("${database}", i);
        std::fs::write(
            dir.path().join(format!("V{}__t{i}.sql", i + 1)),
            format!("{sql};\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let bin = env!("CARGO_BIN_EXE_chmigrate");
    let mut tool = Vec::new();
    let mut floor = Vec::new();
    for round in 0..ROUNDS {
        let db = format!("bench_apply_{}_{round}", std::process::id());
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["--url", URL, "--database", &db, "--dir"])
            .arg(dir.path())
            .arg("migrate")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tool.push(took);
        rt.block_on(conn.execute(&format!("DROP DATABASE IF EXISTS {db}")))
            .unwrap_or_else(|e| panic!("{e}"));

        let db = format!("bench_floor_{}_{round}", std::process::id());
        rt.block_on(conn.execute(&format!("CREATE DATABASE {db}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let t = Instant::now();
        for i in 0..N {
            rt.block_on(conn.execute(&statement(&db, i)))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        floor.push(t.elapsed());
        rt.block_on(conn.execute(&format!("DROP DATABASE IF EXISTS {db}")))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3 / N as f64;
    let (t, f) = (median(tool.clone()), median(floor.clone()));
    let minmax = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        format!("{:.2}–{:.2}", per(v[0]), per(v[v.len() - 1]))
    };
    println!(
        "apply: {N} single-statement migrations on {URL}, {ROUNDS} rounds (median, min–max per migration)"
    );
    println!(
        "  chmigrate migrate   {:>7.2} ms/migration  ({} ms)  total {:.2} s",
        per(t),
        minmax(&tool),
        t.as_secs_f64()
    );
    println!(
        "  floor (1 keep-alive connection, no bookkeeping) {:>7.2} ms/statement  ({} ms)  total {:.2} s",
        per(f),
        minmax(&floor),
        f.as_secs_f64()
    );
    println!(
        "  ratio chmigrate / floor: {:.2}x",
        t.as_secs_f64() / f.as_secs_f64()
    );
}
