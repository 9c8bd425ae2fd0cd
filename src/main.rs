//! The `chmigrate` binary: parse arguments, read the configuration, set up
//! logging, run, exit with the command's code (0 done, 1 failed, 2 invalid
//! input or blocked plan, 3 hosts pending, 4 locked).

mod cli;
mod operator;

use clap::Parser;

fn report(e: &cli::CliError) {
    match e {
        cli::CliError::Invalid(msg) => eprintln!("error: {msg}"),
        cli::CliError::Failed(err) => eprintln!("error: {err:#}"),
        cli::CliError::Locked(msg) => eprintln!("error: {msg}"),
        cli::CliError::Blocked(_) => eprintln!("{e}\nnothing was executed"),
        cli::CliError::Reported | cli::CliError::Pending | cli::CliError::Drift => {}
    }
}

fn main() {
    let args = cli::Cli::parse();
    let result = match cli::settings(&args.global, cli::reads_config(&args)) {
        Err(e) => {
            cli::logging::init_default(&args.global);
            Err(e)
        }
        Ok(settings) => match cli::logging::init(&args.global, &settings.logging) {
            Err(e) => {
                cli::logging::init_default(&args.global);
                Err(e)
            }
            Ok(()) => cli::run(args, settings),
        },
    };
    let code = match result {
        Ok(()) => cli::exit::OK,
        Err(e) => {
            report(&e);
            e.code()
        }
    };
    std::process::exit(code);
}
