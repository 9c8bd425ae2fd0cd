//! `chmigrate backups list|prune`: the freeze backups the ledger records,
//! and removing old ones on every host that has them.

use serde_json::json;

use chmigrate::backup::{self, Backup};
use chmigrate::config::Settings;
use chmigrate::runtime::backup::{hosts, unfreeze};
use chmigrate::runtime::store::{self, Writer};

use super::CliError;
use super::online::{connect, ledger_err, locked};
use super::output::{self, Format};

fn describe(b: &Backup) -> String {
    format!(
        "{}  V{}  {}.{}  {}  {} host(s){}",
        b.details.name,
        b.version,
        b.details.database,
        b.details.table,
        chmigrate::clock::format_us(b.taken_us),
        b.details.hosts.len(),
        if b.pruned { "  (pruned)" } else { "" }
    )
}

pub async fn list(settings: &Settings, format: Format) -> Result<(), CliError> {
    let session = connect(settings).await?;
    let history = store::read_if_exists(&session.conn, &session.cfg.ledger)
        .await
        .map_err(ledger_err)?;
    let all = backup::list(&history);
    match format {
        Format::Json => output::print_json_value(&json!({ "backups": all })),
        _ if all.is_empty() => println!("no backups recorded"),
        _ => {
            for b in &all {
                println!("{}", describe(b));
            }
        }
    }
    Ok(())
}

/// Removes backups taken more than `older_than_s` ago on every host that
/// has them and records each removal. With `forget`, records them as
/// removed without touching the hosts (a person deleted the folders; the
/// only way on servers without `UNFREEZE`, such as 18.16).
pub async fn prune(
    settings: &Settings,
    older_than_s: u64,
    forget: bool,
    format: Format,
) -> Result<(), CliError> {
    let session = connect(settings).await?;
    let cutoff = super::online::cutoff_us(older_than_s);
    let (pruned, kept) = locked(
        &session,
        settings,
        format,
        async |writer: &mut Writer, history| {
            let due: Vec<Backup> = backup::list(&history)
                .into_iter()
                .filter(|b| !b.pruned && b.taken_us <= cutoff)
                .collect();
            let targets = if due.is_empty() || forget {
                Vec::new()
            } else {
                hosts(&session)
                    .await
                    .map_err(|e| CliError::Failed(anyhow::anyhow!(e)))?
            };
            let mut pruned = Vec::new();
            let mut kept = Vec::new();
            for b in due {
                let failed = if forget {
                    Vec::new()
                } else {
                    unfreeze(&targets, &b.details).await
                };
                if failed.is_empty() {
                    writer
                        .write(|e| {
                            e.event = "backup_pruned".into();
                            e.version = b.version.clone();
                            e.details = json!({
                                "name": b.details.name,
                                "database": b.details.database,
                                "table": b.details.table,
                                "how": if forget { "removed by hand (--forget)" } else { "UNFREEZE on every host" },
                            })
                            .to_string();
                        })
                        .await
                        .map_err(ledger_err)?;
                    pruned.push(b);
                } else {
                    let why: Vec<String> = failed
                        .iter()
                        .map(|(h, e)| format!("{h}: {e}"))
                        .collect();
                    kept.push((b, why));
                }
            }
            Ok((pruned, kept))
        },
    )
    .await?;
    match format {
        Format::Json => output::print_json_value(&json!({
            "ok": kept.is_empty(),
            "pruned": pruned,
            "not_removed": kept.iter().map(|(b, why)| json!({"backup": b, "errors": why})).collect::<Vec<_>>(),
        })),
        _ => {
            for b in &pruned {
                println!("removed {}", describe(b));
            }
            for (b, why) in &kept {
                println!("NOT removed {}", describe(b));
                for w in why {
                    println!("  {w}");
                }
                println!(
                    "  remove shadow/{}/ under the data path of those hosts by hand, then run `chmigrate backups prune --forget`",
                    b.details.name
                );
            }
            println!(
                "{} backup(s) removed, {} not removed",
                pruned.len(),
                kept.len()
            );
        }
    }
    if kept.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!(
            "{} backup(s) could not be removed",
            kept.len()
        )))
    }
}
