//! Reloads (graceful and chain), the binary upgrade check, resizes and shutdown: the
//! transitions between the phases.

use std::time::Instant;

use steward_systemd::State;
use tracing::{error, info, warn};

use super::{Action, Awaiting, Deadline, Phase, Reload, Settings, Supervisor};
use crate::events;

impl Supervisor {
    pub(super) fn on_reload(
        &mut self,
        chain: bool,
        reexec: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.shutdown_at.is_some() {
            info!(
                event = events::RELOAD_IGNORED,
                "reload ignored: shutting down after the shutdown delay"
            );
            return;
        }
        match self.phase {
            Phase::Stopping { .. } => {
                info!(
                    event = events::RELOAD_IGNORED,
                    "reload ignored: shutting down"
                );
                return;
            }
            Phase::CheckingUpgrade { .. } => {
                // Its reload is still to come, and answers for this one too.
                info!(
                    event = events::RELOAD_IGNORED,
                    "reload folded into the pending one: the new binary's check is running"
                );
                return;
            }
            _ => {}
        }
        out.push(Action::Atexit);
        if reexec && self.serving.is_some() {
            self.phase = Phase::CheckingUpgrade {
                chain,
                since: now,
                reload: self.reload().copied(),
            };
            out.push(Action::StartUpgradeCheck);
            return;
        }
        self.start_reload(chain, now, out);
    }

    /// The reload itself, once as-user-atexit ran (here, or in the image that re-exec'd
    /// this one): a new generation, with the configuration read again.
    pub(super) fn start_reload(&mut self, chain: bool, now: Instant, out: &mut Vec<Action>) {
        self.latest += 1;
        self.current = self.latest;
        self.clear_respawns(out);
        if self.serving.is_some() {
            let status = State::Status(format!("reloading: starting generation {}", self.current));
            out.push(Action::Notify(vec![State::reloading_now(), status]));
        }
        self.phase = Phase::Reloading(Reload {
            generation: self.current,
            chain,
            started: now,
        });
        info!(
            event = events::RELOAD_STARTED,
            generation = self.current,
            strategy = if chain { "chain" } else { "graceful" },
            "reload started"
        );
        self.awaiting = Some(Awaiting::Config);
        out.push(Action::ReadConfig);
    }

    pub(super) fn config_read(&mut self, result: Result<Settings, String>, out: &mut Vec<Action>) {
        if self.awaiting != Some(Awaiting::Config) {
            return;
        }
        self.awaiting = None;
        match result {
            Ok(mut settings) => {
                // An adaptive count keeps where the load took it, within the new bounds.
                if let Some((min, max)) = settings.bounds {
                    settings.workers = self.settings.workers.clamp(min, max);
                }
                self.settings = settings
            }
            Err(reason) if self.serving.is_some() => self.abort_reload(reason, out),
            // The first generation is still starting: it goes on with what it has.
            Err(reason) => {
                error!(reason = %reason, "configuration not reloaded; starting with the previous one")
            }
        }
    }

    /// The reload to the current generation failed: the serving generation goes on.
    pub(super) fn abort_reload(&mut self, reason: String, out: &mut Vec<Action>) {
        let generation = self.current;
        let Some(serving) = self.serving else {
            return;
        };
        error!(event = events::RELOAD_FAILED, generation, serving, reason = %reason,
            "reload failed; the serving generation keeps serving");
        // systemd waits for READY=1 to end the reload, failed or not.
        let status = format!(
            "reload to generation {generation} failed: {reason}; generation {serving} serving"
        );
        out.push(Action::Notify(vec![State::Ready, State::Status(status)]));
        self.current = serving;
        self.phase = Phase::Serving;
        self.clear_respawns(out);
        out.push(Action::ReloadFinished {
            generation,
            result: Err(reason),
        });
    }

    pub(super) fn upgrade_checked(
        &mut self,
        result: Result<(), String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Phase::CheckingUpgrade { chain, .. } = self.phase else {
            return;
        };
        match result {
            Ok(()) => {
                self.stop_mules(true, now, out);
                out.push(Action::Reexec { chain });
            }
            Err(reason) => {
                error!(event = events::UPGRADE_REFUSED, error = %reason,
                    "re-exec refused; reloading with the running binary");
                self.start_reload(chain, now, out);
            }
        }
    }

    pub(super) fn reexec_failed(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::CheckingUpgrade { chain, .. } = self.phase else {
            return;
        };
        self.start_reload(chain, now, out);
    }

    /// One worker more or fewer (never fewer than one); nothing while shutting down.
    pub(super) fn resize(&mut self, more: bool) {
        if self.is_stopping() || self.resize_asleep(more) {
            return;
        }
        // Never below one worker; with cheaper, within its bounds.
        let (min, max) = self.settings.bounds.unwrap_or((1, usize::MAX));
        let workers = self.settings.workers;
        if more && workers >= max {
            warn!(
                event = events::RESIZE_REFUSED,
                workers, "not going above {max} workers"
            );
        } else if !more && workers <= min.max(1) {
            warn!(
                event = events::RESIZE_REFUSED,
                workers, "not going below {workers} worker(s)"
            );
        } else {
            self.settings.workers = if more { workers + 1 } else { workers - 1 };
            info!(
                event = events::WORKERS_RESIZED,
                workers = self.settings.workers,
                "one worker {}",
                if more { "more" } else { "fewer" }
            );
        }
    }

    pub(super) fn begin_shutdown(&mut self, graceful: bool, now: Instant, out: &mut Vec<Action>) {
        match self.phase {
            Phase::Stopping { graceful: false } => return,
            Phase::Stopping { graceful: true } if graceful => return,
            _ => {}
        }
        info!(
            event = events::SHUTDOWN_STARTED,
            mode = if graceful { "graceful" } else { "brutal" },
            workers = self.workers.len(),
            "shutdown started"
        );
        let previous = std::mem::replace(&mut self.phase, Phase::Stopping { graceful });
        self.clear_respawns(out);
        let stopped = || Err("shutdown started".to_owned());
        match previous {
            Phase::Reloading(reload) => out.push(Action::ReloadFinished {
                generation: reload.generation,
                result: stopped(),
            }),
            Phase::CheckingUpgrade { reload, .. } => {
                out.push(Action::KillUpgradeCheck);
                if let Some(reload) = reload {
                    out.push(Action::ReloadFinished {
                        generation: reload.generation,
                        result: stopped(),
                    });
                }
                out.push(Action::ReloadFinished {
                    generation: self.latest + 1,
                    result: stopped(),
                });
            }
            _ => {}
        }
        out.push(Action::Notify(vec![State::Stopping]));
        out.push(Action::ShuttingDown { graceful });
        self.stop_mules(graceful, now, out);
        let pids: Vec<_> = self.workers.iter().map(|w| w.pid).collect();
        for pid in pids {
            if graceful {
                self.retire(pid, now, out);
            } else {
                self.kill(pid, now, out);
            }
        }
    }

    fn clear_respawns(&mut self, out: &mut Vec<Action>) {
        for (id, generation) in self.respawns.drain(..) {
            out.push(Action::Disarm(Deadline::Respawn { id, generation }));
        }
    }
}
