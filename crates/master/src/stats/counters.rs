//! What the master counts for the stats as it happens (restarts, reloads): a few
//! increments in the loop; everything else is read only when a client asks.

use std::{collections::HashMap, time::Duration};

use nix::sys::wait::WaitStatus;

use super::schema::{Bucket, Reloads, Restarts, RELOAD_BUCKETS};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub restarts: Restarts,
    /// Per slot: how often it ended unasked (and so was started again).
    respawns: HashMap<usize, u64>,
    reloads_ok: u64,
    reloads_failed: u64,
    reload_seconds_sum: f64,
    /// Per bucket of [`RELOAD_BUCKETS`] (not cumulative): successful reloads that took
    /// at most that long and longer than the bucket before.
    reload_buckets: [u64; RELOAD_BUCKETS.len()],
}

impl Counters {
    /// Worker `id` ended without being asked to stop.
    pub fn ended_unasked(&mut self, id: usize, status: &WaitStatus) {
        match status {
            WaitStatus::Signaled(..) => self.restarts.signal += 1,
            _ => self.restarts.crash += 1,
        }
        *self.respawns.entry(id).or_default() += 1;
    }

    /// A worker that did not stop within the mercy is SIGKILLed.
    pub fn killed_at_mercy(&mut self) {
        self.restarts.killed += 1;
    }

    pub fn reload_finished(&mut self, result: &Result<Duration, String>) {
        let Ok(took) = result else {
            self.reloads_failed += 1;
            return;
        };
        self.reloads_ok += 1;
        let seconds = took.as_secs_f64();
        self.reload_seconds_sum += seconds;
        if let Some(bucket) = RELOAD_BUCKETS.iter().position(|le| seconds <= *le) {
            self.reload_buckets[bucket] += 1;
        }
    }

    pub fn respawns(&self, id: usize) -> u64 {
        self.respawns.get(&id).copied().unwrap_or(0)
    }

    pub fn reloads(&self) -> Reloads {
        let mut cumulative = 0;
        let seconds_buckets = RELOAD_BUCKETS
            .iter()
            .zip(self.reload_buckets)
            .map(|(le, count)| {
                cumulative += count;
                Bucket {
                    le: *le,
                    count: cumulative,
                }
            })
            .collect();
        Reloads {
            ok: self.reloads_ok,
            failed: self.reloads_failed,
            seconds_sum: self.reload_seconds_sum,
            seconds_buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_durations_fill_cumulative_buckets() {
        let mut counters = Counters::default();
        counters.reload_finished(&Ok(Duration::from_millis(300)));
        counters.reload_finished(&Ok(Duration::from_secs(3)));
        counters.reload_finished(&Ok(Duration::from_secs(500)));
        counters.reload_finished(&Err("no".into()));
        let reloads = counters.reloads();
        assert_eq!((reloads.ok, reloads.failed), (3, 1));
        let at = |le: f64| {
            reloads
                .seconds_buckets
                .iter()
                .find(|b| b.le == le)
                .unwrap()
                .count
        };
        assert_eq!(
            (at(0.25), at(0.5), at(2.5), at(5.0), at(120.0)),
            (0, 1, 1, 2, 2)
        );
        assert_eq!(reloads.seconds_sum, 503.3);
    }
}
