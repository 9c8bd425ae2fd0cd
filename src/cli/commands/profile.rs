//! `profile --migration V` and `report --performance`: timings from the
//! ledger, with the server's query log joined in where it has them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use chmigrate::config::Settings;
use chmigrate::ledger::performance::{self, Profile};
use chmigrate::model::version::Version;
use chmigrate::runtime::queries::{log_queries_sql, query_log_sql};

use crate::cli::connect_and_read;
use crate::cli::error::CliError;
use crate::cli::load;
use crate::cli::output::{self, Format};

/// What `system.query_log` says about one statement.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct Logged {
    query_id: String,
    query_duration_ms: u64,
    read_rows: u64,
    read_bytes: u64,
    written_rows: u64,
    memory_usage: i64,
}

pub async fn profile(
    settings: &Settings,
    version: Version,
    format: Format,
) -> Result<(), CliError> {
    let (session, history) = connect_and_read(settings, format).await?;
    let v = version.to_string();
    let Some(p) = performance::profile(&history, &v) else {
        return Err(CliError::Invalid(format!(
            "V{v} has never run on this target (see `chmigrate history`)"
        )));
    };
    // Where each statement comes from, when the source is still here.
    let loaded = load(settings);
    let source = loaded.migrations.iter().find(|m| m.version == version);
    let located = |n: usize| -> (String, String) {
        let Some(m) = source else {
            return (String::new(), String::new());
        };
        let (loc, sql) = if p.direction == "down" {
            (
                m.down_statement_location(n - 1),
                m.down
                    .as_ref()
                    .and_then(|d| d.get(n - 1))
                    .map(|s| s.sql.clone()),
            )
        } else {
            (m.up_location(n - 1), m.up.get(n - 1).map(|s| s.sql.clone()))
        };
        let first = sql
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string();
        (loc.to_string(), first)
    };
    // The server's figures, when it logs queries.
    let ids: Vec<String> = p
        .statements
        .iter()
        .map(|s| s.query_id.clone())
        .filter(|q| !q.is_empty())
        .collect();
    let (logged, log_note) = server_log(&session.conn, &ids).await;
    match format {
        Format::Json => {
            let statements: Vec<serde_json::Value> = p
                .statements
                .iter()
                .map(|s| {
                    let (location, sql) = located(s.number);
                    json!({
                        "statement": s,
                        "location": location,
                        "sql": sql,
                        "server": logged.get(&s.query_id),
                    })
                })
                .collect();
            output::print_json_value(&json!({
                "version": p.version,
                "description": p.description,
                "direction": p.direction,
                "total_ms": p.total_ms,
                "statements": statements,
                "query_log": log_note,
            }));
        }
        _ => print_profile(&p, &logged, &log_note, located),
    }
    Ok(())
}

fn print_profile(
    p: &Profile,
    logged: &BTreeMap<String, Logged>,
    log_note: &str,
    located: impl Fn(usize) -> (String, String),
) {
    println!(
        "V{} {} ({}): {} statement(s), {} ms",
        p.version,
        p.description,
        if p.direction == "down" {
            "rollback"
        } else {
            "apply"
        },
        p.statements.len(),
        p.total_ms
    );
    println!("\n   #        MS   SERVER MS    ROWS READ  ROWS WRITTEN     MEMORY  WHERE");
    for s in &p.statements {
        let (loc, sql) = located(s.number);
        let l = logged.get(&s.query_id);
        let cell = |f: &dyn Fn(&Logged) -> String| l.map_or("-".to_string(), f);
        println!(
            "{:>4} {:>9} {:>11} {:>12} {:>13} {:>10}  {}",
            s.number,
            s.duration_ms,
            cell(&|l| l.query_duration_ms.to_string()),
            cell(&|l| l.read_rows.to_string()),
            cell(&|l| l.written_rows.to_string()),
            cell(&|l| l.memory_usage.to_string()),
            loc
        );
        if !sql.is_empty() {
            println!("{:>6}{sql}", "");
        }
        if !s.hosts.is_empty() {
            println!("{:>6}on {}", "", s.hosts.join(", "));
        }
    }
    println!("\nserver query log: {log_note}");
}

/// The query log's rows for `ids`, and a note on where they came from.
async fn server_log(
    conn: &chmigrate::runtime::Connection,
    ids: &[String],
) -> (BTreeMap<String, Logged>, String) {
    #[derive(Deserialize)]
    struct Value {
        value: String,
    }
    let enabled = conn
        .rows::<Value>(log_queries_sql())
        .await
        .ok()
        .and_then(|r| r.into_iter().next())
        .is_some_and(|v| v.value == "1");
    if ids.is_empty() {
        return (
            BTreeMap::new(),
            "the ledger recorded no query ids for this run".into(),
        );
    }
    match conn.rows::<Logged>(&query_log_sql(ids)).await {
        Ok(rows) => {
            let n = rows.len();
            let map: BTreeMap<String, Logged> =
                rows.into_iter().map(|l| (l.query_id.clone(), l)).collect();
            let note = if n == 0 && enabled {
                "no rows yet (the server flushes its log every few seconds)".to_string()
            } else if n == 0 {
                "not enabled (log_queries = 0 for this user)".to_string()
            } else {
                format!(
                    "{n} of {} statement(s) found in system.query_log of the entry node",
                    ids.len()
                )
            };
            (map, note)
        }
        Err(e) => (
            BTreeMap::new(),
            if enabled {
                format!("cannot read system.query_log: {e}")
            } else {
                "not enabled (log_queries = 0 for this user)".to_string()
            },
        ),
    }
}

pub async fn report_performance(settings: &Settings, format: Format) -> Result<(), CliError> {
    let (_, history) = connect_and_read(settings, format).await?;
    let p = performance::performance(&history, 10);
    match format {
        Format::Json => output::print_json_value(&serde_json::to_value(&p).unwrap_or_default()),
        _ => print!("{}", performance::render_markdown(&p)),
    }
    Ok(())
}
