//! The cost of one replica drift check (what `status`, `validate --online`
//! and the operator's periodic recheck run) on the dev 2 shards x 2
//! replicas cluster with 100 applied migrations.
//!
//! The migrations: 60 create tables (every other one replicated), 20 insert
//! a row into one of them, 20 create views (applied with `--parallel 8`). They are applied once with the
//! `chmigrate` binary; then `engine::drift::check` (reading every host
//! through the entry node with `remote()`, comparing, no writes) runs
//! ROUNDS times (default 20) against the ledger as read, and the median,
//! minimum and maximum are printed. One round with a table dropped by hand
//! on one replica shows the check finds it.
//!
//! Needs the cluster of scripts/dev-cluster.sh (`start-cluster`). A
//! benchmark, not a test: it prints numbers. `cargo bench --bench drift`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chmigrate::config::{ConnectionSection, MigrationsSection, Overrides, Settings};
use chmigrate::runtime::{Connection, Endpoint, store};
use support::{CLUSTER, NODES, chm, drop_db, folder, require, unique_db};

fn migrations() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for i in 1..=100usize {
        let sql = match i {
            1..=60 if i % 2 == 0 => format!(
                "CREATE TABLE ${{database}}.t{i} (id UInt64, v String) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{{shard}}/${{database}}/t{i}', '{{replica}}') ORDER BY id;"
            ),
            1..=60 => format!(
                "CREATE TABLE ${{database}}.t{i} (id UInt64, v String) ENGINE = MergeTree ORDER BY id;"
            ),
            61..=80 => format!(
                "INSERT INTO ${{database}}.t{} (id, v) VALUES ({i}, 'row');",
                (i - 60) * 2
            ),
            _ => format!(
                "CREATE VIEW ${{database}}.v{i} AS SELECT id FROM ${{database}}.t{};",
                i - 80
            ),
        };
        files.push((format!("V{i}__m{i}.sql"), sql));
    }
    files
}

fn main() {
    require(&NODES);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let db = unique_db("bench_drift");
    let files = migrations();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = folder(&refs);
    let d = dir.path().to_str().unwrap_or_default();
    let common = [
        "--url",
        NODES[0],
        "--cluster",
        CLUSTER,
        "--database",
        &db,
        "--dir",
        d,
    ];
    let started = Instant::now();
    let out = chm(&[&common[..], &["--parallel", "8", "migrate"]].concat());
    // 3: applied, a host still finishing (another suite restarting a node).
    if out.code != 0 && out.code != 3 {
        drop_db(NODES[0], &db, true);
        panic!("migrate failed: {}", out.all());
    }
    eprintln!(
        "applied 100 migrations on {CLUSTER} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let overrides = Overrides {
        connection: ConnectionSection {
            url: Some(NODES[0].to_string()),
            database: Some(db.clone()),
            cluster: Some(CLUSTER.to_string()),
            ..Default::default()
        },
        migrations: MigrationsSection {
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        },
        ..Default::default()
    };
    let settings = Settings::resolve(None, &overrides).expect("settings");
    let loaded = chmigrate::source::dir::load_dir(dir.path(), settings.max_file_size);
    assert_eq!(loaded.migrations.len(), 100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (times, objects) = rt.block_on(async {
        let session = chmigrate::engine::connect(&settings)
            .await
            .expect("connect");
        let history = store::read(&session.conn, &session.cfg.ledger)
            .await
            .expect("ledger");
        let mut times = Vec::new();
        let mut objects = 0;
        for _ in 0..rounds {
            let t = Instant::now();
            let found =
                chmigrate::engine::drift::check(&session, &settings, &loaded.migrations, &history)
                    .await
                    .expect("drift check");
            times.push(t.elapsed());
            assert!(!found.report.has_drift(), "{:?}", found.report);
            objects = found.expected.objects.len();
        }
        let node2 = Connection::new(Endpoint::new(NODES[1])).expect("node 2");
        node2
            .execute(&format!("DROP TABLE `{db}`.t2"))
            .await
            .expect("drop on node 2");
        let found =
            chmigrate::engine::drift::check(&session, &settings, &loaded.migrations, &history)
                .await
                .expect("drift check");
        let seen: Vec<String> = found
            .report
            .drifted()
            .flat_map(|h| h.drift.iter().map(move |d| format!("{}: {d}", h.host)))
            .collect();
        eprintln!("after DROP TABLE t2 on node 2: {seen:?}");
        (times, objects)
    });
    drop_db(NODES[0], &db, true);
    let mut sorted: Vec<Duration> = times.clone();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "drift check, 2x2 cluster, 100 applied migrations ({objects} objects x 4 hosts), {rounds} rounds: \
         median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(sorted[sorted.len() / 2]),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1])
    );
}
