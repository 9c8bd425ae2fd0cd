//! The real `kubectl` (installed on these machines) and the real
//! `chmigrate operator` binary against the in-repo FAKE Kubernetes API
//! server (tests/support/fake_apiserver.rs; no kube-apiserver can run here)
//! and the real ClickHouse single node: plain `kubectl apply` of the CRDs
//! and the quickstart example, `kubectl wait`, `kubectl get` with the CRDs'
//! short names and printer columns, `kubectl describe` with conditions and
//! Events, admission refusing what a real API server refuses, and an
//! operator killed mid-run and restarted. Every assertion is on what
//! kubectl prints (or what the fake stores, or what ClickHouse holds).
//!
//! Each test has its own fake (so its own namespaces), its own kubectl
//! cache directory and its own database.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::fake_apiserver::FakeApiServer;
use support::operator::{Operator, free_port};
use support::*;

/// `kubectl` against one fake, with its own kubeconfig and caches.
struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    fn new(api_kubeconfig: &str, dir: &Path) -> Kubectl {
        std::fs::write(dir.join("kubeconfig"), api_kubeconfig).expect("kubeconfig");
        Kubectl {
            dir: dir.to_path_buf(),
        }
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir)
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs (it is on the machine)");
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        let o = child.wait_with_output().expect("kubectl output");
        let out = Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        println!("$ kubectl {}\n{}{}", args.join(" "), out.stdout, out.stderr);
        out
    }

    /// Starts a long-running kubectl (`get -w`) writing to `out`.
    fn spawn(&self, args: &[&str], out: &Path) -> std::process::Child {
        Command::new("kubectl")
            .args(args)
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(out).expect("output file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs")
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, None)
    }

    /// Runs and requires success.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "kubectl {args:?} failed:\n{}", out.all());
        out.stdout
    }

    fn apply(&self, yaml: &str) -> Out {
        self.run_stdin(&["apply", "-f", "-"], Some(yaml))
    }
}

/// A `kubectl get` table: the header's column names and, per row, the
/// cells (cut at the columns' starting offsets, as kubectl aligns them).
fn parse_table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut prev = ' ';
    for (i, c) in header.char_indices() {
        // Columns are separated by at least 3 spaces; names hold no double
        // spaces.
        if c != ' ' && (i == 0 || (prev == ' ' && header[..i].ends_with("   "))) {
            starts.push(i);
        }
        prev = c;
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let end = starts.get(k + 1).copied().unwrap_or(line.len());
                line.get(s.min(line.len())..end.min(line.len()))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let names = cut(header);
    let rows = lines.map(cut).collect();
    (names, rows)
}

/// The row whose NAME is `name`, as column → cell.
fn row<'a>(table: &'a (Vec<String>, Vec<Vec<String>>), name: &str) -> Vec<(&'a str, &'a str)> {
    let (names, rows) = table;
    let r = rows
        .iter()
        .find(|r| r.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row {name:?} in {rows:?}"));
    names
        .iter()
        .map(String::as_str)
        .zip(r.iter().map(String::as_str))
        .collect()
}

fn cell<'a>(row: &[(&str, &'a str)], column: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| *c == column)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no column {column:?} in {row:?}"))
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: analytics\n";

/// examples/k8s/quickstart.yaml with its database renamed to `db`.
fn quickstart(db: &str) -> String {
    let text = std::fs::read_to_string(repo().join("examples/k8s/quickstart.yaml"))
        .expect("examples/k8s/quickstart.yaml");
    assert!(text.contains("database: k8s_quickstart"));
    text.replace("database: k8s_quickstart", &format!("database: {db}"))
}

fn crds() -> String {
    repo().join("crds/chmigrate.yaml").display().to_string()
}

#[test]
fn kubectl_applies_the_example_waits_gets_and_describes_as_on_a_cluster() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let k = Kubectl::new(&api.kubeconfig_yaml(), dir.path());
    let db = unique_db("kubectl");

    // Plain `kubectl apply` (client-side, validation on): the CRDs, then
    // the example.
    let out = k.ok(&["apply", "-f", &crds()]);
    assert_eq!(
        out,
        "customresourcedefinition.apiextensions.k8s.io/migrationsets.chmigrate.io created\n\
         customresourcedefinition.apiextensions.k8s.io/clickhousemigrations.chmigrate.io created\n"
    );
    let out = k.apply(NAMESPACE);
    assert_eq!(out.stdout, "namespace/analytics created\n", "{}", out.all());
    let out = k.apply(&quickstart(&db));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        out.stdout,
        "secret/clickhouse-credentials created\n\
         migrationset.chmigrate.io/quickstart created\n\
         clickhousemigration.chmigrate.io/create-page-views created\n\
         clickhousemigration.chmigrate.io/add-referrer created\n\
         configmap/quickstart-sql created\n"
    );
    assert!(
        !out.stderr.contains("Warning"),
        "the example has no unknown fields: {}",
        out.stderr
    );
    // Defaulting happened at admission, as on a real server.
    let stored = api
        .get("migrationsets", "analytics", "quickstart")
        .expect("stored");
    assert_eq!(stored["spec"]["policy"]["deletionPolicy"], "Retain");
    assert_eq!(stored["spec"]["policy"]["allowRollback"], true);

    // Before the operator runs: no status yet, the columns are empty.
    let before = parse_table(&k.ok(&["get", "chms", "-n", "analytics"]));
    assert_eq!(
        before.0,
        [
            "NAME", "CLUSTER", "APPLIED", "LATEST", "PENDING", "READY", "AGE"
        ]
    );
    assert_eq!(cell(&row(&before, "quickstart"), "READY"), "");

    let op = Operator::start(&api, dir.path(), "op-kubectl", &[]);
    let out = k.run(&[
        "wait",
        "--for=condition=Ready",
        "migrationset/quickstart",
        "-n",
        "analytics",
        "--timeout=120s",
    ]);
    assert_eq!(
        out.stdout,
        "migrationset.chmigrate.io/quickstart condition met\n",
        "{}\n{}",
        out.all(),
        op.logs()
    );

    // The set's printer columns, by the short name `chms` and by plural.
    for name in ["chms", "migrationsets", "migrationset.chmigrate.io"] {
        let t = parse_table(&k.ok(&["get", name, "-n", "analytics"]));
        assert_eq!(
            t.0,
            [
                "NAME", "CLUSTER", "APPLIED", "LATEST", "PENDING", "READY", "AGE"
            ]
        );
        let r = row(&t, "quickstart");
        assert_eq!(cell(&r, "CLUSTER"), "", "no cluster in the example");
        assert_eq!(cell(&r, "APPLIED"), "3");
        assert_eq!(cell(&r, "LATEST"), "3");
        assert_eq!(cell(&r, "PENDING"), "0");
        assert_eq!(cell(&r, "READY"), "True");
        assert!(
            cell(&r, "AGE").ends_with('s') || cell(&r, "AGE").ends_with('m'),
            "{r:?}"
        );
    }
    // The migrations' columns, by `chmigrations`, `chm` and the plural.
    for name in ["chmigrations", "chm", "clickhousemigrations"] {
        let t = parse_table(&k.ok(&["get", name, "-n", "analytics"]));
        assert_eq!(t.0, ["NAME", "VERSION", "SET", "PHASE", "HOSTS", "AGE"]);
        assert_eq!(t.1.len(), 2, "{t:?}");
        for (migration, version) in [("create-page-views", "1"), ("add-referrer", "2")] {
            let r = row(&t, migration);
            assert_eq!(cell(&r, "VERSION"), version);
            assert_eq!(cell(&r, "SET"), "quickstart");
            assert_eq!(cell(&r, "PHASE"), "Applied");
            assert_eq!(cell(&r, "HOSTS"), "1/1");
        }
    }
    // The category lists both kinds.
    let all = k.ok(&["get", "chmigrate", "-n", "analytics", "-o", "name"]);
    assert_eq!(
        all,
        "migrationset.chmigrate.io/quickstart\n\
         clickhousemigration.chmigrate.io/add-referrer\n\
         clickhousemigration.chmigrate.io/create-page-views\n"
    );
    // One object, and a JSONPath query of kubectl's own.
    let one = parse_table(&k.ok(&["get", "chm", "add-referrer", "-n", "analytics"]));
    assert_eq!(one.1.len(), 1);
    assert_eq!(cell(&row(&one, "add-referrer"), "PHASE"), "Applied");
    assert_eq!(
        k.ok(&[
            "get",
            "chms",
            "quickstart",
            "-n",
            "analytics",
            "-o",
            "jsonpath={.status.appliedVersion}"
        ]),
        "3"
    );

    // describe: the conditions and the operator's Event (written through
    // events.k8s.io/v1, read by kubectl through core/v1).
    let described = k.ok(&["describe", "migrationset", "quickstart", "-n", "analytics"]);
    let lines: Vec<&str> = described.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "Type:                  Ready"),
        "{described}"
    );
    assert!(
        described.contains("Message:               all migrations are applied on every host"),
        "{described}"
    );
    let events_at = lines
        .iter()
        .position(|l| l.starts_with("Events:"))
        .unwrap_or_else(|| panic!("no Events section:\n{described}"));
    let events = &lines[events_at..];
    assert!(
        events[1].split_whitespace().collect::<Vec<_>>()
            == ["Type", "Reason", "Age", "From", "Message"],
        "{described}"
    );
    let applied = events
        .iter()
        .find(|l| l.contains("Applied"))
        .unwrap_or_else(|| panic!("no Applied event:\n{described}"));
    let words: Vec<&str> = applied.split_whitespace().collect();
    assert_eq!(words[0], "Normal");
    assert_eq!(words[1], "Applied");
    assert_eq!(words[3], "chmigrate", "From: the reporting controller");
    assert!(applied.ends_with("applied V1, V2, V3"), "{applied}");

    // ClickHouse holds what kubectl reports.
    assert_eq!(user_tables(SINGLE, &db), ["daily_views", "page_views"]);

    // The Events, listed through core/v1 as `kubectl get events` does.
    let ev = parse_table(&k.ok(&["get", "events", "-n", "analytics"]));
    assert_eq!(ev.0, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert!(
        ev.1.iter().any(|r| r[1] == "Normal"
            && r[2] == "Applied"
            && r[3] == "migrationset/quickstart"
            && r[4] == "applied V1, V2, V3"),
        "{ev:?}"
    );
    // -o wide: the same columns (the CRDs have no priority>0 columns).
    let wide = parse_table(&k.ok(&["get", "chm", "-n", "analytics", "-o", "wide"]));
    assert_eq!(wide.0, ["NAME", "VERSION", "SET", "PHASE", "HOSTS", "AGE"]);

    // Applying again changes nothing; a changed field is configured
    // (client-side apply: a JSON merge patch of a custom resource).
    let again = k.apply(&quickstart(&db));
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(
        again.stdout,
        "secret/clickhouse-credentials unchanged\n\
         migrationset.chmigrate.io/quickstart unchanged\n\
         clickhousemigration.chmigrate.io/create-page-views unchanged\n\
         clickhousemigration.chmigrate.io/add-referrer unchanged\n\
         configmap/quickstart-sql unchanged\n"
    );
    let generation = |api: &FakeApiServer| {
        api.get("clickhousemigrations", "analytics", "add-referrer")
            .expect("stored")["metadata"]["generation"]
            .clone()
    };
    assert_eq!(generation(&api), 1);
    let changed = quickstart(&db).replace("description: Referrer column", "description: Referrer");
    let out = k.apply(&changed);
    assert!(
        out.stdout
            .contains("clickhousemigration.chmigrate.io/add-referrer configured\n"),
        "{}",
        out.all()
    );
    assert_eq!(generation(&api), 2);
    // An edit-style JSON patch.
    let out = k.ok(&[
        "patch",
        "chm",
        "add-referrer",
        "-n",
        "analytics",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/description","value":"Referrer (patched)"}]"#,
    ]);
    assert_eq!(
        out,
        "clickhousemigration.chmigrate.io/add-referrer patched\n"
    );
    assert_eq!(generation(&api), 3);

    // Deleting the set: the operator's finalizer runs (deletionPolicy
    // Retain keeps the tables) and kubectl's delete returns once it is gone.
    let out = k.ok(&[
        "delete",
        "migrationset",
        "quickstart",
        "-n",
        "analytics",
        "--timeout=60s",
    ]);
    assert_eq!(out, "migrationset.chmigrate.io \"quickstart\" deleted\n");
    assert!(
        api.get("migrationsets", "analytics", "quickstart")
            .is_none()
    );
    assert_eq!(user_tables(SINGLE, &db), ["daily_views", "page_views"]);

    drop(op);
    drop_db(SINGLE, &db, false);
}

#[test]
fn admission_refuses_what_a_real_api_server_refuses_and_kubectl_prints_why() {
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let k = Kubectl::new(&api.kubeconfig_yaml(), dir.path());
    k.ok(&["apply", "-f", &crds()]);
    assert_eq!(k.apply(NAMESPACE).code, 0);
    // A watch through kubectl (Table rows) sees what is admitted only.
    let watched = dir.path().join("watch.txt");
    let mut watch = k.spawn(
        &[
            "get",
            "chm",
            "-n",
            "analytics",
            "-w",
            "--output-watch-events",
        ],
        &watched,
    );
    wait_until("the watch to start", Duration::from_secs(20), || {
        api.requests()
            .iter()
            .any(|r| r.watch && r.path.ends_with("/clickhousemigrations"))
    });

    // A bad version: the CRD's CEL rule and its message.
    let bad = "apiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\n\
               metadata: {name: bad-version, namespace: analytics}\n\
               spec: {version: v3, up: SELECT 1}\n";
    let out = k.apply(bad);
    assert_ne!(out.code, 0);
    assert_eq!(
        out.stderr,
        "The ClickHouseMigration \"bad-version\" is invalid: spec.version: Invalid value: \"string\": \
         version: numbers separated by dots, e.g. 3 or 1.10\n"
    );
    assert!(
        api.get("clickhousemigrations", "analytics", "bad-version")
            .is_none()
    );

    // Several errors at once: a type error, a missing required field and
    // an enum; kubectl lists them.
    let several = "apiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\n\
                   metadata: {name: several, namespace: analytics}\n\
                   spec: {version: 7, rollbackStrategy: sideways}\n";
    let out = k.apply(several);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .starts_with("The ClickHouseMigration \"several\" is invalid: \n"),
        "{}",
        out.stderr
    );
    for expected in [
        "spec.up: Required value",
        "spec.rollbackStrategy: Unsupported value: \"sideways\": supported values: \"script\", \"freeze-and-drop\", \"forward-only\"",
        "spec.version: Invalid value: \"integer\": spec.version in body must be of type string: \"integer\"",
    ] {
        assert!(out.stderr.contains(expected), "{expected}\n{}", out.stderr);
    }

    // An unknown field: refused by default (kubectl asks for strict field
    // validation), pruned with a warning under --validate=warn and
    // silently under --validate=false.
    let unknown = "apiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\n\
                   metadata: {name: unknown, namespace: analytics}\n\
                   spec: {version: \"7\", up: SELECT 1, bogus: 1}\n";
    let out = k.apply(unknown);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "ClickHouseMigration in version \"v1alpha1\" cannot be handled as a ClickHouseMigration: \
             strict decoding error: unknown field \"spec.bogus\""
        ),
        "{}",
        out.stderr
    );
    let out = k.run_stdin(&["apply", "--validate=warn", "-f", "-"], Some(unknown));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(out.stderr, "Warning: unknown field \"spec.bogus\"\n");
    let out = k.run_stdin(
        &["apply", "--validate=false", "-f", "-"],
        Some(&unknown.replace("name: unknown", "name: quiet")),
    );
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{}", out.all());
    let stored = api
        .get("clickhousemigrations", "analytics", "unknown")
        .expect("stored");
    assert!(stored["spec"].get("bogus").is_none(), "pruned: {stored}");
    assert_eq!(stored["spec"]["description"], "", "defaulted: {stored}");

    // A strategic merge patch of a custom resource: 415, as on a cluster.
    let out = k.run(&[
        "patch",
        "chm",
        "unknown",
        "-n",
        "analytics",
        "--type=strategic",
        "-p",
        r#"{"spec":{"description":"x"}}"#,
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("application/strategic-merge-patch+json is not supported"),
        "{}",
        out.stderr
    );
    // A merge patch that breaks a rule is refused; a good one is stored.
    let out = k.run(&[
        "patch",
        "chm",
        "unknown",
        "-n",
        "analytics",
        "--type=merge",
        "-p",
        r#"{"spec":{"up":"   "}}"#,
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "The ClickHouseMigration \"unknown\" is invalid: spec.up: Invalid value: \"string\": up must hold at least one statement"
        ),
        "{}",
        out.stderr
    );
    let out = k.ok(&[
        "patch",
        "chm",
        "unknown",
        "-n",
        "analytics",
        "--type=merge",
        "-p",
        r#"{"spec":{"description":"patched"}}"#,
    ]);
    assert_eq!(out, "clickhousemigration.chmigrate.io/unknown patched\n");
    assert_eq!(
        api.get("clickhousemigrations", "analytics", "unknown")
            .expect("stored")["spec"]["description"],
        "patched"
    );
    // Server-side apply is admitted the same way.
    let out = k.run_stdin(
        &["apply", "--server-side", "-f", "-"],
        Some(&bad.replace("bad-version", "ssa-bad")),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "spec.version: Invalid value: \"string\": version: numbers separated by dots"
        ),
        "{}",
        out.stderr
    );
    // The watch printed the admitted objects' events as rows of the CRD's
    // columns, and nothing of the refused ones.
    wait_until("the watch to see a patch", Duration::from_secs(20), || {
        std::fs::read_to_string(&watched).is_ok_and(|t| t.lines().count() >= 4)
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let text = std::fs::read_to_string(&watched).expect("watch output");
    let t = parse_table(&text);
    assert_eq!(
        t.0,
        ["EVENT", "NAME", "VERSION", "SET", "PHASE", "HOSTS", "AGE"],
        "{text}"
    );
    let events: Vec<(&str, &str, &str)> =
        t.1.iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
            .collect();
    assert_eq!(
        events,
        [
            ("ADDED", "unknown", "7"),
            ("ADDED", "quiet", "7"),
            ("MODIFIED", "unknown", "7")
        ],
        "{text}"
    );

    // And delete works as on a cluster.
    for name in ["unknown", "quiet"] {
        assert_eq!(
            k.ok(&["delete", "chm", name, "-n", "analytics"]),
            format!("clickhousemigration.chmigrate.io \"{name}\" deleted\n")
        );
    }
    let out = k.run(&["get", "chm", "-n", "analytics"]);
    assert_eq!(out.stderr, "No resources found in analytics namespace.\n");
}

#[test]
fn an_operator_killed_mid_run_and_restarted_converges_as_kubectl_shows() {
    require(&[SINGLE]);
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let k = Kubectl::new(&api.kubeconfig_yaml(), dir.path());
    let db = unique_db("kubectl_kill");
    k.ok(&["apply", "-f", &crds()]);
    assert_eq!(k.apply(NAMESPACE).code, 0);
    // The example's set and Secret, with three slow migrations of its own.
    let base = quickstart(&db);
    let docs: Vec<&str> = base
        .split("\n---\n")
        .filter(|d| d.contains("kind: Secret") || d.contains("kind: MigrationSet"))
        .collect();
    let mut yaml = docs
        .join("\n---\n")
        .replace("  configMaps: [quickstart-sql]\n", "");
    for v in 1..=3 {
        yaml.push_str(&format!(
            "\n---\napiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\n\
             metadata:\n  name: slow-{v}\n  namespace: analytics\n  labels: {{ chmigrate.io/set: quickstart }}\n\
             spec:\n  version: \"{v}\"\n  up: |\n    CREATE TABLE IF NOT EXISTS ${{database}}.t{v} (x UInt8) ENGINE = MergeTree ORDER BY x;\n    SELECT sleep(1.5);\n    SELECT sleep(1.5);\n  down: DROP TABLE IF EXISTS ${{database}}.t{v};\n"
        ));
    }
    let out = k.apply(&yaml);
    assert_eq!(out.code, 0, "{}", out.all());

    let mut first = Operator::start(&api, dir.path(), "op-kubectl-kill", &[]);
    // Killed (SIGKILL) once the first migration is in (the ledger says so)
    // and the others are not.
    wait_until("migration 1 applied", Duration::from_secs(60), || {
        ledger_count(SINGLE, &db, "completed") >= 1
    });
    first.kill();
    let completed_at_kill = ledger_count(SINGLE, &db, "completed");
    assert!(
        completed_at_kill < 3,
        "killed mid-run ({completed_at_kill} done)"
    );
    let t = parse_table(&k.ok(&["get", "chms", "-n", "analytics"]));
    assert_ne!(cell(&row(&t, "quickstart"), "READY"), "True", "{t:?}");
    assert_ne!(cell(&row(&t, "quickstart"), "APPLIED"), "3", "{t:?}");

    // The restarted operator (same identity, as a restarted pod) takes its
    // earlier life's lock over and converges.
    let second = Operator::start(&api, dir.path(), "op-kubectl-kill", &[]);
    let out = k.run(&[
        "wait",
        "--for=condition=Ready",
        "migrationset/quickstart",
        "-n",
        "analytics",
        "--timeout=120s",
    ]);
    assert_eq!(
        out.stdout,
        "migrationset.chmigrate.io/quickstart condition met\n",
        "{}\n{}",
        out.all(),
        second.logs()
    );
    let t = parse_table(&k.ok(&["get", "chms", "-n", "analytics"]));
    let r = row(&t, "quickstart");
    assert_eq!(
        (cell(&r, "APPLIED"), cell(&r, "PENDING"), cell(&r, "READY")),
        ("3", "0", "True")
    );
    let t = parse_table(&k.ok(&["get", "chm", "-n", "analytics"]));
    for v in 1..=3 {
        assert_eq!(cell(&row(&t, &format!("slow-{v}")), "PHASE"), "Applied");
    }
    assert_eq!(user_tables(SINGLE, &db), ["t1", "t2", "t3"]);
    for v in ["1", "2", "3"] {
        assert_eq!(
            events_of(&ledger(SINGLE, &db), v, "completed"),
            1,
            "version {v} completed exactly once"
        );
    }
    drop(second);
    drop_db(SINGLE, &db, false);
}

/// Where cargo puts examples next to this test's binary.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    profile_dir.join("examples").join("fake-apiserver")
}

#[test]
fn the_fake_runs_as_an_example_program_and_serves_kubectl() {
    // `cargo test` of this file alone does not build examples; build it
    // (a no-op when it is fresh) with the same cargo and profile.
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--example", "fake-apiserver"]);
    if example_binary().parent().and_then(Path::file_name) == Some("release".as_ref()) {
        build.arg("--release");
    }
    let status = build
        .current_dir(repo())
        .status()
        .expect("cargo build --example");
    assert!(status.success(), "the example builds");
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("fake.kubeconfig");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = Command::new(example_binary())
        .args(["--listen", &addr, "--write-kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    wait_until("the kubeconfig", Duration::from_secs(20), || {
        kubeconfig.exists()
    });
    let config = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");
    assert!(
        config.contains(&format!("server: http://{addr}")),
        "{config}"
    );
    let k = Kubectl::new(&config, dir.path());
    let out = k.ok(&["apply", "-f", &crds()]);
    assert!(out.contains("migrationsets.chmigrate.io created"), "{out}");
    let out = k.ok(&["api-resources", "--api-group=chmigrate.io"]);
    let t = parse_table(&out);
    assert_eq!(
        t.0,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let r = row(&t, "clickhousemigrations");
    assert_eq!(cell(&r, "SHORTNAMES"), "chm,chmigration,chmigrations");
    assert_eq!(cell(&r, "NAMESPACED"), "true");
    assert_eq!(
        cell(&row(&t, "migrationsets"), "SHORTNAMES"),
        "chms,migrationset"
    );
    let _ = server.kill();
    let _ = server.wait();
}
