//! `status` and `history`: the target read without the lock.

use serde::Serialize;

use chmigrate::config::Settings;
use chmigrate::engine::{self, inspect};
use chmigrate::ledger::pending::PendingTask;
use chmigrate::model::version::Version;
use chmigrate::runtime::lock::LockInfo;

use crate::cli::connect_and_read;
use crate::cli::error::{self, CliError};
use crate::cli::load;
use crate::cli::output::{self, Format, opt_version};

/// What `status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub url: String,
    pub server_version: String,
    pub database: String,
    pub cluster: Option<String>,
    pub environment: String,
    pub applied_version: Option<Version>,
    pub latest_version: Option<Version>,
    pub pending: Vec<Version>,
    pub problems: Vec<String>,
    pub lock: Option<LockInfo>,
    pub hosts: Vec<HostState>,
    pub pending_hosts: Vec<PendingTask>,
    pub migrations: Vec<MigrationStatus>,
}

#[derive(Debug, Serialize)]
pub struct HostState {
    pub host: String,
    pub shard: u32,
    pub replica: u32,
    pub state: String,
    /// How the host differs from the applied migrations' schema.
    pub drift: Vec<chmigrate::plan::drift::Drift>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MigrationStatus {
    pub version: Version,
    pub description: String,
    /// The header's `-- Migration:`, `-- Author:`, `-- Created:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub state: String,
    /// With `--show-rollback`, for applied migrations: whether and how it
    /// can be rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

pub async fn status(
    settings: &Settings,
    show_rollback: bool,
    format: Format,
) -> Result<(), CliError> {
    let loaded = load(settings);
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let seen = inspect::inspect(&session, settings, &loaded.migrations)
        .await
        .map_err(&fail)?;
    let snap = &seen.snapshot;
    let mut problems: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    let pending = match &snap.pending {
        Ok(p) => p.clone(),
        Err(ps) => {
            problems.extend(ps.iter().map(ToString::to_string));
            Vec::new()
        }
    };
    let hosts = seen
        .hosts
        .iter()
        .map(|h| {
            let id = h.id();
            let waiting = snap.pending_on(&id);
            let drift = seen.drift.report.host(&id);
            HostState {
                state: if !waiting.is_empty() {
                    format!("pending: {}", waiting.join(", "))
                } else if let Some(d) = drift {
                    super::drift::host_state(d)
                } else {
                    "in sync".into()
                },
                drift: drift.map(|d| d.drift.clone()).unwrap_or_default(),
                unreachable: drift.and_then(|d| d.unreachable.clone()),
                host: id,
                shard: h.shard_num,
                replica: h.replica_num,
            }
        })
        .collect();
    let vars = settings.prepare_settings().variables;
    let migrations = snap
        .versions
        .iter()
        .map(|row| {
            let rollback = (show_rollback && seen.state.is_applied(&row.version)).then(|| {
                match loaded.migrations.iter().find(|m| m.version == row.version) {
                    Some(m) => {
                        let s = chmigrate::model::strategy::rollback_summary(
                            m,
                            settings.allow_rollback,
                            &settings.environment,
                        );
                        vars.substitute(&s).unwrap_or(s)
                    }
                    None => "no: its source is missing".to_string(),
                }
            });
            let source = loaded.migrations.iter().find(|m| m.version == row.version);
            MigrationStatus {
                version: row.version.clone(),
                description: row.description.clone(),
                migration: source.and_then(|m| m.name.clone()),
                author: source.and_then(|m| m.author.clone()),
                created: source.and_then(|m| m.created.clone()),
                state: row.state.to_string(),
                rollback,
            }
        })
        .collect();
    let st = Status {
        url: settings.url.clone(),
        server_version: session.server.version.clone(),
        database: settings.database.as_str().to_string(),
        cluster: settings.cluster.as_ref().map(|c| c.as_str().to_string()),
        environment: settings.environment.clone(),
        applied_version: snap.applied_version.clone(),
        latest_version: snap.latest_version.clone(),
        pending,
        problems,
        lock: seen.lock.clone(),
        hosts,
        pending_hosts: seen.still_pending.clone(),
        migrations,
    };
    print_status(format, &st);
    Ok(())
}

fn print_status(format: Format, st: &Status) {
    match format {
        Format::Json => output::print_json_value(&serde_json::to_value(st).unwrap_or_default()),
        Format::Table | Format::Html | Format::Markdown => {
            println!("Target:    {} (ClickHouse {})", st.url, st.server_version);
            println!(
                "Database:  {}{}   environment {}",
                st.database,
                st.cluster
                    .as_ref()
                    .map(|c| format!(" on cluster {c}"))
                    .unwrap_or_default(),
                st.environment
            );
            println!(
                "Applied:   {}   latest: {}   pending: {}",
                opt_version(&st.applied_version),
                opt_version(&st.latest_version),
                st.pending.len()
            );
            println!(
                "Lock:      {}",
                st.lock.as_ref().map_or("free".into(), |l| l
                    .describe(chmigrate::runtime::store::now_us()))
            );
            if !st.hosts.is_empty() {
                println!("\nHOST                   SHARD  REPLICA  STATE");
                for h in &st.hosts {
                    println!(
                        "{:<22} {:>5}  {:>7}  {}",
                        h.host, h.shard, h.replica, h.state
                    );
                }
                if st.hosts.iter().any(|h| h.drift.len() > 1) {
                    println!("\nDRIFT (repair with `chmigrate sync-hosts`)");
                    for h in &st.hosts {
                        for d in &h.drift {
                            println!("{:<22} {d}", h.host);
                        }
                    }
                }
            }
            println!("\nVERSION          STATE                          DESCRIPTION");
            for m in &st.migrations {
                println!(
                    "{:<16} {:<30} {}",
                    format!("V{}", m.version),
                    m.state,
                    m.description
                );
                let audit = [
                    ("migration", &m.migration),
                    ("author", &m.author),
                    ("created", &m.created),
                ]
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
                .collect::<Vec<_>>();
                if !audit.is_empty() {
                    println!("{:<16} {}", "", audit.join("   "));
                }
                if let Some(r) = &m.rollback {
                    println!("{:<16} rollback: {r}", "");
                }
            }
            for p in &st.problems {
                println!("problem: {p}");
            }
        }
    }
}

pub async fn history(settings: &Settings, format: Format) -> Result<(), CliError> {
    let (_, history) = connect_and_read(settings, format).await?;
    output::print_history(format, &history);
    Ok(())
}
