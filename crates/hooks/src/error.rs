//! A hook that cannot run or failed, and where it was written: errors carry the option
//! and the index of the value, and [`HookConfigError::located`] and
//! [`HookError::origin`] turn those into the file:line, variable or flag a
//! [`Config`] read it from, for `steward check`, a start and a reload alike.

use steward_options::{Config, Origin};

use crate::{ActionError, Phase};

/// A hook of the configuration that cannot run, and where it was written: the option
/// and the index of the value among that option's values (so that a caller that knows
/// where each value came from can name the file and line).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{option} = {value:?}: {reason}")]
pub struct HookConfigError {
    /// The option (`hook-as-root`, `hook-touch`, `alarm`, `unshare`).
    pub option: String,
    /// The index of the value among the values of `option`.
    pub index: usize,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A hook of a fatal phase failed: steward stops (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("hook-{phase} = {action} failed: {cause}")]
pub struct HookError {
    /// The phase.
    pub phase: Phase,
    /// The option the hook was written as (`hook-as-root`, `run-command-on-event`) and
    /// the index of its value among that option's values, as in [`HookConfigError`],
    /// so that a caller that knows the origins can name the file and line.
    pub option: String,
    /// The index of the value among the values of `option`.
    pub index: usize,
    /// The action as written.
    pub action: String,
    /// Why it failed.
    pub cause: Box<ActionError>,
}

impl HookConfigError {
    pub(crate) fn new(option: &str, index: usize, value: &str, reason: impl ToString) -> Self {
        HookConfigError {
            option: option.to_owned(),
            index,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Where the value was written, if `config` read it from a file, a variable or a
    /// flag.
    pub fn origin<'c>(&self, config: &'c Config) -> Option<&'c Origin> {
        origin(config, &self.option, self.index)
    }

    /// The error, after the file:line, variable or flag it came from when `config`
    /// knows it: `/etc/app/steward.toml:7: hook-asap = "mkdri:/x": unknown hook action`.
    pub fn located(&self, config: &Config) -> String {
        match self.origin(config) {
            Some(origin) => format!("{origin}: {self}"),
            None => self.to_string(),
        }
    }
}

impl HookError {
    /// Where the failed hook was written, if `config` read it from a file, a variable
    /// or a flag.
    pub fn origin<'c>(&self, config: &'c Config) -> Option<&'c Origin> {
        origin(config, &self.option, self.index)
    }
}

/// The origin of value `index` of `option`; a default came from no source.
fn origin<'c>(config: &'c Config, option: &str, index: usize) -> Option<&'c Origin> {
    Some(config.origin(option, index)).filter(|origin| !matches!(origin, Origin::Default))
}

#[cfg(test)]
mod tests {
    use steward_options::ConfigSources;

    use super::*;
    use crate::{Callbacks, Hooks};

    fn config(env: &[(&str, &str)]) -> Config {
        ConfigSources {
            file: None,
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            cli: Vec::new(),
        }
        .load_without_command()
        .unwrap()
    }

    fn located(env: &[(&str, &str)]) -> String {
        let config = config(env);
        let error = Hooks::new(&config.options, Callbacks::new()).unwrap_err();
        error.located(&config)
    }

    #[test]
    fn a_config_error_names_where_its_value_was_written() {
        assert_eq!(
            located(&[("STEWARD_HOOK_ASAP", "mkdri:/x")]),
            format!(
                "STEWARD_HOOK_ASAP: hook-asap = \"mkdri:/x\": {}",
                "mkdri:/x".parse::<crate::Action>().unwrap_err()
            )
        );
        // One value, two namespaces: the second has the origin of the value.
        assert_eq!(
            located(&[("STEWARD_UNSHARE", "uts,time-travel")]),
            "STEWARD_UNSHARE: unshare = \"time-travel\": unknown namespace (mount, uts, ipc, pid, net, cgroup, user)"
        );
        // Options a program set have no origin to name.
        let error = HookConfigError::new("alarm", 0, "disk", "missing its handler");
        assert_eq!(
            error.located(&config(&[])),
            "alarm = \"disk\": missing its handler"
        );
    }

    #[test]
    fn a_failed_hook_names_where_it_was_written() {
        let config = config(&[("STEWARD_HOOK_AS_ROOT", "exec:exit 3")]);
        let hooks = Hooks::new(&config.options, Callbacks::new()).unwrap();
        let error = hooks.run(Phase::AsRoot).unwrap_err();
        assert_eq!(
            error.origin(&config),
            Some(&Origin::Env("STEWARD_HOOK_AS_ROOT".into()))
        );
        assert_eq!(config.origins("hook-asap"), [Origin::Default]);
        let asap = HookError {
            phase: Phase::Asap,
            option: "hook-asap".into(),
            ..error
        };
        assert_eq!(asap.origin(&config), None);
    }
}
