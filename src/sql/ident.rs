//! Identifiers in SQL that chmigrate builds itself (database, ledger table,
//! cluster names). Every such name is validated and then quoted, so nothing a
//! user writes in a name can change the statement around it.

use std::fmt;

/// A name rejected for use in SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {name:?} is longer than {max} bytes", max = MAX_IDENT_LEN)]
    TooLong { what: &'static str, name: String },
    #[error(
        "{what} {name:?} has a character that is not allowed ({ch:?}); use letters, digits, '_', '-' or '.'"
    )]
    BadChar {
        what: &'static str,
        name: String,
        ch: char,
    },
}

/// Longest identifier accepted (ClickHouse itself accepts longer, but a file
/// system path is built from table names on the server).
pub const MAX_IDENT_LEN: usize = 200;

/// A validated identifier. Its `Display` form is always backtick-quoted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    /// Accepts names made of ASCII letters, digits, `_`, `-` and `.` (dots
    /// only inside cluster names and the like; a `db.table` pair is two
    /// identifiers). `what` names the field in the error ("database name").
    pub fn new(what: &'static str, name: &str) -> Result<Self, IdentError> {
        if name.is_empty() {
            return Err(IdentError::Empty { what });
        }
        if name.len() > MAX_IDENT_LEN {
            return Err(IdentError::TooLong {
                what,
                name: name.to_string(),
            });
        }
        if let Some(ch) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(IdentError::BadChar {
                what,
                name: name.to_string(),
                ch,
            });
        }
        Ok(Ident(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name bare when it is a plain identifier, else quoted.
    pub fn minimal(&self) -> String {
        quote_if_needed(&self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote(&self.0))
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ident({})", self.0)
    }
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`, which ClickHouse reads bare.
pub fn is_bare(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Backtick-quotes any string, escaping backslashes and backticks.
pub fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('`');
    for c in name.chars() {
        if c == '`' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// The name bare when ClickHouse reads it bare, else backtick-quoted.
pub fn quote_if_needed(name: &str) -> String {
    if is_bare(name) {
        name.to_string()
    } else {
        quote(name)
    }
}

/// A single-quoted SQL string literal with `\` and `'` escaped.
pub fn string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Splits `db.table` (each part bare, backtick- or double-quoted) into its
/// unquoted parts; a name without a dot has no database.
pub fn split_qualified(name: &str) -> (Option<String>, String) {
    use crate::sql::lexer::{TokenKind, tokenize};
    let unquote = |t: &str| -> String {
        let b = t.as_bytes();
        if b.len() >= 2 && (b[0] == b'`' || b[0] == b'"') {
            let q = b[0] as char;
            let inner = &t[1..t.len() - 1];
            let mut out = String::new();
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else if c == q && chars.peek() == Some(&q) {
                    out.push(q);
                    chars.next();
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            t.to_string()
        }
    };
    let Ok(tokens) = tokenize(name) else {
        return (None, name.to_string());
    };
    let parts: Vec<&str> = tokens
        .iter()
        .filter(|t| !(t.kind.is_trivia() || (t.kind == TokenKind::Punct && t.text(name) == ".")))
        .map(|t| t.text(name))
        .collect();
    match parts.as_slice() {
        [db, table] => (Some(unquote(db)), unquote(table)),
        [table] => (None, unquote(table)),
        _ => (None, name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::{TokenKind, tokenize};

    #[test]
    fn splits_qualified_names() {
        assert_eq!(split_qualified("db.t"), (Some("db".into()), "t".into()));
        assert_eq!(
            split_qualified("`my db`.\"t\"\"x\""),
            (Some("my db".into()), "t\"x".into())
        );
        assert_eq!(split_qualified("events"), (None, "events".into()));
    }

    #[test]
    fn validates_names() {
        assert!(Ident::new("database name", "analytics").is_ok());
        assert!(Ident::new("cluster name", "prod-cluster.eu").is_ok());
        assert_eq!(
            Ident::new("database name", ""),
            Err(IdentError::Empty {
                what: "database name"
            })
        );
        let err = Ident::new("ledger table", "x`; DROP TABLE y; --").unwrap_err();
        assert!(err.to_string().contains("ledger table"), "{err}");
        assert!(matches!(err, IdentError::BadChar { ch: '`', .. }));
        assert!(Ident::new("t", &"a".repeat(201)).is_err());
        assert!(Ident::new("t", "naïve").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: crate::fuzz_cases(256), .. proptest::prelude::ProptestConfig::default() })]

        /// Whatever a user writes in a name, quoted it is one identifier
        /// token and a literal one string token: nothing can change the
        /// SQL around it. And validation accepts only the safe alphabet.
        #[test]
        fn any_name_quotes_to_one_token(name in "\\PC{0,40}") {
            let q = quote(&name);
            let toks = tokenize(&q).unwrap();
            proptest::prop_assert_eq!(toks.len(), 1, "{}", q);
            proptest::prop_assert_eq!(toks[0].kind, TokenKind::QuotedIdent);
            let lit = string_literal(&name);
            let toks = tokenize(&lit).unwrap();
            proptest::prop_assert_eq!(toks.len(), 1, "{}", lit);
            proptest::prop_assert_eq!(toks[0].kind, TokenKind::String);
            if let Ok(id) = Ident::new("database name", &name) {
                proptest::prop_assert!(id.as_str().chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)));
            }
        }
    }

    #[test]
    fn quoting_is_a_single_token() {
        for hostile in ["a`b", "a\\`; DROP", "x\\", "'", "`", "\\\\`"] {
            let q = quote(hostile);
            let toks = tokenize(&q).unwrap();
            assert_eq!(toks.len(), 1, "{q}");
            assert_eq!(toks[0].kind, TokenKind::QuotedIdent);
            let lit = string_literal(hostile);
            let toks = tokenize(&lit).unwrap();
            assert_eq!(toks.len(), 1, "{lit}");
            assert_eq!(toks[0].kind, TokenKind::String);
        }
    }

    #[test]
    fn minimal_quoting() {
        assert_eq!(quote_if_needed("events"), "events");
        assert_eq!(quote_if_needed("my-cluster"), "`my-cluster`");
        assert_eq!(quote_if_needed("1abc"), "`1abc`");
        assert_eq!(Ident::new("c", "a.b").unwrap().to_string(), "`a.b`");
    }
}
