//! Log output: `tracing` lines on stderr and, with `logging.file` /
//! `--log-file`, appended to a file too, at the level and in the format the
//! configuration names (`-v`, `-vv`, `--debug` raise the level; the
//! `CHMIGRATE_LOG` variable, a `tracing` filter such as
//! `chmigrate=debug,hyper=info`, replaces it).

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use chmigrate::config::{LogFormat, LogLevel, LoggingSettings};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use super::{CliError, Global};

/// The level in force: the configured one, raised by `-v`/`--debug`.
pub fn effective_level(configured: LogLevel, verbose: u8, debug: bool) -> LogLevel {
    let from_flags = match verbose {
        0 => LogLevel::Error,
        1 => LogLevel::Info,
        2 => LogLevel::Debug,
        _ => LogLevel::Trace,
    };
    let from_debug = if debug {
        LogLevel::Debug
    } else {
        LogLevel::Error
    };
    configured.max(from_flags).max(from_debug)
}

/// The filter directive for `level`: chmigrate's own events at that level,
/// its libraries' at `warn` (at `debug` when tracing).
pub fn directive(level: LogLevel) -> String {
    match level {
        LogLevel::Error | LogLevel::Warn => level.as_str().to_string(),
        LogLevel::Info | LogLevel::Debug => format!("warn,chmigrate={}", level.as_str()),
        LogLevel::Trace => "debug,chmigrate=trace".to_string(),
    }
}

fn filter(level: LogLevel) -> EnvFilter {
    EnvFilter::try_from_env("CHMIGRATE_LOG").unwrap_or_else(|_| EnvFilter::new(directive(level)))
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

fn layer<W>(writer: W, format: LogFormat, ansi: bool, source_lines: bool) -> Boxed
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .with_file(source_lines)
        .with_line_number(source_lines);
    match format {
        LogFormat::Json => base.json().boxed(),
        LogFormat::Text => base.boxed(),
    }
}

/// Installs the global subscriber. Fails (exit 2) only when the log file
/// cannot be opened.
pub fn init(g: &Global, logging: &LoggingSettings) -> Result<(), CliError> {
    let level = effective_level(logging.level, g.verbose, g.debug);
    let file = match &logging.file {
        Some(path) => Some(open(path)?),
        None => None,
    };
    let mut layers: Vec<Boxed> = vec![layer(
        std::io::stderr,
        logging.format,
        std::io::stderr().is_terminal(),
        g.debug,
    )];
    if let Some(f) = file {
        layers.push(layer(Mutex::new(f), logging.format, false, g.debug));
    }
    // Fails only if a subscriber is already installed (tests): keep it.
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter(level))
        .try_init();
    Ok(())
}

/// Logging for when the configuration itself could not be read.
pub fn init_default(g: &Global) {
    let level = effective_level(LogLevel::default(), g.verbose, g.debug);
    let _ = tracing_subscriber::registry()
        .with(layer(
            std::io::stderr,
            LogFormat::Text,
            std::io::stderr().is_terminal(),
            g.debug,
        ))
        .with(filter(level))
        .try_init();
}

fn open(path: &Path) -> Result<std::fs::File, CliError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            CliError::Invalid(format!(
                "log file {}: cannot create its folder: {e}",
                path.display()
            ))
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| CliError::Invalid(format!("log file {}: cannot open: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_raise_the_configured_level_never_lower_it() {
        assert_eq!(effective_level(LogLevel::Warn, 0, false), LogLevel::Warn);
        assert_eq!(effective_level(LogLevel::Warn, 1, false), LogLevel::Info);
        assert_eq!(effective_level(LogLevel::Warn, 0, true), LogLevel::Debug);
        assert_eq!(effective_level(LogLevel::Info, 3, false), LogLevel::Trace);
        assert_eq!(effective_level(LogLevel::Debug, 1, false), LogLevel::Debug);
        assert_eq!(effective_level(LogLevel::Error, 0, false), LogLevel::Error);
    }

    #[test]
    fn libraries_stay_quiet_below_trace() {
        assert_eq!(directive(LogLevel::Warn), "warn");
        assert_eq!(directive(LogLevel::Debug), "warn,chmigrate=debug");
        assert_eq!(directive(LogLevel::Trace), "debug,chmigrate=trace");
        for l in [LogLevel::Error, LogLevel::Info, LogLevel::Trace] {
            EnvFilter::try_new(directive(l)).unwrap();
        }
    }
}
