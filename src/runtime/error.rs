//! Errors talking to ClickHouse, classified so that people get a clear
//! message and the CLI the right exit code. None of them ever carries a
//! password: they name the URL (as configured, without credentials) and the
//! user.

use std::time::Duration;

/// A failure talking to a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChError {
    #[error("invalid connection settings: {0}")]
    Config(String),
    #[error("{url}: cannot connect: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: TLS failure: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url}: authentication failed: {message}")]
    Auth { url: String, message: String },
    #[error("{url}: server error (code {code}): {message}{}", hint(*code))]
    Server {
        url: String,
        code: u32,
        message: String,
    },
    #[error("{url}: no answer after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: unexpected answer: {reason}")]
    Decode { url: String, reason: String },
}

/// Extra words for errors whose cause is not obvious from the server's text.
fn hint(code: u32) -> &'static str {
    match code {
        codes::KEEPER_EXCEPTION | codes::TABLE_IS_READ_ONLY => {
            " (ZooKeeper is unreachable or its session expired: replicated tables and ON CLUSTER DDL need it)"
        }
        _ => "",
    }
}

impl ChError {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<u32> {
        match self {
            ChError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's message, for errors from the server.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ChError::Server { message, .. } | ChError::Auth { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Errors after which retrying the same request later may succeed.
    pub fn is_connection(&self) -> bool {
        matches!(self, ChError::Unreachable { .. } | ChError::Timeout { .. })
    }
}

/// ClickHouse error codes chmigrate reacts to.
pub mod codes {
    pub const TABLE_ALREADY_EXISTS: u32 = 57;
    pub const UNKNOWN_TABLE: u32 = 60;
    pub const TIMEOUT_EXCEEDED: u32 = 159;
    pub const UNKNOWN_USER: u32 = 192;
    pub const WRONG_PASSWORD: u32 = 193;
    pub const REQUIRED_PASSWORD: u32 = 194;
    pub const REPLICA_ALREADY_EXISTS: u32 = 253;
    pub const AUTHENTICATION_FAILED: u32 = 516;
    pub const KEEPER_EXCEPTION: u32 = 999;
    pub const TABLE_IS_READ_ONLY: u32 = 242;
    /// 18.16: `CREATE TABLE` over a data directory that still holds parts
    /// (a table dropped from the catalogue whose files stayed).
    pub const INCORRECT_DATA: u32 = 117;
}

/// Splits a ClickHouse exception text into its code and message. Handles
/// 18.16 (`Code: 57, e.displayText() = DB::Exception: …, e.what() = …`) and
/// current versions (`Code: 57. DB::Exception: … (TABLE_ALREADY_EXISTS) (version …)`).
pub fn parse_exception(text: &str) -> Option<(u32, String)> {
    let at = text.find("Code: ")?;
    let rest = &text[at + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let code: u32 = digits.parse().ok()?;
    let after = rest[digits.len()..]
        .trim_start_matches([',', '.'])
        .trim_start();
    let mut msg = after
        .strip_prefix("e.displayText() = ")
        .unwrap_or(after)
        .to_string();
    if let Some(cut) = msg.rfind(", e.what() = ") {
        msg.truncate(cut);
    }
    if let Some(cut) = msg.find(" (version ") {
        msg.truncate(cut);
    }
    let msg = msg.trim().trim_start_matches("DB::Exception: ").to_string();
    Some((code, msg))
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.contains(&t) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

/// Classifies an error from the `clickhouse` crate.
pub fn classify(e: clickhouse::error::Error, url: &str) -> ChError {
    use clickhouse::error::Error as E;
    let url = url.to_string();
    match e {
        E::Network(inner) => {
            let chain = source_chain(inner.as_ref());
            let lower = chain.to_ascii_lowercase();
            if [
                "certificate",
                "tls",
                "handshake",
                "invalidcontenttype",
                "peer is incompatible",
                "corrupt message",
            ]
            .iter()
            .any(|k| lower.contains(k))
            {
                ChError::Tls { url, reason: chain }
            } else {
                ChError::Unreachable { url, reason: chain }
            }
        }
        E::BadResponse(text) => match parse_exception(&text) {
            Some((code, message))
                if [
                    codes::UNKNOWN_USER,
                    codes::WRONG_PASSWORD,
                    codes::REQUIRED_PASSWORD,
                    codes::AUTHENTICATION_FAILED,
                ]
                .contains(&code) =>
            {
                ChError::Auth { url, message }
            }
            Some((code, message)) => ChError::Server { url, code, message },
            None if text.starts_with("401") || text.starts_with("403") => {
                ChError::Auth { url, message: text }
            }
            None => ChError::Decode { url, reason: text },
        },
        E::TimedOut => ChError::Timeout {
            url,
            after: Duration::ZERO,
        },
        other => ChError::Decode {
            url,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_18_16_exceptions() {
        let text = "Code: 57, e.displayText() = DB::Exception: Table default.t already exists., e.what() = DB::Exception";
        assert_eq!(
            parse_exception(text),
            Some((57, "Table default.t already exists.".into()))
        );
        let text = "Code: 159, e.displayText() = DB::Exception: Watching task /clickhouse/task_queue/ddl/query-0000000020 is executing longer than distributed_ddl_task_timeout (=5) seconds. There are 1 unfinished hosts (0 of them are currently active), they are going to execute the query in background, e.what() = DB::Exception";
        let (code, msg) = parse_exception(text).unwrap();
        assert_eq!(code, 159);
        assert!(msg.starts_with("Watching task /clickhouse/task_queue/ddl/query-0000000020"));
        assert!(msg.ends_with("in background"));
        let text = "Code: 999, e.displayText() = Coordination::Exception: Session expired (Session expired), e.what() = Coordination::Exception";
        assert_eq!(
            parse_exception(text).unwrap(),
            (
                999,
                "Coordination::Exception: Session expired (Session expired)".into()
            )
        );
    }

    #[test]
    fn parses_current_exceptions() {
        let text = "Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE) (version 24.8.1.1 (official build))";
        assert_eq!(
            parse_exception(text),
            Some((60, "Table default.x does not exist. (UNKNOWN_TABLE)".into()))
        );
        assert_eq!(parse_exception("no code here"), None);
    }

    #[test]
    fn classifies_auth_and_server_errors() {
        let e = classify(
            clickhouse::error::Error::BadResponse(
                "Code: 193, e.displayText() = DB::Exception: Wrong password for user chm_secret, e.what() = DB::Exception".into(),
            ),
            "http://h:8123",
        );
        assert_eq!(
            e.to_string(),
            "http://h:8123: authentication failed: Wrong password for user chm_secret"
        );
        let e = classify(
            clickhouse::error::Error::BadResponse(
                "Code: 62, e.displayText() = DB::Exception: Syntax error, e.what() = DB::Exception"
                    .into(),
            ),
            "http://h:8123",
        );
        assert_eq!(e.code(), Some(62));
    }
}
