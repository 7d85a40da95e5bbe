use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerState {
    /// Started, not yet ready by the readiness mode.
    Starting,
    /// Ready: it may be the one serving its slot.
    Ready,
    /// Asked to stop; killed with SIGKILL at `kill_at` unless it exits first.
    Stopping { kill_at: Instant, killed: bool },
}

impl WorkerState {
    /// How `steward status` and the log call it.
    pub fn name(&self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Stopping { .. } => "stopping",
        }
    }
}

/// One worker process.
#[derive(Debug)]
pub(crate) struct Worker {
    /// The 1-based slot, STEWARD_WORKER_ID.
    pub id: usize,
    /// STEWARD_GENERATION: how many reloads the master had begun when it was started.
    pub generation: u64,
    pub pid: Pid,
    pub state: WorkerState,
    pub started: Instant,
    /// Started again after a crash of the same slot and generation.
    pub respawned: bool,
    /// The last STATUS= it sent.
    pub status: Option<String>,
    /// Whether it waits for connections cannot be seen: time alive stands in.
    pub unobservable: bool,
    /// It is to be replaced (recycle.rs): why, and whether its replacement was started.
    pub recycle: Option<Recycle>,
}

/// Why a worker is replaced, and how far that went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recycle {
    /// "lifetime 3600s", "rss 512 MB > 500 MB", what the worker said...
    pub reason: String,
    /// Its replacement was asked for: it no longer counts as its slot's worker, and
    /// it stops once the replacement is ready.
    pub begun: bool,
}

impl Worker {
    pub fn is_stopping(&self) -> bool {
        matches!(self.state, WorkerState::Stopping { .. })
    }

    /// Its replacement was started: it serves only until that one is ready.
    pub fn is_being_replaced(&self) -> bool {
        self.recycle.as_ref().is_some_and(|r| r.begun)
    }
}

/// How a crashing child's restarts are spaced: `first` doubled per crash in a row, up
/// to `max`; a child that lived `reset_after` starts again at once, its streak reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffPolicy {
    pub first: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

/// Crash history of one worker slot or mule, for the backoff.
#[derive(Debug, Default, Clone)]
pub(crate) struct Backoff {
    /// Crashes in a row, each after less than `reset_after` of life.
    pub streak: u32,
    /// The generation of the last crash: a start of that generation is a respawn.
    pub crashed_generation: Option<u64>,
    /// How the last crash ended ("status 3", "signal SIGSEGV"), for `steward status`.
    pub last_exit: Option<String>,
    /// When it is started again, while it waits out its backoff.
    pub next_start: Option<Instant>,
}

impl Backoff {
    /// Records a crash after `lived` and returns how long to wait before the next start.
    pub fn crashed(&mut self, generation: u64, lived: Duration, policy: BackoffPolicy) -> Duration {
        self.crashed_generation = Some(generation);
        if lived >= policy.reset_after {
            self.streak = 0;
            return Duration::ZERO;
        }
        self.streak = self.streak.saturating_add(1);
        let doublings = (self.streak - 1).min(20);
        policy.first.saturating_mul(1 << doublings).min(policy.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_after_a_long_life() {
        let ms = Duration::from_millis;
        let mut slot = Backoff::default();
        let policy = BackoffPolicy {
            first: ms(100),
            max: ms(1000),
            reset_after: ms(5000),
        };
        let crash = |slot: &mut Backoff, lived| slot.crashed(1, lived, policy);
        assert_eq!(crash(&mut slot, ms(10)), ms(100));
        assert_eq!(crash(&mut slot, ms(10)), ms(200));
        assert_eq!(crash(&mut slot, ms(10)), ms(400));
        assert_eq!(crash(&mut slot, ms(10)), ms(800));
        assert_eq!(crash(&mut slot, ms(10)), ms(1000));
        assert_eq!(crash(&mut slot, ms(10)), ms(1000));
        assert_eq!(crash(&mut slot, ms(6000)), Duration::ZERO);
        assert_eq!(crash(&mut slot, ms(10)), ms(100));
        assert_eq!(slot.crashed_generation, Some(1));
    }
}
