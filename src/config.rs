//! Configuration: `chmigrate.yaml` with per-environment overrides, then
//! `CHMIGRATE_*` environment variables and command-line flags on top.
//!
//! Precedence, lowest first: built-in defaults, the file's top-level
//! sections, the file's `environments.<env>` section, then environment
//! variables and flags (clap reads `CHMIGRATE_*` for each flag; a flag given
//! on the command line wins over its variable).
//!
//! ```yaml
//! default_environment: development
//! connection:
//!   url: http://127.0.0.1:8123
//!   user: default
//!   password_file: /run/secrets/clickhouse   # or password_env: NAME
//!   database: analytics
//!   cluster: chm_cluster
//! migrations:
//!   dir: migrations            # relative to this file
//!   history_table: schema_migrations
//!   on_cluster: auto           # auto | always | never
//!   max_file_size: 1048576
//!   allow_rollback: true
//!   require_rollback: false    # validate: every migration needs a rollback
//!   out_of_order: false
//!   variables: { ttl_days: "30" }
//! logging:
//!   level: info                # error | warn | info | debug | trace
//!   format: json               # text | json
//!   file: chmigrate.log        # also append log lines here (relative to this file)
//! environments:
//!   production:
//!     migrations: { allow_rollback: false }
//! groups:                      # --targets eu runs both environments at once
//!   eu: [eu-west, eu-central]
//! ```
//!
//! In the environments named `production` and `prod`, rollback is off unless
//! the file turns it on explicitly.
//!
//! The seed framework's `migration-config.yml` is read too ([`seed`]): a
//! file whose top level has its sections (`database:`, `migration:`,
//! `validation:`) is mapped onto these settings, with a warning naming each
//! key that means nothing here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::secret::Masker;
use crate::model::version::Version;
use crate::plan::Policy;
use crate::plan::prepare::PrepareSettings;
use crate::source::DEFAULT_MAX_FILE_BYTES;
use crate::source::header::valid_environment_name;
use crate::sql::ident::{Ident, IdentError};
use crate::sql::statement::OnClusterMode;
use crate::sql::vars::{VarError, Variables};

pub mod seed;

/// How long a lock stays held without its holder renewing it, by default.
pub const DEFAULT_LOCK_LEASE_S: u64 = 30;

/// The default config file name looked up in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "chmigrate.yaml";

pub use crate::model::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment {env:?} is not defined in {path} (defined: {known})")]
    UnknownEnvironment {
        env: String,
        path: PathBuf,
        known: String,
    },
    #[error("invalid environment name {0:?} (use lowercase letters, digits, '-' or '_')")]
    BadEnvironment(String),
    #[error("{0}")]
    Ident(#[from] IdentError),
    #[error("{0}")]
    Var(#[from] VarError),
    #[error("invalid value for {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

/// `connection:` (all optional, for layering).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSection {
    pub url: Option<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub database: Option<String>,
    pub cluster: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// CA certificates held in memory (a MigrationSet's `caSecretRef`):
    /// never written to a file. Never read from a file.
    #[serde(skip)]
    pub ca_pem: Option<CaPem>,
    pub tls_verify: Option<bool>,
    /// Seconds to wait for every host of an `ON CLUSTER` statement.
    pub ddl_timeout: Option<u64>,
    /// Seconds to wait for a mutation to finish.
    pub mutation_timeout: Option<u64>,
}

/// `migrations:` (all optional, for layering).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationsSection {
    pub dir: Option<PathBuf>,
    pub history_table: Option<String>,
    pub on_cluster: Option<OnClusterMode>,
    pub max_file_size: Option<u64>,
    pub allow_rollback: Option<bool>,
    /// `validate` fails on migrations with no rollback, written or derived.
    pub require_rollback: Option<bool>,
    /// `validate` also parses every statement with a ClickHouse-dialect SQL
    /// parser (`validate --check-syntax`).
    pub check_syntax: Option<bool>,
    /// `migrate` and `rollback` only print their plan (`--dry-run`).
    pub dry_run: Option<bool>,
    pub out_of_order: Option<bool>,
    pub baseline: Option<Version>,
    pub variables: Option<BTreeMap<String, String>>,
    /// `freeze`: freeze every table a statement drops or rewrites, on
    /// every host, before the statement runs.
    pub backup: Option<crate::ledger::backups::BackupPolicy>,
    /// Default rollback strategy of migrations that name none.
    pub rollback_strategy: Option<crate::model::strategy::RollbackStrategy>,
    /// Migrations run at once within the target (independent ones only;
    /// default 1: serial).
    pub parallel: Option<usize>,
    /// User variables whose values are identifiers: quoted in code when
    /// they need it, as `${database}` is.
    pub identifier_variables: Option<Vec<String>>,
    /// Variables whose values are secrets (a MigrationSet's
    /// `variablesFrom`): substituted like the others, masked as `***`
    /// wherever text leaves the process. Never read from a file.
    #[serde(skip)]
    pub secret_variables: Option<BTreeMap<String, Secret>>,
    /// Seconds to wait for a lock held by a live runner before giving up
    /// (exit 4); default 0: do not wait.
    pub lock_wait: Option<u64>,
    /// Seconds a lock stays held without its holder renewing it (the holder
    /// renews every fifth of that); an expired lock is taken over, on the
    /// record. Default 30.
    pub lock_lease: Option<u64>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How much is logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    #[default]
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// `error`, `warn`, `info`, `debug` or `trace` (any case).
    pub fn parse(s: &str) -> Result<LogLevel, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(format!("{s:?}: expected error, warn, info, debug or trace")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `logging:` (all optional, for layering).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    pub level: Option<LogLevel>,
    pub format: Option<LogFormat>,
    /// Log lines are also appended to this file.
    pub file: Option<PathBuf>,
}

/// Where log lines go, resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggingSettings {
    pub level: LogLevel,
    pub format: LogFormat,
    pub file: Option<PathBuf>,
}

/// `environments.<name>:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    #[serde(default)]
    pub connection: ConnectionSection,
    #[serde(default)]
    pub migrations: MigrationsSection,
    #[serde(default)]
    pub logging: LoggingSection,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub default_environment: Option<String>,
    #[serde(default)]
    pub connection: ConnectionSection,
    #[serde(default)]
    pub migrations: MigrationsSection,
    #[serde(default)]
    pub logging: LoggingSection,
    #[serde(default)]
    pub environments: BTreeMap<String, EnvSection>,
    /// Named lists of environments, for `--targets`.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// What reading the file found to say without refusing it (keys of the
    /// seed framework's format that mean nothing here), each naming the
    /// file and the key.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Overlays every `Some` field of `$over` onto `$base`.
macro_rules! overlay {
    ($base:expr, $over:expr, [$($field:ident),*]) => {
        $( if $over.$field.is_some() { $base.$field = $over.$field.clone(); } )*
    };
}

impl ConnectionSection {
    fn overlay(&mut self, o: &ConnectionSection) {
        overlay!(
            self,
            o,
            [
                url,
                user,
                password,
                password_file,
                password_env,
                database,
                cluster,
                ca_file,
                ca_pem,
                tls_verify,
                ddl_timeout,
                mutation_timeout
            ]
        );
    }
}

impl MigrationsSection {
    fn overlay(&mut self, o: &MigrationsSection) {
        overlay!(
            self,
            o,
            [
                dir,
                history_table,
                on_cluster,
                max_file_size,
                allow_rollback,
                require_rollback,
                check_syntax,
                dry_run,
                out_of_order,
                baseline,
                backup,
                rollback_strategy,
                parallel,
                identifier_variables,
                lock_wait,
                lock_lease
            ]
        );
        if let Some(vars) = &o.variables {
            self.variables
                .get_or_insert_with(BTreeMap::new)
                .extend(vars.clone());
        }
        if let Some(vars) = &o.secret_variables {
            self.secret_variables
                .get_or_insert_with(BTreeMap::new)
                .extend(vars.clone());
        }
    }
}

impl LoggingSection {
    fn overlay(&mut self, o: &LoggingSection) {
        overlay!(self, o, [level, format, file]);
    }
}

impl FileConfig {
    /// Parses YAML text; `path` names the file in errors (serde_yaml's
    /// messages carry the line and column).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        let parse_error = |e: serde_yaml::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_error)?;
        if seed::is_seed_format(&doc) {
            return seed::from_seed(path, &doc);
        }
        let file: FileConfig = serde_yaml::from_str(text).map_err(parse_error)?;
        for (group, members) in &file.groups {
            let bad = |message: String| ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("groups.{group}: {message}"),
            };
            if file.environments.contains_key(group) {
                return Err(bad("an environment has the same name".into()));
            }
            if members.is_empty() {
                return Err(bad("names no environment".into()));
            }
            for m in members {
                if !file.environments.contains_key(m) {
                    return Err(bad(format!(
                        "{m:?} is not an environment of this file (defined: {})",
                        file.environment_names().join(", ")
                    )));
                }
            }
        }
        Ok(file)
    }

    /// The environments the file defines, in name order.
    pub fn environment_names(&self) -> Vec<String> {
        self.environments.keys().cloned().collect()
    }

    /// `--targets`: environment and group names → the environments, in the
    /// order given, each once.
    pub fn expand_targets(&self, names: &[String]) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let members: Vec<String> = if let Some(g) = self.groups.get(name) {
                g.clone()
            } else if self.environments.contains_key(name) {
                vec![name.clone()]
            } else {
                let groups: Vec<&str> = self.groups.keys().map(String::as_str).collect();
                return Err(format!(
                    "{name:?} is neither an environment nor a group (environments: {}; groups: {})",
                    or_none(&self.environment_names().join(", ")),
                    or_none(&groups.join(", "))
                ));
            };
            for m in members {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }
}

/// Environments protected as production: rollback is off unless the
/// configuration turns it on. `prod` and `production` alike.
pub fn is_production(environment: &str) -> bool {
    matches!(environment, "production" | "prod")
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}

/// Where the password comes from; read only when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    None,
    Inline(Secret),
    File(PathBuf),
    Env(String),
}

/// Settings from flags and `CHMIGRATE_*` variables (the top layer).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub environment: Option<String>,
    pub connection: ConnectionSection,
    pub migrations: MigrationsSection,
    pub logging: LoggingSection,
}

/// Fully resolved settings for one environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: String,
    pub url: String,
    pub user: String,
    pub password: PasswordSource,
    pub database: Ident,
    pub cluster: Option<Ident>,
    /// Extra CA certificates to trust.
    pub ca: Option<CaSource>,
    pub tls_verify: bool,
    pub ddl_timeout_s: u64,
    pub mutation_timeout_s: u64,
    pub dir: PathBuf,
    pub history_table: Ident,
    pub on_cluster: OnClusterMode,
    pub max_file_size: u64,
    pub allow_rollback: bool,
    pub require_rollback: bool,
    /// See [`MigrationsSection::check_syntax`].
    pub check_syntax: bool,
    /// See [`MigrationsSection::dry_run`].
    pub dry_run: bool,
    pub out_of_order: bool,
    pub baseline: Option<Version>,
    pub variables: BTreeMap<String, String>,
    /// See [`MigrationsSection::secret_variables`].
    pub secret_variables: BTreeMap<String, Secret>,
    /// See [`MigrationsSection::identifier_variables`].
    pub identifier_variables: Vec<String>,
    pub backup: crate::ledger::backups::BackupPolicy,
    pub rollback_strategy: crate::model::strategy::RollbackStrategy,
    pub parallel: usize,
    /// See [`MigrationsSection::lock_wait`].
    pub lock_wait_s: u64,
    /// See [`MigrationsSection::lock_lease`].
    pub lock_lease_s: u64,
    /// Applied versions whose source is gone are rolled back with the
    /// statements the ledger recorded when they were applied (the
    /// operator's roll-back of a deleted set; never from a file).
    pub rollback_from_ledger: bool,
    pub logging: LoggingSettings,
}

/// PEM text held in memory and where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPem {
    pub origin: String,
    pub pem: String,
}

/// Where the extra CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    File(PathBuf),
    Pem(CaPem),
}

/// Plain and Secret-backed variables as one map, for substitution.
fn all_variables(
    plain: &BTreeMap<String, String>,
    secret: &BTreeMap<String, Secret>,
) -> BTreeMap<String, String> {
    let mut all = plain.clone();
    all.extend(
        secret
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string())),
    );
    all
}

impl Settings {
    /// Layers defaults, the file (with `base` as the folder its relative
    /// paths are relative to), its environment section and the overrides.
    pub fn resolve(
        file: Option<(&Path, &FileConfig)>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut conn = ConnectionSection::default();
        let mut migs = MigrationsSection::default();
        let mut logging = LoggingSection::default();
        let environment = overrides
            .environment
            .clone()
            .or_else(|| file.and_then(|(_, f)| f.default_environment.clone()))
            .unwrap_or_else(|| "development".to_string());
        if !valid_environment_name(&environment) {
            return Err(ConfigError::BadEnvironment(environment));
        }
        if let Some((path, f)) = file {
            let base = path.parent().unwrap_or(Path::new(""));
            let rebase = |s: &mut MigrationsSection| {
                if let Some(d) = &s.dir
                    && d.is_relative()
                {
                    s.dir = Some(base.join(d));
                }
            };
            let rebase_log = |l: &LoggingSection| {
                let mut l = l.clone();
                if let Some(p) = &l.file
                    && p.is_relative()
                {
                    l.file = Some(base.join(p));
                }
                l
            };
            let mut top = f.migrations.clone();
            rebase(&mut top);
            conn.overlay(&f.connection);
            migs.overlay(&top);
            logging.overlay(&rebase_log(&f.logging));
            if !f.environments.is_empty() || f.default_environment.is_some() {
                match f.environments.get(&environment) {
                    Some(env) => {
                        let mut m = env.migrations.clone();
                        rebase(&mut m);
                        conn.overlay(&env.connection);
                        migs.overlay(&m);
                        logging.overlay(&rebase_log(&env.logging));
                    }
                    None if !f.environments.is_empty() => {
                        return Err(ConfigError::UnknownEnvironment {
                            env: environment,
                            path: path.to_path_buf(),
                            known: f
                                .environments
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                    None => {}
                }
            }
        }
        conn.overlay(&overrides.connection);
        migs.overlay(&overrides.migrations);
        logging.overlay(&overrides.logging);

        let password = if let Some(p) = conn.password.clone() {
            PasswordSource::Inline(p)
        } else if let Some(f) = conn.password_file.clone() {
            PasswordSource::File(f)
        } else if let Some(e) = conn.password_env.clone() {
            PasswordSource::Env(e)
        } else {
            PasswordSource::None
        };
        let url = conn
            .url
            .unwrap_or_else(|| "http://127.0.0.1:8123".to_string());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                field: "url",
                message: format!("{url:?} must start with http:// or https://"),
            });
        }
        let parallel = migs.parallel.unwrap_or(1);
        if !(1..=64).contains(&parallel) {
            return Err(ConfigError::Invalid {
                field: "parallel",
                message: format!("{parallel}: must be between 1 and 64"),
            });
        }
        let lock_lease_s = migs.lock_lease.unwrap_or(DEFAULT_LOCK_LEASE_S);
        if !(2..=3600).contains(&lock_lease_s) {
            return Err(ConfigError::Invalid {
                field: "lock_lease",
                message: format!("{lock_lease_s}: must be between 2 and 3600 seconds"),
            });
        }
        let max_file_size = migs.max_file_size.unwrap_or(DEFAULT_MAX_FILE_BYTES);
        if max_file_size == 0 {
            return Err(ConfigError::Invalid {
                field: "max_file_size",
                message: "must be greater than 0".into(),
            });
        }
        let database = Ident::new(
            "database name",
            conn.database.as_deref().unwrap_or("default"),
        )?;
        let cluster = conn
            .cluster
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| Ident::new("cluster name", c))
            .transpose()?;
        let history_table = Ident::new(
            "history table name",
            migs.history_table.as_deref().unwrap_or("schema_migrations"),
        )?;
        let variables = migs.variables.unwrap_or_default();
        let secret_variables = migs.secret_variables.unwrap_or_default();
        if let Some(both) = secret_variables.keys().find(|k| variables.contains_key(*k)) {
            return Err(ConfigError::Invalid {
                field: "variables",
                message: format!("{both:?} is defined both in variables and from a Secret"),
            });
        }
        let identifier_variables = migs.identifier_variables.unwrap_or_default();
        // Fail early on bad variable names.
        Variables::new(
            database.as_str(),
            cluster.as_ref().map(Ident::as_str),
            &environment,
            &all_variables(&variables, &secret_variables),
        )?
        .with_identifiers(&identifier_variables)?;
        Ok(Settings {
            allow_rollback: migs.allow_rollback.unwrap_or(!is_production(&environment)),
            require_rollback: migs.require_rollback.unwrap_or(false),
            check_syntax: migs.check_syntax.unwrap_or(false),
            dry_run: migs.dry_run.unwrap_or(false),
            environment,
            url,
            user: conn.user.unwrap_or_else(|| "default".to_string()),
            password,
            database,
            cluster,
            ca: match (conn.ca_pem, conn.ca_file) {
                (Some(pem), _) => Some(CaSource::Pem(pem)),
                (None, Some(path)) => Some(CaSource::File(path)),
                (None, None) => None,
            },
            tls_verify: conn.tls_verify.unwrap_or(true),
            ddl_timeout_s: conn.ddl_timeout.unwrap_or(180),
            mutation_timeout_s: conn.mutation_timeout.unwrap_or(600),
            dir: migs.dir.unwrap_or_else(|| PathBuf::from("migrations")),
            history_table,
            on_cluster: migs.on_cluster.unwrap_or_default(),
            max_file_size,
            out_of_order: migs.out_of_order.unwrap_or(false),
            baseline: migs.baseline,
            variables,
            secret_variables,
            identifier_variables,
            backup: migs.backup.unwrap_or_default(),
            rollback_strategy: migs.rollback_strategy.unwrap_or_default(),
            parallel,
            lock_wait_s: migs.lock_wait.unwrap_or(0),
            lock_lease_s,
            rollback_from_ledger: false,
            logging: LoggingSettings {
                level: logging.level.unwrap_or_default(),
                format: logging.format.unwrap_or_default(),
                file: logging.file,
            },
        })
    }

    /// Masks the values of Secret-backed variables, in every form a
    /// statement can carry them.
    pub fn masker(&self) -> Masker {
        Masker::new(
            self.secret_variables
                .values()
                .flat_map(|v| crate::sql::vars::value_forms(v.expose())),
        )
    }

    /// The planner's policy for this environment.
    pub fn policy(&self) -> Policy {
        Policy {
            environment: self.environment.clone(),
            allow_rollback: self.allow_rollback,
            out_of_order: self.out_of_order,
            baseline: self.baseline.clone(),
        }
    }

    /// How statements are prepared for this target.
    pub fn prepare_settings(&self) -> PrepareSettings {
        let cluster = self.cluster.as_ref().map(|c| c.as_str().to_string());
        PrepareSettings {
            lookups: Default::default(),
            variables: Variables::new(
                self.database.as_str(),
                cluster.as_deref(),
                &self.environment,
                &all_variables(&self.variables, &self.secret_variables),
            )
            .and_then(|v| v.with_identifiers(&self.identifier_variables))
            .unwrap_or_default(),
            cluster,
            on_cluster: self.on_cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
default_environment: staging
connection:
  url: http://ch:8123
  database: analytics
  password: hunter2
migrations:
  dir: db/migrations
  variables: { ttl_days: "30", region: eu }
environments:
  staging:
    connection: { cluster: chm_cluster }
    migrations: { variables: { ttl_days: "7" } }
  production:
    connection: { database: analytics_prod }
"#;

    fn file() -> FileConfig {
        FileConfig::parse(Path::new("conf/chmigrate.yaml"), FILE).unwrap()
    }

    #[test]
    fn logging_layers_and_rebases_its_file() {
        let f = FileConfig::parse(
            Path::new("conf/chmigrate.yaml"),
            "logging: { level: info, file: logs/chm.log }\nenvironments:\n  dev: {}\n  prod:\n    logging: { level: debug, format: json }\n",
        )
        .unwrap();
        let at = |env: &str, over: LoggingSection| {
            Settings::resolve(
                Some((Path::new("conf/chmigrate.yaml"), &f)),
                &Overrides {
                    environment: Some(env.into()),
                    logging: over,
                    ..Default::default()
                },
            )
            .unwrap()
            .logging
        };
        let dev = at("dev", LoggingSection::default());
        assert_eq!(dev.level, LogLevel::Info);
        assert_eq!(dev.format, LogFormat::Text);
        assert_eq!(dev.file, Some(PathBuf::from("conf/logs/chm.log")));
        let prod = at("prod", LoggingSection::default());
        assert_eq!(
            (prod.level, prod.format),
            (LogLevel::Debug, LogFormat::Json)
        );
        let flagged = at(
            "prod",
            LoggingSection {
                level: Some(LogLevel::Error),
                file: Some("/var/log/x.log".into()),
                ..Default::default()
            },
        );
        assert_eq!(flagged.level, LogLevel::Error);
        assert_eq!(flagged.file, Some(PathBuf::from("/var/log/x.log")));
        assert_eq!(
            Settings::resolve(None, &Overrides::default())
                .unwrap()
                .logging,
            LoggingSettings::default()
        );
        let err = FileConfig::parse(Path::new("c.yaml"), "logging: { level: loud }").unwrap_err();
        assert!(err.to_string().contains("c.yaml"), "{err}");
        assert_eq!(LogLevel::parse("DEBUG"), Ok(LogLevel::Debug));
        assert!(LogLevel::parse("loud").is_err());
    }

    #[test]
    fn groups_expand_to_their_environments_once_in_order() {
        let text =
            "environments:\n  a: {}\n  b: {}\n  c: {}\ngroups:\n  ab: [a, b]\n  cb: [c, b]\n";
        let f = FileConfig::parse(Path::new("c.yaml"), text).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(f.expand_targets(&names(&["ab"])).unwrap(), ["a", "b"]);
        assert_eq!(
            f.expand_targets(&names(&["cb", "a", "ab"])).unwrap(),
            ["c", "b", "a"]
        );
        let e = f.expand_targets(&names(&["x"])).unwrap_err();
        assert!(
            e.contains("\"x\"") && e.contains("a, b, c") && e.contains("ab, cb"),
            "{e}"
        );
        for (bad, says) in [
            (
                "environments: { a: {} }\ngroups: { g: [z] }",
                "groups.g: \"z\" is not an environment",
            ),
            (
                "environments: { a: {} }\ngroups: { a: [a] }",
                "groups.a: an environment has the same name",
            ),
            (
                "environments: { a: {} }\ngroups: { g: [] }",
                "groups.g: names no environment",
            ),
        ] {
            let e = FileConfig::parse(Path::new("c.yaml"), bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says) && e.starts_with("c.yaml"), "{e}");
        }
    }

    #[test]
    fn layers_file_environment_and_overrides() {
        let f = file();
        let s = Settings::resolve(
            Some((Path::new("conf/chmigrate.yaml"), &f)),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.environment, "staging");
        assert_eq!(s.url, "http://ch:8123");
        assert_eq!(s.database.as_str(), "analytics");
        assert_eq!(s.cluster.as_ref().map(Ident::as_str), Some("chm_cluster"));
        assert_eq!(s.dir, PathBuf::from("conf/db/migrations"));
        assert_eq!(s.variables.get("ttl_days").map(String::as_str), Some("7"));
        assert_eq!(s.variables.get("region").map(String::as_str), Some("eu"));
        assert!(s.allow_rollback);

        let over = Overrides {
            environment: Some("production".into()),
            connection: ConnectionSection {
                database: Some("override_db".into()),
                ..Default::default()
            },
            migrations: MigrationsSection {
                dir: Some("elsewhere".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = Settings::resolve(Some((Path::new("conf/chmigrate.yaml"), &f)), &over).unwrap();
        assert_eq!(s.environment, "production");
        assert_eq!(s.database.as_str(), "override_db");
        assert_eq!(s.cluster, None);
        assert_eq!(s.dir, PathBuf::from("elsewhere"));
        assert!(!s.allow_rollback, "production forbids rollback by default");
    }

    #[test]
    fn defaults_without_a_file() {
        let s = Settings::resolve(None, &Overrides::default()).unwrap();
        assert_eq!(s.environment, "development");
        assert_eq!(s.url, "http://127.0.0.1:8123");
        assert_eq!(s.database.as_str(), "default");
        assert_eq!(s.history_table.as_str(), "schema_migrations");
        assert_eq!(s.max_file_size, 1024 * 1024);
        assert_eq!(s.on_cluster, OnClusterMode::Auto);
        assert_eq!(s.password, PasswordSource::None);
    }

    #[test]
    fn rejects_unknown_keys_environments_and_bad_names() {
        let err = FileConfig::parse(Path::new("c.yaml"), "migrations:\n  dirr: x\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("c.yaml: migrations: unknown field `dirr`"),
            "{msg}"
        );
        assert!(msg.contains("line 2"), "{msg}");

        let f = file();
        let over = Overrides {
            environment: Some("prodution".into()),
            ..Default::default()
        };
        let err = Settings::resolve(Some((Path::new("c.yaml"), &f)), &over).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment \"prodution\" is not defined in c.yaml (defined: production, staging)"
        );

        let over = Overrides {
            connection: ConnectionSection {
                database: Some("a`; DROP".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            Settings::resolve(None, &over),
            Err(ConfigError::Ident(_))
        ));
        let over = Overrides {
            migrations: MigrationsSection {
                variables: Some(BTreeMap::from([("cluster".to_string(), "x".to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            Settings::resolve(None, &over),
            Err(ConfigError::Var(_))
        ));
    }

    #[test]
    fn secrets_never_print() {
        let f = file();
        let s = Settings::resolve(Some((Path::new("c.yaml"), &f)), &Overrides::default()).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("***"));
        assert!(matches!(&s.password, PasswordSource::Inline(p) if p.expose() == "hunter2"));
    }
}
