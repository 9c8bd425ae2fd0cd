//! The ledger as a whole: `export`, `import`, `clean` and `report`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine::maintenance;
use chmigrate::engine::{self, RunContext, StopFlag};
use chmigrate::ledger::LedgerEntry;
use chmigrate::runtime::store::now_us;

use crate::cli::connect_and_read;
use crate::cli::error::{self, CliError};
use crate::cli::output::{self, Format};

/// The export file.
#[derive(Debug, Serialize, Deserialize)]
pub struct Export {
    pub format: String,
    pub database: String,
    pub table: String,
    pub exported_at_us: u64,
    pub entries: Vec<LedgerEntry>,
}

pub const EXPORT_FORMAT: &str = "chmigrate-ledger/v1";

pub async fn export(settings: &Settings, file: &Path, format: Format) -> Result<(), CliError> {
    let (_, entries) = connect_and_read(settings, format).await?;
    let doc = Export {
        format: EXPORT_FORMAT.into(),
        database: settings.database.as_str().into(),
        table: settings.history_table.as_str().into(),
        exported_at_us: now_us(),
        entries,
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| CliError::Failed(e.into()))?;
    std::fs::write(file, text)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", file.display())))?;
    output::print_message(
        format,
        &format!(
            "exported {} event(s) to {}",
            doc.entries.len(),
            file.display()
        ),
        json!({ "ok": true, "events": doc.entries.len(), "file": file.display().to_string() }),
    );
    Ok(())
}

pub async fn import(settings: &Settings, file: &Path, format: Format) -> Result<(), CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Invalid(format!("{}: cannot read: {e}", file.display())))?;
    let doc: Export = serde_json::from_str(&text).map_err(|e| {
        CliError::Invalid(format!(
            "{}: not a chmigrate ledger export: {e}",
            file.display()
        ))
    })?;
    if doc.format != EXPORT_FORMAT {
        return Err(CliError::Invalid(format!(
            "{}: format {:?} is not {EXPORT_FORMAT:?}",
            file.display(),
            doc.format
        )));
    }
    let fail = error::engine(format);
    maintenance::check_import(&file.display().to_string(), &doc.entries).map_err(&fail)?;
    let session = engine::connect(settings).await.map_err(&fail)?;
    let n = maintenance::import(
        &session,
        settings,
        &RunContext::local(StopFlag::default()),
        &file.display().to_string(),
        &doc.entries,
    )
    .await
    .map_err(&fail)?;
    output::print_message(
        format,
        &format!("imported {n} event(s) from {}", file.display()),
        json!({ "ok": true, "events": n }),
    );
    Ok(())
}

pub async fn report(
    settings: &Settings,
    format: Format,
    output: Option<&Path>,
) -> Result<(), CliError> {
    use chmigrate::ledger::report::{ReportFormat, ReportMeta, render};
    let (session, history) = connect_and_read(settings, format).await?;
    let meta = ReportMeta {
        title: format!("chmigrate history of {}", session.cfg.ledger.qualified()),
        target: format!(
            "{} database {}{}",
            settings.url,
            settings.database.as_str(),
            settings
                .cluster
                .as_ref()
                .map(|c| format!(" cluster {}", c.as_str()))
                .unwrap_or_default()
        ),
        generated_at_us: now_us(),
    };
    let fmt = match format {
        Format::Html => ReportFormat::Html,
        Format::Json => ReportFormat::Json,
        Format::Markdown | Format::Table => ReportFormat::Markdown,
    };
    let text = render(&history, &meta, fmt);
    match output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| {
                CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", path.display()))
            })?;
            eprintln!("report written to {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// `clean --older-than D [--dry-run]`: deletes ledger events older than
/// `age_s` that no longer define the current state, under the lock.
pub async fn clean(
    settings: &Settings,
    age_s: u64,
    dry_run: bool,
    format: Format,
) -> Result<(), CliError> {
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let ctx = RunContext::local(StopFlag::default());
    let done = maintenance::clean(&session, settings, &ctx, age_s, dry_run)
        .await
        .map_err(&fail)?;
    if dry_run {
        output::print_message(
            format,
            &format!(
                "would remove {} of {} event(s); nothing was changed",
                done.removed, done.events
            ),
            json!({ "ok": true, "dry_run": true, "removable": done.removed, "events": done.events }),
        );
    } else {
        output::print_message(
            format,
            &format!(
                "removed {} of {} event(s) that no longer define the current state",
                done.removed, done.events
            ),
            json!({ "ok": true, "removed": done.removed, "events": done.events }),
        );
    }
    Ok(())
}
