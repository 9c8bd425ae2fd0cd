//! The command line: arguments ([`args`]), dispatch ([`run`]), one module
//! per command ([`commands`]), output and exit codes. This is the binary's
//! edge; the engine lives in the library.

pub mod args;
mod commands;
pub mod error;
pub mod logging;
mod output;
mod targets;

use std::path::PathBuf;

use chmigrate::config::{
    ConnectionSection, DEFAULT_CONFIG_FILE, FileConfig, MigrationsSection, Overrides, Secret,
    Settings,
};
use chmigrate::engine::TargetSpec;
use chmigrate::engine::maintenance::Resolution;
use chmigrate::model::diagnostic::{self, Diagnostic};
use chmigrate::model::version::Version;
use chmigrate::plan::validate::validate_offline;
use chmigrate::source::{self, Loaded};
use chmigrate::sql::statement::OnClusterMode;

pub use args::{BackupArg, BackupsAction, Cli, Command, Global, LogFormat, OnClusterArg};
pub use error::{CliError, exit};
pub use output::Format;

/// The configuration file named by `--config`, else the first of
/// `./chmigrate.yaml` and the seed framework's `./migration-config.yml`,
/// `./configs/migration-config.yml` that exists, loaded.
pub(crate) fn config_file(g: &Global) -> Result<Option<(PathBuf, FileConfig)>, CliError> {
    let path = match &g.config {
        Some(p) => Some(p.clone()),
        None => default_config_path(),
    };
    match path {
        Some(p) => {
            let file = FileConfig::load(&p).map_err(|e| CliError::Invalid(e.to_string()))?;
            for w in &file.warnings {
                eprintln!("warning: {w}");
            }
            Ok(Some((p, file)))
        }
        None => Ok(None),
    }
}

/// The configuration file used when `--config` names none.
pub(crate) fn default_config_path() -> Option<PathBuf> {
    std::iter::once(DEFAULT_CONFIG_FILE)
        .chain(chmigrate::config::seed::SEED_CONFIG_FILES.iter().copied())
        .map(PathBuf::from)
        .find(|p| p.is_file())
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
            variables: (!g.vars.is_empty() || !g.ident_vars.is_empty())
                .then(|| g.vars.iter().chain(&g.ident_vars).cloned().collect()),
            identifier_variables: (!g.ident_vars.is_empty())
                .then(|| g.ident_vars.iter().map(|(k, _)| k.clone()).collect()),
            rollback_strategy: g.rollback_strategy,
            parallel: g.parallel,
            lock_wait: g.lock_wait,
            lock_lease: g.lock_lease,
            backup: g.backup.map(|b| match b {
                BackupArg::None => chmigrate::ledger::backups::BackupPolicy::None,
                BackupArg::Freeze => chmigrate::ledger::backups::BackupPolicy::Freeze,
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
    use commands::{
        apply, authoring, backups, doctor, drift, ledger, migrate, profile, repair, status, test,
        validate,
    };
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
        Command::Init { database, force } => authoring::init(
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
        } => authoring::new(&settings, &name, template, timestamp, format),
        Command::Create {
            name,
            template,
            timestamp,
        } => authoring::new(&settings, &name, template, timestamp, format),
        Command::TestConnection => block_on(doctor::test_connection(&settings, format)),
        Command::Validate {
            online,
            require_rollback,
            check_conflicts,
            check_syntax,
        } => {
            let mut settings = settings.clone();
            settings.require_rollback |= require_rollback;
            settings.check_syntax |= check_syntax;
            if online || check_conflicts {
                block_on(validate::online(&settings, check_conflicts, format))
            } else {
                validate::offline(&settings, format)
            }
        }
        Command::Resolve { migration } => authoring::resolve(&settings, &migration, format),
        Command::Plan { offline: true, to } => {
            let to = to
                .as_deref()
                .map(|v| parse_version("--to", v))
                .transpose()?;
            migrate::plan_offline(&settings, to, format)
        }
        Command::Plan { offline: false, to } => {
            let spec = spec(to.as_deref())?;
            block_on(migrate::migrate(&settings, spec, true, format))
        }
        Command::Migrate {
            to,
            version,
            dry_run,
        } => {
            let spec = match version {
                Some(v) => TargetSpec::Only(parse_version("--version", &v)?),
                None => spec(to.as_deref())?,
            };
            block_on(migrate::migrate(
                &settings,
                spec,
                dry_run || settings.dry_run,
                format,
            ))
        }
        Command::Rollback {
            manual: true,
            version: Some(version),
            reason,
            ..
        } => {
            let v = parse_version("--version", &version)?;
            block_on(repair::manual_rollback(&settings, v, reason, format))
        }
        Command::Rollback {
            to,
            steps,
            dry_run,
            version,
            ..
        } => {
            // The seed framework's `rollback --version N` means "back to N".
            let spec = match (to, version, steps) {
                (Some(v), _, _) => TargetSpec::Version(parse_version("--to", &v)?),
                (None, Some(v), _) => TargetSpec::Version(parse_version("--version", &v)?),
                (None, None, n) => TargetSpec::StepsBack(n.unwrap_or(1)),
            };
            block_on(migrate::migrate(
                &settings,
                spec,
                dry_run || settings.dry_run,
                format,
            ))
        }
        Command::Status { show_rollback } => {
            block_on(status::status(&settings, show_rollback, format))
        }
        Command::Test {
            migration,
            rollback,
            keep,
        } => {
            let only = match migration {
                Some(v) => Some(migration_ref("--migration", &v)?),
                None => None,
            };
            block_on(test::test(&settings, only, rollback, keep, format))
        }
        Command::History => block_on(status::history(&settings, format)),
        Command::Baseline {
            version: Some(version),
            ..
        } => {
            let v = parse_version("--version", &version)?;
            block_on(repair::baseline(&settings, v, format))
        }
        Command::Baseline {
            version: None,
            pillar_table,
            ..
        } => {
            let table = chmigrate::sql::ident::Ident::new("--pillar-table", &pillar_table)
                .map_err(|e| CliError::Invalid(e.to_string()))?;
            block_on(repair::adopt_pillar(&settings, &table, format))
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
                    Some(Resolution {
                        version: parse_version("--version", &v)?,
                        statement: n,
                        took_effect: done,
                    })
                }
                _ => None,
            };
            block_on(repair::repair(&settings, resolve, format))
        }
        Command::Unlock => block_on(repair::unlock(&settings, format)),
        Command::SyncHosts { host, dry_run } => block_on(drift::sync_hosts(
            &settings,
            host.as_deref(),
            dry_run,
            format,
        )),
        Command::Clean {
            older_than,
            dry_run,
        } => {
            let age = chmigrate::clock::parse_age(&older_than)
                .map_err(|e| CliError::Invalid(format!("--older-than: {e}")))?;
            block_on(ledger::clean(&settings, age, dry_run, format))
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
        Command::Doctor => block_on(doctor::doctor(&settings, format)),
        Command::Export { file } => block_on(ledger::export(&settings, &file, format)),
        Command::Import { file } => block_on(ledger::import(&settings, &file, format)),
        Command::Apply {
            files,
            forbid_rollback,
            allow_urls,
            require_tls,
        } => block_on(apply::apply(
            &files,
            format,
            &chmigrate::k8s::reconcile::Policy {
                forbid_rollback,
                environment: None,
                always_freeze: matches!(cli.global.backup, Some(BackupArg::Freeze)),
                default_rollback_strategy: cli.global.rollback_strategy,
                default_parallel: cli.global.parallel,
                allowed_urls: allow_urls,
                require_tls,
            },
        )),
        Command::Render {
            set,
            namespace,
            labels,
            out,
            configmap,
        } => authoring::render(&settings, set, namespace, labels, out, configmap, format),
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
            let yaml = chmigrate::k8s::crd::crds_yaml().map_err(|e| CliError::Failed(e.into()))?;
            print!("{yaml}");
            Ok(())
        }
        Command::Report {
            performance: true, ..
        } => block_on(profile::report_performance(&settings, format)),
        Command::Report { output, .. } => {
            block_on(ledger::report(&settings, format, output.as_deref()))
        }
        Command::Profile { migration } => {
            let v = migration_ref("--migration", &migration)?;
            block_on(profile::profile(&settings, v, format))
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

pub(crate) fn parse_version(flag: &str, v: &str) -> Result<Version, CliError> {
    Version::parse(v.strip_prefix(['V', 'v']).unwrap_or(v))
        .map_err(|e| CliError::Invalid(format!("{flag}: {e}")))
}

/// A migration named by version (`3`, `V3`) or by file name
/// (`V3__create_events.sql`, `migrations/V3__create_events.sql`,
/// `20250528120000_create_users_table.exs`): its version.
pub(crate) fn migration_ref(flag: &str, v: &str) -> Result<Version, CliError> {
    let name = std::path::Path::new(v)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(v);
    match source::version_of_file_name(name) {
        Ok(Some(version)) => Ok(version),
        Ok(None) => parse_version(flag, v),
        Err(why) => Err(CliError::Invalid(format!("{flag}: {why}"))),
    }
}

fn spec(to: Option<&str>) -> Result<TargetSpec, CliError> {
    Ok(match to {
        None => TargetSpec::Latest,
        Some(v) => TargetSpec::Version(parse_version("--to", v)?),
    })
}

/// Connects to the settings' target and reads its ledger (empty when it has
/// none yet); errors as the command reports them.
pub(crate) async fn connect_and_read(
    settings: &Settings,
    format: Format,
) -> Result<
    (
        chmigrate::runtime::Session,
        Vec<chmigrate::ledger::LedgerEntry>,
    ),
    CliError,
> {
    let fail = error::engine(format);
    let session = chmigrate::engine::connect(settings).await.map_err(&fail)?;
    let history = chmigrate::runtime::store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(|e| fail(e.into()))?;
    Ok((session, history))
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
/// What the sources warn about (files not read, mixed-case `-- Rollback:`
/// lines) is logged, never silent.
pub(crate) fn loaded_or_fail(
    loaded: Loaded,
    format: Format,
) -> Result<Vec<chmigrate::Migration>, CliError> {
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
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
        chmigrate::model::strategy::resolve(&loaded.migrations, settings.rollback_strategy);
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
        chmigrate::plan::validate::require_rollback(&chmigrate::model::strategy::resolve(
            &written.migrations,
            chmigrate::model::strategy::RollbackStrategy::Script,
        ))
    });
    let loaded = with_strategy(written, settings);
    let warnings = loaded
        .warnings
        .iter()
        .map(|w| Diagnostic::warning(Some(w.location.clone()), w.kind.to_string()));
    let mut diags: Vec<Diagnostic> = warnings.collect();
    diags.extend(validate_offline(
        &loaded.migrations,
        &loaded.errors,
        &settings.prepare_settings(),
        &settings.policy(),
    ));
    diags.extend(rollback.unwrap_or_default());
    if settings.check_syntax {
        diags.extend(chmigrate::plan::validate::syntax(&loaded.migrations));
    }
    diagnostic::sort(&mut diags);
    (loaded, diags)
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
