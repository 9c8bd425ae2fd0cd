//! `sync-hosts`, and the drift lines `status` and `validate --online` show.

use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::engine::drift::{self, Synced};
use chmigrate::engine::{self, RunContext, StopFlag};
use chmigrate::plan::drift::{DriftReport, HostDrift};

use crate::cli::error::{self, CliError};
use crate::cli::output::{self, Format};
use crate::cli::{load, loaded_or_fail};

/// A host's line in `status`: `in sync`, or its first difference and how
/// many there are.
pub fn host_state(d: &HostDrift) -> String {
    if let Some(why) = &d.unreachable {
        return format!("unreachable: {why}");
    }
    match d.drift.as_slice() {
        [] => "in sync".into(),
        [one] => format!("drift: {one}"),
        [first, rest @ ..] => format!("drift: {first} (+{} more)", rest.len()),
    }
}

/// Every difference of a report, one line each, host first.
pub fn lines(report: &DriftReport) -> Vec<String> {
    report
        .hosts
        .iter()
        .flat_map(|h| h.drift.iter().map(move |d| format!("{}: {d}", h.host)))
        .collect()
}

pub async fn sync_hosts(
    settings: &Settings,
    host: Option<&str>,
    dry_run: bool,
    format: Format,
) -> Result<(), CliError> {
    if settings.cluster.is_none() {
        return Err(CliError::Invalid(
            "sync-hosts needs a cluster (--cluster): a single node has no other hosts".into(),
        ));
    }
    let migrations = loaded_or_fail(load(settings), format)?;
    let fail = error::engine(format);
    let session = engine::connect(settings).await.map_err(&fail)?;
    let ctx = RunContext::local(StopFlag::default());
    let synced = drift::sync_hosts(&session, settings, &ctx, &migrations, host, dry_run)
        .await
        .map_err(&fail)?;
    print(format, &synced, dry_run);
    let left = synced
        .after
        .as_ref()
        .unwrap_or(&synced.before.report)
        .hosts
        .iter()
        .filter(|h| host.is_none_or(|o| o == h.host))
        .any(|h| !h.drift.is_empty());
    if left && !dry_run {
        Err(CliError::Drift)
    } else {
        Ok(())
    }
}

fn print(format: Format, s: &Synced, dry_run: bool) {
    let repairs = &s.plan.repairs;
    let after = s.after.as_ref().map(lines).unwrap_or_default();
    match format {
        Format::Json => output::print_json_value(&json!({
            "dry_run": dry_run,
            "drift": s.before.report.hosts,
            "repairs": repairs,
            "sent": s.done.iter().map(|(r, hosts)| json!({
                "object": r.object,
                "kind": r.kind,
                "hosts": hosts,
            })).collect::<Vec<_>>(),
            "refused": s.plan.refused,
            "after": s.after.as_ref().map(|a| &a.hosts),
        })),
        _ => {
            if s.before.report.hosts.iter().all(HostDrift::in_sync) {
                println!("every host is in sync");
                return;
            }
            for h in &s.before.report.hosts {
                println!("{:<22} {}", h.host, host_state(h));
            }
            if repairs.is_empty() {
                println!("nothing to repair");
            }
            for r in repairs {
                let verb = if dry_run { "would send" } else { "sent" };
                println!(
                    "{verb} for {} ({}): {}",
                    r.object,
                    r.hosts.join(", "),
                    r.sql
                );
            }
            for r in &s.plan.refused {
                println!("left alone on {}: {} — {}", r.host, r.drift, r.reason);
            }
            if s.after.is_some() {
                if after.is_empty() {
                    println!("every host is in sync now");
                } else {
                    println!("still different:");
                    for l in after {
                        println!("  {l}");
                    }
                }
            }
        }
    }
}
