//! `cheaper`: the worker count follows the load, read where any program's load shows,
//! the listen queue of the TCP sockets (TCP_INFO: connections established and not yet
//! accepted). Connections that keep waiting for `cheaper-overload` start `cheaper-step`
//! more workers, up to `workers`; a queue empty for `cheaper-idle` retires one worker,
//! down to `cheaper`. The supervisor's resize does the rest (a worker more is started,
//! one fewer is retired gracefully). A unix socket has no such queue to read: with only
//! unix sockets the count stays where it is, and the log says so once.

use std::{
    os::fd::AsFd,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{Master, TimerKey};
use crate::{events, supervisor::Event};

/// How often the queues are read while cheaper is on.
const TICK: Duration = Duration::from_millis(500);

/// What the queue has been doing, for the decisions.
#[derive(Debug, Default)]
pub(super) struct Load {
    /// Since when connections have kept waiting.
    waiting_since: Option<Instant>,
    /// Since when the queue has stayed empty.
    empty_since: Option<Instant>,
    /// No TCP socket to read: said once.
    unreadable_said: bool,
}

impl Master {
    /// Arms the next reading while cheaper is on; nothing otherwise.
    pub(super) fn arm_cheaper(&mut self, now: Instant) {
        if self.supervisor.settings().bounds.is_some() {
            self.arm_cheaper_at(now);
        }
    }

    /// Arms the next reading (cheaper on in settings not applied yet: a reload's).
    pub(super) fn arm_cheaper_at(&mut self, now: Instant) {
        self.timers.arm(TimerKey::Cheaper, now + TICK);
    }

    /// Reads the queues and decides: more workers, one fewer, or nothing.
    pub(super) fn cheaper_tick(&mut self, now: Instant) {
        self.arm_cheaper(now);
        let Some((min, max)) = self.supervisor.settings().bounds else {
            return;
        };
        let Some(queued) = self.queued() else {
            if !self.load.unreadable_said {
                self.load.unreadable_said = true;
                warn!("cheaper: no TCP socket whose listen queue can be read; the worker count stays as it is");
            }
            return;
        };
        let workers = self.supervisor.desired();
        if queued > 0 {
            self.load.empty_since = None;
            let since = *self.load.waiting_since.get_or_insert(now);
            if now.duration_since(since) >= self.options.cheaper_overload && workers < max {
                let step = self.options.cheaper.step.max(1).min(max - workers);
                info!(
                    event = events::CHEAPER,
                    decision = "more",
                    queued,
                    workers,
                    step,
                    "cheaper: connections keep waiting; starting {step} worker(s) more"
                );
                for _ in 0..step {
                    self.dispatch(Event::Resize { more: true });
                }
                self.load.waiting_since = Some(now);
            }
        } else {
            self.load.waiting_since = None;
            let since = *self.load.empty_since.get_or_insert(now);
            if now.duration_since(since) >= self.options.cheaper_idle && workers > min {
                info!(
                    event = events::CHEAPER,
                    decision = "fewer",
                    queued,
                    workers,
                    step = 1,
                    "cheaper: the listen queue stayed empty; retiring one worker"
                );
                self.dispatch(Event::Resize { more: false });
                self.load.empty_since = Some(now);
            }
        }
    }

    /// Connections waiting in the TCP sockets' accept queues, if one can be read.
    pub(super) fn queued(&self) -> Option<u32> {
        self.listeners
            .iter()
            .filter_map(|l| steward_sys::accept_queue(l.as_fd()))
            .map(|queue| queue.queued)
            .reduce(|a, b| a + b)
    }
}
