//! Layering the sources of options: built-in defaults < the config file < `STEWARD_*`
//! environment < command-line flags, per option, remembering where each value came from.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use crate::{
    table::{self, Kind},
    ConfigError, Options, Origin, RawValue, Setting, Warning,
};

/// Everything options are read from: kept by the master so that a reload reads the
/// file again under the same environment and command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSources {
    /// The config file (`--config`, or `STEWARD_CONFIG`).
    pub file: Option<PathBuf>,
    /// The `STEWARD_*` variables, as (name, value), in the order found.
    pub env: Vec<(String, String)>,
    /// The command-line flags.
    pub cli: Vec<Setting>,
}

impl ConfigSources {
    /// Sources from this process's environment, the given config file (else
    /// `STEWARD_CONFIG`) and command-line settings.
    pub fn from_process(file: Option<PathBuf>, cli: Vec<Setting>) -> ConfigSources {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .filter(|(name, _)| name.starts_with("STEWARD_"))
            .collect();
        let file = file.or_else(|| {
            env.iter()
                .find(|(name, _)| name == crate::vars::CONFIG)
                .map(|(_, value)| PathBuf::from(value))
        });
        ConfigSources { file, env, cli }
    }

    /// Reads every source and layers them.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let checked = self.check();
        match checked.errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(checked.config),
        }
    }

    /// [`ConfigSources::load`] for a program that embeds the master and forks a closure
    /// (preload mode): no worker command is needed.
    pub fn load_without_command(&self) -> Result<Config, ConfigError> {
        let (config, mut errors) = self.layered();
        errors.extend(
            config
                .options
                .validate_without_command()
                .err()
                .map(|error| ConfigError::Invalid { error }),
        );
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(config),
        }
    }

    /// Reads every source as [`ConfigSources::load`] does, but goes on past an error to
    /// find every one (`steward check` lists them all): the options are what the
    /// sources say without the values in error.
    pub fn check(&self) -> Checked {
        let (config, mut errors) = self.layered();
        let problems = config.options.problems();
        errors.extend(problems.into_iter().map(|error| config.located(error)));
        Checked { config, errors }
    }

    fn layered(&self) -> (Config, Vec<ConfigError>) {
        let mut config = Config {
            options: Options::new(Vec::new()),
            origins: BTreeMap::new(),
            warnings: Vec::new(),
            file: self.file.clone(),
        };
        let mut errors = Vec::new();
        if let Some(path) = &self.file {
            // A vassal's templates (vassals-inherit, vassals-include) and its file are
            // one source, as if the file included them first and last: a value of the
            // file overrides an inherited one, an included one overrides the file's.
            let mut settings = Vec::new();
            let files = self
                .templates(crate::vars::VASSAL_INHERIT)
                .chain([path.clone()]);
            for file in files.chain(self.templates(crate::vars::VASSAL_INCLUDE)) {
                match crate::files::read(&file) {
                    Ok(loaded) => {
                        config.warnings.extend(loaded.warnings);
                        settings.extend(loaded.settings);
                    }
                    Err(error) => errors.push(error),
                }
            }
            config.layer(&settings, &mut errors);
        }
        let env = env_settings(&self.env, &mut config.warnings);
        config.layer(&env, &mut errors);
        config.layer(&self.cli, &mut errors);
        (config, errors)
    }
}

impl ConfigSources {
    /// The files an emperor names in `var` (one a line) for its vassals to read too.
    fn templates(&self, var: &str) -> impl Iterator<Item = PathBuf> + '_ {
        let var = var.to_owned();
        self.env
            .iter()
            .filter(move |(name, _)| *name == var)
            .flat_map(|(_, value)| value.lines())
            .filter(|line| !line.trim().is_empty())
            .map(PathBuf::from)
    }
}

/// Every source read: the options, and each error found on the way.
#[derive(Debug)]
pub struct Checked {
    /// The options, without the values in error.
    pub config: Config,
    /// Every error, in the order of the sources (file, environment, command line),
    /// then what the options together lack.
    pub errors: Vec<ConfigError>,
}

/// `STEWARD_*` variables as settings. A variable that names no option is a warning,
/// not an error: the environment is shared with other programs.
fn env_settings(vars: &[(String, String)], warnings: &mut Vec<Warning>) -> Vec<Setting> {
    let mut settings = Vec::new();
    for (var, value) in vars {
        if crate::vars::NOT_OPTIONS.contains(&var.as_str()) || var.starts_with("STEWARD_DEMO_") {
            continue;
        }
        let name = var["STEWARD_".len()..]
            .to_ascii_lowercase()
            .replace('_', "-");
        let origin = Origin::Env(var.clone());
        let Some(def) = table::lookup(&name) else {
            let hint = table::suggest(&name)
                .map(|s| format!(" (did you mean {}?)", table::env_var_of(s)))
                .unwrap_or_default();
            warnings.push(Warning {
                origin,
                message: format!("{var} names no steward option; ignored{hint}"),
            });
            continue;
        };
        let value = match def.kind() {
            Kind::List(separator) => RawValue::Many(
                value
                    .split(separator.char())
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => RawValue::One(value.clone()),
        };
        settings.push(Setting {
            key: name,
            value,
            origin,
        });
    }
    settings
}

/// The options and where each came from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The effective options.
    pub options: Options,
    /// For each option set by a source (by its name), where each of its values came from.
    origins: BTreeMap<String, Vec<Origin>>,
    /// What the sources said that steward ignores or reads differently.
    pub warnings: Vec<Warning>,
    file: Option<PathBuf>,
}

impl Config {
    /// Where the value(s) of `name` came from; `[Origin::Default]` if no source set it.
    pub fn origins(&self, name: &str) -> &[Origin] {
        const DEFAULT: &[Origin] = &[Origin::Default];
        self.origins.get(name).map_or(DEFAULT, Vec::as_slice)
    }

    /// Where value `index` of `name` came from. A list's values and their origins pair
    /// up by index; a value past the origins, which a source added at once (a TOML
    /// array, a STEWARD_* list) or split further (`unshare = mount,uts`), is given the
    /// last one.
    pub fn origin(&self, name: &str, index: usize) -> &Origin {
        let origins = self.origins(name);
        origins
            .get(index)
            .or(origins.last())
            .unwrap_or(&Origin::Default)
    }

    /// A problem of options together, placed at the file:line of the option that asks
    /// for what is missing (`die-on-idle` without `idle`, ...) when a source set it.
    fn located(&self, error: crate::OptionError) -> ConfigError {
        use crate::OptionError::*;
        let key = match error {
            DieOnIdleWithoutIdle => "die-on-idle",
            OnDemandWithoutListen => "on-demand",
            _ => return ConfigError::Invalid { error },
        };
        match self.origins(key) {
            [origin, ..] if *origin != Origin::Default => ConfigError::InvalidValue {
                origin: origin.clone(),
                key: key.to_owned(),
                error,
            },
            _ => ConfigError::Invalid { error },
        }
    }

    /// The config file read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Applies one source: an option it sets replaces what lower sources said (a list
    /// as a whole); within the source, list values accumulate and a repeated value wins.
    fn layer(&mut self, settings: &[Setting], errors: &mut Vec<ConfigError>) {
        let mut touched: HashSet<&str> = HashSet::new();
        for setting in settings {
            let Some(def) = table::lookup(&setting.key) else {
                errors.push(ConfigError::UnknownOption {
                    origin: setting.origin.clone(),
                    key: setting.key.clone(),
                    suggestion: table::suggest(&setting.key),
                });
                continue;
            };
            let first = touched.insert(def.key());
            let words = matches!(def.kind(), Kind::Words);
            if first || words {
                def.clear(&mut self.options);
            }
            if let Err(error) = self.apply(def, setting) {
                errors.push(error);
                continue;
            }
            let origins = self.origins.entry(def.key().to_owned()).or_default();
            if first || !matches!(def.kind(), Kind::List(_)) {
                origins.clear();
            }
            // One origin per value of a list, so that values and origins pair up by index
            // (hook errors and `steward check` name a value's line that way).
            let values = match (&setting.value, def.kind()) {
                (RawValue::Many(values), Kind::List(_)) => values.len(),
                _ => 1,
            };
            origins.extend(std::iter::repeat_n(setting.origin.clone(), values));
        }
    }

    /// Applies the value(s) of one setting to its option.
    fn apply(&mut self, def: &table::OptionDef, setting: &Setting) -> Result<(), ConfigError> {
        let invalid = |error| ConfigError::InvalidValue {
            origin: setting.origin.clone(),
            key: setting.key.clone(),
            error,
        };
        match (&setting.value, def.kind()) {
            (RawValue::One(value), Kind::Words) => {
                for word in value.split_whitespace() {
                    def.apply(&mut self.options, word).map_err(invalid)?;
                }
            }
            (RawValue::Many(values), Kind::Words | Kind::List(_)) => {
                for value in values {
                    def.apply(&mut self.options, value).map_err(invalid)?;
                }
            }
            (RawValue::One(value), _) => def.apply(&mut self.options, value).map_err(invalid)?,
            (RawValue::Many(_), Kind::Flag | Kind::Value) => {
                return Err(ConfigError::NotAList {
                    origin: setting.origin.clone(),
                    key: setting.key.clone(),
                })
            }
        }
        Ok(())
    }

    /// What `steward check` prints: every option with its value and where that came
    /// from, one line per value; unset options as comments.
    pub fn describe(&self) -> String {
        let mut lines: Vec<(String, String)> = Vec::new();
        for def in table::table().iter().filter(|def| def.key() == def.name()) {
            let values = def.show(&self.options);
            if values.is_empty() {
                let hook_phase = def
                    .name()
                    .strip_prefix("hook-")
                    .is_some_and(|phase| table::HOOK_PHASES.contains(&phase));
                if !hook_phase {
                    lines.push((format!("# {} is not set", def.name()), String::new()));
                }
                continue;
            }
            for (index, value) in values.iter().enumerate() {
                let origin = self.origin(def.name(), index).to_string();
                lines.push((format!("{} = {}", def.name(), display_value(value)), origin));
            }
        }
        let width = lines
            .iter()
            .map(|(line, _)| line.len())
            .filter(|len| *len <= 48)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (line, origin) in lines {
            if origin.is_empty() {
                out.push_str(&line);
            } else {
                out.push_str(&format!("{line:width$}  # {origin}"));
            }
            out.push('\n');
        }
        out
    }
}

fn display_value(value: &str) -> String {
    if value.is_empty() || value != value.trim() {
        format!("{value:?}")
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(key: &str, value: &str) -> Setting {
        Setting::one(key, value, Origin::Cli(format!("--{key}")))
    }

    #[test]
    fn env_and_cli_layer_per_option() {
        let sources = ConfigSources {
            file: None,
            env: vec![
                ("STEWARD_WORKERS".into(), "3".into()),
                ("STEWARD_READY".into(), "notify".into()),
                ("STEWARD_LISTEN".into(), "127.0.0.1:1, 127.0.0.1:2".into()),
                ("STEWARD_COMMAND".into(), "/bin/app --flag".into()),
                ("STEWARD_LOG".into(), "debug".into()),
            ],
            cli: vec![cli("workers", "5"), cli("listen", "127.0.0.1:3")],
        };
        let config = sources.load().unwrap();
        assert_eq!(config.options.workers, 5);
        assert_eq!(config.origins("workers"), [Origin::Cli("--workers".into())]);
        assert_eq!(config.options.ready, crate::ReadyMode::Notify);
        assert_eq!(
            config.origins("ready"),
            [Origin::Env("STEWARD_READY".into())]
        );
        // The command line's list replaces the environment's.
        assert_eq!(config.options.listen.len(), 1);
        assert_eq!(config.options.command, ["/bin/app", "--flag"]);
        assert_eq!(config.origins("vacuum"), [Origin::Default]);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn env_values_are_checked_and_strays_warned_about() {
        let sources = ConfigSources {
            env: vec![
                ("STEWARD_COMMAND".into(), "/bin/app".into()),
                ("STEWARD_WORKERZ".into(), "3".into()),
            ],
            ..ConfigSources::default()
        };
        let config = sources.load().unwrap();
        assert_eq!(
            config.warnings[0].to_string(),
            "STEWARD_WORKERZ: STEWARD_WORKERZ names no steward option; ignored (did you mean STEWARD_WORKERS?)"
        );

        let sources = ConfigSources {
            env: vec![
                ("STEWARD_COMMAND".into(), "/bin/app".into()),
                ("STEWARD_VACUUM".into(), "perhaps".into()),
            ],
            ..ConfigSources::default()
        };
        assert_eq!(
            sources.load().unwrap_err().to_string(),
            "STEWARD_VACUUM: vacuum: invalid boolean \"perhaps\": expected true or false (also yes/no, on/off, 1/0)"
        );
    }

    #[test]
    fn list_values_of_one_source_accumulate_and_show_their_origins() {
        let sources = ConfigSources {
            cli: vec![
                cli("command", "/bin/app"),
                cli("touch-reload", "/a"),
                cli("hook-asap", "print:1"),
                cli("exec-asap", "true"),
                cli("touch-reload", "/b"),
            ],
            ..ConfigSources::default()
        };
        let config = sources.load().unwrap();
        assert_eq!(
            config.options.touch_reload,
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let described = config.describe();
        assert!(described.contains("touch-reload = /b"), "{described}");
        assert!(described.contains("hook-asap = exec:true"), "{described}");
        assert!(described.contains("# pidfile is not set"), "{described}");
        assert!(
            described
                .lines()
                .any(|l| l.starts_with("workers = 1") && l.ends_with("# default")),
            "{described}"
        );
    }

    /// Each value of a TOML array is from the array's line, so a value after it (an
    /// `exec-asap` beside a `hook-asap` list) keeps its own line, and an error in the
    /// array names the array's.
    #[test]
    fn every_value_of_an_array_has_the_array_line() {
        let file = crate::files::tests::TempFile::new(
            "arrays.toml",
            "command = \"/bin/app\"\nhook-asap = [\"print:a\", \"print:b\"]\nexec-asap = \"echo c\"\n",
        );
        let at = |line| Origin::File {
            path: file.path.clone(),
            line,
        };
        let config = ConfigSources {
            file: Some(file.path.clone()),
            env: Vec::new(),
            cli: Vec::new(),
        }
        .load()
        .unwrap();
        assert_eq!(config.origins("hook-asap"), [at(2), at(2), at(3)]);
        let described = config.describe();
        assert!(
            described
                .lines()
                .any(|l| l.starts_with("hook-asap = print:b")
                    && l.ends_with(&format!("# {}:2", file.path.display()))),
            "{described}"
        );
    }

    /// uWSGI calls run-command-on-touch `touch-exec` (uwsgiconf's
    /// `run_command_on_touch` writes that): a uWSGI file's touch command runs.
    #[test]
    fn uwsgi_touch_exec_is_run_command_on_touch() {
        let file = crate::files::tests::TempFile::new(
            "touch.ini",
            "[uwsgi]\ncommand = /bin/app\ntouch-exec = /run/app/poke echo poked\n",
        );
        let config = ConfigSources {
            file: Some(file.path.clone()),
            env: Vec::new(),
            cli: Vec::new(),
        }
        .load()
        .unwrap();
        assert_eq!(
            config.options.run_command_on_touch,
            ["/run/app/poke echo poked"]
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(
            config.origins("run-command-on-touch"),
            [Origin::File {
                path: file.path.clone(),
                line: 3
            }]
        );
    }

    #[test]
    fn file_then_env_then_cli() {
        let file = crate::files::tests::TempFile::new(
            "layers.ini",
            "[uwsgi]\ncommand = /bin/app\nworkers = 2\ntouch-reload = /a\ntouch-reload = /b\nready = notify\nvacuum = true\nthunder-lock = true\n",
        );
        let at = |line| Origin::File {
            path: file.path.clone(),
            line,
        };
        let sources = |env: &[(&str, &str)], cli: Vec<Setting>| ConfigSources {
            file: Some(file.path.clone()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cli,
        };

        let config = sources(&[], Vec::new()).load().unwrap();
        assert_eq!(config.options.workers, 2);
        assert_eq!(config.origins("touch-reload"), [at(4), at(5)]);
        assert_eq!(config.warnings.len(), 1);
        let described = config.describe();
        assert!(
            described.lines().any(|l| l.starts_with("touch-reload = /b")
                && l.ends_with(&format!("# {}:5", file.path.display()))),
            "{described}"
        );

        let config = sources(
            &[("STEWARD_WORKERS", "3"), ("STEWARD_TOUCH_RELOAD", "/c")],
            vec![cli("ready", "immediate")],
        )
        .load()
        .unwrap();
        assert_eq!(config.options.workers, 3);
        assert_eq!(
            config.origins("workers"),
            [Origin::Env("STEWARD_WORKERS".into())]
        );
        assert_eq!(config.options.touch_reload, [PathBuf::from("/c")]);
        assert_eq!(config.options.ready, crate::ReadyMode::Immediate);
        assert!(config.options.vacuum);
        assert_eq!(config.origins("vacuum"), [at(7)]);

        let config = sources(&[("STEWARD_WORKERS", "3")], vec![cli("workers", "5")])
            .load()
            .unwrap();
        assert_eq!(config.options.workers, 5);
    }

    #[test]
    fn a_set_without_a_command_is_invalid() {
        let error = ConfigSources::default().load().unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { .. }), "{error}");
    }
}
