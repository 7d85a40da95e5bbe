//! Stopping a supervised child, worker or mule, the same way: the stop signal (or
//! SIGABRT for a worker the watchdog caught), then SIGKILL when the mercy runs out.

use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tracing::warn;

use super::{Action, Deadline, Supervisor, WorkerState};
use crate::events;

/// How long an aborted worker may take to dump its core before SIGKILL (at most).
pub(super) const ABORT_MERCY: Duration = Duration::from_secs(5);

impl Supervisor {
    /// The state of the worker or mule `pid`.
    fn child_state(&mut self, pid: Pid) -> Option<&mut WorkerState> {
        if let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) {
            return Some(&mut worker.state);
        }
        self.mules
            .running
            .iter_mut()
            .find(|m| m.pid == pid)
            .map(|m| &mut m.state)
    }

    /// Asks child `pid` to stop; SIGKILL follows after the mercy.
    pub(super) fn retire(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let kill_at = now + self.settings.mercy;
        self.stop_with(pid, Action::Stop(pid), kill_at, out);
    }

    /// SIGABRT for child `pid` (a core dump, where enabled, shows where it was stuck);
    /// SIGKILL follows after a short mercy: it is wedged, not draining.
    pub(super) fn abort(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let kill_at = now + self.settings.mercy.min(ABORT_MERCY);
        self.stop_with(pid, Action::Abort(pid), kill_at, out);
    }

    /// `signal` (a Stop or an Abort) for child `pid`, then SIGKILL at `kill_at`.
    fn stop_with(&mut self, pid: Pid, signal: Action, kill_at: Instant, out: &mut Vec<Action>) {
        let Some(state) = self.child_state(pid) else {
            return;
        };
        if matches!(state, WorkerState::Stopping { .. }) {
            return;
        }
        *state = WorkerState::Stopping {
            kill_at,
            killed: false,
        };
        out.push(Action::Disarm(Deadline::ReadyAfter(pid)));
        out.push(Action::Disarm(Deadline::ReadyTimeout(pid)));
        // A stopping worker is neither recycled nor watched any more.
        out.push(Action::Disarm(Deadline::Lifetime(pid)));
        out.push(Action::Disarm(Deadline::Heartbeat(pid)));
        out.push(signal);
        out.push(Action::Arm(Deadline::Mercy(pid), kill_at));
    }

    /// SIGKILL for child `pid`, at once.
    pub(super) fn kill(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let Some(state) = self.child_state(pid) else {
            return;
        };
        match *state {
            WorkerState::Stopping { killed: true, .. } => return,
            WorkerState::Stopping { killed: false, .. } => {
                out.push(Action::Disarm(Deadline::Mercy(pid)))
            }
            _ => {
                out.push(Action::Disarm(Deadline::ReadyAfter(pid)));
                out.push(Action::Disarm(Deadline::ReadyTimeout(pid)));
            }
        }
        *state = WorkerState::Stopping {
            kill_at: now,
            killed: true,
        };
        out.push(Action::Kill(pid));
    }

    /// The mercy of child `pid` ran out: killed, if it is still there.
    pub(super) fn mercy_over(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let mercy_ms = self.settings.mercy.as_millis() as u64;
        if let Some(worker) = self.workers.iter().find(|w| w.pid == pid) {
            if let WorkerState::Stopping { killed: false, .. } = worker.state {
                warn!(event = events::WORKER_KILLED, worker = worker.id, generation = worker.generation,
                    pid = %pid, mercy_ms, "worker did not stop within the mercy; killing it");
            }
        } else if let Some(mule) = self.mules.running.iter().find(|m| m.pid == pid) {
            warn!(event = events::MULE_KILLED, mule = mule.id, pid = %pid, mercy_ms,
                "mule did not stop within the mercy; killing it");
        }
        self.kill(pid, now, out);
    }

    /// When the last draining child will be killed, if one drains.
    pub fn last_kill(&self) -> Option<Instant> {
        let workers = self.workers.iter().map(|w| w.state);
        let mules = self.mules.running.iter().map(|m| m.state);
        workers
            .chain(mules)
            .filter_map(|state| match state {
                WorkerState::Stopping {
                    kill_at,
                    killed: false,
                } => Some(kill_at),
                _ => None,
            })
            .max()
    }
}
