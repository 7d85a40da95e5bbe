//! The worker table and its generations: which workers to start, which to retire, when
//! a worker and a generation count as ready, and what a crash leads to.

use std::time::{Duration, Instant};

use nix::unistd::Pid;
use steward_hooks::HookError;
use steward_options::ReadyMode;
use steward_systemd::State;
use tracing::{error, info, warn};

use super::{
    Action, Awaiting, Deadline, Failure, GenerationHook, Phase, SpawnRequest, Supervisor, Worker,
    WorkerState,
};
use crate::events;

/// What one pass over the table found for the current generation.
struct Census {
    /// Per slot (index = id; 0 unused): a current worker that is not stopping.
    live: Vec<bool>,
    /// Per slot: that worker is ready.
    ready: Vec<bool>,
    /// A current worker is starting (or being spawned).
    starting: bool,
}

impl Census {
    fn all_ready(&self) -> bool {
        self.ready[1..].iter().all(|ready| *ready)
    }
}

/// A worker that exited unasked, or that could not be started (no pid then).
struct Failed {
    id: usize,
    generation: u64,
    pid: Option<Pid>,
    state: WorkerState,
    respawned: bool,
    lived: Duration,
    /// "status 1", "signal SIGKILL", a spawn error...
    how: String,
    /// It did not exit: it was killed for not being ready within this.
    not_ready_within: Option<Duration>,
    /// Its fork or exec failed: `how` is the whole message.
    not_started: bool,
}

impl Supervisor {
    /// Brings the table in line with what should run: retires what was replaced, notes
    /// a generation that became ready, starts what is missing, ends a finished reload.
    pub(super) fn reconcile(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.is_stopping() || self.awaiting.is_some() {
            return;
        }
        let mut census = self.census();
        self.retire_replaced(&census, now, out);
        if self.begin_recycling() {
            census = self.census();
        }
        if census.all_ready() && self.serving != Some(self.current) {
            if self.settings.generation_hooks {
                self.awaiting = Some(Awaiting::Hook(GenerationHook::PostApp));
                out.push(Action::RunHook(GenerationHook::PostApp));
                return;
            }
            self.generation_ready(out);
        }
        if census.live[1..].iter().any(|live| !live) {
            if self.settings.generation_hooks && self.pre_app_done < self.current {
                self.pre_app_done = self.current;
                self.awaiting = Some(Awaiting::Hook(GenerationHook::PreApp));
                out.push(Action::RunHook(GenerationHook::PreApp));
                return;
            }
            self.start_missing(&census, out);
        }
        self.finish_reload(out);
    }

    fn census(&self) -> Census {
        let slots = self.settings.workers + 1;
        let mut census = Census {
            live: vec![false; slots],
            ready: vec![false; slots],
            starting: false,
        };
        let current = self
            .workers
            .iter()
            .filter(|w| w.generation == self.current && !w.is_stopping())
            .filter(|w| !w.is_being_replaced())
            .map(|w| (w.id, w.state == WorkerState::Ready));
        let spawning = self
            .spawning
            .iter()
            .filter(|(_, generation)| *generation == self.current)
            .map(|(id, _)| (*id, false));
        for (id, ready) in current.chain(spawning) {
            if id < slots {
                census.live[id] = true;
                census.ready[id] |= ready;
                census.starting |= !ready;
            }
        }
        census
    }

    /// Asks every worker that is replaced to stop: one above the wanted count, one of
    /// another generation once the current one is ready (in a chain reload, once its
    /// own slot's new worker is), and at once one that is starting or newer than the
    /// current generation (a reload that was abandoned or superseded); a recycled
    /// worker once its slot's replacement is ready.
    fn retire_replaced(&mut self, census: &Census, now: Instant, out: &mut Vec<Action>) {
        let chain = self
            .reload()
            .is_some_and(|r| r.chain && r.generation == self.current);
        let replaced: Vec<Pid> = self
            .workers
            .iter()
            .filter(|w| !w.is_stopping())
            .filter(|w| {
                let slot_ready = census.ready.get(w.id).copied().unwrap_or(false);
                w.id > self.settings.workers
                    || (w.generation != self.current
                        && (w.state == WorkerState::Starting
                            || w.generation > self.current
                            || census.all_ready()
                            || (chain && slot_ready)))
                    || (w.is_being_replaced() && slot_ready)
            })
            .map(|w| w.pid)
            .collect();
        for pid in replaced {
            self.log_replaced(pid, now);
            self.retire(pid, now, out);
        }
    }

    /// Starts the slots of the current generation that have no worker: all at once, or
    /// one at a time in a chain reload until the new generation serves.
    fn start_missing(&mut self, census: &Census, out: &mut Vec<Action>) {
        let chain = self
            .reload()
            .is_some_and(|r| r.chain && r.generation == self.current);
        let one_at_a_time = chain && self.serving != Some(self.current);
        if one_at_a_time && census.starting {
            return;
        }
        let current = self.current;
        let mut spawn = Vec::new();
        for id in 1..=self.settings.workers {
            if census.live[id] || self.respawns.contains(&(id, current)) {
                continue;
            }
            // A forked worker runs its accepting phases itself, at its first start.
            let first_time = !self.settings.accepting_in_master && self.accepted_once.insert(id);
            spawn.push(SpawnRequest {
                id,
                generation: current,
                first_time,
            });
            if one_at_a_time {
                break;
            }
        }
        if !spawn.is_empty() {
            self.spawning
                .extend(spawn.iter().map(|s| (s.id, s.generation)));
            out.push(Action::Spawn(spawn));
        }
    }

    /// Every worker of the reloaded generation serves and the others are gone.
    fn finish_reload(&mut self, out: &mut Vec<Action>) {
        let Phase::Reloading(reload) = self.phase else {
            return;
        };
        let done = self.serving == Some(reload.generation)
            && self
                .workers
                .iter()
                .all(|w| w.generation == reload.generation);
        if !done {
            return;
        }
        let elapsed = reload.started.elapsed();
        info!(
            event = events::RELOAD_COMPLETE,
            generation = reload.generation,
            elapsed_ms = elapsed.as_millis() as u64,
            "reload complete"
        );
        self.phase = Phase::Serving;
        out.push(Action::ReloadFinished {
            generation: reload.generation,
            result: Ok(elapsed),
        });
    }

    /// The current generation is ready (its post-app hooks ran): it serves.
    fn generation_ready(&mut self, out: &mut Vec<Action>) {
        let generation = self.current;
        let first = self.serving.is_none();
        self.serving = Some(generation);
        info!(
            event = events::GENERATION_READY,
            generation,
            workers = self.settings.workers,
            "generation ready"
        );
        if self.phase == Phase::Starting {
            self.phase = Phase::Serving;
        }
        if first {
            out.push(Action::FirstGenerationReady);
        }
        let status = format!("{} workers, generation {generation}", self.settings.workers);
        out.push(Action::Notify(vec![State::Ready, State::Status(status)]));
    }

    pub(super) fn hook_ran(
        &mut self,
        hook: GenerationHook,
        result: Result<(), HookError>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.awaiting != Some(Awaiting::Hook(hook)) {
            return;
        }
        self.awaiting = None;
        match (hook, result) {
            (GenerationHook::PreApp, Ok(())) => {}
            (GenerationHook::PostApp, Ok(())) => self.generation_ready(out),
            (_, Err(failure)) if self.serving.is_none() => {
                self.failure = Some(Failure::Hook(failure));
                out.push(Action::Failed);
                self.begin_shutdown(true, now, out);
            }
            (GenerationHook::PreApp, Err(failure)) => self.abort_reload(failure.to_string(), out),
            (GenerationHook::PostApp, Err(failure)) => {
                error!(generation = self.current, error = %failure,
                    "post-app hook failed after a reload; the new generation serves already");
                self.generation_ready(out);
            }
        }
    }

    pub(super) fn started(
        &mut self,
        id: usize,
        generation: u64,
        pid: Pid,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.spawning.retain(|s| *s != (id, generation));
        let respawned = self.is_respawn(id, generation);
        info!(event = events::WORKER_STARTED, worker = id, generation, pid = %pid, "worker started");
        self.workers.push(Worker {
            id,
            generation,
            pid,
            state: WorkerState::Starting,
            started: now,
            respawned,
            status: None,
            unobservable: false,
            recycle: None,
        });
        self.arm_lifetime(id, pid, now, out);
        if self.is_stopping() {
            // Forked in the batch that a shutdown interrupted.
            self.retire(pid, now, out);
            return;
        }
        match self.settings.ready {
            ReadyMode::Immediate => self.mark_ready(pid, now, "start", out),
            _ => {
                if let Some(after) = self.ready_timer() {
                    out.push(Action::Arm(Deadline::ReadyAfter(pid), now + after));
                }
                if let Some(timeout) = self.settings.ready_timeout {
                    out.push(Action::Arm(Deadline::ReadyTimeout(pid), now + timeout));
                }
            }
        }
    }

    pub(super) fn start_failed(
        &mut self,
        id: usize,
        generation: u64,
        pid: Option<Pid>,
        how: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.spawning.retain(|s| *s != (id, generation));
        if self.is_stopping() {
            tracing::debug!(worker = id, generation, error = %how, "worker not started: shutting down");
            return;
        }
        let failed = Failed {
            id,
            generation,
            pid,
            state: WorkerState::Starting,
            respawned: self.is_respawn(id, generation),
            lived: Duration::ZERO,
            how,
            not_ready_within: None,
            not_started: true,
        };
        self.worker_failed(failed, now, out);
    }

    pub(super) fn exited(&mut self, pid: Pid, how: String, now: Instant, out: &mut Vec<Action>) {
        let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
            self.mule_exited(pid, &how, now, out);
            return;
        };
        let worker = self.workers.swap_remove(index);
        out.push(Action::Disarm(Deadline::ReadyAfter(pid)));
        out.push(Action::Disarm(Deadline::ReadyTimeout(pid)));
        out.push(Action::Disarm(Deadline::Lifetime(pid)));
        out.push(Action::Disarm(Deadline::Heartbeat(pid)));
        if let WorkerState::Stopping { killed: false, .. } = worker.state {
            out.push(Action::Disarm(Deadline::Mercy(pid)));
        }
        if worker.is_stopping() || self.is_stopping() {
            info!(event = events::WORKER_EXITED, worker = worker.id, generation = worker.generation, pid = %pid, status = %how, "worker exited");
            return;
        }
        let failed = Failed {
            id: worker.id,
            generation: worker.generation,
            pid: Some(pid),
            state: worker.state,
            respawned: worker.respawned,
            lived: now.saturating_duration_since(worker.started),
            how,
            not_ready_within: None,
            not_started: false,
        };
        self.worker_failed(failed, now, out);
    }

    /// A worker exited unasked, or could not be started at all: the start fails, the
    /// reload is abandoned, or the slot is started again after its backoff.
    fn worker_failed(&mut self, failed: Failed, now: Instant, out: &mut Vec<Action>) {
        let Failed {
            id,
            generation,
            pid,
            state,
            respawned,
            lived,
            how,
            not_ready_within,
            not_started,
        } = failed;
        let pid = pid.map(Pid::as_raw);
        let bringing_up = generation == self.current && self.serving != Some(self.current);
        if bringing_up && state == WorkerState::Starting && !respawned {
            let (failure, reason) = match not_ready_within {
                Some(timeout) => (
                    Failure::WorkerNotReady { id, timeout },
                    format!(
                        "worker {id} was not ready within {} (ready-timeout)",
                        seconds(timeout)
                    ),
                ),
                None if not_started => (
                    Failure::WorkerNotStarted {
                        reason: how.clone(),
                    },
                    how,
                ),
                None => {
                    let reason = format!("worker {id} exited with {how} before it was ready");
                    (Failure::WorkerFailedToStart { id, status: how }, reason)
                }
            };
            if self.serving.is_none() {
                self.failure = Some(failure);
                out.push(Action::Failed);
                self.begin_shutdown(true, now, out);
            } else {
                self.abort_reload(reason, out);
            }
            return;
        }
        if generation != self.current || id > self.settings.workers {
            warn!(event = events::WORKER_EXITED, worker = id, generation, pid, status = %how,
                "worker of a replaced generation exited; not started again");
            return;
        }
        if self.backoffs.len() < id {
            self.backoffs.resize(id, Default::default());
        }
        let backoff = &mut self.backoffs[id - 1];
        let delay = backoff.crashed(generation, lived, self.settings.backoff);
        let streak = backoff.streak;
        warn!(event = events::WORKER_CRASHED, worker = id, generation, pid, status = %how,
            respawn_in_ms = delay.as_millis() as u64, crashes_in_a_row = streak, "worker exited unexpectedly");
        backoff.last_exit = Some(how.clone());
        if !delay.is_zero() {
            backoff.next_start = Some(now + delay);
            self.respawns.push((id, generation));
            out.push(Action::Arm(
                Deadline::Respawn { id, generation },
                now + delay,
            ));
            // systemd's view says the crash loop too, not only "N workers".
            let status = format!(
                "generation {generation}: worker {id} crashed {streak} times in a row ({how}), \
                 started again in {} ms; {} of {} workers ready",
                delay.as_millis(),
                self.ready_workers(),
                self.settings.workers
            );
            out.push(Action::Notify(vec![State::Status(status)]));
        }
    }

    /// Whether starting worker `id` of `generation` follows a crash of that same worker.
    fn is_respawn(&self, id: usize, generation: u64) -> bool {
        self.backoffs
            .get(id - 1)
            .is_some_and(|b| b.crashed_generation == Some(generation))
    }

    pub(super) fn ready_message(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let believed = self.settings.ready.believes_ready_message();
        let starting = self
            .workers
            .iter()
            .any(|w| w.pid == pid && w.state == WorkerState::Starting);
        if believed && starting {
            out.push(Action::Disarm(Deadline::ReadyAfter(pid)));
            self.mark_ready(pid, now, "READY=1", out);
        }
    }

    pub(super) fn timer(&mut self, deadline: Deadline, now: Instant, out: &mut Vec<Action>) {
        match deadline {
            Deadline::ReadyAfter(pid) => {
                if self
                    .workers
                    .iter()
                    .any(|w| w.pid == pid && w.state == WorkerState::Starting)
                {
                    self.mark_ready(pid, now, "time alive", out);
                }
            }
            Deadline::Mercy(pid) => self.mercy_over(pid, now, out),
            Deadline::MuleRespawn(id) => self.mule_respawn_due(id, out),
            Deadline::Respawn { id, generation } => {
                self.respawns.retain(|r| *r != (id, generation));
                if let Some(backoff) = self.backoffs.get_mut(id - 1) {
                    backoff.next_start = None;
                }
            }
            Deadline::ReadyTimeout(pid) => self.not_ready_in_time(pid, now, out),
            Deadline::ShutdownDelay => self.shutdown_delay_over(now, out),
            Deadline::Lifetime(pid) => self.lifetime_over(pid),
            Deadline::MemoryCheck => self.memory_check_due(now, out),
            Deadline::Heartbeat(pid) => self.heartbeat_missed(pid, now, out),
        }
    }

    /// A worker still starting at its ready timeout: killed, and failed as if it had
    /// exited before it was ready.
    fn not_ready_in_time(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let Some(worker) = self.workers.iter().find(|w| w.pid == pid) else {
            return;
        };
        if worker.state != WorkerState::Starting {
            return;
        }
        let timeout = self.settings.ready_timeout.unwrap_or_default();
        warn!(event = events::WORKER_NOT_READY, worker = worker.id, generation = worker.generation,
            pid = %pid, timeout_ms = timeout.as_millis() as u64,
            "worker not ready within the ready timeout; killing it");
        let failed = Failed {
            id: worker.id,
            generation: worker.generation,
            pid: Some(pid),
            state: WorkerState::Starting,
            respawned: worker.respawned,
            lived: now.saturating_duration_since(worker.started),
            how: format!("no readiness within {}", seconds(timeout)),
            not_ready_within: Some(timeout),
            not_started: false,
        };
        self.kill(pid, now, out);
        self.worker_failed(failed, now, out);
    }

    pub(super) fn listening(
        &mut self,
        pid: Pid,
        how: &'static str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let starting = self
            .workers
            .iter()
            .any(|w| w.pid == pid && w.state == WorkerState::Starting);
        if starting && self.settings.ready.observes_listening() {
            out.push(Action::Disarm(Deadline::ReadyAfter(pid)));
            self.mark_ready(pid, now, how, out);
        }
    }

    pub(super) fn log_matched(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let starting = self
            .workers
            .iter()
            .any(|w| w.pid == pid && w.state == WorkerState::Starting);
        if starting && self.settings.ready.log_pattern().is_some() {
            self.mark_ready(pid, now, "log", out);
        }
    }

    /// Listening cannot be seen for this worker: time alive stands in, from its start.
    pub(super) fn unobservable(&mut self, pid: Pid, now: Instant, out: &mut Vec<Action>) {
        let fallback = self.settings.ready.unobservable_fallback();
        let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) else {
            return;
        };
        if worker.state != WorkerState::Starting || worker.unobservable {
            return;
        }
        worker.unobservable = true;
        if let Some(after) = fallback {
            out.push(Action::Arm(
                Deadline::ReadyAfter(pid),
                (worker.started + after).max(now),
            ));
        }
    }

    fn mark_ready(&mut self, pid: Pid, now: Instant, by: &str, out: &mut Vec<Action>) {
        let Some(worker) = self.workers.iter_mut().find(|w| w.pid == pid) else {
            return;
        };
        worker.state = WorkerState::Ready;
        out.push(Action::Disarm(Deadline::ReadyTimeout(pid)));
        let after = now.saturating_duration_since(worker.started);
        info!(event = events::WORKER_READY, worker = worker.id, generation = worker.generation, pid = %pid,
            after_ms = after.as_millis() as u64, by, "worker ready");
        if worker.respawned && Some(worker.generation) == self.serving {
            // Out of a crash loop: systemd's view goes back to the plain count.
            let status = format!(
                "{} workers, generation {}",
                self.settings.workers, worker.generation
            );
            out.push(Action::Notify(vec![State::Status(status)]));
        }
        if self.settings.accepting_in_master {
            let id = worker.id;
            let first_time = self.accepted_once.insert(id);
            out.push(Action::Accepting { id, first_time });
        }
    }
}

/// "60s", "1.5s", for messages.
fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}
