//! Splitting a script into statements.
//!
//! A statement ends at a `;` that stands outside string literals, quoted or
//! backtick identifiers, `--`/`#` and `/* */` comments and `$$` heredocs. Each
//! statement's text is the exact byte range from its first token to its last
//! token (comments and whitespace around it are not part of it; comments
//! inside it are). Runs that hold only comments or whitespace produce no
//! statement.

use super::lexer::{LexError, TokenKind, tokenize};

/// One statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitStatement {
    /// The statement, byte-exact, without the terminating `;`.
    pub text: String,
    /// Byte offset of the statement's first byte in the script.
    pub offset: usize,
    /// 1-based line of the statement's first byte in the script.
    pub line: usize,
}

/// Splits `script` into statements; fails only on an unterminated string,
/// identifier, comment or heredoc.
pub fn split_statements(script: &str) -> Result<Vec<SplitStatement>, LexError> {
    let tokens = tokenize(script)?;
    let mut out = Vec::new();
    let mut first: Option<usize> = None;
    let mut last_end = 0;
    let mut line = 1;
    let mut line_at_first = 1;
    let flush =
        |out: &mut Vec<SplitStatement>, first: Option<usize>, end: usize, at_line: usize| {
            if let Some(start) = first {
                out.push(SplitStatement {
                    text: script[start..end].to_string(),
                    offset: start,
                    line: at_line,
                });
            }
        };
    for tok in &tokens {
        if tok.kind == TokenKind::Punct && tok.text(script) == ";" {
            flush(&mut out, first.take(), last_end, line_at_first);
        } else if !tok.kind.is_trivia() {
            if first.is_none() {
                first = Some(tok.start);
                line_at_first = line;
            }
            last_end = tok.end;
        }
        line += tok.text(script).bytes().filter(|&b| b == b'\n').count();
    }
    flush(&mut out, first, last_end, line_at_first);
    Ok(out)
}

/// 1-based line number of byte `offset` in `text`.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(script: &str) -> Vec<String> {
        split_statements(script)
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect()
    }

    #[test]
    fn splits_on_top_level_semicolons_only() {
        let script = "CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory;\n\
                      -- a comment; with a semicolon\n\
                      INSERT INTO a VALUES ('1;2'), (\"q;\")  ;\n\
                      /* block ; comment */ SELECT `we;ird` FROM a;\n\
                      CREATE FUNCTION f AS $$ x; y $$;";
        assert_eq!(
            texts(script),
            vec![
                "CREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory",
                "INSERT INTO a VALUES ('1;2'), (\"q;\")",
                "SELECT `we;ird` FROM a",
                "CREATE FUNCTION f AS $$ x; y $$",
            ]
        );
    }

    #[test]
    fn keeps_statement_text_byte_exact_with_inner_comments() {
        let script = "ALTER TABLE t\n    ADD COLUMN x UInt8, -- why\n    ADD COLUMN y UInt8\n;";
        assert_eq!(
            texts(script),
            vec!["ALTER TABLE t\n    ADD COLUMN x UInt8, -- why\n    ADD COLUMN y UInt8"]
        );
    }

    #[test]
    fn no_empty_statements() {
        assert!(texts("").is_empty());
        assert!(texts(";;  ;\n-- only a comment\n/* and another */;").is_empty());
        assert_eq!(texts("SELECT 1;;;SELECT 2"), vec!["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn last_statement_needs_no_semicolon_and_trailing_comments_are_dropped() {
        assert_eq!(texts("SELECT 1\n-- trailing"), vec!["SELECT 1"]);
    }

    #[test]
    fn records_lines_and_offsets() {
        let script = "-- header\n\nSELECT 1;\n\nSELECT\n 2;";
        let stmts = split_statements(script).unwrap();
        assert_eq!(stmts[0].line, 3);
        assert_eq!(stmts[1].line, 5);
        assert_eq!(&script[stmts[1].offset..stmts[1].offset + 6], "SELECT");
        assert_eq!(line_of_offset(script, stmts[1].offset), 5);
    }

    #[test]
    fn unterminated_input_is_an_error() {
        assert!(split_statements("SELECT 'oops; SELECT 2;").is_err());
        assert!(split_statements("SELECT 1; /* never closed").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: crate::fuzz_cases(2000), .. ProptestConfig::default() })]

        // Arbitrary text never panics the splitter.
        #[test]
        fn never_panics_on_any_text(s in "\\PC*") {
            let _ = split_statements(&s);
        }

        // Text built from SQL-ish pieces (quotes, comments, heredocs,
        // semicolons, multibyte characters) never panics either, and every
        // statement is a non-empty, byte-exact slice of the input at its
        // recorded offset and line.
        #[test]
        fn statements_are_exact_slices(parts in proptest::collection::vec(
            prop_oneof![
                Just(";"), Just("'"), Just("\""), Just("`"), Just("--"), Just("/*"), Just("*/"),
                Just("$$"), Just("$t$"), Just("\n"), Just(" "), Just("\\"), Just("SELECT"),
                Just("é"), Just("${db}"), Just("#"), Just("x"), Just("1"),
            ], 0..40)) {
            let script: String = parts.concat();
            if let Ok(stmts) = split_statements(&script) {
                for st in stmts {
                    prop_assert!(!st.text.trim().is_empty());
                    prop_assert_eq!(&script[st.offset..st.offset + st.text.len()], st.text.as_str());
                    prop_assert_eq!(line_of_offset(&script, st.offset), st.line);
                }
            }
        }

        // Splitting statements joined with ";" gives them back.
        #[test]
        fn split_inverts_join(stmts in proptest::collection::vec(
            "[a-zA-Z_][a-zA-Z0-9_ ]{0,10}('[a-z;]{0,5}')?[a-z ]{0,4}[a-z]", 1..8)) {
            let script = stmts.join(";\n");
            let back: Vec<String> = split_statements(&script).unwrap().into_iter().map(|s| s.text).collect();
            let want: Vec<String> = stmts.iter().map(|s| s.trim().to_string()).collect();
            prop_assert_eq!(back, want);
        }
    }
}
