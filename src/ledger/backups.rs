//! Backups before destructive DDL (pure half): the policy, backup names,
//! each replica's URL, and the list of backups folded from the ledger. The
//! runtime's `backup` module freezes and unfreezes.
//!
//! With `backup: freeze`, before a statement that drops or rewrites data
//! (see [`crate::sql::destructive`]) chmigrate runs `ALTER TABLE … FREEZE
//! WITH NAME '<name>'` for every affected `*MergeTree` table on every host
//! of the target, and records a `backup` event (name, table, hosts) in the
//! ledger before the statement runs. ClickHouse hard-links the table's parts
//! into `shadow/<name>/` under its data path on each host.

use serde::{Deserialize, Serialize};

use crate::ledger::LedgerEntry;
use crate::ledger::vocabulary::EventName;

/// The `backup` policy of an environment.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum BackupPolicy {
    #[default]
    None,
    Freeze,
}

/// The name a freeze is taken under: `V<version>_<YYYYMMDDHHMMSS><mmm>_s<n>`
/// (to the millisecond: two runs retrying one statement within a second
/// must not collide in `shadow/`; n: the 1-based statement the freeze
/// protects). Only `[0-9A-Za-z_]`: it becomes the folder `shadow/<name>/`
/// on each server, and ClickHouse escapes every other character in folder
/// names (`-` becomes `%2D`).
pub fn backup_name(version: &str, unix_us: u64, statement: usize) -> String {
    let v: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!(
        "V{v}_{}{:03}_s{statement}",
        crate::clock::compact(unix_us / 1_000_000),
        (unix_us / 1_000) % 1_000
    )
}

/// The URL of `host` reached the way the entry node is (same scheme, port
/// and path): `http://10.0.0.1:8123` and `ch-2` give `http://ch-2:8123`.
/// `None` when `entry` is not an http(s) URL.
pub fn host_url(entry: &str, host: &str) -> Option<String> {
    let (scheme, rest) = entry.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if let Some(end) = hostport.strip_prefix('[').and_then(|h| h.find(']')) {
        hostport[end + 2..].strip_prefix(':')
    } else {
        hostport.rsplit_once(':').map(|(_, p)| p)
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    })
}

/// What a `backup` ledger event's details hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupDetails {
    pub name: String,
    /// `db.table`, unquoted.
    pub database: String,
    pub table: String,
    /// `host:port` of every host frozen.
    pub hosts: Vec<String>,
    /// 0-based statement index the backup protects.
    pub statement: usize,
}

/// One backup as `backups list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    #[serde(flatten)]
    pub details: BackupDetails,
    pub version: String,
    pub taken_us: u64,
    /// Removed by `backups prune` (the record stays).
    pub pruned: bool,
}

/// Every backup the ledger records, oldest first, with whether it was
/// pruned since.
pub fn list(history: &[LedgerEntry]) -> Vec<Backup> {
    let mut out: Vec<Backup> = Vec::new();
    for e in history {
        match e.name() {
            Some(EventName::Backup) => {
                if let Ok(details) = serde_json::from_str::<BackupDetails>(&e.details) {
                    out.push(Backup {
                        details,
                        version: e.version.clone(),
                        taken_us: e.event_time_us,
                        pruned: false,
                    });
                }
            }
            Some(EventName::BackupPruned) => {
                #[derive(Deserialize)]
                struct Pruned {
                    name: String,
                    database: String,
                    table: String,
                }
                if let Ok(p) = serde_json::from_str::<Pruned>(&e.details) {
                    for b in out.iter_mut().filter(|b| {
                        b.details.name == p.name
                            && b.details.database == p.database
                            && b.details.table == p.table
                    }) {
                        b.pruned = true;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_folder_safe_and_say_what_and_when() {
        assert_eq!(
            backup_name("3", 1_764_684_000_123_456, 2),
            "V3_20251202140000123_s2"
        );
        assert_eq!(backup_name("1.1", 0, 1), "V1_1_19700101000000000_s1");
        assert_ne!(
            backup_name("3", 1_764_684_000_123_456, 2),
            backup_name("3", 1_764_684_000_623_456, 2),
            "two attempts within a second get two names"
        );
    }

    #[test]
    fn host_urls_keep_scheme_port_and_path() {
        assert_eq!(
            host_url("http://127.0.0.11:8123", "127.0.0.13").as_deref(),
            Some("http://127.0.0.13:8123")
        );
        assert_eq!(
            host_url("https://ch.example:8443/proxy", "ch-2").as_deref(),
            Some("https://ch-2:8443/proxy")
        );
        assert_eq!(
            host_url("http://lb", "ch-2").as_deref(),
            Some("http://ch-2")
        );
        assert_eq!(
            host_url("http://[::1]:8123", "::2").as_deref(),
            Some("http://[::2]:8123")
        );
        assert_eq!(host_url("tcp://x:9000", "y"), None);
    }

    #[test]
    fn list_marks_pruned_backups() {
        let b = |name: &str, t: u64| LedgerEntry {
            event: "backup".into(),
            version: "3".into(),
            event_time_us: t,
            details: serde_json::to_string(&BackupDetails {
                name: name.into(),
                database: "db".into(),
                table: "t".into(),
                hosts: vec!["h:9000".into()],
                statement: 0,
            })
            .unwrap(),
            ..Default::default()
        };
        let pruned = LedgerEntry {
            event: "backup_pruned".into(),
            details: r#"{"name":"a","database":"db","table":"t"}"#.into(),
            ..Default::default()
        };
        let l = list(&[b("a", 1), b("b", 2), pruned]);
        assert_eq!(l.len(), 2);
        assert!(l[0].pruned && !l[1].pruned);
    }
}
