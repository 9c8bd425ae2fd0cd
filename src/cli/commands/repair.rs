//! The commands a person uses to fix the record: `baseline`, `repair`,
//! `rollback --manual` and `unlock`. Each is one engine call; this prints
//! what it did.

use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine::maintenance::{self, Resolution};
use chmigrate::engine::{self, RunContext, StopFlag};
use chmigrate::model::version::Version;
use chmigrate::runtime::store::now_us;

use crate::cli::error::{self, CliError};
use crate::cli::output::{self, Format};
use crate::cli::{load, loaded_or_fail};

fn ctx() -> RunContext {
    RunContext::local(StopFlag::default())
}

pub async fn baseline(
    settings: &Settings,
    version: Version,
    format: Format,
) -> Result<(), CliError> {
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    maintenance::baseline(&session, settings, &ctx(), &version)
        .await
        .map_err(&fail)?;
    output::print_message(
        format,
        &format!("baselined at V{version}"),
        json!({ "ok": true, "baseline": version }),
    );
    Ok(())
}

/// `baseline --from-pillar`: adopts what Pillar's table lists as applied.
pub async fn adopt_pillar(
    settings: &Settings,
    table: &chmigrate::sql::ident::Ident,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let done = maintenance::adopt_pillar(&session, settings, &ctx(), &migrations, table)
        .await
        .map_err(&fail)?;
    let source = format!("{}.{}", settings.database.as_str(), table.as_str());
    let text = if done.is_empty() {
        format!("nothing to adopt: every migration {source} lists is already recorded")
    } else {
        format!(
            "adopted {} migration(s) from {source} as applied: {}",
            done.len(),
            done.iter()
                .map(|v| format!("V{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    output::print_message(
        format,
        &text,
        json!({ "ok": true, "adopted": done, "from": source }),
    );
    Ok(())
}

/// `repair`: accept changed checksums, or record a decision about a statement.
pub async fn repair(
    settings: &Settings,
    resolve: Option<Resolution>,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let done = maintenance::repair(&session, settings, &ctx(), &migrations, resolve)
        .await
        .map_err(&fail)?;
    let text = if done.is_empty() {
        "nothing to repair".to_string()
    } else {
        done.join("\n")
    };
    output::print_message(format, &text, json!({ "ok": true, "repaired": done }));
    Ok(())
}

/// `rollback --manual --version V`: records that a person already undid V
/// by hand (nothing runs).
pub async fn manual_rollback(
    settings: &Settings,
    version: Version,
    reason: Option<String>,
    format: Format,
) -> Result<(), CliError> {
    let migrations = loaded_or_fail(load(settings), format)?;
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    maintenance::manual_rollback(&session, settings, &ctx(), &migrations, &version, reason)
        .await
        .map_err(&fail)?;
    output::print_message(
        format,
        &format!("V{version} recorded as rolled back by hand (nothing was run)"),
        json!({ "ok": true, "manual_rollback": version.to_string() }),
    );
    Ok(())
}

pub async fn unlock(settings: &Settings, format: Format) -> Result<(), CliError> {
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    match engine::unlock(&session, settings, &ctx())
        .await
        .map_err(&fail)?
    {
        None => output::print_message(
            format,
            "no lock is held",
            json!({ "ok": true, "released": false }),
        ),
        Some(info) => output::print_message(
            format,
            &format!("lock released (was {})", info.describe(now_us())),
            json!({ "ok": true, "released": true, "previous": info }),
        ),
    }
    Ok(())
}
