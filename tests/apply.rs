//! `chmigrate apply -f`: the operator's reconcile over manifests read from
//! files, against the real single node.

mod support;

use support::*;

fn manifests(db: &str) -> String {
    std::fs::read_to_string(repo().join("examples/k8s/quickstart.yaml"))
        .unwrap()
        .replace("database: k8s_quickstart", &format!("database: {db}"))
}

fn apply(path: &std::path::Path, extra: &[&str]) -> (Out, serde_json::Value) {
    let mut a = vec!["apply", "-f", path.to_str().unwrap(), "--format", "json"];
    a.extend_from_slice(extra);
    let out = chm(&a);
    let status = out.json()[0]["status"].clone();
    (out, status)
}

fn condition<'a>(status: &'a serde_json::Value, t: &str) -> &'a serde_json::Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == t)
        .unwrap()
}

#[test]
fn apply_reconciles_manifests_and_reports_kstatus_conditions() {
    require(&[SINGLE]);
    let db = unique_db("apply");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    std::fs::write(&file, manifests(&db)).unwrap();

    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(condition(&st, "Ready")["status"], "True");
    assert_eq!(condition(&st, "Stalled")["status"], "False");
    assert_eq!(st["appliedVersion"], "3");
    assert_eq!(
        tables(SINGLE, &db),
        ["daily_views", "page_views", "schema_migrations"]
    );
    // The ledger records the password's user, never the password.
    let l = ledger(SINGLE, &db);
    assert!(l.iter().all(|r| r["db_user"] == "chm_secret"));
    assert!(!q(SINGLE, &format!("SELECT * FROM `{db}`.schema_migrations")).contains("s3cret-pw"));
    assert!(!out.all().contains("s3cret-pw"));

    // Applying again changes nothing and stays Ready.
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 0);
    assert_eq!(condition(&st, "Ready")["status"], "True");

    // Changing an applied migration stalls the set with the reason.
    std::fs::write(
        &file,
        manifests(&db).replace(
            "ADD COLUMN referrer String",
            "ADD COLUMN referrer FixedString(8)",
        ),
    )
    .unwrap();
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(condition(&st, "Stalled")["status"], "True");
    assert_eq!(condition(&st, "Stalled")["reason"], "ChecksumMismatch");
    assert!(
        condition(&st, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("ClickHouseMigration analytics/add-referrer"),
        "{st}"
    );

    // targetVersion below the applied version rolls back (the set allows it)…
    let text = manifests(&db).replace(
        "  environment: development\n",
        "  environment: development\n  targetVersion: \"1\"\n",
    );
    std::fs::write(&file, &text).unwrap();
    let (out, st) = apply(&file, &["--forbid-rollback"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(condition(&st, "Stalled")["reason"], "RollbackForbidden");
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(st["appliedVersion"], "1");
    assert_eq!(tables(SINGLE, &db), ["page_views", "schema_migrations"]);

    // Dry run puts the plan into status and changes nothing.
    std::fs::write(
        &file,
        manifests(&db).replace(
            "    allowRollback: true\n",
            "    allowRollback: true\n    dryRun: true\n",
        ),
    )
    .unwrap();
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(condition(&st, "Reconciling")["reason"], "DryRun");
    let plan = st["plan"].as_array().unwrap();
    assert_eq!(
        plan.iter()
            .map(|p| p["version"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["2", "3"]
    );
    assert_eq!(tables(SINGLE, &db), ["page_views", "schema_migrations"]);
    drop_db(SINGLE, &db, false);
}

#[test]
fn apply_reports_bad_references_and_documents() {
    require(&[SINGLE]);
    let db = unique_db("applybad");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    std::fs::write(
        &file,
        manifests(&db).replace(
            "name: clickhouse-credentials, key: password",
            "name: missing, key: password",
        ),
    )
    .unwrap();
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(condition(&st, "Stalled")["reason"], "InvalidSpec");
    assert!(
        condition(&st, "Stalled")["message"]
            .as_str()
            .unwrap()
            .contains("Secret analytics/missing not found")
    );

    std::fs::write(
        &file,
        manifests(&db).replace("configMaps: [quickstart-sql]", "configMaps: [nope]"),
    )
    .unwrap();
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 2);
    assert_eq!(condition(&st, "Stalled")["reason"], "InvalidMigrations");

    std::fs::write(
        &file,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
    )
    .unwrap();
    let out = chm(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("document 1: apps/v1/Deployment is not a resource chmigrate applies"),
        "{}",
        out.stderr
    );
    drop_db(SINGLE, &db, false);
}

fn migration(name: &str, version: &str, up: &str, envs: Option<&str>) -> String {
    let envs = envs
        .map(|e| format!("  environments: [{e}]\n"))
        .unwrap_or_default();
    let up: String = up.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "---\napiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\nmetadata:\n  name: {name}\n  namespace: apps\n  labels: {{ chmigrate.io/set: truth }}\nspec:\n  version: \"{version}\"\n  description: {name}\n{envs}  up: |\n{up}"
    )
}

#[test]
fn after_a_failure_the_set_and_status_report_the_same_truthful_numbers() {
    require(&[SINGLE]);
    let db = unique_db("truth");
    let set = format!(
        "apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: truth, namespace: apps }}\nspec:\n  connection:\n    url: {SINGLE}\n    database: {db}\n    credentials: {{ user: default, passwordless: true }}\n  selector:\n    matchLabels: {{ chmigrate.io/set: truth }}\n  environment: development\n"
    );
    let docs = [
        set,
        migration("one", "1", "CREATE TABLE ${database}.one (x UInt8) ENGINE = Memory;", None),
        migration("two", "2", "CREATE TABLE ${database}.two (x UInt8) ENGINE = Memory;", None),
        migration(
            "three",
            "3",
            "CREATE TABLE ${database}.three (x UInt8) ENGINE = Memory;\nCREATE TABLE ${database}.broken (x UInt8) ENGINE = NoSuchEngine;",
            None,
        ),
        migration(
            "four",
            "4",
            "CREATE TABLE ${database}.four (x UInt8) ENGINE = Memory;",
            Some("production"),
        ),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    std::fs::write(&file, &docs).unwrap();
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        condition(&st, "Stalled")["reason"],
        "MigrationFailed",
        "{st}"
    );
    // V1 and V2 are applied; V3 failed on its second statement; V4 runs
    // only in production: neither latest nor pending here.
    assert_eq!(st["appliedVersion"], "2", "{st}");
    assert_eq!(st["latestVersion"], "3", "{st}");
    assert_eq!(st["pendingCount"], 1, "{st}");

    // The command line's status says the same of the same target.
    let migrations = tempfile::tempdir().unwrap();
    write_files(
        migrations.path(),
        &[
            (
                "V1__one.sql",
                "CREATE TABLE ${database}.one (x UInt8) ENGINE = Memory;",
            ),
            (
                "V2__two.sql",
                "CREATE TABLE ${database}.two (x UInt8) ENGINE = Memory;",
            ),
            (
                "V3__three.sql",
                "CREATE TABLE ${database}.three (x UInt8) ENGINE = Memory;\nCREATE TABLE ${database}.broken (x UInt8) ENGINE = NoSuchEngine;",
            ),
            (
                "V4__four.sql",
                "-- Environment: production\nCREATE TABLE ${database}.four (x UInt8) ENGINE = Memory;",
            ),
        ],
    );
    let out = chm(&[
        "--url",
        SINGLE,
        "--database",
        &db,
        "--dir",
        migrations.path().to_str().unwrap(),
        "status",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let s = out.json();
    assert_eq!(s["applied_version"], "2", "{s}");
    assert_eq!(s["latest_version"], "3", "{s}");
    assert_eq!(s["pending"].as_array().map(Vec::len), Some(1), "{s}");
    drop_db(SINGLE, &db, false);
}

#[test]
fn credentials_go_only_to_allowed_urls_and_over_tls_when_required() {
    // A listener of someone who may edit MigrationSets but not read
    // Secrets: the set names it and a Secret of the namespace.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let docs = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{ name: creds, namespace: apps, labels: {{ chmigrate.io/credentials: \"true\" }} }}\nstringData: {{ password: s3cret-pw }}\n---\n\
         apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: steal, namespace: apps }}\nspec:\n  connection:\n    url: {url}\n    database: d\n    credentials:\n      user: default\n      passwordSecretRef: {{ name: creds, key: password }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    std::fs::write(&file, &docs).unwrap();
    let nothing_sent = |what: &str| match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{what}: a connection reached the listener: {other:?}"),
    };
    let (out, st) = apply(&file, &["--allow-url", "https://*.analytics.svc:8443"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(
        condition(&st, "Stalled")["reason"],
        "TargetNotAllowed",
        "{st}"
    );
    nothing_sent("--allow-url");
    let (out, st) = apply(&file, &["--require-tls"]);
    assert_eq!(out.code, 2, "{}", out.all());
    assert_eq!(condition(&st, "Stalled")["reason"], "TLSRequired", "{st}");
    nothing_sent("--require-tls");
    assert!(!out.all().contains("s3cret-pw"));
}

#[test]
fn only_secrets_labelled_for_chmigrate_are_read_and_nothing_is_sent_otherwise() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    // A Secret of the namespace that was never meant for chmigrate (no
    // label), named as the password, as the CA, or as variables.
    for refs in [
        "credentials: { user: default, passwordSecretRef: { name: app-db, key: password } }",
        "credentials: { passwordless: true }\n    tls: { caSecretRef: { name: app-db, key: password } }",
        "credentials: { passwordless: true }\n  variablesFrom: [{ secretRef: { name: app-db } }]",
    ] {
        let docs = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: app-db, namespace: apps }}\nstringData: {{ password: 0ther-team-pw }}\n---\n\
             apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: steal, namespace: apps }}\nspec:\n  connection:\n    url: {url}\n    database: d\n    {refs}\n"
        );
        std::fs::write(&file, &docs).unwrap();
        let (out, st) = apply(&file, &[]);
        assert_eq!(out.code, 2, "{refs}: {}", out.all());
        assert_eq!(
            condition(&st, "Stalled")["reason"],
            "SecretNotAllowed",
            "{refs}: {st}"
        );
        let msg = condition(&st, "Ready")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            msg.contains("apps/app-db") && msg.contains("chmigrate.io/"),
            "{msg}"
        );
        assert!(!out.all().contains("0ther-team-pw"));
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{refs}: a connection reached the listener: {other:?}"),
        }
    }
}

#[test]
fn variables_from_secrets_are_substituted_and_masked_everywhere() {
    require(&[SINGLE]);
    let db = unique_db("apply_varsfrom");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.yaml");
    // The secret value reaches the server (in a string literal, escaped),
    // and a statement that fails quotes it in ClickHouse's error.
    let secret = "s3-k3y'with\\quote";
    let docs = |second: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{ name: s3, namespace: apps, labels: {{ chmigrate.io/variables: \"true\" }} }}\nstringData: {{ key: {secret:?} }}\n---\n\
             apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: vars, namespace: apps }}\nspec:\n  connection: {{ url: {SINGLE}, database: {db}, credentials: {{ passwordless: true }} }}\n  selector: {{ matchLabels: {{ set: vars }} }}\n  variablesFrom: [{{ secretRef: {{ name: s3 }}, prefix: s3_ }}]\n---\n\
             apiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\nmetadata: {{ name: v1, namespace: apps, labels: {{ set: vars }} }}\nspec:\n  version: \"1\"\n  up: \"CREATE TABLE ${{database}}.creds (k String DEFAULT '${{s3_key}}') ENGINE = MergeTree ORDER BY tuple()\"\n  down: \"DROP TABLE ${{database}}.creds\"\n{second}"
        )
    };
    std::fs::write(&file, docs("")).unwrap();
    let (out, st) = apply(&file, &[]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(condition(&st, "Ready")["status"], "True", "{st}");
    // Substituted for real: the default is the secret, escaped correctly.
    let default = q(
        SINGLE,
        &format!(
            "SELECT default_expression FROM system.columns WHERE database = '{db}' AND table = 'creds'"
        ),
    );
    assert!(default.contains("s3-k3y"), "{default}");
    // A failing statement whose error quotes the value: masked in status,
    // output and ledger.
    let failing = "---\napiVersion: chmigrate.io/v1alpha1\nkind: ClickHouseMigration\nmetadata: { name: v2, namespace: apps, labels: { set: vars } }\nspec:\n  version: \"2\"\n  up: \"SELECT toUInt8('${s3_key}')\"\n";
    std::fs::write(&file, docs(failing)).unwrap();
    let (out, st) = apply(&file, &[]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert_eq!(
        condition(&st, "Stalled")["reason"],
        "MigrationFailed",
        "{st}"
    );
    for text in [
        out.all(),
        st.to_string(),
        q(
            SINGLE,
            &format!("SELECT * FROM `{db}`.schema_migrations FORMAT JSONEachRow"),
        ),
    ] {
        assert!(!text.contains("s3-k3y"), "a secret value leaked: {text}");
    }
    let msg = condition(&st, "Ready")["message"].to_string();
    assert!(
        msg.contains("***"),
        "the error quoted the value, masked: {msg}"
    );
    drop_db(SINGLE, &db, false);
}
