//! Pillar's migrations (`priv/pillar_migrations/<timestamp>_<name>.exs`),
//! read without Elixir.
//!
//! A purpose-built reader for the forms Pillar's guide documents, and only
//! those: a `defmodule … do … end` holding `def up do … end` and optionally
//! `def down do … end`, each returning
//!
//! - a string (`"…"`) or a heredoc (`"""` … `"""`, indentation removed as
//!   Elixir removes it: by the closing `"""`'s indentation);
//! - a list of them (`[ "…", """ … """ ]`);
//! - `Enum.map(a..b, fn x -> "… #{x} …" end)`: one statement per integer of
//!   the range, `#{x}` replaced by it.
//!
//! `#` comments are skipped. Anything else (other calls, interpolation of
//! anything but the `fn`'s variable, sigils, charlists, module attributes)
//! is refused at its line with what to write instead: nothing is guessed.
//! The version is the file name's leading number (Pillar's timestamp).

use std::sync::Arc;

use super::file::{Draft, FilePart};
use super::header::Header;
use super::{SourceError, SourceErrorKind};
use crate::model::migration::{Location, SourceFormat, Statement};
use crate::model::version::Version;

/// What to write instead of a form the reader does not accept.
const FORMS: &str = "`def up`/`def down` must return a string, a heredoc (\"\"\"), a list of \
them, or Enum.map(a..b, fn x -> \"…#{x}…\" end) over an integer range; write the SQL out as \
such a string";

/// `20250528120000_create_users_table.exs` → its version and name;
/// `Ok(None)` for a name not ending in `.exs`.
pub fn classify_exs_name(file_name: &str) -> Result<Option<(Version, String)>, String> {
    let Some(stem) = file_name.strip_suffix(".exs") else {
        return Ok(None);
    };
    let digits = stem.bytes().take_while(u8::is_ascii_digit).count();
    let (v, rest) = stem.split_at(digits);
    let name = rest.strip_prefix('_');
    if v.is_empty() || name.is_none() {
        return Err(format!(
            "{file_name:?}: expected <timestamp>_<name>.exs, as `mix pillar.gen.migration` writes"
        ));
    }
    let version = Version::parse(v).map_err(|e| format!("{file_name:?}: {e}"))?;
    Ok(Some((version, name.unwrap_or_default().to_string())))
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// `#{expr}`: the expression's text.
    Interp(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A word: `defmodule`, `Pillar.Migrations.X`, `Enum.map`, `up`, `fn`.
    Word(String),
    Int(i64),
    /// A string's pieces and the line its content starts on.
    Str(Vec<Piece>, usize),
    Punct(&'static str),
    /// Any other character: refused by the reader where it stands.
    Other(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
}

type Fail = (usize, String);

fn lex(src: &str) -> Result<Vec<Token>, Fail> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if src[i..].starts_with("\"\"\"") => {
                let start_line = line;
                let (pieces, next, content_line, end_line) = heredoc(src, i, line)?;
                out.push(Token {
                    tok: Tok::Str(pieces, content_line),
                    line: start_line,
                });
                i = next;
                line = end_line;
            }
            b'"' => {
                let start_line = line;
                let (pieces, next, end_line) = quoted(src, i + 1, line)?;
                out.push(Token {
                    tok: Tok::Str(pieces, start_line),
                    line: start_line,
                });
                i = next;
                line = end_line;
            }
            b'\'' => {
                return Err((
                    line,
                    "a charlist ('…') is not a string Pillar sends; use double quotes \"…\"".into(),
                ));
            }
            b'~' => {
                return Err((
                    line,
                    format!("sigils (~s, ~S, …) cannot be read without Elixir; {FORMS}"),
                ));
            }
            b'@' => {
                return Err((
                    line,
                    "module attributes (@…) cannot be read without Elixir; remove them or turn them into # comments".into(),
                ));
            }
            b'0'..=b'9' | b'-' if c != b'-' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                    i += 1;
                }
                let text = src[start..i].replace('_', "");
                let n = text
                    .parse::<i64>()
                    .map_err(|_| (line, format!("{text}: not an integer chmigrate can read")))?;
                out.push(Token {
                    tok: Tok::Int(n),
                    line,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'?'
                        || b[i] == b'!'
                        || (b[i] == b'.' && b.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic())))
                {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Word(src[start..i].to_string()),
                    line,
                });
            }
            _ => {
                let rest = &src[i..];
                let punct = ["..", "->", "[", "]", "(", ")", ",", ":"]
                    .into_iter()
                    .find(|p| rest.starts_with(p));
                match punct {
                    Some(p) => {
                        out.push(Token {
                            tok: Tok::Punct(p),
                            line,
                        });
                        i += p.len();
                    }
                    None => {
                        let ch = rest.chars().next().unwrap_or('?');
                        out.push(Token {
                            tok: Tok::Other(ch),
                            line,
                        });
                        i += ch.len_utf8().max(1);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One escape after a backslash: the text it stands for.
fn escape(c: char, line: usize) -> Result<&'static str, Fail> {
    Ok(match c {
        '\\' => "\\",
        '"' => "\"",
        '\'' => "'",
        'n' => "\n",
        't' => "\t",
        'r' => "\r",
        's' => " ",
        '#' => "#",
        '0' => "\0",
        '\n' => "",
        other => {
            return Err((
                line,
                format!(
                    "the escape \\{other} cannot be read without Elixir; write the character itself"
                ),
            ));
        }
    })
}

/// Reads string content from byte `i` until `close` returns the length of
/// a closing delimiter at a position; returns the pieces, the position after
/// the delimiter and the line there.
fn pieces_until(
    src: &str,
    mut i: usize,
    mut line: usize,
    close: impl Fn(&str) -> Option<usize>,
    what: &str,
) -> Result<(Vec<Piece>, usize, usize), Fail> {
    let start_line = line;
    let mut pieces = Vec::new();
    let mut text = String::new();
    loop {
        let rest = &src[i..];
        if let Some(n) = close(rest) {
            if !text.is_empty() {
                pieces.push(Piece::Text(text));
            }
            return Ok((pieces, i + n, line));
        }
        let Some(c) = rest.chars().next() else {
            return Err((start_line, format!("unterminated {what}")));
        };
        if c == '\\' {
            let next = rest[1..]
                .chars()
                .next()
                .ok_or((line, format!("unterminated {what}")))?;
            text.push_str(escape(next, line)?);
            if next == '\n' {
                line += 1;
            }
            i += 1 + next.len_utf8();
        } else if rest.starts_with("#{") {
            let close_at = rest
                .find('}')
                .ok_or((line, "unterminated #{…}".to_string()))?;
            let expr = rest[2..close_at].trim().to_string();
            if expr.contains('\n') || expr.contains('{') {
                return Err((
                    line,
                    format!("#{{…}} holding more than a variable; {FORMS}"),
                ));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Interp(expr));
            i += close_at + 1;
        } else {
            if c == '\n' {
                line += 1;
            }
            text.push(c);
            i += c.len_utf8();
        }
    }
}

fn quoted(src: &str, i: usize, line: usize) -> Result<(Vec<Piece>, usize, usize), Fail> {
    pieces_until(
        src,
        i,
        line,
        |rest| rest.starts_with('"').then_some(1),
        "string",
    )
}

/// A heredoc starting at byte `i` (the opening `"""`): its pieces with the
/// closing delimiter's indentation removed from every line, the position
/// after it, the line its content starts on and the line it ends on.
fn heredoc(src: &str, i: usize, line: usize) -> Result<(Vec<Piece>, usize, usize, usize), Fail> {
    let after = i + 3;
    let eol = src[after..]
        .find('\n')
        .map(|p| after + p)
        .ok_or((line, "unterminated heredoc".to_string()))?;
    if !src[after..eol].trim().is_empty() {
        return Err((
            line,
            "text after an opening \"\"\" must start on the next line".into(),
        ));
    }
    // The closing `"""` stands alone on its line, after spaces only.
    let close = |rest: &str| -> Option<usize> {
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let first = &rest[..line_end];
        let trimmed = first.trim_start_matches([' ', '\t']);
        trimmed
            .starts_with("\"\"\"")
            .then(|| first.len() - trimmed.len() + 3)
    };
    // Only at the start of a line: read line by line.
    let content_start = eol + 1;
    let mut pos = content_start;
    let mut l = line + 1;
    let end = loop {
        if pos >= src.len() {
            return Err((line, "unterminated heredoc".into()));
        }
        if close(&src[pos..]).is_some() {
            break pos;
        }
        let line_end = src[pos..].find('\n').map_or(src.len(), |p| pos + p + 1);
        pos = line_end;
        l += 1;
    };
    let close_len = close(&src[end..]).unwrap_or(3);
    let indent = close_len - 3;
    let body = &src[content_start..end];
    let (raw, _, _) = pieces_until(
        body,
        0,
        line + 1,
        |rest| rest.is_empty().then_some(0),
        "heredoc",
    )?;
    let pieces = dedent(raw, indent);
    Ok((pieces, end + close_len, line + 1, l))
}

/// Removes up to `indent` leading spaces from every line of the pieces'
/// text (interpolations stay where they are).
fn dedent(pieces: Vec<Piece>, indent: usize) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at_line_start = true;
    for p in pieces {
        match p {
            Piece::Interp(e) => {
                at_line_start = false;
                out.push(Piece::Interp(e));
            }
            Piece::Text(t) => {
                let mut s = String::new();
                for (k, part) in t.split('\n').enumerate() {
                    if k > 0 {
                        s.push('\n');
                        at_line_start = true;
                    }
                    let mut part = part;
                    if at_line_start {
                        let n = part
                            .bytes()
                            .take(indent)
                            .take_while(|b| *b == b' ' || *b == b'\t')
                            .count();
                        part = &part[n..];
                    }
                    if !part.is_empty() {
                        at_line_start = false;
                    }
                    s.push_str(part);
                }
                out.push(Piece::Text(s));
            }
        }
    }
    out
}

/// A string of SQL with the line its text starts on.
struct Sql {
    text: String,
    line: usize,
}

struct Reader {
    toks: Vec<Token>,
    pos: usize,
    last_line: usize,
}

impl Reader {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn line(&self) -> usize {
        self.peek().map_or(self.last_line, |t| t.line)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(x), .. }) if x == w)
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Punct(x), .. }) if *x == p)
    }

    fn expect_word(&mut self, w: &str) -> Result<(), Fail> {
        if self.is_word(w) {
            self.pos += 1;
            Ok(())
        } else {
            Err((self.line(), format!("expected `{w}` here; {FORMS}")))
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), Fail> {
        if self.is_punct(p) {
            self.pos += 1;
            Ok(())
        } else {
            Err((self.line(), format!("expected `{p}` here; {FORMS}")))
        }
    }

    /// A string with no interpolation, or with `#{var}` when `var` binds
    /// it to `value`.
    fn string(&mut self, bound: Option<(&str, i64)>) -> Result<Sql, Fail> {
        let line = self.line();
        match self.next() {
            Some(Token {
                tok: Tok::Str(pieces, content_line),
                ..
            }) => {
                let mut text = String::new();
                for p in pieces {
                    match p {
                        Piece::Text(t) => text.push_str(&t),
                        Piece::Interp(e) => match bound {
                            Some((var, value)) if e == var => text.push_str(&value.to_string()),
                            Some((var, _)) => {
                                return Err((
                                    line,
                                    format!(
                                        "#{{{e}}}: only the fn's variable #{{{var}}} can be replaced without Elixir"
                                    ),
                                ));
                            }
                            None => {
                                return Err((
                                    line,
                                    format!(
                                        "#{{{e}}} needs Elixir to be computed; write the value out, or use Enum.map(a..b, fn x -> \"…#{{x}}…\" end) over an integer range"
                                    ),
                                ));
                            }
                        },
                    }
                }
                Ok(Sql {
                    text,
                    line: content_line,
                })
            }
            _ => Err((line, format!("expected a string here; {FORMS}"))),
        }
    }

    /// The body of a `def`: what it returns, until its `end`.
    fn body(&mut self) -> Result<Vec<Sql>, Fail> {
        if self.is_word("end") {
            return Ok(Vec::new());
        }
        let out = if self.is_punct("[") {
            self.pos += 1;
            let mut items = Vec::new();
            while !self.is_punct("]") {
                items.push(self.string(None)?);
                if self.is_punct(",") {
                    self.pos += 1;
                } else if !self.is_punct("]") {
                    return Err((self.line(), format!("expected `,` or `]` here; {FORMS}")));
                }
            }
            self.pos += 1;
            items
        } else if self.is_word("Enum.map") {
            self.enum_map()?
        } else if matches!(
            self.peek(),
            Some(Token {
                tok: Tok::Str(..),
                ..
            })
        ) {
            vec![self.string(None)?]
        } else {
            let what = match self.peek().map(|t| &t.tok) {
                Some(Tok::Word(w)) => format!("`{w}`"),
                Some(Tok::Int(n)) => format!("`{n}`"),
                Some(Tok::Punct(p)) => format!("`{p}`"),
                Some(Tok::Other(c)) => format!("`{c}`"),
                _ => "this".to_string(),
            };
            return Err((
                self.line(),
                format!("{what} cannot be read without Elixir; {FORMS}"),
            ));
        };
        if !self.is_word("end") {
            return Err((
                self.line(),
                format!("expected the `end` of the def here (one value per def); {FORMS}"),
            ));
        }
        Ok(out)
    }

    /// `Enum.map(a..b, fn x -> STRING end)`.
    fn enum_map(&mut self) -> Result<Vec<Sql>, Fail> {
        let line = self.line();
        self.expect_word("Enum.map")?;
        self.expect_punct("(")?;
        let int = |r: &mut Reader| match r.next() {
            Some(Token {
                tok: Tok::Int(n), ..
            }) => Ok(n),
            t => Err((
                t.map_or(r.last_line, |t| t.line),
                format!("expected an integer range a..b here; {FORMS}"),
            )),
        };
        let from = int(self)?;
        self.expect_punct("..")?;
        let to = int(self)?;
        self.expect_punct(",")?;
        self.expect_word("fn")?;
        let var = match self.next() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) if !w.contains('.') => w,
            _ => return Err((line, format!("expected `fn name ->` here; {FORMS}"))),
        };
        self.expect_punct("->")?;
        let body_at = self.pos;
        if to < from {
            return Err((
                line,
                format!("the range {from}..{to} is descending; write from..to with from <= to"),
            ));
        }
        if to - from >= 10_000 {
            return Err((
                line,
                format!("the range {from}..{to} makes over 10000 statements"),
            ));
        }
        let mut out = Vec::new();
        for value in from..=to {
            self.pos = body_at;
            out.push(self.string(Some((&var, value)))?);
        }
        self.expect_word("end")?;
        self.expect_punct(")")?;
        Ok(out)
    }
}

/// What a module returns: the up strings, the down strings (none written
/// when absent or empty) and the line of `def up`.
struct Module {
    up: Vec<Sql>,
    down: Option<Vec<Sql>>,
    up_line: usize,
}

/// The up and down SQL of a Pillar migration's text; errors carry lines.
fn read_module(content: &str) -> Result<Module, Fail> {
    let toks = lex(content)?;
    let last_line = content.lines().count().max(1);
    let mut r = Reader {
        toks,
        pos: 0,
        last_line,
    };
    r.expect_word("defmodule")?;
    match r.next() {
        Some(Token {
            tok: Tok::Word(_), ..
        }) => {}
        _ => {
            return Err((
                r.line(),
                "expected the module's name after defmodule".into(),
            ));
        }
    }
    r.expect_word("do")?;
    let mut up: Option<(Vec<Sql>, usize)> = None;
    let mut down: Option<Vec<Sql>> = None;
    while !r.is_word("end") {
        let line = r.line();
        if r.peek().is_none() {
            return Err((line, "the module's `end` is missing".into()));
        }
        if !r.is_word("def") {
            let found = match r.peek().map(|t| &t.tok) {
                Some(Tok::Word(w)) => w.clone(),
                _ => "this".into(),
            };
            return Err((
                line,
                format!(
                    "`{found}`: a Pillar migration module holds `def up` and `def down` only; {FORMS}"
                ),
            ));
        }
        r.pos += 1;
        let name = match r.next() {
            Some(Token {
                tok: Tok::Word(w), ..
            }) => w,
            _ => return Err((line, "expected `up` or `down` after def".into())),
        };
        if r.is_punct("(") {
            r.expect_punct("(")?;
            r.expect_punct(")")?;
        }
        if r.is_punct(",") {
            return Err((
                line,
                "the one-line `def up, do: …` form is not read; write `def up do … end`".into(),
            ));
        }
        r.expect_word("do")?;
        let body = r.body()?;
        r.expect_word("end")?;
        match name.as_str() {
            "up" if up.is_none() => up = Some((body, line)),
            "down" if down.is_none() => down = Some(body),
            "up" | "down" => return Err((line, format!("`def {name}` is defined twice"))),
            other => {
                return Err((
                    line,
                    format!("`def {other}`: a Pillar migration has `def up` and `def down` only"),
                ));
            }
        }
    }
    r.pos += 1;
    if let Some(t) = r.peek() {
        return Err((t.line, "text after the module's `end`".into()));
    }
    let Some((up, up_line)) = up else {
        return Err((
            1,
            "no `def up do … end`: a Pillar migration needs one".into(),
        ));
    };
    // An empty `def down` (the generator's template) returns nil: no rollback written.
    let down = down.filter(|d| !d.is_empty());
    Ok(Module { up, down, up_line })
}

/// Parses a Pillar `.exs` migration. `Ok(None)`: not an `.exs` name.
pub fn parse_exs(
    display: &str,
    file_name: &str,
    content: &str,
    max_bytes: u64,
) -> Result<Option<FilePart>, Vec<SourceError>> {
    let file: Arc<str> = Arc::from(display);
    let at = |line: usize, kind: SourceErrorKind| {
        SourceError::new(Location::new(file.clone(), line), kind)
    };
    let (version, name) = match classify_exs_name(file_name) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(None),
        Err(why) => return Err(vec![at(1, SourceErrorKind::BadFileName(why))]),
    };
    if content.len() as u64 > max_bytes {
        return Err(vec![at(
            1,
            SourceErrorKind::TooLarge {
                size: content.len() as u64,
                limit: max_bytes,
            },
        )]);
    }
    let Module { up, down, up_line } =
        read_module(content).map_err(|(line, why)| vec![at(line, SourceErrorKind::Exs(why))])?;
    let statements = |parts: &[Sql]| -> Result<Vec<Statement>, Vec<SourceError>> {
        let mut out = Vec::new();
        for s in parts {
            let first = s.line;
            out.extend(
                super::statements(&s.text, &file, |l| first + l.saturating_sub(1))
                    .map_err(|e| vec![e])?,
            );
        }
        Ok(out)
    };
    let up = statements(&up)?;
    if up.is_empty() {
        return Err(vec![at(up_line, SourceErrorKind::Empty)]);
    }
    let down = match down {
        Some(d) => Some(statements(&d)?),
        None => None,
    };
    Ok(Some(FilePart::Forward(Box::new(Draft {
        version,
        description: name.replace('_', " "),
        up,
        down,
        header: Header::default(),
        location: Location::new(file.clone(), 1),
        format: SourceFormat::Pillar,
        warnings: Vec::new(),
    }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(content: &str) -> Draft {
        match parse_exs("p/1_x.exs", "1_x.exs", content, 1 << 20) {
            Ok(Some(FilePart::Forward(d))) => *d,
            other => panic!("{other:?}"),
        }
    }

    fn refused(content: &str) -> String {
        match parse_exs("p/1_x.exs", "1_x.exs", content, 1 << 20) {
            Err(e) => e
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn sqls(s: &[Statement]) -> Vec<(&str, usize)> {
        s.iter().map(|s| (s.sql.as_str(), s.line)).collect()
    }

    #[test]
    fn names_give_timestamp_versions() {
        assert_eq!(
            classify_exs_name("20250528120000_create_users_table.exs").unwrap(),
            Some((
                Version::parse("20250528120000").unwrap(),
                "create_users_table".into()
            ))
        );
        assert_eq!(classify_exs_name("V1__a.sql").unwrap(), None);
        assert!(classify_exs_name("create_users.exs").is_err());
        assert!(classify_exs_name("2025.exs").is_err());
    }

    #[test]
    fn single_statement_heredoc_and_string() {
        let text = "defmodule Pillar.Migrations.CreateUsersTable do\n  def up do\n    \"\"\"\n    CREATE TABLE IF NOT EXISTS users (\n      id UInt64\n    ) ENGINE = MergeTree()\n    ORDER BY id\n    \"\"\"\n  end\n\n  def down do\n    \"DROP TABLE IF EXISTS users\"\n  end\nend\n";
        let d = parsed(text);
        assert_eq!(
            sqls(&d.up),
            [(
                "CREATE TABLE IF NOT EXISTS users (\n  id UInt64\n) ENGINE = MergeTree()\nORDER BY id",
                4
            )]
        );
        assert_eq!(
            sqls(d.down.as_deref().unwrap()),
            [("DROP TABLE IF EXISTS users", 12)]
        );
        assert_eq!(d.version, Version::parse("1").unwrap());
        assert_eq!(d.format, SourceFormat::Pillar);
    }

    #[test]
    fn lists_of_strings_and_comments() {
        let text = "defmodule M do\n  # a comment \"not a string\"\n  def up do\n    [\n      \"\"\"\n      CREATE TABLE a (x UInt8) ENGINE = Memory\n      \"\"\",\n\n      \"CREATE TABLE b (x UInt8) ENGINE = Memory\",\n    ]\n  end\n\n  def down do\n    [\n      \"DROP TABLE IF EXISTS b\",\n      \"DROP TABLE IF EXISTS a\"\n    ]\n  end\nend\n";
        let d = parsed(text);
        assert_eq!(
            sqls(&d.up),
            [
                ("CREATE TABLE a (x UInt8) ENGINE = Memory", 6),
                ("CREATE TABLE b (x UInt8) ENGINE = Memory", 9)
            ]
        );
        assert_eq!(d.down.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn enum_map_over_a_range() {
        let text = "defmodule M do\n  def up do\n    Enum.map(0..2, fn shard ->\n      \"\"\"\n      CREATE TABLE IF NOT EXISTS events_shard_#{shard} (id UInt8) ENGINE = Memory\n      \"\"\"\n    end)\n  end\n\n  def down do\n    Enum.map(0..2, fn shard ->\n      \"DROP TABLE IF EXISTS events_shard_#{shard}\"\n    end)\n  end\nend\n";
        let d = parsed(text);
        let up: Vec<String> = d.up.iter().map(|s| s.sql.clone()).collect();
        assert_eq!(
            up,
            (0..=2)
                .map(|i| format!(
                    "CREATE TABLE IF NOT EXISTS events_shard_{i} (id UInt8) ENGINE = Memory"
                ))
                .collect::<Vec<_>>()
        );
        assert!(d.up.iter().all(|s| s.line == 5));
        assert_eq!(
            d.down.unwrap()[2].sql,
            "DROP TABLE IF EXISTS events_shard_2"
        );
    }

    #[test]
    fn the_generated_template_has_no_sql_and_an_empty_down_is_no_rollback() {
        let template = "defmodule Pillar.Migrations.CreateUsersTable do\n  def up do\n    # Your migration SQL goes here\n  end\n\n  def down do\n    # Optional: code to roll back this migration\n  end\nend\n";
        assert_eq!(
            refused(template),
            "p/1_x.exs:2: migration has no SQL statements"
        );
        let d = parsed(
            "defmodule M do\n  def up do\n    \"SELECT 1\"\n  end\n  def down do\n  end\nend\n",
        );
        assert!(d.down.is_none());
    }

    #[test]
    fn anything_else_is_refused_at_its_line_with_what_to_write() {
        for (text, line, says) in [
            (
                "defmodule M do\n  def up do\n    table = \"users\"\n    \"DROP TABLE #{table}\"\n  end\nend\n",
                3,
                "`table` cannot be read without Elixir",
            ),
            (
                "defmodule M do\n  def up do\n    \"DROP TABLE #{table}\"\n  end\nend\n",
                3,
                "#{table} needs Elixir",
            ),
            (
                "defmodule M do\n  def up do\n    Enum.map(0..2, fn s -> \"DROP TABLE t_#{x}\" end)\n  end\nend\n",
                3,
                "only the fn's variable #{s}",
            ),
            (
                "defmodule M do\n  def up do\n    ~s(SELECT 1)\n  end\nend\n",
                3,
                "sigils",
            ),
            (
                "defmodule M do\n  @moduledoc false\n  def up do\n    \"SELECT 1\"\n  end\nend\n",
                2,
                "module attributes",
            ),
            (
                "defmodule M do\n  def up, do: \"SELECT 1\"\nend\n",
                2,
                "def up do … end",
            ),
            (
                "defmodule M do\n  def change do\n    \"SELECT 1\"\n  end\nend\n",
                2,
                "`def change`",
            ),
            (
                "defmodule M do\n  def up do\n    \"SELECT 1\n",
                3,
                "unterminated string",
            ),
            (
                "defmodule M do\n  def up do\n    for x <- 1..3 do\n \"SELECT 1\"\n end\n  end\nend\n",
                3,
                "`for` cannot be read",
            ),
        ] {
            let e = refused(text);
            assert!(
                e.starts_with(&format!("p/1_x.exs:{line}: ")) && e.contains(says),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn escapes_and_semicolons() {
        let d = parsed(
            "defmodule M do\n  def up do\n    \"INSERT INTO t VALUES ('a\\\"b');\"\n  end\nend\n",
        );
        assert_eq!(sqls(&d.up), [("INSERT INTO t VALUES ('a\"b')", 3)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: crate::fuzz_cases(500), .. Default::default() })]

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_exs("x", "1_x.exs", &s, 1 << 20);
            let wrapped = format!("defmodule M do\n def up do\n{s}\n end\nend\n");
            let _ = parse_exs("x", "1_x.exs", &wrapped, 1 << 20);
        }
    }
}
