//! Pure SQL text handling: lexing, statement splitting, identifier quoting and
//! the `ON CLUSTER` rewriting. Nothing here does I/O.

pub mod destructive;
pub mod ident;
pub mod inverse;
pub mod lexer;
pub mod split;
pub mod statement;

pub use ident::{Ident, IdentError, quote, quote_if_needed, string_literal};
pub use split::{SplitStatement, split_statements};
pub use statement::{
    OnClusterMode, Rewrite, StatementInfo, StatementKind, add_on_cluster, analyze,
};
