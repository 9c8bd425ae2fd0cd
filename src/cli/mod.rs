//! The command line: argument parsing, configuration loading and output.
//! This is the binary's edge; the engine lives in the library.

pub mod apply;
mod backups;
pub mod logging;
pub mod online;
mod output;
mod perf;
mod rehearse;
mod targets;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};

use chmigrate::config::{
    ConnectionSection, DEFAULT_CONFIG_FILE, FileConfig, MigrationsSection, Overrides, Secret,
    Settings,
};
use chmigrate::diagnostic::{self, Diagnostic};
use chmigrate::history::TargetState;
use chmigrate::plan::{Target, plan};
use chmigrate::prepare::prepare;
use chmigrate::scaffold::{self, Template};
use chmigrate::source::{self, Loaded};
use chmigrate::sql::statement::OnClusterMode;
use chmigrate::validate::validate_offline;
use chmigrate::version::Version;

pub use output::Format;

/// Exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const HOSTS_PENDING: i32 = 3;
    pub const LOCKED: i32 = 4;
}

/// How a command ended when it did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or a blocked plan: exit 2, nothing was executed.
    Invalid(String),
    /// Diagnostics already printed; exit 2.
    Reported,
    /// Anything else: exit 1.
    Failed(anyhow::Error),
    /// Applied, but some hosts had not finished (already printed): exit 3.
    Pending,
    /// Another runner holds the target's lock: exit 4. The holder and how
    /// long it has held the lock, when known.
    Locked(String, Option<(String, u64)>),
    /// The plan is blocked (not yet printed): exit 2.
    Blocked(Vec<chmigrate::diagnostic::Diagnostic>),
}

impl CliError {
    pub fn code(&self) -> i32 {
        match self {
            CliError::Invalid(_) | CliError::Reported | CliError::Blocked(_) => exit::INVALID,
            CliError::Failed(_) => exit::FAILED,
            CliError::Pending => exit::HOSTS_PENDING,
            CliError::Locked(..) => exit::LOCKED,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Invalid(m) | CliError::Locked(m, _) => f.write_str(m),
            CliError::Failed(e) => write!(f, "{e:#}"),
            CliError::Reported => f.write_str("problems were reported"),
            CliError::Pending => f.write_str("hosts pending"),
            CliError::Blocked(d) => {
                let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

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
    pub rollback_strategy: Option<chmigrate::strategy::RollbackStrategy>,
    /// Migrations run at once within the target: independent ones (no
    /// dependency between them, no table in common), in waves [default: 1]
    #[arg(long, global = true, env = "CHMIGRATE_PARALLEL", value_name = "N")]
    pub parallel: Option<usize>,
    /// A ${NAME} variable, repeatable
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
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

fn parse_strategy(s: &str) -> Result<chmigrate::strategy::RollbackStrategy, String> {
    chmigrate::strategy::RollbackStrategy::parse(s)
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
        /// The migration --manual records
        #[arg(long, value_name = "VERSION", requires = "manual")]
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
        /// Test only this migration (everything before it is applied first)
        #[arg(long = "migration", value_name = "VERSION")]
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
    /// Record VERSION as the baseline of an existing schema (empty ledger only)
    #[command(disable_version_flag = true)]
    Baseline {
        #[arg(long = "version", value_name = "VERSION")]
        version: String,
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
    /// Delete ledger events older than --older-than that no longer define
    /// the current state (runs superseded by a later one, lock events,
    /// notes, verified host tasks, pruned backups); recorded
    Clean {
        /// Age, e.g. 90d
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
        #[arg(long = "migration", value_name = "VERSION")]
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

/// The configuration file named by `--config`, else `./chmigrate.yaml`
/// when present, loaded.
pub(crate) fn config_file(g: &Global) -> Result<Option<(PathBuf, FileConfig)>, CliError> {
    let path = match &g.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
    };
    match path {
        Some(p) => {
            let file = FileConfig::load(&p).map_err(|e| CliError::Invalid(e.to_string()))?;
            Ok(Some((p, file)))
        }
        None => Ok(None),
    }
}

/// Loads configuration: the file (unless `read_file` is false: `init`
/// writes it), then flags and `CHMIGRATE_*` variables.
pub fn settings(g: &Global, read_file: bool) -> Result<Settings, CliError> {
    let file = if read_file { config_file(g)? } else { None };
    let mut o = overrides(g);
    // With --targets, this process only dispatches: it logs as the first
    // target does (each target's own settings are resolved by its run).
    if let (Some((_, f)), false) = (&file, g.targets.is_empty()) {
        let envs = f
            .expand_targets(&g.targets)
            .map_err(|e| CliError::Invalid(format!("--targets: {e}")))?;
        o.environment = envs.into_iter().next();
    }
    resolve_settings(file.as_ref(), &o)
}

pub(crate) fn resolve_settings(
    file: Option<&(PathBuf, FileConfig)>,
    overrides: &Overrides,
) -> Result<Settings, CliError> {
    Settings::resolve(file.map(|(p, f)| (p.as_path(), f)), overrides)
        .map_err(|e| CliError::Invalid(e.to_string()))
}

/// What flags and `CHMIGRATE_*` variables set (the top layer).
pub(crate) fn overrides(g: &Global) -> Overrides {
    Overrides {
        environment: g.environment.clone(),
        connection: ConnectionSection {
            url: g.url.clone(),
            user: g.user.clone(),
            password: g.password.clone().map(Secret::new),
            password_file: g.password_file.clone(),
            database: g.database.clone(),
            cluster: g.cluster.clone(),
            ca_file: g.ca_file.clone(),
            tls_verify: g.tls_insecure.then_some(false),
            ddl_timeout: g.ddl_timeout,
            mutation_timeout: g.mutation_timeout,
            ..Default::default()
        },
        migrations: MigrationsSection {
            dir: g.dir.clone(),
            history_table: g.history_table.clone(),
            on_cluster: g.on_cluster.map(|m| match m {
                OnClusterArg::Auto => OnClusterMode::Auto,
                OnClusterArg::Always => OnClusterMode::Always,
                OnClusterArg::Never => OnClusterMode::Never,
            }),
            max_file_size: g.max_file_size,
            variables: (!g.vars.is_empty()).then(|| g.vars.iter().cloned().collect()),
            rollback_strategy: g.rollback_strategy,
            parallel: g.parallel,
            backup: g.backup.map(|b| match b {
                BackupArg::None => chmigrate::backup::BackupPolicy::None,
                BackupArg::Freeze => chmigrate::backup::BackupPolicy::Freeze,
            }),
            ..Default::default()
        },
        logging: chmigrate::config::LoggingSection {
            level: g.log_level,
            format: g.log_format.map(|f| match f {
                LogFormat::Text => chmigrate::config::LogFormat::Text,
                LogFormat::Json => chmigrate::config::LogFormat::Json,
            }),
            file: g.log_file.clone(),
        },
    }
}

/// Whether the command reads `chmigrate.yaml` (`init` writes it).
pub fn reads_config(cli: &Cli) -> bool {
    !matches!(cli.command, Command::Init { .. })
}

/// Runs the parsed command with the settings [`settings`] resolved.
pub fn run(cli: Cli, settings: Settings) -> Result<(), CliError> {
    tracing::debug!(environment = %settings.environment, dir = %settings.dir.display(), "configuration resolved");
    let format = cli.global.format;
    if matches!(format, Format::Html | Format::Markdown)
        && !matches!(cli.command, Command::Report { .. })
    {
        return Err(CliError::Invalid(
            "--format html and markdown are for `report` only".into(),
        ));
    }
    if !cli.global.targets.is_empty() {
        return targets::run(&cli, format);
    }
    match cli.command {
        Command::Init { database, force } => cmd_init(
            cli.global.config.as_deref(),
            &settings,
            &database,
            force,
            format,
        ),
        Command::New {
            name,
            template,
            timestamp,
        } => cmd_new(&settings, &name, template, timestamp, format),
        Command::Validate {
            online,
            require_rollback,
            check_conflicts,
        } => {
            let mut settings = settings.clone();
            settings.require_rollback |= require_rollback;
            if online || check_conflicts {
                block_on(online::validate_online(&settings, check_conflicts, format))
            } else {
                cmd_validate(&settings, format)
            }
        }
        Command::Resolve { migration } => cmd_resolve(&settings, &migration, format),
        Command::Plan { offline: true, to } => cmd_plan_offline(&settings, to.as_deref(), format),
        Command::Plan { offline: false, to } => {
            let spec = spec(to.as_deref())?;
            block_on(online::migrate(&settings, spec, true, format))
        }
        Command::Migrate {
            to,
            version,
            dry_run,
        } => {
            let spec = match version {
                Some(v) => online::TargetSpec::Only(parse_version("--version", &v)?),
                None => spec(to.as_deref())?,
            };
            block_on(online::migrate(&settings, spec, dry_run, format))
        }
        Command::Rollback {
            manual: true,
            version: Some(version),
            reason,
            ..
        } => {
            let v = parse_version("--version", &version)?;
            block_on(online::manual_rollback(&settings, v, reason, format))
        }
        Command::Rollback {
            to, steps, dry_run, ..
        } => {
            let spec = match (to, steps) {
                (Some(v), _) => online::TargetSpec::Version(parse_version("--to", &v)?),
                (None, n) => online::TargetSpec::StepsBack(n.unwrap_or(1)),
            };
            block_on(online::migrate(&settings, spec, dry_run, format))
        }
        Command::Status { show_rollback } => {
            block_on(online::status(&settings, show_rollback, format))
        }
        Command::Test {
            migration,
            rollback,
            keep,
        } => {
            let only = match migration {
                Some(v) => Some(parse_version("--migration", &v)?),
                None => None,
            };
            block_on(rehearse::test(&settings, only, rollback, keep, format))
        }
        Command::History => block_on(online::history(&settings, format)),
        Command::Baseline { version } => {
            let v = parse_version("--version", &version)?;
            block_on(online::baseline(&settings, v, format))
        }
        Command::Repair {
            version,
            statement,
            done,
            not_done,
        } => {
            let resolve = match (version, statement) {
                (Some(v), Some(n)) => {
                    if done == not_done {
                        return Err(CliError::Invalid(
                            "say whether the statement took effect: --done or --not-done".into(),
                        ));
                    }
                    if n == 0 {
                        return Err(CliError::Invalid("--statement counts from 1".into()));
                    }
                    Some((parse_version("--version", &v)?, n, done))
                }
                _ => None,
            };
            block_on(online::repair(&settings, resolve, format))
        }
        Command::Unlock => block_on(online::unlock(&settings, format)),
        Command::Clean {
            older_than,
            dry_run,
        } => {
            let age = chmigrate::clock::parse_age(&older_than)
                .map_err(|e| CliError::Invalid(format!("--older-than: {e}")))?;
            block_on(online::clean(&settings, age, dry_run, format))
        }
        Command::Backups {
            action: BackupsAction::List,
        } => block_on(backups::list(&settings, format)),
        Command::Backups {
            action: BackupsAction::Prune { older_than, forget },
        } => {
            let age = chmigrate::clock::parse_age(&older_than)
                .map_err(|e| CliError::Invalid(format!("--older-than: {e}")))?;
            block_on(backups::prune(&settings, age, forget, format))
        }
        Command::Doctor => block_on(online::doctor(&settings, format)),
        Command::Export { file } => block_on(online::export(&settings, &file, format)),
        Command::Import { file } => block_on(online::import(&settings, &file, format)),
        Command::Apply {
            files,
            forbid_rollback,
        } => block_on(apply::apply(
            &files,
            format,
            &apply::Policy {
                forbid_rollback,
                environment: None,
                always_freeze: matches!(cli.global.backup, Some(BackupArg::Freeze)),
                default_rollback_strategy: cli.global.rollback_strategy,
                default_parallel: cli.global.parallel,
            },
        )),
        Command::Render {
            set,
            namespace,
            labels,
            out,
            configmap,
        } => cmd_render(&settings, set, namespace, labels, out, configmap, format),
        Command::Operator(mut args) => {
            args.environment = cli.global.environment.clone();
            args.always_freeze = matches!(cli.global.backup, Some(BackupArg::Freeze));
            args.default_rollback_strategy = cli.global.rollback_strategy;
            args.default_parallel = cli.global.parallel;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| {
                    CliError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}"))
                })?;
            rt.block_on(crate::operator::run(args))
                .map_err(CliError::Failed)
        }
        Command::Crd => {
            let yaml = chmigrate::crd::crds_yaml().map_err(|e| CliError::Failed(e.into()))?;
            print!("{yaml}");
            Ok(())
        }
        Command::Report {
            performance: true, ..
        } => block_on(perf::report_performance(&settings, format)),
        Command::Report { output, .. } => {
            block_on(online::report(&settings, format, output.as_deref()))
        }
        Command::Profile { migration } => {
            let v = parse_version("--migration", &migration)?;
            block_on(perf::profile(&settings, v, format))
        }
        Command::CompatSql {
            database,
            server_major,
        } => {
            let catalog = chmigrate::runtime::queries::single_node_catalog(&database, server_major)
                .map_err(CliError::Invalid)?;
            let text =
                serde_json::to_string_pretty(&catalog).map_err(|e| CliError::Failed(e.into()))?;
            println!("{text}");
            Ok(())
        }
    }
}

fn parse_version(flag: &str, v: &str) -> Result<Version, CliError> {
    Version::parse(v.strip_prefix(['V', 'v']).unwrap_or(v))
        .map_err(|e| CliError::Invalid(format!("{flag}: {e}")))
}

fn spec(to: Option<&str>) -> Result<online::TargetSpec, CliError> {
    Ok(match to {
        None => online::TargetSpec::Latest,
        Some(v) => online::TargetSpec::Version(parse_version("--to", v)?),
    })
}

/// Runs an async command on a single-threaded runtime.
fn block_on<F: std::future::Future<Output = Result<(), CliError>>>(f: F) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    rt.block_on(f)
}

/// The migrations, or every source problem printed (exit 2, nothing runs).
pub(crate) fn loaded_or_fail(
    loaded: Loaded,
    format: Format,
) -> Result<Vec<chmigrate::Migration>, CliError> {
    if loaded.errors.is_empty() {
        return Ok(loaded.migrations);
    }
    let mut diags: Vec<Diagnostic> = loaded.errors.into_iter().map(Diagnostic::from).collect();
    diagnostic::sort(&mut diags);
    output::print_diagnostics(format, &diags);
    Err(CliError::Reported)
}

/// The migration folder as written, before the environment's rollback
/// strategy is applied.
pub(crate) fn load_written(settings: &Settings) -> Loaded {
    let loaded = source::load_dir(&settings.dir, settings.max_file_size);
    tracing::info!(
        dir = %settings.dir.display(),
        migrations = loaded.migrations.len(),
        errors = loaded.errors.len(),
        "migrations loaded"
    );
    loaded
}

/// The migrations with the environment's rollback strategy applied.
pub(crate) fn with_strategy(mut loaded: Loaded, settings: &Settings) -> Loaded {
    loaded.migrations =
        chmigrate::strategy::resolve(&loaded.migrations, settings.rollback_strategy);
    loaded
}

pub(crate) fn load(settings: &Settings) -> Loaded {
    with_strategy(load_written(settings), settings)
}

/// `validate`'s checks of the folder: the offline ones on the migrations
/// as this environment runs them, and `require_rollback` on them as written
/// (under the `script` strategy: an environment that is forward-only still
/// wants every migration to carry a rollback for rehearsals elsewhere).
pub(crate) fn validate_folder(settings: &Settings) -> (Loaded, Vec<Diagnostic>) {
    let written = load_written(settings);
    let rollback = settings.require_rollback.then(|| {
        chmigrate::validate::require_rollback(&chmigrate::strategy::resolve(
            &written.migrations,
            chmigrate::strategy::RollbackStrategy::Script,
        ))
    });
    let loaded = with_strategy(written, settings);
    let mut diags = validate_offline(
        &loaded.migrations,
        &loaded.errors,
        &settings.prepare_settings(),
        &settings.policy(),
    );
    diags.extend(rollback.unwrap_or_default());
    diagnostic::sort(&mut diags);
    (loaded, diags)
}

fn cmd_validate(settings: &Settings, format: Format) -> Result<(), CliError> {
    let (loaded, diags) = validate_folder(settings);
    output::print_validation(format, settings, loaded.migrations.len(), &diags);
    if diags.iter().any(Diagnostic::is_error) {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

fn cmd_plan_offline(settings: &Settings, to: Option<&str>, format: Format) -> Result<(), CliError> {
    let target = match to {
        None => Target::Latest,
        Some(v) => Target::Version(
            Version::parse(v.strip_prefix(['V', 'v']).unwrap_or(v))
                .map_err(|e| CliError::Invalid(format!("--to: {e}")))?,
        ),
    };
    let migrations = loaded_or_fail(load(settings), format)?;
    let state = TargetState::default();
    let planned = plan(&migrations, &state, &target, &settings.policy()).map_err(|problems| {
        let mut diags: Vec<Diagnostic> = problems.into_iter().map(Diagnostic::from).collect();
        diagnostic::sort(&mut diags);
        output::print_diagnostics(format, &diags);
        CliError::Reported
    })?;
    let steps =
        prepare(&planned, &migrations, &settings.prepare_settings()).map_err(|mut diags| {
            diagnostic::sort(&mut diags);
            output::print_diagnostics(format, &diags);
            CliError::Reported
        })?;
    output::print_plan(format, settings, &planned, &steps, &migrations);
    Ok(())
}

/// `init`: the migrations folder and a commented `chmigrate.yaml` (at
/// `--config`, or `chmigrate.yaml` here). Refuses to overwrite a file.
fn cmd_init(
    config: Option<&Path>,
    settings: &Settings,
    database: &str,
    force: bool,
    format: Format,
) -> Result<(), CliError> {
    let database = chmigrate::sql::Ident::new("database name", database)
        .map_err(|e| CliError::Invalid(format!("--database: {e}")))?;
    let path = config.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf);
    if path.exists() && !force {
        return Err(CliError::Invalid(format!(
            "{} exists; pass --force to overwrite it",
            path.display()
        )));
    }
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        CliError::Failed(anyhow::anyhow!("{}: cannot {what}: {e}", p.display()))
    };
    // The file names the folder relative to itself.
    let base = path.parent().unwrap_or(Path::new(""));
    let dir = &base.join(&settings.dir);
    std::fs::create_dir_all(dir).map_err(|e| fail("create folder", dir, e))?;
    let text = scaffold::config_template(database.as_str(), &settings.dir.display().to_string());
    std::fs::write(&path, text).map_err(|e| fail("write", &path, e))?;
    output::print_message(
        format,
        &format!(
            "wrote {} and {}/ — next: chmigrate new \"create events\"",
            path.display(),
            dir.display()
        ),
        serde_json::json!({ "ok": true, "config": path.display().to_string(), "dir": dir.display().to_string() }),
    );
    Ok(())
}

fn cmd_new(
    settings: &Settings,
    name: &str,
    template: TemplateArg,
    use_timestamp: bool,
    format: Format,
) -> Result<(), CliError> {
    let template = match template {
        TemplateArg::Table => Template::Table,
        TemplateArg::Alter => Template::Alter,
        TemplateArg::Index => Template::Index,
        TemplateArg::Data => Template::Data,
        TemplateArg::View => Template::View,
    };
    let name = scaffold::snake_name(name).map_err(|e| CliError::Invalid(e.to_string()))?;
    let dir = &settings.dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::Failed(anyhow::anyhow!(
            "{}: cannot create folder: {e}",
            dir.display()
        ))
    })?;
    let existing = existing_versions(dir);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let version = scaffold::next_version(&existing, use_timestamp, now)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    if existing.contains(&version) {
        return Err(CliError::Invalid(format!(
            "version {version} already exists in {}",
            dir.display()
        )));
    }
    let stamp = scaffold::timestamp(now);
    let created = format!("{}-{}-{}", &stamp[0..4], &stamp[4..6], &stamp[6..8]);
    let author = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let text = scaffold::render(template, &version, &name, &author, &created);
    let path = dir.join(scaffold::file_name(&version, &name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| CliError::Invalid(format!("{}: cannot create: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", path.display())))?;
    output::print_created(format, &path, &version, template.name());
    Ok(())
}

fn cmd_render(
    settings: &Settings,
    set: String,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    out: Option<PathBuf>,
    configmap: bool,
    format: Format,
) -> Result<(), CliError> {
    use chmigrate::render::{RenderOptions, render_configmaps, render_resources};
    let migrations = loaded_or_fail(load(settings), format)?;
    let opts = RenderOptions {
        set,
        namespace,
        labels: labels.into_iter().collect(),
    };
    let docs = if configmap {
        let mut files = Vec::new();
        for m in &migrations {
            for loc in std::iter::once(&m.location).chain(m.down_location.iter()) {
                let path = PathBuf::from(loc.file.as_ref());
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", path.display())))?;
                files.push((name, text));
            }
        }
        let (docs, names) =
            render_configmaps(&files, &opts).map_err(|e| CliError::Invalid(e.to_string()))?;
        eprintln!(
            "list these in the MigrationSet's spec.configMaps: {}",
            names.join(", ")
        );
        docs
    } else {
        render_resources(&migrations, &opts).map_err(|e| CliError::Invalid(e.to_string()))?
    };
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", dir.display())))?;
            for (name, text) in &docs {
                std::fs::write(dir.join(name), text).map_err(|e| {
                    CliError::Failed(anyhow::anyhow!("{}: {e}", dir.join(name).display()))
                })?;
            }
            println!("wrote {} file(s) to {}", docs.len(), dir.display());
        }
        None => {
            for (name, text) in docs.iter().filter(|(n, _)| n != "kustomization.yaml") {
                println!("---\n# {name}\n{text}");
            }
        }
    }
    Ok(())
}

/// `resolve --migration FILE`: FILE (and its down half) renamed to the next
/// free version, its header updated. Refused when FILE collides with no
/// other file.
fn cmd_resolve(settings: &Settings, file: &Path, format: Format) -> Result<(), CliError> {
    use chmigrate::renumber::{name_version, pair_key, renamed, rewrite_header};
    let base = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string()
    };
    let name = base(file);
    let (version, _) = name_version(&name).ok_or_else(|| {
        CliError::Invalid(format!(
            "{}: not a migration file name (V<version>__<description>.sql, <version>_<name>.up.sql, …)",
            file.display()
        ))
    })?;
    if !file.is_file() {
        return Err(CliError::Invalid(format!(
            "{}: no such file",
            file.display()
        )));
    }
    let key = pair_key(&name);
    let files = migration_files(&settings.dir);
    // `./migrations/V3__x.sql` and `/abs/migrations/V3__x.sql` name one
    // folder: compare where the files really are.
    let folder = |p: &Path| p.parent().and_then(|d| std::fs::canonicalize(d).ok());
    let own_folder = folder(file);
    let same_version: Vec<&PathBuf> = files
        .iter()
        .filter(|p| name_version(&base(p)).is_some_and(|(v, _)| v == version))
        .collect();
    let (mine, others): (Vec<&PathBuf>, Vec<&PathBuf>) = same_version
        .into_iter()
        .partition(|p| pair_key(&base(p)) == key && folder(p) == own_folder);
    if others.is_empty() {
        return Err(CliError::Invalid(format!(
            "{}: version {version} collides with no other file in {}; nothing to renumber",
            file.display(),
            settings.dir.display()
        )));
    }
    let mine: Vec<PathBuf> = if mine.is_empty() {
        vec![file.to_path_buf()]
    } else {
        mine.into_iter().cloned().collect()
    };
    let existing: Vec<Version> = files
        .iter()
        .filter_map(|p| name_version(&base(p)).map(|(v, _)| v))
        .collect();
    let timestamps = version
        .segments()
        .first()
        .is_some_and(|m| *m >= 10_000_000_000);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = scaffold::next_version(&existing, timestamps, now)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let mut moves = Vec::new();
    for from in &mine {
        let new_name = renamed(&base(from), &to)
            .ok_or_else(|| CliError::Invalid(format!("{}: cannot rename", from.display())))?;
        let dest = from.with_file_name(new_name);
        let text = std::fs::read_to_string(from)
            .map_err(|e| CliError::Invalid(format!("{}: cannot read: {e}", from.display())))?;
        moves.push((from.clone(), dest, rewrite_header(&text, &to)));
    }
    // Write every new file before removing any old one: a failure leaves
    // the old files in place.
    for (_, dest, text) in &moves {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| CliError::Invalid(format!("{}: cannot create: {e}", dest.display())))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| {
            CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", dest.display()))
        })?;
    }
    for (from, _, _) in &moves {
        std::fs::remove_file(from).map_err(|e| {
            CliError::Failed(anyhow::anyhow!("{}: cannot remove: {e}", from.display()))
        })?;
    }
    // Migrations that name the old version as a dependency now have two
    // candidates in mind; say which ones to check.
    let dependents: Vec<String> = load(settings)
        .migrations
        .iter()
        .filter(|m| m.dependencies.contains(&version) && m.version != to)
        .map(|m| m.location.file.to_string())
        .collect();
    let renamed_txt: Vec<String> = moves
        .iter()
        .map(|(f, d, _)| format!("{} -> {}", f.display(), d.display()))
        .collect();
    let mut text = format!(
        "renumbered version {version} to {to}: {}",
        renamed_txt.join(", ")
    );
    if !dependents.is_empty() {
        text.push_str(&format!(
            "\ncheck these, which depend on version {version}: {}",
            dependents.join(", ")
        ));
    }
    output::print_message(
        format,
        &text,
        serde_json::json!({
            "ok": true,
            "from": version.to_string(),
            "to": to.to_string(),
            "files": moves.iter().map(|(f, d, _)| serde_json::json!({"from": f.display().to_string(), "to": d.display().to_string()})).collect::<Vec<_>>(),
            "dependents": dependents,
        }),
    );
    Ok(())
}

/// Every `.sql` file under `dir`.
fn migration_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "sql") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Versions named by migration files under `dir`, whatever their content.
fn existing_versions(dir: &Path) -> Vec<Version> {
    migration_files(dir)
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .filter_map(|n| chmigrate::renumber::name_version(n).map(|(v, _)| v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
