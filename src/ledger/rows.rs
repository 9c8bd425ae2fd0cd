//! The history ledger's table: its rows, the SQL chmigrate uses to create,
//! check, write and read it, and the conversion of rows to [`Event`]s (pure;
//! the runtime sends the SQL).
//!
//! One ledger per target, default `<database>.schema_migrations`. On a
//! cluster it is created `ON CLUSTER` as a `ReplicatedMergeTree` whose
//! ZooKeeper path has no `{shard}` (a literal path built from the database and
//! table names), so every node of every shard holds the whole ledger. On a
//! single node it is a plain `MergeTree`. Rows are only ever inserted.
//!
//! Two table formats exist. Format 2 (this release) is narrow: four fixed
//! columns (`seq`, `event_time_us`, `run_id`, `event`) and one `payload`
//! column, a JSON object with the row's other fields ([`StoredRow`]). Format
//! 1 (releases before ledger v2) had one column per field ([`COLUMNS_V1`]);
//! it is still read and written, and upgraded in place under the lock
//! (`runtime::store::upgrade`). Either way the rest of chmigrate sees
//! [`LedgerEntry`] values: the format is this module's business.

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

/// The ledger's columns (format 2), in table order.
pub const COLUMNS: [(&str, &str); 5] = [
    ("seq", "UInt64"),
    ("event_time_us", "UInt64"),
    ("run_id", "String"),
    ("event", "String"),
    ("payload", "String"),
];

/// The columns of a format-1 ledger (one per field), in table order.
pub const COLUMNS_V1: [(&str, &str); 16] = [
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

/// A ledger table's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// One column per field (releases before ledger v2).
    V1,
    /// Narrow: fixed columns plus one JSON payload.
    V2,
}

impl Format {
    /// The number the `ledger_upgraded` event and `doctor` show.
    pub fn number(self) -> u8 {
        match self {
            Format::V1 => 1,
            Format::V2 => 2,
        }
    }
}

/// One row as a format-2 ledger stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub seq: u64,
    pub event_time_us: u64,
    pub run_id: String,
    pub event: String,
    /// JSON object of the entry's other fields; empty fields are left out.
    pub payload: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The payload's fields: [`LedgerEntry`]'s, minus the fixed columns.
/// `statement` is left out when it is -1 (no statement).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Payload {
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    direction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    statement: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    checksum: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    environment: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    actor: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    db_user: String,
    #[serde(skip_serializing_if = "is_zero")]
    duration_ms: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    hosts: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    details: String,
}

impl LedgerEntry {
    /// The row a format-2 ledger stores for this entry.
    pub fn to_stored(&self) -> StoredRow {
        let payload = Payload {
            version: self.version.clone(),
            direction: self.direction.clone(),
            statement: (self.statement != -1).then_some(self.statement),
            checksum: self.checksum.clone(),
            environment: self.environment.clone(),
            actor: self.actor.clone(),
            db_user: self.db_user.clone(),
            duration_ms: self.duration_ms,
            hosts: self.hosts.clone(),
            error: self.error.clone(),
            description: self.description.clone(),
            details: self.details.clone(),
        };
        StoredRow {
            seq: self.seq,
            event_time_us: self.event_time_us,
            run_id: self.run_id.clone(),
            event: self.event.clone(),
            // A struct of strings and numbers always serialises.
            payload: serde_json::to_string(&payload).unwrap_or_default(),
        }
    }

    /// The entry a format-2 row holds.
    pub fn from_stored(row: StoredRow) -> Result<LedgerEntry, RowError> {
        let p: Payload = if row.payload.is_empty() {
            Payload::default()
        } else {
            serde_json::from_str(&row.payload).map_err(|e| RowError {
                seq: row.seq,
                message: format!("payload is not a JSON object of ledger fields: {e}"),
            })?
        };
        Ok(LedgerEntry {
            seq: row.seq,
            event_time_us: row.event_time_us,
            run_id: row.run_id,
            version: p.version,
            event: row.event,
            direction: p.direction,
            statement: p.statement.unwrap_or(-1),
            checksum: p.checksum,
            environment: p.environment,
            actor: p.actor,
            db_user: p.db_user,
            duration_ms: p.duration_ms,
            hosts: p.hosts,
            error: p.error,
            description: p.description,
            details: p.details,
        })
    }
}

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

    /// The ZooKeeper path of a format-1 replicated ledger (no `{shard}`: one
    /// replica set spanning every node), and the base of the lock's path.
    pub fn zookeeper_path(&self) -> String {
        format!(
            "/clickhouse/chmigrate/{}/{}",
            self.database.as_str(),
            self.table.as_str()
        )
    }

    /// The ZooKeeper path of a format-2 ledger: a root of its own, so that
    /// a format-1 ledger kept beside it after an upgrade never shares (or,
    /// when dropped, removes) its nodes.
    pub fn zookeeper_path_v2(&self) -> String {
        format!(
            "/clickhouse/chmigrate-v2/{}/{}",
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

    /// `CREATE TABLE IF NOT EXISTS` for the ledger (format 2).
    pub fn create_sql(&self) -> String {
        self.create_sql_named(&self.table)
    }

    /// `CREATE TABLE IF NOT EXISTS` of a format-2 ledger table called
    /// `name` (the upgrade builds the new table beside the old one) with
    /// this ledger's ZooKeeper path.
    pub fn create_sql_named(&self, name: &Ident) -> String {
        self.table_ddl(
            &format!("{}.{name}", self.database),
            &COLUMNS,
            &self.zookeeper_path_v2(),
            "seq",
        )
    }

    /// The format-1 table as the release before ledger v2 created it (for
    /// tests and for the query catalog's upgrade check).
    pub fn create_v1_sql(&self) -> String {
        self.table_ddl(
            &self.qualified(),
            &COLUMNS_V1,
            &self.zookeeper_path(),
            "(seq, event_time_us, run_id)",
        )
    }

    fn table_ddl(&self, name: &str, columns: &[(&str, &str)], path: &str, order: &str) -> String {
        let cols: Vec<String> = columns
            .iter()
            .map(|(n, t)| format!("    {} {t}", quote(n)))
            .collect();
        let engine = match &self.cluster {
            Some(_) => format!(
                "ReplicatedMergeTree({}, '{{replica}}')",
                string_literal(path)
            ),
            None => "MergeTree()".to_string(),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {name}{}\n(\n{}\n)\nENGINE = {engine}\nORDER BY {order}",
            self.on_cluster(),
            cols.join(",\n")
        )
    }

    /// The names the upgrade uses: the new table while it is filled
    /// (`<table>__v2`) and the old one kept afterwards (`<table>_v1`).
    pub fn upgrade_names(&self) -> Result<(Ident, Ident), crate::sql::ident::IdentError> {
        Ok((
            Ident::new(
                "history table name",
                &format!("{}__v2", self.table.as_str()),
            )?,
            Ident::new("history table name", &format!("{}_v1", self.table.as_str()))?,
        ))
    }

    /// One `RENAME TABLE` of `pairs` (from, to) within the ledger's database.
    pub fn rename_sql(&self, pairs: &[(&Ident, &Ident)]) -> String {
        let list: Vec<String> = pairs
            .iter()
            .map(|(from, to)| format!("{db}.{from} TO {db}.{to}", db = self.database))
            .collect();
        format!("RENAME TABLE {}{}", list.join(", "), self.on_cluster())
    }

    /// `DROP TABLE IF EXISTS` of a table beside the ledger (a half-built
    /// upgrade table).
    pub fn drop_beside_sql(&self, name: &Ident) -> String {
        format!(
            "DROP TABLE IF EXISTS {}.{name}{}",
            self.database,
            self.on_cluster()
        )
    }

    /// `INSERT … FORMAT JSONEachRow` head into the table `name` beside the
    /// ledger.
    pub fn insert_into_sql(&self, name: &Ident) -> String {
        format!("INSERT INTO {}.{name} FORMAT JSONEachRow", self.database)
    }

    /// The columns of the table `name` beside the ledger.
    pub fn columns_of_sql(&self, name: &Ident) -> String {
        format!(
            "SELECT name, type FROM system.columns WHERE database = {} AND table = {}",
            string_literal(self.database.as_str()),
            string_literal(name.as_str())
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

    /// The ledger's columns as the server sees them (none: no ledger).
    pub fn columns_sql(&self) -> String {
        self.columns_of_sql(&self.table)
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

    /// Every row in ledger order (format 2).
    pub fn select_sql(&self) -> String {
        self.select_format_sql(Format::V2)
    }

    /// Every row in ledger order, in the columns of `format`.
    pub fn select_format_sql(&self, format: Format) -> String {
        let cols: Vec<String> = match format {
            Format::V1 => COLUMNS_V1.iter().map(|(n, _)| quote(n)).collect(),
            Format::V2 => COLUMNS.iter().map(|(n, _)| quote(n)).collect(),
        };
        format!(
            "SELECT {} FROM {} ORDER BY seq",
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
    mismatches(&COLUMNS, actual)
}

fn mismatches(expected: &[(&str, &str)], actual: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, ty) in expected {
        match actual.iter().find(|(n, _)| n == name) {
            None => out.push(format!("missing column {name} {ty}")),
            Some((_, t)) if t != ty => {
                out.push(format!("column {name} has type {t}, expected {ty}"))
            }
            Some(_) => {}
        }
    }
    for (name, ty) in actual {
        if !expected.iter().any(|(n, _)| n == name) {
            out.push(format!("unexpected column {name} {ty}"));
        }
    }
    out
}

/// Which format a table with these columns is; when neither, what differs
/// from the current format.
pub fn format_of(actual: &[(String, String)]) -> Result<Format, Vec<String>> {
    let v2 = mismatches(&COLUMNS, actual);
    if v2.is_empty() {
        Ok(Format::V2)
    } else if mismatches(&COLUMNS_V1, actual).is_empty() {
        Ok(Format::V1)
    } else {
        Err(v2)
    }
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
            "ENGINE = ReplicatedMergeTree('/clickhouse/chmigrate-v2/analytics/schema_migrations', '{replica}')"
        ));
        assert!(clustered.ends_with("ORDER BY seq"));
        // The format-1 table keeps its path; the lock's path builds on it.
        assert!(table(Some("c")).create_v1_sql().contains(
            "ReplicatedMergeTree('/clickhouse/chmigrate/analytics/schema_migrations', '{replica}')"
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
        actual.retain(|(n, _)| n != "payload");
        actual[0].1 = "UInt32".into();
        actual.push(("extra".into(), "String".into()));
        assert_eq!(
            shape_mismatches(&actual),
            [
                "column seq has type UInt32, expected UInt64",
                "missing column payload String",
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
    fn formats_are_told_apart_by_their_columns() {
        let cols = |c: &[(&str, &str)]| -> Vec<(String, String)> {
            c.iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect()
        };
        assert_eq!(format_of(&cols(&COLUMNS)), Ok(Format::V2));
        assert_eq!(format_of(&cols(&COLUMNS_V1)), Ok(Format::V1));
        let other = format_of(&cols(&[("version", "UInt32"), ("md5", "String")])).unwrap_err();
        assert!(other.contains(&"missing column payload String".to_string()));
    }

    #[test]
    fn a_stored_row_holds_every_field_and_leaves_empty_ones_out() {
        let e = LedgerEntry {
            seq: 12,
            event_time_us: 1_700_000_000_000_000,
            run_id: "20261205T060000-1a2b".into(),
            version: "2.1".into(),
            event: "statement_done".into(),
            direction: "up".into(),
            statement: 0,
            checksum: "abc".into(),
            environment: "production".into(),
            actor: "ci@runner".into(),
            db_user: "deploy".into(),
            duration_ms: 7,
            hosts: r#"[{"host":"h","port":9000,"status":0}]"#.into(),
            error: String::new(),
            description: "say \"hi\"\nnext".into(),
            details: r#"{"query_id":"q"}"#.into(),
        };
        let stored = e.to_stored();
        assert!(!stored.payload.contains("\"error\""), "{}", stored.payload);
        assert!(stored.payload.contains("\"statement\":0"));
        assert_eq!(LedgerEntry::from_stored(stored).unwrap(), e);
        // No statement (-1) is left out and read back as -1.
        let lock = LedgerEntry {
            seq: 1,
            event: "lock_taken".into(),
            statement: -1,
            ..Default::default()
        };
        let stored = lock.to_stored();
        assert_eq!(stored.payload, "{}");
        assert_eq!(LedgerEntry::from_stored(stored).unwrap(), lock);
        let bad = StoredRow {
            seq: 4,
            payload: "[1]".into(),
            ..Default::default()
        };
        assert!(
            LedgerEntry::from_stored(bad)
                .unwrap_err()
                .to_string()
                .starts_with("ledger row seq 4: payload is not")
        );
    }

    #[test]
    fn upgrade_sql_names_both_tables_and_keeps_the_old_one() {
        let t = table(Some("chm_cluster"));
        let (new, old) = t.upgrade_names().unwrap();
        assert_eq!(
            t.rename_sql(&[(&t.table, &old), (&new, &t.table)]),
            "RENAME TABLE `analytics`.`schema_migrations` TO `analytics`.`schema_migrations_v1`, \
             `analytics`.`schema_migrations__v2` TO `analytics`.`schema_migrations` ON CLUSTER `chm_cluster`"
        );
        assert!(t.create_sql_named(&new).starts_with(
            "CREATE TABLE IF NOT EXISTS `analytics`.`schema_migrations__v2` ON CLUSTER"
        ));
        assert_eq!(
            t.drop_beside_sql(&new),
            "DROP TABLE IF EXISTS `analytics`.`schema_migrations__v2` ON CLUSTER `chm_cluster`"
        );
        let long = LedgerTable {
            table: Ident::new("t", &"x".repeat(crate::sql::ident::MAX_IDENT_LEN)).unwrap(),
            ..table(None)
        };
        assert!(long.upgrade_names().is_err());
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
