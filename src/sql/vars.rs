//! `${name}` placeholders: the built-ins `${database}`, `${cluster}` and
//! `${environment}` plus user variables from configuration. ClickHouse's own
//! `{macro}` syntax has no `$` and passes through untouched.
//!
//! Substitution reads where each placeholder stands:
//! - in code, an identifier variable (`${database}`, `${cluster}`, and user
//!   variables declared as identifiers) becomes a quoted identifier when its
//!   value needs quoting (`acc-dash-1` → `` `acc-dash-1` ``), unless letters,
//!   digits or `_` touch it (a name built from pieces is left as written);
//!   any other variable is inserted as written (`INTERVAL ${ttl_days} DAY`);
//! - inside a string literal (`'/clickhouse/tables/{shard}/${database}/t'`)
//!   the value is escaped for the string;
//! - inside a quoted identifier it is escaped for that quote;
//! - in comments and heredocs it is inserted as written.

use std::collections::{BTreeMap, BTreeSet};

use crate::sql::ident::{is_bare, quote};
use crate::sql::lexer::{TokenKind, placeholders, tokenize};

/// Names chmigrate defines itself.
pub const BUILT_INS: [&str; 3] = ["database", "cluster", "environment"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    #[error(
        "variable name {0:?} is not valid (use letters, digits and '_', not starting with a digit)"
    )]
    BadName(String),
    #[error("variable {0:?} is built in and cannot be set")]
    BuiltIn(String),
    #[error("identifier variable {0:?} has no value among the variables")]
    NotDeclared(String),
}

/// A placeholder with no value, at a byte offset of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub name: String,
    pub offset: usize,
}

impl Unknown {
    /// The message for people, with a hint for `${cluster}`.
    pub fn message(&self) -> String {
        if self.name == "cluster" {
            "placeholder ${cluster} is used but no cluster is configured".to_string()
        } else {
            format!("unknown placeholder ${{{}}}", self.name)
        }
    }
}

/// The values placeholders take on one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    values: BTreeMap<String, String>,
    /// Variables whose values are identifiers (quoted in code when needed).
    identifiers: BTreeSet<String>,
}

/// Where a placeholder stands in a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// In code, standing alone (not glued to letters, digits or `_`).
    Code,
    /// In code, glued to a word: part of a name built from pieces.
    CodeInWord,
    /// Inside `'…'`.
    String,
    /// Inside `` `…` `` or `"…"`: the quote character.
    Quoted(char),
    /// Comments and heredocs.
    Verbatim,
}

/// The context of each placeholder offset in `text` (when it lexes).
fn contexts(text: &str) -> Option<BTreeMap<usize, Context>> {
    let tokens = tokenize(text).ok()?;
    let bytes = text.as_bytes();
    let word = |b: Option<&u8>| b.is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let mut out = BTreeMap::new();
    for (offset, name) in placeholders(text) {
        let Some(t) = tokens.iter().find(|t| t.start <= offset && offset < t.end) else {
            continue;
        };
        let end = offset + name.len() + 3;
        let ctx = match t.kind {
            TokenKind::Placeholder => {
                let before = offset.checked_sub(1).and_then(|i| bytes.get(i));
                if word(before) || word(bytes.get(end)) {
                    Context::CodeInWord
                } else {
                    Context::Code
                }
            }
            // A placeholder glued to a word lexes inside the word token.
            TokenKind::Word | TokenKind::Number => Context::CodeInWord,
            TokenKind::String => Context::String,
            TokenKind::QuotedIdent => {
                Context::Quoted(text[t.start..].chars().next().unwrap_or('`'))
            }
            _ => Context::Verbatim,
        };
        out.insert(offset, ctx);
    }
    Some(out)
}

/// `s` escaped for the inside of a `'…'` literal.
fn escape_in_string(s: &str) -> String {
    let lit = crate::sql::ident::string_literal(s);
    lit[1..lit.len() - 1].to_string()
}

/// `s` escaped for the inside of a quoted identifier using `q`.
fn escape_in_quoted(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The forms a value takes once substituted: as written, escaped inside a
/// string literal, and inside a quoted identifier (what masking a secret
/// value must catch).
pub fn value_forms(value: &str) -> Vec<String> {
    vec![
        value.to_string(),
        escape_in_string(value),
        escape_in_quoted(value, '`'),
        escape_in_quoted(value, '"'),
    ]
}

/// Whether `name` can be a variable: letters, digits and `_`, not starting
/// with a digit.
pub fn is_variable_name(name: &str) -> bool {
    valid_name(name)
}

fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl Variables {
    /// Built-ins from the target, then the user's variables.
    pub fn new(
        database: &str,
        cluster: Option<&str>,
        environment: &str,
        user: &BTreeMap<String, String>,
    ) -> Result<Self, VarError> {
        let mut values = BTreeMap::new();
        values.insert("database".to_string(), database.to_string());
        if let Some(c) = cluster {
            values.insert("cluster".to_string(), c.to_string());
        }
        values.insert("environment".to_string(), environment.to_string());
        let identifiers = ["database", "cluster"].map(String::from).into();
        for (k, v) in user {
            if !valid_name(k) {
                return Err(VarError::BadName(k.clone()));
            }
            if BUILT_INS.contains(&k.as_str()) {
                return Err(VarError::BuiltIn(k.clone()));
            }
            values.insert(k.clone(), v.clone());
        }
        Ok(Variables {
            values,
            identifiers,
        })
    }

    /// Declares user variables whose values are identifiers: in code they
    /// are quoted when needed, like `${database}`.
    pub fn with_identifiers<'a>(
        mut self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> Result<Self, VarError> {
        for n in names {
            if !self.values.contains_key(n) || BUILT_INS.contains(&n.as_str()) {
                return Err(VarError::NotDeclared(n.clone()));
            }
            self.identifiers.insert(n.clone());
        }
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Placeholders in `text` that have no value.
    pub fn unknown_in(&self, text: &str) -> Vec<Unknown> {
        placeholders(text)
            .into_iter()
            .filter(|(_, name)| !self.values.contains_key(*name))
            .map(|(offset, name)| Unknown {
                name: name.to_string(),
                offset,
            })
            .collect()
    }

    /// Replaces every placeholder, each as its place in the statement
    /// needs (see the module's documentation); fails on the first unknown
    /// one.
    pub fn substitute(&self, text: &str) -> Result<String, Unknown> {
        let found = placeholders(text);
        if found.is_empty() {
            return Ok(text.to_string());
        }
        let contexts = contexts(text).unwrap_or_default();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (offset, name) in found {
            let Some(value) = self.values.get(name) else {
                return Err(Unknown {
                    name: name.to_string(),
                    offset,
                });
            };
            out.push_str(&text[last..offset]);
            let ctx = contexts.get(&offset).copied().unwrap_or(Context::Verbatim);
            match ctx {
                Context::Code if self.identifiers.contains(name) && !is_bare(value) => {
                    out.push_str(&quote(value))
                }
                Context::String => out.push_str(&escape_in_string(value)),
                Context::Quoted(q) => out.push_str(&escape_in_quoted(value, q)),
                Context::Code | Context::CodeInWord | Context::Verbatim => out.push_str(value),
            }
            last = offset + name.len() + 3;
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let mut user = BTreeMap::new();
        user.insert("ttl_days".to_string(), "30".to_string());
        Variables::new("analytics", Some("chm_cluster"), "staging", &user).unwrap()
    }

    #[test]
    fn substitutes_built_ins_and_user_variables() {
        let sql = "CREATE TABLE ${database}.t ON CLUSTER ${cluster} (d Date) ENGINE = ReplicatedMergeTree('/t/{shard}/${database}', '{replica}') TTL d + INTERVAL ${ttl_days} DAY -- ${environment}";
        assert_eq!(
            vars().substitute(sql).unwrap(),
            "CREATE TABLE analytics.t ON CLUSTER chm_cluster (d Date) ENGINE = ReplicatedMergeTree('/t/{shard}/analytics', '{replica}') TTL d + INTERVAL 30 DAY -- staging"
        );
    }

    #[test]
    fn each_placeholder_is_substituted_as_its_place_needs() {
        let mut user = BTreeMap::new();
        user.insert("ttl_days".to_string(), "30".to_string());
        user.insert("src_db".to_string(), "raw-events".to_string());
        user.insert("note".to_string(), "it's".to_string());
        let v = Variables::new("acc-dash-1", Some("prod.eu"), "staging", &user)
            .unwrap()
            .with_identifiers([&"src_db".to_string()])
            .unwrap();
        // Identifiers in code are quoted; in strings escaped; numbers raw.
        assert_eq!(
            v.substitute(
                "CREATE TABLE ${database}.t ON CLUSTER ${cluster} (d Date) ENGINE = ReplicatedMergeTree('/ch/{shard}/${database}/t', '{replica}') TTL d + INTERVAL ${ttl_days} DAY"
            )
            .unwrap(),
            "CREATE TABLE `acc-dash-1`.t ON CLUSTER `prod.eu` (d Date) ENGINE = ReplicatedMergeTree('/ch/{shard}/acc-dash-1/t', '{replica}') TTL d + INTERVAL 30 DAY"
        );
        assert_eq!(
            v.substitute("INSERT INTO ${database}.t SELECT * FROM ${src_db}.e WHERE n = '${note}'")
                .unwrap(),
            "INSERT INTO `acc-dash-1`.t SELECT * FROM `raw-events`.e WHERE n = 'it\\'s'"
        );
        // Inside a quoted identifier: escaped for it; glued to a word: as
        // written; in comments: as written.
        assert_eq!(
            v.substitute("SELECT 1 FROM `${database}_x`.t -- in ${database}")
                .unwrap(),
            "SELECT 1 FROM `acc-dash-1_x`.t -- in acc-dash-1"
        );
        assert_eq!(
            v.substitute("SELECT x_${environment}, ${database}_archive")
                .unwrap(),
            "SELECT x_staging, acc-dash-1_archive"
        );
        // Plain names need no quotes: unchanged from raw substitution.
        let plain = Variables::new("analytics", Some("c1"), "dev", &BTreeMap::new()).unwrap();
        assert_eq!(
            plain
                .substitute("DROP TABLE ${database}.t ON CLUSTER ${cluster}")
                .unwrap(),
            "DROP TABLE analytics.t ON CLUSTER c1"
        );
        assert_eq!(
            Variables::new("db", None, "dev", &BTreeMap::new())
                .unwrap()
                .with_identifiers([&"nope".to_string()]),
            Err(VarError::NotDeclared("nope".into()))
        );
    }

    #[test]
    fn clickhouse_macros_and_dollar_signs_pass_through() {
        let sql = "SELECT '{shard}', $$ $x $$, '$', '${'";
        assert_eq!(vars().substitute(sql).unwrap(), sql);
    }

    #[test]
    fn unknown_placeholders_are_reported_with_offsets() {
        let v = Variables::new("db", None, "dev", &BTreeMap::new()).unwrap();
        let unknown = v.unknown_in("SELECT ${nope}, ${cluster}");
        assert_eq!(unknown.len(), 2);
        assert_eq!(
            unknown[0],
            Unknown {
                name: "nope".into(),
                offset: 7
            }
        );
        assert_eq!(unknown[0].message(), "unknown placeholder ${nope}");
        assert!(unknown[1].message().contains("no cluster is configured"));
        assert_eq!(v.substitute("x ${nope}").unwrap_err().offset, 2);
    }

    #[test]
    fn rejects_bad_or_built_in_names() {
        let mut user = BTreeMap::new();
        user.insert("database".to_string(), "x".to_string());
        assert_eq!(
            Variables::new("db", None, "dev", &user),
            Err(VarError::BuiltIn("database".into()))
        );
        let mut user = BTreeMap::new();
        user.insert("1x".to_string(), "x".to_string());
        assert!(matches!(
            Variables::new("db", None, "dev", &user),
            Err(VarError::BadName(_))
        ));
    }
}
