//! The history ledger's table: its rows, the SQL chmigrate uses to create,
//! check, write and read it, and the conversion of rows to [`Event`]s (pure;
//! the runtime sends the SQL).
//!
//! One ledger per target, default `<database>.schema_migrations`. On a
//! cluster it is created `ON CLUSTER` as a `ReplicatedMergeTree` whose
//! ZooKeeper path has no `{shard}` (a literal path built from the database and
//! table names), so every node of every shard holds the whole ledger. On a
//! single node it is a plain `MergeTree`. Rows are only ever inserted.

use serde::{Deserialize, Serialize};

use crate::sql::ident::{Ident, quote, string_literal};

/// One ledger row. Column names and types are in [`COLUMNS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LedgerEntry {
    /// Order of events on the target: the writer holds the lock and writes
    /// `max(seq) + 1, + 2, …`, so clock skew between machines cannot reorder
    /// history.
    pub seq: u64,
    /// Wall-clock time of the event, microseconds since the Unix epoch (UTC).
    pub event_time_us: u64,
    /// The run (one CLI invocation or one reconcile) that wrote the row.
    pub run_id: String,
    /// Empty for events without a version (lock events).
    pub version: String,
    /// Event name: see [`EventName`].
    pub event: String,
    /// `up`, `down`, or empty.
    pub direction: String,
    /// 0-based statement index, or -1.
    pub statement: i64,
    pub checksum: String,
    pub environment: String,
    /// Who: `user@machine` for the CLI, `operator:<namespace>/<name>` for the operator.
    pub actor: String,
    /// The ClickHouse user the run connected as.
    pub db_user: String,
    pub duration_ms: u64,
    /// Per-host outcome of an `ON CLUSTER` statement, JSON array of [`HostResult`].
    pub hosts: String,
    /// The server's error, when the event is a failure.
    pub error: String,
    pub description: String,
    /// Extra data as a JSON object (DDL task path, pending hosts, lock token, SQL).
    pub details: String,
}

/// The ledger's columns, in table order.
pub const COLUMNS: [(&str, &str); 16] = [
    ("seq", "UInt64"),
    ("event_time_us", "UInt64"),
    ("run_id", "String"),
    ("version", "String"),
    ("event", "String"),
    ("direction", "String"),
    ("statement", "Int64"),
    ("checksum", "String"),
    ("environment", "String"),
    ("actor", "String"),
    ("db_user", "String"),
    ("duration_ms", "UInt64"),
    ("hosts", "String"),
    ("error", "String"),
    ("description", "String"),
    ("details", "String"),
];

/// One host's answer to an `ON CLUSTER` statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResult {
    pub host: String,
    pub port: u16,
    pub status: i64,
    #[serde(default)]
    pub error: String,
}

/// Where a ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTable {
    pub database: Ident,
    pub table: Ident,
    pub cluster: Option<Ident>,
}

impl LedgerTable {
    /// `` `db`.`table` ``
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| format!(" ON CLUSTER {c}"))
            .unwrap_or_default()
    }

    /// The ZooKeeper path of the replicated ledger (no `{shard}`: one
    /// replica set spanning every node).
    pub fn zookeeper_path(&self) -> String {
        format!(
            "/clickhouse/chmigrate/{}/{}",
            self.database.as_str(),
            self.table.as_str()
        )
    }

    /// `CREATE DATABASE IF NOT EXISTS`.
    pub fn create_database_sql(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            self.database,
            self.on_cluster()
        )
    }

    /// `CREATE TABLE IF NOT EXISTS` for the ledger.
    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = COLUMNS
            .iter()
            .map(|(n, t)| format!("    {} {t}", quote(n)))
            .collect();
        let engine = match &self.cluster {
            Some(_) => format!(
                "ReplicatedMergeTree({}, '{{replica}}')",
                string_literal(&self.zookeeper_path())
            ),
            None => "MergeTree()".to_string(),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {}{}\n(\n{}\n)\nENGINE = {engine}\nORDER BY (seq, event_time_us, run_id)",
            self.qualified(),
            self.on_cluster(),
            cols.join(",\n")
        )
    }

    /// `clean`: deletes the given events (a mutation; on a cluster the
    /// replicated ledger carries it to every replica).
    pub fn delete_sql(&self, seqs: &[u64]) -> String {
        let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
        format!(
            "ALTER TABLE {} DELETE WHERE seq IN ({})",
            self.qualified(),
            if list.is_empty() {
                "0".into()
            } else {
                list.join(", ")
            }
        )
    }

    /// The ledger's columns as the server sees them.
    pub fn columns_sql(&self) -> String {
        format!(
            "SELECT name, type FROM system.columns WHERE database = {} AND table = {}",
            string_literal(self.database.as_str()),
            string_literal(self.table.as_str())
        )
    }

    /// Whether the ledger exists.
    pub fn exists_sql(&self) -> String {
        format!(
            "SELECT count() AS n FROM system.tables WHERE database = {} AND name = {}",
            string_literal(self.database.as_str()),
            string_literal(self.table.as_str())
        )
    }

    /// Waits until this replica has every part the others have.
    pub fn sync_replica_sql(&self) -> Option<String> {
        self.cluster
            .as_ref()
            .map(|_| format!("SYSTEM SYNC REPLICA {}", self.qualified()))
    }

    /// `INSERT … FORMAT JSONEachRow` head; rows follow, one JSON object per line.
    pub fn insert_sql(&self) -> String {
        format!("INSERT INTO {} FORMAT JSONEachRow", self.qualified())
    }

    /// Every row in ledger order.
    pub fn select_sql(&self) -> String {
        let cols: Vec<String> = COLUMNS.iter().map(|(n, _)| quote(n)).collect();
        format!(
            "SELECT {} FROM {} ORDER BY seq, event_time_us, run_id",
            cols.join(", "),
            self.qualified()
        )
    }

    /// The highest sequence number (0 when empty).
    pub fn max_seq_sql(&self) -> String {
        format!("SELECT max(seq) AS seq FROM {}", self.qualified())
    }
}

/// Compares the server's columns with [`COLUMNS`]; returns what differs.
pub fn shape_mismatches(actual: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, ty) in COLUMNS {
        match actual.iter().find(|(n, _)| n == name) {
            None => out.push(format!("missing column {name} {ty}")),
            Some((_, t)) if t != ty => {
                out.push(format!("column {name} has type {t}, expected {ty}"))
            }
            Some(_) => {}
        }
    }
    for (name, ty) in actual {
        if !COLUMNS.iter().any(|(n, _)| n == name) {
            out.push(format!("unexpected column {name} {ty}"));
        }
    }
    out
}

/// Why a row could not be read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger row seq {seq}: {message}")]
pub struct RowError {
    pub seq: u64,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::fold::{Event, EventKind, TargetState};
    use crate::model::version::Version;

    fn table(cluster: Option<&str>) -> LedgerTable {
        LedgerTable {
            database: Ident::new("database name", "analytics").unwrap(),
            table: Ident::new("history table name", "schema_migrations").unwrap(),
            cluster: cluster.map(|c| Ident::new("cluster name", c).unwrap()),
        }
    }

    #[test]
    fn ledger_ddl_single_node_and_cluster() {
        let single = table(None).create_sql();
        assert!(
            single.starts_with("CREATE TABLE IF NOT EXISTS `analytics`.`schema_migrations`\n(")
        );
        assert!(single.contains("ENGINE = MergeTree()"));
        assert!(single.contains("    `seq` UInt64,\n"));
        let clustered = table(Some("chm_cluster")).create_sql();
        assert!(clustered.starts_with(
            "CREATE TABLE IF NOT EXISTS `analytics`.`schema_migrations` ON CLUSTER `chm_cluster`\n("
        ));
        assert!(clustered.contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/chmigrate/analytics/schema_migrations', '{replica}')"
        ));
        assert!(!clustered.contains("{shard}"));
        assert_eq!(
            table(Some("c")).create_database_sql(),
            "CREATE DATABASE IF NOT EXISTS `analytics` ON CLUSTER `c`"
        );
        assert_eq!(table(None).sync_replica_sql(), None);
    }

    #[test]
    fn hostile_names_cannot_escape_their_quotes() {
        // Ident rejects them outright; quoting is the second line of defence.
        assert!(Ident::new("history table name", "x`; DROP TABLE y; --").is_err());
        let t = LedgerTable {
            database: Ident::new("d", "we-ird.name").unwrap(),
            table: Ident::new("t", "t-1").unwrap(),
            cluster: None,
        };
        assert_eq!(t.qualified(), "`we-ird.name`.`t-1`");
        assert!(
            t.columns_sql()
                .contains("database = 'we-ird.name' AND table = 't-1'")
        );
    }

    #[test]
    fn shape_check_names_every_difference() {
        let mut actual: Vec<(String, String)> = COLUMNS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert!(shape_mismatches(&actual).is_empty());
        actual.retain(|(n, _)| n != "checksum");
        actual[0].1 = "UInt32".into();
        actual.push(("extra".into(), "String".into()));
        assert_eq!(
            shape_mismatches(&actual),
            [
                "column seq has type UInt32, expected UInt64",
                "missing column checksum String",
                "unexpected column extra String",
            ]
        );
    }

    #[test]
    fn rows_fold_into_state() {
        let row =
            |seq: u64, event: &str, direction: &str, statement: i64, details: &str| LedgerEntry {
                seq,
                version: "3".into(),
                event: event.into(),
                direction: direction.into(),
                statement,
                checksum: "abc".into(),
                details: details.into(),
                ..Default::default()
            };
        let rows = [
            row(1, "started", "up", -1, r#"{"statements":2}"#),
            row(2, "statement_done", "up", 0, ""),
            row(3, "statement_done", "up", 1, ""),
            row(4, "completed", "up", -1, ""),
            LedgerEntry {
                seq: 5,
                event: "lock_released".into(),
                ..Default::default()
            },
        ];
        let events: Vec<Event> = rows.iter().map(|r| r.to_event().unwrap()).collect();
        let state = TargetState::fold(&events);
        assert!(state.is_applied(&Version::parse("3").unwrap()));
        assert!(matches!(
            events[0].kind,
            EventKind::Started { statements: 2, .. }
        ));
        let bad = LedgerEntry {
            seq: 9,
            event: "exploded".into(),
            ..Default::default()
        };
        assert_eq!(
            bad.to_event().unwrap_err().to_string(),
            "ledger row seq 9: unknown event \"exploded\""
        );
        let bad = row(10, "statement_done", "sideways", 0, "");
        assert!(bad.to_event().is_err());
    }

    #[test]
    fn rows_round_trip_as_json() {
        let e = LedgerEntry {
            seq: 7,
            version: "1.1".into(),
            event: "completed".into(),
            direction: "up".into(),
            statement: -1,
            ..Default::default()
        };
        let line = serde_json::to_string(&e).unwrap();
        let back: LedgerEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }
}
