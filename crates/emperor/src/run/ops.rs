//! What the emperor does to vassals: check, start, reload, stop, reap, restart.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use nix::{
    sys::{
        signal::{kill, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};
use steward_hooks::Phase;
use steward_options::vars;
use tracing::{error, info, warn};

use super::{Emperor, Stop};
use crate::{
    events,
    timers::Timer,
    tyrant::Owner,
    vassal::{restart_delay, Vassal, VassalState},
    KEEPS_DYING,
};

impl Emperor {
    /// A new file: a new vassal, started if its configuration passes the check.
    pub(super) fn appeared(&mut self, name: String, now: Instant) {
        let config = self.watch.path(&name);
        self.vassals
            .insert(name.clone(), Vassal::new(name.clone(), config, now));
        self.start(&name, now);
    }

    /// Starts (again) a vassal that is not running: refused, waiting, or new.
    pub(super) fn restart(&mut self, name: &str, now: Instant) {
        self.timers.disarm(&Timer::Restart(name.to_owned()));
        let runs = self.vassals.get(name).is_none_or(|v| v.pid.is_some());
        if runs || self.stopping.is_some() {
            return;
        }
        if let Some(vassal) = self.vassals.get_mut(name) {
            vassal.restarts += 1;
            vassal.held = false;
        }
        self.start(name, now);
    }

    pub(super) fn start(&mut self, name: &str, now: Instant) {
        let Some(vassal) = self.vassals.get(name) else {
            return;
        };
        let config = vassal.config.clone();
        let owner = match self.check(name) {
            Ok(owner) => owner,
            Err(reason) => {
                let vassal = self.vassals.get_mut(name).expect("looked up above");
                vassal.set_state(VassalState::Refused, now);
                return warn!(event = events::VASSAL_REFUSED, vassal = %name, error = %reason, "vassal configuration refused; not started");
            }
        };
        if self.wait_on_demand(name, owner, now) {
            return;
        }
        std::env::set_var("UWSGI_VASSAL_CONFIG", &config);
        self.run_phase(Phase::AsEmperorBeforeVassal);
        let mut command = self.vassal_command(owner);
        command
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env(vars::EMPEROR_PID, std::process::id().to_string())
            .env(vars::VASSAL, name);
        if let Some(dir) = self.vassal_runtime_dir(name, owner) {
            command.env("RUNTIME_DIRECTORY", dir);
        }
        let spawned = self.spawn_vassal(name, &mut command, owner);
        let vassal = self.vassals.get_mut(name).expect("looked up above");
        let pid = match spawned {
            Ok(pid) => pid,
            Err(e) => {
                error!(event = events::VASSAL_SPAWN_FAILED, vassal = %name, error = %e, "cannot start vassal");
                vassal.set_state(VassalState::Refused, now);
                return;
            }
        };
        vassal.pid = Some(pid);
        vassal.owner = owner;
        vassal.stop_asked = false;
        vassal.set_state(VassalState::Starting, now);
        info!(event = events::VASSAL_STARTED, vassal = %name, pid = %pid, config = %config.display(), "vassal started");
        // uWSGI's four variables, for as-emperor's hooks: the vassal runs as the
        // emperor's user, or in tyrant mode as its file's owner.
        let (uid, gid) = super::command::ids(owner);
        std::env::set_var("UWSGI_VASSAL_PID", pid.to_string());
        std::env::set_var("UWSGI_VASSAL_UID", uid.to_string());
        std::env::set_var("UWSGI_VASSAL_GID", gid.to_string());
        self.run_phase(Phase::AsEmperor);
        for var in [
            "UWSGI_VASSAL_CONFIG",
            "UWSGI_VASSAL_PID",
            "UWSGI_VASSAL_UID",
            "UWSGI_VASSAL_GID",
        ] {
            std::env::remove_var(var);
        }
    }

    /// `steward check --quiet --config FILE`: what it prints on failure names the file
    /// and line. It takes a few milliseconds, during which the loop waits. In tyrant
    /// mode, the owner the vassal is to run as (the check runs as it too).
    fn check(&self, name: &str) -> Result<Option<Owner>, String> {
        let owner = self.vassal_owner(name)?;
        let output = self
            .vassal_command(owner)
            .args(["check", "--quiet", "--config"])
            .arg(self.watch.path(name))
            .output()
            .map_err(|e| format!("cannot run steward check: {e}"))?;
        if output.status.success() {
            return Ok(owner);
        }
        let text = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Err(lines.join("; "))
    }

    /// A running vassal's file changed: reloaded (SIGHUP) if the new text passes the
    /// check, else it keeps serving on what it has.
    pub(super) fn reload(&mut self, name: &str, reason: &str) {
        let owner = match self.check(name) {
            Ok(owner) => owner,
            Err(error) => {
                return warn!(event = events::VASSAL_REFUSED, vassal = %name, error = %error, "vassal configuration refused; the vassal keeps its configuration")
            }
        };
        let Some(vassal) = self.vassals.get_mut(name) else {
            return;
        };
        let Some(pid) = vassal.pid else { return };
        if vassal.owner != owner {
            // Tyrant mode: a new owner is a new vassal; it starts again once stopped.
            warn!(event = events::VASSAL_OWNER_CHANGED, vassal = %name, pid = %pid, "the vassal file's owner changed; restarting the vassal as the new owner");
            return ask_stop(vassal, pid, Signal::SIGTERM);
        }
        vassal.set_state(VassalState::Reloading, Instant::now());
        info!(event = events::VASSAL_RELOADING, vassal = %name, pid = %pid, reason, "reloading vassal");
        let _ = kill(pid, Signal::SIGHUP);
    }

    /// Its file is gone: the vassal stops gracefully (SIGTERM), and is forgotten.
    pub(super) fn removed(&mut self, name: &str) {
        self.timers.disarm(&Timer::Restart(name.to_owned()));
        let Some(vassal) = self.vassals.get_mut(name) else {
            return;
        };
        match vassal.pid {
            Some(pid) => ask_stop(vassal, pid, Signal::SIGTERM),
            None => self.forget(name),
        }
    }

    /// `steward stop --vassal NAME`: that vassal stops (gracefully, or brutally) and
    /// stays stopped until its file changes. The answer, or why not.
    pub(super) fn stop_one(&mut self, name: &str, brutal: bool) -> Result<String, String> {
        let vassal = self.vassals.get_mut(name).ok_or_else(|| no_vassal(name))?;
        let Some(pid) = vassal.pid else {
            return Err(format!(
                "vassal {name} is not running ({})",
                vassal.state.name()
            ));
        };
        vassal.held = true;
        self.timers.disarm(&Timer::Restart(name.to_owned()));
        let signal = if brutal {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        };
        ask_stop(vassal, pid, signal);
        let again = if self.is_on_demand(name) {
            "at its next connection"
        } else {
            "when its file changes"
        };
        Ok(format!(
            "stopping vassal {name} (pid {pid}); it starts again {again}"
        ))
    }

    /// SIGHUP to the emperor: every running vassal reloads; READY=1 (with RELOADING=1
    /// first) once each is ready again.
    pub(super) fn reload_all(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        info!(
            event = events::EMPEROR_RELOADING,
            vassals = self.vassals.len(),
            "reloading every vassal"
        );
        let _ = self
            .upstream
            .send(&[steward_systemd::State::reloading_now()]);
        self.ready_sent = false;
        let names: Vec<String> = self.vassals.keys().cloned().collect();
        for name in names {
            if self.vassals[&name].pid.is_some() {
                self.reload(&name, "emperor reload");
            }
        }
    }

    /// SIGTERM (graceful) or SIGINT/SIGQUIT (brutal) to the emperor: every vassal is
    /// asked the same; the loop ends when all are gone.
    pub(super) fn stop_all(&mut self, how: Stop) {
        if self.stopping == Some(Stop::Brutal) || self.stopping == Some(how) {
            return;
        }
        self.stopping = Some(how);
        let _ = self.upstream.send(&[steward_systemd::State::Stopping]);
        let mode = if how == Stop::Graceful {
            "graceful"
        } else {
            "brutal"
        };
        info!(
            event = events::EMPEROR_STOPPING,
            mode, "stopping every vassal"
        );
        let signal = match how {
            Stop::Graceful => Signal::SIGTERM,
            Stop::Brutal => Signal::SIGINT,
        };
        for vassal in self.vassals.values_mut() {
            if let Some(pid) = vassal.pid {
                ask_stop(vassal, pid, signal);
            }
        }
    }

    /// Waits for every exited child: a vassal asked to stop is gone; one that died
    /// unasked starts again after its throttled wait.
    pub(super) fn reap(&mut self) {
        let now = Instant::now();
        let stopping = self.stopping.is_some();
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            let idle = matches!(status, WaitStatus::Exited(_, 0));
            let (pid, text) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exit status {code}")),
                WaitStatus::Signaled(pid, signal, _) => (pid, format!("killed by {signal}")),
                WaitStatus::StillAlive => return,
                _ => continue,
            };
            let Some(vassal) = self.vassal_by_pid(pid) else {
                continue;
            };
            vassal.pid = None;
            vassal.control = None;
            let name = vassal.name.clone();
            if vassal.stop_asked || stopping {
                info!(event = events::VASSAL_EXITED, vassal = %name, pid = %pid, status = %text, "vassal exited");
                let held = vassal.held;
                self.stopped_waiters(&name);
                if stopping || !self.watch.path(&name).is_file() {
                    self.forget(&name);
                } else if held && self.is_on_demand(&name) {
                    // Its socket is still the emperor's: it waits for a connection again.
                    if let Some(vassal) = self.vassals.get_mut(&name) {
                        vassal.held = false;
                    }
                    self.start(&name, now);
                } else if held {
                    vassal_stopped(self.vassals.get_mut(&name), now);
                } else {
                    // Removed and put back before it was gone: it starts again.
                    self.restart(&name, now);
                }
                continue;
            }
            if idle && self.back_to_on_demand(&name, pid, now) {
                continue;
            }
            let vassal = self.vassals.get_mut(&name).expect("found above");
            vassal.deaths += 1;
            vassal.set_state(VassalState::Waiting, now);
            let deaths = vassal.deaths;
            let wait = restart_delay(self.settings.throttle, deaths);
            warn!(event = events::VASSAL_DIED, vassal = %name, pid = %pid, status = %text, deaths, restart_in_ms = wait.as_millis() as u64, "vassal died");
            if deaths >= KEEPS_DYING {
                error!(event = events::VASSAL_KEEPS_DYING, vassal = %name, deaths, "vassal keeps dying; restarts are throttled");
            }
            self.timers.arm(Timer::Restart(name), now + wait);
        }
    }
}

/// A stopped vassal asked to stay down (`steward stop --vassal`).
fn vassal_stopped(vassal: Option<&mut Vassal>, now: Instant) {
    if let Some(vassal) = vassal {
        vassal.set_state(VassalState::Stopped, now);
    }
}

impl Emperor {
    /// The directory that holds the emperor's runtime files: its control socket's, or
    /// under systemd RUNTIME_DIRECTORY (where the control socket is by default).
    fn runtime_dir(&self) -> Option<PathBuf> {
        if let Some(parent) = self.settings.control.as_deref().and_then(Path::parent) {
            return Some(parent.to_owned());
        }
        let runtime = std::env::var_os("RUNTIME_DIRECTORY")?;
        Some(PathBuf::from(runtime.to_str()?.split(':').next()?))
    }

    /// Each vassal gets a runtime directory of its own beside the emperor's files,
    /// `vassal.NAME`: its default control socket (`control.sock`, which `steward reload
    /// --vassal NAME` reaches) and notify files do not collide with the emperor's or
    /// another vassal's.
    fn vassal_runtime_dir(&self, name: &str, owner: Option<Owner>) -> Option<PathBuf> {
        let dir = self.runtime_dir()?.join(format!("vassal.{name}"));
        // In tyrant mode the vassal's own: it binds its control socket there.
        let made = std::fs::create_dir_all(&dir).and_then(|()| match owner {
            Some(o) => nix::unistd::chown(&dir, Some(o.uid), Some(o.gid)).map_err(Into::into),
            None => Ok(()),
        });
        match made {
            Ok(()) => Some(dir),
            Err(e) => {
                warn!(vassal = %name, dir = %dir.display(), error = %e, "cannot make the vassal's runtime directory");
                None
            }
        }
    }

    /// A vassal whose file is gone leaves the table, and its runtime directory goes
    /// (its master leaves its control socket behind, as any master without `vacuum`).
    pub(super) fn forget(&mut self, name: &str) {
        self.vassals.remove(name);
        if let Some(dir) = self.runtime_dir() {
            let _ = std::fs::remove_dir_all(dir.join(format!("vassal.{name}")));
        }
    }
}

fn ask_stop(vassal: &mut Vassal, pid: Pid, signal: Signal) {
    vassal.stop_asked = true;
    vassal.set_state(VassalState::Stopping, Instant::now());
    info!(event = events::VASSAL_STOPPING, vassal = %vassal.name, pid = %pid, signal = %signal, "stopping vassal");
    let _ = kill(pid, signal);
}

/// The emperor's own settings, as STEWARD_NAME variables, that its vassals do not get.
pub(super) const NOT_PASSED: [&str; 10] = [
    "CONFIG",
    "CONTROL_SOCKET",
    "EMPEROR",
    "EMPEROR_THROTTLE",
    "EMPEROR_TYRANT",
    "EMPEROR_TYRANT_NOFOLLOW",
    "VASSALS_INHERIT",
    "VASSALS_INCLUDE",
    "VASSAL_INHERIT",
    "VASSAL_INCLUDE",
];

impl Emperor {
    /// The steward binary, for a vassal or its check: stdin from /dev/null, and the
    /// emperor's own settings, if given by environment, taken out: they are not the
    /// vassals' (each would bind the emperor's control socket, or be an emperor itself).
    pub(super) fn steward(&self) -> Command {
        let mut command = Command::new(&self.settings.steward);
        command.stdin(Stdio::null());
        for name in NOT_PASSED {
            command.env_remove(format!("STEWARD_{name}"));
        }
        command
    }

    /// Runs a phase of the emperor's own hooks; none of them is fatal, so a failure is
    /// logged by the executor and the vassal's start goes on.
    fn run_phase(&self, phase: Phase) {
        if let Err(e) = self.settings.hooks.run(phase) {
            error!(error = %e, "hook failed");
        }
    }
}

/// The error for a vassal name the emperor does not know.
pub(super) fn no_vassal(name: &str) -> String {
    format!("no vassal named {name:?} (the names are the file names in the vassal directory; `steward status` lists them)")
}
