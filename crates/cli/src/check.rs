//! `steward check`: reads the configuration as `steward run` would, and prints every
//! option with its value and source, or the first error.

use std::process::ExitCode;

use crate::run_args::RunArgs;

/// Prints the effective configuration on stdout and each warning on stderr; exit
/// status 0. On an error, prints it (naming file:line, the variable or the flag) on
/// stderr; exit status 1.
pub fn check(args: &RunArgs) -> ExitCode {
    let sources = args.sources();
    match sources.load() {
        Ok(config) => {
            let file = config
                .file()
                .map_or_else(|| "no config file".to_owned(), |f| f.display().to_string());
            println!("# steward configuration: {file}, STEWARD_* environment, command line");
            print!("{}", config.describe());
            for warning in &config.warnings {
                eprintln!("steward: warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("steward: error: {error}");
            ExitCode::FAILURE
        }
    }
}
