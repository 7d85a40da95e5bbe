//! `worker-watchdog`: harakiri for any program. A ready worker must send WATCHDOG=1
//! within every interval (it gets WATCHDOG_USEC and WATCHDOG_PID as from systemd, so
//! one that feeds systemd's watchdog already does), from its first one on: a program
//! that never sends one does not speak the protocol and is never aborted for it (a
//! uWSGI file's `harakiri` must not kill every app that never heard of WATCHDOG=1).
//! One that falls silent, or sends
//! WATCHDOG=trigger, is logged with the last STATUS= it sent, aborted (SIGABRT: a
//! core dump shows where it hung), killed after a short mercy (children.rs), and its
//! slot started again. Starting workers have the ready timeout instead.

use std::time::Instant;

use nix::unistd::Pid;
use steward_systemd::State;
use tracing::warn;

use super::{Action, Deadline, Supervisor, WorkerState};
use crate::events;

impl Supervisor {
    /// WATCHDOG=1 from `pid`: its next one is due within the interval.
    pub(super) fn heartbeat(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let Some(every) = self.settings.watchdog else {
            return;
        };
        let ready = self
            .workers
            .iter()
            .any(|w| w.pid == pid && w.state == WorkerState::Ready);
        if ready {
            out.push(Action::Arm(Deadline::Heartbeat(pid), now + every));
        }
    }

    /// No WATCHDOG=1 from `pid` within the interval.
    pub(super) fn heartbeat_missed(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let Some(every) = self.settings.watchdog else {
            return;
        };
        let reason = format!("no WATCHDOG=1 within {}s", every.as_secs_f64());
        self.watchdog_fired(pid, reason, now, out);
    }

    /// The watchdog caught ready worker `pid`: logged, aborted, replaced. Only with
    /// `worker-watchdog` set: WATCHDOG=trigger from a program not asked to feed a
    /// watchdog is left alone, as systemd does without WatchdogSec.
    pub(super) fn watchdog_fired(
        &mut self,
        pid: Pid,
        reason: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.settings.watchdog.is_none() {
            return;
        }
        let Some(worker) = self.workers.iter().find(|w| w.pid == pid) else {
            return;
        };
        if worker.state != WorkerState::Ready {
            return;
        }
        warn!(event = events::WORKER_WATCHDOG, worker = worker.id, generation = worker.generation,
            pid = %pid, reason = %reason, last_status = worker.status.as_deref().unwrap_or(""),
            "worker caught by the watchdog; aborting it");
        // systemctl status says it too: an operator looks there first.
        let status = format!(
            "worker {} (pid {pid}) aborted by the watchdog: {reason}",
            worker.id
        );
        out.push(Action::Notify(vec![State::Status(status)]));
        self.abort(pid, now, out);
    }
}
