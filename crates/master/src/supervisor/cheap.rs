//! Cheap mode, uWSGI's `idle` without `die-on-idle`: once the master's loop finds
//! nothing served for `idle` (master/idle.rs), every worker is retired gracefully and
//! none started again until the loop sees a connection waiting on a socket; then the
//! wanted count comes back. Asleep, the wanted count is 0 and the count to come back
//! to is kept aside: a resize changes that one.

use tracing::info;

use super::Supervisor;
use crate::events;

impl Supervisor {
    /// Asleep (every worker retired) or awake (the kept count back); nothing while
    /// stopping, or when already so.
    pub(super) fn set_asleep(&mut self, asleep: bool) {
        if self.is_stopping() || asleep == self.asleep.is_some() {
            return;
        }
        if asleep {
            self.asleep = Some(self.settings.workers);
            self.settings.workers = 0;
            info!(
                event = events::CHEAP,
                asleep, "idle: every worker retires until a connection comes"
            );
        } else if let Some(workers) = self.asleep.take() {
            self.settings.workers = workers;
            info!(
                event = events::CHEAP,
                asleep,
                workers,
                "awake (a connection waits, or a reload): starting the workers again"
            );
        }
    }

    /// Whether the workers are retired for idleness (cheap mode).
    #[cfg(test)]
    pub fn is_asleep(&self) -> bool {
        self.asleep.is_some()
    }

    /// A resize while asleep changes the count to come back to.
    pub(super) fn resize_asleep(&mut self, more: bool) -> bool {
        let Some(workers) = self.asleep.as_mut() else {
            return false;
        };
        *workers = if more {
            *workers + 1
        } else {
            (*workers - 1).max(1)
        };
        true
    }
}
