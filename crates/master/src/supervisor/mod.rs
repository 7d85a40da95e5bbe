//! The supervisor: every decision of the master, apart from its effects.
//!
//! It holds the worker table, the generations, the respawn history and the phase, and
//! answers [`Supervisor::handle`]`(event, now)` with the [`Action`]s the loop must carry
//! out: fork these workers, signal that one, arm a timer, tell systemd, run a hook. It
//! never forks, signals, reads a file or looks at the clock itself, so its unit tests
//! drive it through reloads, crash loops and shutdowns with a fake clock.
//!
//! Some actions are questions: [`Action::RunHook`] (pre-app, post-app),
//! [`Action::ReadConfig`], [`Action::Spawn`], [`Action::StartUpgradeCheck`] and
//! [`Action::Reexec`] are answered by the loop with the event that tells how they went,
//! and the supervisor waits for that answer before it decides what depends on it.

mod cheap;
mod children;
mod delay;
mod generations;
mod lifecycle;
mod mules;
mod recycle;
mod table;
#[cfg(test)]
mod tests;
mod watchdog;

use std::time::{Duration, Instant};

use nix::unistd::Pid;
use steward_hooks::HookError;
use steward_options::{Options, ReadyMode};
use steward_systemd::State;

pub(crate) use self::{
    mules::Mules,
    recycle::{Memory, RecyclePolicy},
    table::{Backoff, BackoffPolicy, Recycle, Worker, WorkerState},
};

/// What the supervisor needs to know of the options; a reload may change all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// How many workers to keep (`workers`).
    pub workers: usize,
    pub ready: ReadyMode,
    /// How long a new worker may take to be ready (None: for ever).
    pub ready_timeout: Option<Duration>,
    /// Workers have sockets, so the loop can watch them wait for connections.
    pub observable: bool,
    /// How long a stopping worker may drain before SIGKILL.
    pub mercy: Duration,
    /// How long a graceful shutdown keeps serving, not ready, before workers drain.
    pub shutdown_delay: Duration,
    pub backoff: BackoffPolicy,
    /// pre-app and post-app run around each generation (not when the app loads once in
    /// the master, preload mode, where they run around that load).
    pub generation_hooks: bool,
    /// The accepting phases run in the master as each worker becomes ready (exec mode;
    /// a forked worker runs them itself).
    pub accepting_in_master: bool,
    /// When workers are replaced by age or memory (recycle.rs).
    pub recycle: RecyclePolicy,
    /// `worker-watchdog`: a ready worker silent this long is aborted (watchdog.rs).
    pub watchdog: Option<Duration>,
    /// `cheaper`: the worker count moves between these (fewest, most); None: fixed.
    pub bounds: Option<(usize, usize)>,
}

impl Settings {
    /// The settings of `options`; `forked` when workers are forked (preload mode), with
    /// `app_in_master` when the app is loaded once in the master.
    pub fn new(options: &Options, forked: bool, app_in_master: bool, sockets: bool) -> Settings {
        let cheaper = options.cheaper;
        let bounds = cheaper
            .enabled()
            .then(|| (cheaper.min.min(options.workers), options.workers));
        let workers = match bounds {
            Some((min, max)) => cheaper.initial.max(min).min(max),
            None => options.workers,
        };
        Settings {
            workers,
            bounds,
            ready: options.ready.clone(),
            ready_timeout: Some(options.ready_timeout).filter(|t| !t.is_zero()),
            observable: sockets,
            mercy: options.worker_reload_mercy,
            shutdown_delay: options.shutdown_delay,
            backoff: BackoffPolicy {
                first: options.respawn_backoff,
                max: options.respawn_backoff_max,
                reset_after: options.respawn_reset_after,
            },
            generation_hooks: !app_in_master,
            accepting_in_master: !forked,
            recycle: RecyclePolicy::new(options),
            watchdog: Some(options.worker_watchdog).filter(|d| !d.is_zero()),
        }
    }
}

/// The hook phases whose outcome the supervisor waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GenerationHook {
    /// Before a generation's first worker is started.
    PreApp,
    /// Once every worker of a generation is ready.
    PostApp,
}

/// A deadline the supervisor asked for; it comes back as [`Event::Timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Deadline {
    /// A starting worker counts as ready (`auto:MS`, `delay:MS`).
    ReadyAfter(Pid),
    /// A starting worker that is still not ready fails (`ready-timeout`).
    ReadyTimeout(Pid),
    /// A stopping worker or mule is killed.
    Mercy(Pid),
    /// A crashed worker is started again.
    Respawn { id: usize, generation: u64 },
    /// A crashed mule is started again.
    MuleRespawn(usize),
    /// The `shutdown-delay` is over: the graceful shutdown begins.
    ShutdownDelay,
    /// A worker reached its `max-worker-lifetime`: it is replaced.
    Lifetime(Pid),
    /// The workers' memory is due to be measured (`memory-check-interval`).
    MemoryCheck,
    /// A ready worker sent no WATCHDOG=1 for `worker-watchdog`.
    Heartbeat(Pid),
}

/// Something that happened, for the supervisor to decide on.
#[derive(Debug)]
pub(crate) enum Event {
    /// SIGHUP, SIGUSR2, `steward reload`, a FIFO `r`/`c`, a touched file. `reexec`:
    /// the master should re-exec for it (a new binary, or preload mode).
    Reload { chain: bool, reexec: bool },
    /// SIGTERM (graceful), SIGINT/SIGQUIT (brutal), `steward stop`.
    Shutdown { graceful: bool },
    /// SIGTTIN / SIGTTOU, `workers +1/-1`.
    Resize { more: bool },
    /// Cheap mode: idle, every worker retires (`asleep`), or a connection came.
    Idle { asleep: bool },
    /// A worker asked for by [`Action::Spawn`] runs.
    Started {
        id: usize,
        generation: u64,
        pid: Pid,
    },
    /// A worker asked for by [`Action::Spawn`] could not be started.
    StartFailed {
        id: usize,
        generation: u64,
        pid: Option<Pid>,
        how: String,
    },
    /// A mule asked for by [`Action::StartMule`] runs.
    MuleStarted { id: usize, pid: Pid },
    /// A mule asked for by [`Action::StartMule`] could not be started.
    MuleStartFailed { id: usize, how: String },
    /// A child was reaped; `how` is "status 1", "signal SIGKILL"...
    Exited { pid: Pid, how: String },
    /// `READY=1` from this pid.
    ReadyMessage { pid: Pid },
    /// This pid (or a descendant) was seen waiting for connections on a socket of its
    /// (`how`: "accept", "epoll"...).
    Listening { pid: Pid, how: &'static str },
    /// A line of this pid's output matched the `ready = log:` pattern.
    LogMatched { pid: Pid },
    /// Whether this pid waits for connections cannot be seen (/proc refused): the
    /// readiness mode's stand-in timer applies.
    Unobservable { pid: Pid },
    /// A deadline from [`Action::Arm`] came.
    Timer(Deadline),
    /// The answer to [`Action::RunHook`].
    HookRan {
        hook: GenerationHook,
        result: Result<(), HookError>,
    },
    /// The answer to [`Action::ReadConfig`]: the settings for the new generation, or why
    /// the configuration is unusable.
    ConfigRead(Box<Result<Settings, String>>),
    /// The answer to [`Action::StartUpgradeCheck`], possibly much later: the new binary
    /// may be exec'd (Ok), or why not.
    UpgradeChecked(Result<(), String>),
    /// The answer to [`Action::Reexec`] when the exec did not happen.
    ReexecFailed,
    /// A worker asked to be replaced (`X_STEWARD_RECYCLE=`), saying why.
    RecycleRequested { pid: Pid, reason: String },
    /// The answer to [`Action::MeasureMemory`], one per worker still there.
    Measured { pid: Pid, memory: Memory },
    /// `WATCHDOG=1` from this pid.
    Heartbeat { pid: Pid },
    /// `WATCHDOG=trigger` from this pid: it says it is wedged.
    WatchdogTrigger { pid: Pid },
}

/// Something for the loop to do. See the module doc for the ones that are questions.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Fork (and exec) these workers, answering with one [`Event::Started`] or
    /// [`Event::StartFailed`] each.
    Spawn(Vec<SpawnRequest>),
    /// Run the as-mule hooks and start mule `id`, answering with
    /// [`Event::MuleStarted`] or [`Event::MuleStartFailed`].
    StartMule(usize),
    /// Ask the worker or mule (its process group) to stop with its stop signal.
    Stop(Pid),
    /// SIGABRT for the worker itself (not its group): the watchdog caught it.
    Abort(Pid),
    /// SIGKILL the worker's or mule's process group.
    Kill(Pid),
    Arm(Deadline, Instant),
    Disarm(Deadline),
    /// Run a generation hook and answer with [`Event::HookRan`].
    RunHook(GenerationHook),
    /// Run the accepting phases for worker `id` (`first_time`: the -once ones too).
    Accepting {
        id: usize,
        first_time: bool,
    },
    /// Run as-user-atexit (before a reload).
    Atexit,
    /// Tell systemd.
    Notify(Vec<State>),
    /// Read the configuration again, answering with [`Event::ConfigRead`].
    ReadConfig,
    /// Start the new binary's check; answered with [`Event::UpgradeChecked`].
    StartUpgradeCheck,
    /// Kill the running check (a shutdown came).
    KillUpgradeCheck,
    /// Re-exec the master for this reload; answered with [`Event::ReexecFailed`] if the
    /// process is still this image.
    Reexec {
        chain: bool,
    },
    /// The reload to `generation` ended (the clients waiting for it get the outcome).
    ReloadFinished {
        generation: u64,
        result: Result<Duration, String>,
    },
    /// The first generation is ready: the steps of a start that wait for it.
    FirstGenerationReady,
    /// A shutdown began: what systemd is told while it lasts.
    ShuttingDown {
        graceful: bool,
    },
    /// The first generation failed ([`Supervisor::take_failure`] says how): report it.
    Failed,
    /// Measure these workers' memory with their descendants' (`smaps`: USS and PSS
    /// too); answered with one [`Event::Measured`] each.
    MeasureMemory {
        pids: Vec<Pid>,
        smaps: bool,
    },
}

/// One worker to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpawnRequest {
    pub id: usize,
    pub generation: u64,
    /// A forked worker (preload mode) runs the accepting-once phases: its slot never
    /// ran before.
    pub first_time: bool,
}

/// Where the master is in its life; see [`crate::Lifecycle`] for the signals that
/// move it along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No generation has been ready yet (a reload may already have replaced the first).
    Starting,
    /// A generation serves and nothing is being replaced.
    Serving,
    /// A new generation is being brought up, or the old ones drain.
    Reloading(Reload),
    /// A reload waits for the new binary's check before a re-exec; `reload` is one
    /// still under way from before.
    CheckingUpgrade {
        chain: bool,
        since: Instant,
        reload: Option<Reload>,
    },
    /// Shutting down: nothing is started again.
    Stopping { graceful: bool },
}

/// A reload in progress, from its request until the old generations are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reload {
    pub generation: u64,
    pub chain: bool,
    pub started: Instant,
}

/// Why the master ends with an error rather than a requested shutdown.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A worker of the first generation exited before it was ready.
    WorkerFailedToStart { id: usize, status: String },
    /// A worker of the first generation could not be forked or exec'd (`reason` says
    /// which worker and why).
    WorkerNotStarted { reason: String },
    /// A worker of the first generation was not ready within the ready timeout.
    WorkerNotReady { id: usize, timeout: Duration },
    /// A pre-app or post-app hook of the first generation failed.
    Hook(HookError),
}

/// See the module doc.
#[derive(Debug)]
pub(crate) struct Supervisor {
    settings: Settings,
    phase: Phase,
    workers: Vec<Worker>,
    mules: Mules,
    /// Crash history per slot (index id - 1), for the backoff.
    backoffs: Vec<Backoff>,
    /// Crashed slots waiting out their backoff: (id, generation).
    respawns: Vec<(usize, u64)>,
    /// Workers asked for by a Spawn not answered yet: (id, generation).
    spawning: Vec<(usize, u64)>,
    /// The generation new workers belong to.
    current: u64,
    /// The last generation to have been fully ready.
    serving: Option<u64>,
    /// The highest generation number handed out.
    latest: u64,
    /// The last generation whose pre-app hooks ran.
    pre_app_done: u64,
    /// Slots whose accepting-once phases ran.
    accepted_once: std::collections::BTreeSet<usize>,
    /// A question asked of the loop whose answer decides what comes next.
    awaiting: Option<Awaiting>,
    failure: Option<Failure>,
    /// A graceful shutdown waits out `shutdown-delay` until then (delay.rs).
    shutdown_at: Option<Instant>,
    /// The memory check timer is armed (recycle.rs).
    memory_check_armed: bool,
    /// Cheap mode: asleep, with the worker count to come back to (cheap.rs).
    asleep: Option<usize>,
}

/// The question the supervisor waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Hook(GenerationHook),
    Config,
}

/// The workers, generations and phase handed from one image of the master to the
/// next (re-exec), or made up by [`Supervisor::new`] for a fresh start.
#[derive(Debug, Default)]
pub(crate) struct Resumed {
    pub workers: Vec<Worker>,
    pub current: u64,
    pub latest: u64,
    pub serving: Option<u64>,
    pub desired: usize,
}

impl Supervisor {
    /// A master about to start its first generation: nothing runs yet. The first
    /// [`Supervisor::handle`] (any event; [`Supervisor::begin`] says it) starts it.
    pub fn new(settings: Settings) -> Supervisor {
        Supervisor {
            settings,
            phase: Phase::Starting,
            workers: Vec::new(),
            mules: Mules::default(),
            backoffs: Vec::new(),
            respawns: Vec::new(),
            spawning: Vec::new(),
            current: 1,
            serving: None,
            latest: 1,
            pre_app_done: 0,
            accepted_once: Default::default(),
            awaiting: None,
            failure: None,
            shutdown_at: None,
            memory_check_armed: false,
            asleep: None,
        }
    }

    /// Keeps `count` mules running beside the workers.
    pub fn with_mules(mut self, count: usize) -> Supervisor {
        self.mules = Mules::new(count);
        self
    }

    /// Takes over the workers of the previous image of this process; the reload that
    /// asked for the re-exec is carried out next ([`Supervisor::resume_reload`]). Mules
    /// are not handed over: the previous image stopped its own, this one starts anew.
    pub fn resume(settings: Settings, resumed: Resumed) -> Supervisor {
        let mut supervisor = Supervisor::new(Settings {
            workers: resumed.desired,
            ..settings
        });
        supervisor.accepted_once = resumed.workers.iter().map(|w| w.id).collect();
        supervisor.workers = resumed.workers;
        supervisor.current = resumed.current;
        supervisor.pre_app_done = resumed.current;
        supervisor.latest = resumed.latest;
        supervisor.serving = resumed.serving;
        supervisor.phase = if resumed.serving.is_some() {
            Phase::Serving
        } else {
            Phase::Starting
        };
        supervisor
    }

    /// The actions that start the first generation (or, resumed, nothing yet).
    pub fn begin(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.start_mules(&mut out);
        self.reconcile(now, &mut out);
        self.arm_memory_check(now, &mut out);
        out
    }

    /// Carries out, in a re-exec'd image, the reload that asked for the re-exec.
    pub fn resume_reload(&mut self, chain: bool, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.start_mules(&mut out);
        let ready_after = self.ready_timer();
        for worker in &self.workers {
            if !worker.is_stopping() {
                // Lifetimes count from the start, not from the re-exec.
                self.arm_lifetime(worker.id, worker.pid, worker.started, &mut out);
            }
            match worker.state {
                WorkerState::Starting => out.extend(ready_after.map(|after| {
                    Action::Arm(Deadline::ReadyAfter(worker.pid), worker.started + after)
                })),
                WorkerState::Stopping {
                    kill_at,
                    killed: false,
                } => out.push(Action::Arm(Deadline::Mercy(worker.pid), kill_at)),
                _ => {}
            }
        }
        self.start_reload(chain, now, &mut out);
        self.reconcile(now, &mut out);
        self.arm_memory_check(now, &mut out);
        out
    }

    /// Decides on `event`; returns what the loop must do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Reload { chain, reexec } => self.on_reload(chain, reexec, now, &mut out),
            Event::Shutdown { graceful } => self.shutdown_requested(graceful, now, &mut out),
            Event::Resize { more } => self.resize(more),
            Event::Idle { asleep } => self.set_asleep(asleep),
            Event::Started {
                id,
                generation,
                pid,
            } => self.started(id, generation, pid, now, &mut out),
            Event::StartFailed {
                id,
                generation,
                pid,
                how,
            } => self.start_failed(id, generation, pid, how, now, &mut out),
            Event::MuleStarted { id, pid } => self.mule_started(id, pid, now),
            Event::MuleStartFailed { id, how } => self.mule_start_failed(id, how, now, &mut out),
            Event::Exited { pid, how } => self.exited(pid, how, now, &mut out),
            Event::ReadyMessage { pid } => self.ready_message(pid, now, &mut out),
            Event::Listening { pid, how } => self.listening(pid, how, now, &mut out),
            Event::LogMatched { pid } => self.log_matched(pid, now, &mut out),
            Event::Unobservable { pid } => self.unobservable(pid, now, &mut out),
            Event::Timer(deadline) => self.timer(deadline, now, &mut out),
            Event::HookRan { hook, result } => self.hook_ran(hook, result, now, &mut out),
            Event::ConfigRead(result) => self.config_read(*result, &mut out),
            Event::UpgradeChecked(result) => self.upgrade_checked(result, now, &mut out),
            Event::ReexecFailed => self.reexec_failed(now, &mut out),
            Event::RecycleRequested { pid, reason } => self.recycle_requested(pid, reason, now),
            Event::Measured { pid, memory } => self.measured(pid, memory, now, &mut out),
            Event::Heartbeat { pid } => self.heartbeat(pid, now, &mut out),
            Event::WatchdogTrigger { pid } => {
                self.watchdog_fired(pid, "it sent WATCHDOG=trigger".into(), now, &mut out)
            }
        }
        self.arm_memory_check(now, &mut out);
        self.reconcile(now, &mut out);
        out
    }

    #[cfg(test)]
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every worker process, in no particular order.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    pub fn worker_mut(&mut self, pid: Pid) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.pid == pid)
    }

    pub fn current(&self) -> u64 {
        self.current
    }

    pub fn serving(&self) -> Option<u64> {
        self.serving
    }

    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// How many workers it keeps.
    pub fn desired(&self) -> usize {
        self.settings.workers
    }

    /// The generation the next reload will bring up.
    pub fn next_generation(&self) -> u64 {
        self.latest + 1
    }

    /// How long a starting worker must stay alive to be ready by time alone, if that
    /// is how readiness is decided for it.
    fn ready_timer(&self) -> Option<Duration> {
        let ready = &self.settings.ready;
        match ready.ready_after_alive() {
            Some(after) => Some(after),
            None if !self.settings.observable => ready.unobservable_fallback(),
            None => None,
        }
    }

    /// Whether starting workers are to be watched for waiting on their sockets.
    pub fn wants_listening_observed(&self) -> bool {
        self.settings.observable && self.settings.ready.observes_listening()
    }

    /// What a starting worker waits for, for `steward status`.
    pub fn waiting_for(&self, worker: &Worker) -> String {
        let ready = &self.settings.ready;
        let listening = "waiting for connections on its sockets";
        let alive = |after: Duration| format!("alive {} ms", after.as_millis());
        let by_time = !self.settings.observable || worker.unobservable;
        match ready {
            ReadyMode::Notify => "READY=1".into(),
            ReadyMode::Immediate => "nothing".into(),
            ReadyMode::Delay(after) => alive(*after),
            ReadyMode::Log(pattern) => format!("a line of output matching {:?}", pattern.as_str()),
            ReadyMode::Auto(after) if by_time => format!("READY=1 or {}", alive(*after)),
            ReadyMode::Auto(_) => format!("READY=1 or {listening}"),
            ReadyMode::Listening if by_time => {
                alive(ready.unobservable_fallback().unwrap_or_default())
            }
            ReadyMode::Listening => listening.into(),
        }
    }

    /// Ready workers of the serving generation: what takes connections now.
    pub fn ready_workers(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| Some(w.generation) == self.serving && w.state == WorkerState::Ready)
            .count()
    }

    /// Slots waiting out a crash backoff: (id, crashes in a row, last exit, next start).
    pub fn respawning(&self) -> Vec<(usize, u32, String, Instant)> {
        let mut slots: Vec<_> = self
            .respawns
            .iter()
            .filter_map(|(id, _)| {
                let backoff = self.backoffs.get(id - 1)?;
                let exit = backoff.last_exit.clone().unwrap_or_default();
                Some((*id, backoff.streak, exit, backoff.next_start?))
            })
            .collect();
        slots.sort_by_key(|slot| slot.0);
        slots
    }

    /// The reload under way, if any.
    pub fn reload(&self) -> Option<&Reload> {
        match &self.phase {
            Phase::Reloading(reload) => Some(reload),
            Phase::CheckingUpgrade { reload, .. } => reload.as_ref(),
            _ => None,
        }
    }

    /// Since when the new binary is being checked, if it is.
    pub fn checking_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::CheckingUpgrade { since, .. } => Some(since),
            _ => None,
        }
    }

    /// The public face of the phase.
    pub fn lifecycle(&self) -> crate::Lifecycle {
        match self.phase {
            Phase::Stopping { graceful } => crate::Lifecycle::Stopping { graceful },
            _ if self.serving.is_some() => crate::Lifecycle::Running,
            _ => crate::Lifecycle::Starting,
        }
    }

    pub fn is_stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    /// A shutdown has begun and every worker and mule is gone.
    pub fn is_done(&self) -> bool {
        self.is_stopping() && self.workers.is_empty() && self.mules.running.is_empty()
    }

    /// What ended the master, if it was not a requested shutdown.
    pub fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }
}
