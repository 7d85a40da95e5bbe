//! The emperor's deadlines: when the changes seen in the directory have settled, and
//! when each dead vassal starts again. The loop sleeps until the earliest.

use std::time::{Duration, Instant};

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The directory has been quiet long enough: act on what changed.
    Settled,
    /// Start this vassal again.
    Restart(String),
}

/// A small set of deadlines, at most one per [`Timer`].
#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: Vec<(Instant, Timer)>,
}

impl Timers {
    /// Arms `timer` at `at`, replacing its previous deadline.
    pub fn arm(&mut self, timer: Timer, at: Instant) {
        self.disarm(&timer);
        self.armed.push((at, timer));
    }

    pub fn disarm(&mut self, timer: &Timer) {
        self.armed.retain(|(_, t)| t != timer);
    }

    /// How long the loop may sleep: until the earliest deadline, or forever (`None`).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.armed
            .iter()
            .map(|(at, _)| at.saturating_duration_since(now))
            .min()
    }

    /// The timers due at `now`, disarmed.
    pub fn due(&mut self, now: Instant) -> Vec<Timer> {
        let (due, later) = std::mem::take(&mut self.armed)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.armed = later;
        due.into_iter().map(|(_, t)| t).collect()
    }
}
