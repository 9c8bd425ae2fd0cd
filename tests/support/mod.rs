//! Shared helpers for the integration tests against the real ClickHouse
//! servers that `scripts/dev-cluster.sh` starts (the test script starts
//! them before `cargo test`).

#![allow(dead_code)]

pub mod fake_apiserver;
pub mod operator;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chmigrate::runtime::{Connection, Endpoint};
use serde_json::Value;

pub const SINGLE: &str = "http://127.0.0.1:8123";
pub const NODES: [&str; 4] = [
    "http://127.0.0.11:8123",
    "http://127.0.0.12:8123",
    "http://127.0.0.13:8123",
    "http://127.0.0.14:8123",
];
pub const CLUSTER: &str = "chm_cluster";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A database name no other test uses.
pub fn unique_db(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn base_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chmigrate"));
    cmd.current_dir(repo()).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHMIGRATE_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn out(o: Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs the binary to completion.
pub fn chm(args: &[&str]) -> Out {
    out(base_command(args).output().expect("binary runs"))
}

/// Runs the binary with extra environment variables.
pub fn chm_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = base_command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    out(cmd.output().expect("binary runs"))
}

/// Starts the binary in the background.
pub fn spawn(args: &[&str]) -> Child {
    base_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts")
}

/// Starts chmigrate as a runner on another machine would (its actor names
/// `host`), output discarded: a CI job that can be killed mid-run.
pub fn spawn_on_host(args: &[&str], host: &str) -> Child {
    base_command(args)
        .env("HOSTNAME", host)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chmigrate starts")
}

pub fn wait_out(child: Child) -> Out {
    out(child.wait_with_output().expect("child finishes"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Sends one statement; returns the JSONEachRow text or the server's error.
pub fn query(url: &str, sql: &str) -> Result<String, String> {
    let conn = Connection::new(Endpoint::new(url)).map_err(|e| e.to_string())?;
    runtime()
        .block_on(conn.text(sql, &[]))
        .map_err(|e| e.to_string())
}

pub fn q(url: &str, sql: &str) -> String {
    query(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Rows of a query as JSON values.
pub fn rows(url: &str, sql: &str) -> Vec<Value> {
    q(url, sql)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect()
}

/// `SELECT count() …` as a number.
pub fn count(url: &str, sql: &str) -> u64 {
    rows(url, sql)
        .first()
        .and_then(|r| r.as_object()?.values().next()?.as_u64())
        .unwrap_or_else(|| panic!("no count from {sql}"))
}

pub fn tables(url: &str, db: &str) -> Vec<String> {
    let mut t: Vec<String> = rows(
        url,
        &format!("SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name"),
    )
    .iter()
    .filter_map(|r| r["name"].as_str().map(str::to_string))
    .filter(|n| !n.ends_with("_lock"))
    .collect();
    t.sort();
    t
}

/// The database's tables without chmigrate's own (ledger, lock).
pub fn user_tables(url: &str, db: &str) -> Vec<String> {
    tables(url, db)
        .into_iter()
        .filter(|t| !t.starts_with("schema_migrations"))
        .collect()
}

/// Ledger rows of `db` (read on `url`), each with every field: the fixed
/// columns of the ledger's table and the fields of its JSON `payload`
/// (`statement` -1 and empty strings where the payload leaves them out).
pub fn ledger(url: &str, db: &str) -> Vec<Value> {
    rows(
        url,
        &format!("SELECT * FROM `{db}`.schema_migrations ORDER BY seq"),
    )
    .into_iter()
    .map(|mut r| {
        let payload: Value = r
            .get("payload")
            .and_then(Value::as_str)
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        if let (Some(obj), Some(fields)) = (r.as_object_mut(), payload.as_object()) {
            obj.remove("payload");
            for key in [
                "version",
                "direction",
                "checksum",
                "environment",
                "actor",
                "db_user",
                "hosts",
                "error",
                "description",
                "details",
            ] {
                obj.insert(
                    key.into(),
                    fields.get(key).cloned().unwrap_or_else(|| Value::from("")),
                );
            }
            obj.insert(
                "statement".into(),
                fields.get("statement").cloned().unwrap_or(Value::from(-1)),
            );
            obj.insert(
                "duration_ms".into(),
                fields.get("duration_ms").cloned().unwrap_or(Value::from(0)),
            );
        }
        r
    })
    .collect()
}

pub fn events_of(ledger: &[Value], version: &str, event: &str) -> usize {
    ledger
        .iter()
        .filter(|r| r["version"] == version && r["event"] == event)
        .count()
}

/// How many ledger rows of `event` a database has; 0 while the database or
/// the ledger does not exist yet (for polling a run in progress).
pub fn ledger_count(url: &str, db: &str, event: &str) -> u64 {
    query(
        url,
        &format!("SELECT count() FROM `{db}`.schema_migrations WHERE event = '{event}'"),
    )
    .ok()
    .and_then(|t| serde_json::from_str::<Value>(t.trim()).ok())
    .and_then(|v| v.as_object()?.values().next()?.as_u64())
    .unwrap_or(0)
}

/// Polls `f` until it returns true or `deadline` passes.
pub fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// Fails loudly when the servers the tests need are not running.
pub fn require(urls: &[&str]) {
    for url in urls {
        if let Err(e) = query(url, "SELECT 1") {
            panic!(
                "ClickHouse at {url} is not answering ({e}); start it with `scripts/dev-cluster.sh start-single start-cluster` (scripts/test.sh does)"
            );
        }
    }
}

/// Writes migration files into a fresh folder.
pub fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    write_files(dir.path(), files);
    dir
}

pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        std::fs::write(path, content).expect("write");
    }
}

/// Runs `scripts/dev-cluster.sh` with arguments.
pub fn dev_cluster(args: &[&str]) {
    let status = Command::new("bash")
        .arg(repo().join("scripts/dev-cluster.sh"))
        .args(args)
        .status()
        .expect("dev-cluster.sh runs");
    assert!(status.success(), "dev-cluster.sh {args:?} failed");
}

pub fn drop_db(url: &str, db: &str, cluster: bool) {
    let on = if cluster {
        format!(" ON CLUSTER {CLUSTER}")
    } else {
        String::new()
    };
    let _ = query(url, &format!("DROP DATABASE IF EXISTS `{db}`{on}"));
}

/// Where `scripts/dev-cluster.sh` keeps a server's data: `single` or
/// `node1`..`node4` (`CHMIGRATE_DEV_DIR`, default /tmp/chmigrate-dev).
pub fn server_data_dir(server: &str) -> PathBuf {
    let base = std::env::var("CHMIGRATE_DEV_DIR").unwrap_or_else(|_| "/tmp/chmigrate-dev".into());
    PathBuf::from(base).join(server).join("data")
}

/// Every file below `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
