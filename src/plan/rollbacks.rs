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
}
