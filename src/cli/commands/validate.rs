//! `validate`: every offline check, and with `--online` or
//! `--check-conflicts` the comparison with the target's ledger.

use chmigrate::config::Settings;
use chmigrate::engine;
use chmigrate::ledger::fold::TargetState;
use chmigrate::model::diagnostic::{self, Diagnostic};
use chmigrate::plan::prepare::prepare;
use chmigrate::plan::{Target, plan};

use crate::cli::connect_and_read;
use crate::cli::error::{self, CliError};
use crate::cli::output::{self, Format};
use crate::cli::validate_folder;

pub fn offline(settings: &Settings, format: Format) -> Result<(), CliError> {
    let (loaded, diags) = validate_folder(settings);
    output::print_validation(format, settings, loaded.migrations.len(), &diags);
    if diags.iter().any(Diagnostic::is_error) {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

pub async fn online(
    settings: &Settings,
    check_conflicts: bool,
    format: Format,
) -> Result<(), CliError> {
    let (loaded, mut diags) = validate_folder(settings);
    let (session, history) = connect_and_read(settings, format).await?;
    let state = TargetState::fold(&engine::events(&history).map_err(error::engine(format))?);
    if check_conflicts {
        diags.extend(chmigrate::plan::validate::conflicts(
            &loaded.migrations,
            &state,
            &history,
        ));
        diags.extend(chmigrate::plan::validate::duplicate_conflicts(
            &loaded.migrations,
            &loaded.duplicates,
            &state,
        ));
    }
    match plan(
        &loaded.migrations,
        &state,
        &Target::Latest,
        &settings.policy(),
    ) {
        Err(problems) => diags.extend(problems.into_iter().map(Diagnostic::from)),
        Ok(p) if check_conflicts && settings.parallel > 1 => {
            if let Ok(steps) = prepare(&p, &loaded.migrations, &settings.prepare_settings()) {
                diags.extend(same_table_diagnostics(&steps, &loaded.migrations, settings));
            }
        }
        Ok(_) => {}
    }
    // Every host against the applied migrations' schema (exit 5 on drift).
    let mut drifted = false;
    if settings.cluster.is_some() {
        let found = engine::drift::check(&session, settings, &loaded.migrations, &history)
            .await
            .map_err(error::engine(format))?;
        for line in super::drift::lines(&found.report) {
            drifted = true;
            diags.push(Diagnostic::error(
                None,
                format!("replica schema drift: {line} (repair with `chmigrate sync-hosts`)"),
            ));
        }
    }
    diagnostic::sort(&mut diags);
    diags.dedup();
    output::print_validation(format, settings, loaded.migrations.len(), &diags);
    let other = diags
        .iter()
        .filter(|d| !d.message.starts_with("replica schema drift: "))
        .any(Diagnostic::is_error);
    if other {
        Err(CliError::Reported)
    } else if drifted {
        Err(CliError::Drift)
    } else {
        Ok(())
    }
}

/// `--check-conflicts` with `parallel` > 1: pending neighbours that change
/// one table with no dependency between them.
fn same_table_diagnostics(
    steps: &[chmigrate::plan::prepare::PreparedStep],
    migrations: &[chmigrate::Migration],
    settings: &Settings,
) -> Vec<Diagnostic> {
    chmigrate::plan::waves::same_table_changes(
        steps,
        migrations,
        settings.parallel,
        settings.database.as_str(),
    )
    .into_iter()
    .filter_map(|(i, j, tables)| {
        let (a, b) = (steps[i].step.version(), steps[j].step.version());
        let later = migrations.iter().find(|m| m.version == *b)?;
        Some(Diagnostic::warning(
            Some(later.location.clone()),
            format!(
                "V{b} and V{a} both change {} and neither depends on the other: with parallel: {} \
                 they cannot share a wave and run in version order; if V{b} was written against \
                 V{a}'s table, say so with `-- Dependencies: {a}` (two branches changing one table \
                 is how conflicting migrations are made)",
                tables.join(", "),
                settings.parallel
            ),
        ))
    })
    .collect()
}
