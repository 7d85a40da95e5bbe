//! The options of `steward [run]` and `steward check` as command-line flags, built from
//! the option table so that every option is a flag under its own name.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use steward_options::{
    table::{self, Kind},
    ConfigSources, Options, Origin, RawValue, Setting,
};

/// The id of the worker command given after `--` (not `command`: that is `--command`).
const TRAILING_COMMAND: &str = "COMMAND";
const CONFIG: &str = "config";

/// `--config FILE`, every option of the table as a flag, and the command after `--`.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// The config file, if given.
    pub config: Option<PathBuf>,
    /// The flags given, in command-line order.
    pub settings: Vec<Setting>,
}

impl RunArgs {
    /// The sources to read options from: the file, this process's `STEWARD_*`
    /// environment, and these flags.
    pub fn sources(&self) -> ConfigSources {
        ConfigSources::from_process(self.config.clone(), self.settings.clone())
    }
}

fn with_option_args(mut cmd: Command) -> Command {
    cmd = cmd.arg(
        Arg::new(CONFIG)
            .long(CONFIG)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help(
                "Read options from FILE: .toml, .yaml/.yml, .json, or an .ini with a [uwsgi] \
                 or [steward] section. STEWARD_* variables and flags override it.",
            ),
    );
    for def in table::table() {
        cmd = cmd.arg(option_arg(def));
    }
    cmd.arg(
        Arg::new(TRAILING_COMMAND)
            .value_name("COMMAND")
            .help("The worker command and its arguments, after `--`.")
            .num_args(1..)
            // Once the command has begun, its words are its own, flags included; before
            // it, a word like `--touch-relaod` is a misspelt option, not a command.
            .trailing_var_arg(true)
            .action(ArgAction::Append),
    )
}

/// The flag of one option of the table: its name, aliases, help and how it takes a value.
fn option_arg(def: &'static table::OptionDef) -> Arg {
    let name: &'static str = def.name();
    let mut help = def.help().to_owned();
    let default = def.default_text();
    if !default.is_empty() {
        help.push_str(&format!(" [default: {default}]"));
    }
    let mut arg = Arg::new(name)
        .long(name)
        // Checked here too, so that a bad flag is a usage error (exit status 2).
        .value_parser(move |value: &str| {
            def.apply(&mut Options::new(Vec::new()), value)
                .map(|()| value.to_owned())
                .map_err(|e| e.to_string())
        })
        .help(help)
        .help_heading(def.group().heading())
        .hide(def.hidden());
    if let Some(short) = def.short() {
        arg = arg.short(short);
    }
    for alias in def.aliases() {
        arg = arg.visible_alias(*alias);
    }
    match def.kind() {
        // `--vacuum` or `--vacuum=false`; never the next word, which may be the command.
        Kind::Flag => arg
            .value_name("BOOL")
            .num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
            .action(ArgAction::Set),
        Kind::Value | Kind::Words => arg
            .value_name(def.value_name())
            .allow_negative_numbers(true)
            .action(ArgAction::Set),
        Kind::List(_) => arg.value_name(def.value_name()).action(ArgAction::Append),
    }
}

impl Args for RunArgs {
    fn augment_args(cmd: Command) -> Command {
        with_option_args(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        with_option_args(cmd)
    }
}

impl FromArgMatches for RunArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = RunArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(config) = matches.get_one::<PathBuf>(CONFIG) {
            self.config = Some(config.clone());
        }
        // Sorted by position: hook-<phase> and exec-<phase> add to one list, in the
        // order they were given.
        let mut given: Vec<(usize, Setting)> = Vec::new();
        for def in table::table() {
            let (Some(values), Some(indices)) = (
                matches.get_many::<String>(def.name()),
                matches.indices_of(def.name()),
            ) else {
                continue;
            };
            for (value, index) in values.zip(indices) {
                let origin = Origin::Cli(format!("--{}", def.name()));
                given.push((index, Setting::one(def.name(), value.clone(), origin)));
            }
        }
        if let (Some(words), Some(mut indices)) = (
            matches.get_many::<String>(TRAILING_COMMAND),
            matches.indices_of(TRAILING_COMMAND),
        ) {
            let setting = Setting {
                key: "command".into(),
                value: RawValue::Many(words.cloned().collect()),
                origin: Origin::Cli("the command line (after --)".into()),
            };
            given.push((indices.next().unwrap_or(usize::MAX), setting));
        }
        given.sort_by_key(|(index, _)| *index);
        self.settings = given.into_iter().map(|(_, setting)| setting).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> RunArgs {
        let cmd = RunArgs::augment_args(Command::new("steward"));
        RunArgs::from_arg_matches(&cmd.try_get_matches_from(argv).unwrap()).unwrap()
    }

    fn keys_and_values(args: &RunArgs) -> Vec<(String, RawValue)> {
        args.settings
            .iter()
            .map(|s| (s.key.clone(), s.value.clone()))
            .collect()
    }

    #[test]
    fn flags_of_the_table_and_the_trailing_command() {
        let args = parse(&[
            "steward",
            "--config",
            "/etc/app.toml",
            "-w",
            "3",
            "--vacuum",
            "--honour-stdin=false",
            "--priority",
            "-5",
            "--hook-asap",
            "print:a",
            "--exec-asap",
            "true",
            "-l",
            "127.0.0.1:1",
            "--",
            "/bin/app",
            "--its-flag",
        ]);
        assert_eq!(args.config, Some(PathBuf::from("/etc/app.toml")));
        let one = |k: &str, v: &str| (k.to_owned(), RawValue::One(v.to_owned()));
        assert_eq!(
            keys_and_values(&args),
            [
                one("workers", "3"),
                one("vacuum", "true"),
                one("honour-stdin", "false"),
                one("priority", "-5"),
                one("hook-asap", "print:a"),
                one("exec-asap", "true"),
                one("listen", "127.0.0.1:1"),
                (
                    "command".to_owned(),
                    RawValue::Many(vec!["/bin/app".into(), "--its-flag".into()])
                ),
            ]
        );
        assert_eq!(args.settings[0].origin, Origin::Cli("--workers".into()));
    }

    #[test]
    fn a_flag_does_not_swallow_the_command() {
        let args = parse(&["steward", "--vacuum", "/bin/app"]);
        assert_eq!(args.settings.len(), 2);
        assert_eq!(
            args.settings[1].value,
            RawValue::Many(vec!["/bin/app".into()])
        );
    }

    #[test]
    fn every_hook_phase_is_an_option() {
        let phases: Vec<&str> = steward_hooks::Phase::all().map(|p| p.name()).collect();
        assert_eq!(phases, table::HOOK_PHASES);
        for phase in phases {
            let args = parse(&["steward", &format!("--hook-{phase}"), "print:x"]);
            assert_eq!(args.settings[0].key, format!("hook-{phase}"));
        }
    }

    #[test]
    fn uwsgi_aliases_work_as_flags() {
        let args = parse(&["steward", "--processes", "4"]);
        assert_eq!(args.settings[0].key, "workers");
    }
}
