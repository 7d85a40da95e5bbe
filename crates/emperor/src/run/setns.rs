//! `as-emperor-setns` (uWSGI's): the emperor's hooks run inside a vassal's namespaces.
//! A vassal with `unshare = ...` makes them at its start, after the emperor spawned it,
//! so the hooks run once it is ready (its first READY=1 after each start), entering the
//! namespaces of the master that said it. A child of the emperor enters them (setns on
//! /proc/PID/ns/...) and runs the hooks there; the emperor waits for it, at most
//! [`DEADLINE`]. A vassal without namespaces of its own (among those a hook names) has
//! nothing to enter: the hook does not run for it.

use std::{
    fs::File,
    os::{fd::AsFd, unix::fs::MetadataExt},
    time::{Duration, Instant},
};

use nix::{
    fcntl::OFlag,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sched::{setns, CloneFlags},
    sys::{
        signal::{kill, Signal},
        wait::{waitpid, WaitStatus},
    },
    unistd::{pipe2, Pid},
};
use steward_hooks::Action;
use tracing::{error, info, warn};

use super::Emperor;
use crate::{events, tyrant::Owner};

/// The longest the emperor waits for one hook's child; then it is killed.
const DEADLINE: Duration = Duration::from_secs(30);

/// The namespaces, in the order they are entered, as nsenter does: the user namespace
/// first (its rights are what let the others, which it owns, be entered). Each is
/// opened before any is entered.
const ORDER: [&str; 7] = ["user", "cgroup", "ipc", "uts", "net", "pid", "mnt"];

impl Emperor {
    /// Runs every `as-emperor-setns` hook for vassal `name`, whose master `master` just
    /// said READY=1 after a start.
    pub(super) fn run_setns_hooks(&self, name: &str, master: Pid, owner: Option<Owner>) {
        for (named, action) in self.settings.hooks.setns_hooks() {
            let entered = match own_namespaces(master, named) {
                Ok(entered) => entered,
                Err(e) => {
                    error!(event = events::VASSAL_SETNS_FAILED, vassal = %name, pid = %master, error = %e, "cannot open the vassal's namespaces; as-emperor-setns hook not run");
                    continue;
                }
            };
            if entered.is_empty() {
                continue;
            }
            let names: Vec<&str> = entered.iter().map(|(ns, _)| *ns).collect();
            let names = names.join(",");
            match self.run_entered(name, master, owner, &entered, action) {
                Ok(()) => {
                    info!(event = events::VASSAL_SETNS, vassal = %name, pid = %master, namespaces = %names, action = %action, "as-emperor-setns hook ran in the vassal's namespaces")
                }
                Err(e) => {
                    warn!(event = events::VASSAL_SETNS_FAILED, vassal = %name, pid = %master, namespaces = %names, action = %action, error = %e, "as-emperor-setns hook failed; going on (the phase is not fatal)")
                }
            }
        }
    }

    /// Forks a child that enters `entered` and runs `action` with uWSGI's variables,
    /// and waits for it (at most [`DEADLINE`]).
    fn run_entered(
        &self,
        name: &str,
        master: Pid,
        owner: Option<Owner>,
        entered: &[(&'static str, File)],
        action: &Action,
    ) -> Result<(), String> {
        // The child's end closes when it exits (close-on-exec: the hook's own commands
        // do not hold it): the emperor waits on that, not on a timer.
        let (done, child_end) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
        let (uid, gid) = super::command::ids(owner);
        let config = self.watch.path(name);
        let hooks = &self.settings.hooks;
        let child = steward_sys::fork_call(move || {
            let _held = child_end;
            for (ns, file) in entered {
                if let Err(e) = setns(file.as_fd(), CloneFlags::empty()) {
                    error!(namespace = ns, error = %e, "setns into the vassal's namespace failed");
                    return 1;
                }
            }
            std::env::set_var("UWSGI_VASSAL_CONFIG", &config);
            std::env::set_var("UWSGI_VASSAL_PID", master.to_string());
            std::env::set_var("UWSGI_VASSAL_UID", uid.to_string());
            std::env::set_var("UWSGI_VASSAL_GID", gid.to_string());
            let run = || match hooks.execute(action) {
                Ok(()) => 0,
                Err(e) => {
                    error!(error = %e, "as-emperor-setns hook failed in the vassal's namespaces");
                    1
                }
            };
            if !entered.iter().any(|(ns, _)| *ns == "pid") {
                return run();
            }
            // Entering a pid namespace moves only the children to come: the hook runs in
            // one, so that it and what it starts are in the vassal's (nsenter forks too).
            match steward_sys::fork_call(run).map(|inner| waitpid(inner, None)) {
                Ok(Ok(WaitStatus::Exited(_, code))) => code,
                _ => 1,
            }
        })
        .map_err(|e| e.to_string())?;
        let finished = wait_closed(&done, Instant::now() + DEADLINE);
        if !finished {
            let _ = kill(child, Signal::SIGKILL);
        }
        match waitpid(child, None) {
            _ if !finished => Err(format!("still running after {DEADLINE:?}; killed")),
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(status) => Err(format!("its child ended: {status:?}")),
            Err(e) => Err(format!("waitpid: {e}")),
        }
    }
}

/// Waits until every holder of the pipe's other end has closed it, or `deadline`.
fn wait_closed(done: &impl AsFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(done.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return false,
            // POLLHUP: the child's end is closed (it never writes).
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}

/// The namespaces of `master` among `named` (every kind if none is named) that are not
/// the emperor's own, opened, in [`ORDER`].
fn own_namespaces(master: Pid, named: &[String]) -> std::io::Result<Vec<(&'static str, File)>> {
    let mut entered = Vec::new();
    for ns in ORDER {
        if !named.is_empty() && !named.iter().any(|n| n == ns) {
            continue;
        }
        let theirs = format!("/proc/{master}/ns/{ns}");
        let (a, b) = match (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{ns}")),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            // A kind this kernel does not have, unless the hook names it.
            (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                if named.is_empty() {
                    continue;
                }
                return Err(e);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            entered.push((ns, File::open(&theirs)?));
        }
    }
    Ok(entered)
}
