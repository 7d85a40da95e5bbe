//! Mules (`mule = COMMAND`): children kept alive beside the workers, without sockets,
//! generations or readiness. Started with the first generation (and again by each
//! image after a re-exec), started again after a crash with the workers' backoff,
//! stopped at shutdown and before a re-exec, by the same stop and mercy as workers.

use std::time::{Duration, Instant};

use nix::unistd::Pid;
use tracing::{error, info, warn};

use super::{Action, Backoff, Deadline, Supervisor, WorkerState};
use crate::events;

/// The mules and their crash history.
#[derive(Debug, Default)]
pub(crate) struct Mules {
    /// How many are configured; ids are 1..=count.
    count: usize,
    /// Those that run (or are stopping).
    pub running: Vec<Mule>,
    /// Crash history per id (index id - 1).
    backoffs: Vec<Backoff>,
    /// Ids waiting out their backoff.
    waiting: Vec<usize>,
}

impl Mules {
    pub fn new(count: usize) -> Mules {
        Mules {
            count,
            backoffs: vec![Backoff::default(); count],
            ..Mules::default()
        }
    }
}

/// One running mule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mule {
    /// 1-based, in configuration order: STEWARD_MULE_ID.
    pub id: usize,
    pub pid: Pid,
    pub started: Instant,
    /// Ready while it runs, then Stopping.
    pub state: WorkerState,
}

impl Supervisor {
    /// Asks for every mule to be started.
    pub(super) fn start_mules(&mut self, out: &mut Vec<Action>) {
        out.extend((1..=self.mules.count).map(Action::StartMule));
    }

    pub(super) fn mule_started(&mut self, id: usize, pid: Pid, now: Instant) {
        self.mules.running.push(Mule {
            id,
            pid,
            started: now,
            state: WorkerState::Ready,
        });
    }

    pub(super) fn mule_start_failed(
        &mut self,
        id: usize,
        how: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let delay = self.mule_crashed(id, Duration::ZERO, now, out);
        error!(mule = id, error = %how, retry_in_ms = delay.as_millis() as u64, "cannot start mule");
    }

    /// Child `pid` exited: what follows if it was a mule.
    pub(super) fn mule_exited(&mut self, pid: Pid, how: &str, now: Instant, out: &mut Vec<Action>) {
        let Some(index) = self.mules.running.iter().position(|m| m.pid == pid) else {
            return;
        };
        let mule = self.mules.running.swap_remove(index);
        if let WorkerState::Stopping { killed: false, .. } = mule.state {
            out.push(Action::Disarm(Deadline::Mercy(pid)));
        }
        if self.is_stopping() {
            info!(event = events::MULE_EXITED, mule = mule.id, pid = %pid, status = %how, "mule exited");
        } else if matches!(mule.state, WorkerState::Stopping { .. }) {
            // Stopped for a re-exec that did not happen: this image keeps it.
            info!(event = events::MULE_EXITED, mule = mule.id, pid = %pid, status = %how, "mule exited; starting it again");
            out.push(Action::StartMule(mule.id));
        } else {
            let lived = now.saturating_duration_since(mule.started);
            let delay = self.mule_crashed(mule.id, lived, now, out);
            warn!(event = events::MULE_EXITED, mule = mule.id, pid = %pid, status = %how,
                respawn_in_ms = delay.as_millis() as u64, "mule exited unexpectedly");
        }
    }

    /// Mule `id` crashed after `lived`: started again after its backoff.
    fn mule_crashed(
        &mut self,
        id: usize,
        lived: Duration,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Duration {
        let delay = self.mules.backoffs[id - 1].crashed(0, lived, self.settings.backoff);
        if delay.is_zero() {
            out.push(Action::StartMule(id));
        } else {
            self.mules.waiting.push(id);
            out.push(Action::Arm(Deadline::MuleRespawn(id), now + delay));
        }
        delay
    }

    pub(super) fn mule_respawn_due(&mut self, id: usize, out: &mut Vec<Action>) {
        self.mules.waiting.retain(|waiting| *waiting != id);
        if !self.is_stopping() {
            out.push(Action::StartMule(id));
        }
    }

    /// Stops every mule (SIGKILL at once unless `graceful`); none waits to start again.
    pub(super) fn stop_mules(&mut self, graceful: bool, now: Instant, out: &mut Vec<Action>) {
        for id in self.mules.waiting.drain(..) {
            out.push(Action::Disarm(Deadline::MuleRespawn(id)));
        }
        let pids: Vec<Pid> = self.mules.running.iter().map(|m| m.pid).collect();
        for pid in pids {
            if graceful {
                self.retire(pid, now, out);
            } else {
                self.kill(pid, now, out);
            }
        }
    }

    /// The running mule `pid`, if it is one.
    pub fn mule(&self, pid: Pid) -> Option<&Mule> {
        self.mules.running.iter().find(|m| m.pid == pid)
    }
}
