//! Which tables a statement drops or rewrites data of (pure): what the
//! `backup: freeze` policy freezes before the statement runs.

use super::lexer::LexError;
use super::statement::{Head, ObjectKind, StatementKind, Verb, analyze, top_level_clauses};

/// Data a statement puts at risk, by name as written (`db.t` or `t`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtRisk {
    /// The table's data (it may not exist: a rename or exchange target).
    Table(String),
    /// Every table of the database (`DROP DATABASE`).
    Database(String),
}

/// `ALTER TABLE` clauses that keep every row and column value.
const SAFE_ALTER: [&str; 9] = [
    "ADD",
    "COMMENT",
    "FREEZE",
    "UNFREEZE",
    "ATTACH",
    "FETCH",
    "RENAME",
    "MATERIALIZE",
    "ON",
];

/// What `sql` would lose if it went wrong or was a mistake: dropped tables
/// and databases, truncations, mutations, `ALTER … DROP/MODIFY/CLEAR
/// COLUMN`, dropped partitions, and tables a `RENAME`/`EXCHANGE`/`CREATE OR
/// REPLACE` writes over. Empty for statements that keep all data.
pub fn at_risk(sql: &str) -> Result<Vec<AtRisk>, LexError> {
    let info = analyze(sql)?;
    let named = || info.object_name.clone().map(AtRisk::Table);
    Ok(match info.kind {
        StatementKind::Mutation => named().into_iter().collect(),
        StatementKind::Ddl { verb, object } => match (verb, object) {
            (Verb::Drop, ObjectKind::Database) => info
                .object_name
                .clone()
                .map(AtRisk::Database)
                .into_iter()
                .collect(),
            (Verb::Drop | Verb::Truncate, ObjectKind::Table) => named().into_iter().collect(),
            (Verb::Create, ObjectKind::Table) if replaces(sql)? => named().into_iter().collect(),
            (Verb::Alter, ObjectKind::Table) => {
                if alter_is_destructive(sql)? {
                    named().into_iter().collect()
                } else {
                    Vec::new()
                }
            }
            (Verb::Rename | Verb::Exchange, ObjectKind::Table) => rename_names(sql)?,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    })
}

/// `CREATE OR REPLACE TABLE`.
fn replaces(sql: &str) -> Result<bool, LexError> {
    let h = Head::new(sql)?;
    Ok(h.toks.get(1).is_some_and(|t| t.is_word(sql, "OR"))
        && h.toks.get(2).is_some_and(|t| t.is_word(sql, "REPLACE")))
}

fn alter_is_destructive(sql: &str) -> Result<bool, LexError> {
    let mut h = Head::new(sql)?;
    h.i = 2;
    if h.eat_name().is_none() {
        return Ok(true);
    }
    if h.eat_words(&["ON", "CLUSTER"]) {
        h.i += 1;
    }
    Ok(top_level_clauses(h.src, &h.toks, h.i).iter().any(|c| {
        let first = c.first().map(|t| t.text(sql).to_ascii_uppercase());
        let second = c.get(1).map(|t| t.text(sql).to_ascii_uppercase());
        match (first.as_deref(), second.as_deref()) {
            (Some("MODIFY"), Some("COMMENT" | "SETTING")) => false,
            (Some(w), _) => !SAFE_ALTER.contains(&w),
            (None, _) => false,
        }
    }))
}

/// Every name in `RENAME TABLE a TO b, …` (targets may exist: `EXCHANGE`
/// swaps two tables, and a rename over an existing name fails or, with
/// Atomic databases' EXCHANGE, replaces it) and `EXCHANGE TABLES a AND b`.
fn rename_names(sql: &str) -> Result<Vec<AtRisk>, LexError> {
    let mut h = Head::new(sql)?;
    h.i = 2;
    let mut out = Vec::new();
    while h.i < h.toks.len() {
        if let Some((s, e)) = h.eat_name() {
            out.push(AtRisk::Table(sql[s..e].to_string()));
        }
        if h.eat_words(&["TO"]) || h.eat_words(&["AND"]) || h.eat_punct(',') {
            continue;
        }
        break;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> AtRisk {
        AtRisk::Table(s.into())
    }

    #[test]
    fn statements_that_lose_data_name_their_tables() {
        for (sql, want) in [
            ("DROP TABLE db.events", vec![t("db.events")]),
            (
                "DROP TABLE IF EXISTS db.events ON CLUSTER c",
                vec![t("db.events")],
            ),
            ("TRUNCATE TABLE events", vec![t("events")]),
            ("ALTER TABLE db.e DROP COLUMN x", vec![t("db.e")]),
            (
                "ALTER TABLE db.e ON CLUSTER c MODIFY COLUMN x UInt64",
                vec![t("db.e")],
            ),
            (
                "ALTER TABLE db.e ADD COLUMN y UInt8, CLEAR COLUMN x IN PARTITION 1",
                vec![t("db.e")],
            ),
            ("ALTER TABLE db.e DROP PARTITION 201901", vec![t("db.e")]),
            ("ALTER TABLE db.e DELETE WHERE x = 1", vec![t("db.e")]),
            ("ALTER TABLE db.e UPDATE x = 1 WHERE 1", vec![t("db.e")]),
            ("DELETE FROM db.e WHERE x = 1", vec![t("db.e")]),
            (
                "RENAME TABLE db.a TO db.b, db.c TO db.d",
                vec![t("db.a"), t("db.b"), t("db.c"), t("db.d")],
            ),
            ("EXCHANGE TABLES db.a AND db.b", vec![t("db.a"), t("db.b")]),
            (
                "CREATE OR REPLACE TABLE db.a (x UInt8) ENGINE = Memory",
                vec![t("db.a")],
            ),
            ("DROP DATABASE old", vec![AtRisk::Database("old".into())]),
        ] {
            assert_eq!(at_risk(sql).unwrap(), want, "{sql}");
        }
    }

    #[test]
    fn statements_that_keep_data_risk_nothing() {
        for sql in [
            "CREATE TABLE db.a (x UInt8) ENGINE = Memory",
            "ALTER TABLE db.e ADD COLUMN y UInt8 DEFAULT 0, COMMENT COLUMN y 'why'",
            "ALTER TABLE db.e MODIFY SETTING index_granularity = 8192",
            "ALTER TABLE db.e RENAME COLUMN a TO b",
            "INSERT INTO db.e VALUES (1)",
            "SELECT 1",
            "DROP VIEW db.v",
            "DROP DICTIONARY db.d",
            "OPTIMIZE TABLE db.e FINAL",
        ] {
            assert_eq!(at_risk(sql).unwrap(), Vec::new(), "{sql}");
        }
    }
}
