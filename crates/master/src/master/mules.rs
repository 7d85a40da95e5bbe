//! The master's side of mules: start them (as-mule hooks first), start them again when
//! they exit, stop them at shutdown.

use std::{os::fd::AsFd, time::Instant};

use nix::{sys::signal::Signal, sys::wait::WaitStatus, unistd::Pid};
use steward_hooks::Phase;
use tracing::{error, info, warn};

use super::{describe_exit, signal_group, Master, TimerKey};
use crate::{
    events,
    mule::{Mule, MuleState},
};

impl Master {
    /// Starts the mules whose start is due and kills those past their mercy; arms the
    /// timer of each for what comes next.
    pub(super) fn mules_due(&mut self, now: Instant) {
        self.start_due_mules(now);
        self.kill_late_mules(now);
        for (index, mule) in self.mules.iter().enumerate() {
            match mule.deadline() {
                Some(at) => self.timers.arm(TimerKey::Mule(index), at),
                None => self.timers.disarm(TimerKey::Mule(index)),
            }
        }
    }

    fn start_due_mules(&mut self, now: Instant) {
        if self.supervisor.is_stopping() {
            return;
        }
        for index in 0..self.mules.len() {
            let MuleState::Waiting { at } = self.mules[index].state else {
                continue;
            };
            if at > now {
                continue;
            }
            self.run_phase(Phase::AsMule);
            let mule = &mut self.mules[index];
            match mule.start(self.dev_null.as_fd()) {
                Ok(pid) => {
                    info!(event = events::MULE_STARTED, mule = mule.id, pid = %pid, command = %mule.command, "mule started")
                }
                Err(e) => {
                    let delay = mule.exited(self.supervisor.settings().backoff);
                    error!(mule = mule.id, command = %mule.command, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot start mule");
                }
            }
        }
    }

    /// A reaped child that is not a worker: if it is a mule, note it and plan its restart.
    pub(super) fn mule_exited(&mut self, pid: Pid, status: &WaitStatus) {
        let stopping = self.supervisor.is_stopping();
        let backoff = self.supervisor.settings().backoff;
        let Some(mule) = self.mules.iter_mut().find(|m| m.pid() == Some(pid)) else {
            return;
        };
        let how = describe_exit(status);
        // A mule stopped outside a shutdown (by a re-exec that failed) starts again.
        if stopping {
            info!(event = events::MULE_EXITED, mule = mule.id, pid = %pid, status = %how, "mule exited");
            mule.state = MuleState::Stopped;
            return;
        }
        let delay = mule.exited(backoff);
        warn!(event = events::MULE_EXITED, mule = mule.id, pid = %pid, status = %how, respawn_in_ms = delay.as_millis() as u64, "mule exited unexpectedly");
        self.mules_due(Instant::now());
    }

    /// Asks every mule to stop (SIGTERM, SIGKILL after the mercy), or kills them.
    pub(super) fn stop_mules(&mut self, graceful: bool, now: Instant) {
        for mule in &mut self.mules {
            match mule.state {
                MuleState::Running { pid, .. } => {
                    let signal = if graceful {
                        Signal::SIGTERM
                    } else {
                        Signal::SIGKILL
                    };
                    info!(mule = mule.id, pid = %pid, signal = %signal, "stopping mule");
                    signal_group(pid, signal);
                    mule.state = MuleState::Stopping {
                        pid,
                        kill_at: now + self.options.worker_reload_mercy,
                        killed: !graceful,
                    };
                }
                MuleState::Stopping {
                    pid, killed: false, ..
                } if !graceful => {
                    signal_group(pid, Signal::SIGKILL);
                    mule.state = MuleState::Stopping {
                        pid,
                        kill_at: now,
                        killed: true,
                    };
                }
                MuleState::Waiting { .. } => mule.state = MuleState::Stopped,
                _ => {}
            }
        }
        self.mules_due(now);
    }

    /// SIGKILL for mules that outlived the mercy.
    fn kill_late_mules(&mut self, now: Instant) {
        for mule in &mut self.mules {
            if let MuleState::Stopping {
                pid,
                kill_at,
                killed: false,
            } = mule.state
            {
                if now >= kill_at {
                    warn!(mule = mule.id, pid = %pid, "mule did not stop within the mercy; killing it");
                    signal_group(pid, Signal::SIGKILL);
                    mule.state = MuleState::Stopping {
                        pid,
                        kill_at,
                        killed: true,
                    };
                }
            }
        }
    }

    /// Whether any mule still runs.
    pub(super) fn mules_running(&self) -> bool {
        self.mules.iter().any(|m| m.pid().is_some())
    }
}

/// The mules of `commands`, none started yet.
pub(super) fn mules(commands: &[String]) -> Result<Vec<Mule>, crate::MasterError> {
    commands
        .iter()
        .enumerate()
        .map(|(index, command)| Mule::new(index + 1, command))
        .collect()
}
