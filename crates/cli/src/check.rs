//! `steward check`: reads the configuration as `steward run` would, and prints every
//! option with its value and source, or the first error.

use std::process::ExitCode;

use steward_hooks::{Callbacks, Hooks};
use steward_master::{CheckFinding, CheckReport, MasterError};
use steward_options::{Config, ConfigError};

use crate::run_args::RunArgs;

/// Parses every hook, touch hook, alarm and jail setting as the master will (with no
/// registered callbacks: from the command line, every `call:` is an error); an error
/// names the file and line, the variable or the flag it came from.
pub fn check_hooks(config: &Config) -> Result<(), String> {
    Hooks::new(&config.options, Callbacks::new())
        .map(drop)
        .map_err(|error| error.located(config))
}

/// Where each hook was written, to name it when one cannot be set up at start or a
/// fatal one fails at run time.
pub struct HookOrigins {
    config: Config,
}

impl HookOrigins {
    /// The origins of `config`'s hooks.
    pub fn new(config: &Config) -> HookOrigins {
        HookOrigins {
            config: config.clone(),
        }
    }

    /// A hook that cannot be set up, or a failed fatal hook, gets the file:line,
    /// variable or flag it came from, as a check-time error does; any other error is
    /// passed on.
    pub fn locate(&self, error: MasterError) -> anyhow::Error {
        let origin = match &error {
            MasterError::HookConfig(hook) => hook.origin(&self.config).map(ToString::to_string),
            MasterError::Hook(hook) => hook.origin(&self.config).map(ToString::to_string),
            _ => None,
        };
        match origin {
            Some(origin) => anyhow::Error::new(error).context(origin),
            None => error.into(),
        }
    }
}

/// Prints the effective configuration on stdout and each warning on stderr; exit
/// status 0. On an error, prints it (naming file:line, the variable or the flag) on
/// stderr; exit status 1. A user, group or worker program that does not exist here is
/// a warning: a start on this machine would fail, but the configuration may be
/// checked before the package that provides them is installed.
pub fn check(args: &RunArgs) -> ExitCode {
    let sources = args.sources();
    let checked = sources
        .load()
        .map_err(|e| e.to_string())
        .and_then(|config| check_hooks(&config).map(|()| config));
    match checked {
        Ok(config) => {
            let file = config
                .file()
                .map_or_else(|| "no config file".to_owned(), |f| f.display().to_string());
            println!("# steward configuration: {file}, STEWARD_* environment, command line");
            print!("{}", config.describe());
            for warning in &config.warnings {
                eprintln!("steward: warning: {warning}");
            }
            for finding in unresolved(&config) {
                eprintln!(
                    "steward: warning: {}{}",
                    finding.message,
                    steward_master::UNRESOLVED_SUFFIX
                );
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("steward: error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `steward check` for a running master about to re-exec into this binary (it sets
/// `STEWARD_CHECK_REPORT`): the verdict as a [`CheckReport`], one JSON line on stdout,
/// so that the master reads it rather than the text above. A user, group or program
/// that does not exist here refuses, as a master started here would end.
pub fn report(args: &RunArgs) -> ExitCode {
    let errors = match args.sources().load() {
        Err(error) => vec![CheckFinding {
            origin: config_error_origin(&error),
            message: error.to_string(),
        }],
        Ok(config) => match check_hooks(&config) {
            Err(message) => vec![CheckFinding {
                origin: None,
                message,
            }],
            Ok(()) => unresolved(&config),
        },
    };
    let report = CheckReport::new(errors);
    println!("{}", report.to_json());
    if report.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Each user, group or worker program the configuration names that does not exist
/// here, with where it was set.
fn unresolved(config: &Config) -> Vec<CheckFinding> {
    steward_master::unresolved_names(&config.options)
        .into_iter()
        .map(|(option, error)| {
            let origin = config.origins(option).first().map(ToString::to_string);
            let message = match &origin {
                Some(origin) => format!("{origin}: {error}"),
                None => error.to_string(),
            };
            CheckFinding { origin, message }
        })
        .collect()
}

/// Where the value a load error is about was written, when it names one.
fn config_error_origin(error: &ConfigError) -> Option<String> {
    match error {
        ConfigError::Syntax { path, line, .. } => Some(format!("{}:{line}", path.display())),
        ConfigError::Nested { origin, .. }
        | ConfigError::Section { origin, .. }
        | ConfigError::UnknownOption { origin, .. }
        | ConfigError::NotAList { origin, .. }
        | ConfigError::InvalidValue { origin, .. } => Some(origin.to_string()),
        ConfigError::Read { path, .. }
        | ConfigError::Format { path }
        | ConfigError::NotATable { path }
        | ConfigError::NoSection { path } => Some(path.display().to_string()),
        ConfigError::Invalid { .. } => None,
    }
}
