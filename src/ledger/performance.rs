//! Timing views of the ledger (pure): `profile --migration V` (each
//! statement of a migration's latest run, with the `query_id` it was sent
//! with) and `report --performance` (the slowest migrations and
//! statements). The server's `system.query_log` figures are joined in by
//! the CLI when the server logs queries.

use serde::Serialize;

use crate::ledger::LedgerEntry;
use crate::ledger::report::{StatementTiming, summarize};
use crate::ledger::vocabulary::EventName;

/// One statement of a profiled run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfiledStatement {
    /// 1-based.
    pub number: usize,
    pub duration_ms: u64,
    /// What the statement was sent with (empty for ledgers older than
    /// query ids).
    pub query_id: String,
    /// Hosts that ran it (`ON CLUSTER`), `host:port`.
    pub hosts: Vec<String>,
    pub run_id: String,
}

/// A migration's latest run, statement by statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub version: String,
    pub description: String,
    pub direction: String,
    /// Sum of the statements' durations.
    pub total_ms: u64,
    pub statements: Vec<ProfiledStatement>,
}

/// The statements recorded since `version`'s latest `started` event, or
/// `None` when the ledger never ran it.
pub fn profile(entries: &[LedgerEntry], version: &str) -> Option<Profile> {
    let mut sorted: Vec<&LedgerEntry> = entries.iter().filter(|e| e.version == version).collect();
    sorted.sort_by_key(|e| e.seq);
    let start = sorted.iter().rposition(|e| e.is(EventName::Started))?;
    let started = sorted[start];
    let mut statements: Vec<ProfiledStatement> = sorted[start..]
        .iter()
        .filter(|e| e.is(EventName::StatementDone))
        .map(|e| {
            let details: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
            let hosts: Vec<crate::ledger::HostResult> =
                serde_json::from_str(&e.hosts).unwrap_or_default();
            ProfiledStatement {
                number: usize::try_from(e.statement).unwrap_or(0) + 1,
                duration_ms: e.duration_ms,
                query_id: details["query_id"].as_str().unwrap_or_default().to_string(),
                hosts: hosts
                    .iter()
                    .map(|h| format!("{}:{}", h.host, h.port))
                    .collect(),
                run_id: e.run_id.clone(),
            }
        })
        .collect();
    statements.sort_by_key(|s| s.number);
    Some(Profile {
        version: version.to_string(),
        description: started.description.clone(),
        direction: started.direction.clone(),
        total_ms: statements.iter().map(|s| s.duration_ms).sum(),
        statements,
    })
}

/// A migration's latest successful apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationTiming {
    pub version: String,
    pub description: String,
    pub duration_ms: u64,
    pub statements: usize,
}

/// `report --performance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Performance {
    /// Slowest first, at most `n`.
    pub slowest_migrations: Vec<MigrationTiming>,
    pub slowest_statements: Vec<StatementTiming>,
}

pub fn performance(entries: &[LedgerEntry], n: usize) -> Performance {
    let s = summarize(entries);
    let mut migrations: Vec<MigrationTiming> = s
        .migrations
        .iter()
        .filter_map(|m| {
            Some(MigrationTiming {
                version: m.version.clone(),
                description: m.description.clone(),
                duration_ms: m.apply_duration_ms?,
                statements: m.statements.len(),
            })
        })
        .collect();
    migrations.sort_by(|a, b| {
        b.duration_ms
            .cmp(&a.duration_ms)
            .then(a.version.cmp(&b.version))
    });
    migrations.truncate(n);
    let mut statements = s.slowest_statements;
    statements.truncate(n);
    Performance {
        slowest_migrations: migrations,
        slowest_statements: statements,
    }
}

/// `report --performance` for people (Markdown tables).
pub fn render_markdown(p: &Performance) -> String {
    let mut out = String::from(
        "## Slowest migrations\n\n| Version | Description | Duration (ms) | Statements |\n|---|---|---:|---:|\n",
    );
    for m in &p.slowest_migrations {
        out.push_str(&format!(
            "| V{} | {} | {} | {} |\n",
            m.version,
            m.description.replace('|', "\\|"),
            m.duration_ms,
            m.statements
        ));
    }
    out.push_str("\n## Slowest statements\n\n| Version | Statement | Direction | Duration (ms) | Run |\n|---|---:|---|---:|---|\n");
    for s in &p.slowest_statements {
        out.push_str(&format!(
            "| V{} | {} | {} | {} | {} |\n",
            s.version,
            s.statement + 1,
            s.direction,
            s.duration_ms,
            s.run_id
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, version: &str, event: &str, stmt: i64, ms: u64, details: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            version: version.into(),
            event: event.into(),
            direction: "up".into(),
            statement: stmt,
            duration_ms: ms,
            details: details.into(),
            run_id: format!("r{}", seq / 10),
            description: if event == "started" {
                "create t".into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn profile_is_the_latest_run_with_query_ids() {
        let l = vec![
            ev(1, "1", "started", -1, 0, "{}"),
            ev(2, "1", "statement_done", 0, 900, r#"{"query_id":"old"}"#),
            ev(3, "1", "failed", 1, 5, ""),
            ev(11, "1", "started", -1, 0, "{}"),
            ev(12, "1", "statement_done", 0, 40, r#"{"query_id":"q1"}"#),
            ev(13, "1", "statement_done", 1, 60, r#"{"query_id":"q2"}"#),
            ev(14, "1", "completed", -1, 100, ""),
            ev(15, "2", "started", -1, 0, "{}"),
        ];
        let p = profile(&l, "1").unwrap();
        assert_eq!(p.total_ms, 100);
        assert_eq!(p.description, "create t");
        let ids: Vec<&str> = p.statements.iter().map(|s| s.query_id.as_str()).collect();
        assert_eq!(ids, ["q1", "q2"]);
        assert_eq!(p.statements[1].number, 2);
        assert!(profile(&l, "2").unwrap().statements.is_empty());
        assert!(profile(&l, "3").is_none());
    }

    #[test]
    fn performance_ranks_slowest_first() {
        let l = vec![
            ev(1, "1", "started", -1, 0, "{}"),
            ev(2, "1", "statement_done", 0, 10, "{}"),
            ev(3, "1", "completed", -1, 10, ""),
            ev(4, "2", "started", -1, 0, "{}"),
            ev(5, "2", "statement_done", 0, 70, "{}"),
            ev(6, "2", "statement_done", 1, 20, "{}"),
            ev(7, "2", "completed", -1, 90, ""),
        ];
        let p = performance(&l, 10);
        let v: Vec<(&str, u64)> = p
            .slowest_migrations
            .iter()
            .map(|m| (m.version.as_str(), m.duration_ms))
            .collect();
        assert_eq!(v, [("2", 90), ("1", 10)]);
        assert_eq!(p.slowest_statements[0].duration_ms, 70);
        assert_eq!(performance(&l, 1).slowest_statements.len(), 1);
        let md = render_markdown(&p);
        assert!(md.contains("| V2 | create t | 90 | 2 |"), "{md}");
    }
}
