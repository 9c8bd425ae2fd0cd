//! `chmigrate backups list|prune`: the freeze backups the ledger records,
//! and removing old ones on every host that has them.

use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine::maintenance;
use chmigrate::engine::{self, RunContext, StopFlag};
use chmigrate::ledger::backups::{self, Backup};

use crate::cli::connect_and_read;
use crate::cli::error::{self, CliError};
use crate::cli::output::{self, Format};

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
    let (_, history) = connect_and_read(settings, format).await?;
    let all = backups::list(&history);
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
/// has them and records each removal (see
/// [`chmigrate::engine::maintenance::prune_backups`]).
pub async fn prune(
    settings: &Settings,
    older_than_s: u64,
    forget: bool,
    format: Format,
) -> Result<(), CliError> {
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let ctx = RunContext::local(StopFlag::default());
    let done = maintenance::prune_backups(&session, settings, &ctx, older_than_s, forget)
        .await
        .map_err(&fail)?;
    let (pruned, kept) = (done.removed, done.kept);
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
