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

use crate::ledger::LedgerEntry;
use crate::ledger::vocabulary::EventName;
use crate::model::version::Version;

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
    /// The header's `-- Migration:`, `-- Author:` and `-- Created:` as the
    /// latest apply recorded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
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
    pub statements: Vec<StatementTiming>,
    /// Hosts named by `hosts_pending` events not followed by `hosts_verified`.
    pub hosts_pending: Vec<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
    e.is(EventName::Completed) && e.direction != "down"
}

fn is_rollback(e: &LedgerEntry) -> bool {
    (e.is(EventName::Completed) && e.direction == "down") || e.is(EventName::ManualRollback)
}

fn push_unique(list: &mut Vec<String>, s: &str) {
    if !list.iter().any(|x| x == s) {
        list.push(s.to_string());
    }
}

fn timing(e: &LedgerEntry) -> StatementTiming {
    StatementTiming {
        version: e.version.clone(),
        statement: e.statement,
        direction: e.direction.clone(),
        run_id: e.run_id.clone(),
        duration_ms: e.duration_ms,
        event_time_us: e.event_time_us,
    }
}

fn fold_version(version: &str, evs: &[&LedgerEntry]) -> MigrationSummary {
    let mut state = MigrationState::Unknown;
    // Pending hosts as the runtime tracks them (`hosts_pending` rows not
    // closed by `hosts_verified` for the same task).
    let owned: Vec<LedgerEntry> = evs.iter().map(|e| (*e).clone()).collect();
    let mut hosts: Vec<String> = crate::ledger::pending::open_tasks(&owned)
        .into_iter()
        .flat_map(|t| t.hosts)
        .collect();
    for e in evs {
        state = match e.name() {
            _ if is_rollback(e) => MigrationState::RolledBack,
            Some(EventName::Completed) => MigrationState::Applied,
            Some(EventName::Failed) => MigrationState::Failed,
            Some(EventName::Started) => MigrationState::InProgress,
            Some(EventName::Baselined) => MigrationState::Baselined,
            _ => state,
        };
    }
    hosts.sort();
    hosts.dedup();
    // `statement_done` events of `run` after its last `started` before `end`.
    let steps = |end: usize, run: &str| -> Vec<StatementTiming> {
        let is = |e: &LedgerEntry, event: EventName| e.is(event) && e.run_id == run;
        let from = evs[..end].iter().rposition(|e| is(e, EventName::Started));
        let steps = evs[from.map_or(0, |i| i + 1)..end].iter();
        steps
            .filter(|e| is(e, EventName::StatementDone))
            .map(|e| timing(e))
            .collect()
    };
    let apply_duration_ms = evs.iter().rposition(|e| is_up_completion(e)).map(|i| {
        let c = evs[i];
        match c.duration_ms {
            0 => steps(i, &c.run_id).iter().map(|t| t.duration_ms).sum(),
            ms => ms,
        }
    });
    let mut statements = Vec::new();
    if let Some(last) = evs.iter().rposition(|e| e.is(EventName::Started)) {
        statements = steps(evs.len(), &evs[last].run_id);
    }
    let last = |f: fn(&LedgerEntry) -> &str| evs.iter().rev().map(|e| f(e)).find(|s| !s.is_empty());
    let applied = |e: &&&LedgerEntry| is_up_completion(e) || e.is(EventName::Baselined);
    let provenance = evs
        .iter()
        .rev()
        .find(|e| e.is(EventName::Started) && e.direction == "up")
        .map(|e| crate::ledger::events::Provenance::read(&e.details))
        .unwrap_or_default();
    MigrationSummary {
        version: version.to_string(),
        description: last(|e| &e.description).unwrap_or_default().to_string(),
        migration: provenance.migration,
        author: provenance.author,
        created: provenance.created,
        state,
        first_applied_us: evs.iter().find(applied).map(|e| e.event_time_us),
        last_event_us: evs.iter().map(|e| e.event_time_us).max().unwrap_or(0),
        runs: evs.iter().filter(|e| e.is(EventName::Started)).count(),
        apply_duration_ms,
        statements,
        hosts_pending: hosts,
        last_error: last(|e| &e.error).map(str::to_string),
    }
}

/// Folds the ledger into the report's content.
pub fn summarize(entries: &[LedgerEntry]) -> Summary {
    let mut sorted: Vec<&LedgerEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.seq, e.event_time_us, e.run_id.as_str()));

    let mut by_version: BTreeMap<&str, Vec<&LedgerEntry>> = BTreeMap::new();
    let mut runs: Vec<RunSummary> = Vec::new();
    let mut run_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut slowest: Vec<&LedgerEntry> = Vec::new();
    for &e in &sorted {
        if e.is(EventName::StatementDone) {
            slowest.push(e);
        }
        if !e.version.is_empty() {
            by_version.entry(&e.version).or_default().push(e);
        }
        if e.run_id.is_empty() {
            continue;
        }
        let i = *run_index.entry(&e.run_id).or_insert_with(|| {
            runs.push(RunSummary::default());
            runs.len() - 1
        });
        let r = &mut runs[i];
        if r.run_id.is_empty() {
            (r.run_id, r.started_us) = (e.run_id.clone(), e.event_time_us);
        }
        r.ended_us = e.event_time_us.max(r.ended_us);
        if r.actor.is_empty() {
            r.actor.clone_from(&e.actor);
        }
        if r.environment.is_empty() {
            r.environment.clone_from(&e.environment);
        }
        let list = match e.name() {
            _ if e.version.is_empty() => continue,
            _ if is_up_completion(e) => &mut r.applied,
            _ if is_rollback(e) => &mut r.rolled_back,
            Some(EventName::Baselined) => &mut r.baselined,
            Some(EventName::Failed) => &mut r.failed,
            _ => continue,
        };
        push_unique(list, &e.version);
    }
    runs.sort_by_key(|r| r.started_us);

    let mut versions: Vec<(&str, Vec<&LedgerEntry>)> = by_version.into_iter().collect();
    // Numerically by `Version`; unparseable versions last, by text.
    versions.sort_by_cached_key(|(v, _)| {
        let parsed = Version::parse(v).ok();
        (parsed.is_none(), parsed, v.to_string())
    });
    let migrations: Vec<_> = versions.iter().map(|(v, e)| fold_version(v, e)).collect();
    slowest.sort_by(|a, b| b.duration_ms.cmp(&a.duration_ms).then(a.seq.cmp(&b.seq)));
    let applied = |m: &&MigrationSummary| m.state == MigrationState::Applied;
    Summary {
        totals: Totals {
            events: entries.len(),
            migrations_applied: migrations.iter().filter(applied).count(),
            failures: entries.iter().filter(|e| e.is(EventName::Failed)).count(),
            rollbacks: entries.iter().filter(|e| is_rollback(e)).count(),
        },
        migrations,
        runs,
        slowest_statements: slowest.into_iter().take(10).map(timing).collect(),
    }
}

/// The report in `format`.
pub fn render(entries: &[LedgerEntry], meta: &ReportMeta, format: ReportFormat) -> String {
    let summary = summarize(entries);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match format {
        ReportFormat::Json => {
            return serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n";
        }
        ReportFormat::Markdown => markdown(&summary, meta, &mut out),
        ReportFormat::Html => html(entries, &summary, meta, &mut out),
    };
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of microseconds since the Unix epoch.
pub fn format_time_us(us: u64) -> String {
    crate::clock::format_us(us)
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
    let (e, a, f, r) = (t.events, t.migrations_applied, t.failures, t.rollbacks);
    let applied = format!("{e} events, {a} migrations applied");
    format!("{applied}, {f} failures, {r} rollbacks")
}

const NO_HISTORY: &str = "No migration history: the ledger has no events.";
const MIGRATION_COLS: &str = "Version|Description|Migration|Author|Created|State|Applied at (UTC)|Duration|Runs|Hosts pending|Last error";
const RUN_COLS: &str = "Run|Actor|Environment|Started (UTC)|Ended (UTC)|Outcome";
const SLOW_COLS: &str = "Version|Statement|Direction|Run|Duration";

/// Heading, `|`-separated column names, rows of unescaped cells.
type Table = (&'static str, &'static str, Vec<Vec<String>>);

fn tables(s: &Summary) -> [Table; 3] {
    let migrations = s.migrations.iter().map(|m| {
        vec![
            m.version.clone(),
            m.description.clone(),
            m.migration.clone().unwrap_or_default(),
            m.author.clone().unwrap_or_default(),
            m.created.clone().unwrap_or_default(),
            m.state.as_str().to_string(),
            opt_time(m.first_applied_us),
            opt_ms(m.apply_duration_ms),
            m.runs.to_string(),
            m.hosts_pending.join(", "),
            m.last_error.clone().unwrap_or_default(),
        ]
    });
    let runs = s.runs.iter().map(|r| {
        let (id, who, env) = (r.run_id.clone(), r.actor.clone(), r.environment.clone());
        let (from, to) = (format_time_us(r.started_us), format_time_us(r.ended_us));
        vec![id, who, env, from, to, run_outcome(r)]
    });
    let slow = s.slowest_statements.iter().map(|t| {
        let (v, i) = (t.version.clone(), t.statement.to_string());
        let (dir, run) = (t.direction.clone(), t.run_id.clone());
        vec![v, i, dir, run, opt_ms(Some(t.duration_ms))]
    });
    [
        ("Migrations", MIGRATION_COLS, migrations.collect()),
        ("Runs", RUN_COLS, runs.collect()),
        ("Slowest statements", SLOW_COLS, slow.collect()),
    ]
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace("\r\n", "<br>")
        .replace(['\n', '\r'], "<br>")
}

fn markdown(s: &Summary, meta: &ReportMeta, out: &mut String) -> fmt::Result {
    let (title, target) = (md_cell(&meta.title), md_cell(&meta.target));
    let at = format_time_us(meta.generated_at_us);
    writeln!(
        out,
        "# {title}\n\nTarget: {target}  \nGenerated: {at} UTC\n"
    )?;
    if s.totals.events == 0 {
        return writeln!(out, "_{NO_HISTORY}_");
    }
    writeln!(out, "**Totals:** {}", totals_line(&s.totals))?;
    for (heading, header, rows) in tables(s) {
        writeln!(out, "\n## {heading}\n\n| {} |", header.replace('|', " | "))?;
        writeln!(out, "|{}", "---|".repeat(header.split('|').count()))?;
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
            writeln!(out, "| {} |", cells.join(" | "))?;
        }
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;\
text-align:left;vertical-align:top}th{background:#f3f3f3}svg{border:1px solid #ddd;\
background:#fff}.meta{color:#555}.empty{font-style:italic}";

const GREEN: &str = "#2e7d32";
const RED: &str = "#c62828";
const ORANGE: &str = "#ef6c00";
const GREY: &str = "#9e9e9e";

fn event_color(e: &LedgerEntry) -> &'static str {
    match e.name() {
        _ if is_rollback(e) => ORANGE,
        Some(EventName::Completed | EventName::Baselined) => GREEN,
        Some(EventName::Failed) => RED,
        _ => GREY,
    }
}

fn svg_open(out: &mut String, h: f64, label: &str) -> fmt::Result {
    let ns = "xmlns='http://www.w3.org/2000/svg' width='960'";
    writeln!(
        out,
        "<svg {ns} height='{h}' viewBox='0 0 960 {h}' aria-label='{label}'>"
    )
}

/// `<name attrs><title>tip</title></name>`; `tip` must be escaped already.
fn tag(out: &mut String, name: &str, attrs: &str, tip: &str) -> fmt::Result {
    writeln!(out, "<{name} {attrs}><title>{tip}</title></{name}>")
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, body: &str) -> fmt::Result {
    let attrs = format!("x='{x:.1}' y='{y:.1}' font-size='12' text-anchor='{anchor}'");
    writeln!(out, "<text {attrs}>{body}</text>")
}

/// One mark per event on a time axis, one bar per run below it.
fn timeline_svg(entries: &[LedgerEntry], runs: &[RunSummary], out: &mut String) -> fmt::Result {
    let (w, m) = (960.0, 20.0);
    let min = entries.iter().map(|e| e.event_time_us).min().unwrap_or(0);
    let max = entries.iter().map(|e| e.event_time_us).max().unwrap_or(0);
    let span = max.saturating_sub(min).max(1) as f64;
    let x = |t: u64| m + t.saturating_sub(min) as f64 / span * (w - 2.0 * m);
    let h = 80.0 + runs.len() as f64 * 18.0;
    svg_open(out, h, "Timeline")?;
    let axis = format!("x1='{m}' y1='30' x2='{}' y2='30' stroke='#ccc'", w - m);
    writeln!(out, "<line {axis}/>")?;
    for e in entries {
        let (cx, fill) = (x(e.event_time_us), event_color(e));
        let what = format!("{} {} {}", e.event, e.version, e.direction);
        let tip = format!("{} UTC: {}", format_time_us(e.event_time_us), esc(&what));
        let mark = format!("class='event' cx='{cx:.1}' cy='30' r='5' fill='{fill}'");
        tag(out, "circle", &mark, &tip)?;
    }
    for (i, r) in runs.iter().enumerate() {
        let (x0, x1, y) = (x(r.started_us), x(r.ended_us), 50 + i * 18);
        let fill = match () {
            _ if !r.failed.is_empty() => RED,
            _ if !r.rolled_back.is_empty() => ORANGE,
            _ if !r.applied.is_empty() || !r.baselined.is_empty() => GREEN,
            _ => GREY,
        };
        let (bx, bw) = (x0.min(w - m - 3.0), (x1 - x0).max(3.0));
        let bar = format!("class='run' x='{bx:.1}' y='{y}' width='{bw:.1}' height='12'");
        let tip = esc(&format!("run {}: {}", r.run_id, run_outcome(r)));
        tag(
            out,
            "rect",
            &format!("{bar} fill='{fill}' fill-opacity='0.6'"),
            &tip,
        )?;
    }
    let (from, to) = (format_time_us(min), format_time_us(max));
    text(out, m, h - 6.0, "start", &format!("{from} UTC"))?;
    text(out, w - m, h - 6.0, "end", &format!("{to} UTC"))?;
    writeln!(out, "</svg>")
}

/// One bar per migration: the duration of its latest apply.
fn durations_svg(migrations: &[MigrationSummary], out: &mut String) -> fmt::Result {
    let (label_w, bar_w) = (160.0, 640.0);
    let longest = migrations.iter().filter_map(|m| m.apply_duration_ms).max();
    let max = longest.unwrap_or(0).max(1) as f64;
    svg_open(out, migrations.len() as f64 * 22.0 + 10.0, "Durations")?;
    for (i, mig) in migrations.iter().enumerate() {
        let (y, ms) = (5.0 + i as f64 * 22.0, mig.apply_duration_ms);
        let w = ms.unwrap_or(0) as f64 / max * bar_w;
        let version = esc(&mig.version);
        text(out, label_w - 6.0, y + 13.0, "end", &version)?;
        let bar = format!("class='bar' x='{label_w}' y='{y}' width='{w:.1}' height='16'");
        tag(out, "rect", &format!("{bar} fill='#3f6fb5'"), &version)?;
        text(out, label_w + w + 6.0, y + 13.0, "start", &opt_ms(ms))?;
    }
    writeln!(out, "</svg>")
}

fn html(entries: &[LedgerEntry], s: &Summary, meta: &ReportMeta, out: &mut String) -> fmt::Result {
    let (title, target) = (esc(&meta.title), esc(&meta.target));
    let head = "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>";
    writeln!(out, "{head}\n<title>{title}</title>\n<style>{CSS}</style>")?;
    let at = format_time_us(meta.generated_at_us);
    writeln!(out, "</head>\n<body>\n<h1>{title}</h1>\n<p class='meta'>")?;
    writeln!(out, "Target: {target}<br>Generated: {at} UTC</p>")?;
    if s.totals.events == 0 {
        return writeln!(out, "<p class='empty'>{NO_HISTORY}</p>\n</body>\n</html>");
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
    for (heading, header, rows) in tables(s) {
        let header = header.replace('|', "</th><th>");
        writeln!(out, "<h2>{heading}</h2>\n<table>\n<thead><tr>")?;
        writeln!(out, "<th>{header}</th></tr></thead>\n<tbody>")?;
        for row in rows {
            let cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
            writeln!(out, "<tr><td>{}</td></tr>", cells.join("</td><td>"))?;
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
        let mut e = ev(seq, run, version, "statement_done", "up");
        (e.statement, e.duration_ms) = (statement, ms);
        e
    }

    fn meta() -> ReportMeta {
        let target = "http://127.0.0.11:8123 db analytics".into();
        ReportMeta {
            title: "History".into(),
            target,
            generated_at_us: T0,
        }
    }

    fn sample() -> Vec<LedgerEntry> {
        let mut v = vec![
            ev(1, "r1", "1", "started", "up"),
            done(2, "r1", "1", 0, 100),
            done(3, "r1", "1", 1, 50),
            ev(4, "r1", "1", "completed", "up"),
            ev(5, "r1", "2", "started", "up"),
            ev(6, "r1", "2", "failed", "up"),
            ev(7, "r2", "1.10", "started", "up"),
            ev(8, "r2", "1.10", "completed", "up"),
            ev(9, "r2", "1.2", "baselined", ""),
            ev(10, "r2", "3", "started", "up"),
            done(11, "r2", "3", 0, 7),
            ev(12, "r3", "1.10", "started", "down"),
            ev(13, "r3", "1.10", "completed", "down"),
            ev(14, "r3", "4", "started", "up"),
            ev(15, "r3", "4", "completed", "up"),
            ev(16, "r3", "4", "manual_rollback", ""),
            ev(17, "r3", "", "lock_released", ""),
        ];
        v[3].description = "create events".into();
        v[5].error = "Code: 62".into();
        v[7].duration_ms = 900;
        v.reverse(); // summarize orders by seq
        v
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
        let expected = "applied baselined rolled_back failed in_progress rolled_back";
        assert_eq!(states.join(" "), expected);
        let t = &s.totals;
        let totals = (t.events, t.migrations_applied, t.failures, t.rollbacks);
        assert_eq!(totals, (17, 1, 1, 2));
        let one = by_version(&s, "1");
        assert_eq!((one.description.as_str(), one.runs), ("create events", 1));
        assert_eq!(one.first_applied_us, Some(T0 + 4_000_000));
        assert_eq!(by_version(&s, "2").last_error.as_deref(), Some("Code: 62"));
        assert_eq!(by_version(&s, "1.10").runs, 2);
    }

    #[test]
    fn durations_come_from_the_latest_successful_apply() {
        let first = summarize(&sample());
        assert_eq!(by_version(&first, "1").apply_duration_ms, Some(150));
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
        let steps = one.statements.iter().map(|d| (d.statement, d.duration_ms));
        assert!(steps.eq([(0, 30), (1, 12)]));
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
        assert_eq!(run_outcome(&s.runs[0]), "applied 1; failed 2");
        let r1 = (s.runs[0].started_us - T0, s.runs[0].ended_us - T0);
        assert_eq!(r1, (1_000_000, 6_000_000));
        assert_eq!(s.runs[2].rolled_back, ["1.10", "4"]);
        assert_eq!(run_outcome(&s.runs[1]), "applied 1.10; baselined 1.2");
    }

    #[test]
    fn pending_hosts_are_cleared_by_verification() {
        // The rows the runtime writes: details name the DDL task and hosts.
        let row = |seq, event: &str, task: &str, hosts: &[&str]| LedgerEntry {
            details: serde_json::json!({ "task": task, "hosts": hosts }).to_string(),
            ..ev(seq, "r", "5", event, "up")
        };
        let mut entries = vec![
            ev(1, "r", "5", "started", "up"),
            row(2, "hosts_pending", "/ddl/query-1", &["ch-2:9000"]),
            row(3, "hosts_verified", "/ddl/query-1", &["ch-2:9000"]),
            ev(4, "r", "5", "completed", "up"),
        ];
        let hosts =
            |entries: &[LedgerEntry]| summarize(entries).migrations[0].hosts_pending.clone();
        assert!(hosts(&entries).is_empty());
        entries.push(row(
            5,
            "hosts_pending",
            "/ddl/query-2",
            &["ch-4:9440", "ch-3:9000"],
        ));
        entries.push(row(6, "hosts_pending", "/ddl/query-3", &["ch-3:9000"]));
        assert_eq!(hosts(&entries), ["ch-3:9000", "ch-4:9440"]);
        entries.push(row(7, "hosts_verified", "/ddl/query-2", &[]));
        assert_eq!(
            hosts(&entries),
            ["ch-3:9000"],
            "only the verified task closes"
        );
        entries.push(row(8, "hosts_verified", "/ddl/query-3", &[]));
        assert!(hosts(&entries).is_empty());
    }

    #[test]
    fn html_escapes_ledger_text() {
        let (mut a, mut b) = (
            ev(1, "r\"1", "1", "started", "up"),
            ev(2, "r\"1", "1", "failed", "up"),
        );
        a.description = "<script>alert('x')</script>".into();
        b.error = "a & \"b\" <script>".into();
        let html = render(&[a, b], &meta(), ReportFormat::Html);
        assert!(html.contains("<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</td>"));
        assert!(html.contains("<td>a &amp; &quot;b&quot; &lt;script&gt;</td>"));
        assert!(html.contains("<td>r&quot;1</td>"));
        assert!(html.contains("<title>run r&quot;1: failed 1"));
        assert!(!html.to_lowercase().contains("<script"));
        assert!(!html.contains("src=") && !html.contains("<link"));
    }

    #[test]
    fn html_has_both_charts() {
        let html = render(&sample(), &meta(), ReportFormat::Html);
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("class='bar'").count(), 6);
        assert_eq!(html.matches("class='event'").count(), 17);
        assert_eq!(html.matches("class='run'").count(), 3);
        assert!(html.contains(">900 ms</text>") && html.contains(">1.10</text>"));
        assert!(html.contains(&format!("fill='{RED}'")));
    }

    #[test]
    fn markdown_tables() {
        let mut entries = sample();
        entries[13].description = "a|b\nc".into();
        let md = render(&entries, &meta(), ReportFormat::Markdown);
        assert!(md.starts_with("# History\n"));
        let totals = "**Totals:** 17 events, 1 migrations applied, 1 failures, 2 rollbacks\n";
        assert!(md.contains(totals));
        let header = "| Version | Description | Migration | Author | Created | State | Applied at (UTC) | Duration | Runs | Hosts pending | Last error |";
        assert!(md.contains(&format!(
            "{header}\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        )));
        let row =
            "| 1 | a\\|b<br>c |  |  |  | applied | 2025-05-28 12:00:04 | 150 ms | 1 |  |  |\n";
        assert!(md.contains(row), "{md}");
        assert!(md.contains("| 2 |  |  |  |  | failed | – | – | 1 |  | Code: 62 |\n"));
        // The header's audit fields, as the latest run recorded them.
        let mut entries = sample();
        let started = entries.iter_mut().find(|e| e.seq == 1).unwrap();
        started.details =
            r#"{"statements":1,"migration":"Create users table","author":"Data Team","created":"2024-01-15"}"#.into();
        let md = render(&entries, &meta(), ReportFormat::Markdown);
        assert!(
            md.contains(
                "| 1 | create events | Create users table | Data Team | 2024-01-15 | applied |"
            ),
            "{md}"
        );
        let run = "| r1 | ana@box | prod | 2025-05-28 12:00:01 | 2025-05-28 12:00:06 | applied 1; failed 2 |";
        assert!(md.contains(run));
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
        assert_eq!(v.as_object().unwrap().len(), 4);
        assert!(json.find("\"totals\"") < json.find("\"migrations\""));
    }

    #[test]
    fn empty_ledger_says_so() {
        let html = render(&[], &meta(), ReportFormat::Html);
        assert!(html.contains("No migration history") && html.ends_with("</html>\n"));
        assert!(!html.contains("<svg"));
        let md = render(&[], &meta(), ReportFormat::Markdown);
        assert!(md.contains("_No migration history: the ledger has no events._"));
        let json = render(&[], &meta(), ReportFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["totals"]["events"], 0);
        assert_eq!(v["migrations"], serde_json::json!([]));
    }
}
