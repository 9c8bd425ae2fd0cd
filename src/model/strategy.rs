//! Rollback strategies (pure): how a migration is undone, chosen per
//! migration (`-- Rollback-Strategy:` header, `spec.rollbackStrategy`) or
//! per environment (`migrations.rollback_strategy`, a MigrationSet's
//! `spec.policy.rollbackStrategy`).
//!
//! - `script` (default): the author's rollback, or the one derived from
//!   reversible DDL ([`crate::sql::inverse`]).
//! - `freeze-and-drop`: for migrations that create tables: each created
//!   table is frozen on every host, then dropped (its data stays in
//!   `shadow/<backup>/` for `backups list`).
//! - `forward-only`: rollback refused; the way back is a new migration.
//!   An environment that is forward-only makes every migration so.

use crate::model::migration::Migration;

pub use crate::model::migration::RollbackStrategy;

/// The migrations with their effective strategy applied: the rollback each
/// one would run in an environment whose default is `env`.
///
/// A migration's own strategy wins over the environment's, except that a
/// forward-only environment makes every migration forward-only. A
/// `freeze-and-drop` environment default only changes migrations it fits
/// (they only create objects) and whose author did not declare "no
/// rollback"; a migration that asks for it and does not fit has no
/// rollback, and says why.
pub fn resolve(migrations: &[Migration], env: RollbackStrategy) -> Vec<Migration> {
    migrations
        .iter()
        .map(|m| {
            let mut m = m.clone();
            let chosen = match (env, m.rollback_strategy) {
                (RollbackStrategy::ForwardOnly, _) => RollbackStrategy::ForwardOnly,
                (_, Some(own)) => own,
                (env, None) => env,
            };
            match chosen {
                RollbackStrategy::Script => {}
                RollbackStrategy::ForwardOnly => {
                    m.strategy = RollbackStrategy::ForwardOnly;
                    m.down = None;
                    m.down_derived = false;
                    m.irreversible = Some(
                        "its rollback strategy is forward-only: the way back is a new migration"
                            .into(),
                    );
                }
                // The author's "no rollback" stands against an environment
                // default.
                RollbackStrategy::FreezeAndDrop
                    if m.rollback_strategy.is_none() && m.rollback_declared_none => {}
                RollbackStrategy::FreezeAndDrop => {
                    match crate::sql::inverse::freeze_and_drop(&m.up) {
                        Ok(down) => {
                            m.strategy = RollbackStrategy::FreezeAndDrop;
                            m.down = Some(down);
                            m.down_derived = true;
                            m.irreversible = None;
                        }
                        Err(why) if m.rollback_strategy.is_some() => {
                            m.strategy = RollbackStrategy::FreezeAndDrop;
                            m.down = None;
                            m.down_derived = false;
                            m.irreversible = Some(format!("freeze-and-drop does not fit: {why}"));
                        }
                        Err(_) => {}
                    }
                }
            }
            m
        })
        .collect()
}

/// How `m` (strategy resolved) would be rolled back, for `status
/// --show-rollback`: `script (written): 2 statement(s)`, `freeze-and-drop:
/// …`, or `no: <why>`.
pub fn rollback_summary(m: &Migration, allow_rollback: bool, environment: &str) -> String {
    if !allow_rollback {
        return format!("no: rollback is not allowed in environment {environment}");
    }
    if m.strategy == RollbackStrategy::ForwardOnly {
        return "no: forward-only (the way back is a new migration)".into();
    }
    let Some(down) = &m.down else {
        return format!("no: {}", m.irreversible.as_deref().unwrap_or("no rollback"));
    };
    match (m.strategy, m.down_derived) {
        (RollbackStrategy::FreezeAndDrop, _) => {
            let drops: Vec<&str> = down
                .iter()
                .filter_map(|s| s.sql.rsplit(' ').next())
                .collect();
            format!("freeze-and-drop: freezes, then drops {}", drops.join(", "))
        }
        (_, true) => format!("script (derived): {} statement(s)", down.len()),
        (_, false) => format!("script (written): {} statement(s)", down.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::load_named as load;

    #[test]
    fn strategies_per_migration_and_environment() {
        let ms = load(&[
            (
                "V1__a.sql",
                "CREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;\nINSERT INTO a VALUES (1);",
            ),
            (
                "V2__b.sql",
                "-- Rollback-Strategy: forward-only\nCREATE TABLE b (x UInt8) ENGINE = Memory;",
            ),
            (
                "V3__c.sql",
                "-- Rollback-Strategy: freeze-and-drop\nALTER TABLE a ADD COLUMN y UInt8;",
            ),
            ("V4__d.sql", "ALTER TABLE a ADD COLUMN z UInt8;"),
        ]);
        assert_eq!(ms[1].rollback_strategy, Some(RollbackStrategy::ForwardOnly));
        let script = resolve(&ms, RollbackStrategy::Script);
        assert!(script[0].down.is_none(), "an INSERT is not derivable");
        assert!(script[1].down.is_none());
        assert_eq!(script[1].strategy, RollbackStrategy::ForwardOnly);
        assert!(script[2].down.is_none());
        assert!(
            script[2]
                .irreversible
                .as_deref()
                .unwrap()
                .starts_with("freeze-and-drop does not fit"),
            "{:?}",
            script[2].irreversible
        );
        assert!(script[3].down.is_some());

        let fad = resolve(&ms, RollbackStrategy::FreezeAndDrop);
        let sql: Vec<&str> = fad[0]
            .down
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.sql.as_str())
            .collect();
        assert_eq!(sql, ["DROP TABLE IF EXISTS a"]);
        assert_eq!(fad[0].strategy, RollbackStrategy::FreezeAndDrop);
        // Does not fit V4: V4 keeps its script.
        assert_eq!(fad[3].strategy, RollbackStrategy::Script);
        assert!(fad[3].down.is_some());

        assert_eq!(
            rollback_summary(&fad[0], true, "dev"),
            "freeze-and-drop: freezes, then drops a"
        );
        assert_eq!(
            rollback_summary(&script[3], true, "dev"),
            "script (derived): 1 statement(s)"
        );
        assert_eq!(
            rollback_summary(&script[1], true, "dev"),
            "no: forward-only (the way back is a new migration)"
        );
        assert_eq!(
            rollback_summary(&script[3], false, "production"),
            "no: rollback is not allowed in environment production"
        );
        let fwd = resolve(&ms, RollbackStrategy::ForwardOnly);
        assert!(
            fwd.iter()
                .all(|m| m.down.is_none() && m.strategy == RollbackStrategy::ForwardOnly)
        );
        // Checksums are what the author wrote, whatever the strategy.
        assert!(ms.iter().zip(&fwd).all(|(a, b)| a.checksum == b.checksum));
    }

    #[test]
    fn an_environment_default_leaves_a_declared_no_rollback_alone() {
        let ms = load(&[
            (
                "V1__a.sql",
                "-- Rollback: false\nCREATE TABLE a (x UInt8) ENGINE = MergeTree ORDER BY x;",
            ),
            (
                "V2__b.sql",
                "-- Rollback: false\n-- Rollback-Strategy: freeze-and-drop\nCREATE TABLE b (x UInt8) ENGINE = MergeTree ORDER BY x;",
            ),
        ]);
        assert!(ms[0].rollback_declared_none && ms[0].down.is_none());
        let fad = resolve(&ms, RollbackStrategy::FreezeAndDrop);
        assert!(fad[0].down.is_none(), "the author said no rollback");
        assert_eq!(fad[0].strategy, RollbackStrategy::Script);
        assert_eq!(
            fad[0].irreversible.as_deref(),
            Some("its header says Rollback: false")
        );
        // Asked for by the migration itself, the strategy applies.
        assert_eq!(fad[1].strategy, RollbackStrategy::FreezeAndDrop);
        assert!(fad[1].down.is_some());
    }

    #[test]
    fn freeze_and_drop_never_drops_what_may_predate_the_migration() {
        let ms = load(&[
            (
                "V1__a.sql",
                "-- Rollback-Strategy: freeze-and-drop\nCREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = MergeTree ORDER BY x;",
            ),
            (
                "V2__db.sql",
                "-- Rollback-Strategy: freeze-and-drop\nCREATE DATABASE extra;",
            ),
            (
                "V3__r.sql",
                "-- Rollback-Strategy: freeze-and-drop\nCREATE OR REPLACE VIEW v AS SELECT 1;",
            ),
        ]);
        let r = resolve(&ms, RollbackStrategy::Script);
        for (m, why) in r
            .iter()
            .zip(["IF NOT EXISTS", "does not drop databases", "OR REPLACE"])
        {
            assert!(m.down.is_none(), "V{}", m.version);
            let reason = m.irreversible.as_deref().unwrap_or_default();
            assert!(reason.contains(why), "V{}: {reason}", m.version);
        }
        // As an environment default it leaves them alone.
        let plain = load(&[(
            "V4__b.sql",
            "CREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = MergeTree ORDER BY x;",
        )]);
        let env = resolve(&plain, RollbackStrategy::FreezeAndDrop);
        assert_eq!(env[0].strategy, RollbackStrategy::Script);
        assert!(env[0].down.is_none());
    }

    #[test]
    fn names_round_trip() {
        for s in [
            RollbackStrategy::Script,
            RollbackStrategy::FreezeAndDrop,
            RollbackStrategy::ForwardOnly,
        ] {
            assert_eq!(RollbackStrategy::parse(s.name()), Ok(s));
        }
        assert!(RollbackStrategy::parse("undo").is_err());
    }
}
