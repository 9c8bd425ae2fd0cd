//! The `chmigrate` binary end to end, offline: exit codes, messages naming
//! file and line, plans printed for the examples, and `new`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with no inherited `CHMIGRATE_*` variables.
fn run_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chmigrate"));
    cmd.current_dir(cwd).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHMIGRATE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Out {
    run_in(&repo(), args, &[])
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout))
}

/// A temp folder holding the given files.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    dir
}

#[test]
fn every_example_folder_validates() {
    for dir in [
        "migrations",
        "examples/flyway",
        "examples/updown",
        "examples/dbmate",
    ] {
        let out = run(&["validate", "--dir", dir]);
        assert_eq!(out.code, 0, "{dir}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("0 error(s), 0 warning(s)"),
            "{dir}: {}",
            out.stdout
        );
    }
}

#[test]
fn offline_plan_of_the_flyway_example() {
    let out = run(&[
        "plan",
        "--offline",
        "--dir",
        "examples/flyway",
        "--database",
        "analytics",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = json(&out);
    let versions: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1", "1.1", "2", "3"]);
    assert_eq!(plan["target_version"], "3");
    assert_eq!(plan["cluster"], Value::Null);
    let step = &plan["steps"][1];
    assert_eq!(step["action"], "apply");
    assert_eq!(
        step["description"],
        "Referrer column (version 1.1 sorts after 1 and before 2)"
    );
    assert_eq!(
        step["statements"][0]["sql"],
        "ALTER TABLE analytics.page_views ADD COLUMN referrer String DEFAULT ''"
    );
    assert_eq!(step["statements"][0]["location"]["line"], 6);
    assert_eq!(step["statements"][0]["note"]["on_cluster"], "off");
    // The semicolon inside the string literal did not split the INSERT.
    let insert = &plan["steps"][3]["statements"][0]["sql"];
    assert!(
        insert
            .as_str()
            .unwrap()
            .ends_with("'https://example.com/?a=1;b=2')"),
        "{insert}"
    );
}

#[test]
fn offline_plan_skips_other_environments_and_orders_by_dependency() {
    let out = run(&[
        "plan",
        "--offline",
        "--dir",
        "examples/flyway",
        "--env",
        "production",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("Skip V3: runs only in environment(s) development, not \"production\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("3 migration(s) to apply, 0 to roll back, 4 statement(s), 1 skipped")
    );

    let out = run(&[
        "plan",
        "--offline",
        "--dir",
        "examples/updown",
        "--format",
        "json",
        "--to",
        "20250529090000",
    ]);
    let plan = json(&out);
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["statements"].as_array().unwrap().len(), 2);
}

#[test]
fn offline_plan_on_a_cluster_adds_on_cluster_to_every_ddl() {
    let out = run(&[
        "plan",
        "--offline",
        "--cluster",
        "chm_cluster",
        "--database",
        "quickstart",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = json(&out);
    let mut n = 0;
    for step in plan["steps"].as_array().unwrap() {
        for s in step["statements"].as_array().unwrap() {
            let sql = s["sql"].as_str().unwrap();
            assert!(sql.contains(" ON CLUSTER chm_cluster"), "{sql}");
            assert!(!sql.contains("${"), "{sql}");
            assert!(
                sql.contains("{shard}") || sql.contains("MATERIALIZED VIEW"),
                "macros pass through: {sql}"
            );
            assert_eq!(s["note"]["on_cluster"], "added");
            n += 1;
        }
    }
    assert_eq!(n, 6);
    // The table output says the same for people.
    let out = run(&["plan", "--offline", "--cluster", "chm_cluster"]);
    assert!(
        out.stdout
            .contains("CREATE TABLE IF NOT EXISTS default.users ON CLUSTER chm_cluster"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("4 migration(s) to apply, 0 to roll back, 6 statement(s), 0 skipped")
    );
}

#[test]
fn bad_inputs_exit_2_naming_file_and_line() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("V1_create.sql", "SELECT 1;")],
            "V1_create.sql:1: bad migration file name",
        ),
        (
            &[("V1__a.sql", "SELECT 1;"), ("1_b.up.sql", "SELECT 2;")],
            // Files are read in name order, so the second is V1__a.sql.
            "V1__a.sql:1: version 1 is defined twice: here and at ",
        ),
        (
            &[("V2__a.sql", "-- Version: 3\nSELECT 1;")],
            "V2__a.sql:1: header says Version 3 but the file name says 2",
        ),
        (
            &[("V1__a.sql", "SELECT 1;\n\nSELECT 'x;\n")],
            "V1__a.sql:3: unterminated string literal",
        ),
        (
            &[("V1__a.sql", "SELECT 1;\n/* oops")],
            "V1__a.sql:2: unterminated block comment",
        ),
        (
            &[("V1__a.sql", "-- only comments\n")],
            "V1__a.sql:1: migration has no SQL statements",
        ),
        (
            &[("V1__a.sql", "SELECT 1;\n\nSELECT ${nope};")],
            "V1__a.sql:3: unknown placeholder ${nope}",
        ),
        (
            &[
                ("V1__a.sql", "-- Dependencies: 2\nSELECT 1;"),
                ("V2__b.sql", "-- Dependencies: 1\nSELECT 2;"),
            ],
            // Every member named with its file and line.
            "V2__b.sql:1) -> V1; remove one of these dependencies",
        ),
        (
            &[("5_x.sql", "SELECT 1;")],
            "5_x.sql:1: dbmate-style file has no '-- migrate:up' marker",
        ),
        (
            &[("7_x.down.sql", "SELECT 1;")],
            "7_x.down.sql:1: down migration has no matching up migration",
        ),
    ];
    for (files, want) in cases {
        let dir = folder(files);
        let d = dir.path().to_str().unwrap();
        let out = run(&["validate", "--dir", d]);
        assert_eq!(out.code, 2, "{want}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains(want),
            "want {want:?} in:\n{}",
            out.stdout
        );
        // plan refuses too, printing to stderr, and produces no plan.
        let out = run(&["plan", "--offline", "--dir", d]);
        assert_eq!(out.code, 2, "{want}");
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(
            out.stderr.contains("nothing was executed"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn oversized_migrations_respect_the_configured_limit() {
    let dir = folder(&[("V1__a.sql", &"SELECT 1;\n".repeat(30))]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(run(&["validate", "--dir", d]).code, 0);
    let out = run(&["validate", "--dir", d, "--max-file-size", "100"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stdout
            .contains("V1__a.sql:1: migration is 300 bytes, over the limit of 100 bytes"),
        "{}",
        out.stdout
    );
}

#[test]
fn validate_json_lists_diagnostics() {
    let dir = folder(&[
        ("V1__a.sql", "SELECT ${x};"),
        ("V2__b.sql", "SYSTEM FLUSH LOGS;"),
    ]);
    let out = run(&[
        "validate",
        "--dir",
        dir.path().to_str().unwrap(),
        "--cluster",
        "c",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 2);
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 1);
    assert_eq!(v["warnings"], 1);
    assert_eq!(v["diagnostics"][0]["message"], "unknown placeholder ${x}");
    assert_eq!(v["diagnostics"][1]["severity"], "warning");
    // With a value for the variable it passes.
    let out = run(&[
        "validate",
        "--dir",
        dir.path().to_str().unwrap(),
        "--var",
        "x=1",
    ]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn require_rollback_flags_migrations_with_no_written_or_derivable_rollback() {
    let dir = folder(&[
        // Derivable: passes.
        (
            "V1__a.sql",
            "CREATE TABLE ${database}.a (x UInt8) ENGINE = Memory;",
        ),
        // A data migration with no rollback written: flagged.
        ("V2__b.sql", "INSERT INTO ${database}.a VALUES (1);"),
    ]);
    let d = dir.path().to_str().unwrap();
    assert_eq!(run(&["validate", "--dir", d]).code, 0, "off by default");
    let out = run(&["validate", "--dir", d, "--require-rollback"]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "V2__b.sql:1: V2 has no rollback, written or derivable (statement 1 (line 1) cannot be undone automatically: an INSERT is a data migration)"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("V1 has no rollback"), "{}", out.stdout);
    // The same as an environment's policy in chmigrate.yaml.
    std::fs::write(
        dir.path().join("chmigrate.yaml"),
        "environments:\n  staging: {}\n  production:\n    migrations: { require_rollback: true }\n",
    )
    .unwrap();
    let cfg = dir.path().join("chmigrate.yaml");
    let cfg = cfg.to_str().unwrap();
    let out = run(&[
        "--config",
        cfg,
        "--env",
        "production",
        "validate",
        "--dir",
        d,
    ]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("V2 has no rollback"), "{}", out.stdout);
    // A forward-only environment still wants every migration to carry a
    // rollback (to rehearse it elsewhere): judged as written.
    let out = run(&[
        "--config",
        cfg,
        "--env",
        "production",
        "--rollback-strategy",
        "forward-only",
        "validate",
        "--dir",
        d,
    ]);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("V2 has no rollback"), "{}", out.stdout);
    assert!(!out.stdout.contains("V1 has no rollback"), "{}", out.stdout);
    let out = run(&["--config", cfg, "--env", "staging", "validate", "--dir", d]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn init_writes_a_config_that_loads_and_a_migrations_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["init", "--database", "analytics"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(dir.path().join("migrations").is_dir());
    let cfg = std::fs::read_to_string(dir.path().join("chmigrate.yaml")).unwrap();
    for env in ["development:", "staging:", "production:"] {
        assert!(cfg.contains(env), "{cfg}");
    }
    // It loads, per environment, and the next commands work with it.
    assert_eq!(run_in(dir.path(), &["new", "create events"], &[]).code, 0);
    for env in ["development", "staging", "production"] {
        let out = run_in(dir.path(), &["--env", env, "validate"], &[]);
        assert_eq!(out.code, 0, "{env}: {}{}", out.stdout, out.stderr);
    }
    let plan = run_in(
        dir.path(),
        &["--env", "production", "plan", "--offline"],
        &[],
    );
    assert!(
        plan.stdout.contains("database analytics"),
        "{}",
        plan.stdout
    );
    // Never overwritten by accident; hostile names refused.
    let out = run_in(dir.path(), &["init"], &[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("pass --force"), "{}", out.stderr);
    assert_eq!(run_in(dir.path(), &["init", "--force"], &[]).code, 0);
    let out = run_in(
        dir.path(),
        &["init", "--force", "--database", "x`; DROP"],
        &[],
    );
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    // --config elsewhere: the folder sits beside the file it is named in.
    let other = dir.path().join("deploy");
    std::fs::create_dir_all(&other).unwrap();
    let cfg = other.join("chmigrate.yaml");
    let out = run_in(
        dir.path(),
        &["--config", cfg.to_str().unwrap(), "init"],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(other.join("migrations").is_dir());
}

#[test]
fn always_mode_refuses_statements_it_cannot_place_on_the_cluster() {
    let dir = folder(&[("V1__a.sql", "SYSTEM FLUSH LOGS;")]);
    let d = dir.path().to_str().unwrap();
    let out = run(&[
        "plan",
        "--offline",
        "--dir",
        d,
        "--cluster",
        "c",
        "--on-cluster",
        "always",
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("V1__a.sql:1: cannot add ON CLUSTER"),
        "{}",
        out.stderr
    );
}

#[test]
fn config_file_environment_variables_and_flags_layer() {
    let dir = folder(&[
        (
            "db/V1__a.sql",
            "CREATE TABLE ${database}.t (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE ${database}.t;",
        ),
        (
            "chmigrate.yaml",
            "default_environment: staging\nconnection:\n  database: from_file\nmigrations:\n  dir: db\nenvironments:\n  staging:\n    connection: { database: from_staging }\n  production: {}\n",
        ),
    ]);
    let plan_sql = |out: &Out| {
        json(out)["steps"][0]["statements"][0]["sql"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let out = run_in(dir.path(), &["plan", "--offline", "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        plan_sql(&out),
        "CREATE TABLE from_staging.t (x UInt8) ENGINE = Memory"
    );
    let out = run_in(
        dir.path(),
        &[
            "plan",
            "--offline",
            "--format",
            "json",
            "--env",
            "production",
        ],
        &[],
    );
    assert_eq!(
        plan_sql(&out),
        "CREATE TABLE from_file.t (x UInt8) ENGINE = Memory"
    );
    let out = run_in(
        dir.path(),
        &["plan", "--offline", "--format", "json"],
        &[("CHMIGRATE_DATABASE", "from_env")],
    );
    assert_eq!(
        plan_sql(&out),
        "CREATE TABLE from_env.t (x UInt8) ENGINE = Memory"
    );
    let out = run_in(
        dir.path(),
        &[
            "plan",
            "--offline",
            "--format",
            "json",
            "--database",
            "from_flag",
        ],
        &[("CHMIGRATE_DATABASE", "from_env")],
    );
    assert_eq!(
        plan_sql(&out),
        "CREATE TABLE from_flag.t (x UInt8) ENGINE = Memory"
    );

    let out = run_in(dir.path(), &["plan", "--offline", "--env", "prod"], &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(
            "environment \"prod\" is not defined in chmigrate.yaml (defined: production, staging)"
        ),
        "{}",
        out.stderr
    );

    let out = run_in(dir.path(), &["validate", "--config", "missing.yaml"], &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("missing.yaml: cannot read config"),
        "{}",
        out.stderr
    );

    let out = run_in(
        dir.path(),
        &["validate", "--database", "x`; DROP TABLE y"],
        &[],
    );
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("database name"), "{}", out.stderr);
}

#[test]
fn plan_without_offline_needs_a_server() {
    let out = run(&["plan", "--url", "http://127.0.0.1:1"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("http://127.0.0.1:1: cannot connect"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn new_writes_the_next_migration_from_a_template() {
    let dir = folder(&[("V1__a.sql", "SELECT 1;"), ("2_b.up.sql", "SELECT 2;")]);
    let d = dir.path().to_str().unwrap();
    let out = run(&["new", "Add Sessions", "--dir", d]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = dir.path().join("V3__add_sessions.sql");
    assert!(
        out.stdout.contains("V3__add_sessions.sql"),
        "{}",
        out.stdout
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("CREATE TABLE IF NOT EXISTS ${database}.add_sessions"),
        "{text}"
    );
    assert!(text.contains("-- Version: 3"));

    for template in ["alter", "index", "data", "view"] {
        let out = run(&["new", template, "--template", template, "--dir", d]);
        assert_eq!(out.code, 0, "{template}: {}", out.stderr);
    }
    let out = run(&["validate", "--dir", d]);
    assert_eq!(out.code, 0, "generated files validate: {}", out.stdout);
    assert!(out.stdout.contains("7 migration(s)"), "{}", out.stdout);

    let out = run(&[
        "new",
        "stamped",
        "--timestamp",
        "--dir",
        d,
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0);
    let v = json(&out);
    assert_eq!(v["version"].as_str().unwrap().len(), 14);

    let out = run(&["new", "x", "--template", "nope", "--dir", d]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("invalid value 'nope'"),
        "{}",
        out.stderr
    );
    let out = run(&["new", "!!!", "--dir", d]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("migration name"), "{}", out.stderr);
}

#[test]
fn every_command_has_help() {
    for cmd in [
        &["--help"][..],
        &["new", "--help"],
        &["validate", "--help"],
        &["plan", "--help"],
    ] {
        let out = run(cmd);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("Usage: chmigrate"), "{}", out.stdout);
    }
    // The password's environment value is never shown in help.
    let out = run_in(&repo(), &["--help"], &[("CHMIGRATE_PASSWORD", "s3cret-pw")]);
    assert!(!out.stdout.contains("s3cret-pw"));
}

#[test]
fn hostile_names_are_refused_before_anything_is_sent() {
    // Port 9 is closed: an attempt to connect would fail with exit 1, so exit 2
    // with the name's problem proves nothing was sent.
    for (flag, value, what) in [
        (
            "--database",
            "x`; DROP DATABASE system; --",
            "database name",
        ),
        ("--database", "a b", "database name"),
        ("--cluster", "c' OR 1=1", "cluster name"),
        (
            "--history-table",
            "t`(x) ENGINE=Log; --",
            "history table name",
        ),
        ("--history-table", "../../etc", "history table name"),
    ] {
        for cmd in ["migrate", "status", "unlock"] {
            let out = run(&[
                "--url",
                "http://127.0.0.1:9",
                "--dir",
                "examples/flyway",
                flag,
                value,
                cmd,
            ]);
            assert_eq!(
                out.code, 2,
                "{flag} {value:?} {cmd}: {}{}",
                out.stdout, out.stderr
            );
            assert!(
                out.stderr.contains(what),
                "{flag} {value:?} {cmd}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("cannot connect"), "{}", out.stderr);
        }
    }
}

#[test]
fn resolve_renumbers_a_colliding_file_with_its_down_half_and_header() {
    let dir = folder(&[
        (
            "m/V1__users.sql",
            "CREATE TABLE users (id UInt64) ENGINE = Memory;",
        ),
        (
            "m/V2__orders.sql",
            "-- Version: 2\nCREATE TABLE orders (id UInt64) ENGINE = Memory;",
        ),
        (
            "m/2_payments.up.sql",
            "-- Migration: payments\n-- Version: 2\n-- Dependencies: 1\nCREATE TABLE payments (id UInt64) ENGINE = Memory;",
        ),
        ("m/2_payments.down.sql", "DROP TABLE payments;"),
        (
            "m/V3__refunds.sql",
            "-- Dependencies: 2\nCREATE TABLE refunds (id UInt64) ENGINE = Memory;",
        ),
    ]);
    let p = dir.path();
    let out = run_in(p, &["validate", "--dir", "m"], &[]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("version 2 is defined twice"),
        "{}",
        out.stdout
    );

    // A file that collides with nothing is not renumbered (named through
    // another path to the same folder).
    let out = run_in(
        p,
        &["resolve", "--dir", "m", "--migration", "./m/V1__users.sql"],
        &[],
    );
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("collides with no other file"),
        "{}",
        out.stderr
    );
    assert!(p.join("m/V1__users.sql").is_file());

    let out = run_in(
        p,
        &[
            "resolve",
            "--dir",
            "m",
            "--migration",
            "./m/../m/2_payments.up.sql",
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = json(&out);
    assert_eq!(v["from"], "2");
    assert_eq!(v["to"], "4", "{v}");
    assert_eq!(v["files"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        v["dependents"][0]
            .as_str()
            .unwrap()
            .ends_with("V3__refunds.sql"),
        "{v}"
    );
    assert!(!p.join("m/2_payments.up.sql").exists());
    assert!(!p.join("m/2_payments.down.sql").exists());
    let up = std::fs::read_to_string(p.join("m/4_payments.up.sql")).unwrap();
    assert!(up.contains("-- Version: 4\n-- Dependencies: 1\n"), "{up}");
    assert_eq!(
        std::fs::read_to_string(p.join("m/4_payments.down.sql")).unwrap(),
        "DROP TABLE payments;"
    );
    // The other branch's file is untouched, and the folder is valid again.
    assert!(p.join("m/V2__orders.sql").is_file());
    let out = run_in(p, &["validate", "--dir", "m"], &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = run_in(
        p,
        &["plan", "--offline", "--dir", "m", "--format", "json"],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("payments"), "{}", out.stdout);
}

#[test]
fn logging_level_format_and_file_come_from_the_config_and_flags() {
    let dir = folder(&[
        (
            "chmigrate.yaml",
            "migrations: { dir: migrations }\n\
             logging: { level: info, format: json, file: logs/chmigrate.log }\n\
             environments:\n  development: {}\n  production:\n    logging: { level: error }\n",
        ),
        (
            "migrations/V1__a.sql",
            "CREATE TABLE a (x UInt8) ENGINE = Memory;",
        ),
    ]);
    let out = run_in(dir.path(), &["validate"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    let log = dir.path().join("logs/chmigrate.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let line: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["fields"]["message"] == "migrations loaded")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["migrations"], 1);
    // The same lines on stderr, in the same format.
    assert!(
        out.stderr.contains("\"migrations loaded\""),
        "{}",
        out.stderr
    );

    // production logs errors only; the file is appended to, not replaced.
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    let out = run_in(dir.path(), &["--env", "production", "validate"], &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        before
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);

    // --debug raises it, and says where each line comes from.
    let out = run_in(
        dir.path(),
        &[
            "--env",
            "production",
            "--debug",
            "--log-format",
            "text",
            "validate",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stderr.contains("DEBUG") && out.stderr.contains("configuration resolved"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("src/cli/mod.rs:"), "{}", out.stderr);

    // Bad logging settings are bad input: exit 2, naming the file or flag.
    let out = run_in(dir.path(), &["--log-level", "loud", "validate"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("loud"), "{}", out.stderr);
    std::fs::write(dir.path().join("bad.yaml"), "logging: { level: chatty }\n").unwrap();
    let out = run_in(dir.path(), &["--config", "bad.yaml", "validate"], &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("bad.yaml"), "{}", out.stderr);
    let out = run_in(
        dir.path(),
        &["--log-file", "/proc/nope/x.log", "validate"],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("/proc/nope/x.log"), "{}", out.stderr);
}

/// The command names `chmigrate --help` lists (hidden ones are not listed).
fn command_names() -> Vec<String> {
    let help = run(&["--help"]).stdout;
    let mut names = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
            continue;
        }
        if inside {
            if line.is_empty() {
                break;
            }
            // "  name      text"; continuation lines are indented further.
            if line.starts_with("  ") && !line.starts_with("   ") {
                let name = line.split_whitespace().next().unwrap().to_string();
                if name != "help" {
                    names.push(name);
                }
            }
        }
    }
    names
}

#[test]
fn the_readme_lists_every_command_with_an_example() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let names = command_names();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("README's command reference has no row for `{name}`"));
        let example = row.split(" | ").nth(1).unwrap_or("");
        assert!(
            example.contains(&format!("`chmigrate {name}")),
            "the `{name}` row has no example: {row}"
        );
    }
}

#[test]
fn the_readme_configuration_example_loads() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme.split("## Configuration").nth(1).unwrap();
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    let file = chmigrate::config::FileConfig::parse(Path::new("README.md"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        file.expand_targets(&["staging".to_string()]).unwrap(),
        ["staging-eu", "staging-us"]
    );
}

/// The commands `chmigrate --help` lists (hidden ones are not listed).
fn listed_commands() -> Vec<String> {
    let help = run(&["--help"]).stdout;
    let section = help.split("Commands:").nth(1).expect("a Commands: section");
    let section = section.split("\n\n").next().unwrap_or(section);
    section
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("  ")?;
            (!l.starts_with(' ')).then(|| l.split_whitespace().next().map(str::to_string))?
        })
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_command_has_a_row_in_the_readme_table() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let table = readme
        .split("## Commands")
        .nth(1)
        .and_then(|s| s.split("\n\n").find(|p| p.starts_with("| command |")))
        .expect("the README's command table");
    let commands = listed_commands();
    assert!(commands.len() > 20, "{commands:?}");
    assert!(commands.iter().any(|c| c == "test-connection"));
    let missing: Vec<&String> = commands
        .iter()
        .filter(|c| !table.contains(&format!("| `{c}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "commands without a row in README.md's command table: {missing:?}"
    );
}

#[test]
fn the_seed_mapping_in_the_readme_loads() {
    // The seed framework's configuration, as the README shows it, maps
    // onto settings and names what it ignores.
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("### Coming from the seed framework")
        .nth(1)
        .expect("the README's seed section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    let file = chmigrate::config::FileConfig::parse(Path::new("migration-config.yml"), yaml)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(file.environments.contains_key("production"));
    assert!(
        file.warnings
            .iter()
            .any(|w| w.contains("database.port: 9000")),
        "{:?}",
        file.warnings
    );
}
