//! A small ClickHouse SQL lexer: just enough to know where strings, quoted
//! identifiers, comments and heredocs begin and end. The splitter, the
//! `ON CLUSTER` rewriter and the statement classifier all read its tokens, so
//! they agree on what is code and what is quoted.
//!
//! The lexer works on bytes and only ever cuts at ASCII delimiters, so every
//! token boundary is also a UTF-8 character boundary; it never panics.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bare word: keyword or identifier (`CREATE`, `events`, `db$1`).
    Word,
    /// `"name"` or `` `name` ``.
    QuotedIdent,
    /// `'text'`.
    String,
    /// A numeric literal (loosely: a digit followed by word characters or dots).
    Number,
    /// `${name}`: a chmigrate variable placeholder.
    Placeholder,
    /// `$$ … $$` or `$tag$ … $tag$`.
    Heredoc,
    /// `-- …` or `# …` up to the end of the line.
    LineComment,
    /// `/* … */`.
    BlockComment,
    /// Spaces, tabs, newlines.
    Whitespace,
    /// Any other single character (`;`, `(`, `.`, `,`, …).
    Punct,
}

impl TokenKind {
    /// Whitespace and comments carry no meaning for the parser.
    pub fn is_trivia(self) -> bool {
        matches!(
            self,
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment
        )
    }
}

/// A token: its kind and byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }

    /// Case-insensitive keyword match for bare words.
    pub fn is_word(&self, src: &str, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text(src).eq_ignore_ascii_case(keyword)
    }

    pub fn is_punct(&self, src: &str, c: char) -> bool {
        self.kind == TokenKind::Punct && self.text(src).starts_with(c)
    }
}

/// Something opened and never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unterminated {
    String,
    QuotedIdentifier,
    BlockComment,
    Heredoc,
}

impl std::fmt::Display for Unterminated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unterminated::String => "string literal",
            Unterminated::QuotedIdentifier => "quoted identifier",
            Unterminated::BlockComment => "block comment",
            Unterminated::Heredoc => "heredoc ($$ block)",
        })
    }
}

/// A lexing failure, located by byte offset into the text that was lexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {what} starting at byte {offset}")]
pub struct LexError {
    pub what: Unterminated,
    pub offset: usize,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Splits `src` into tokens covering every byte exactly once.
pub fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::with_capacity(src.len() / 4 + 1);
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let kind = match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                while i < bytes.len()
                    && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
                {
                    i += 1;
                }
                TokenKind::Whitespace
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = line_end(bytes, i);
                TokenKind::LineComment
            }
            b'#' => {
                // ClickHouse accepts `#` comments (and `#!`) as MySQL does.
                i = line_end(bytes, i);
                TokenKind::LineComment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                match find(bytes, i + 2, b"*/") {
                    Some(p) => i = p + 2,
                    None => {
                        return Err(LexError {
                            what: Unterminated::BlockComment,
                            offset: start,
                        });
                    }
                }
                TokenKind::BlockComment
            }
            b'\'' => {
                i = quoted_end(bytes, i, b'\'').ok_or(LexError {
                    what: Unterminated::String,
                    offset: start,
                })?;
                TokenKind::String
            }
            b'"' | b'`' => {
                i = quoted_end(bytes, i, b).ok_or(LexError {
                    what: Unterminated::QuotedIdentifier,
                    offset: start,
                })?;
                TokenKind::QuotedIdent
            }
            b'$' => {
                if let Some(end) = placeholder_end(bytes, i) {
                    i = end;
                    TokenKind::Placeholder
                } else if let Some(tag_end) = heredoc_tag_end(bytes, i) {
                    let tag = &bytes[i..tag_end];
                    match find(bytes, tag_end, tag) {
                        Some(p) => i = p + tag.len(),
                        None => {
                            return Err(LexError {
                                what: Unterminated::Heredoc,
                                offset: start,
                            });
                        }
                    }
                    TokenKind::Heredoc
                } else {
                    i += 1;
                    TokenKind::Punct
                }
            }
            b'0'..=b'9' => {
                while i < bytes.len() && (is_word_byte(bytes[i]) || bytes[i] == b'.') {
                    i += 1;
                }
                TokenKind::Number
            }
            _ if is_word_start(b) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                TokenKind::Word
            }
            _ => {
                i += 1;
                TokenKind::Punct
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Ok(tokens)
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || from > bytes.len() {
        return None;
    }
    bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// End (exclusive) of a quoted run opened at `open` with `quote`; a backslash
/// escapes the next byte and a doubled quote stands for one quote.
fn quoted_end(bytes: &[u8], open: usize, quote: u8) -> Option<usize> {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            c if c == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// `${name}` where name is `[A-Za-z_][A-Za-z0-9_]*`.
fn placeholder_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at + 1) != Some(&b'{') {
        return None;
    }
    let name_start = at + 2;
    let first = *bytes.get(name_start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let mut i = name_start + 1;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    (bytes.get(i) == Some(&b'}')).then_some(i + 1)
}

/// `$$` or `$tag$`: returns the end of the opening tag.
fn heredoc_tag_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    (bytes.get(i) == Some(&b'$')).then_some(i + 1)
}

/// Names of the `${…}` placeholders in `text` with their byte offsets,
/// wherever they stand (code, strings or comments), as variable substitution
/// replaces them everywhere.
pub fn placeholders(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$'
            && let Some(end) = placeholder_end(bytes, i)
        {
            out.push((i, &text[i + 2..end - 1]));
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokenKind, &str)> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .filter(|t| t.kind != TokenKind::Whitespace)
            .map(|t| (t.kind, t.text(src)))
            .collect()
    }

    #[test]
    fn tokens_cover_the_input() {
        let src = "SELECT 'a;b', \"c\", `d``e`, $$x;y$$, ${db} -- c;\n/* ; */ 1.5e3;";
        let toks = tokenize(src).unwrap();
        let rebuilt: std::string::String = toks.iter().map(|t| t.text(src)).collect();
        assert_eq!(rebuilt, src);
        use TokenKind::*;
        assert_eq!(
            kinds(src),
            vec![
                (Word, "SELECT"),
                (String, "'a;b'"),
                (Punct, ","),
                (QuotedIdent, "\"c\""),
                (Punct, ","),
                (QuotedIdent, "`d``e`"),
                (Punct, ","),
                (Heredoc, "$$x;y$$"),
                (Punct, ","),
                (Placeholder, "${db}"),
                (LineComment, "-- c;"),
                (BlockComment, "/* ; */"),
                (Number, "1.5e3"),
                (Punct, ";"),
            ]
        );
    }

    #[test]
    fn escapes_inside_strings() {
        use TokenKind::*;
        assert_eq!(kinds(r"'it\'s'"), vec![(String, r"'it\'s'")]);
        assert_eq!(kinds("'it''s'"), vec![(String, "'it''s'")]);
        assert_eq!(kinds(r#""a\"b""#), vec![(QuotedIdent, r#""a\"b""#)]);
    }

    #[test]
    fn tagged_heredoc_and_clickhouse_macros() {
        use TokenKind::*;
        assert_eq!(
            kinds("$fn$ a $$ b $fn$"),
            vec![(Heredoc, "$fn$ a $$ b $fn$")]
        );
        // ClickHouse's own {macro} syntax is ordinary punctuation and words.
        assert_eq!(
            kinds("{shard}"),
            vec![(Punct, "{"), (Word, "shard"), (Punct, "}")]
        );
    }

    #[test]
    fn unterminated_runs_are_errors_with_offsets() {
        let e = tokenize("SELECT 'abc").unwrap_err();
        assert_eq!(e.what, Unterminated::String);
        assert_eq!(e.offset, 7);
        assert_eq!(
            tokenize("x /* y").unwrap_err().what,
            Unterminated::BlockComment
        );
        assert_eq!(
            tokenize("`x").unwrap_err().what,
            Unterminated::QuotedIdentifier
        );
        assert_eq!(tokenize("$$ x").unwrap_err().what, Unterminated::Heredoc);
        // A trailing backslash escapes past the end: still unterminated.
        assert_eq!(tokenize("'\\").unwrap_err().what, Unterminated::String);
    }

    #[test]
    fn multibyte_text_is_never_cut() {
        let src = "SELECT 'é;ü' AS naïve, ünïcode -- ☃\n";
        let toks = tokenize(src).unwrap();
        for t in &toks {
            assert!(src.is_char_boundary(t.start) && src.is_char_boundary(t.end));
        }
    }

    #[test]
    fn finds_placeholders_everywhere() {
        let found =
            placeholders("CREATE TABLE ${database}.t COMMENT '${env}' -- ${x}\n{shard} $1 ${ bad}");
        let names: Vec<&str> = found.iter().map(|(_, n)| *n).collect();
        assert_eq!(names, ["database", "env", "x"]);
        assert_eq!(found[0].0, 13);
    }
}
