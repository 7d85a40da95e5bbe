//! `idle`: once nothing has been served for `idle`, the master with `die-on-idle`
//! stops gracefully (and exits 0); without it (uWSGI's cheap mode) every worker
//! retires, the listening sockets join the loop's epoll set, and the first connection
//! that waits on one starts the workers again (a reload does too); it is then accepted
//! by a worker. steward sees no requests, so "idle" is read where any program's work
//! shows, sampled every quarter of `idle` (between 100 ms and 1 s) while workers run:
//!
//! - no connection waits in a TCP socket's accept queue (TCP_INFO);
//! - no worker holds a connection accepted from the sockets (/proc/PID/net/tcp, tcp6,
//!   unix, by the probe), whether a request is in flight or a keep-alive client just
//!   stays connected;
//! - the workers' CPU time (every thread's, /proc/PID/task/TID/schedstat, in
//!   nanoseconds) grew by less than [`CPU_NOISE`] since the last sample: a connection
//!   accepted, served and closed between two samples still used the CPU.
//!
//! A sample that sees any of these starts the idle time again. What it can miss: a
//! request served between two samples in less than [`CPU_NOISE`] of CPU time (a
//! static answer of a fast server), a connection held by a worker's child process,
//! or waiting in a unix socket's queue (which has no readable queue length). What it
//! can mistake for work: a worker that uses [`CPU_NOISE`] or more of CPU per sample by
//! itself (timers, a garbage collector), which then never idles out. Nothing of this
//! runs, and no timer is armed, in a master without `idle`, nor while cheap mode has
//! retired every worker (the sockets' readiness wakes the loop then).

use std::{
    os::fd::AsFd,
    time::{Duration, Instant},
};

use nix::unistd::Pid;
use steward_probe::{socket_inode, Probe};
use tracing::{info, warn};

use super::{Master, TimerKey, Token};
use crate::{events, supervisor::Event};

/// CPU time the workers may use between two samples and still be idle: the wake-ups
/// of an idle runtime (a tick, a heartbeat), not a request.
const CPU_NOISE: Duration = Duration::from_millis(2);

/// What the samples have seen so far.
#[derive(Debug, Default)]
pub(super) struct Idle {
    /// Since when nothing was seen.
    quiet_since: Option<Instant>,
    /// The workers' CPU time at the last sample, and which workers it was of.
    cpu: Option<(Vec<Pid>, Duration)>,
    probe: Option<Probe>,
    /// Cheap mode has retired every worker; the sockets are in the epoll set.
    asleep: bool,
}

impl Master {
    /// Arms the next sample when `idle` is set and workers run; nothing otherwise.
    pub(super) fn arm_idle(&mut self, now: Instant) {
        if !self.options.idle.is_zero() && !self.idle.asleep {
            let every =
                (self.options.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
            self.timers.arm(TimerKey::Idle, now + every);
        }
    }

    /// Samples; once nothing was seen for `idle`, the graceful stop (`die-on-idle`) or
    /// cheap mode's sleep.
    pub(super) fn idle_tick(&mut self, now: Instant) {
        if self.supervisor.is_stopping() || self.idle.asleep {
            return;
        }
        self.arm_idle(now);
        if self.busy() {
            self.idle.quiet_since = Some(now);
            return;
        }
        let since = *self.idle.quiet_since.get_or_insert(now);
        if now.duration_since(since) < self.options.idle {
            return;
        }
        if !self.options.die_on_idle {
            return self.fall_asleep();
        }
        info!(
            event = events::IDLE,
            idle_s = self.options.idle.as_secs_f64(),
            "idle: nothing served for {:?}; stopping (die-on-idle)",
            self.options.idle
        );
        self.dispatch(Event::Shutdown { graceful: true });
    }

    /// Cheap mode: every worker retires; the sockets wake the loop when a connection
    /// waits. A socket that cannot be watched keeps the workers running.
    fn fall_asleep(&mut self) {
        for (index, listener) in self.listeners.iter().enumerate() {
            if let Err(e) = self.registry.add(listener.as_fd(), Token::Listener(index)) {
                warn!(name = %listener.name, error = %e, "cheap mode: cannot watch the socket; the workers keep running");
                self.unwatch_listeners();
                return;
            }
        }
        self.idle = Idle {
            asleep: true,
            probe: self.idle.probe.take(),
            ..Idle::default()
        };
        self.dispatch(Event::Idle { asleep: true });
    }

    /// A connection waits on a socket, or a reload comes, while cheap mode has every
    /// worker retired: the workers start again, and the samples with them.
    pub(super) fn wake_up(&mut self, now: Instant) {
        if !self.idle.asleep {
            return;
        }
        self.unwatch_listeners();
        self.idle.asleep = false;
        self.idle.quiet_since = Some(now);
        self.dispatch(Event::Idle { asleep: false });
        self.arm_idle(now);
    }

    fn unwatch_listeners(&self) {
        for listener in &self.listeners {
            self.registry.remove(listener.as_fd());
        }
    }

    /// Whether a sample sees work: a connection waiting or held, or CPU time used.
    fn busy(&mut self) -> bool {
        let queued = self
            .listeners
            .iter()
            .filter_map(|l| steward_sys::accept_queue(l.as_fd()))
            .any(|queue| queue.queued > 0);
        let pids: Vec<Pid> = self.supervisor.workers().iter().map(|w| w.pid).collect();
        let cpu: Duration = pids.iter().map(|pid| cpu_time(*pid)).sum();
        let cpu_grew = match self.idle.cpu.replace((pids.clone(), cpu)) {
            // Another set of workers (one started, one gone) is no comparison: busy.
            Some((before, then)) if before == pids => cpu.saturating_sub(then) >= CPU_NOISE,
            _ => true,
        };
        if queued || cpu_grew {
            return true;
        }
        let listeners = &self.listeners;
        let probe = self.idle.probe.get_or_insert_with(|| {
            Probe::new(
                listeners
                    .iter()
                    .filter_map(|l| socket_inode(l.as_fd()).ok())
                    .collect(),
            )
        });
        pids.iter().any(|pid| probe.holds_connection(*pid))
    }
}

/// The CPU time of every thread of `pid` (schedstat's first field, nanoseconds); zero
/// for a process that is gone.
fn cpu_time(pid: Pid) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_time() {
        let before = cpu_time(Pid::this());
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(cpu_time(Pid::this()) > before);
        assert_eq!(cpu_time(Pid::from_raw(i32::MAX)), Duration::ZERO);
    }
}
