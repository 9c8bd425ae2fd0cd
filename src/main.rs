//! The `chmigrate` binary: parse arguments, set up logging, run, exit with
//! the command's code (0 done, 1 failed, 2 invalid input or blocked plan).

mod cli;
mod operator;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn init_logging(verbose: u8, format: cli::LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("CHMIGRATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.init(),
    }
}

fn main() {
    let args = cli::Cli::parse();
    init_logging(args.global.verbose, args.global.log_format);
    let code = match cli::run(args) {
        Ok(()) => cli::exit::OK,
        Err(e) => {
            match &e {
                cli::CliError::Invalid(msg) => eprintln!("error: {msg}"),
                cli::CliError::Failed(err) => eprintln!("error: {err:#}"),
                cli::CliError::Locked(msg, _) => eprintln!("error: {msg}"),
                cli::CliError::Blocked(_) => eprintln!("{e}\nnothing was executed"),
                cli::CliError::Reported | cli::CliError::Pending => {}
            }
            e.code()
        }
    };
    std::process::exit(code);
}
