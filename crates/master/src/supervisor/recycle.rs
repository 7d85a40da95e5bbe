//! Recycling: a worker replaced by age (`max-worker-lifetime`), on its own request
//! (`X_STEWARD_RECYCLE=`) or past a memory limit (`reload-on-*`), with no gap: its
//! replacement is started in the same slot and generation, and the old worker is asked
//! to stop (children.rs) only once the replacement is ready (generations.rs retires
//! it). One replacement at a time, so recycling never holds more than one extra
//! worker's memory. The `evil-reload-on-*` limits kill at once instead, as in uWSGI.

use std::time::{Duration, Instant};

use nix::unistd::Pid;
use steward_options::{MemoryLimits, Options};
use tracing::{info, warn};

use super::{Action, Deadline, Phase, Recycle, Supervisor, WorkerState};
use crate::events;

/// When workers are replaced by age or memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RecyclePolicy {
    /// `max-worker-lifetime` (None: never).
    pub lifetime: Option<Duration>,
    /// `max-worker-lifetime-delta`: worker N lives N times this longer.
    pub lifetime_delta: Duration,
    /// `reload-on-*`: replaced, the replacement ready first.
    pub reload_on: MemoryLimits,
    /// `evil-reload-on-*`: killed at once.
    pub evil: MemoryLimits,
    /// `memory-check-interval`.
    pub memory_every: Duration,
}

impl RecyclePolicy {
    pub fn new(options: &Options) -> RecyclePolicy {
        RecyclePolicy {
            lifetime: Some(options.max_worker_lifetime).filter(|d| !d.is_zero()),
            lifetime_delta: options.max_worker_lifetime_delta,
            reload_on: options.reload_on,
            evil: options.evil_reload_on,
            memory_every: options.memory_check_interval.max(Duration::from_millis(10)),
        }
    }

    /// Whether any memory limit asks for the workers to be measured.
    fn measures(&self) -> bool {
        self.reload_on.any() || self.evil.any()
    }

    /// How long worker `id` lives: the lifetime and `id` deltas (uWSGI's jitter).
    pub fn lifetime_of(&self, id: usize) -> Option<Duration> {
        let delta = self.lifetime_delta.saturating_mul(id as u32);
        self.lifetime.map(|lifetime| lifetime.saturating_add(delta))
    }
}

/// A worker's memory with its descendants', in bytes; USS and PSS only when asked for
/// and readable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    pub rss: u64,
    pub vsz: u64,
    pub uss: Option<u64>,
    pub pss: Option<u64>,
}

impl Memory {
    /// The first limit of `limits` this passes, said for the log: "rss 612 MB > 500 MB".
    fn over(&self, limits: &MemoryLimits) -> Option<String> {
        const MB: u64 = 1024 * 1024;
        let checks = [
            ("rss", Some(self.rss), limits.rss),
            ("as", Some(self.vsz), limits.vsz),
            ("uss", self.uss, limits.uss),
            ("pss", self.pss, limits.pss),
        ];
        checks.into_iter().find_map(|(name, used, limit)| {
            let used = used?;
            (limit > 0 && used > limit * MB)
                .then(|| format!("{name} {} MB > {limit} MB", used / MB))
        })
    }
}

impl Supervisor {
    /// Arms the lifetime of worker `id`, started at `started`, if it has one.
    pub(super) fn arm_lifetime(
        &self,
        id: usize,
        pid: Pid,
        started: Instant,
        out: &mut Vec<Action>,
    ) {
        if let Some(lifetime) = self.settings.recycle.lifetime_of(id) {
            out.push(Action::Arm(Deadline::Lifetime(pid), started + lifetime));
        }
    }

    pub(super) fn lifetime_over(&mut self, pid: Pid) {
        let Some(worker) = self.workers.iter().find(|w| w.pid == pid) else {
            return;
        };
        let lifetime = self.settings.recycle.lifetime_of(worker.id);
        let reason = format!("lifetime {}s", lifetime.unwrap_or_default().as_secs_f64());
        self.mark_for_recycling(pid, reason);
    }

    /// `X_STEWARD_RECYCLE=` from worker `pid`; the value is its reason.
    pub(super) fn recycle_requested(&mut self, pid: Pid, reason: String, _now: Instant) {
        let reason = match reason.trim() {
            "" | "1" => "asked by the worker".to_owned(),
            said => format!("asked by the worker: {said}"),
        };
        self.mark_for_recycling(pid, reason);
    }

    /// Notes that worker `pid` is to be replaced; [`Supervisor::begin_recycling`] starts
    /// the replacement when its turn comes.
    fn mark_for_recycling(&mut self, pid: Pid, reason: String) {
        let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) else {
            return;
        };
        if worker.is_stopping() || worker.recycle.is_some() {
            return;
        }
        info!(event = events::WORKER_RECYCLE_DUE, worker = worker.id, generation = worker.generation,
            pid = %pid, reason = %reason, "worker to be replaced");
        worker.recycle = Some(Recycle {
            reason,
            begun: false,
        });
    }

    /// Starts replacing the next worker due, unless one is being replaced already: the
    /// census then leaves its slot empty, and reconcile starts the replacement (true:
    /// one began, the census changed). Only
    /// in a serving current generation; a reload under way replaces every worker anyway.
    pub(super) fn begin_recycling(&mut self) -> bool {
        let serving = self.serving == Some(self.current)
            && matches!(self.phase, Phase::Serving | Phase::Reloading(_));
        let in_flight = self
            .workers
            .iter()
            .any(|w| w.is_being_replaced() && !w.is_stopping());
        if !serving || in_flight {
            return false;
        }
        let current = self.current;
        let due = self
            .workers
            .iter_mut()
            .filter(|w| w.generation == current && w.state == WorkerState::Ready)
            .find(|w| w.recycle.as_ref().is_some_and(|r| !r.begun));
        if let Some(worker) = due {
            let recycle = worker.recycle.as_mut().expect("found by its recycle");
            recycle.begun = true;
            info!(event = events::WORKER_RECYCLING, worker = worker.id, generation = worker.generation,
                pid = %worker.pid, reason = %recycle.reason, "starting a replacement for worker");
            return true;
        }
        false
    }

    /// Says that recycled worker `pid` is being retired, its replacement ready.
    pub(super) fn log_replaced(&self, pid: Pid, now: Instant) {
        let Some(worker) = self.workers.iter().find(|w| w.pid == pid) else {
            return;
        };
        let Some(recycle) = worker.recycle.as_ref().filter(|r| r.begun) else {
            return;
        };
        info!(event = events::WORKER_RECYCLED, worker = worker.id, generation = worker.generation,
            pid = %pid, reason = %recycle.reason,
            lived_ms = now.saturating_duration_since(worker.started).as_millis() as u64,
            "replacement ready; stopping the replaced worker");
    }

    /// Arms the first memory check when a limit asks for it and none is armed.
    pub(super) fn arm_memory_check(&mut self, now: Instant, out: &mut Vec<Action>) {
        let policy = &self.settings.recycle;
        if self.memory_check_armed || !policy.measures() || self.is_stopping() {
            return;
        }
        self.memory_check_armed = true;
        out.push(Action::Arm(
            Deadline::MemoryCheck,
            now + policy.memory_every,
        ));
    }

    /// Asks for the memory of every worker not stopping, and for the next check.
    pub(super) fn memory_check_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.memory_check_armed = false;
        let policy = &self.settings.recycle;
        if !policy.measures() || self.is_stopping() {
            return;
        }
        let smaps = policy.reload_on.needs_smaps() || policy.evil.needs_smaps();
        let pids: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| !w.is_stopping())
            .map(|w| w.pid)
            .collect();
        if !pids.is_empty() {
            out.push(Action::MeasureMemory { pids, smaps });
        }
        self.arm_memory_check(now, out);
    }

    /// Worker `pid` measured `memory`: killed past an evil limit, replaced past another.
    pub(super) fn measured(
        &mut self,
        pid: Pid,
        memory: Memory,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(worker) = self.workers.iter().find(|w| w.pid == pid) else {
            return;
        };
        if worker.is_stopping() {
            return;
        }
        let policy = &self.settings.recycle;
        if let Some(over) = memory.over(&policy.evil) {
            warn!(event = events::WORKER_MEMORY_KILLED, worker = worker.id, generation = worker.generation,
                pid = %pid, reason = %over, "worker over an evil-reload-on limit; killing it");
            let status = format!("worker {} (pid {pid}) killed: {over}", worker.id);
            out.push(Action::Notify(vec![steward_systemd::State::Status(status)]));
            self.kill(pid, now, out);
        } else if let Some(over) = memory.over(&policy.reload_on) {
            self.mark_for_recycling(pid, over);
        }
    }
}
