//! Reading what ClickHouse answers to `ON CLUSTER` statements (pure).
//!
//! On success the answer is one row per host (`host, port, status, error,
//! num_hosts_remaining, num_hosts_active`). A host that fails turns the whole
//! answer into an exception naming it (`There was an error on [host:port]:
//! …`). A host that does not finish within `distributed_ddl_task_timeout`
//! turns it into code 159 naming the queue task (`Watching task
//! /clickhouse/task_queue/ddl/query-0000000020 is executing longer than …
//! There are 1 unfinished hosts …`); the hosts that are back later run the
//! task themselves, and the task's `finished/<host>` nodes in ZooKeeper say
//! how it went.

use serde::Deserialize;

use crate::ledger::HostResult;

/// One row of the per-host answer.
#[derive(Debug, Clone, Deserialize)]
struct Row {
    host: String,
    port: u16,
    status: serde_json::Value,
    #[serde(default)]
    error: String,
}

/// Parses the per-host rows of a successful `ON CLUSTER` statement.
pub fn parse_host_rows(text: &str) -> Result<Vec<HostResult>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: Row =
            serde_json::from_str(line).map_err(|e| format!("per-host result {line:?}: {e}"))?;
        let status = match &r.status {
            serde_json::Value::Number(n) => n.as_i64().unwrap_or(-1),
            serde_json::Value::String(s) => s.parse().unwrap_or(-1),
            _ => -1,
        };
        out.push(HostResult {
            host: r.host,
            port: r.port,
            status,
            error: r.error,
        });
    }
    Ok(out)
}

/// A timed-out distributed DDL task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOutTask {
    /// The task's ZooKeeper path (`/clickhouse/task_queue/ddl/query-0000000020`).
    pub task_path: String,
    pub unfinished: usize,
}

/// Reads a code-159 message.
pub fn parse_timeout(message: &str) -> Option<TimedOutTask> {
    let start = message.find("Watching task ")? + "Watching task ".len();
    let task_path: String = message[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let n_at = message.find("There are ")? + "There are ".len();
    let digits: String = message[n_at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(TimedOutTask {
        task_path,
        unfinished: digits.parse().ok()?,
    })
}

/// Reads `There was an error on [host:port]: <inner>`: the host and the
/// host's own error.
pub fn parse_host_error(message: &str) -> Option<(String, String)> {
    let start = message.find("There was an error on [")? + "There was an error on [".len();
    let end = start + message[start..].find(']')?;
    let host = message[start..end].to_string();
    let inner = message[end + 1..]
        .trim_start_matches(':')
        .trim()
        .to_string();
    Some((host, inner))
}

/// ZooKeeper escapes dots in host names of DDL task nodes (`127%2E0%2E0%2E11:9001`).
pub fn unescape_host_id(id: &str) -> String {
    id.replace("%2E", ".")
        .replace("%3A", ":")
        .replace("%25", "%")
}

/// `host:port` as the DDL answer and `system.clusters` write it.
pub fn host_id(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// A `finished/<host>` node's value: `0` for success, else the error.
pub fn finished_status(value: &str) -> Result<(), String> {
    let v = value.trim();
    let (code, rest) = v.split_once('\n').unwrap_or((v, ""));
    if code.trim() == "0" {
        Ok(())
    } else {
        Err(format!("code {}: {}", code.trim(), rest.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_per_host_rows_from_18_16_and_current_servers() {
        let text = "{\"host\":\"127.0.0.12\",\"port\":9002,\"status\":0,\"error\":\"\",\"num_hosts_remaining\":3,\"num_hosts_active\":0}\n\
                    {\"host\":\"127.0.0.14\",\"port\":9004,\"status\":\"0\",\"error\":\"\",\"num_hosts_remaining\":\"2\",\"num_hosts_active\":\"0\"}\n";
        let rows = parse_host_rows(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            HostResult {
                host: "127.0.0.12".into(),
                port: 9002,
                status: 0,
                error: String::new()
            }
        );
        assert_eq!(rows[1].status, 0);
        assert!(parse_host_rows("garbage").is_err());
        assert!(parse_host_rows("").unwrap().is_empty());
    }

    #[test]
    fn parses_the_timeout_message() {
        let m = "Watching task /clickhouse/task_queue/ddl/query-0000000020 is executing longer than distributed_ddl_task_timeout (=5) seconds. There are 1 unfinished hosts (0 of them are currently active), they are going to execute the query in background";
        assert_eq!(
            parse_timeout(m),
            Some(TimedOutTask {
                task_path: "/clickhouse/task_queue/ddl/query-0000000020".into(),
                unfinished: 1
            })
        );
        assert_eq!(parse_timeout("Table t already exists"), None);
    }

    #[test]
    fn parses_the_failing_host() {
        let m = "There was an error on [127.0.0.14:9004]: Code: 57, e.displayText() = DB::Exception: Table default.part1 already exists., e.what() = DB::Exception";
        let (host, inner) = parse_host_error(m).unwrap();
        assert_eq!(host, "127.0.0.14:9004");
        assert!(inner.starts_with("Code: 57"));
    }

    #[test]
    fn host_ids_and_statuses() {
        assert_eq!(unescape_host_id("127%2E0%2E0%2E11:9001"), "127.0.0.11:9001");
        assert_eq!(finished_status("0\n"), Ok(()));
        assert_eq!(
            finished_status("57\nTable exists"),
            Err("code 57: Table exists".into())
        );
    }
}
