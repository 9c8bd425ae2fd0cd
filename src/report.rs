//! `chmigrate report`: the ledger's history as HTML, JSON or Markdown (pure).
//!
//! [`summarize`] folds ledger rows (any order; sorted here by `seq`) into a
//! [`Summary`]; [`render`] prints it. Every string from the ledger is
//! user-controlled: HTML output escapes all of it, Markdown escapes `|` and
//! line breaks in table cells. The HTML page is self-contained (inline CSS and
//! SVG, no JavaScript, no external resources).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::ledger::{HostResult, LedgerEntry};
use crate::version::Version;

/// Output format of `chmigrate report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Json,
    Markdown,
}

/// What the report is about; `target` must never contain a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMeta {
    pub title: String,
    pub target: String,
    pub generated_at_us: u64,
}

/// Where a migration stands after its last relevant event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Applied,
    RolledBack,
    Failed,
    InProgress,
    Baselined,
    /// Only events that say nothing about state (notes, imports, hosts).
    Unknown,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Baselined => "baselined",
            Self::Unknown => "unknown",
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub totals: Totals,
    /// Sorted by version (numerically; unparseable versions last, by text).
    pub migrations: Vec<MigrationSummary>,
    /// Chronological by first event.
    pub runs: Vec<RunSummary>,
    /// The 10 slowest `statement_done` events, slowest first.
    pub slowest_statements: Vec<StatementTiming>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Ledger rows.
    pub events: usize,
    /// Migrations whose current state is `applied`.
    pub migrations_applied: usize,
    /// `failed` events.
    pub failures: usize,
    /// `completed` (down) and `manual_rollback` events.
    pub rollbacks: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationSummary {
    pub version: String,
    /// The last non-empty description recorded for the version.
    pub description: String,
    pub state: MigrationState,
    /// First `completed` (up) or `baselined` event.
    pub first_applied_us: Option<u64>,
    pub last_event_us: u64,
    /// Number of `started` events.
    pub runs: usize,
    /// Latest successful apply: the `completed` event's duration when > 0,
    /// else the sum of that run's `statement_done` durations.
    pub apply_duration_ms: Option<u64>,
    /// `statement_done` events of the latest run (after its last `started`).
    pub statements: Vec<StatementDuration>,
    /// Hosts from `hosts_pending` events not followed by `hosts_verified`.
    pub hosts_pending: Vec<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementDuration {
    pub statement: i64,
    pub direction: String,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub actor: String,
    pub environment: String,
    pub started_us: u64,
    pub ended_us: u64,
    pub applied: Vec<String>,
    pub rolled_back: Vec<String>,
    pub baselined: Vec<String>,
    pub failed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementTiming {
    pub version: String,
    pub statement: i64,
    pub direction: String,
    pub run_id: String,
    pub duration_ms: u64,
    pub event_time_us: u64,
}

fn is_up_completion(e: &LedgerEntry) -> bool {
    e.event == "completed" && e.direction != "down"
}

fn is_rollback(e: &LedgerEntry) -> bool {
    (e.event == "completed" && e.direction == "down") || e.event == "manual_rollback"
}

fn push_unique(list: &mut Vec<String>, s: &str) {
    if !list.iter().any(|x| x == s) {
        list.push(s.to_string());
    }
}

fn cmp_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (Version::parse(a), Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Hosts a `hosts_pending` row names: `details.pending_hosts` (or
/// `details.pending`) as strings or `{host, port}` objects, else its `hosts`.
fn pending_hosts(e: &LedgerEntry) -> Vec<String> {
    let details = serde_json::from_str::<serde_json::Value>(&e.details).ok();
    let list = details.as_ref().and_then(|d| {
        d.get("pending_hosts")
            .or_else(|| d.get("pending"))
            .and_then(|v| v.as_array())
    });
    if let Some(list) = list {
        return list
            .iter()
            .filter_map(
                |h| match (h.as_str(), h.get("host").and_then(|x| x.as_str())) {
                    (Some(s), _) => Some(s.to_string()),
                    (None, Some(host)) => Some(match h.get("port").and_then(|p| p.as_u64()) {
                        Some(port) => format!("{host}:{port}"),
                        None => host.to_string(),
                    }),
                    _ => None,
                },
            )
            .collect();
    }
    serde_json::from_str::<Vec<HostResult>>(&e.hosts)
        .map(|hs| {
            hs.iter()
                .map(|h| format!("{}:{}", h.host, h.port))
                .collect()
        })
        .unwrap_or_default()
}

fn summarize_version(version: &str, evs: &[&LedgerEntry]) -> MigrationSummary {
    let mut state = MigrationState::Unknown;
    let mut hosts: Vec<String> = Vec::new();
    for e in evs {
        state = match e.event.as_str() {
            "completed" if e.direction == "down" => MigrationState::RolledBack,
            "completed" => MigrationState::Applied,
            "manual_rollback" => MigrationState::RolledBack,
            "failed" => MigrationState::Failed,
            "started" => MigrationState::InProgress,
            "baselined" => MigrationState::Baselined,
            _ => state,
        };
        match e.event.as_str() {
            "hosts_pending" => pending_hosts(e)
                .iter()
                .for_each(|h| push_unique(&mut hosts, h)),
            "hosts_verified" => hosts.clear(),
            _ => {}
        }
    }
    let apply_duration_ms = evs.iter().rposition(|e| is_up_completion(e)).map(|done| {
        let c = evs[done];
        if c.duration_ms > 0 {
            return c.duration_ms;
        }
        let start = evs[..done]
            .iter()
            .rposition(|e| e.event == "started" && e.run_id == c.run_id)
            .map_or(0, |i| i + 1);
        evs[start..done]
            .iter()
            .filter(|e| e.event == "statement_done" && e.run_id == c.run_id)
            .filter(|e| e.direction != "down")
            .map(|e| e.duration_ms)
            .sum()
    });
    let statements = match evs.iter().rposition(|e| e.event == "started") {
        Some(s) => evs[s + 1..]
            .iter()
            .filter(|e| e.event == "statement_done" && e.run_id == evs[s].run_id)
            .map(|e| StatementDuration {
                statement: e.statement,
                direction: e.direction.clone(),
                duration_ms: e.duration_ms,
            })
            .collect(),
        None => Vec::new(),
    };
    let last_nonempty = |f: fn(&LedgerEntry) -> &str| {
        evs.iter()
            .rev()
            .map(|e| f(e))
            .find(|s| !s.is_empty())
            .map(str::to_string)
    };
    MigrationSummary {
        version: version.to_string(),
        description: last_nonempty(|e| &e.description).unwrap_or_default(),
        state,
        first_applied_us: evs
            .iter()
            .find(|e| is_up_completion(e) || e.event == "baselined")
            .map(|e| e.event_time_us),
        last_event_us: evs.iter().map(|e| e.event_time_us).max().unwrap_or(0),
        runs: evs.iter().filter(|e| e.event == "started").count(),
        apply_duration_ms,
        statements,
        hosts_pending: hosts,
        last_error: last_nonempty(|e| &e.error),
    }
}

/// Folds the ledger into the report's content.
pub fn summarize(entries: &[LedgerEntry]) -> Summary {
    let mut sorted: Vec<&LedgerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (a.seq, a.event_time_us, &a.run_id).cmp(&(b.seq, b.event_time_us, &b.run_id))
    });

    let mut by_version: BTreeMap<&str, Vec<&LedgerEntry>> = BTreeMap::new();
    for e in sorted.iter().filter(|e| !e.version.is_empty()) {
        by_version.entry(e.version.as_str()).or_default().push(e);
    }
    let mut versions: Vec<&str> = by_version.keys().copied().collect();
    versions.sort_by(|a, b| cmp_versions(a, b));
    let migrations: Vec<MigrationSummary> = versions
        .iter()
        .map(|v| summarize_version(v, by_version.get(v).map_or(&[][..], |x| x)))
        .collect();

    let mut runs: Vec<RunSummary> = Vec::new();
    let mut run_index: BTreeMap<&str, usize> = BTreeMap::new();
    for e in sorted.iter().filter(|e| !e.run_id.is_empty()) {
        let i = *run_index.entry(e.run_id.as_str()).or_insert_with(|| {
            runs.push(RunSummary {
                run_id: e.run_id.clone(),
                actor: String::new(),
                environment: String::new(),
                started_us: e.event_time_us,
                ended_us: e.event_time_us,
                applied: Vec::new(),
                rolled_back: Vec::new(),
                baselined: Vec::new(),
                failed: Vec::new(),
            });
            runs.len() - 1
        });
        let r = &mut runs[i];
        r.started_us = r.started_us.min(e.event_time_us);
        r.ended_us = r.ended_us.max(e.event_time_us);
        if r.actor.is_empty() {
            r.actor.clone_from(&e.actor);
        }
        if r.environment.is_empty() {
            r.environment.clone_from(&e.environment);
        }
        let list = match e.event.as_str() {
            _ if is_up_completion(e) => &mut r.applied,
            _ if is_rollback(e) => &mut r.rolled_back,
            "baselined" => &mut r.baselined,
            "failed" => &mut r.failed,
            _ => continue,
        };
        if !e.version.is_empty() {
            push_unique(list, &e.version);
        }
    }
    runs.sort_by_key(|r| r.started_us);

    let mut slowest: Vec<&&LedgerEntry> = sorted
        .iter()
        .filter(|e| e.event == "statement_done")
        .collect();
    slowest.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.seq.cmp(&b.seq)));
    let slowest_statements = slowest
        .into_iter()
        .take(10)
        .map(|e| StatementTiming {
            version: e.version.clone(),
            statement: e.statement,
            direction: e.direction.clone(),
            run_id: e.run_id.clone(),
            duration_ms: e.duration_ms,
            event_time_us: e.event_time_us,
        })
        .collect();

    Summary {
        totals: Totals {
            events: entries.len(),
            migrations_applied: migrations
                .iter()
                .filter(|m| m.state == MigrationState::Applied)
                .count(),
            failures: entries.iter().filter(|e| e.event == "failed").count(),
            rollbacks: entries.iter().filter(|e| is_rollback(e)).count(),
        },
        migrations,
        runs,
        slowest_statements,
    }
}

/// The report in `format`.
pub fn render(entries: &[LedgerEntry], meta: &ReportMeta, format: ReportFormat) -> String {
    let summary = summarize(entries);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match format {
        ReportFormat::Json => {
            return serde_json::to_string_pretty(&summary)
                .map_or_else(|_| "{}".into(), |s| s + "\n");
        }
        ReportFormat::Markdown => markdown(&summary, meta, &mut out),
        ReportFormat::Html => html(entries, &summary, meta, &mut out),
    };
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of microseconds since the Unix epoch.
pub fn format_time_us(us: u64) -> String {
    let secs = us / 1_000_000;
    // Days since 1970-01-01 (civil-from-days, proleptic Gregorian calendar).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn opt_time(t: Option<u64>) -> String {
    t.map_or_else(|| "–".to_string(), format_time_us)
}

fn opt_ms(d: Option<u64>) -> String {
    d.map_or_else(|| "–".to_string(), |d| format!("{d} ms"))
}

fn run_outcome(r: &RunSummary) -> String {
    let parts: Vec<String> = [
        ("applied", &r.applied),
        ("rolled back", &r.rolled_back),
        ("baselined", &r.baselined),
        ("failed", &r.failed),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k} {}", v.join(", ")))
    .collect();
    if parts.is_empty() {
        "no migration changes".into()
    } else {
        parts.join("; ")
    }
}

fn totals_line(t: &Totals) -> String {
    format!(
        "{} events, {} migrations applied, {} failures, {} rollbacks",
        t.events, t.migrations_applied, t.failures, t.rollbacks
    )
}

const NO_HISTORY: &str = "No migration history: the ledger has no events.";

/// Rows of the three tables, as unescaped cells.
fn table_rows(s: &Summary) -> [(&'static str, Vec<&'static str>, Vec<Vec<String>>); 3] {
    let migrations = s.migrations.iter().map(|m| {
        vec![
            m.version.clone(),
            m.description.clone(),
            m.state.as_str().to_string(),
            opt_time(m.first_applied_us),
            opt_ms(m.apply_duration_ms),
            m.runs.to_string(),
            m.hosts_pending.join(", "),
            m.last_error.clone().unwrap_or_default(),
        ]
    });
    let runs = s.runs.iter().map(|r| {
        let times = [format_time_us(r.started_us), format_time_us(r.ended_us)];
        let [start, end] = times;
        vec![
            r.run_id.clone(),
            r.actor.clone(),
            r.environment.clone(),
            start,
            end,
            run_outcome(r),
        ]
    });
    let slow = s.slowest_statements.iter().map(|t| {
        vec![
            t.version.clone(),
            t.statement.to_string(),
            t.direction.clone(),
            t.run_id.clone(),
            format!("{} ms", t.duration_ms),
        ]
    });
    [
        (
            "Migrations",
            vec![
                "Version",
                "Description",
                "State",
                "Applied at (UTC)",
                "Duration",
                "Runs",
                "Hosts pending",
                "Last error",
            ],
            migrations.collect(),
        ),
        (
            "Runs",
            vec![
                "Run",
                "Actor",
                "Environment",
                "Started (UTC)",
                "Ended (UTC)",
                "Outcome",
            ],
            runs.collect(),
        ),
        (
            "Slowest statements",
            vec!["Version", "Statement", "Direction", "Run", "Duration"],
            slow.collect(),
        ),
    ]
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\n', '\r'], "<br>")
}

fn markdown(s: &Summary, meta: &ReportMeta, out: &mut String) -> fmt::Result {
    writeln!(out, "# {}\n", md_cell(&meta.title))?;
    writeln!(out, "Target: {}  ", md_cell(&meta.target))?;
    writeln!(
        out,
        "Generated: {} UTC\n",
        format_time_us(meta.generated_at_us)
    )?;
    if s.totals.events == 0 {
        return writeln!(out, "_{NO_HISTORY}_");
    }
    writeln!(out, "**Totals:** {}", totals_line(&s.totals))?;
    for (heading, header, rows) in table_rows(s) {
        writeln!(out, "\n## {heading}\n\n| {} |", header.join(" | "))?;
        writeln!(out, "|{}", "---|".repeat(header.len()))?;
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            writeln!(out, "| {} |", cells.join(" | "))?;
        }
    }
    Ok(())
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;\
text-align:left;vertical-align:top}th{background:#f3f3f3}svg{border:1px solid #ddd;\
background:#fff}.meta{color:#555}.empty{font-style:italic}";

fn event_color(e: &LedgerEntry) -> &'static str {
    match e.event.as_str() {
        _ if is_rollback(e) => "#ef6c00",
        _ if is_up_completion(e) => "#2e7d32",
        "baselined" => "#2e7d32",
        "failed" => "#c62828",
        _ => "#9e9e9e",
    }
}

fn timeline_svg(entries: &[LedgerEntry], runs: &[RunSummary], out: &mut String) -> fmt::Result {
    const W: f64 = 960.0;
    const M: f64 = 20.0;
    let min = entries.iter().map(|e| e.event_time_us).min().unwrap_or(0);
    let max = entries.iter().map(|e| e.event_time_us).max().unwrap_or(0);
    let x = |t: u64| {
        if max == min {
            W / 2.0
        } else {
            M + (t - min) as f64 / (max - min) as f64 * (W - 2.0 * M)
        }
    };
    let h = 60.0 + runs.len() as f64 * 18.0 + 20.0;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\" role=\"img\" aria-label=\"Timeline\">"
    )?;
    writeln!(
        out,
        "<line x1=\"{M}\" y1=\"30\" x2=\"{}\" y2=\"30\" stroke=\"#ccc\"/>",
        W - M
    )?;
    for e in entries {
        writeln!(
            out,
            "<circle class=\"event\" cx=\"{:.1}\" cy=\"30\" r=\"5\" fill=\"{}\" fill-opacity=\"0.8\"><title>{} {} {} {}</title></circle>",
            x(e.event_time_us),
            event_color(e),
            format_time_us(e.event_time_us),
            esc(&e.event),
            esc(&e.version),
            esc(&e.direction)
        )?;
    }
    for (i, r) in runs.iter().enumerate() {
        let (x0, x1) = (x(r.started_us), x(r.ended_us));
        let color = match () {
            _ if !r.failed.is_empty() => "#c62828",
            _ if !r.rolled_back.is_empty() => "#ef6c00",
            _ if !r.applied.is_empty() || !r.baselined.is_empty() => "#2e7d32",
            _ => "#9e9e9e",
        };
        writeln!(
            out,
            "<rect class=\"run\" x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"12\" fill=\"{color}\" fill-opacity=\"0.6\"><title>run {}: {}</title></rect>",
            x0.min(W - M - 3.0),
            50 + i * 18,
            (x1 - x0).max(3.0),
            esc(&r.run_id),
            esc(&run_outcome(r))
        )?;
    }
    let y = h - 6.0;
    writeln!(
        out,
        "<text x=\"{M}\" y=\"{y}\" font-size=\"11\">{} UTC</text>",
        format_time_us(min)
    )?;
    writeln!(
        out,
        "<text x=\"{}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\">{} UTC</text>\n</svg>",
        W - M,
        format_time_us(max)
    )
}

fn durations_svg(migrations: &[MigrationSummary], out: &mut String) -> fmt::Result {
    let (label_w, bar_w) = (160.0, 640.0);
    let max = migrations
        .iter()
        .filter_map(|m| m.apply_duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let h = migrations.len() * 22 + 10;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"{h}\" viewBox=\"0 0 960 {h}\" role=\"img\" aria-label=\"Durations\">"
    )?;
    for (i, m) in migrations.iter().enumerate() {
        let y = 5 + i * 22;
        let w = m.apply_duration_ms.unwrap_or(0) as f64 / max as f64 * bar_w;
        writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            label_w - 6.0,
            y + 13,
            esc(&m.version)
        )?;
        writeln!(
            out,
            "<rect class=\"bar\" x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#3f6fb5\"><title>{}</title></rect>",
            esc(&m.version)
        )?;
        writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>",
            label_w + w + 6.0,
            y + 13,
            opt_ms(m.apply_duration_ms)
        )?;
    }
    writeln!(out, "</svg>")
}

fn html(entries: &[LedgerEntry], s: &Summary, meta: &ReportMeta, out: &mut String) -> fmt::Result {
    let title = esc(&meta.title);
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">"
    )?;
    writeln!(
        out,
        "<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>"
    )?;
    writeln!(
        out,
        "<p class=\"meta\">Target: {}<br>Generated: {} UTC</p>",
        esc(&meta.target),
        format_time_us(meta.generated_at_us)
    )?;
    if s.totals.events == 0 {
        return writeln!(out, "<p class=\"empty\">{NO_HISTORY}</p>\n</body>\n</html>");
    }
    writeln!(
        out,
        "<p><strong>Totals:</strong> {}</p>",
        totals_line(&s.totals)
    )?;
    writeln!(out, "<h2>Timeline</h2>")?;
    timeline_svg(entries, &s.runs, out)?;
    writeln!(out, "<h2>Durations</h2>")?;
    durations_svg(&s.migrations, out)?;
    for (heading, header, rows) in table_rows(s) {
        writeln!(out, "<h2>{heading}</h2>\n<table>\n<thead><tr>")?;
        for h in header {
            write!(out, "<th>{h}</th>")?;
        }
        writeln!(out, "</tr></thead>\n<tbody>")?;
        for row in rows {
            write!(out, "<tr>")?;
            for c in row {
                write!(out, "<td>{}</td>", esc(&c))?;
            }
            writeln!(out, "</tr>")?;
        }
        writeln!(out, "</tbody>\n</table>")?;
    }
    writeln!(out, "</body>\n</html>")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_748_433_600_000_000;

    fn ev(seq: u64, run: &str, version: &str, event: &str, direction: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            event_time_us: T0 + seq * 1_000_000,
            run_id: run.into(),
            version: version.into(),
            event: event.into(),
            direction: direction.into(),
            statement: -1,
            actor: "ana@box".into(),
            environment: "prod".into(),
            ..Default::default()
        }
    }

    fn done(seq: u64, run: &str, version: &str, statement: i64, ms: u64) -> LedgerEntry {
        LedgerEntry {
            statement,
            duration_ms: ms,
            ..ev(seq, run, version, "statement_done", "up")
        }
    }

    fn meta() -> ReportMeta {
        ReportMeta {
            title: "History".into(),
            target: "http://127.0.0.11:8123 db analytics".into(),
            generated_at_us: T0,
        }
    }

    fn sample() -> Vec<LedgerEntry> {
        vec![
            ev(1, "r1", "1", "started", "up"),
            done(2, "r1", "1", 0, 100),
            done(3, "r1", "1", 1, 50),
            LedgerEntry {
                description: "create events".into(),
                ..ev(4, "r1", "1", "completed", "up")
            },
            ev(5, "r1", "2", "started", "up"),
            LedgerEntry {
                error: "Code: 62".into(),
                statement: 0,
                ..ev(6, "r1", "2", "failed", "up")
            },
            ev(7, "r2", "1.10", "started", "up"),
            LedgerEntry {
                duration_ms: 900,
                ..ev(8, "r2", "1.10", "completed", "up")
            },
            ev(9, "r2", "1.2", "baselined", ""),
            ev(10, "r2", "3", "started", "up"),
            done(11, "r2", "3", 0, 7),
            ev(12, "r3", "1.10", "started", "down"),
            ev(13, "r3", "1.10", "completed", "down"),
            ev(14, "r3", "4", "started", "up"),
            ev(15, "r3", "4", "completed", "up"),
            ev(16, "r3", "4", "manual_rollback", ""),
            ev(17, "r3", "", "lock_released", ""),
        ]
    }

    fn by_version<'a>(s: &'a Summary, v: &str) -> &'a MigrationSummary {
        s.migrations.iter().find(|m| m.version == v).unwrap()
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time_us(0), "1970-01-01 00:00:00");
        assert_eq!(format_time_us(T0), "2025-05-28 12:00:00");
        assert_eq!(format_time_us(951_782_399_999_999), "2000-02-28 23:59:59");
        assert_eq!(format_time_us(951_782_400_000_000), "2000-02-29 00:00:00");
        assert_eq!(format_time_us(1_704_067_199_000_000), "2023-12-31 23:59:59");
    }

    #[test]
    fn derives_every_state_and_orders_versions_numerically() {
        let s = summarize(&sample());
        let order: Vec<&str> = s.migrations.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(order, ["1", "1.2", "1.10", "2", "3", "4"]);
        let states: Vec<&str> = s.migrations.iter().map(|m| m.state.as_str()).collect();
        assert_eq!(
            states,
            [
                "applied",
                "baselined",
                "rolled_back",
                "failed",
                "in_progress",
                "rolled_back"
            ]
        );
        assert_eq!(
            s.totals,
            Totals {
                events: 17,
                migrations_applied: 1,
                failures: 1,
                rollbacks: 2
            }
        );
        let one = by_version(&s, "1");
        assert_eq!((one.description.as_str(), one.runs), ("create events", 1));
        assert_eq!(one.first_applied_us, Some(T0 + 4_000_000));
        assert_eq!(by_version(&s, "2").last_error.as_deref(), Some("Code: 62"));
        assert_eq!(by_version(&s, "1.10").runs, 2);
    }

    #[test]
    fn durations_come_from_the_latest_successful_apply() {
        let mut entries = sample();
        // A second, faster apply of V1 after a rollback: only it counts.
        entries.extend([
            ev(20, "r4", "1", "started", "down"),
            ev(21, "r4", "1", "completed", "down"),
            ev(22, "r5", "1", "started", "up"),
            done(23, "r5", "1", 0, 30),
            done(24, "r5", "1", 1, 12),
            ev(25, "r5", "1", "completed", "up"),
        ]);
        let s = summarize(&entries);
        let one = by_version(&s, "1");
        assert_eq!(one.apply_duration_ms, Some(42));
        assert_eq!(one.state, MigrationState::Applied);
        assert_eq!(one.first_applied_us, Some(T0 + 4_000_000));
        let stmts: Vec<(i64, u64)> = one
            .statements
            .iter()
            .map(|d| (d.statement, d.duration_ms))
            .collect();
        assert_eq!(stmts, [(0, 30), (1, 12)]);
        assert_eq!(
            by_version(&summarize(&sample()), "1").apply_duration_ms,
            Some(150)
        );
        // The completed event's own duration wins when recorded.
        assert_eq!(by_version(&s, "1.10").apply_duration_ms, Some(900));
        assert_eq!(by_version(&s, "3").apply_duration_ms, None);
        let slow: Vec<u64> = s.slowest_statements.iter().map(|t| t.duration_ms).collect();
        assert_eq!(slow, [100, 50, 30, 12, 7]);
    }

    #[test]
    fn runs_are_chronological_with_outcomes() {
        let s = summarize(&sample());
        let ids: Vec<&str> = s.runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["r1", "r2", "r3"]);
        assert_eq!(s.runs[0].applied, ["1"]);
        assert_eq!(s.runs[0].failed, ["2"]);
        assert_eq!(
            (s.runs[0].started_us, s.runs[0].ended_us),
            (T0 + 1_000_000, T0 + 6_000_000)
        );
        assert_eq!(s.runs[2].rolled_back, ["1.10", "4"]);
        assert_eq!(run_outcome(&s.runs[1]), "applied 1.10; baselined 1.2");
    }

    #[test]
    fn pending_hosts_are_cleared_by_verification() {
        let pending = |seq, details: &str, hosts: &str| LedgerEntry {
            details: details.into(),
            hosts: hosts.into(),
            ..ev(seq, "r", "5", "hosts_pending", "up")
        };
        let mut entries = vec![
            ev(1, "r", "5", "started", "up"),
            pending(2, r#"{"pending_hosts":["ch-2:9000"]}"#, ""),
            ev(3, "r", "5", "hosts_verified", "up"),
            ev(4, "r", "5", "completed", "up"),
        ];
        assert!(summarize(&entries).migrations[0].hosts_pending.is_empty());
        entries.push(pending(
            5,
            "{}",
            r#"[{"host":"ch-3","port":9000,"status":0}]"#,
        ));
        entries.push(pending(
            6,
            r#"{"pending":[{"host":"ch-4","port":9440},"ch-3:9000"]}"#,
            "",
        ));
        assert_eq!(
            summarize(&entries).migrations[0].hosts_pending,
            ["ch-3:9000", "ch-4:9440"]
        );
        entries.push(ev(7, "r", "5", "hosts_verified", "up"));
        assert!(summarize(&entries).migrations[0].hosts_pending.is_empty());
    }

    #[test]
    fn html_escapes_ledger_text() {
        let entries = vec![
            LedgerEntry {
                description: "<script>alert('x')</script>".into(),
                ..ev(1, "r\"1", "1", "started", "up")
            },
            LedgerEntry {
                error: "a & \"b\" <script>".into(),
                ..ev(2, "r\"1", "1", "failed", "up")
            },
        ];
        let html = render(&entries, &meta(), ReportFormat::Html);
        assert!(html.contains("<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</td>"));
        assert!(html.contains("<td>a &amp; &quot;b&quot; &lt;script&gt;</td>"));
        assert!(html.contains("<td>r&quot;1</td>"));
        assert!(!html.to_lowercase().contains("<script"));
        assert!(!html.contains("src=") && !html.contains("<link"));
    }

    #[test]
    fn html_has_both_charts() {
        let html = render(&sample(), &meta(), ReportFormat::Html);
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("class=\"bar\"").count(), 6);
        assert_eq!(html.matches("class=\"event\"").count(), 17);
        assert_eq!(html.matches("class=\"run\"").count(), 3);
        assert!(html.contains(">900 ms</text>"));
        assert!(html.contains("fill=\"#c62828\""));
    }

    #[test]
    fn markdown_tables() {
        let mut entries = sample();
        entries[3].description = "a|b\nc".into();
        let md = render(&entries, &meta(), ReportFormat::Markdown);
        assert!(md.starts_with("# History\n"));
        assert!(
            md.contains("**Totals:** 17 events, 1 migrations applied, 1 failures, 2 rollbacks\n")
        );
        assert!(md.contains(
            "| Version | Description | State | Applied at (UTC) | Duration | Runs | Hosts pending | Last error |\n|---|---|---|---|---|---|---|---|\n"
        ));
        assert!(
            md.contains("| 1 | a\\|b<br>c | applied | 2025-05-28 12:00:04 | 150 ms | 1 |  |  |\n")
        );
        assert!(md.contains("| 2 |  | failed | – | – | 1 |  | Code: 62 |\n"));
        assert!(md.contains(
            "| r1 | ana@box | prod | 2025-05-28 12:00:01 | 2025-05-28 12:00:06 | applied 1; failed 2 |\n"
        ));
        assert!(md.contains("| 1 | 0 | up | r1 | 100 ms |\n"));
    }

    #[test]
    fn json_round_trips() {
        let json = render(&sample(), &meta(), ReportFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["totals"]["events"], 17);
        assert_eq!(v["migrations"][0]["version"], "1");
        assert_eq!(v["migrations"][0]["state"], "applied");
        assert_eq!(v["migrations"][0]["apply_duration_ms"], 150);
        assert_eq!(v["migrations"][2]["state"], "rolled_back");
        assert_eq!(v["migrations"][4]["state"], "in_progress");
        assert_eq!(v["runs"][0]["failed"][0], "2");
        assert_eq!(v["slowest_statements"][0]["duration_ms"], 100);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4);
        assert!(json.find("\"totals\"") < json.find("\"migrations\""));
    }

    #[test]
    fn empty_ledger_says_so() {
        let html = render(&[], &meta(), ReportFormat::Html);
        assert!(html.contains("No migration history") && html.trim_end().ends_with("</html>"));
        assert!(!html.contains("<svg"));
        let md = render(&[], &meta(), ReportFormat::Markdown);
        assert!(md.contains("_No migration history: the ledger has no events._"));
        let v: serde_json::Value =
            serde_json::from_str(&render(&[], &meta(), ReportFormat::Json)).unwrap();
        assert_eq!(v["totals"]["events"], 0);
        assert_eq!(v["migrations"], serde_json::json!([]));
    }
}
