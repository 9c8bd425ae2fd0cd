//! Rollbacks completed from the ledger (pure): a migration whose `CREATE …
//! IF NOT EXISTS` statements made its derived rollback impossible gets one
//! when the ledger recorded, at apply time, whether each such statement
//! created its object or found it there. Only objects the migration created
//! are dropped; without a record nothing changes.

use std::collections::BTreeMap;

use crate::ledger::LedgerEntry;
use crate::ledger::vocabulary::EventName;
use crate::model::migration::{Migration, RollbackStrategy};
use crate::sql::inverse::{derive_rollback_known, freeze_and_drop_known};

/// Per version, per up statement index: whether its latest applying run
/// recorded that it created its object.
fn recorded_creations(history: &[LedgerEntry]) -> BTreeMap<&str, BTreeMap<usize, bool>> {
    let mut out: BTreeMap<&str, BTreeMap<usize, bool>> = BTreeMap::new();
    for e in history {
        if e.direction != "up" || e.version.is_empty() {
            continue;
        }
        match e.name() {
            // A run from the first statement starts the record afresh.
            Some(EventName::Started) => {
                out.remove(e.version.as_str());
            }
            Some(EventName::StatementDone) => {
                let created = serde_json::from_str::<serde_json::Value>(&e.details)
                    .ok()
                    .and_then(|d| d["created"].as_bool());
                if let (Some(c), Ok(i)) = (created, usize::try_from(e.statement)) {
                    out.entry(e.version.as_str()).or_default().insert(i, c);
                }
            }
            _ => {}
        }
    }
    out
}

/// Versions applied on the target whose source is gone, rebuilt from the
/// rollback statements the ledger recorded when they were applied (their
/// latest up run), so that they can still be rolled back: a namespace being
/// deleted may lose its migrations before the set that rolls them back.
/// The rebuilt migration has no up statements and the ledger's checksum;
/// versions without such a record are left out (the planner then names
/// them as missing).
pub fn from_ledger(migrations: &[Migration], history: &[LedgerEntry]) -> Vec<Migration> {
    let known: std::collections::BTreeSet<String> =
        migrations.iter().map(|m| m.version.to_string()).collect();
    let mut latest: BTreeMap<&str, &LedgerEntry> = BTreeMap::new();
    for e in history {
        if e.direction == "up" && e.name() == Some(EventName::Started) {
            latest.insert(e.version.as_str(), e);
        }
    }
    let mut out: Vec<Migration> = migrations.to_vec();
    for (version, e) in latest {
        if known.contains(version) {
            continue;
        }
        let Ok(details) = serde_json::from_str::<serde_json::Value>(&e.details) else {
            continue;
        };
        let Some(sql) = details["rollback"].as_array() else {
            continue;
        };
        let Ok(v) = crate::model::version::Version::parse(version) else {
            continue;
        };
        let origin = format!(
            "ledger (rollback recorded when V{version} was applied, event {})",
            e.seq
        );
        let down: Vec<crate::sql::Statement> = sql
            .iter()
            .filter_map(|s| s.as_str())
            .map(|s| crate::sql::Statement {
                sql: s.to_string(),
                line: 0,
            })
            .collect();
        out.push(Migration {
            version: v,
            description: e.description.clone(),
            up: Vec::new(),
            down: Some(down),
            down_derived: false,
            irreversible: None,
            dependencies: Vec::new(),
            environments: Default::default(),
            location: crate::model::migration::Location::new(origin, 0),
            down_location: None,
            format: crate::model::migration::SourceFormat::Memory,
            author: None,
            created: None,
            checksum: crate::model::migration::Checksum(e.checksum.clone()),
            rollback_strategy: Some(RollbackStrategy::Script),
            strategy: RollbackStrategy::Script,
            rollback_declared_none: false,
            name: None,
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    out
}

/// `migrations` with the rollbacks the ledger makes derivable.
pub fn complete(migrations: &[Migration], history: &[LedgerEntry]) -> Vec<Migration> {
    let recorded = recorded_creations(history);
    migrations
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let Some(known) = recorded.get(m.version.to_string().as_str()) else {
                return m;
            };
            if m.down.is_some()
                || m.rollback_declared_none
                || m.strategy == RollbackStrategy::ForwardOnly
            {
                return m;
            }
            let lookup = |i: usize| known.get(&i).copied();
            let derived = if m.strategy == RollbackStrategy::FreezeAndDrop {
                freeze_and_drop_known(&m.up, &lookup)
            } else {
                derive_rollback_known(&m.up, &lookup)
            };
            if let Ok(down) = derived {
                m.down = Some(down);
                m.down_derived = true;
                m.irreversible = None;
            }
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::load_named;

    fn row(seq: u64, event: &str, index: i64, details: &str) -> LedgerEntry {
        LedgerEntry {
            seq,
            version: "1".into(),
            event: event.into(),
            direction: "up".into(),
            statement: index,
            details: details.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_what_the_ledger_says_the_migration_created_is_dropped() {
        let ms = load_named(&[(
            "V1__a.sql",
            "CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory;\nCREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = Memory;",
        )]);
        assert!(
            ms[0].down.is_none(),
            "no rollback derivable from the file alone"
        );
        // No record (a ledger from an earlier release): unchanged.
        assert!(complete(&ms, &[]).first().unwrap().down.is_none());
        let history = [
            row(1, "started", -1, "{\"statements\":2}"),
            row(
                2,
                "statement_done",
                0,
                "{\"query_id\":\"q\",\"created\":true}",
            ),
            row(
                3,
                "statement_done",
                1,
                "{\"query_id\":\"q\",\"created\":false}",
            ),
            row(4, "completed", -1, ""),
        ];
        let done = complete(&ms, &history);
        let down: Vec<&str> = done[0]
            .down
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.sql.as_str())
            .collect();
        assert_eq!(down, ["DROP TABLE IF EXISTS a"]);
        assert!(done[0].down_derived);
        // Half a record: the statement without one stays irreversible.
        let partial = &history[..3][..2];
        assert!(complete(&ms, partial)[0].down.is_none());
    }

    #[test]
    fn applied_versions_whose_source_is_gone_come_back_from_their_recorded_rollback() {
        let ms = load_named(&[(
            "V2__b.sql",
            "CREATE TABLE b (x UInt8) ENGINE = Memory;\n-- ROLLBACK: DROP TABLE b;",
        )]);
        let started = |seq: u64, version: &str, details: &str| LedgerEntry {
            seq,
            version: version.into(),
            event: "started".into(),
            direction: "up".into(),
            statement: -1,
            checksum: format!("sum{version}"),
            description: format!("step {version}"),
            details: details.into(),
            ..Default::default()
        };
        let history = vec![
            started(
                1,
                "1",
                r#"{"statements":1,"rollback":["DROP TABLE ${database}.a"]}"#,
            ),
            started(2, "2", r#"{"statements":1,"rollback":["DROP TABLE b"]}"#),
            // A release before the record, or a migration without rollback.
            started(3, "3", r#"{"statements":1}"#),
            // A later run of V1 recorded another rollback: the latest wins.
            started(
                4,
                "1",
                r#"{"statements":1,"rollback":["DROP TABLE IF EXISTS ${database}.a"]}"#,
            ),
        ];
        let all = from_ledger(&ms, &history);
        let versions: Vec<String> = all.iter().map(|m| m.version.to_string()).collect();
        assert_eq!(
            versions,
            ["1", "2"],
            "V2 from its file, V1 from the ledger, V3 unknown"
        );
        let v1 = &all[0];
        assert!(v1.up.is_empty());
        assert_eq!(v1.checksum.0, "sum1", "the ledger's checksum: no mismatch");
        assert_eq!(
            v1.down.as_ref().unwrap()[0].sql,
            "DROP TABLE IF EXISTS ${database}.a"
        );
        assert!(v1.location.file.contains("ledger"), "{}", v1.location.file);
        assert_eq!(&all[1], &ms[0], "a migration with a source is untouched");
    }
}
