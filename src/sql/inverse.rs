//! Rollback statements derived from forward statements, for migrations whose
//! author wrote none (pure).
//!
//! Only changes that can be undone without losing anything are inverted:
//!
//! | forward | derived rollback |
//! |---|---|
//! | `CREATE TABLE/VIEW/MATERIALIZED VIEW x` | `DROP TABLE IF EXISTS x` |
//! | `CREATE DICTIONARY/DATABASE/FUNCTION x` | `DROP DICTIONARY/DATABASE/FUNCTION IF EXISTS x` |
//! | `ALTER TABLE t ADD COLUMN c …, ADD INDEX i …` | `ALTER TABLE t DROP INDEX i, DROP COLUMN c` |
//! | `RENAME TABLE a TO b, c TO d` | `RENAME TABLE d TO c, b TO a` |
//! | `EXCHANGE TABLES a AND b` | the same statement |
//! | `SELECT …`, `SET …`, `OPTIMIZE …` | nothing to undo |
//!
//! Several statements are undone in reverse order. Everything else makes the
//! migration irreversible unless a rollback is written: dropping or
//! rewriting data (`DROP`, `TRUNCATE`, `MODIFY`/`DROP COLUMN`, mutations,
//! `INSERT`), and creations that may not have created anything
//! (`IF NOT EXISTS`, `OR REPLACE`: the object may have existed before, and
//! dropping it would lose it). Derived statements keep `${…}` placeholders
//! and carry no `ON CLUSTER`: they are prepared like written ones.

use super::Statement;
use super::lexer::LexError;
use super::statement::{Head, ObjectKind, StatementKind, Verb, analyze, top_level_clauses};

/// Why a statement cannot be undone without a written rollback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("statement {number} (line {line}) cannot be undone automatically: {reason}")]
pub struct Irreversible {
    /// 1-based statement number in the migration.
    pub number: usize,
    pub line: usize,
    pub reason: String,
}

/// The rollback of `up`, or the first statement that has none. An empty
/// result means there is nothing to undo.
pub fn derive_rollback(up: &[Statement]) -> Result<Vec<Statement>, Irreversible> {
    derive_rollback_known(up, &|_| None)
}

/// Whether statement `sql` is `CREATE … IF NOT EXISTS` (not `OR REPLACE`):
/// its object may predate it, and the ledger can say whether it did.
pub fn creates_if_not_exists(sql: &str) -> bool {
    let Ok(h) = Head::new(sql) else {
        return false;
    };
    let w = |k: usize, kw: &str| h.toks.get(k).is_some_and(|t| t.is_word(sql, kw));
    w(0, "CREATE")
        && !(w(1, "OR") && w(2, "REPLACE"))
        && (1..h.toks.len()).any(|k| w(k, "IF") && w(k + 1, "NOT") && w(k + 2, "EXISTS"))
}

/// [`derive_rollback`] knowing, from the ledger, whether each `IF NOT
/// EXISTS` creation created its object (`created(i) == Some(true)`: undone
/// with `DROP … IF EXISTS`) or found it there (`Some(false)`: nothing to
/// undo, the object predates the migration). Without a record (`None`)
/// such a creation stays irreversible.
pub fn derive_rollback_known(
    up: &[Statement],
    created: &dyn Fn(usize) -> Option<bool>,
) -> Result<Vec<Statement>, Irreversible> {
    let mut down = Vec::new();
    for (i, st) in up.iter().enumerate().rev() {
        let irreversible = |reason: String| Irreversible {
            number: i + 1,
            line: st.line,
            reason,
        };
        if creates_if_not_exists(&st.sql)
            && let Some(was_created) = created(i)
        {
            if was_created {
                let info = analyze(&st.sql).map_err(|e| irreversible(e.to_string()))?;
                if let (StatementKind::Ddl { object, .. }, Some(name)) =
                    (info.kind, info.object_name)
                {
                    down.push(Statement {
                        sql: format!("DROP {} IF EXISTS {name}", drop_keyword(object)),
                        line: st.line,
                    });
                    continue;
                }
            } else {
                continue;
            }
        }
        match inverse_of(&st.sql) {
            Ok(Some(sql)) => down.push(Statement { sql, line: st.line }),
            Ok(None) => {}
            Err(Why::Reason(r)) => return Err(irreversible(r)),
            Err(Why::Lex(e)) => return Err(irreversible(e.to_string())),
        }
    }
    Ok(down)
}

/// The `freeze-and-drop` rollback of `up`: `DROP … IF EXISTS` of every
/// table and view it creates, in reverse order; the runtime freezes each
/// `*MergeTree` table (and a materialized view's inner table) before
/// dropping it. Inserts into objects it creates need no undo. Anything
/// else does not fit the strategy: other statements, databases (one may
/// hold other tables, the ledger among them), and `IF NOT EXISTS` or `OR
/// REPLACE` creations, whose object may predate the migration.
pub fn freeze_and_drop(up: &[Statement]) -> Result<Vec<Statement>, Irreversible> {
    freeze_and_drop_known(up, &|_| None)
}

/// [`freeze_and_drop`] knowing, from the ledger, whether each `IF NOT
/// EXISTS` creation created its object (dropped on rollback) or found it
/// there (left alone).
pub fn freeze_and_drop_known(
    up: &[Statement],
    recorded: &dyn Fn(usize) -> Option<bool>,
) -> Result<Vec<Statement>, Irreversible> {
    let mut created: Vec<String> = Vec::new();
    let mut down = Vec::new();
    for (i, st) in up.iter().enumerate() {
        let no = |reason: String| Irreversible {
            number: i + 1,
            line: st.line,
            reason,
        };
        let info = analyze(&st.sql).map_err(|e| no(e.to_string()))?;
        match info.kind {
            StatementKind::Query | StatementKind::Session => {}
            StatementKind::Insert
                if info
                    .object_name
                    .as_ref()
                    .is_some_and(|n| created.contains(n)) => {}
            StatementKind::Ddl {
                verb: Verb::Create,
                object,
            } => {
                let what = match object {
                    ObjectKind::Database => {
                        return Err(no(
                            "freeze-and-drop does not drop databases (one may hold other tables, the ledger among them)".into(),
                        ));
                    }
                    ObjectKind::Dictionary | ObjectKind::Function => {
                        return Err(no("freeze-and-drop only drops tables and views".into()));
                    }
                    _ => drop_keyword(object),
                };
                if info.rerun_safe {
                    match (creates_if_not_exists(&st.sql), recorded(i)) {
                        (true, Some(true)) => {}
                        (true, Some(false)) => continue,
                        _ => {
                            return Err(no(
                                "IF NOT EXISTS / OR REPLACE: the object may predate the migration, and dropping it would lose what was there"
                                    .into(),
                            ));
                        }
                    }
                }
                let name = info
                    .object_name
                    .ok_or_else(|| no("no object name found".into()))?;
                down.push(Statement {
                    sql: format!("DROP {what} IF EXISTS {name}"),
                    line: st.line,
                });
                created.push(name);
            }
            _ => {
                return Err(no(
                    "it changes something the migration did not create (freeze-and-drop only undoes creations)".into(),
                ));
            }
        }
    }
    down.reverse();
    Ok(down)
}

/// The word after `DROP` for an object of this kind (every kind of view
/// is dropped with `DROP TABLE`).
fn drop_keyword(object: ObjectKind) -> &'static str {
    match object {
        ObjectKind::Table
        | ObjectKind::View
        | ObjectKind::MaterializedView
        | ObjectKind::LiveView
        | ObjectKind::WindowView => "TABLE",
        ObjectKind::Dictionary => "DICTIONARY",
        ObjectKind::Database => "DATABASE",
        ObjectKind::Function => "FUNCTION",
    }
}

enum Why {
    Reason(String),
    Lex(LexError),
}

fn no(reason: impl Into<String>) -> Why {
    Why::Reason(reason.into())
}

/// The statement that undoes `sql`; `None` when there is nothing to undo.
fn inverse_of(sql: &str) -> Result<Option<String>, Why> {
    let info = analyze(sql).map_err(Why::Lex)?;
    let h = || Head::new(sql).map_err(Why::Lex);
    match info.kind {
        StatementKind::Query | StatementKind::Session => Ok(None),
        StatementKind::Insert => Err(no("an INSERT is a data migration")),
        StatementKind::Mutation => Err(no("a mutation rewrites data")),
        StatementKind::Other => Err(no("chmigrate does not know how to undo this statement")),
        StatementKind::Ddl { verb, object } => match verb {
            Verb::Create => {
                if info.rerun_safe {
                    return Err(no(
                        "IF NOT EXISTS / OR REPLACE: the object may have existed before, and dropping it would lose it",
                    ));
                }
                let name = info.object_name.ok_or_else(|| no("no object name found"))?;
                Ok(Some(format!(
                    "DROP {} IF EXISTS {name}",
                    drop_keyword(object)
                )))
            }
            Verb::Alter if object == ObjectKind::Table => alter_inverse(h()?).map(Some),
            Verb::Rename if object == ObjectKind::Table => rename_inverse(h()?).map(Some),
            Verb::Exchange => Ok(Some(sql.trim().to_string())),
            Verb::Optimize => Ok(None),
            Verb::Drop | Verb::Detach | Verb::Truncate => {
                Err(no("it removes an object or its data"))
            }
            Verb::Attach => Err(no("ATTACH is undone by a written DETACH")),
            Verb::Alter | Verb::Rename => Err(no("only tables are altered or renamed back")),
        },
    }
}

/// The text of `name` or `db.name` at the cursor, which moves past it.
fn name<'a>(h: &mut Head<'a>) -> Option<&'a str> {
    let (start, end) = h.eat_name()?;
    Some(&h.src[start..end])
}

fn alter_inverse(mut h: Head<'_>) -> Result<String, Why> {
    // ALTER TABLE <name> [ON CLUSTER c] <clauses>
    h.i = 2;
    let table = name(&mut h).ok_or_else(|| no("no table name found"))?;
    if h.eat_words(&["ON", "CLUSTER"]) {
        h.i += 1;
    }
    let mut undo = Vec::new();
    for c in top_level_clauses(h.src, &h.toks, h.i) {
        let w = |k: usize, kw: &str| c.get(k).is_some_and(|t| t.is_word(h.src, kw));
        let what = if w(0, "ADD") && w(1, "COLUMN") {
            "COLUMN"
        } else if w(0, "ADD") && w(1, "INDEX") {
            "INDEX"
        } else {
            let head: Vec<&str> = c.iter().take(2).map(|t| t.text(h.src)).collect();
            return Err(no(format!(
                "ALTER … {} cannot be undone without losing data",
                head.join(" ").to_ascii_uppercase()
            )));
        };
        if w(2, "IF") {
            return Err(no(format!(
                "ADD {what} IF NOT EXISTS: it may have existed before, and dropping it would lose it"
            )));
        }
        // The column or index name: one (possibly quoted) identifier.
        let mut at = Head {
            src: h.src,
            toks: c[2.min(c.len())..].to_vec(),
            i: 0,
        };
        let name = name(&mut at)
            .ok_or_else(|| no(format!("no {} name found", what.to_ascii_lowercase())))?;
        undo.push(format!("DROP {what} {name}"));
    }
    if undo.is_empty() {
        return Err(no("ALTER without clauses"));
    }
    undo.reverse();
    Ok(format!("ALTER TABLE {table} {}", undo.join(", ")))
}

fn rename_inverse(mut h: Head<'_>) -> Result<String, Why> {
    // RENAME TABLE a TO b [, c TO d] [ON CLUSTER c]
    h.i = 2;
    let mut pairs = Vec::new();
    loop {
        let from = name(&mut h).ok_or_else(|| no("no table name found"))?;
        if !h.eat_words(&["TO"]) {
            return Err(no("expected TO in RENAME TABLE"));
        }
        let to = name(&mut h).ok_or_else(|| no("no new table name found"))?;
        pairs.push(format!("{to} TO {from}"));
        if h.eat_punct(',') {
            continue;
        }
        if h.eat_words(&["ON", "CLUSTER"]) {
            h.i += 1;
        }
        if h.i < h.toks.len() {
            return Err(no("unexpected text after RENAME TABLE … TO …"));
        }
        break;
    }
    pairs.reverse();
    Ok(format!("RENAME TABLE {}", pairs.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_not_exists_creations_are_undone_as_the_ledger_recorded_them() {
        let up = [
            st("CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory", 1),
            st("CREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = Memory", 2),
            st("CREATE OR REPLACE VIEW v AS SELECT 1", 3),
        ];
        // No record: irreversible, as before.
        assert!(derive_rollback(&up[..2]).is_err());
        // `a` was created by the migration, `b` was there before it.
        let known = |i: usize| [Some(true), Some(false)].get(i).copied().flatten();
        let down = derive_rollback_known(&up[..2], &known).unwrap();
        assert_eq!(
            down.iter().map(|s| s.sql.as_str()).collect::<Vec<_>>(),
            ["DROP TABLE IF EXISTS a"]
        );
        // OR REPLACE lost what was there: never undone.
        assert!(derive_rollback_known(&up, &|_| Some(true)).is_err());
        let fd = freeze_and_drop_known(&up[..2], &known).unwrap();
        assert_eq!(
            fd.iter().map(|s| s.sql.as_str()).collect::<Vec<_>>(),
            ["DROP TABLE IF EXISTS a"]
        );
        assert!(creates_if_not_exists(&up[0].sql));
        assert!(!creates_if_not_exists(&up[2].sql));
    }

    fn st(sql: &str, line: usize) -> Statement {
        Statement {
            sql: sql.into(),
            line,
        }
    }

    fn inv(sql: &str) -> Result<Option<String>, String> {
        inverse_of(sql).map_err(|e| match e {
            Why::Reason(r) => r,
            Why::Lex(e) => e.to_string(),
        })
    }

    #[test]
    fn reversible_ddl_gets_its_inverse() {
        let cases = [
            (
                "CREATE TABLE ${database}.events (id UInt64) ENGINE = MergeTree ORDER BY id",
                "DROP TABLE IF EXISTS ${database}.events",
            ),
            (
                "create view `db`.`v` AS SELECT 1",
                "DROP TABLE IF EXISTS `db`.`v`",
            ),
            (
                "CREATE MATERIALIZED VIEW db.mv TO db.t AS SELECT x FROM db.s",
                "DROP TABLE IF EXISTS db.mv",
            ),
            (
                "CREATE TABLE db.t ON CLUSTER c (x UInt8) ENGINE = Memory",
                "DROP TABLE IF EXISTS db.t",
            ),
            (
                "CREATE DICTIONARY db.d (k UInt64, v String) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
                "DROP DICTIONARY IF EXISTS db.d",
            ),
            (
                "CREATE DATABASE analytics",
                "DROP DATABASE IF EXISTS analytics",
            ),
            (
                "CREATE FUNCTION plus_one AS (x) -> x + 1",
                "DROP FUNCTION IF EXISTS plus_one",
            ),
            (
                "ALTER TABLE db.t ADD COLUMN c UInt8 DEFAULT 0 AFTER x",
                "ALTER TABLE db.t DROP COLUMN c",
            ),
            (
                "ALTER TABLE db.t ON CLUSTER c ADD COLUMN a UInt8, ADD INDEX ia a TYPE minmax GRANULARITY 1, ADD COLUMN `b c` Array(Tuple(UInt8, String))",
                "ALTER TABLE db.t DROP COLUMN `b c`, DROP INDEX ia, DROP COLUMN a",
            ),
            (
                "RENAME TABLE db.a TO db.b, db.c TO db.d",
                "RENAME TABLE db.d TO db.c, db.b TO db.a",
            ),
            ("RENAME TABLE a TO b ON CLUSTER c", "RENAME TABLE b TO a"),
            ("EXCHANGE TABLES a AND b", "EXCHANGE TABLES a AND b"),
        ];
        for (forward, want) in cases {
            assert_eq!(inv(forward), Ok(Some(want.to_string())), "{forward}");
        }
        for nothing in [
            "SELECT sleep(1)",
            "SET max_threads = 1",
            "OPTIMIZE TABLE t FINAL",
        ] {
            assert_eq!(inv(nothing), Ok(None), "{nothing}");
        }
    }

    #[test]
    fn what_loses_data_or_may_predate_the_migration_is_irreversible() {
        let cases = [
            ("DROP TABLE t", "removes an object"),
            ("TRUNCATE TABLE t", "removes an object"),
            (
                "ALTER TABLE t MODIFY COLUMN c UInt64",
                "ALTER … MODIFY COLUMN",
            ),
            ("ALTER TABLE t DROP COLUMN c", "ALTER … DROP COLUMN"),
            (
                "ALTER TABLE t ADD COLUMN c UInt8, DROP COLUMN d",
                "ALTER … DROP COLUMN",
            ),
            ("ALTER TABLE t DELETE WHERE x = 1", "mutation"),
            ("INSERT INTO t VALUES (1)", "data migration"),
            (
                "CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory",
                "may have existed",
            ),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "may have existed"),
            (
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS c UInt8",
                "may have existed",
            ),
            ("SYSTEM RELOAD DICTIONARIES", "does not know"),
            ("RENAME TABLE a TO b extra", "unexpected text"),
        ];
        for (forward, why) in cases {
            let got = inv(forward);
            assert!(
                matches!(&got, Err(r) if r.contains(why)),
                "{forward}: {got:?} should say {why:?}"
            );
        }
    }

    #[test]
    fn several_statements_are_undone_in_reverse_order_and_the_first_blocker_is_named() {
        let up = [
            st("CREATE TABLE db.a (x UInt8) ENGINE = Memory", 1),
            st("SELECT 1", 2),
            st("ALTER TABLE db.a ADD COLUMN y UInt8", 3),
            st("RENAME TABLE db.a TO db.b", 5),
        ];
        let down = derive_rollback(&up).unwrap();
        let sql: Vec<(&str, usize)> = down.iter().map(|s| (s.sql.as_str(), s.line)).collect();
        assert_eq!(
            sql,
            [
                ("RENAME TABLE db.b TO db.a", 5),
                ("ALTER TABLE db.a DROP COLUMN y", 3),
                ("DROP TABLE IF EXISTS db.a", 1),
            ]
        );
        let up = [
            st("CREATE TABLE db.a (x UInt8) ENGINE = Memory", 1),
            st("INSERT INTO db.a VALUES (1)", 4),
        ];
        let err = derive_rollback(&up).unwrap_err();
        assert_eq!(
            err.to_string(),
            "statement 2 (line 4) cannot be undone automatically: an INSERT is a data migration"
        );
    }
}
