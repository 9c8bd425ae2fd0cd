//! Parallel waves against serial mode on real servers: independent data
//! migrations (each creates a table and fills it with INSERT … SELECT) on
//! the single node, and independent `ON CLUSTER` DDL migrations on the 2×2
//! cluster, applied by `chmigrate migrate` with `--parallel 1` and
//! `--parallel 4`. Fresh database each round; medians of several rounds.
//! Needs the dev servers (`bash bench/run.sh` starts them).

use std::process::Command;
use std::time::{Duration, Instant};

use chmigrate::runtime::{Connection, Endpoint};

const SINGLE: &str = "http://127.0.0.1:8123";
const CLUSTER_NODE: &str = "http://127.0.0.11:8123";
const N: usize = 8;

fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn write_migrations(dir: &std::path::Path, cluster: bool) {
    for k in 1..=N {
        let sql = if cluster {
            format!(
                "CREATE TABLE ${{database}}.t{k} (id UInt64, v String) \
                 ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/${{database}}/t{k}', '{{replica}}') ORDER BY id;\n\
                 ALTER TABLE ${{database}}.t{k} ADD COLUMN note String DEFAULT '';\n"
            )
        } else {
            format!(
                "CREATE TABLE ${{database}}.t{k} (id UInt64, v String) ENGINE = MergeTree ORDER BY id;\n\
                 INSERT INTO ${{database}}.t{k} SELECT number, toString(number) FROM numbers(2000000);\n"
            )
        };
        std::fs::write(dir.join(format!("V{k}__t{k}.sql")), sql).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn run(url: &str, cluster: bool, parallel: usize, dir: &std::path::Path, round: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio: {e}"));
    let conn = Connection::new(Endpoint::new(url)).unwrap_or_else(|e| panic!("{e}"));
    let db = format!("bench_par_{}_{parallel}_{round}", std::process::id());
    let mut args = vec!["--url", url, "--database", &db];
    if cluster {
        args.extend(["--cluster", "chm_cluster"]);
    }
    let p = parallel.to_string();
    args.extend(["--parallel", p.as_str(), "--dir"]);
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chmigrate"))
        .args(&args)
        .arg(dir)
        .arg("migrate")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drop = if cluster {
        format!("DROP DATABASE IF EXISTS {db} ON CLUSTER chm_cluster")
    } else {
        format!("DROP DATABASE IF EXISTS {db}")
    };
    rt.block_on(conn.execute(&drop))
        .unwrap_or_else(|e| panic!("{e}"));
    took
}

fn section(name: &str, url: &str, cluster: bool) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_migrations(dir.path(), cluster);
    let mut serial = Vec::new();
    let mut parallel = Vec::new();
    for round in 0..rounds() {
        serial.push(run(url, cluster, 1, dir.path(), round));
        parallel.push(run(url, cluster, 4, dir.path(), round));
    }
    let (s, p) = (median(serial), median(parallel));
    println!(
        "{name}: {N} independent migrations, {} rounds (median)",
        rounds()
    );
    println!("  --parallel 1   {:>8.2} s", s.as_secs_f64());
    println!("  --parallel 4   {:>8.2} s", p.as_secs_f64());
    println!(
        "  speed-up serial / parallel: {:.2}x",
        s.as_secs_f64() / p.as_secs_f64()
    );
}

fn main() {
    let up = |url: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let conn = Connection::new(Endpoint::new(url)).ok()?;
        rt.block_on(conn.execute("SELECT 1")).ok()
    };
    if up(SINGLE).is_none() {
        eprintln!("ClickHouse is not running at {SINGLE}; run `bash bench/run.sh`");
        std::process::exit(1);
    }
    section(
        "single node, data migrations (CREATE + INSERT … SELECT of 2M rows)",
        SINGLE,
        false,
    );
    if up(CLUSTER_NODE).is_some() {
        section(
            "2x2 cluster, ON CLUSTER DDL (CREATE ReplicatedMergeTree + ALTER ADD COLUMN)",
            CLUSTER_NODE,
            true,
        );
    } else {
        println!("(cluster not running at {CLUSTER_NODE}: cluster section skipped)");
    }
}
