//! What a stop does besides stopping workers and mules: leftovers stop too, the sockets
//! nothing takes over refuse new connections, systemd is asked for time while workers
//! drain; and the limits that would stop a start half-way, named before it.

use std::{
    os::fd::{AsFd, AsRawFd},
    time::{Duration, Instant},
};

use steward_systemd::State;
use tracing::{info, warn};

use super::{Master, TimerKey};
use crate::events;

/// While workers drain in a shutdown, systemd is asked for more time this often, so its
/// stop timeout never cuts a drain shorter than the worker reload mercy.
const EXTEND_TIMEOUT_EVERY: Duration = Duration::from_secs(5);

impl Master {
    /// Beside the workers and mules stopping: what they left behind stops too, and
    /// systemd is asked for time while they drain.
    pub(super) fn shutting_down(&mut self) {
        let now = Instant::now();
        self.orphans_at_shutdown(now);
        self.refuse_new_connections();
        self.timers.arm(TimerKey::ExtendTimeout, now);
    }

    /// Once a stop begins, a socket that nothing will take over (not systemd's by
    /// activation, not in its fd store) refuses new connections at once, for every
    /// process that shares it: otherwise they would wait in the backlog through the
    /// whole drain and be reset at its end. Connections already accepted are served.
    /// TCP only: a unix listening socket shut down this way wedges some event loops
    /// (tokio's accept, in a forked worker, never saw its stop after it), so those
    /// keep queueing until the socket's last holder exits.
    fn refuse_new_connections(&self) {
        let fd_store = self.systemd.is_enabled() && steward_systemd::fd_store_capacity() > 0;
        for listener in &self.listeners {
            let unix = listener.description.starts_with("unix:");
            if listener.was_handed_over() || fd_store || unix {
                continue;
            }
            let fd = listener.as_fd().as_raw_fd();
            match nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read) {
                Ok(()) => {
                    info!(event = events::SOCKET_CLOSED, name = %listener.name, socket = %listener.description,
                    "stopping: the socket refuses new connections")
                }
                Err(errno) => {
                    warn!(name = %listener.name, error = %errno, "cannot close the socket to new connections")
                }
            }
        }
    }

    /// Asks systemd for enough time to let the draining workers finish, up to the last
    /// one's mercy; stops asking once none drains.
    pub(super) fn extend_stop_timeout(&mut self, now: Instant) {
        let (Some(last_kill), true) = (self.supervisor.last_kill(), self.systemd.is_enabled())
        else {
            return;
        };
        // Until the next extension and a margin for the SIGKILL and the reaping after it.
        let needed = last_kill
            .saturating_duration_since(now)
            .min(EXTEND_TIMEOUT_EVERY)
            + EXTEND_TIMEOUT_EVERY;
        self.notify_systemd(&[State::ExtendTimeout {
            usec: needed.as_micros() as u64,
        }]);
        self.timers
            .arm(TimerKey::ExtendTimeout, now + EXTEND_TIMEOUT_EVERY);
    }
}

/// More workers than this user may have processes, or than the system has pids, cannot
/// all start: said before the first fork, not discovered at the thirtieth.
pub(super) fn warn_about_worker_count(workers: usize) {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    let processes = getrlimit(Resource::RLIMIT_NPROC)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|soft| *soft != RLIM_INFINITY && !nix::unistd::getuid().is_root());
    let pid_max: Option<u64> = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|text| text.trim().parse().ok());
    for (limit, name) in [(processes, "RLIMIT_NPROC"), (pid_max, "kernel.pid_max")] {
        if let Some(limit) = limit.filter(|limit| workers as u64 >= *limit) {
            warn!(
                event = events::WORKERS_OVER_LIMIT,
                workers, limit, name, "{workers} workers cannot all start: {name} is {limit}"
            );
        }
    }
}
