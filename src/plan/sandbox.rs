//! `chmigrate test`'s pure half: which statements would escape the
//! throw-away database it runs migrations in, and how two schema snapshots
//! differ. The command itself (create, apply, snapshot, roll back, drop)
//! lives in the CLI over the same engine as `migrate`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::sql::ident::split_qualified;
use crate::sql::lexer::tokenize;
use crate::sql::statement::{ObjectKind, StatementKind, analyze};

/// A throw-away database name no other run uses.
pub fn sandbox_name(now_us: u64, pid: u32) -> String {
    format!("chm_test_{now_us:x}_{pid}")
}

/// Why `sql` (variables already substituted) would touch something outside
/// the throw-away database `sandbox`, or `None` when it stays inside. The
/// real target database is `real`: naming it directly would change it.
pub fn escapes(sql: &str, sandbox: &str, real: &str) -> Option<String> {
    let info = match analyze(sql) {
        Ok(i) => i,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    if let Ok(tokens) = tokenize(sql) {
        let words: Vec<&str> = tokens
            .iter()
            .filter(|t| !t.kind.is_trivia())
            .map(|t| t.text(sql))
            .collect();
        for pair in words.windows(2) {
            let name = unquote(pair[0]);
            if real != sandbox && name == real && pair[1] == "." {
                return Some(format!(
                    "names the target database `{real}` directly; write ${{database}} instead"
                ));
            }
        }
    }
    let writes = matches!(
        info.kind,
        StatementKind::Ddl { .. } | StatementKind::Insert | StatementKind::Mutation
    );
    let index_table = index_target(sql);
    if matches!(info.kind, StatementKind::Other) && index_table.is_none() {
        if let Some(typo @ crate::sql::syntax::SyntaxFinding::Typo { .. }) =
            crate::sql::syntax::check(sql)
        {
            return Some(format!("is not a statement ClickHouse knows: {typo}"));
        }
        return Some(
            "is a server-wide statement (SYSTEM, GRANT, users…) that a test would run for real"
                .into(),
        );
    }
    let writes = writes || index_table.is_some();
    let name = index_table.as_deref().or(info.object_name.as_deref())?;
    if !writes {
        return None;
    }
    if let StatementKind::Ddl {
        object: ObjectKind::Database,
        ..
    } = info.kind
    {
        return (unquote(name) != sandbox)
            .then(|| format!("changes database `{name}`, outside the test's database"));
    }
    // Unqualified names are the current database's, which is the
    // throw-away one while testing (as it is the target while migrating).
    match split_qualified(name) {
        (Some(db), _) if db != sandbox => Some(format!(
            "writes to database `{db}`, outside the test's database"
        )),
        _ => None,
    }
}

/// The table of `CREATE INDEX … ON t` / `DROP INDEX … ON t` (statements
/// of a table, not of the server), as written.
fn index_target(sql: &str) -> Option<String> {
    let tokens = tokenize(sql).ok()?;
    let toks: Vec<_> = tokens.iter().filter(|t| !t.kind.is_trivia()).collect();
    let word = |i: usize| toks.get(i).map(|t| t.text(sql).to_ascii_uppercase());
    if !matches!(word(0)?.as_str(), "CREATE" | "DROP") || word(1)? != "INDEX" {
        return None;
    }
    let on = (2..toks.len()).find(|&i| word(i).as_deref() == Some("ON"))?;
    let mut name = String::new();
    let mut i = on + 1;
    while let Some(t) = toks.get(i) {
        let text = t.text(sql);
        let dot = text == ".";
        if !dot && name.ends_with(|c: char| c != '.') {
            break;
        }
        name.push_str(text);
        i += 1;
    }
    (!name.is_empty()).then_some(name)
}

fn unquote(word: &str) -> String {
    split_qualified(word).1
}

/// One object of a schema snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectSnapshot {
    /// `SHOW CREATE` of the object.
    pub create: String,
    /// `(name, type)` of each column, in order.
    pub columns: Vec<(String, String)>,
}

/// Every object of a database by name.
pub type Schema = BTreeMap<String, ObjectSnapshot>;

/// How `after` differs from `before`, one sentence per difference (empty:
/// identical).
pub fn diff(before: &Schema, after: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    for (name, b) in before {
        let Some(a) = after.get(name) else {
            out.push(format!("`{name}` is missing (it existed before)"));
            continue;
        };
        let cols = |s: &ObjectSnapshot| s.columns.iter().cloned().collect::<BTreeMap<_, _>>();
        let (bc, ac) = (cols(b), cols(a));
        let mut column_change = false;
        for (c, t) in &ac {
            match bc.get(c) {
                None => {
                    out.push(format!("`{name}`: column `{c}` ({t}) was left behind"));
                    column_change = true;
                }
                Some(bt) if bt != t => {
                    out.push(format!("`{name}`: column `{c}` is {t}, was {bt}"));
                    column_change = true;
                }
                Some(_) => {}
            }
        }
        for (c, t) in &bc {
            if !ac.contains_key(c) {
                out.push(format!("`{name}`: column `{c}` ({t}) is missing"));
                column_change = true;
            }
        }
        if !column_change && a.create != b.create {
            out.push(format!(
                "`{name}`: definition differs\n  before: {}\n  after:  {}",
                b.create, a.create
            ));
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        out.push(format!(
            "`{name}` was left behind (it did not exist before)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_leave_the_sandbox_are_named() {
        let sb = "chm_test_1";
        for ok in [
            "CREATE TABLE chm_test_1.t (x UInt8) ENGINE = Memory",
            "INSERT INTO chm_test_1.t SELECT number FROM system.numbers LIMIT 3",
            "ALTER TABLE `chm_test_1`.t ADD COLUMN y UInt8",
            "SELECT 1",
            "CREATE DATABASE IF NOT EXISTS chm_test_1",
            // The current database while testing is the throw-away one.
            "CREATE TABLE t (x UInt8) ENGINE = Memory",
            // An index is a table's, not the server's.
            "CREATE INDEX idx_events_type ON events (event_type) TYPE bloom_filter GRANULARITY 1",
            "DROP INDEX IF EXISTS i ON chm_test_1.events",
        ] {
            assert_eq!(escapes(ok, sb, "analytics"), None, "{ok}");
        }
        for (bad, why) in [
            ("INSERT INTO other.t VALUES (1)", "database `other`"),
            (
                "CREATE MATERIALIZED VIEW chm_test_1.mv TO chm_test_1.t AS SELECT * FROM analytics.src",
                "target database `analytics` directly",
            ),
            ("SYSTEM FLUSH LOGS", "server-wide"),
            ("DROP DATABASE analytics", "changes database `analytics`"),
            ("CREATE DATABASE other", "outside the test's database"),
            (
                "CREATE INDEX i ON other.events (x) TYPE minmax GRANULARITY 1",
                "writes to database `other`",
            ),
            (
                "CRATE TABLE t (x UInt8) ENGINE = Memory",
                "is not a statement ClickHouse knows: `CRATE` is not a ClickHouse keyword here: did you mean CREATE?",
            ),
        ] {
            let got = escapes(bad, sb, "analytics").unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    fn snap(create: &str, cols: &[(&str, &str)]) -> ObjectSnapshot {
        ObjectSnapshot {
            create: create.into(),
            columns: cols
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    #[test]
    fn diff_names_every_difference() {
        let before: Schema = [
            ("a".to_string(), snap("CREATE a", &[("id", "UInt64")])),
            ("b".to_string(), snap("CREATE b", &[("id", "UInt64")])),
            (
                "c".to_string(),
                snap("CREATE c ORDER BY id", &[("id", "UInt64")]),
            ),
        ]
        .into();
        assert!(diff(&before, &before).is_empty());
        let after: Schema = [
            (
                "a".to_string(),
                snap("CREATE a2", &[("id", "UInt32"), ("extra", "String")]),
            ),
            (
                "c".to_string(),
                snap("CREATE c ORDER BY (id, x)", &[("id", "UInt64")]),
            ),
            ("d".to_string(), snap("CREATE d", &[])),
        ]
        .into();
        let d = diff(&before, &after);
        assert_eq!(
            d,
            [
                "`a`: column `extra` (String) was left behind",
                "`a`: column `id` is UInt32, was UInt64",
                "`b` is missing (it existed before)",
                "`c`: definition differs\n  before: CREATE c ORDER BY id\n  after:  CREATE c ORDER BY (id, x)",
                "`d` was left behind (it did not exist before)",
            ]
        );
    }
}
