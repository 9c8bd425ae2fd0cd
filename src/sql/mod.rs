//! Pure SQL text handling: lexing, statement splitting, identifier quoting and
//! the `ON CLUSTER` rewriting. Nothing here does I/O.

pub mod destructive;
pub mod effect;
pub mod ident;
pub mod inverse;
pub mod lexer;
pub mod qualify;
pub mod split;
pub mod statement;
pub mod syntax;
pub mod vars;

pub use ident::{Ident, IdentError, quote, quote_if_needed, string_literal};
pub use split::{SplitStatement, split_statements};
pub use statement::{
    OnClusterMode, Rewrite, StatementInfo, StatementKind, add_on_cluster, analyze,
};

/// One SQL statement of a migration, as written (before variables are
/// substituted), with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub sql: String,
    pub line: usize,
}
