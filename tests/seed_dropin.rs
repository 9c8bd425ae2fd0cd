//! A user of the seed framework (`000_5ab2dc0136c4ee1b.txt` in the shared
//! seeds: `python scripts/migrate.py …`, `configs/migration-config.yml`) or
//! of Elixir's Pillar (`priv/pillar_migrations/*.exs`, the
//! `pillar_migrations` table) brings their project and habits unchanged.
//! The seed's documented commands run verbatim, with only the program name
//! adapted, in a project laid out as the seed's README shows, against the
//! real single node (127.0.0.1:8123). Every test uses its own database.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

/// The seed README's `migration-config.yml`, verbatim but for the names a
/// test server has: the databases (one per test) and the users (`default`,
/// the only user the test server has).
fn seed_config(db: &str) -> String {
    let text = r#"# Database Configuration
database:
  host: localhost
  port: 9000
  database: default
  user: default
  password: ""
  secure: false
  verify: false

# Migration Settings
migration:
  table_name: schema_migrations
  version_format: "V{version}__{description}"
  rollback_enabled: true
  parallel_execution: false
  dry_run: false
  
# Environment Settings
environments:
  development:
    database: dev_db
    user: dev_user
  staging:
    database: staging_db
    user: staging_user
  production:
    database: prod_db
    user: prod_user
    rollback_enabled: false  # Disable rollback in production

# Validation Settings
validation:
  check_syntax: true
  check_dependencies: true
  check_rollback: true
  max_migration_size: 1048576  # 1MB

# Logging
logging:
  level: INFO
  file: migration.log
  format: "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
"#;
    text.replace("database: default", &format!("database: {db}"))
        .replace("dev_db", db)
        .replace("staging_db", db)
        .replace("prod_db", db)
        .replace("dev_user", "default")
        .replace("staging_user", "default")
        .replace("prod_user", "default")
}

/// The seed README's V1 (its quick start's step 3), verbatim.
const SEED_V1: &str = "-- migrations/V1__create_users_table.sql
-- Migration: Create users table
-- Version: 1
-- Description: Initial users table with basic fields

-- Forward Migration
CREATE TABLE IF NOT EXISTS users (
    id UInt32,
    username String,
    email String,
    created_at DateTime DEFAULT now(),
    updated_at DateTime DEFAULT now()
) ENGINE = MergeTree()
ORDER BY id
PARTITION BY toYYYYMM(created_at);

-- Rollback Migration
-- ROLLBACK: DROP TABLE IF EXISTS users;
";

/// The seed README's "advanced format" example: TTL and `CREATE INDEX`,
/// which ClickHouse 18.16 does not have.
const SEED_EVENTS: &str = "-- Migration: Create complex table with indexes
-- Version: 2
-- Description: Create events table with partitioning and indexing
-- Author: Data Team
-- Created: 2024-01-15
-- Dependencies: 1
-- Environment: all
-- Rollback: true

-- Forward Migration
CREATE TABLE IF NOT EXISTS events (
    event_id UUID,
    user_id UInt32,
    event_type String,
    event_data String,
    timestamp DateTime,
    created_at DateTime DEFAULT now()
) ENGINE = MergeTree()
ORDER BY (user_id, timestamp)
PARTITION BY toYYYYMM(timestamp)
TTL created_at + INTERVAL 1 YEAR;

-- Create indexes
CREATE INDEX idx_events_type ON events (event_type) TYPE bloom_filter GRANULARITY 1;
CREATE INDEX idx_events_timestamp ON events (timestamp) TYPE minmax GRANULARITY 1;

-- Rollback Migration
-- ROLLBACK: DROP TABLE IF EXISTS events;
";

/// A project laid out as the seed's README shows: `configs/`,
/// `migrations/`, commands run from its root.
struct Project {
    dir: tempfile::TempDir,
    db: String,
}

impl Project {
    fn new(prefix: &str) -> Project {
        let db = unique_db(prefix);
        let dir = tempfile::tempdir().expect("temp dir");
        write_files(
            dir.path(),
            &[("configs/migration-config.yml", &seed_config(&db))],
        );
        Project { dir, db }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// `python scripts/migrate.py ARGS` becomes `chmigrate ARGS`.
    fn run(&self, line: &str) -> Out {
        let args: Vec<&str> = line.split_whitespace().collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chmigrate"));
        cmd.current_dir(self.dir.path()).args(&args);
        for (k, _) in std::env::vars() {
            if k.starts_with("CHMIGRATE_") {
                cmd.env_remove(k);
            }
        }
        let o = cmd.output().expect("chmigrate runs");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn ok(&self, line: &str) -> Out {
        let out = self.run(line);
        assert_eq!(out.code, 0, "`{line}`:\n{}", out.all());
        out
    }
}

fn events(db: &str, version: &str, event: &str) -> usize {
    events_of(&ledger(SINGLE, db), version, event)
}

#[test]
fn the_seed_readme_commands_verbatim() {
    require(&[SINGLE]);
    let p = Project::new("seed");
    let db = p.db.clone();

    // Installation and first migration.
    let out = p.ok("init");
    assert!(
        out.stdout.contains("configs/migration-config.yml"),
        "{}",
        out.stdout
    );
    assert!(
        !p.path("chmigrate.yaml").exists(),
        "init keeps the seed's configuration"
    );
    let out = p.ok("create --name create_users_table");
    // "This creates: migrations/V1__create_users_table.sql"
    assert!(p.path("migrations/V1__create_users_table.sql").is_file());
    assert!(
        out.stdout.contains("migrations/V1__create_users_table.sql"),
        "{}",
        out.stdout
    );
    // The configuration file is read as it is, saying what it ignores.
    assert!(
        out.stderr.contains("configs/migration-config.yml: database.port: 9000 is ClickHouse's native TCP port; chmigrate speaks HTTP (port 8123, or 8443 with secure: true), so it connects to port 8123"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("logging.format: a Python logging format string has no meaning in chmigrate"),
        "{}",
        out.stderr
    );
    std::fs::write(p.path("migrations/V1__create_users_table.sql"), SEED_V1).unwrap();
    let out = p.ok("create --name add_user_profile");
    assert!(
        out.stdout.contains("V2__add_user_profile.sql"),
        "{}",
        out.stdout
    );
    std::fs::write(
        p.path("migrations/V2__add_user_profile.sql"),
        "-- Migration: Add user profile\n-- Version: 2\n-- Description: Profile text on users\n-- Author: Data Team\n-- Created: 2024-01-16\n-- Dependencies: 1\n\nALTER TABLE users ADD COLUMN profile String DEFAULT '';\n\n-- ROLLBACK: ALTER TABLE users DROP COLUMN profile;\n",
    )
    .unwrap();
    // `create --template table --name create_products`: the table template.
    p.ok("create --template table --name create_products");
    assert!(p.path("migrations/V3__create_products.sql").is_file());
    // A file chmigrate does not read is never silent.
    std::fs::write(p.path("migrations/NOTES.md"), "notes").unwrap();

    // Validate: the seed's check_syntax, check_rollback, max size are on.
    let out = p.ok("validate");
    assert!(
        out.all()
            .contains("migrations/NOTES.md: warning: not a migration file chmigrate reads"),
        "{}",
        out.all()
    );

    // Before the first migrate the database does not exist: the
    // connection check says so and creates nothing.
    let out = p.run("test-connection");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "FAIL database           {db} does not exist on the server"
        )),
        "{}",
        out.stdout
    );
    let exists = format!("SELECT count() FROM system.databases WHERE name = '{db}'");
    assert_eq!(count(SINGLE, &exists), 0);

    // Dry run (preview without execution): nothing is created.
    let out = p.ok("migrate --dry-run");
    assert!(
        out.stdout.contains("CREATE TABLE IF NOT EXISTS users"),
        "{}",
        out.stdout
    );
    assert!(user_tables(SINGLE, &db).is_empty());
    assert_eq!(count(SINGLE, &exists), 0, "a dry run creates nothing");

    // Run specific migration, then all pending ones.
    p.ok("migrate --version 1");
    assert_eq!(user_tables(SINGLE, &db), ["users"]);
    let out = p.ok("migrate");
    assert!(out.stdout.contains("applied V2, V3"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("migrations/NOTES.md: not a migration file chmigrate reads"),
        "{}",
        out.stderr
    );
    assert_eq!(user_tables(SINGLE, &db), ["create_products", "users"]);
    assert_eq!(
        count(
            SINGLE,
            &format!(
                "SELECT count() FROM system.columns WHERE database = '{db}' AND table = 'users' AND name = 'profile'"
            )
        ),
        1
    );
    for v in ["1", "2", "3"] {
        assert_eq!(events(&db, v, "completed"), 1, "V{v}");
    }

    // Check status: the header's audit fields are shown.
    let out = p.ok("status");
    assert!(out.stdout.contains("Applied:   V3"), "{}", out.stdout);
    assert!(
        out.stdout.contains("migration: Create users table"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("author: Data Team   created: 2024-01-16"),
        "{}",
        out.stdout
    );
    let out = p.ok("status --show-rollback");
    assert!(out.stdout.contains("rollback:"), "{}", out.stdout);

    // Connection issues: test the connection.
    let out = p.ok("test-connection");
    for line in [
        "ok   server             http://localhost:8123 answers",
        "ok   server version     ClickHouse 18.16",
        "ok   credentials        user default accepted",
        &format!("ok   database           {db} exists"),
    ] {
        assert!(out.stdout.contains(line), "{line}:\n{}", out.stdout);
    }

    // Test migration without execution (on the target), by file name.
    let before = ledger(SINGLE, &db).len();
    let out = p.ok("test --migration V1__create_users_table.sql");
    assert!(out.all().contains("V1"), "{}", out.all());
    let out = p.ok("test --rollback --migration V1__create_users_table.sql");
    assert!(out.all().contains("V1"), "{}", out.all());
    assert_eq!(
        ledger(SINGLE, &db).len(),
        before,
        "test left the target alone"
    );

    // Monitoring: history, the log file, performance.
    let hist = p.ok("history --format json").json();
    let started: Vec<&Value> = hist["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "started" && e["version"] == "1")
        .collect();
    let details: Value = serde_json::from_str(started[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["migration"], "Create users table");
    let text = p.ok("history").stdout;
    assert!(
        text.contains("migration \"Add user profile\"  by Data Team  created 2024-01-16"),
        "{text}"
    );
    let log = std::fs::read_to_string(p.path("configs/migration.log")).unwrap_or_default();
    assert!(
        log.contains("INFO"),
        "logging.level INFO, logging.file: {log}"
    );
    let out = p.ok("profile --migration V1__create_users_table.sql");
    assert!(
        out.stdout.contains("CREATE TABLE IF NOT EXISTS users"),
        "{}",
        out.stdout
    );
    let out = p.ok("report --format html");
    assert!(
        out.stdout.contains("<html") && out.stdout.contains("Data Team"),
        "report"
    );
    p.ok("report --performance");

    // Conflicts, cleaning, export and import.
    p.ok("validate --check-conflicts");
    let out = p.ok("clean --older-than 30");
    assert!(out.stdout.contains("removed 0 of"), "{}", out.stdout);
    p.ok("export --file migration-state.json");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(p.path("migration-state.json")).unwrap())
            .unwrap();
    let exported = state["entries"].as_array().unwrap();
    assert!(exported.iter().any(|e| e["event"] == "lock_taken"));
    let out = p.run("import --file migration-state.json");
    assert_eq!(
        out.code,
        2,
        "import into a ledger with history: {}",
        out.all()
    );
    assert!(
        out.stderr.contains("import only into an empty ledger"),
        "{}",
        out.stderr
    );

    // Production: rollback is disabled (rollback_enabled: false).
    let out = p.run("rollback --env production");
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr
            .contains("rollback is not allowed in environment \"production\""),
        "{}",
        out.stderr
    );
    assert_eq!(user_tables(SINGLE, &db), ["create_products", "users"]);

    // Rollback to a specific version, then the last migration.
    let out = p.ok("rollback --version 2");
    assert!(out.stdout.contains("rolled back V3"), "{}", out.stdout);
    assert_eq!(user_tables(SINGLE, &db), ["users"]);
    let out = p.ok("rollback");
    assert!(out.stdout.contains("rolled back V2"), "{}", out.stdout);
    assert_eq!(
        count(
            SINGLE,
            &format!(
                "SELECT count() FROM system.columns WHERE database = '{db}' AND table = 'users' AND name = 'profile'"
            )
        ),
        0
    );
    // Manual rollback: a person dropped the table by hand.
    q(SINGLE, &format!("DROP TABLE `{db}`.users"));
    let out = p.ok("rollback --manual --version 1");
    assert!(out.stdout.contains("V1"), "{}", out.stdout);
    assert_eq!(events(&db, "1", "manual_rollback"), 1);
    // Debug mode and verbose output.
    let out = p.ok("migrate --debug");
    assert!(out.stdout.contains("applied V1, V2, V3"), "{}", out.stdout);
    assert_eq!(user_tables(SINGLE, &db), ["create_products", "users"]);
    let out = p.ok("migrate --verbose");
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    drop_db(SINGLE, &db, false);
}

#[test]
fn seed_typos_and_the_advanced_example_on_18_16() {
    require(&[SINGLE]);
    let p = Project::new("seedsyn");
    write_files(
        p.dir.path(),
        &[
            ("migrations/V1__create_users_table.sql", SEED_V1),
            ("migrations/V2__create_events.sql", SEED_EVENTS),
        ],
    );
    // The seed's own example parses as far as sqlparser goes: warnings at
    // most, never an error.
    let out = p.ok("validate --check-syntax");
    assert!(
        out.all().contains("2 migration(s), 0 error(s)"),
        "{}",
        out.all()
    );
    assert!(
        out.all().contains("migrations/V2__create_events.sql:24: warning: the SQL parser (sqlparser, ClickHouse dialect) cannot read this statement"),
        "{}",
        out.all()
    );
    // `test` sends CREATE INDEX to the server (it is a table's statement,
    // not a server-wide one); 18.16 refuses the TTL clause first, and the
    // failure names the file and line.
    let out = p.run("test --migration V2__create_events.sql");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(!out.all().contains("server-wide"), "{}", out.all());
    assert!(
        out.all().contains("V2__create_events.sql:11"),
        "{}",
        out.all()
    );
    // A clear typo is an error before anything runs.
    std::fs::write(
        p.path("migrations/V2__create_events.sql"),
        "CRATE TABLE events (id UInt32) ENGINE = MergeTree() ORDER BY id;\n",
    )
    .unwrap();
    let out = p.run("validate");
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains(
            "migrations/V2__create_events.sql:1: `CRATE` is not a ClickHouse keyword here: did you mean CREATE?"
        ),
        "{}",
        out.all()
    );
    let out = p.run("test --migration 2");
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.all().contains("is not a statement ClickHouse knows"),
        "{}",
        out.all()
    );
    // Unknown commands point to the right one.
    let out = p.run("test-conection");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("test-connection"), "{}", out.stderr);
    let out = p.run("creat --name x");
    assert!(out.stderr.contains("'create'"), "{}", out.stderr);
    drop_db(SINGLE, &p.db, false);
}

/// Pillar's guide's three migrations, verbatim.
const PILLAR_SINGLE: &str = r#"defmodule Pillar.Migrations.CreateUsersTable do
  def up do
    """
    CREATE TABLE IF NOT EXISTS users (
      id UInt64,
      name String,
      email String,
      created_at DateTime
    ) ENGINE = MergeTree()
    ORDER BY id
    """
  end

  def down do
    "DROP TABLE IF EXISTS users"
  end
end
"#;

const PILLAR_MULTI: &str = r#"defmodule Pillar.Migrations.CreateAnalyticsTables do
  def up do
    [
      """
      CREATE TABLE IF NOT EXISTS page_views (
        user_id UInt64,
        page_url String,
        timestamp DateTime
      ) ENGINE = MergeTree()
      ORDER BY (timestamp, user_id)
      """,
      
      """
      CREATE TABLE IF NOT EXISTS user_sessions (
        session_id String,
        user_id UInt64,
        start_time DateTime,
        duration UInt32
      ) ENGINE = MergeTree()
      ORDER BY (start_time, session_id)
      """
    ]
  end

  def down do
    [
      "DROP TABLE IF EXISTS user_sessions",
      "DROP TABLE IF EXISTS page_views"
    ]
  end
end
"#;

const PILLAR_DYNAMIC: &str = r#"defmodule Pillar.Migrations.CreateShardedTables do
  def up do
    Enum.map(0..4, fn shard ->
      """
      CREATE TABLE IF NOT EXISTS events_shard_#{shard} (
        id UUID,
        user_id UInt64,
        event_type String,
        created_at DateTime
      ) ENGINE = MergeTree()
      ORDER BY (created_at, id)
      """
    end)
  end

  def down do
    Enum.map(0..4, fn shard ->
      "DROP TABLE IF EXISTS events_shard_#{shard}"
    end)
  end
end
"#;

fn pillar_folder() -> tempfile::TempDir {
    folder(&[
        (
            "priv/pillar_migrations/20250528120000_create_users_table.exs",
            PILLAR_SINGLE,
        ),
        (
            "priv/pillar_migrations/20250528130000_create_analytics_tables.exs",
            PILLAR_MULTI,
        ),
        (
            "priv/pillar_migrations/20250528140000_create_sharded_tables.exs",
            PILLAR_DYNAMIC,
        ),
    ])
}

fn pillar_args<'a>(db: &'a str, dir: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--url", SINGLE, "--database", db, "--dir", dir];
    v.extend_from_slice(rest);
    v
}

const SHARDS: [&str; 5] = [
    "events_shard_0",
    "events_shard_1",
    "events_shard_2",
    "events_shard_3",
    "events_shard_4",
];

#[test]
fn pillar_migrations_as_they_are() {
    require(&[SINGLE]);
    let tmp = pillar_folder();
    let dir = tmp.path().join("priv/pillar_migrations");
    let dir = dir.to_str().unwrap();
    let db = unique_db("pillar");
    let out = chm(&pillar_args(&db, dir, &["validate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let out = chm(&pillar_args(&db, dir, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("applied V20250528120000, V20250528130000, V20250528140000 (8 statement(s))"),
        "{}",
        out.stdout
    );
    let mut want = vec!["page_views", "user_sessions", "users"];
    want.extend(SHARDS);
    want.sort();
    assert_eq!(user_tables(SINGLE, &db), want);
    let rows = ledger(SINGLE, &db);
    for v in ["20250528120000", "20250528130000", "20250528140000"] {
        assert_eq!(events_of(&rows, v, "completed"), 1, "V{v}");
    }
    assert_eq!(events_of(&rows, "20250528140000", "statement_done"), 5);
    // `mix clickhouse.rollback` = `chmigrate rollback`: the dynamic down.
    let out = chm(&pillar_args(&db, dir, &["rollback"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        user_tables(SINGLE, &db),
        ["page_views", "user_sessions", "users"]
    );
    // `--steps=2` = `--steps 2`.
    let out = chm(&pillar_args(&db, dir, &["rollback", "--steps", "2"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(user_tables(SINGLE, &db).is_empty());

    // Forms outside the guide are refused with file:line and what to write.
    write_files(
        tmp.path(),
        &[
            (
                "priv/pillar_migrations/20250601000000_computed.exs",
                "defmodule M do\n  def up do\n    name = \"t\"\n    \"CREATE TABLE #{name} (x UInt8) ENGINE = Memory\"\n  end\nend\n",
            ),
            ("priv/pillar_migrations/README.md", "how we migrate"),
        ],
    );
    let out = chm(&pillar_args(&db, dir, &["validate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    let all = out.all();
    assert!(
        all.contains("20250601000000_computed.exs:3: `name` cannot be read without Elixir; `def up`/`def down` must return a string"),
        "{all}"
    );
    assert!(
        all.contains("README.md: warning: not a migration file chmigrate reads"),
        "{all}"
    );
    let out = chm(&pillar_args(&db, dir, &["migrate"]));
    assert_eq!(out.code, 2, "nothing runs: {}", out.all());
    assert!(user_tables(SINGLE, &db).is_empty());
    drop_db(SINGLE, &db, false);
}

#[test]
fn an_existing_pillar_migrations_table_is_adopted() {
    require(&[SINGLE]);
    let tmp = pillar_folder();
    let dir = tmp.path().join("priv/pillar_migrations");
    let dir = dir.to_str().unwrap();
    let db = unique_db("adopt");
    // What Pillar left: two migrations applied and its table listing them.
    q(SINGLE, &format!("CREATE DATABASE `{db}`"));
    for sql in [
        "CREATE TABLE users (id UInt64, name String, email String, created_at DateTime) ENGINE = MergeTree() ORDER BY id",
        "CREATE TABLE page_views (user_id UInt64, page_url String, timestamp DateTime) ENGINE = MergeTree() ORDER BY (timestamp, user_id)",
        "CREATE TABLE user_sessions (session_id String, user_id UInt64, start_time DateTime, duration UInt32) ENGINE = MergeTree() ORDER BY (start_time, session_id)",
        "CREATE TABLE pillar_migrations (migration String, inserted_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY inserted_at",
        "INSERT INTO pillar_migrations (migration) VALUES ('20250528120000_create_users_table.exs'), ('20250528130000_create_analytics_tables.exs')",
    ] {
        q(
            SINGLE,
            &sql.replace("CREATE TABLE ", &format!("CREATE TABLE `{db}`."))
                .replace("INSERT INTO ", &format!("INSERT INTO `{db}`.")),
        );
    }
    // Running Pillar's migrations before adopting its record is refused:
    // they would run again.
    let out = chm(&pillar_args(&db, dir, &["migrate"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(&format!("{db}.pillar_migrations exists and chmigrate's ledger records none of the Pillar migrations: run `chmigrate baseline --from-pillar` first")),
        "{}",
        out.stderr
    );
    assert!(!user_tables(SINGLE, &db).contains(&"events_shard_0".to_string()));
    let out = chm(&pillar_args(&db, dir, &["baseline", "--from-pillar"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "adopted 2 migration(s) from {db}.pillar_migrations as applied: V20250528120000, V20250528130000"
        )),
        "{}",
        out.stdout
    );
    let rows = ledger(SINGLE, &db);
    let adopted: Vec<&Value> = rows.iter().filter(|r| r["event"] == "baselined").collect();
    assert_eq!(adopted.len(), 2);
    for r in &adopted {
        let d: Value = serde_json::from_str(r["details"].as_str().unwrap()).unwrap();
        assert_eq!(d["adopted_from"], format!("{db}.pillar_migrations"));
        assert_eq!(
            r["checksum"].as_str().unwrap().len(),
            64,
            "the file's checksum"
        );
    }
    // Adopting again records nothing new.
    let out = chm(&pillar_args(&db, dir, &["baseline", "--from-pillar"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("nothing to adopt"), "{}", out.stdout);
    assert_eq!(ledger(SINGLE, &db).len(), rows.len());
    // Only the migration Pillar had not applied runs.
    let out = chm(&pillar_args(&db, dir, &["migrate"]));
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("applied V20250528140000"),
        "{}",
        out.stdout
    );
    assert!(user_tables(SINGLE, &db).contains(&"events_shard_4".to_string()));
    // An adopted migration rolls back like any other (its down from the file).
    let out = chm(&pillar_args(
        &db,
        dir,
        &["rollback", "--to", "20250528120000"],
    ));
    assert_eq!(out.code, 0, "{}", out.all());
    let left = user_tables(SINGLE, &db);
    assert!(
        !left.contains(&"page_views".to_string()) && left.contains(&"users".to_string()),
        "{left:?}"
    );
    // A table listing a migration no file defines: refused, nothing written.
    let db2 = unique_db("adopt2");
    q(SINGLE, &format!("CREATE DATABASE `{db2}`"));
    q(
        SINGLE,
        &format!(
            "CREATE TABLE `{db2}`.pillar_migrations (version UInt64, inserted_at DateTime DEFAULT now()) ENGINE = MergeTree() ORDER BY version"
        ),
    );
    q(
        SINGLE,
        &format!(
            "INSERT INTO `{db2}`.pillar_migrations (version) VALUES (20250528120000), (20240101000000)"
        ),
    );
    let out = chm(&pillar_args(&db2, dir, &["baseline", "--from-pillar"]));
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stderr.contains(&format!("{db2}.pillar_migrations lists 20240101000000 as applied, but no migration file defines it")),
        "{}",
        out.stderr
    );
    assert_eq!(
        count(
            SINGLE,
            &format!(
                "SELECT count() FROM system.tables WHERE database = '{db2}' AND name = 'schema_migrations'"
            )
        ),
        0,
        "nothing was recorded"
    );
    drop_db(SINGLE, &db, false);
    drop_db(SINGLE, &db2, false);
}

#[test]
fn test_connection_checks_credentials_and_every_cluster_host() {
    require(&[SINGLE, NODES[0]]);
    let out = chm(&[
        "--url",
        NODES[0],
        "--cluster",
        CLUSTER,
        "--database",
        "default",
        "test-connection",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(
            "ok   cluster hosts      4 host(s) of chm_cluster answer: 127.0.0.11:9001, 127.0.0.12:9002, 127.0.0.13:9003, 127.0.0.14:9004"
        ),
        "{}",
        out.stdout
    );
    let out = chm_env(
        &["--url", SINGLE, "test-connection"],
        &[("CHMIGRATE_PASSWORD", "not-the-password")],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("FAIL connection") && out.stdout.contains("authentication failed"),
        "{}",
        out.stdout
    );
    assert!(!out.all().contains("not-the-password"), "{}", out.all());
}

#[test]
fn seed_conflicts_are_found_and_resolved_as_its_readme_says() {
    require(&[SINGLE]);
    let p = Project::new("seedconf");
    write_files(
        p.dir.path(),
        &[
            ("migrations/V1__create_users_table.sql", SEED_V1),
            (
                "migrations/V2__add_email_index.sql",
                "ALTER TABLE users ADD COLUMN email_domain String DEFAULT '';\n",
            ),
        ],
    );
    p.ok("migrate");
    // Another branch merged its own V2 (sorting before the applied one).
    write_files(
        p.dir.path(),
        &[(
            "migrations/V2__add_conflict.sql",
            "ALTER TABLE users ADD COLUMN nickname String DEFAULT '';\n",
        )],
    );
    let out = p.run("validate --check-conflicts");
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.contains(
            "migrations/V2__add_conflict.sql:1: version 2 is also defined by migrations/V2__add_email_index.sql, which is the one the target applied"
        ),
        "{}",
        out.all()
    );
    let out = p.ok("resolve --migration migrations/V2__add_conflict.sql");
    assert!(
        out.stdout.contains("V3__add_conflict.sql"),
        "{}",
        out.stdout
    );
    p.ok("validate --check-conflicts");
    let out = p.ok("migrate");
    assert!(out.stdout.contains("applied V3"), "{}", out.stdout);
    assert_eq!(
        count(
            SINGLE,
            &format!(
                "SELECT count() FROM system.columns WHERE database = '{}' AND table = 'users' AND name IN ('email_domain', 'nickname')",
                p.db
            )
        ),
        2
    );
    drop_db(SINGLE, &p.db, false);
}
