//! The syntax check (`validate --check-syntax`, `migrations.check_syntax`,
//! the seed framework's `validation.check_syntax`): nothing is sent to a
//! server.
//!
//! Two layers, so that the check never refuses SQL ClickHouse accepts:
//!
//! 1. The statement's leading keywords are compared with the statements
//!    ClickHouse knows. A word that is not one of them but is one or two
//!    letters away from one (`CRATE TABLE`, `CREATE TABEL`, `ALTR TABLE`) is
//!    a clear typo: an **error**, with the word it was meant to be.
//! 2. Everything else is parsed with `sqlparser` (the Apache DataFusion SQL
//!    parser, `ClickHouseDialect`). That parser does not know all of
//!    ClickHouse (`ENGINE = Replicated…(…)` arguments, codecs, `TTL`,
//!    `ON CLUSTER` in some places, …), so a statement it cannot read is only
//!    a **warning** naming the parser's complaint: the server has the last
//!    word (`chmigrate test` runs every statement on it).
//!
//! `${variables}` are replaced by a plain identifier before parsing.

use sqlparser::dialect::ClickHouseDialect;
use sqlparser::parser::Parser;

use super::lexer::{TokenKind, tokenize};

/// What the check found in one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxFinding {
    /// A leading keyword that is a typo of a known one: refused.
    Typo { found: String, meant: &'static str },
    /// The parser could not read the statement: reported, not refused.
    Unparsed(String),
}

impl std::fmt::Display for SyntaxFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyntaxFinding::Typo { found, meant } => write!(
                f,
                "`{found}` is not a ClickHouse keyword here: did you mean {meant}?"
            ),
            SyntaxFinding::Unparsed(why) => write!(
                f,
                "the SQL parser (sqlparser, ClickHouse dialect) cannot read this statement ({why}); ClickHouse may still accept it: `chmigrate test` runs it on the server"
            ),
        }
    }
}

/// Words a ClickHouse statement starts with.
const STATEMENTS: &[&str] = &[
    "SELECT", "INSERT", "CREATE", "ALTER", "DROP", "DETACH", "ATTACH", "RENAME", "EXCHANGE",
    "TRUNCATE", "OPTIMIZE", "SYSTEM", "SET", "SHOW", "DESCRIBE", "DESC", "EXISTS", "USE", "GRANT",
    "REVOKE", "KILL", "CHECK", "WITH", "EXPLAIN", "DELETE", "UPDATE", "UNDROP", "BACKUP",
    "RESTORE", "MOVE", "WATCH", "BEGIN", "COMMIT", "ROLLBACK", "REPLACE", "VALUES",
];

/// Words that may follow `CREATE` (after `OR REPLACE`, `TEMPORARY`).
const CREATE_OBJECTS: &[&str] = &[
    "TABLE",
    "VIEW",
    "MATERIALIZED",
    "LIVE",
    "WINDOW",
    "DATABASE",
    "DICTIONARY",
    "FUNCTION",
    "USER",
    "ROLE",
    "ROW",
    "POLICY",
    "QUOTA",
    "SETTINGS",
    "PROFILE",
    "INDEX",
    "NAMED",
    "WORKLOAD",
    "RESOURCE",
    "TEMPORARY",
    "OR",
    "IF",
];

/// Words that may follow `DROP`, `ALTER`, `UNDROP`.
const OBJECTS: &[&str] = &[
    "TABLE",
    "TABLES",
    "VIEW",
    "DATABASE",
    "DICTIONARY",
    "DICTIONARIES",
    "FUNCTION",
    "USER",
    "ROLE",
    "ROW",
    "POLICY",
    "QUOTA",
    "SETTINGS",
    "PROFILE",
    "INDEX",
    "NAMED",
    "TEMPORARY",
    "IF",
    "PART",
    "PARTITION",
    "MATERIALIZED",
    "LIVE",
    "WINDOW",
    "WORKLOAD",
    "RESOURCE",
];

/// Optimal string alignment distance (adjacent swaps count as one edit).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The known word `word` is a typo of, if it is not known itself and is
/// close to one of them (one edit for short words, two for longer), the
/// nearest when no other is as near.
fn typo_of(word: &str, known: &[&'static str]) -> Option<&'static str> {
    if known.contains(&word) || !word.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let close: Vec<(usize, &'static str)> = known
        .iter()
        .filter(|k| k.len() >= 4)
        .map(|k| (distance(word, k), *k))
        .filter(|(d, k)| *d <= if k.len() >= 6 { 2 } else { 1 })
        .collect();
    // The nearest, when no other is as near.
    let best = close.iter().map(|(d, _)| *d).min()?;
    let mut nearest = close.iter().filter(|(d, _)| *d == best);
    let first = nearest.next()?;
    nearest.next().is_none().then_some(first.1)
}

/// The first `n` word tokens of `sql`, upper-cased (comments skipped).
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let Ok(tokens) = tokenize(sql) else {
        return Vec::new();
    };
    tokens
        .iter()
        .filter(|t| !t.kind.is_trivia())
        .take(n)
        .map(|t| {
            if t.kind == TokenKind::Word {
                t.text(sql).to_ascii_uppercase()
            } else {
                String::new()
            }
        })
        .collect()
}

/// `sql` with every `${name}` replaced by an identifier the parser reads.
fn without_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push_str("chm_var");
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks one statement (as written, variables unsubstituted). `None`: the
/// parser read it.
pub fn check(sql: &str) -> Option<SyntaxFinding> {
    let words = leading_words(sql, 4);
    let first = words.first()?;
    if let Some(meant) = typo_of(first, STATEMENTS) {
        return Some(SyntaxFinding::Typo {
            found: first.clone(),
            meant,
        });
    }
    let second_known: Option<&[&'static str]> = match first.as_str() {
        "CREATE" => Some(CREATE_OBJECTS),
        // Only verbs that always name the kind of object next: TRUNCATE,
        // RENAME, ATTACH and DETACH may be followed by a table's own name,
        // which must never be taken for a typo.
        "DROP" | "ALTER" | "UNDROP" => Some(OBJECTS),
        _ => None,
    };
    if let (Some(known), Some(second)) = (second_known, words.get(1))
        && let Some(meant) = typo_of(second, known)
    {
        return Some(SyntaxFinding::Typo {
            found: second.clone(),
            meant,
        });
    }
    match Parser::parse_sql(&ClickHouseDialect {}, &without_placeholders(sql)) {
        Ok(_) => None,
        Err(e) => Some(SyntaxFinding::Unparsed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typo(sql: &str) -> Option<(String, &'static str)> {
        match check(sql) {
            Some(SyntaxFinding::Typo { found, meant }) => Some((found, meant)),
            _ => None,
        }
    }

    #[test]
    fn clear_typos_of_the_leading_keywords_are_errors() {
        assert_eq!(
            typo("CRATE TABLE users (id UInt32) ENGINE = MergeTree() ORDER BY id"),
            Some(("CRATE".into(), "CREATE"))
        );
        assert_eq!(
            typo("create tabel users (id UInt32) ENGINE = Memory"),
            Some(("TABEL".into(), "TABLE"))
        );
        assert_eq!(
            typo("ALTR TABLE t ADD COLUMN x UInt8"),
            Some(("ALTR".into(), "ALTER"))
        );
        assert_eq!(
            typo("INSRET INTO t VALUES (1)"),
            Some(("INSRET".into(), "INSERT"))
        );
        assert_eq!(
            typo("DROP TABEL IF EXISTS t"),
            Some(("TABEL".into(), "TABLE"))
        );
        let msg = check("CRATE TABLE t (x UInt8) ENGINE = Memory")
            .unwrap()
            .to_string();
        assert_eq!(
            msg,
            "`CRATE` is not a ClickHouse keyword here: did you mean CREATE?"
        );
    }

    #[test]
    fn real_clickhouse_ddl_is_never_an_error() {
        for sql in [
            "CREATE TABLE IF NOT EXISTS ${database}.users ON CLUSTER c (user_id UInt64, created_at DateTime DEFAULT now()) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/${database}/users', '{replica}', updated_at) ORDER BY user_id",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv TO db.t AS SELECT a, count() AS c FROM db.src GROUP BY a",
            "CREATE TABLE t (x String CODEC(ZSTD(1)), d Date) ENGINE = MergeTree() PARTITION BY toYYYYMM(d) ORDER BY x TTL d + INTERVAL 1 YEAR SETTINGS index_granularity = 8192",
            "CREATE INDEX idx_events_type ON events (event_type) TYPE bloom_filter GRANULARITY 1",
            "ALTER TABLE events ON CLUSTER c ADD INDEX i (x) TYPE minmax GRANULARITY 4",
            "ALTER TABLE t UPDATE x = 1 WHERE 1",
            "SYSTEM FLUSH LOGS",
            "OPTIMIZE TABLE t FINAL",
            "CREATE DICTIONARY d (k UInt64, v String) PRIMARY KEY k SOURCE(CLICKHOUSE(TABLE 'x')) LAYOUT(FLAT()) LIFETIME(300)",
            "RENAME TABLE a TO b, c TO d",
            "EXCHANGE TABLES a AND b",
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "DROP TEMPORARY TABLE IF EXISTS t",
            "INSERT INTO t SELECT * FROM s",
            "SET allow_experimental_object_type = 1",
            "CREATE FUNCTION f AS (x) -> x + 1",
            "DETACH TABLE t",
            "TRUNCATE tabel",
            "RENAME tabel TO t2",
            "CREATE DATABASE IF NOT EXISTS analytics ENGINE = Atomic",
        ] {
            assert!(
                !matches!(check(sql), Some(SyntaxFinding::Typo { .. })),
                "{sql}: {:?}",
                check(sql)
            );
        }
    }

    #[test]
    fn the_parser_reads_plain_statements_and_reports_what_it_cannot() {
        assert_eq!(check("SELECT count() AS n FROM users WHERE id > 1"), None);
        assert_eq!(
            check(
                "CREATE TABLE IF NOT EXISTS ${database}.users (id UInt32, name String) ENGINE = MergeTree() ORDER BY id"
            ),
            None
        );
        assert!(matches!(
            check("SELECT FROM WHERE"),
            Some(SyntaxFinding::Unparsed(_))
        ));
        // Not close to any statement: the parser's word, not a refusal.
        assert!(matches!(
            check("FROBNICATE the table"),
            Some(SyntaxFinding::Unparsed(_))
        ));
        assert_eq!(check("-- only a comment"), None);
    }

    #[test]
    fn distances() {
        assert_eq!(distance("CRATE", "CREATE"), 1);
        assert_eq!(distance("TABEL", "TABLE"), 1);
        assert_eq!(distance("SELECT", "SELECT"), 0);
        assert_eq!(typo_of("DESC", STATEMENTS), None);
        assert_eq!(
            typo_of("SETT", STATEMENTS),
            None,
            "too short a target word is never guessed"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: crate::fuzz_cases(300), .. Default::default() })]

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = check(&s);
        }
    }
}
