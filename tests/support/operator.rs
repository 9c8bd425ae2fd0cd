//! The real `chmigrate operator` binary run against the in-repo FAKE API
//! server, and the manifests the operator tests and the operator benchmark
//! build.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_apiserver::FakeApiServer;

pub struct Operator {
    pub child: Child,
    /// `http://<addr>/metrics`.
    pub metrics: String,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Operator {
    /// Starts an operator that rechecks healthy sets every 2 s (so tests
    /// see a recheck quickly).
    pub fn start(api: &FakeApiServer, dir: &Path, name: &str, extra: &[&str]) -> Operator {
        Operator::start_with_recheck(api, dir, name, 2, extra)
    }

    /// Starts `chmigrate operator` against `api`, logging to
    /// `<dir>/<name>.log`.
    pub fn start_with_recheck(
        api: &FakeApiServer,
        dir: &Path,
        name: &str,
        recheck_seconds: u64,
        extra: &[&str],
    ) -> Operator {
        let kubeconfig = dir.join("kubeconfig");
        if !kubeconfig.exists() {
            api.write_kubeconfig(&kubeconfig);
        }
        Operator::spawn(&kubeconfig, dir, name, recheck_seconds, extra)
    }

    /// Starts an operator whose API client sends bearer `token` (so that
    /// the fake can cut it off with [`FakeApiServer::partition`]).
    pub fn start_with_token(
        api: &FakeApiServer,
        dir: &Path,
        name: &str,
        token: &str,
        extra: &[&str],
    ) -> Operator {
        let kubeconfig = dir.join(format!("kubeconfig-{token}"));
        std::fs::write(&kubeconfig, api.kubeconfig_yaml_with_token(token)).expect("kubeconfig");
        Operator::spawn(&kubeconfig, dir, name, 2, extra)
    }

    fn spawn(
        kubeconfig: &Path,
        dir: &Path,
        name: &str,
        recheck_seconds: u64,
        extra: &[&str],
    ) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_chmigrate"))
            .args(["operator", "--listen", &addr])
            .args(["--recheck-seconds", &recheck_seconds.to_string()])
            .args(["--identity", name])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("CHMIGRATE_LOG", "info")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("operator starts");
        Operator {
            child,
            metrics: format!("http://{addr}/metrics"),
            log,
        }
    }

    /// Sum of a metric's samples whose line starts with `prefix`.
    pub fn metric(&self, prefix: &str) -> f64 {
        http_get(&self.metrics)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The process's peak resident memory (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn http_get(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

/// The namespace and the Secret with the ClickHouse password.
pub fn secret(ns: &str) -> String {
    let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "ch", "namespace": ns, "labels": { "chmigrate.io/credentials": "true" } },
        "data": { "password": "czNjcmV0LXB3" }
    });
    format!("{namespace}\n---\n{secret}")
}

pub fn set(ns: &str, name: &str, db: &str, url: &str, extra: Value) -> String {
    let mut spec = json!({
        "connection": {
            "url": url,
            "database": db,
            "credentials": { "user": "chm_secret", "passwordSecretRef": { "name": "ch", "key": "password" } }
        },
        "selector": { "matchLabels": { "chmigrate.io/set": name } },
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "chmigrate.io/v1alpha1", "kind": "MigrationSet",
        "metadata": { "name": name, "namespace": ns },
        "spec": spec,
    })
    .to_string()
}

pub fn migration(ns: &str, set: &str, version: &str, up: &str, down: &str) -> String {
    json!({
        "apiVersion": "chmigrate.io/v1alpha1", "kind": "ClickHouseMigration",
        "metadata": { "name": format!("{set}-v{version}"), "namespace": ns,
                      "labels": { "chmigrate.io/set": set } },
        "spec": { "version": version, "description": format!("step {version}"), "up": up, "down": down },
    })
    .to_string()
}

pub fn condition(obj: &Value, type_: &str) -> (String, String, String) {
    let c = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}
