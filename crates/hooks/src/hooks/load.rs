//! Every hook string, alarm and jail setting of a configuration into types, in one
//! pass: [`load`] is the only reader of those options, for `steward check`, a start
//! and a reload alike, so that what check accepts is what runs.

use std::{collections::BTreeMap, path::PathBuf};

use steward_options::Options;

use super::{Hook, TouchHook};
use crate::{action::WaitTimeouts, Action, Alarm, Callbacks, HookConfigError, Jail, Phase};

/// What [`load`] makes of a configuration.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) hooks: Vec<Hook>,
    pub(super) touch: Vec<TouchHook>,
    pub(super) alarms: Vec<Alarm>,
    pub(super) jail: Jail,
    pub(super) timeouts: WaitTimeouts,
}

/// Parses the hooks of `options` (`hook-<phase>`, `exec-<phase>`,
/// `run-command-on-event`, `hook-touch`, `run-command-on-touch`), its `alarm`s and its
/// jail (`unshare`, `chroot`), checking that each `call:` names one of `callbacks` and
/// each `alarm:` a declared alarm. The first error is returned, in that order.
pub(super) fn load(options: &Options, callbacks: &Callbacks) -> Result<Loaded, HookConfigError> {
    let (loaded, errors) = load_all(options, callbacks);
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(loaded),
    }
}

/// [`load`], going on past an error: what parses, and every error in the order
/// [`load`] meets them (`steward check` lists them all).
pub(super) fn load_all(options: &Options, callbacks: &Callbacks) -> (Loaded, Vec<HookConfigError>) {
    let mut errors = Vec::new();
    let alarms = keep_ok(alarms(options), &mut errors);
    let names = Names {
        callbacks,
        alarms: &alarms,
    };
    let mut hooks = keep_ok(phase_hooks(options, names), &mut errors);
    hooks.extend(keep_ok(event_commands(options), &mut errors));
    let mut touch = keep_ok(touch_hooks(options, names), &mut errors);
    touch.extend(keep_ok(touch_commands(options), &mut errors));
    let jail = Jail::new(options).unwrap_or_else(|error| {
        errors.push(error);
        Jail::default()
    });
    let loaded = Loaded {
        hooks,
        touch,
        alarms,
        jail,
        timeouts: WaitTimeouts {
            fs: options.wait_for_fs_timeout,
            socket: options.wait_for_socket_timeout,
        },
    };
    (loaded, errors)
}

/// The values of `results` that parsed; the errors go to `errors`.
fn keep_ok<T>(
    results: Vec<Result<T, HookConfigError>>,
    errors: &mut Vec<HookConfigError>,
) -> Vec<T> {
    let mut kept = Vec::new();
    for result in results {
        match result {
            Ok(value) => kept.push(value),
            Err(error) => errors.push(error),
        }
    }
    kept
}

/// The names an action may refer to: the callbacks and the declared alarms.
#[derive(Clone, Copy)]
struct Names<'a> {
    callbacks: &'a Callbacks,
    alarms: &'a [Alarm],
}

impl Names<'_> {
    /// Parses one action string, checking what it names.
    fn action(self, text: &str) -> Result<Action, String> {
        let action: Action = text
            .parse()
            .map_err(|e: crate::ActionParseError| e.to_string())?;
        match &action {
            Action::Call(name) if !self.callbacks.contains(name) => Err(format!(
                "call: no callback registered as {name:?} (call: names a function that a program embedding steward registers; the steward command has none)"
            )),
            Action::Alarm { name, .. } if !self.alarms.iter().any(|a| a.name == *name) => {
                Err(format!("alarm: no alarm named {name:?} (declare it: alarm = {name} cmd:COMMAND or alarm = {name} log:)"))
            }
            _ => Ok(action),
        }
    }
}

fn alarms(options: &Options) -> Vec<Result<Alarm, HookConfigError>> {
    let parse = |(index, text): (usize, &String)| {
        text.parse()
            .map_err(|e: crate::AlarmParseError| HookConfigError::new("alarm", index, text, e))
    };
    options.alarm.iter().enumerate().map(parse).collect()
}

/// `hook-<phase> = ACTION`, each with its index among the values of its phase's option.
fn phase_hooks(options: &Options, names: Names) -> Vec<Result<Hook, HookConfigError>> {
    let mut per_phase: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hooks = Vec::new();
    for (phase_name, text) in &options.hooks {
        let option = format!("hook-{phase_name}");
        let count = per_phase.entry(phase_name.as_str()).or_default();
        let index = *count;
        *count += 1;
        let error = |reason| HookConfigError::new(&option, index, text, reason);
        let hook = usable_phase(phase_name)
            .and_then(|phase| {
                let (namespaces, text) = match phase {
                    Phase::AsEmperorSetns => setns_namespaces(text)?,
                    _ => (Vec::new(), text.as_str()),
                };
                Ok((phase, namespaces, names.action(text)?))
            })
            .map_err(error)
            .map(|(phase, namespaces, action)| Hook {
                phase,
                action,
                namespaces,
                option: option.clone(),
                index,
            });
        hooks.push(hook);
    }
    hooks
}

/// `run-command-on-event = [PHASE ]COMMAND`.
fn event_commands(options: &Options) -> Vec<Result<Hook, HookConfigError>> {
    let option = "run-command-on-event";
    let hook = |(index, text): (usize, &String)| {
        let (phase, command) =
            event_command(text).map_err(|r| HookConfigError::new(option, index, text, r))?;
        Ok(Hook {
            phase,
            action: Action::Exec(command.to_owned()),
            namespaces: Vec::new(),
            option: option.to_owned(),
            index,
        })
    };
    options
        .run_command_on_event
        .iter()
        .enumerate()
        .map(hook)
        .collect()
}

/// The phase (asap if none is named) and the command of a `run-command-on-event`.
fn event_command(text: &str) -> Result<(Phase, &str), String> {
    let text = text.trim();
    let (phase, command) = match text.split_once(char::is_whitespace) {
        Some((first, rest)) => match first.parse::<Phase>() {
            Ok(_) => (usable_phase(first)?, rest.trim()),
            // A near miss of a phase is a typo, not a command (a short word like `as`
            // may be near `asap` and still be a program).
            Err(e) if e.suggestion().is_some() && (first.contains('-') || first.len() >= 5) => {
                return Err(format!(
                    "{e}; to run {first:?} as a command at asap, write run-command-on-event = asap {text}"
                ));
            }
            Err(_) => (Phase::Asap, text),
        },
        None if text.parse::<Phase>().is_ok() => {
            return Err("missing the command after the phase".into());
        }
        None => (Phase::Asap, text),
    };
    if command.is_empty() {
        return Err("missing the command".into());
    }
    Ok((phase, command))
}

/// `hook-touch = PATH ACTION`.
fn touch_hooks(options: &Options, names: Names) -> Vec<Result<TouchHook, HookConfigError>> {
    let hook = |(index, text): (usize, &String)| {
        let error = |reason| HookConfigError::new("hook-touch", index, text, reason);
        let (path, action) =
            path_and_rest(text).ok_or_else(|| error("expected PATH ACTION".into()))?;
        let action = names.action(action).map_err(error)?;
        Ok(TouchHook { path, action })
    };
    options.hook_touch.iter().enumerate().map(hook).collect()
}

/// `run-command-on-touch = PATH COMMAND`.
fn touch_commands(options: &Options) -> Vec<Result<TouchHook, HookConfigError>> {
    let hook = |(index, text): (usize, &String)| {
        let (path, command) = path_and_rest(text).ok_or_else(|| {
            HookConfigError::new("run-command-on-touch", index, text, "expected PATH COMMAND")
        })?;
        Ok(TouchHook {
            path,
            action: Action::Exec(command.to_owned()),
        })
    };
    options
        .run_command_on_touch
        .iter()
        .enumerate()
        .map(hook)
        .collect()
}

/// The phase, if steward can run hooks in it.
fn usable_phase(name: &str) -> Result<Phase, String> {
    let phase: Phase = name.parse().map_err(|e: crate::PhaseError| e.to_string())?;
    match phase {
        Phase::AsGateway => Err(format!(
            "phase {name} is not applicable: steward has no gateways"
        )),
        _ => Ok(phase),
    }
}

/// `hook-as-emperor-setns = [NAMESPACES ]ACTION`, uWSGI's: the vassal's namespaces to
/// enter, comma-separated as /proc/PID/ns names them (mnt, uts, ipc, net, pid, user,
/// cgroup; `mount` for mnt, as `unshare` says), then the action. Without them: every
/// namespace the vassal has of its own. An action always has a colon; a list never.
fn setns_namespaces(text: &str) -> Result<(Vec<String>, &str), String> {
    let text = text.trim();
    let Some((first, rest)) = text.split_once(char::is_whitespace) else {
        return Ok((Vec::new(), text));
    };
    if first.contains(':') {
        return Ok((Vec::new(), text));
    }
    let names = first.split(',').filter(|n| !n.is_empty()).map(|n| match n {
        "mount" | "mnt" => Ok("mnt".to_owned()),
        "uts" | "ipc" | "net" | "pid" | "user" | "cgroup" => Ok(n.to_owned()),
        other => Err(format!(
            "unknown namespace {other:?} before the action (mnt, uts, ipc, net, pid, user, cgroup)"
        )),
    });
    Ok((names.collect::<Result<_, _>>()?, rest.trim()))
}

fn path_and_rest(text: &str) -> Option<(PathBuf, &str)> {
    let (path, rest) = text.trim().split_once(char::is_whitespace)?;
    let rest = rest.trim();
    (!rest.is_empty()).then(|| (PathBuf::from(path), rest))
}
