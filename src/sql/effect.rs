//! What a statement leaves behind that a later run can look for (pure).
//!
//! The runner uses this to decide how much of its progress must be in the
//! ledger before the next statement starts:
//!
//! - [`Effect::Observable`]: the statement's effect can be checked on the
//!   schema afterwards (a table, view, dictionary or database exists or is
//!   gone; a column exists or is gone). Its record can wait: after a crash
//!   the next run looks and knows.
//! - [`Effect::Repeatable`]: sending it again leaves the same schema
//!   (`IF NOT EXISTS`, `IF EXISTS`, `CREATE OR REPLACE`, `MODIFY COLUMN`…).
//!   Its record can wait: after a crash the next run sends it again.
//! - [`Effect::Opaque`]: neither (`INSERT`, mutations, `OPTIMIZE`,
//!   `TRUNCATE`, `EXCHANGE`, anything not understood). Its record is in the
//!   ledger before the next statement starts.
//!
//! Every effect names the objects it touches ([`Key`]), so that a group of
//! statements whose records wait never holds two statements where the later
//! one changes what the earlier one's check would see ([`conflicts`]).

use super::ident::split_qualified;
use super::lexer::LexError;
use super::statement::{Head, ObjectKind, StatementKind, Verb, analyze, top_level_clauses};

/// One thing to look for on the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A table, view, materialized view or dictionary exists (`present`)
    /// or does not.
    Table {
        database: String,
        name: String,
        present: bool,
    },
    Database {
        name: String,
        present: bool,
    },
    Column {
        database: String,
        table: String,
        column: String,
        present: bool,
    },
}

impl Check {
    /// The object the check looks at.
    pub fn key(&self) -> Key {
        match self {
            Check::Table { database, name, .. } => Key {
                database: database.clone(),
                table: Some(name.clone()),
                column: None,
            },
            Check::Database { name, .. } => Key {
                database: name.clone(),
                table: None,
                column: None,
            },
            Check::Column {
                database,
                table,
                column,
                ..
            } => Key {
                database: database.clone(),
                table: Some(table.clone()),
                column: Some(column.clone()),
            },
        }
    }

    /// What the check says, for the ledger and for people:
    /// `table analytics.events exists`.
    pub fn describe(&self) -> String {
        let is = |p: bool| if p { "exists" } else { "is gone" };
        match self {
            Check::Table {
                database,
                name,
                present,
            } => format!("table {database}.{name} {}", is(*present)),
            Check::Database { name, present } => format!("database {name} {}", is(*present)),
            Check::Column {
                database,
                table,
                column,
                present,
            } => format!("column {column} of {database}.{table} {}", is(*present)),
        }
    }
}

/// An object a statement touches: a database, a table in it, or a column
/// of that table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub database: String,
    pub table: Option<String>,
    pub column: Option<String>,
}

impl Key {
    /// Whether a later statement touching `later` may change what a check
    /// of `self` sees: a whole database changes everything in it, a whole
    /// table every check on it, a column that column's check. (A column
    /// added to a table created earlier leaves that table's check as it
    /// was.)
    fn changed_by(&self, later: &Key) -> bool {
        if self.database != later.database {
            return false;
        }
        match (&self.table, &later.table) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a == b && (later.column.is_none() || self.column == later.column),
        }
    }
}

/// How a statement's progress can be recovered after a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Checked on the schema: every check holds once the statement ran.
    Observable(Vec<Check>),
    /// Safe to send again; touches these objects.
    Repeatable(Vec<Key>),
    /// Neither: its record must be written before the next statement.
    Opaque,
}

impl Effect {
    /// The objects the statement touches.
    pub fn keys(&self) -> Vec<Key> {
        match self {
            Effect::Observable(checks) => checks.iter().map(Check::key).collect(),
            Effect::Repeatable(keys) => keys.clone(),
            Effect::Opaque => Vec::new(),
        }
    }

    /// Whether the statement's record can wait (see the module's text).
    pub fn groupable(&self) -> bool {
        !matches!(self, Effect::Opaque)
    }
}

/// Whether a statement touching `later` may change what a check of any of
/// `earlier` sees (then the group's records are written before it runs).
pub fn conflicts(earlier: &[Key], later: &[Key]) -> bool {
    later
        .iter()
        .any(|l| earlier.iter().any(|e| e.changed_by(l)))
}

/// Unquotes a possibly qualified name, with `database` for an unqualified
/// one.
fn resolve(name: &str, database: &str) -> (String, String) {
    let (db, object) = split_qualified(name);
    (db.unwrap_or_else(|| database.to_string()), object)
}

/// The effect of `sql` (one prepared statement); `database` is the one
/// unqualified names resolve to.
pub fn effect(sql: &str, database: &str) -> Effect {
    classify(sql, database).unwrap_or(Effect::Opaque)
}

fn classify(sql: &str, database: &str) -> Result<Effect, LexError> {
    let info = analyze(sql)?;
    let StatementKind::Ddl { verb, object } = info.kind else {
        return Ok(Effect::Opaque);
    };
    let Some(name) = info.object_name.as_deref() else {
        return Ok(Effect::Opaque);
    };
    if matches!(
        verb,
        Verb::Optimize | Verb::Truncate | Verb::Exchange | Verb::Attach | Verb::Detach
    ) || object == ObjectKind::Function
    {
        return Ok(Effect::Opaque);
    }
    let is_database = object == ObjectKind::Database;
    let (db, table) = if is_database {
        (split_qualified(name).1, String::new())
    } else {
        resolve(name, database)
    };
    let whole = |present: bool| {
        if is_database {
            Check::Database {
                name: db.clone(),
                present,
            }
        } else {
            Check::Table {
                database: db.clone(),
                name: table.clone(),
                present,
            }
        }
    };
    if info.rerun_safe {
        // Repeating it is safe; what it touches still matters for grouping.
        let keys = match verb {
            Verb::Rename => match rename_pairs(sql, database)? {
                Some(pairs) => pairs.iter().flat_map(|(a, b)| [a.key(), b.key()]).collect(),
                None => return Ok(Effect::Opaque),
            },
            _ => vec![whole(true).key()],
        };
        return Ok(Effect::Repeatable(keys));
    }
    Ok(match verb {
        // A table filled by a SELECT (or a view that populates one) may
        // exist half filled: its existence does not say the statement
        // finished.
        Verb::Create if fills_data(sql)? => Effect::Opaque,
        Verb::Create => Effect::Observable(vec![whole(true)]),
        Verb::Drop if drop_names_one(sql)? => Effect::Observable(vec![whole(false)]),
        Verb::Alter if object == ObjectKind::Table => match alter_columns(sql, &db, &table)? {
            Some(checks) => Effect::Observable(checks),
            None => Effect::Opaque,
        },
        Verb::Rename if object == ObjectKind::Table => match rename_pairs(sql, database)? {
            Some(pairs) => {
                Effect::Observable(pairs.into_iter().flat_map(|(a, b)| [a, b]).collect())
            }
            None => Effect::Opaque,
        },
        _ => Effect::Opaque,
    })
}

/// `CREATE TABLE … AS SELECT|WITH …` or `… POPULATE …`: the statement
/// writes data as it creates.
fn fills_data(sql: &str) -> Result<bool, LexError> {
    let h = Head::new(sql)?;
    let is = |k: usize, kw: &str| h.toks.get(k).is_some_and(|t| t.is_word(h.src, kw));
    // A view's (or materialized view's) AS SELECT is its definition.
    let view = (1..5).any(|k| is(k, "VIEW"));
    Ok((0..h.toks.len()).any(|k| {
        is(k, "POPULATE")
            || (!view
                && is(k, "AS")
                && (is(k + 1, "SELECT")
                    || is(k + 1, "WITH")
                    || (h.toks.get(k + 1).is_some_and(|t| t.is_punct(h.src, '('))
                        && (is(k + 2, "SELECT") || is(k + 2, "WITH")))))
    }))
}

/// `DROP TABLE|VIEW|DICTIONARY|DATABASE name [ON CLUSTER c] [SYNC|NO DELAY]`
/// with exactly one name.
fn drop_names_one(sql: &str) -> Result<bool, LexError> {
    let mut h = Head::new(sql)?;
    h.i = 1;
    for kw in [
        &["TEMPORARY"][..],
        &["MATERIALIZED"],
        &["TABLE"],
        &["VIEW"],
        &["DICTIONARY"],
        &["DATABASE"],
    ] {
        h.eat_words(kw);
    }
    if h.eat_name().is_none() {
        return Ok(false);
    }
    if h.eat_words(&["ON", "CLUSTER"]) {
        h.i += 1;
    }
    let _ = h.eat_words(&["SYNC"]) || h.eat_words(&["NO", "DELAY"]);
    Ok(h.i >= h.toks.len())
}

/// Unquotes one identifier token's text.
fn ident_text(text: &str) -> String {
    split_qualified(text).1
}

/// `ALTER TABLE t [ON CLUSTER c] ADD COLUMN x …, DROP COLUMN y` where every
/// clause adds or drops a column (without `IF [NOT] EXISTS`): one check per
/// clause. `None` for any other clause, or a column named twice.
fn alter_columns(sql: &str, db: &str, table: &str) -> Result<Option<Vec<Check>>, LexError> {
    let mut h = Head::new(sql)?;
    h.i = 2;
    if h.eat_name().is_none() {
        return Ok(None);
    }
    if h.eat_words(&["ON", "CLUSTER"]) {
        h.i += 1;
    }
    let mut checks: Vec<Check> = Vec::new();
    for clause in top_level_clauses(h.src, &h.toks, h.i) {
        let word = |k: usize, kw: &str| clause.get(k).is_some_and(|t| t.is_word(h.src, kw));
        let present = if word(0, "ADD") && word(1, "COLUMN") {
            true
        } else if word(0, "DROP") && word(1, "COLUMN") {
            false
        } else {
            return Ok(None);
        };
        if word(2, "IF") {
            return Ok(None);
        }
        let Some(column) = clause.get(2).map(|t| ident_text(t.text(h.src))) else {
            return Ok(None);
        };
        let check = Check::Column {
            database: db.to_string(),
            table: table.to_string(),
            column,
            present,
        };
        if checks.iter().any(|c| c.key() == check.key()) {
            return Ok(None);
        }
        checks.push(check);
    }
    Ok((!checks.is_empty()).then_some(checks))
}

/// `RENAME TABLE a TO b [, c TO d] [ON CLUSTER x]`: for each pair, `a` is
/// gone and `b` exists. `None` when a name appears twice (a chain or a
/// swap: the end state does not say which renames ran).
fn rename_pairs(sql: &str, database: &str) -> Result<Option<Vec<(Check, Check)>>, LexError> {
    let mut h = Head::new(sql)?;
    h.i = 2;
    let mut pairs = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    loop {
        let Some((s, e)) = h.eat_name() else {
            return Ok(None);
        };
        let from = resolve(&h.src[s..e], database);
        if !h.eat_words(&["TO"]) {
            return Ok(None);
        }
        let Some((s, e)) = h.eat_name() else {
            return Ok(None);
        };
        let to = resolve(&h.src[s..e], database);
        if names.contains(&from) || names.contains(&to) || from == to {
            return Ok(None);
        }
        names.push(from.clone());
        names.push(to.clone());
        pairs.push((
            Check::Table {
                database: from.0,
                name: from.1,
                present: false,
            },
            Check::Table {
                database: to.0,
                name: to.1,
                present: true,
            },
        ));
        if h.eat_punct(',') {
            continue;
        }
        if h.eat_words(&["ON", "CLUSTER"]) {
            h.i += 1;
        }
        return Ok((h.i >= h.toks.len()).then_some(pairs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(db: &str, name: &str, present: bool) -> Check {
        Check::Table {
            database: db.into(),
            name: name.into(),
            present,
        }
    }

    fn column(table: &str, column: &str, present: bool) -> Check {
        Check::Column {
            database: "app".into(),
            table: table.into(),
            column: column.into(),
            present,
        }
    }

    #[test]
    fn creations_and_drops_are_observed_with_unqualified_names_in_the_target_database() {
        assert_eq!(
            effect(
                "CREATE TABLE events ON CLUSTER c (id UInt64) ENGINE = MergeTree ORDER BY id",
                "app"
            ),
            Effect::Observable(vec![table("app", "events", true)])
        );
        assert_eq!(
            effect(
                "CREATE MATERIALIZED VIEW `we-ird`.`mv 1` TO t AS SELECT 1",
                "app"
            ),
            Effect::Observable(vec![table("we-ird", "mv 1", true)])
        );
        // A view's AS SELECT writes nothing; a copy of another table's
        // structure neither.
        assert_eq!(
            effect("CREATE VIEW v AS SELECT 1", "app"),
            Effect::Observable(vec![table("app", "v", true)])
        );
        assert_eq!(
            effect("CREATE TABLE t2 AS app.t ENGINE = Memory", "app"),
            Effect::Observable(vec![table("app", "t2", true)])
        );
        assert_eq!(
            effect("DROP TABLE other.old ON CLUSTER c SYNC", "app"),
            Effect::Observable(vec![table("other", "old", false)])
        );
        assert_eq!(
            effect("CREATE DATABASE reports", "app"),
            Effect::Observable(vec![Check::Database {
                name: "reports".into(),
                present: true
            }])
        );
        assert_eq!(
            effect("DROP DICTIONARY app.d", "x"),
            Effect::Observable(vec![table("app", "d", false)])
        );
    }

    #[test]
    fn column_changes_are_observed_clause_by_clause() {
        assert_eq!(
            effect(
                "ALTER TABLE events ON CLUSTER c ADD COLUMN `user id` UInt64 DEFAULT 0, DROP COLUMN legacy",
                "app"
            ),
            Effect::Observable(vec![
                column("events", "user id", true),
                column("events", "legacy", false)
            ])
        );
        // Anything but adding or dropping a column is not observed.
        assert_eq!(
            effect(
                "ALTER TABLE events ADD INDEX i (x) TYPE minmax GRANULARITY 1",
                "app"
            ),
            Effect::Opaque
        );
        assert_eq!(
            effect(
                "ALTER TABLE events ADD COLUMN a UInt8, DROP COLUMN a",
                "app"
            ),
            Effect::Opaque
        );
        assert_eq!(
            effect("ALTER TABLE events DELETE WHERE x = 1", "app"),
            Effect::Opaque
        );
    }

    #[test]
    fn repeatable_statements_name_what_they_touch() {
        assert_eq!(
            effect(
                "CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory",
                "app"
            ),
            Effect::Repeatable(vec![table("app", "t", true).key()])
        );
        assert_eq!(
            effect("DROP TABLE IF EXISTS app.t", "x"),
            Effect::Repeatable(vec![table("app", "t", true).key()])
        );
        assert_eq!(
            effect("ALTER TABLE t ADD COLUMN IF NOT EXISTS c UInt8", "app"),
            Effect::Repeatable(vec![table("app", "t", true).key()])
        );
    }

    #[test]
    fn renames_are_observed_unless_a_name_repeats() {
        assert_eq!(
            effect("RENAME TABLE a TO b, app2.c TO app2.d ON CLUSTER x", "app"),
            Effect::Observable(vec![
                table("app", "a", false),
                table("app", "b", true),
                table("app2", "c", false),
                table("app2", "d", true),
            ])
        );
        assert_eq!(effect("RENAME TABLE a TO b, b TO c", "app"), Effect::Opaque);
        assert_eq!(
            effect("RENAME TABLE a TO tmp, b TO a, tmp TO b", "app"),
            Effect::Opaque
        );
    }

    #[test]
    fn data_and_other_statements_are_opaque() {
        for sql in [
            "INSERT INTO t VALUES (1)",
            "INSERT INTO t SELECT * FROM s WHERE x = '${not_a_var}'",
            "ALTER TABLE t UPDATE x = 1 WHERE 1",
            "OPTIMIZE TABLE t FINAL",
            "TRUNCATE TABLE t",
            "EXCHANGE TABLES a AND b",
            "DETACH TABLE t",
            "ATTACH TABLE t",
            "SYSTEM RELOAD DICTIONARIES",
            "CREATE FUNCTION f AS x -> x + 1",
            "DROP TABLE a, b",
            "CREATE TABLE t ENGINE = MergeTree ORDER BY x AS SELECT 1 AS x",
            "CREATE TABLE t ENGINE = Log AS (WITH 1 AS y SELECT y)",
            "CREATE MATERIALIZED VIEW mv ENGINE = MergeTree ORDER BY x POPULATE AS SELECT x FROM s",
            "SELECT 1",
            "not sql at all (",
        ] {
            assert_eq!(effect(sql, "app"), Effect::Opaque, "{sql}");
        }
    }

    #[test]
    fn a_later_statement_conflicts_when_it_changes_what_an_earlier_check_sees() {
        let keys = |sql: &str| effect(sql, "app").keys();
        let create = keys("CREATE TABLE t (x UInt8) ENGINE = Memory");
        // Columns of a table created earlier in the group: no conflict.
        assert!(!conflicts(
            &create,
            &keys("ALTER TABLE t ADD COLUMN y UInt8")
        ));
        // Another table: none.
        assert!(!conflicts(
            &create,
            &keys("CREATE TABLE u (x UInt8) ENGINE = Memory")
        ));
        assert!(!conflicts(
            &keys("CREATE TABLE other.t (x UInt8) ENGINE = Memory"),
            &create
        ));
        // Dropping what was created: conflict, also when repeatable.
        assert!(conflicts(&create, &keys("DROP TABLE t")));
        assert!(conflicts(&create, &keys("DROP TABLE IF EXISTS app.t")));
        // The same column twice: conflict; two columns: none.
        let add = keys("ALTER TABLE t ADD COLUMN y UInt8");
        assert!(conflicts(&add, &keys("ALTER TABLE t DROP COLUMN y")));
        assert!(!conflicts(&add, &keys("ALTER TABLE t ADD COLUMN z UInt8")));
        // A column added, then its table renamed away: conflict.
        assert!(conflicts(&add, &keys("RENAME TABLE t TO t2")));
        // A table created in a database created earlier: none.
        assert!(!conflicts(&keys("CREATE DATABASE app"), &create));
        // A database dropped: conflicts with everything in it.
        assert!(conflicts(&create, &keys("DROP DATABASE app")));
        assert!(!conflicts(&create, &keys("DROP DATABASE other")));
    }
}
