//! Unqualified table names in statements sent `ON CLUSTER` (pure).
//!
//! chmigrate runs a migration with the target database as the current
//! database, but the other hosts of an `ON CLUSTER` statement resolve
//! unqualified names in their server's default database. So every table
//! reference that is not qualified gets the target database, read from the
//! lexer's tokens (never by searching text): the object a statement creates,
//! alters or drops; `AS t` of `CREATE TABLE … AS t`; `TO t` of a
//! materialized view and of `MOVE PARTITION … TO TABLE t`; `FROM`/`JOIN`
//! (and `IN t`) at the top level of the statement and in its subqueries;
//! `RENAME`/`EXCHANGE` lists; the database argument of `Distributed`,
//! `Merge` and `Buffer` engines when it is `currentDatabase()`; the names
//! in `dictGet*`/`joinGet` of dictionaries and tables the migrations
//! create; a `CLICKHOUSE` dictionary source's `DB`.
//!
//! What cannot be resolved with certainty is refused with the fix: an empty
//! database argument of those engines (it means "the current database",
//! which is another one on every other host).

use std::collections::BTreeSet;

use super::ident::{quote_if_needed, string_literal};
use super::lexer::{LexError, Token, TokenKind, tokenize};

/// Why a statement cannot be qualified with certainty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualifyError {
    #[error(transparent)]
    Lex(#[from] LexError),
    #[error(
        "{engine}(…) names the database as '' (the current one), which is the server's default database on the other hosts of ON CLUSTER; write ${{database}} there"
    )]
    EmptyDatabase { engine: String },
}

/// One change: replace `start..end` with `text` (an insertion when equal).
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

struct Cursor<'a> {
    src: &'a str,
    toks: Vec<Token>,
}

impl Cursor<'_> {
    fn word(&self, i: usize, kw: &str) -> bool {
        self.toks.get(i).is_some_and(|t| t.is_word(self.src, kw))
    }
    fn any_word(&self, i: usize, kws: &[&str]) -> bool {
        kws.iter().any(|k| self.word(i, k))
    }
    fn punct(&self, i: usize, c: char) -> bool {
        self.toks.get(i).is_some_and(|t| t.is_punct(self.src, c))
    }
    fn is_name(&self, i: usize) -> bool {
        self.toks
            .get(i)
            .is_some_and(|t| matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent))
    }
    fn text(&self, i: usize) -> &str {
        self.toks.get(i).map_or("", |t| t.text(self.src))
    }
    /// The name at `i` unquoted (`` `t` `` → `t`).
    fn bare(&self, i: usize) -> String {
        let t = self.text(i);
        match self.toks.get(i).map(|t| t.kind) {
            Some(TokenKind::QuotedIdent) if t.len() >= 2 => t[1..t.len() - 1].to_string(),
            _ => t.to_string(),
        }
    }
    /// `IF [NOT] EXISTS` at `i`: the index after it.
    fn skip_if_exists(&self, i: usize) -> usize {
        if self.word(i, "IF") && self.word(i + 1, "NOT") && self.word(i + 2, "EXISTS") {
            i + 3
        } else if self.word(i, "IF") && self.word(i + 1, "EXISTS") {
            i + 2
        } else {
            i
        }
    }
    /// After the name starting at `i` (`name` or `db.name`).
    fn after_name(&self, i: usize) -> usize {
        if self.punct(i + 1, '.') && self.is_name(i + 2) {
            i + 3
        } else {
            i + 1
        }
    }
}

const NOT_TABLES: [&str; 14] = [
    "SELECT", "WITH", "VALUES", "FORMAT", "WHERE", "PREWHERE", "GROUP", "ORDER", "LIMIT",
    "SETTINGS", "FINAL", "SAMPLE", "UNION", "ARRAY",
];

/// `sql` (sent `ON CLUSTER`) with every unqualified table reference
/// qualified with `database`. `created` names the dictionaries and `Join`
/// tables the migrations create, whose names `dictGet*`/`joinGet` give as
/// strings (others are taken for server-wide dictionaries and left alone).
pub fn qualify(
    sql: &str,
    database: &str,
    created: &BTreeSet<String>,
) -> Result<String, QualifyError> {
    let toks: Vec<Token> = tokenize(sql)?
        .into_iter()
        .filter(|t| !t.kind.is_trivia())
        .collect();
    let c = Cursor { src: sql, toks };
    let prefix = format!("{}.", quote_if_needed(database));
    let mut edits: Vec<Edit> = Vec::new();
    // Qualifies the name at `i` unless it is qualified already or is a
    // table function (`allow_call`: a column list may follow, as after a
    // materialized view's `TO t`).
    let qualify_call = |i: usize, allow_call: bool, edits: &mut Vec<Edit>| {
        if !c.is_name(i) || c.punct(i + 1, '.') || (!allow_call && c.punct(i + 1, '(')) {
            return;
        }
        if i > 0 && c.punct(i - 1, '.') {
            return;
        }
        let start = c.toks[i].start;
        if !edits.iter().any(|e| e.start == start && e.end == start) {
            edits.push(Edit {
                start,
                end: start,
                text: prefix.clone(),
            });
        }
    };
    let qualify_at = |i: usize, edits: &mut Vec<Edit>| qualify_call(i, false, edits);

    // The statement's own object(s).
    let n = c.toks.len();
    let mut i = 1;
    match c.text(0).to_ascii_uppercase().as_str() {
        "CREATE" | "ATTACH" => {
            if c.word(i, "OR") && c.word(i + 1, "REPLACE") {
                i += 2;
            }
            while c.any_word(i, &["TEMPORARY", "MATERIALIZED", "LIVE", "WINDOW"]) {
                i += 1;
            }
            if c.any_word(i, &["TABLE", "VIEW", "DICTIONARY"]) {
                let view = c.word(i, "VIEW");
                i = c.skip_if_exists(i + 1);
                qualify_call(i, true, &mut edits);
                i = c.after_name(i);
                if c.word(i, "UUID") {
                    i += 2;
                }
                if c.word(i, "ON") && c.word(i + 1, "CLUSTER") {
                    i += 3;
                }
                // A materialized view's `TO t` (after `REFRESH …` clauses too),
                // before its `AS SELECT`.
                let to = view
                    .then(|| {
                        (i..n)
                            .take_while(|&k| !c.word(k, "AS"))
                            .find(|&k| c.word(k, "TO"))
                    })
                    .flatten();
                if let Some(to) = to {
                    qualify_call(to + 1, true, &mut edits);
                } else if !view
                    && c.word(i, "AS")
                    && c.is_name(i + 1)
                    && !c.any_word(i + 1, &["SELECT", "WITH"])
                {
                    qualify_at(i + 1, &mut edits);
                }
            }
        }
        "ALTER" | "OPTIMIZE" | "DROP" | "DETACH" | "TRUNCATE" => {
            if c.word(i, "TEMPORARY") {
                i += 1;
            }
            let object = c.any_word(i, &["TABLE", "VIEW", "DICTIONARY"]);
            let bare_truncate = c.text(0).eq_ignore_ascii_case("TRUNCATE")
                && c.is_name(i)
                && !c.any_word(i, &["DATABASE", "ALL"]);
            if object || bare_truncate {
                if object {
                    i += 1;
                }
                i = c.skip_if_exists(i);
                loop {
                    qualify_at(i, &mut edits);
                    i = c.after_name(i);
                    if c.punct(i, ',') && c.is_name(i + 1) {
                        i += 1;
                        continue;
                    }
                    break;
                }
            }
        }
        "RENAME" | "EXCHANGE" if c.any_word(i, &["TABLE", "TABLES", "DICTIONARY"]) => {
            i += 1;
            while i < n && c.is_name(i) {
                qualify_at(i, &mut edits);
                i = c.after_name(i);
                if c.any_word(i, &["TO", "AND"]) {
                    qualify_at(i + 1, &mut edits);
                    i = c.after_name(i + 1);
                }
                if c.punct(i, ',') {
                    i += 1;
                } else {
                    break;
                }
            }
        }
        _ => {}
    }

    // Names a `WITH` clause defines are not tables: `WITH name AS (…)` and
    // `WITH expr AS name` (up to the clause's `SELECT`, at its depth).
    let mut ctes: BTreeSet<String> = (0..n)
        .filter(|&k| c.is_name(k) && c.word(k + 1, "AS") && c.punct(k + 2, '('))
        .map(|k| c.bare(k))
        .collect();
    for w in (0..n).filter(|&k| c.word(k, "WITH")) {
        let mut depth = 0i32;
        for k in w + 1..n {
            if c.punct(k, '(') {
                depth += 1;
            } else if c.punct(k, ')') {
                depth -= 1;
                if depth < 0 {
                    break;
                }
            } else if depth == 0 && c.word(k, "SELECT") {
                break;
            } else if depth == 0 && c.word(k, "AS") && c.is_name(k + 1) {
                ctes.insert(c.bare(k + 1));
            }
        }
    }
    // Only statements that define or change tables hold table references
    // to qualify (not SYSTEM, GRANT/REVOKE, …).
    let defines = c.any_word(0, &["CREATE", "ATTACH", "ALTER"]);
    // FROM / JOIN / IN at the top level and in subqueries (not inside a
    // function's parentheses: `EXTRACT(DAY FROM d)`).
    let mut stack: Vec<bool> = Vec::new();
    let mut k = 0;
    while k < n {
        if c.punct(k, '(') {
            stack.push(c.any_word(k + 1, &["SELECT", "WITH"]));
        } else if c.punct(k, ')') {
            stack.pop();
        } else if defines && stack.last().copied().unwrap_or(true) {
            let table_at = if c.word(k, "FROM")
                || (c.word(k, "JOIN") && !c.word(k.wrapping_sub(1), "ARRAY"))
                || (c.word(k, "IN") && !c.word(k + 1, "PARTITION") && !c.punct(k + 1, '('))
            {
                Some(k + 1)
            } else if c.word(k, "TO") && c.word(k + 1, "TABLE") {
                Some(k + 2)
            } else {
                None
            };
            if let Some(mut t) = table_at {
                loop {
                    if !c.is_name(t) || c.any_word(t, &NOT_TABLES) || ctes.contains(&c.bare(t)) {
                        break;
                    }
                    qualify_at(t, &mut edits);
                    // `FROM a [AS] [x], b`: a comma-separated list of tables.
                    let mut after = c.after_name(t);
                    if c.word(after, "AS") {
                        after += 1;
                    }
                    if c.is_name(after) && !c.punct(after, ',') && !c.any_word(after, &NOT_TABLES) {
                        after += 1;
                    }
                    if c.punct(after, ',') && c.word(k, "FROM") {
                        t = after + 1;
                        continue;
                    }
                    break;
                }
            }
        }
        k += 1;
    }

    // Engines whose database argument is evaluated on each host.
    for k in 0..n {
        let position = if c.word(k, "Distributed") {
            Some(1)
        } else if c.word(k, "Merge") || c.word(k, "Buffer") {
            Some(0)
        } else {
            None
        };
        let Some(position) = position else { continue };
        if !c.punct(k + 1, '(') || !c.punct(k.wrapping_sub(1), '=') {
            continue;
        }
        // The argument's first token.
        let mut a = k + 2;
        let mut depth = 0;
        let mut arg = 0;
        while a < n && arg < position {
            if c.punct(a, '(') {
                depth += 1;
            } else if c.punct(a, ')') {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if c.punct(a, ',') && depth == 0 {
                arg += 1;
            }
            a += 1;
        }
        if arg != position {
            continue;
        }
        let engine = c.text(k).to_string();
        if c.word(a, "currentDatabase") && c.punct(a + 1, '(') && c.punct(a + 2, ')') {
            edits.push(Edit {
                start: c.toks[a].start,
                end: c.toks[a + 2].end,
                text: string_literal(database),
            });
        } else if c.toks.get(a).is_some_and(|t| t.kind == TokenKind::String) && c.text(a) == "''" {
            return Err(QualifyError::EmptyDatabase { engine });
        }
    }

    // dictGet*('dict', …) / joinGet('t', …) of objects the migrations create.
    for k in 0..n {
        let f = c.text(k).to_ascii_lowercase();
        let named = f.starts_with("dictget")
            || f.starts_with("dicthas")
            || f == "dictisin"
            || f == "joinget";
        if !named || !c.punct(k + 1, '(') {
            continue;
        }
        let Some(t) = c.toks.get(k + 2).filter(|t| t.kind == TokenKind::String) else {
            continue;
        };
        let name = &sql[t.start + 1..t.end - 1];
        if !name.contains('.') && created.contains(name) {
            edits.push(Edit {
                start: t.start,
                end: t.end,
                text: string_literal(&format!("{database}.{name}")),
            });
        }
    }

    // SOURCE(CLICKHOUSE(… TABLE 't' …)) without DB: the source's default
    // database is `default`.
    for k in 0..n {
        if !(c.word(k, "SOURCE")
            && c.punct(k + 1, '(')
            && c.word(k + 2, "CLICKHOUSE")
            && c.punct(k + 3, '('))
        {
            continue;
        }
        let mut a = k + 4;
        let mut table_end = None;
        let mut has_db = false;
        while a < n && !c.punct(a, ')') {
            if c.word(a, "DB") {
                has_db = true;
            }
            if c.word(a, "TABLE")
                && c.toks
                    .get(a + 1)
                    .is_some_and(|t| t.kind == TokenKind::String)
            {
                table_end = Some(c.toks[a + 1].end);
            }
            a += 1;
        }
        if let (Some(end), false) = (table_end, has_db) {
            edits.push(Edit {
                start: end,
                end,
                text: format!(" DB {}", string_literal(database)),
            });
        }
    }

    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(sql.len() + edits.len() * prefix.len());
    let mut last = 0;
    for e in edits {
        if e.start < last {
            continue;
        }
        out.push_str(&sql[last..e.start]);
        out.push_str(&e.text);
        last = e.end;
    }
    out.push_str(&sql[last..]);
    Ok(out)
}

/// Names of dictionaries and `Join` tables a statement creates, for
/// [`qualify`]'s `created`.
pub fn created_lookup_names(sql: &str) -> Vec<String> {
    let Ok(toks) = tokenize(sql) else {
        return Vec::new();
    };
    let toks: Vec<Token> = toks.into_iter().filter(|t| !t.kind.is_trivia()).collect();
    let c = Cursor { src: sql, toks };
    if !c.word(0, "CREATE") {
        return Vec::new();
    }
    let mut i = 1;
    if c.word(i, "OR") && c.word(i + 1, "REPLACE") {
        i += 2;
    }
    let dictionary = c.word(i, "DICTIONARY");
    if !(dictionary || c.word(i, "TABLE")) {
        return Vec::new();
    }
    i = c.skip_if_exists(i + 1);
    if !c.is_name(i) {
        return Vec::new();
    }
    let name_at = if c.punct(i + 1, '.') { i + 2 } else { i };
    let join_engine = (0..c.toks.len())
        .any(|k| c.word(k, "ENGINE") && c.punct(k + 1, '=') && c.word(k + 2, "Join"));
    if dictionary || join_engine {
        vec![c.bare(name_at)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sql: &str) -> String {
        let created: BTreeSet<String> = ["regions".to_string(), "users_join".to_string()].into();
        qualify(sql, "analytics", &created).unwrap()
    }

    #[test]
    fn the_objects_a_statement_names_are_qualified() {
        assert_eq!(
            q(
                "CREATE TABLE IF NOT EXISTS events ON CLUSTER c AS events_local ENGINE = Distributed(c, currentDatabase(), events_local, rand())"
            ),
            "CREATE TABLE IF NOT EXISTS analytics.events ON CLUSTER c AS analytics.events_local ENGINE = Distributed(c, 'analytics', events_local, rand())"
        );
        assert_eq!(
            q(
                "CREATE MATERIALIZED VIEW IF NOT EXISTS mv ON CLUSTER c TO daily (d Date, n UInt64) AS SELECT d, count() AS n FROM events GROUP BY d"
            ),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.mv ON CLUSTER c TO analytics.daily (d Date, n UInt64) AS SELECT d, count() AS n FROM analytics.events GROUP BY d"
        );
        assert_eq!(
            q("ALTER TABLE events ON CLUSTER c ADD COLUMN x UInt8"),
            "ALTER TABLE analytics.events ON CLUSTER c ADD COLUMN x UInt8"
        );
        assert_eq!(
            q("DROP TABLE IF EXISTS other.t ON CLUSTER c"),
            "DROP TABLE IF EXISTS other.t ON CLUSTER c",
            "qualified names stay as written"
        );
        assert_eq!(
            q("RENAME TABLE a TO b, `c d` TO x.e ON CLUSTER c"),
            "RENAME TABLE analytics.a TO analytics.b, analytics.`c d` TO x.e ON CLUSTER c"
        );
        assert_eq!(
            q("EXCHANGE TABLES a AND b ON CLUSTER c"),
            "EXCHANGE TABLES analytics.a AND analytics.b ON CLUSTER c"
        );
        assert_eq!(
            q("ALTER TABLE t ON CLUSTER c MOVE PARTITION 1 TO TABLE t2"),
            "ALTER TABLE analytics.t ON CLUSTER c MOVE PARTITION 1 TO TABLE analytics.t2"
        );
        assert_eq!(
            q("ALTER TABLE t ON CLUSTER c REPLACE PARTITION 1 FROM t2"),
            "ALTER TABLE analytics.t ON CLUSTER c REPLACE PARTITION 1 FROM analytics.t2"
        );
    }

    #[test]
    fn statements_that_are_not_about_tables_are_left_alone() {
        for sql in [
            "REVOKE ON CLUSTER c SELECT ON db.* FROM alice",
            "SYSTEM DROP REPLICA 'r' FROM TABLE db.t",
            "TRUNCATE DATABASE db ON CLUSTER c",
            "GRANT ON CLUSTER c SELECT ON db.t TO bob",
        ] {
            assert_eq!(q(sql), sql);
        }
        // WITH expr AS name defines a name, not a table.
        assert_eq!(
            q("CREATE VIEW v ON CLUSTER c AS WITH [1, 2] AS ids SELECT * FROM t WHERE id IN ids"),
            "CREATE VIEW analytics.v ON CLUSTER c AS WITH [1, 2] AS ids SELECT * FROM analytics.t WHERE id IN ids"
        );
        // A refreshable materialized view's TO.
        assert_eq!(
            q(
                "CREATE MATERIALIZED VIEW mv ON CLUSTER c REFRESH EVERY 1 HOUR TO daily AS SELECT 1 FROM src"
            ),
            "CREATE MATERIALIZED VIEW analytics.mv ON CLUSTER c REFRESH EVERY 1 HOUR TO analytics.daily AS SELECT 1 FROM analytics.src"
        );
    }

    #[test]
    fn a_column_list_after_the_name_is_not_a_call() {
        assert_eq!(
            q("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory"),
            "CREATE TABLE IF NOT EXISTS analytics.t (x UInt8) ENGINE = Memory"
        );
    }

    #[test]
    fn queries_inside_views_are_qualified_but_not_functions_or_ctes() {
        assert_eq!(
            q(
                "CREATE VIEW v ON CLUSTER c AS WITH top AS (SELECT id FROM users) SELECT EXTRACT(DAY FROM d) AS day, u.name FROM events AS e JOIN users u USING id ARRAY JOIN tags WHERE id IN top AND id IN banned AND d IN (SELECT d FROM days) AND x IN PARTITION"
            ),
            "CREATE VIEW analytics.v ON CLUSTER c AS WITH top AS (SELECT id FROM analytics.users) SELECT EXTRACT(DAY FROM d) AS day, u.name FROM analytics.events AS e JOIN analytics.users u USING id ARRAY JOIN tags WHERE id IN top AND id IN analytics.banned AND d IN (SELECT d FROM analytics.days) AND x IN PARTITION"
        );
        assert_eq!(
            q("CREATE VIEW v ON CLUSTER c AS SELECT * FROM numbers(10), system.one, (SELECT 1)"),
            "CREATE VIEW analytics.v ON CLUSTER c AS SELECT * FROM numbers(10), system.one, (SELECT 1)"
        );
        assert_eq!(
            q("CREATE VIEW v ON CLUSTER c AS SELECT * FROM a x, b"),
            "CREATE VIEW analytics.v ON CLUSTER c AS SELECT * FROM analytics.a x, analytics.b"
        );
        assert_eq!(
            q("CREATE TABLE t ON CLUSTER c ENGINE = MergeTree ORDER BY x AS SELECT x FROM src"),
            "CREATE TABLE analytics.t ON CLUSTER c ENGINE = MergeTree ORDER BY x AS SELECT x FROM analytics.src"
        );
    }

    #[test]
    fn names_in_strings_and_engine_arguments() {
        assert_eq!(
            q(
                "CREATE VIEW v ON CLUSTER c AS SELECT dictGet('regions', 'name', id), dictGetString('geo', 'n', id), joinGet('users_join', 'n', id) FROM t"
            ),
            "CREATE VIEW analytics.v ON CLUSTER c AS SELECT dictGet('analytics.regions', 'name', id), dictGetString('geo', 'n', id), joinGet('analytics.users_join', 'n', id) FROM analytics.t"
        );
        assert_eq!(
            q("CREATE TABLE m ON CLUSTER c (x UInt8) ENGINE = Merge(currentDatabase(), '^t_')"),
            "CREATE TABLE analytics.m ON CLUSTER c (x UInt8) ENGINE = Merge('analytics', '^t_')"
        );
        assert_eq!(
            q(
                "CREATE DICTIONARY d ON CLUSTER c (id UInt64, n String) PRIMARY KEY id SOURCE(CLICKHOUSE(HOST 'localhost' PORT 9000 TABLE 'src')) LAYOUT(FLAT()) LIFETIME(300)"
            ),
            "CREATE DICTIONARY analytics.d ON CLUSTER c (id UInt64, n String) PRIMARY KEY id SOURCE(CLICKHOUSE(HOST 'localhost' PORT 9000 TABLE 'src' DB 'analytics')) LAYOUT(FLAT()) LIFETIME(300)"
        );
        let err = qualify(
            "CREATE TABLE d ON CLUSTER c AS local ENGINE = Distributed(c, '', local)",
            "analytics",
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("write ${database}"), "{err}");
        // A database name that needs quoting is quoted.
        assert_eq!(
            qualify(
                "ALTER TABLE t ON CLUSTER c DELETE WHERE 1",
                "acc-dash-1",
                &BTreeSet::new()
            )
            .unwrap(),
            "ALTER TABLE `acc-dash-1`.t ON CLUSTER c DELETE WHERE 1"
        );
    }

    #[test]
    fn created_lookup_names_are_dictionaries_and_join_tables() {
        assert_eq!(
            created_lookup_names(
                "CREATE DICTIONARY IF NOT EXISTS db.regions (id UInt64) PRIMARY KEY id SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)"
            ),
            ["regions"]
        );
        assert_eq!(
            created_lookup_names(
                "CREATE TABLE users_join (id UInt64, n String) ENGINE = Join(ANY, LEFT, id)"
            ),
            ["users_join"]
        );
        assert!(created_lookup_names("CREATE TABLE t (x UInt8) ENGINE = Memory").is_empty());
    }
}
