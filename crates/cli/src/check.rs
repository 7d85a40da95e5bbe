//! `steward check`: reads the configuration as `steward run` would, looks at what the
//! start needs from this machine, and reports every problem at once.

use std::process::ExitCode;

use steward_hooks::{Callbacks, Hooks};
use steward_master::{CheckFinding, CheckReport, MasterError};
use steward_options::{Config, ConfigError, Origin};

use crate::{output, run_args::RunArgs};

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

    /// A hook that cannot be set up, a failed fatal hook, or an error about an option's
    /// value (a user that does not exist, a directory), gets the file:line, variable or
    /// flag it came from, as a check-time error does; any other error is passed on.
    pub fn locate(&self, error: MasterError) -> anyhow::Error {
        let origin = match &error {
            MasterError::HookConfig(hook) => hook.origin(&self.config).map(ToString::to_string),
            MasterError::Hook(hook) => hook.origin(&self.config).map(ToString::to_string),
            other => other
                .option()
                .and_then(|option| self.config.origins(option).first())
                .filter(|origin| **origin != Origin::Default)
                .map(ToString::to_string),
        };
        match origin {
            Some(origin) => anyhow::Error::new(error).context(origin),
            None => error.into(),
        }
    }
}

/// `steward check`: what it reads like `steward [run]`, and how it reports.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Print the effective configuration on stdout: every option with its value and
    /// where that came from.
    #[arg(long)]
    print: bool,
    /// Print nothing but errors (for ExecStartPre=: the master logs the warnings
    /// itself when it starts).
    #[arg(long, short, conflicts_with = "print")]
    quiet: bool,
    /// Check the configuration only, for another machine or before the packages it
    /// needs are installed: what only this machine can tell (users, groups, programs,
    /// directories) is a warning, not an error.
    #[arg(long)]
    config_only: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Reads the configuration as `steward run` would, then looks, as the start would,
/// at what this machine must provide: users, groups, the worker program, directories,
/// socket paths, a socket to serve on. Every problem is reported at once, warnings and
/// errors, each naming its file:line, variable or flag, on stderr; exit status 1 if
/// any is an error.
pub fn check(args: &CheckArgs) -> ExitCode {
    let checked = args.run.sources().check();
    let config = checked.config;
    let mut errors: Vec<String> = checked.errors.iter().map(ToString::to_string).collect();
    errors.extend(
        Hooks::problems(&config.options, &Callbacks::new())
            .iter()
            .map(|error| error.located(&config)),
    );
    let mut machine = machine_problems(&config);
    let mut machine_warnings = Vec::new();
    if args.config_only {
        machine_warnings.extend(
            machine
                .drain(..)
                .map(|m| format!("{m}{}", steward_master::UNRESOLVED_SUFFIX)),
        );
    }
    errors.extend(machine);
    let warnings = config.warnings.len() + machine_warnings.len();
    let shown = if args.quiet { 0 } else { warnings };
    output::err_lines(
        (config.warnings.iter().map(ToString::to_string))
            .chain(machine_warnings)
            .take(shown)
            .map(|w| format!("steward: warning: {w}"))
            .chain(errors.iter().map(|e| format!("steward: error: {e}"))),
    );
    if !errors.is_empty() {
        return ExitCode::FAILURE;
    }
    let file = config
        .file()
        .map_or_else(|| "no config file".to_owned(), |f| f.display().to_string());
    if args.print {
        output::out(&format!(
            "# steward configuration: {file}, STEWARD_* environment, command line\n{}",
            config.describe()
        ));
    } else if !args.quiet {
        output::line(format!(
            "steward: the configuration ({file}) is good, {warnings} warning(s)"
        ));
    }
    ExitCode::SUCCESS
}

/// What a start here would refuse for want of something on this machine, each with
/// where the option was set.
fn machine_problems(config: &Config) -> Vec<String> {
    let mut problems: Vec<String> = steward_master::preflight(&config.options)
        .into_iter()
        .map(|finding| {
            let origins = config.origins(finding.option);
            let origin = origins.get(finding.index).or(origins.last());
            match origin {
                Some(origin) if *origin != Origin::Default => {
                    format!("{origin}: {}", finding.message)
                }
                _ => finding.message,
            }
        })
        .collect();
    if config.options.listen.is_empty() && std::env::var_os("LISTEN_FDS").is_none() {
        problems.push(
            "no socket to serve on: set listen (uWSGI's socket, http-socket or http), or \
             start steward from a socket unit (LISTEN_FDS)"
                .to_owned(),
        );
    }
    problems
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
    output::line(report.to_json());
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
        | ConfigError::TooLarge { path, .. }
        | ConfigError::Format { path }
        | ConfigError::NotATable { path }
        | ConfigError::NoSection { path } => Some(path.display().to_string()),
        ConfigError::Invalid { .. } => None,
    }
}
