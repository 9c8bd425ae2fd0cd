//! The seed framework's `migration-config.yml`, read as it is and mapped
//! onto chmigrate's configuration (`--config migration-config.yml`).
//!
//! | seed key | chmigrate |
//! |---|---|
//! | `database.host`, `.port`, `.secure` | `connection.url` (`http://host:port`, `https://` with `secure: true`; the native ports 9000/9440 become 8123/8443, with a warning) |
//! | `database.database`, `.user`, `.password` | `connection.database`, `.user`, `.password` (`""`: none) |
//! | `database.verify` | `connection.tls_verify` |
//! | `migration.table_name` | `migrations.history_table` |
//! | `migration.rollback_enabled` | `migrations.allow_rollback` |
//! | `migration.parallel_execution` | `migrations.parallel` (`true`: 4) |
//! | `migration.dry_run` | `migrations.dry_run` |
//! | `environments.NAME.database/user/password/host/port/secure/verify/rollback_enabled` | `environments.NAME` |
//! | `validation.check_syntax` | `migrations.check_syntax` |
//! | `validation.check_rollback` | `migrations.require_rollback` |
//! | `validation.max_migration_size` | `migrations.max_file_size` |
//! | `validation.check_dependencies` | always on |
//! | `logging.level` (`INFO`, …), `logging.file` | `logging.level`, `logging.file` |
//! | `security.use_ssl`, `.verify_cert`, `.backup_before_migration` | `https://`, `tls_verify`, `backup: freeze` |
//!
//! Every other key is reported by name as meaning nothing here. Without
//! `--env` the top-level `database:` section applies, as in the seed
//! framework: chmigrate calls that environment `default`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::{
    ConfigError, ConnectionSection, EnvSection, FileConfig, LogLevel, LoggingSection,
    MigrationsSection, Secret,
};
use crate::source::header::valid_environment_name;

/// Where the seed framework keeps its configuration, looked up (in this
/// order, after `chmigrate.yaml`) when no `--config` is given.
pub const SEED_CONFIG_FILES: &[&str] = &["migration-config.yml", "configs/migration-config.yml"];

/// The environment that stands for the seed's top level (no `--env`).
pub const SEED_DEFAULT_ENVIRONMENT: &str = "default";

/// How many migrations run at once for `parallel_execution: true`.
pub const SEED_PARALLEL: usize = 4;

/// Whether a parsed YAML document is the seed framework's format: its top
/// level has `database:` (a section), `migration:` or `validation:`.
pub fn is_seed_format(doc: &Value) -> bool {
    let Some(map) = doc.as_mapping() else {
        return false;
    };
    map.contains_key("migration")
        || map.contains_key("validation")
        || map.get("database").is_some_and(Value::is_mapping)
}

/// The URL parts of a `database:` section (or an environment's).
#[derive(Debug, Clone, Default)]
struct Endpoint {
    host: Option<String>,
    port: Option<u64>,
    secure: Option<bool>,
}

struct Mapper<'a> {
    path: &'a Path,
    warnings: Vec<String>,
}

impl Mapper<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Parse {
            path: self.path.to_path_buf(),
            message: format!("{key}: {}", message.into()),
        }
    }

    fn ignored(&mut self, key: &str, why: &str) {
        self.warnings
            .push(format!("{}: {key}: {why}; ignored", self.path.display()));
    }

    fn string(&self, key: &str, v: &Value) -> Result<String, ConfigError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.bad(key, "expected a string")),
        }
    }

    fn boolean(&self, key: &str, v: &Value) -> Result<bool, ConfigError> {
        v.as_bool()
            .ok_or_else(|| self.bad(key, "expected true or false"))
    }

    fn number(&self, key: &str, v: &Value) -> Result<u64, ConfigError> {
        v.as_u64()
            .ok_or_else(|| self.bad(key, "expected a whole number"))
    }

    fn section<'v>(&self, key: &str, v: &'v Value) -> Result<&'v Mapping, ConfigError> {
        match v {
            Value::Mapping(m) => Ok(m),
            _ => Err(self.bad(key, "expected a section of keys")),
        }
    }

    /// One key of a `database:` section or an environment; `false` when
    /// the key is not a connection key.
    fn connection_key(
        &mut self,
        key: &str,
        name: &str,
        v: &Value,
        conn: &mut ConnectionSection,
        ep: &mut Endpoint,
    ) -> Result<bool, ConfigError> {
        match name {
            "host" => ep.host = Some(self.string(key, v)?),
            "port" => ep.port = Some(self.number(key, v)?),
            "secure" => ep.secure = Some(self.boolean(key, v)?),
            "verify" => conn.tls_verify = Some(self.boolean(key, v)?),
            "database" => conn.database = Some(self.string(key, v)?),
            "user" => conn.user = Some(self.string(key, v)?),
            "password" => {
                let p = self.string(key, v)?;
                if !p.is_empty() {
                    conn.password = Some(Secret::new(p));
                }
            }
            "cluster" => conn.cluster = Some(self.string(key, v)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `http[s]://host:port` from the parts, the native ports turned into
    /// HTTP ones with a warning.
    fn url(&mut self, key: &str, ep: &Endpoint) -> Option<String> {
        if ep.host.is_none() && ep.port.is_none() && ep.secure.is_none() {
            return None;
        }
        let secure = ep.secure.unwrap_or(false);
        let http = if secure { 8443 } else { 8123 };
        let port = match ep.port {
            Some(p @ (9000 | 9440)) => {
                self.warnings.push(format!(
                    "{}: {key}.port: {p} is ClickHouse's native TCP port; chmigrate speaks HTTP (port 8123, or 8443 with secure: true), so it connects to port {http}; write port: {http} to silence this",
                    self.path.display(),
                ));
                http
            }
            Some(p) => p,
            None => http,
        };
        let host = ep.host.clone().unwrap_or_else(|| "localhost".into());
        let scheme = if secure { "https" } else { "http" };
        Some(format!("{scheme}://{host}:{port}"))
    }
}

/// Maps the seed framework's configuration document onto chmigrate's.
pub fn from_seed(path: &Path, doc: &Value) -> Result<FileConfig, ConfigError> {
    let mut m = Mapper {
        path,
        warnings: Vec::new(),
    };
    let top = m.section("(top level)", doc)?.clone();
    let mut file = FileConfig::default();
    let mut top_ep = Endpoint::default();
    let mut env_sections: Vec<(String, Mapping)> = Vec::new();
    for (k, v) in &top {
        let key = m.string("(top level)", k)?;
        match key.as_str() {
            "database" => {
                for (k2, v2) in m.section("database", v)? {
                    let name = m.string("database", k2)?;
                    let full = format!("database.{name}");
                    if !m.connection_key(&full, &name, v2, &mut file.connection, &mut top_ep)? {
                        m.ignored(&full, "has no meaning in chmigrate");
                    }
                }
            }
            "migration" => {
                for (k2, v2) in m.section("migration", v)? {
                    let name = m.string("migration", k2)?;
                    let full = format!("migration.{name}");
                    migration_key(&mut m, &full, &name, v2, &mut file.migrations)?;
                }
            }
            "environments" => {
                for (k2, v2) in m.section("environments", v)? {
                    let name = m.string("environments", k2)?;
                    if !valid_environment_name(&name) {
                        return Err(m.bad(
                            &format!("environments.{name}"),
                            "invalid environment name (use lowercase letters, digits, '-' or '_')",
                        ));
                    }
                    let section = match v2 {
                        Value::Null => Mapping::new(),
                        other => m.section(&format!("environments.{name}"), other)?.clone(),
                    };
                    env_sections.push((name, section));
                }
            }
            "validation" => {
                for (k2, v2) in m.section("validation", v)? {
                    let name = m.string("validation", k2)?;
                    let full = format!("validation.{name}");
                    let migs = &mut file.migrations;
                    match name.as_str() {
                        "check_syntax" => migs.check_syntax = Some(m.boolean(&full, v2)?),
                        "check_rollback" => migs.require_rollback = Some(m.boolean(&full, v2)?),
                        "max_migration_size" => migs.max_file_size = Some(m.number(&full, v2)?),
                        "check_dependencies" => {
                            if !m.boolean(&full, v2)? {
                                m.ignored(
                                    &full,
                                    "chmigrate always checks dependencies (missing and cyclic ones are refused before anything runs)",
                                );
                            }
                        }
                        _ => m.ignored(&full, "has no meaning in chmigrate"),
                    }
                }
            }
            "logging" => {
                for (k2, v2) in m.section("logging", v)? {
                    let name = m.string("logging", k2)?;
                    let full = format!("logging.{name}");
                    logging_key(&mut m, &full, &name, v2, &mut file.logging)?;
                }
            }
            "security" => {
                for (k2, v2) in m.section("security", v)? {
                    let name = m.string("security", k2)?;
                    let full = format!("security.{name}");
                    match name.as_str() {
                        "use_ssl" => top_ep.secure = Some(m.boolean(&full, v2)?),
                        "verify_cert" => {
                            file.connection.tls_verify = Some(m.boolean(&full, v2)?);
                        }
                        "backup_before_migration" => {
                            if m.boolean(&full, v2)? {
                                file.migrations.backup =
                                    Some(crate::ledger::backups::BackupPolicy::Freeze);
                            }
                        }
                        "audit_logging" => m.ignored(
                            &full,
                            "chmigrate always records every step in its ledger (`history`, `report`)",
                        ),
                        _ => m.ignored(&full, "has no meaning in chmigrate"),
                    }
                }
            }
            _ => m.ignored(&key, "has no meaning in chmigrate"),
        }
    }
    // The port's warning first: it is about the file's first section.
    let before = m.warnings.len();
    file.connection.url = m.url("database", &top_ep);
    let url_warnings = m.warnings.split_off(before);
    m.warnings.splice(0..0, url_warnings);
    for (name, section) in env_sections {
        let mut env = EnvSection::default();
        let mut ep = Endpoint::default();
        for (k, v) in &section {
            let key = m.string(&format!("environments.{name}"), k)?;
            let full = format!("environments.{name}.{key}");
            if m.connection_key(&full, &key, v, &mut env.connection, &mut ep)? {
                continue;
            }
            match key.as_str() {
                "rollback_enabled" => env.migrations.allow_rollback = Some(m.boolean(&full, v)?),
                "table_name" | "parallel_execution" | "dry_run" => {
                    migration_key(&mut m, &full, &key, v, &mut env.migrations)?;
                }
                _ => m.ignored(&full, "has no meaning in chmigrate"),
            }
        }
        if ep.host.is_some() || ep.port.is_some() || ep.secure.is_some() {
            // An environment's host, port or scheme completes the top level's.
            let merged = Endpoint {
                host: ep.host.or_else(|| top_ep.host.clone()),
                port: ep.port.or(top_ep.port),
                secure: ep.secure.or(top_ep.secure),
            };
            env.connection.url = m.url(&format!("environments.{name}"), &merged);
        }
        file.environments.insert(name, env);
    }
    if !file.environments.is_empty() {
        file.environments
            .entry(SEED_DEFAULT_ENVIRONMENT.to_string())
            .or_default();
        file.default_environment = Some(SEED_DEFAULT_ENVIRONMENT.to_string());
    }
    file.groups = BTreeMap::new();
    file.warnings = m.warnings;
    Ok(file)
}

fn migration_key(
    m: &mut Mapper<'_>,
    full: &str,
    name: &str,
    v: &Value,
    migs: &mut MigrationsSection,
) -> Result<(), ConfigError> {
    match name {
        "table_name" => migs.history_table = Some(m.string(full, v)?),
        "rollback_enabled" => migs.allow_rollback = Some(m.boolean(full, v)?),
        "parallel_execution" => {
            migs.parallel = Some(if m.boolean(full, v)? {
                SEED_PARALLEL
            } else {
                1
            });
        }
        "dry_run" => migs.dry_run = Some(m.boolean(full, v)?),
        "version_format" => {
            let f = m.string(full, v)?;
            if f != "V{version}__{description}" {
                m.ignored(
                    full,
                    "chmigrate reads V<version>__<description>.sql, <version>_<name>.up.sql/.down.sql, dbmate and Pillar .exs names; other formats",
                );
            }
        }
        _ => m.ignored(full, "has no meaning in chmigrate"),
    }
    Ok(())
}

fn logging_key(
    m: &mut Mapper<'_>,
    full: &str,
    name: &str,
    v: &Value,
    logging: &mut LoggingSection,
) -> Result<(), ConfigError> {
    match name {
        "level" => {
            let level = m.string(full, v)?;
            // Python's names: CRITICAL and WARNING as well.
            let level = if level.eq_ignore_ascii_case("critical") {
                "error".to_string()
            } else {
                level
            };
            logging.level = Some(LogLevel::parse(&level).map_err(|e| m.bad(full, e))?);
        }
        "file" => logging.file = Some(PathBuf::from(m.string(full, v)?)),
        "format" => {
            let f = m.string(full, v)?;
            match f.as_str() {
                "text" => logging.format = Some(super::LogFormat::Text),
                "json" => logging.format = Some(super::LogFormat::Json),
                _ => m.ignored(
                    full,
                    "a Python logging format string has no meaning in chmigrate (its log lines are `text` or `json`)",
                ),
            }
        }
        _ => m.ignored(full, "has no meaning in chmigrate"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, PasswordSource, Settings};

    /// The seed framework's README's configuration, verbatim.
    const SEED: &str = r#"
# Database Configuration
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

    fn resolve(f: &FileConfig, env: Option<&str>) -> Settings {
        Settings::resolve(
            Some((Path::new("cfg/migration-config.yml"), f)),
            &Overrides {
                environment: env.map(str::to_string),
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn the_seed_file_maps_onto_settings() {
        let f = FileConfig::parse(Path::new("cfg/migration-config.yml"), SEED).unwrap();
        let s = resolve(&f, None);
        assert_eq!(s.environment, "default");
        assert_eq!(s.url, "http://localhost:8123");
        assert_eq!(s.database.as_str(), "default");
        assert_eq!(s.user, "default");
        assert_eq!(s.password, PasswordSource::None);
        assert!(!s.tls_verify);
        assert_eq!(s.history_table.as_str(), "schema_migrations");
        assert!(s.allow_rollback && !s.dry_run && s.check_syntax && s.require_rollback);
        assert_eq!((s.parallel, s.max_file_size), (1, 1_048_576));
        assert_eq!(s.logging.level, LogLevel::Info);
        assert_eq!(s.logging.file, Some(PathBuf::from("cfg/migration.log")));

        let prod = resolve(&f, Some("production"));
        assert_eq!(
            (prod.database.as_str(), prod.user.as_str()),
            ("prod_db", "prod_user")
        );
        assert!(!prod.allow_rollback);
        let dev = resolve(&f, Some("development"));
        assert_eq!(dev.database.as_str(), "dev_db");
        assert!(dev.allow_rollback);

        let w = f.warnings.join("\n");
        assert!(
            w.contains("cfg/migration-config.yml: database.port: 9000 is ClickHouse's native TCP port; chmigrate speaks HTTP (port 8123, or 8443 with secure: true), so it connects to port 8123"),
            "{w}"
        );
        assert!(
            w.contains(
                "logging.format: a Python logging format string has no meaning in chmigrate"
            ),
            "{w}"
        );
        assert_eq!(f.warnings.len(), 2, "{w}");
    }

    #[test]
    fn unknown_keys_are_named_and_other_keys_mapped() {
        let text = "database:\n  host: ch.internal\n  port: 9440\n  secure: true\n  compression: lz4\nmigration:\n  parallel_execution: true\n  version_format: \"{version}.sql\"\nsecurity:\n  use_ssl: true\n  verify_cert: true\n  backup_before_migration: true\n  audit_logging: true\n  service_account: migration_service\nvalidation:\n  check_dependencies: false\nenvironments:\n  prod:\n    port: 8443\n    tier: gold\nextras: 1\n";
        let f = FileConfig::parse(Path::new("m.yml"), text).unwrap();
        let s = resolve(&f, None);
        assert_eq!(s.url, "https://ch.internal:8443");
        assert_eq!(s.parallel, SEED_PARALLEL);
        assert!(s.tls_verify);
        assert_eq!(s.backup, crate::ledger::backups::BackupPolicy::Freeze);
        let prod = resolve(&f, Some("prod"));
        assert_eq!(prod.url, "https://ch.internal:8443");
        assert!(!prod.allow_rollback, "prod is protected as production is");
        let w = f.warnings.join("\n");
        for key in [
            "database.compression",
            "database.port: 9440",
            "migration.version_format",
            "security.audit_logging",
            "security.service_account",
            "validation.check_dependencies",
            "environments.prod.tier",
            "m.yml: extras",
        ] {
            assert!(w.contains(key), "{key} not named in:\n{w}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, says) in [
            (
                "migration:\n  rollback_enabled: maybe\n",
                "migration.rollback_enabled: expected true or false",
            ),
            (
                "database:\n  port: http\n",
                "database.port: expected a whole number",
            ),
            (
                "migration: {}\nlogging:\n  level: LOUD\n",
                "logging.level: \"LOUD\"",
            ),
            (
                "environments:\n  Prod!: {}\nmigration: {}\n",
                "environments.Prod!",
            ),
        ] {
            let e = FileConfig::parse(Path::new("m.yml"), text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("m.yml: ") && e.contains(says), "{e}");
        }
    }
}
