//! `shutdown-delay`: a graceful shutdown that first keeps serving, reported not ready,
//! so that a load balancer (Kubernetes' endpoints, which hear of the stop at the same
//! time as the pod's SIGTERM) stops sending before the workers stop accepting.

use std::time::Instant;

use steward_systemd::State;
use tracing::info;

use super::{Action, Deadline, Phase, Supervisor};
use crate::events;

impl Supervisor {
    /// A shutdown was asked for: at once, or once the delay is over when it is graceful,
    /// a delay is set and a generation serves (with nothing served, no balancer sends).
    pub(super) fn shutdown_requested(
        &mut self,
        graceful: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let delay = self.settings.shutdown_delay;
        let delayable = graceful
            && !delay.is_zero()
            && self.serving.is_some()
            && !matches!(self.phase, Phase::Stopping { .. });
        if !delayable {
            if self.shutdown_at.take().is_some() {
                out.push(Action::Disarm(Deadline::ShutdownDelay));
            }
            self.begin_shutdown(graceful, now, out);
            return;
        }
        if self.shutdown_at.is_some() {
            info!("shutdown already under way: serving until the shutdown delay is over");
            return;
        }
        let at = now + delay;
        self.shutdown_at = Some(at);
        info!(
            event = events::SHUTDOWN_DELAYED,
            delay_ms = delay.as_millis() as u64,
            "shutdown requested: not ready, serving until the shutdown delay is over"
        );
        let status = format!(
            "stopping in {} ms: not ready, still serving",
            delay.as_millis()
        );
        out.push(Action::Notify(vec![State::Stopping, State::Status(status)]));
        out.push(Action::Arm(Deadline::ShutdownDelay, at));
    }

    /// The delay is over: the graceful shutdown proper.
    pub(super) fn shutdown_delay_over(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.shutdown_at.take().is_some() {
            self.begin_shutdown(true, now, out);
        }
    }

    /// When a delayed shutdown begins, if one waits.
    pub fn shutdown_at(&self) -> Option<Instant> {
        self.shutdown_at
    }

    /// Whether a probe should send traffic here: a generation serves and no shutdown
    /// was asked for.
    pub fn ready(&self) -> bool {
        self.serving.is_some() && self.shutdown_at.is_none() && !self.is_stopping()
    }
}
