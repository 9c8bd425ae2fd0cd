//! What a statement is and where `ON CLUSTER` belongs in it.
//!
//! [`analyze`] reads the head of a statement (the verb, the object kind, the
//! object's name) from the lexer's tokens. [`add_on_cluster`] uses it to put
//! `ON CLUSTER <name>` where ClickHouse's grammar wants it; statements it does
//! not recognize are reported, never mangled. [`StatementInfo::rerun_safe`]
//! tells the runtime whether a statement that may or may not have run can be
//! sent again.

use serde::Serialize;

use super::ident::quote_if_needed;
use super::lexer::{LexError, Token, TokenKind, tokenize};

/// The object a DDL statement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Table,
    View,
    MaterializedView,
    LiveView,
    WindowView,
    Dictionary,
    Database,
    Function,
}

/// The statement verbs chmigrate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Create,
    Attach,
    Detach,
    Drop,
    Alter,
    Rename,
    Exchange,
    Truncate,
    Optimize,
}

/// What a statement does, as far as running it across a cluster goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StatementKind {
    /// A schema change.
    Ddl { verb: Verb, object: ObjectKind },
    /// `ALTER TABLE … UPDATE/DELETE` or `DELETE FROM`: rewrites data.
    Mutation,
    /// `INSERT …`: a data migration, run once.
    Insert,
    /// `SELECT`, `WITH`, `SHOW`, `DESCRIBE`, `EXISTS`, `EXPLAIN`.
    Query,
    /// `SET`, `USE`: session settings.
    Session,
    /// Anything else (`SYSTEM`, `GRANT`, `CREATE USER`, …).
    Other,
}

/// The result of [`analyze`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementInfo {
    pub kind: StatementKind,
    /// The statement already says `ON CLUSTER`.
    pub has_on_cluster: bool,
    /// The object's name as written (`db.events`), when there is one.
    pub object_name: Option<String>,
    /// Running the statement a second time leaves the same schema and data
    /// as running it once (`IF [NOT] EXISTS`, `CREATE OR REPLACE`, `OPTIMIZE`…).
    pub rerun_safe: bool,
    /// Where `ON CLUSTER` goes, or why it cannot be added.
    placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Placement {
    /// Insert at this byte offset.
    At(usize),
    /// Not a statement that runs per host (INSERT, SELECT, SET).
    NotDistributed,
    /// A statement chmigrate cannot place `ON CLUSTER` in, and why.
    Unknown(String),
}

/// How `ON CLUSTER` is added.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnClusterMode {
    /// Add it to DDL that lacks it; report statements it cannot place.
    #[default]
    Auto,
    /// Add it to DDL that lacks it; a statement it cannot place is an error.
    Always,
    /// Send statements as written.
    Never,
}

impl std::fmt::Display for OnClusterMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnClusterMode::Auto => "auto",
            OnClusterMode::Always => "always",
            OnClusterMode::Never => "never",
        })
    }
}

impl std::str::FromStr for OnClusterMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(OnClusterMode::Auto),
            "always" => Ok(OnClusterMode::Always),
            "never" => Ok(OnClusterMode::Never),
            other => Err(format!(
                "unknown ON CLUSTER mode {other:?} (expected auto, always or never)"
            )),
        }
    }
}

/// What [`add_on_cluster`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The statement with `ON CLUSTER` added.
    Rewritten(String),
    /// Left as written: it already says ON CLUSTER.
    AlreadyOnCluster,
    /// Left as written: not a per-host statement (INSERT, SELECT, SET), or
    /// the mode is `never`.
    NotApplicable,
    /// Left as written because chmigrate does not know where `ON CLUSTER`
    /// goes; the caller reports it (and refuses it in `always` mode).
    Unrecognized { reason: String },
}

impl Rewrite {
    /// The SQL to send: the rewritten text, or the original.
    pub fn into_sql(self, original: &str) -> String {
        match self {
            Rewrite::Rewritten(s) => s,
            _ => original.to_string(),
        }
    }
}

/// Adds `ON CLUSTER cluster` to `statement` where the grammar wants it.
pub fn add_on_cluster(
    statement: &str,
    cluster: &str,
    mode: OnClusterMode,
) -> Result<Rewrite, LexError> {
    if mode == OnClusterMode::Never {
        return Ok(Rewrite::NotApplicable);
    }
    let info = analyze(statement)?;
    if info.has_on_cluster {
        return Ok(Rewrite::AlreadyOnCluster);
    }
    Ok(match info.placement {
        Placement::At(pos) => {
            let mut out = String::with_capacity(statement.len() + cluster.len() + 14);
            out.push_str(&statement[..pos]);
            out.push_str(" ON CLUSTER ");
            out.push_str(&quote_if_needed(cluster));
            out.push_str(&statement[pos..]);
            Rewrite::Rewritten(out)
        }
        Placement::NotDistributed => Rewrite::NotApplicable,
        Placement::Unknown(reason) => Rewrite::Unrecognized { reason },
    })
}

/// Cursor over the significant tokens of one statement (also used by
/// [`super::inverse`]).
pub(super) struct Head<'a> {
    pub(super) src: &'a str,
    pub(super) toks: Vec<Token>,
    pub(super) i: usize,
}

impl<'a> Head<'a> {
    /// The statement's tokens without whitespace and comments, at token 0.
    pub(super) fn new(src: &'a str) -> Result<Self, LexError> {
        let toks = tokenize(src)?
            .into_iter()
            .filter(|t| !t.kind.is_trivia())
            .collect();
        Ok(Head { src, toks, i: 0 })
    }
    fn peek_word(&self, kw: &str) -> bool {
        self.toks
            .get(self.i)
            .is_some_and(|t| t.is_word(self.src, kw))
    }
    fn peek_words(&self, kws: &[&str]) -> bool {
        kws.iter().enumerate().all(|(k, kw)| {
            self.toks
                .get(self.i + k)
                .is_some_and(|t| t.is_word(self.src, kw))
        })
    }
    /// Consumes the keywords when all of them follow.
    pub(super) fn eat_words(&mut self, kws: &[&str]) -> bool {
        if self.peek_words(kws) {
            self.i += kws.len();
            true
        } else {
            false
        }
    }
    pub(super) fn eat_punct(&mut self, c: char) -> bool {
        if self
            .toks
            .get(self.i)
            .is_some_and(|t| t.is_punct(self.src, c))
        {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn word_upper(&self, at: usize) -> Option<String> {
        self.toks
            .get(at)
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| t.text(self.src).to_ascii_uppercase())
    }
    fn is_name_part(&self, at: usize) -> bool {
        self.toks.get(at).is_some_and(|t| {
            matches!(
                t.kind,
                TokenKind::Word | TokenKind::QuotedIdent | TokenKind::Placeholder
            )
        })
    }
    /// Parses `name` or `db.name`; returns (start, end) byte range.
    pub(super) fn eat_name(&mut self) -> Option<(usize, usize)> {
        if !self.is_name_part(self.i) {
            return None;
        }
        let start = self.toks[self.i].start;
        let mut end = self.toks[self.i].end;
        self.i += 1;
        if self
            .toks
            .get(self.i)
            .is_some_and(|t| t.is_punct(self.src, '.'))
            && self.is_name_part(self.i + 1)
        {
            end = self.toks[self.i + 1].end;
            self.i += 2;
        }
        Some((start, end))
    }
    /// Parses `name [, name …]`; returns the range of the whole list.
    fn eat_name_list(&mut self) -> Option<(usize, usize)> {
        let (start, mut end) = self.eat_name()?;
        loop {
            let save = self.i;
            if self.eat_punct(',')
                && let Some((_, e)) = self.eat_name()
            {
                end = e;
                continue;
            }
            self.i = save;
            return Some((start, end));
        }
    }
    fn end_of_statement(&self) -> usize {
        self.toks.last().map_or(0, |t| t.end)
    }
}

/// Reads the head of a statement.
pub fn analyze(statement: &str) -> Result<StatementInfo, LexError> {
    let mut h = Head::new(statement)?;
    let has_on_cluster = h
        .toks
        .windows(2)
        .any(|w| w[0].is_word(statement, "ON") && w[1].is_word(statement, "CLUSTER"));
    let verb = h.word_upper(0).unwrap_or_default();
    h.i = 1;
    let mut info = StatementInfo {
        kind: StatementKind::Other,
        has_on_cluster,
        object_name: None,
        rerun_safe: false,
        placement: Placement::Unknown(format!(
            "statements starting with {:?} are not rewritten",
            first_word(statement, &h)
        )),
    };
    match verb.as_str() {
        "CREATE" | "ATTACH" => {
            let or_replace = h.eat_words(&["OR", "REPLACE"]);
            if h.eat_words(&["TEMPORARY"]) {
                info.placement =
                    Placement::Unknown("temporary tables belong to one session".into());
                return Ok(info);
            }
            let Some(object) = object_kind(&mut h) else {
                info.placement =
                    Placement::Unknown(format!("{verb} of this kind of object is not rewritten"));
                return Ok(info);
            };
            let if_not_exists = h.eat_words(&["IF", "NOT", "EXISTS"]);
            let verb_kind = if verb == "CREATE" {
                Verb::Create
            } else {
                Verb::Attach
            };
            info.kind = StatementKind::Ddl {
                verb: verb_kind,
                object,
            };
            info.rerun_safe = if_not_exists || or_replace;
            place_after_name(&mut h, &mut info, statement, true);
        }
        "DETACH" | "DROP" => {
            let temporary = h.eat_words(&["TEMPORARY"]);
            let Some(object) = object_kind(&mut h) else {
                info.placement =
                    Placement::Unknown(format!("{verb} of this kind of object is not rewritten"));
                return Ok(info);
            };
            let if_exists = h.eat_words(&["IF", "EXISTS"]);
            info.kind = StatementKind::Ddl {
                verb: if verb == "DROP" {
                    Verb::Drop
                } else {
                    Verb::Detach
                },
                object,
            };
            info.rerun_safe = if_exists;
            if temporary {
                info.placement =
                    Placement::Unknown("temporary tables belong to one session".into());
                return Ok(info);
            }
            match h.eat_name_list() {
                Some((s, e)) => {
                    info.object_name = Some(statement[s..e].to_string());
                    info.placement = Placement::At(e);
                }
                None => info.placement = Placement::Unknown("no object name found".into()),
            }
        }
        "ALTER" => {
            if h.eat_words(&["TEMPORARY"]) {
                info.placement =
                    Placement::Unknown("temporary tables belong to one session".into());
                return Ok(info);
            }
            let object = if h.eat_words(&["TABLE"]) {
                ObjectKind::Table
            } else if h.eat_words(&["DATABASE"]) {
                ObjectKind::Database
            } else {
                info.placement =
                    Placement::Unknown("only ALTER TABLE and ALTER DATABASE are rewritten".into());
                return Ok(info);
            };
            let Some((s, e)) = h.eat_name() else {
                info.placement = Placement::Unknown("no object name found".into());
                return Ok(info);
            };
            info.object_name = Some(statement[s..e].to_string());
            info.placement = Placement::At(e);
            if h.eat_words(&["ON", "CLUSTER"]) {
                // Skip the cluster name to reach the first clause.
                h.i += 1;
            }
            let clauses = alter_clauses(&h);
            let is_mutation = clauses
                .first()
                .is_some_and(|c| c.first().is_some_and(|w| w == "UPDATE" || w == "DELETE"));
            if is_mutation {
                info.kind = StatementKind::Mutation;
                info.rerun_safe = false;
            } else {
                info.kind = StatementKind::Ddl {
                    verb: Verb::Alter,
                    object,
                };
                info.rerun_safe =
                    !clauses.is_empty() && clauses.iter().all(|c| alter_clause_rerun_safe(c));
            }
        }
        "RENAME" | "EXCHANGE" => {
            let object = match h.word_upper(1).as_deref() {
                Some("TABLE" | "TABLES") => ObjectKind::Table,
                Some("DATABASE") => ObjectKind::Database,
                Some("DICTIONARY" | "DICTIONARIES") => ObjectKind::Dictionary,
                _ => {
                    info.placement = Placement::Unknown(format!(
                        "{verb} of this kind of object is not rewritten"
                    ));
                    return Ok(info);
                }
            };
            h.i = 2;
            if let Some((s, e)) = h.eat_name() {
                info.object_name = Some(statement[s..e].to_string());
            }
            info.kind = StatementKind::Ddl {
                verb: if verb == "RENAME" {
                    Verb::Rename
                } else {
                    Verb::Exchange
                },
                object,
            };
            // ON CLUSTER closes these statements.
            info.placement = Placement::At(h.end_of_statement());
        }
        "TRUNCATE" => {
            if h.eat_words(&["TEMPORARY"]) {
                info.placement =
                    Placement::Unknown("temporary tables belong to one session".into());
                return Ok(info);
            }
            h.eat_words(&["TABLE"]);
            h.eat_words(&["IF", "EXISTS"]);
            info.kind = StatementKind::Ddl {
                verb: Verb::Truncate,
                object: ObjectKind::Table,
            };
            info.rerun_safe = true;
            place_after_name(&mut h, &mut info, statement, false);
        }
        "OPTIMIZE" => {
            if !h.eat_words(&["TABLE"]) {
                info.placement = Placement::Unknown("expected OPTIMIZE TABLE".into());
                return Ok(info);
            }
            info.kind = StatementKind::Ddl {
                verb: Verb::Optimize,
                object: ObjectKind::Table,
            };
            info.rerun_safe = true;
            place_after_name(&mut h, &mut info, statement, false);
        }
        "DELETE" => {
            info.kind = StatementKind::Mutation;
            if h.eat_words(&["FROM"]) {
                place_after_name(&mut h, &mut info, statement, false);
            } else {
                info.placement = Placement::Unknown("expected DELETE FROM".into());
            }
        }
        "INSERT" => {
            info.kind = StatementKind::Insert;
            info.placement = Placement::NotDistributed;
            h.eat_words(&["INTO"]);
            h.eat_words(&["TABLE"]);
            if let Some((s, e)) = h.eat_name() {
                info.object_name = Some(statement[s..e].to_string());
            }
        }
        "SELECT" | "WITH" | "SHOW" | "DESCRIBE" | "DESC" | "EXISTS" | "EXPLAIN" => {
            info.kind = StatementKind::Query;
            info.placement = Placement::NotDistributed;
            info.rerun_safe = true;
        }
        "SET" | "USE" => {
            info.kind = StatementKind::Session;
            info.placement = Placement::NotDistributed;
            info.rerun_safe = true;
        }
        _ => {}
    }
    Ok(info)
}

fn first_word(statement: &str, h: &Head<'_>) -> String {
    h.toks
        .first()
        .map(|t| t.text(statement).chars().take(40).collect())
        .unwrap_or_default()
}

/// Reads the object keyword(s) after CREATE/ATTACH/DROP/DETACH.
fn object_kind(h: &mut Head<'_>) -> Option<ObjectKind> {
    let kinds: &[(&[&str], ObjectKind)] = &[
        (&["TABLE"], ObjectKind::Table),
        (&["MATERIALIZED", "VIEW"], ObjectKind::MaterializedView),
        (&["LIVE", "VIEW"], ObjectKind::LiveView),
        (&["WINDOW", "VIEW"], ObjectKind::WindowView),
        (&["VIEW"], ObjectKind::View),
        (&["DICTIONARY"], ObjectKind::Dictionary),
        (&["DATABASE"], ObjectKind::Database),
        (&["FUNCTION"], ObjectKind::Function),
    ];
    for (words, kind) in kinds {
        if h.eat_words(words) {
            return Some(*kind);
        }
    }
    None
}

/// Places ON CLUSTER after the object's name (and its `UUID '…'` clause).
fn place_after_name(h: &mut Head<'_>, info: &mut StatementInfo, statement: &str, uuid: bool) {
    match h.eat_name() {
        Some((s, mut e)) => {
            info.object_name = Some(statement[s..e].to_string());
            if uuid
                && h.peek_word("UUID")
                && h.toks
                    .get(h.i + 1)
                    .is_some_and(|t| t.kind == TokenKind::String)
            {
                e = h.toks[h.i + 1].end;
            }
            info.placement = Placement::At(e);
        }
        None => info.placement = Placement::Unknown("no object name found".into()),
    }
}

/// The clauses of an ALTER statement after the name, each as upper-cased
/// leading words (up to six), split on top-level commas.
/// The comma-separated clauses of `toks[from..]`, split at commas outside
/// parentheses and brackets (an empty last clause is dropped).
pub(super) fn top_level_clauses(src: &str, toks: &[Token], from: usize) -> Vec<Vec<Token>> {
    let mut out = vec![Vec::new()];
    let mut depth = 0i32;
    for t in toks.iter().skip(from) {
        if t.kind == TokenKind::Punct {
            match t.text(src) {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                "," if depth == 0 => {
                    out.push(Vec::new());
                    continue;
                }
                _ => {}
            }
        }
        if let Some(last) = out.last_mut() {
            last.push(*t);
        }
    }
    if out.last().is_some_and(Vec::is_empty) {
        out.pop();
    }
    out
}

/// The leading words of each ALTER clause, upper-cased (a name or other
/// non-word stops them as an empty string); words inside parentheses are
/// skipped.
fn alter_clauses(h: &Head<'_>) -> Vec<Vec<String>> {
    top_level_clauses(h.src, &h.toks, h.i)
        .into_iter()
        .map(|clause| {
            let mut current: Vec<String> = Vec::new();
            let mut depth = 0i32;
            for (k, t) in clause.iter().enumerate() {
                let text = t.text(h.src);
                match (t.kind, text) {
                    (TokenKind::Punct, "(" | "[") => depth += 1,
                    (TokenKind::Punct, ")" | "]") => depth -= 1,
                    _ => {}
                }
                if depth == 0 && current.len() < 6 {
                    if t.kind == TokenKind::Word {
                        current.push(text.to_ascii_uppercase());
                    } else if k > 0 {
                        // Stop collecting words at the first non-word (a name).
                        current.push(String::new());
                    }
                }
            }
            current
        })
        .collect()
}

/// An ALTER clause is safe to repeat when it checks for existence or sets a
/// property to a fixed value.
fn alter_clause_rerun_safe(words: &[String]) -> bool {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let has = |needle: &[&str]| w.windows(needle.len()).any(|x| x == needle);
    match w.as_slice() {
        ["ADD", ..] => has(&["IF", "NOT", "EXISTS"]),
        ["DROP" | "CLEAR" | "COMMENT" | "RENAME" | "MATERIALIZE", ..] => has(&["IF", "EXISTS"]),
        ["MODIFY", "COLUMN", ..] => true,
        [
            "MODIFY",
            "TTL" | "SETTING" | "ORDER" | "COMMENT" | "SAMPLE",
            ..,
        ] => true,
        ["RESET", "SETTING", ..] => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(sql: &str) -> String {
        match add_on_cluster(sql, "chm_cluster", OnClusterMode::Auto).unwrap() {
            Rewrite::Rewritten(s) => s,
            other => panic!("{sql}: expected a rewrite, got {other:?}"),
        }
    }

    #[test]
    fn rewrites_ddl_in_the_grammatical_place() {
        let cases: &[(&str, &str)] = &[
            (
                "CREATE TABLE events (id UInt64) ENGINE = MergeTree ORDER BY id",
                "CREATE TABLE events ON CLUSTER chm_cluster (id UInt64) ENGINE = MergeTree ORDER BY id",
            ),
            (
                "create table if not exists analytics.events (id UInt64) ENGINE = Memory",
                "create table if not exists analytics.events ON CLUSTER chm_cluster (id UInt64) ENGINE = Memory",
            ),
            (
                "CREATE TABLE `my db`.\"ev ents\" AS other ENGINE = Memory",
                "CREATE TABLE `my db`.\"ev ents\" ON CLUSTER chm_cluster AS other ENGINE = Memory",
            ),
            (
                "CREATE TABLE t UUID '1234' (x UInt8) ENGINE = Memory",
                "CREATE TABLE t UUID '1234' ON CLUSTER chm_cluster (x UInt8) ENGINE = Memory",
            ),
            (
                "CREATE OR REPLACE VIEW v AS SELECT 1",
                "CREATE OR REPLACE VIEW v ON CLUSTER chm_cluster AS SELECT 1",
            ),
            (
                "CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv TO db.agg AS SELECT * FROM db.e",
                "CREATE MATERIALIZED VIEW IF NOT EXISTS db.mv ON CLUSTER chm_cluster TO db.agg AS SELECT * FROM db.e",
            ),
            (
                "CREATE DICTIONARY d (k UInt64, v String) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
                "CREATE DICTIONARY d ON CLUSTER chm_cluster (k UInt64, v String) PRIMARY KEY k SOURCE(NULL()) LAYOUT(FLAT()) LIFETIME(0)",
            ),
            (
                "CREATE DATABASE IF NOT EXISTS analytics",
                "CREATE DATABASE IF NOT EXISTS analytics ON CLUSTER chm_cluster",
            ),
            (
                "CREATE DATABASE analytics ENGINE = Ordinary",
                "CREATE DATABASE analytics ON CLUSTER chm_cluster ENGINE = Ordinary",
            ),
            (
                "CREATE FUNCTION linear AS (x, k, b) -> k*x + b",
                "CREATE FUNCTION linear ON CLUSTER chm_cluster AS (x, k, b) -> k*x + b",
            ),
            (
                "DROP TABLE events",
                "DROP TABLE events ON CLUSTER chm_cluster",
            ),
            (
                "DROP TABLE IF EXISTS db.a, db.b SYNC",
                "DROP TABLE IF EXISTS db.a, db.b ON CLUSTER chm_cluster SYNC",
            ),
            (
                "DROP DATABASE IF EXISTS analytics",
                "DROP DATABASE IF EXISTS analytics ON CLUSTER chm_cluster",
            ),
            ("DROP VIEW db.v", "DROP VIEW db.v ON CLUSTER chm_cluster"),
            (
                "DROP DICTIONARY IF EXISTS d",
                "DROP DICTIONARY IF EXISTS d ON CLUSTER chm_cluster",
            ),
            (
                "DETACH TABLE db.t PERMANENTLY",
                "DETACH TABLE db.t ON CLUSTER chm_cluster PERMANENTLY",
            ),
            (
                "ATTACH TABLE db.t",
                "ATTACH TABLE db.t ON CLUSTER chm_cluster",
            ),
            (
                "ALTER TABLE db.events ADD COLUMN x UInt8 DEFAULT 0",
                "ALTER TABLE db.events ON CLUSTER chm_cluster ADD COLUMN x UInt8 DEFAULT 0",
            ),
            (
                "ALTER TABLE events\n  ADD INDEX idx_user user_id TYPE minmax GRANULARITY 4",
                "ALTER TABLE events ON CLUSTER chm_cluster\n  ADD INDEX idx_user user_id TYPE minmax GRANULARITY 4",
            ),
            (
                "ALTER TABLE events UPDATE x = 1 WHERE id = 2",
                "ALTER TABLE events ON CLUSTER chm_cluster UPDATE x = 1 WHERE id = 2",
            ),
            (
                "ALTER DATABASE db MODIFY COMMENT 'x'",
                "ALTER DATABASE db ON CLUSTER chm_cluster MODIFY COMMENT 'x'",
            ),
            (
                "RENAME TABLE db.a TO db.b, db.c TO db.d",
                "RENAME TABLE db.a TO db.b, db.c TO db.d ON CLUSTER chm_cluster",
            ),
            (
                "EXCHANGE TABLES a AND b",
                "EXCHANGE TABLES a AND b ON CLUSTER chm_cluster",
            ),
            (
                "TRUNCATE TABLE IF EXISTS db.t",
                "TRUNCATE TABLE IF EXISTS db.t ON CLUSTER chm_cluster",
            ),
            ("TRUNCATE db.t", "TRUNCATE db.t ON CLUSTER chm_cluster"),
            (
                "OPTIMIZE TABLE db.t PARTITION 202401 FINAL",
                "OPTIMIZE TABLE db.t ON CLUSTER chm_cluster PARTITION 202401 FINAL",
            ),
            (
                "DELETE FROM db.t WHERE x = 1",
                "DELETE FROM db.t ON CLUSTER chm_cluster WHERE x = 1",
            ),
            (
                "/* lead */ CREATE TABLE t -- c\n (x UInt8) ENGINE = Memory",
                "/* lead */ CREATE TABLE t ON CLUSTER chm_cluster -- c\n (x UInt8) ENGINE = Memory",
            ),
            (
                "CREATE TABLE t (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/t', '{replica}') ORDER BY x",
                "CREATE TABLE t ON CLUSTER chm_cluster (x UInt8) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/t', '{replica}') ORDER BY x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&rw(input), want, "input: {input}");
        }
    }

    #[test]
    fn quotes_cluster_names_that_need_it() {
        let out = add_on_cluster("DROP TABLE t", "prod-eu", OnClusterMode::Auto).unwrap();
        assert_eq!(
            out,
            Rewrite::Rewritten("DROP TABLE t ON CLUSTER `prod-eu`".into())
        );
    }

    #[test]
    fn leaves_dml_and_existing_on_cluster_alone() {
        for sql in [
            "INSERT INTO t SELECT * FROM s",
            "SELECT 1",
            "WITH 1 AS x SELECT x",
            "SET max_threads = 1",
            "SHOW TABLES",
        ] {
            assert_eq!(
                add_on_cluster(sql, "c", OnClusterMode::Auto).unwrap(),
                Rewrite::NotApplicable,
                "{sql}"
            );
        }
        for sql in [
            "CREATE TABLE t ON CLUSTER c (x UInt8) ENGINE = Memory",
            "RENAME TABLE a TO b ON CLUSTER '{cluster}'",
            "alter table t on cluster c drop column x",
        ] {
            assert_eq!(
                add_on_cluster(sql, "other", OnClusterMode::Auto).unwrap(),
                Rewrite::AlreadyOnCluster,
                "{sql}"
            );
        }
        // "on cluster" inside a string or comment does not count.
        assert!(matches!(
            add_on_cluster("DROP TABLE t -- on cluster x", "c", OnClusterMode::Auto).unwrap(),
            Rewrite::Rewritten(_)
        ));
    }

    #[test]
    fn never_mode_changes_nothing() {
        assert_eq!(
            add_on_cluster("DROP TABLE t", "c", OnClusterMode::Never).unwrap(),
            Rewrite::NotApplicable
        );
    }

    #[test]
    fn reports_what_it_does_not_recognize() {
        for sql in [
            "SYSTEM RELOAD DICTIONARIES",
            "GRANT SELECT ON db.* TO u",
            "CREATE USER u IDENTIFIED BY 'x'",
            "CREATE TEMPORARY TABLE t (x UInt8)",
            "ALTER USER u",
            "CREATE TABLE",
            "",
        ] {
            let out = add_on_cluster(sql, "c", OnClusterMode::Auto).unwrap();
            assert!(
                matches!(out, Rewrite::Unrecognized { .. }),
                "{sql}: {out:?}"
            );
            // The text passes through untouched.
            assert_eq!(out.into_sql(sql), sql);
        }
    }

    #[test]
    fn classifies_statements() {
        let k = |s: &str| analyze(s).unwrap().kind;
        assert_eq!(
            k("CREATE TABLE t (x UInt8) ENGINE = Memory"),
            StatementKind::Ddl {
                verb: Verb::Create,
                object: ObjectKind::Table
            }
        );
        assert_eq!(
            k("CREATE MATERIALIZED VIEW mv AS SELECT 1"),
            StatementKind::Ddl {
                verb: Verb::Create,
                object: ObjectKind::MaterializedView
            }
        );
        assert_eq!(k("ALTER TABLE t DELETE WHERE 1"), StatementKind::Mutation);
        assert_eq!(
            k("ALTER TABLE t ON CLUSTER c UPDATE x = 1 WHERE 1"),
            StatementKind::Mutation
        );
        assert_eq!(k("INSERT INTO t VALUES (1)"), StatementKind::Insert);
        assert_eq!(k("SELECT 1"), StatementKind::Query);
        assert_eq!(k("SYSTEM FLUSH LOGS"), StatementKind::Other);
        assert_eq!(
            analyze("INSERT INTO db.t SELECT 1")
                .unwrap()
                .object_name
                .as_deref(),
            Some("db.t")
        );
    }

    #[test]
    fn knows_which_statements_are_safe_to_repeat() {
        let safe = |s: &str| analyze(s).unwrap().rerun_safe;
        assert!(safe(
            "CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory"
        ));
        assert!(safe("CREATE OR REPLACE VIEW v AS SELECT 1"));
        assert!(safe("DROP TABLE IF EXISTS t"));
        assert!(safe(
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS x UInt8, DROP COLUMN IF EXISTS y"
        ));
        assert!(safe("ALTER TABLE t MODIFY COLUMN x UInt16"));
        assert!(safe("ALTER TABLE t MODIFY TTL d + INTERVAL 1 DAY"));
        assert!(safe("TRUNCATE TABLE t"));
        assert!(safe("OPTIMIZE TABLE t FINAL"));
        assert!(!safe("CREATE TABLE t (x UInt8) ENGINE = Memory"));
        assert!(!safe("DROP TABLE t"));
        assert!(!safe("ALTER TABLE t ADD COLUMN x UInt8"));
        assert!(!safe(
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS x UInt8, DROP COLUMN y"
        ));
        assert!(!safe("ALTER TABLE t UPDATE x = x + 1 WHERE 1"));
        assert!(!safe("INSERT INTO t SELECT 1"));
        assert!(!safe("RENAME TABLE a TO b"));
        assert!(!safe("EXCHANGE TABLES a AND b"));
        assert!(!safe("SYSTEM FLUSH LOGS"));
    }

    #[test]
    fn mode_parses() {
        assert_eq!(
            "AUTO".parse::<OnClusterMode>().unwrap(),
            OnClusterMode::Auto
        );
        assert!("sometimes".parse::<OnClusterMode>().is_err());
    }
}
