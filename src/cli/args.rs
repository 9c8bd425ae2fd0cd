//! The command line's arguments: every command, flag and `CHMIGRATE_*`
//! variable (clap derive). Dispatch is in `cli::run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::output::Format;

/// Versioned ClickHouse schema migrations, applied safely across every
/// replica of a cluster.
#[derive(Debug, Parser)]
#[command(name = "chmigrate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes. Each flag can also be set with the
/// `CHMIGRATE_*` variable shown; both override `chmigrate.yaml`.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file [default: ./chmigrate.yaml when present]
    #[arg(long, global = true, env = "CHMIGRATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Environment whose settings and migrations apply [default: development]
    #[arg(
        long = "env",
        global = true,
        env = "CHMIGRATE_ENV",
        value_name = "NAME"
    )]
    pub environment: Option<String>,
    /// Folder of migration files [default: migrations]
    #[arg(long, global = true, env = "CHMIGRATE_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// ClickHouse HTTP(S) URL of the entry node [default: http://127.0.0.1:8123]
    #[arg(long, global = true, env = "CHMIGRATE_URL")]
    pub url: Option<String>,
    /// ClickHouse user [default: default]
    #[arg(long, global = true, env = "CHMIGRATE_USER")]
    pub user: Option<String>,
    /// ClickHouse password (prefer --password-file or CHMIGRATE_PASSWORD; never printed)
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// File holding the ClickHouse password
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Target database [default: default]
    #[arg(long, global = true, env = "CHMIGRATE_DATABASE")]
    pub database: Option<String>,
    /// Cluster for ON CLUSTER DDL (none: single node)
    #[arg(long, global = true, env = "CHMIGRATE_CLUSTER")]
    pub cluster: Option<String>,
    /// Ledger table name [default: schema_migrations]
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_HISTORY_TABLE",
        value_name = "TABLE"
    )]
    pub history_table: Option<String>,
    /// How ON CLUSTER is added to DDL [default: auto]
    #[arg(long, global = true, env = "CHMIGRATE_ON_CLUSTER", value_enum)]
    pub on_cluster: Option<OnClusterArg>,
    /// CA certificate(s) (PEM) to trust for https:// URLs
    #[arg(long, global = true, env = "CHMIGRATE_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (unsafe; for testing)
    #[arg(long, global = true, env = "CHMIGRATE_TLS_INSECURE")]
    pub tls_insecure: bool,
    /// Seconds to wait for every host of an ON CLUSTER statement [default: 180]
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_DDL_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub ddl_timeout: Option<u64>,
    /// Seconds to wait for a mutation to finish [default: 600]
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_MUTATION_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub mutation_timeout: Option<u64>,
    /// Largest migration file in bytes [default: 1048576]
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_MAX_FILE_SIZE",
        value_name = "BYTES"
    )]
    pub max_file_size: Option<u64>,
    /// Backups before statements that drop or rewrite data [default: none]
    #[arg(long, global = true, env = "CHMIGRATE_BACKUP", value_enum)]
    pub backup: Option<BackupArg>,
    /// How migrations without their own strategy are rolled back [default: script]
    #[arg(long, global = true, env = "CHMIGRATE_ROLLBACK_STRATEGY", value_parser = parse_strategy, value_name = "script|freeze-and-drop|forward-only")]
    pub rollback_strategy: Option<chmigrate::model::strategy::RollbackStrategy>,
    /// Migrations run at once within the target: independent ones (no
    /// dependency between them, no table in common), in waves [default: 1]
    #[arg(long, global = true, env = "CHMIGRATE_PARALLEL", value_name = "N")]
    pub parallel: Option<usize>,
    /// Seconds to wait for a lock held by a live runner instead of exiting
    /// 4 [default: 0]
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_LOCK_WAIT",
        value_name = "SECONDS"
    )]
    pub lock_wait: Option<u64>,
    /// Seconds a lock stays held without its holder renewing it; an expired
    /// lock is taken over, on the record [default: 30]
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_LOCK_LEASE",
        value_name = "SECONDS"
    )]
    pub lock_lease: Option<u64>,
    /// A ${NAME} variable, repeatable
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// A ${NAME} variable whose value is an identifier (quoted in SQL where
    /// it needs it, like ${database}), repeatable
    #[arg(long = "ident-var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub ident_vars: Vec<(String, String)>,
    /// Output format (html and markdown: `report` only)
    #[arg(long, global = true, env = "CHMIGRATE_FORMAT", value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// More log output (-v info, -vv debug, -vvv trace), above --log-level
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Debug logging, with the source line of each log call (= -vv)
    #[arg(long, global = true, env = "CHMIGRATE_DEBUG")]
    pub debug: bool,
    /// Log level: error, warn, info, debug or trace [default: warn; or
    /// logging.level in chmigrate.yaml]
    #[arg(long, global = true, env = "CHMIGRATE_LOG_LEVEL", value_parser = parse_log_level, value_name = "LEVEL")]
    pub log_level: Option<chmigrate::config::LogLevel>,
    /// Log line format, on stderr and in --log-file [default: text; or logging.format]
    #[arg(long, global = true, env = "CHMIGRATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Also append log lines to FILE [default: logging.file]
    #[arg(long, global = true, env = "CHMIGRATE_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Run the command on several targets at once: environments or groups
    /// of chmigrate.yaml, comma-separated (migrate, plan, status, validate
    /// --online, history)
    #[arg(
        long,
        global = true,
        env = "CHMIGRATE_TARGETS",
        value_delimiter = ',',
        value_name = "ENV|GROUP,…",
        conflicts_with = "environment"
    )]
    pub targets: Vec<String>,
    /// With --targets: how many targets run at once [default: all]
    #[arg(long, global = true, value_name = "N", requires = "targets")]
    pub jobs: Option<usize>,
}

fn parse_log_level(s: &str) -> Result<chmigrate::config::LogLevel, String> {
    chmigrate::config::LogLevel::parse(s)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnClusterArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackupArg {
    None,
    Freeze,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TemplateArg {
    Table,
    Alter,
    Index,
    Data,
    View,
}

fn parse_strategy(s: &str) -> Result<chmigrate::model::strategy::RollbackStrategy, String> {
    chmigrate::model::strategy::RollbackStrategy::parse(s)
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub enum BackupsAction {
    /// Every backup the ledger records (name, migration, table, time, hosts)
    List,
    /// Remove backups older than --older-than on every host that has them
    /// (ALTER TABLE … UNFREEZE, ClickHouse 22+); each removal is recorded
    Prune {
        /// Age, e.g. 7d, 12h, 30m
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Record the backups as removed without touching the hosts (after
        /// deleting shadow/<name>/ by hand on servers without UNFREEZE)
        #[arg(long)]
        forget: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project: a migrations folder and a commented chmigrate.yaml
    /// with development, staging and production environments
    Init {
        /// Database the migrations are for
        #[arg(long, default_value = "default")]
        database: String,
        /// Overwrite an existing chmigrate.yaml
        #[arg(long)]
        force: bool,
    },
    /// Write the next migration file from a built-in template
    New {
        /// What the migration does, e.g. "create events" (becomes create_events)
        name: String,
        /// Template to start from
        #[arg(long, value_enum, default_value_t = TemplateArg::Table)]
        template: TemplateArg,
        /// Use a UTC timestamp (YYYYMMDDHHMMSS) as the version
        #[arg(long)]
        timestamp: bool,
    },
    /// The seed framework's `create --name NAME [--template T]`: the same as
    /// `new NAME`
    Create {
        /// What the migration does, e.g. create_users_table
        #[arg(long)]
        name: String,
        /// Template to start from
        #[arg(long, value_enum, default_value_t = TemplateArg::Table)]
        template: TemplateArg,
        /// Use a UTC timestamp (YYYYMMDDHHMMSS) as the version
        #[arg(long)]
        timestamp: bool,
    },
    /// Check the connection: server reachable, version, credentials, the
    /// database exists, every cluster host answers; creates nothing
    TestConnection,
    /// Run every offline check and print each problem as file:line: message
    Validate {
        /// Also compare the sources with the target's ledger (checksums, missing files)
        #[arg(long)]
        online: bool,
        /// Fail on every migration with no rollback, written or derivable
        /// (also `migrations.require_rollback` in chmigrate.yaml)
        #[arg(long)]
        require_rollback: bool,
        /// Also look for versions renumbered across branches and pending
        /// files below the applied version (reads the target's ledger)
        #[arg(long)]
        check_conflicts: bool,
        /// Also parse every statement with a SQL parser that knows
        /// ClickHouse's dialect (also `migrations.check_syntax`): a clear
        /// typo of a statement's first keyword is an error, a statement the
        /// parser cannot read a warning
        #[arg(long)]
        check_syntax: bool,
    },
    /// Renumber a migration file whose version collides with another file's
    /// (two branches each added "the next" one) to the next free version,
    /// with its down half and its `-- Version:` header
    Resolve {
        /// The colliding file to renumber (the one not applied anywhere yet)
        #[arg(long = "migration", value_name = "FILE")]
        migration: PathBuf,
    },
    /// Print what would run, statement by statement, after variable
    /// substitution and ON CLUSTER rewriting (= migrate --dry-run)
    Plan {
        /// Plan against an empty target without connecting
        #[arg(long)]
        offline: bool,
        /// Stop at this version (default: latest)
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// Apply pending migrations (up to --to, or just --version)
    #[command(disable_version_flag = true)]
    Migrate {
        /// Stop at this version (default: latest)
        #[arg(long, value_name = "VERSION", conflicts_with = "version")]
        to: Option<String>,
        /// Apply only this migration (its dependencies must be applied)
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Roll back applied migrations (refused where the environment forbids it)
    #[command(disable_version_flag = true)]
    Rollback {
        /// Roll back everything above this version
        #[arg(long, value_name = "VERSION", conflicts_with = "steps")]
        to: Option<String>,
        /// Roll back this many of the newest applied migrations [default: 1]
        #[arg(long, value_name = "N")]
        steps: Option<usize>,
        /// Print the plan; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Record that a person already undid --version by hand (audited;
        /// nothing runs)
        #[arg(long, requires = "version", conflicts_with_all = ["to", "steps", "dry_run"])]
        manual: bool,
        /// Without --manual: roll back everything above this version (= --to,
        /// as the seed framework's `rollback --version N`); with --manual: the
        /// migration to record as undone by hand
        #[arg(long, value_name = "VERSION", conflicts_with_all = ["to", "steps"])]
        version: Option<String>,
        /// Why, for the record (with --manual)
        #[arg(long, value_name = "TEXT", requires = "manual")]
        reason: Option<String>,
    },
    /// Applied version, pending migrations, per-host state and the lock
    Status {
        /// For each applied migration, whether and how it can be rolled back
        #[arg(long)]
        show_rollback: bool,
    },
    /// Rehearse migrations in a throw-away database on the target server
    /// (created and dropped by the command, on every host of the cluster):
    /// apply each one, and with --rollback roll it back and check the
    /// schema is identical to before
    Test {
        /// Test only this migration, by version or file name
        /// (V1__create_users_table.sql); everything before it is applied first
        #[arg(long = "migration", value_name = "VERSION|FILE")]
        migration: Option<String>,
        /// Roll each tested migration back, compare the schema with the
        /// snapshot taken before it, and apply it again
        #[arg(long)]
        rollback: bool,
        /// Leave the throw-away database in place for inspection
        #[arg(long)]
        keep: bool,
    },
    /// Every ledger event
    History,
    /// Record VERSION as the baseline of an existing schema (empty ledger
    /// only), or adopt what Pillar's `pillar_migrations` table lists as applied
    #[command(disable_version_flag = true)]
    Baseline {
        #[arg(
            long = "version",
            value_name = "VERSION",
            required_unless_present = "from_pillar",
            conflicts_with = "from_pillar"
        )]
        version: Option<String>,
        /// Record every migration the target's Pillar table lists as applied
        /// (each one a ledger event naming the table); the migration files
        /// must define them
        #[arg(long)]
        from_pillar: bool,
        /// The Pillar table in the target database
        #[arg(
            long,
            value_name = "TABLE",
            default_value = "pillar_migrations",
            requires = "from_pillar"
        )]
        pillar_table: String,
    },
    /// Accept changed checksums of applied migrations, or record whether the
    /// statement a stopped run left in flight took effect
    #[command(disable_version_flag = true)]
    Repair {
        /// Half-applied migration to resolve
        #[arg(long = "version", value_name = "VERSION", requires = "statement")]
        version: Option<String>,
        /// 1-based statement number that was in flight
        #[arg(long, value_name = "N", requires = "version")]
        statement: Option<usize>,
        /// The statement took effect
        #[arg(long, conflicts_with = "not_done")]
        done: bool,
        /// The statement did not take effect (it will be run again)
        #[arg(long)]
        not_done: bool,
    },
    /// Release a lock left by a runner that died (recorded in the ledger)
    Unlock,
    /// Bring hosts of the cluster that lack objects of the applied
    /// migrations (a replica added later, rebuilt empty, or a table dropped
    /// by hand) up to the migrated schema: missing objects are created on
    /// the cluster with IF NOT EXISTS (replicated tables fetch their data
    /// from their peers); differences it cannot repair safely are reported,
    /// never overwritten; every statement is recorded in the ledger
    SyncHosts {
        /// Only what this host (host:port, as `status` lists it) lacks
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Show what would be sent; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete ledger events older than --older-than that no longer define
    /// the current state (runs superseded by a later one, lock events,
    /// notes, verified host tasks, pruned backups); recorded
    Clean {
        /// Age, e.g. 90d, 12h; a bare number is days (30 = 30d)
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Count what would go; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// The freeze backups taken before destructive statements (backup:
    /// freeze): list them, or remove old ones on every host
    Backups {
        #[command(subcommand)]
        action: BackupsAction,
    },
    /// Check connection, server version, cluster topology, ZooKeeper, privileges, ledger and lock
    Doctor,
    /// Write the ledger to a JSON file
    Export {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Load a ledger exported with `export` into an empty ledger
    Import {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// The history as a report: a timeline, durations, runs, slowest
    /// statements (--format html|markdown|json)
    Report {
        /// Write to FILE instead of standard output
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only the slowest migrations and statements
        #[arg(long, conflicts_with = "output")]
        performance: bool,
    },
    /// Per-statement durations of a migration's latest run, from the
    /// ledger, with the server's query log figures where it logs queries
    Profile {
        /// The migration, by version or file name (V1__create_users_table.sql)
        #[arg(long = "migration", value_name = "VERSION|FILE")]
        migration: String,
    },
    /// Reconcile MigrationSet and ClickHouseMigration manifests (with the
    /// Secrets and ConfigMaps they reference) from files, without Kubernetes,
    /// and print the status the operator would write
    Apply {
        /// Manifest file or folder (repeatable)
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Refuse rollbacks whatever the sets allow (as the production operator does)
        #[arg(long)]
        forbid_rollback: bool,
        /// Only connect to URLs matching this glob (repeatable), e.g.
        /// 'https://*.analytics.svc:8443'; other sets stall as
        /// TargetNotAllowed and nothing is sent [default: any URL]
        #[arg(long = "allow-url", value_name = "PATTERN")]
        allow_urls: Vec<String>,
        /// Refuse http:// URLs and insecureSkipVerify (TLSRequired)
        #[arg(long)]
        require_tls: bool,
    },
    /// Turn the migration folder into GitOps manifests: one ClickHouseMigration
    /// per migration (or ConfigMaps of the files) plus kustomization.yaml
    Render {
        /// MigrationSet the migrations belong to (label chmigrate.io/set)
        #[arg(long = "set", value_name = "NAME")]
        set: String,
        /// Namespace of the resources
        #[arg(long)]
        namespace: Option<String>,
        /// Extra labels, e.g. team=web,tier=db
        #[arg(long, value_name = "K=V,…", value_delimiter = ',', value_parser = parse_var)]
        labels: Vec<(String, String)>,
        /// Write one file per resource (and kustomization.yaml) into DIR; default: YAML on stdout
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Emit ConfigMaps holding the files instead of ClickHouseMigrations
        #[arg(long)]
        configmap: bool,
    },
    /// Print the CustomResourceDefinitions (MigrationSet, ClickHouseMigration) as YAML
    Crd,
    /// Run the Kubernetes operator: reconcile MigrationSets with the same
    /// engine and ledger as the command line
    Operator(crate::operator::OperatorArgs),
    /// Print, as JSON, every statement chmigrate sends to a single node (for
    /// compatibility checks against other ClickHouse versions)
    #[command(hide = true)]
    CompatSql {
        #[arg(long, default_value = "chm_compat")]
        database: String,
        /// Major version of the server the statements are for
        #[arg(long, default_value_t = 26)]
        server_major: u32,
    },
}
