//! How a command ends when it does not succeed, and the exit code it gets
//! (0 done, 1 failed, 2 invalid input or blocked plan, 3 hosts pending,
//! 4 locked, 5 replica schema drift). The engine's typed errors are mapped here, at the edge.

use serde_json::json;

use chmigrate::engine::EngineError;

use super::output::{self, Format};

/// Exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const HOSTS_PENDING: i32 = 3;
    pub const LOCKED: i32 = 4;
    pub const DRIFT: i32 = 5;
}

/// How a command ended when it did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or a blocked plan: exit 2, nothing was executed.
    Invalid(String),
    /// Diagnostics already printed; exit 2.
    Reported,
    /// Anything else: exit 1.
    Failed(anyhow::Error),
    /// Applied, but some hosts had not finished (already printed): exit 3.
    Pending,
    /// Another runner holds the target's lock: exit 4.
    Locked(String),
    /// The plan is blocked (not yet printed): exit 2.
    Blocked(Vec<chmigrate::model::diagnostic::Diagnostic>),
    /// Hosts lack or differ from the migrated schema (already printed):
    /// exit 5.
    Drift,
}

impl CliError {
    pub fn code(&self) -> i32 {
        match self {
            CliError::Invalid(_) | CliError::Reported | CliError::Blocked(_) => exit::INVALID,
            CliError::Failed(_) => exit::FAILED,
            CliError::Pending => exit::HOSTS_PENDING,
            CliError::Locked(..) => exit::LOCKED,
            CliError::Drift => exit::DRIFT,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Invalid(m) | CliError::Locked(m) => f.write_str(m),
            CliError::Failed(e) => write!(f, "{e:#}"),
            CliError::Reported => f.write_str("problems were reported"),
            CliError::Pending => f.write_str("hosts pending"),
            CliError::Drift => f.write_str("replica schema drift"),
            CliError::Blocked(d) => {
                let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Failed(e)
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Blocked(b) => CliError::Blocked(b.diagnostics()),
            EngineError::Locked(held) => CliError::Locked(held.message),
            e if e.is_invalid() => CliError::Invalid(e.to_string()),
            e => CliError::Failed(anyhow::anyhow!(e)),
        }
    }
}

/// The engine's error as the command's, with a held lock also described
/// on stdout for `--format json`.
pub fn engine(format: Format) -> impl Fn(EngineError) -> CliError {
    move |e| {
        if let (EngineError::Locked(held), Format::Json) = (&e, format) {
            output::print_json_value(&json!({
                "ok": false,
                "locked": true,
                "lock": held.info,
                "message": held.message,
            }));
        }
        CliError::from(e)
    }
}

/// Prints blocked-plan diagnostics the way every command does.
pub fn reported(e: CliError, format: Format) -> CliError {
    match e {
        CliError::Blocked(diags) => {
            output::print_diagnostics(format, &diags);
            CliError::Reported
        }
        other => other,
    }
}
