//! The executor: every hook of a configuration, parsed up front (by `load`), run phase
//! by phase.

mod load;

use std::path::{Path, PathBuf};

use steward_options::Options;
use tracing::{info, warn};

use crate::{
    action::{run_plain_waiting, ActionError, WaitTimeouts},
    events, Action, Alarm, Callbacks, HookConfigError, HookError, Jail, Phase,
};

#[derive(Debug)]
struct Hook {
    phase: Phase,
    action: Action,
    /// `as-emperor-setns`: the vassal's namespaces to enter first (empty: all it has).
    namespaces: Vec<String>,
    /// Where it was written: the option and the index among its values.
    option: String,
    index: usize,
}

/// An action run when a watched path is touched or modified (`hook-touch`,
/// `run-command-on-touch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchHook {
    /// The watched file or directory.
    pub path: PathBuf,
    /// What to do.
    pub action: Action,
}

/// Every hook, touch hook and alarm of a configuration, and its jail, ready to run.
#[derive(Debug, Default)]
pub struct Hooks {
    hooks: Vec<Hook>,
    touch: Vec<TouchHook>,
    alarms: Vec<Alarm>,
    jail: Jail,
    callbacks: Callbacks,
    timeouts: WaitTimeouts,
}

impl Hooks {
    /// Parses every hook of `options` (`hook-<phase>`, `exec-<phase>`,
    /// `run-command-on-event`, `hook-touch`, `run-command-on-touch`), its alarms and its
    /// jail (`unshare`, `chroot`), checking that each `call:` names a registered
    /// callback and each `alarm:` a declared alarm. This is the one place those options
    /// are read: `steward check`, a start and a reload all come here.
    pub fn new(options: &Options, callbacks: Callbacks) -> Result<Hooks, HookConfigError> {
        let loaded = load::load(options, &callbacks)?;
        Ok(Hooks {
            hooks: loaded.hooks,
            touch: loaded.touch,
            alarms: loaded.alarms,
            jail: loaded.jail,
            callbacks,
            timeouts: loaded.timeouts,
        })
    }

    /// Every error [`Hooks::new`] would meet in `options`, not only the first
    /// (`steward check` lists them all).
    pub fn problems(options: &Options, callbacks: &Callbacks) -> Vec<HookConfigError> {
        load::load_all(options, callbacks).1
    }

    /// Parses the hooks of `options` as [`Hooks::new`] would, against this executor's
    /// callbacks, and keeps none of them: a running master checks a re-read
    /// configuration this way, so that a broken hook string fails the reload rather
    /// than the next start.
    pub fn check(&self, options: &Options) -> Result<(), HookConfigError> {
        load::load(options, &self.callbacks).map(drop)
    }

    /// The jail of the configuration: the namespaces to unshare and the directory to
    /// chroot into.
    pub fn jail(&self) -> &Jail {
        &self.jail
    }

    /// The `as-emperor-setns` hooks, in order: the vassal namespaces each enters (as
    /// /proc/PID/ns names them; empty: every one the vassal has of its own) and its
    /// action, which [`Hooks::execute`] runs once they are entered.
    pub fn setns_hooks(&self) -> Vec<(&[String], &Action)> {
        self.hooks
            .iter()
            .filter(|h| h.phase == Phase::AsEmperorSetns)
            .map(|h| (h.namespaces.as_slice(), &h.action))
            .collect()
    }

    /// Whether any hook runs in `phase`.
    pub fn has(&self, phase: Phase) -> bool {
        self.hooks.iter().any(|h| h.phase == phase)
    }

    /// Runs the hooks of `phase` in order. In a fatal phase the first failure stops
    /// them and is returned; elsewhere each failure is logged and the next hook runs.
    pub fn run(&self, phase: Phase) -> Result<(), HookError> {
        for hook in self.hooks.iter().filter(|h| h.phase == phase) {
            info!(event = events::HOOK_RUN, phase = %phase, action = %hook.action, "running hook");
            if let Err(cause) = self.execute(&hook.action) {
                if phase.is_fatal() {
                    return Err(HookError {
                        phase,
                        option: hook.option.clone(),
                        index: hook.index,
                        action: hook.action.to_string(),
                        cause: Box::new(cause),
                    });
                }
                warn!(event = events::HOOK_FAILED, phase = %phase, action = %hook.action, error = %cause, "hook failed; going on (the phase is not fatal)");
            }
        }
        Ok(())
    }

    /// Runs one action: the plain ones, and `call:` and `alarm:` with this executor's
    /// callbacks and alarms.
    pub fn execute(&self, action: &Action) -> Result<(), ActionError> {
        match action {
            Action::Call(name) => Ok(self.callbacks.call(name)?),
            Action::Alarm { name, message } => self
                .alarms
                .iter()
                .find(|a| a.name == *name)
                .ok_or_else(|| ActionError::NoAlarm(name.clone()))?
                .raise(message),
            other => run_plain_waiting(other, self.timeouts),
        }
    }

    /// The touch hooks, in configuration order (`hook-touch` first, then
    /// `run-command-on-touch`).
    pub fn touch_hooks(&self) -> &[TouchHook] {
        &self.touch
    }

    /// Runs the touch hooks watching `path`; a failure is logged, never fatal.
    pub fn run_touched(&self, path: &Path) {
        for hook in self.touch.iter().filter(|h| h.path == path) {
            info!(event = events::HOOK_RUN, path = %path.display(), action = %hook.action, "touched: running hook");
            if let Err(e) = self.execute(&hook.action) {
                warn!(event = events::HOOK_FAILED, path = %path.display(), action = %hook.action, error = %e, "touch hook failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{cell::Cell, rc::Rc};

    fn options(hooks: &[(&str, &str)]) -> Options {
        let mut options = Options::new(vec!["/bin/true".into()]);
        options.hooks = hooks
            .iter()
            .map(|(p, a)| (p.to_string(), a.to_string()))
            .collect();
        options
    }

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("steward-hooks-exec-{}-{name}", std::process::id()))
    }

    #[test]
    fn hooks_run_in_configuration_order_within_their_phase() {
        let out = scratch("order");
        let _ = std::fs::remove_file(&out);
        let o = out.display();
        let hooks = Hooks::new(
            &options(&[
                ("asap", &format!("exec:echo one >> {o}")),
                ("as-root", &format!("exec:echo root >> {o}")),
                ("asap", &format!("exec:echo two >> {o}")),
            ]),
            Callbacks::new(),
        )
        .unwrap();
        hooks.run(Phase::Asap).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\ntwo\n");
        hooks.run(Phase::AsRoot).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\ntwo\nroot\n");
        assert!(!hooks.has(Phase::PreApp));
        let _ = std::fs::remove_file(out);
    }

    #[test]
    fn a_fatal_phase_stops_at_the_first_failure_others_go_on() {
        let out = scratch("fatal");
        let _ = std::fs::remove_file(&out);
        let o = out.display();
        let after = format!("exec:echo after >> {o}");
        let hooks = Hooks::new(
            &options(&[
                ("as-root", "exec:exit 7"),
                ("as-root", &after),
                ("master-start", "exec:exit 7"),
                ("master-start", &after),
            ]),
            Callbacks::new(),
        )
        .unwrap();
        let err = hooks.run(Phase::AsRoot).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hook-as-root = exec:exit 7 failed: command \"exit 7\" failed: exit status 7"
        );
        assert!(!out.exists());
        hooks.run(Phase::MasterStart).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "after\n");
        let _ = std::fs::remove_file(out);
    }

    #[test]
    fn bad_hooks_are_refused_naming_the_option_and_value() {
        let err = |hooks: &[(&str, &str)]| {
            Hooks::new(&options(hooks), Callbacks::new())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[("asap", "exec:true"), ("asap", "mkdri:/x")]),
            "hook-asap = \"mkdri:/x\": unknown hook action \"mkdri\" in \"mkdri:/x\" (actions: mkdir, chdir, cd, exec, safeexec, call, callret, exit, writefifo, create, creat, write, writen, append, appendn, mount, umount, print, log, sethostname, hostname, unlink, alarm, putenv, chmod, chown, chown2, sticky, wait_for_fs, wait_for_file, wait_for_dir, wait_for_socket, spinningfifo)"
        );
        let e = Hooks::new(
            &options(&[("asap", "exec:true"), ("asap", "mkdri:/x")]),
            Callbacks::new(),
        )
        .unwrap_err();
        assert_eq!((e.option.as_str(), e.index), ("hook-asap", 1));
        assert!(err(&[("as-root", "call:warm")]).contains("no callback registered as \"warm\""));
        assert!(err(&[("as-root", "alarm:disk full")]).contains("no alarm named \"disk\""));
        // Emperor and vassal phases run (steward emperor), the on-demand ones too.
        for phase in [
            "emperor-start",
            "as-vassal",
            "emperor-lost",
            "as-emperor",
            "as-on-demand-vassal",
            "as-on-config-vassal",
        ] {
            assert!(Hooks::new(&options(&[(phase, "exec:true")]), Callbacks::new()).is_ok());
        }
        // as-emperor-setns: uWSGI's namespace list before the action, or none (all).
        let setns = Hooks::new(
            &options(&[
                ("as-emperor-setns", "mount,uts exec:hostname"),
                ("as-emperor-setns", "exec:true"),
            ]),
            Callbacks::new(),
        )
        .unwrap();
        let hooks = setns.setns_hooks();
        assert_eq!(hooks[0].0, ["mnt", "uts"]);
        assert_eq!(hooks[0].1.to_string(), "exec:hostname");
        assert!(hooks[1].0.is_empty());
        assert!(err(&[("as-emperor-setns", "mnt,time exec:true")])
            .contains("unknown namespace \"time\""));
        assert!(err(&[("as-gateway", "exec:true")]).contains("not applicable"));

        let mut o = options(&[]);
        o.hook_touch = vec!["/tmp/only-a-path".into()];
        let e = Hooks::new(&o, Callbacks::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "hook-touch = \"/tmp/only-a-path\": expected PATH ACTION"
        );
        let mut o = options(&[]);
        o.alarm = vec!["disk sms:123".into()];
        assert!(Hooks::new(&o, Callbacks::new())
            .unwrap_err()
            .to_string()
            .starts_with("alarm = "));
    }

    #[test]
    fn call_runs_a_registered_callback() {
        let calls = Rc::new(Cell::new(0));
        let mut callbacks = Callbacks::new();
        let counter = calls.clone();
        callbacks.register("count", move || {
            counter.set(counter.get() + 1);
            Ok(())
        });
        callbacks.register("refuse", || Err("not today".into()));
        let hooks = Hooks::new(
            &options(&[("master-start", "call:count"), ("post-app", "call:refuse")]),
            callbacks,
        )
        .unwrap();
        hooks.run(Phase::MasterStart).unwrap();
        assert_eq!(calls.get(), 1);
        let err = hooks.run(Phase::PostApp).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hook-post-app = call:refuse failed: callback \"refuse\" failed: not today"
        );
    }

    #[test]
    fn run_command_on_event_defaults_to_asap_and_takes_a_phase() {
        let mut o = options(&[]);
        o.run_command_on_event = vec!["echo hi".into(), "as-user echo user".into()];
        let hooks = Hooks::new(&o, Callbacks::new()).unwrap();
        assert!(hooks.has(Phase::Asap) && hooks.has(Phase::AsUser));
        assert_eq!(hooks.hooks[0].action, Action::Exec("echo hi".into()));
        assert_eq!(hooks.hooks[1].action, Action::Exec("echo user".into()));
        o.run_command_on_event = vec!["as-gateway echo".into()];
        assert!(Hooks::new(&o, Callbacks::new()).is_err());
    }

    /// A misspelled phase would otherwise become part of a command run at asap, which
    /// fails (fatally) at start, far from the typo.
    #[test]
    fn run_command_on_event_refuses_a_near_miss_of_a_phase() {
        let mut o = options(&[]);
        o.run_command_on_event = vec!["pre-ap touch /run/x".into()];
        let error = Hooks::new(&o, Callbacks::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "run-command-on-event = \"pre-ap touch /run/x\": unknown hook phase \"pre-ap\" (did you mean \"pre-app\"?); to run \"pre-ap\" as a command at asap, write run-command-on-event = asap pre-ap touch /run/x"
        );
        // A phase alone is a command missing, not a command named like a phase.
        o.run_command_on_event = vec!["as-root".into()];
        let error = Hooks::new(&o, Callbacks::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "run-command-on-event = \"as-root\": missing the command after the phase"
        );
        // The way out it names works, and short commands are never taken for phases.
        o.run_command_on_event = vec!["asap pre-ap touch /run/x".into(), "as x.s".into()];
        let hooks = Hooks::new(&o, Callbacks::new()).unwrap();
        assert_eq!(
            hooks.hooks[0].action,
            Action::Exec("pre-ap touch /run/x".into())
        );
        assert_eq!(hooks.hooks[1].action, Action::Exec("as x.s".into()));
    }

    #[test]
    fn alarms_are_raised_by_alarm_actions() {
        let out = scratch("alarm");
        let mut o = options(&[("master-start", "alarm:note it happened")]);
        o.alarm = vec![format!("note cmd:cat > {}", out.display())];
        let hooks = Hooks::new(&o, Callbacks::new()).unwrap();
        hooks.run(Phase::MasterStart).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "it happened\n");
        let _ = std::fs::remove_file(out);
    }

    #[test]
    fn touch_hooks_run_for_their_path() {
        let out = scratch("touch");
        let _ = std::fs::remove_file(&out);
        let mut o = options(&[]);
        o.hook_touch = vec![format!("/etc/app.flag write:{} touched", out.display())];
        o.run_command_on_touch = vec![format!("/etc/other echo other > {}", out.display())];
        let hooks = Hooks::new(&o, Callbacks::new()).unwrap();
        assert_eq!(hooks.touch_hooks().len(), 2);
        hooks.run_touched(std::path::Path::new("/etc/app.flag"));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "touched");
        hooks.run_touched(std::path::Path::new("/etc/other"));
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "other\n");
        let _ = std::fs::remove_file(out);
    }

    /// A reload checks with the same reader a start uses: the jail and the callbacks
    /// too, with nothing of the re-read configuration kept.
    #[test]
    fn check_refuses_what_new_refuses() {
        let mut callbacks = Callbacks::new();
        callbacks.register("warm", || Ok(()));
        let mut o = options(&[("master-start", "call:warm")]);
        o.unshare = vec!["uts".into()];
        let hooks = Hooks::new(&o, callbacks).unwrap();
        assert!(!hooks.jail().is_empty());
        assert_eq!(hooks.jail(), &Jail::new(&o).unwrap());

        hooks.check(&o).unwrap();
        let mut reread = options(&[("master-start", "call:cold")]);
        let error = hooks.check(&reread).unwrap_err();
        assert!(error.reason.contains("no callback registered as \"cold\""));
        reread.hooks.clear();
        reread.unshare = vec!["time-travel".into()];
        assert_eq!(hooks.check(&reread).unwrap_err().option, "unshare");
        assert!(!hooks.has(Phase::Asap) && hooks.has(Phase::MasterStart));
    }
}
