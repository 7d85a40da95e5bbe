//! The master's loop and its effects: it waits on the [`Registry`] until the earliest
//! of its [`Timers`], turns what happened into supervisor events, and carries out the
//! supervisor's actions (fork, signal, notify, run hooks, answer clients).
//!
//! - build.rs: construction, in named steps (the start phases are in startup.rs);
//! - spawn.rs: forking and exec'ing workers;
//! - requests.rs: control socket, FIFO, status, reload waiters;
//! - upgrade.rs: the binary upgrade (check, handover, re-exec) and resuming after it;
//! - readiness.rs: probing starting workers for waiting on their sockets;
//! - stopping.rs: what a stop does besides the supervisor's part (sockets, systemd);
//! - orphans.rs: the child subreaper's leftovers; ignored.rs: unusable notify datagrams;
//! - mules.rs, phases.rs, reconfigure.rs, vacuum.rs: as named.

mod build;
mod cheaper;
mod idle;
mod ignored;
mod mules;
mod orphans;
mod phases;
mod readiness;
mod reconfigure;
mod recycle;
mod requests;
mod spawn;
mod stats;
mod stopping;
mod upgrade;
mod vacuum;

use std::{collections::VecDeque, fs::File, path::PathBuf, time::Instant};

use nix::{
    errno::Errno,
    sys::{
        signal::{killpg, Signal},
        signalfd::SignalFd,
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};
use steward_hooks::{Hooks, Phase, TouchWatcher};
use steward_options::{ConfigSources, Options, ReadyMode, ReloadStrategy};
use steward_systemd::{Notification, Notifier, State};
use tracing::{info, warn};

use crate::{
    command::WorkerCommand,
    control::ControlServer,
    event::{Registry, Timers, Token},
    events,
    fifo::MasterFifo,
    listen::Listener,
    notify::{NotifySocket, NOTIFY_MAX},
    pidfile::HeldPidfile,
    preload::ForkLaunch,
    reexec::Binary,
    status::ReloadOutcome,
    supervisor::{Action, Deadline, Event, Failure, GenerationHook, Supervisor},
    MasterError,
};

pub(crate) use self::reconfigure::merge_reloaded;
use self::{upgrade::PendingCheck, vacuum::MadeFilesRoot};

/// How a worker starts: its command exec'd, or (preload mode, [`crate::Builder`]) a
/// fork of the master running a closure.
#[derive(Debug)]
pub(crate) enum Launch {
    Exec(WorkerCommand),
    Fork(ForkLaunch),
}

impl Launch {
    /// For messages: the command line, or what a forked worker runs.
    fn display(&self) -> String {
        match self {
            Launch::Exec(command) => command.display.clone(),
            Launch::Fork(fork) => fork.display().to_owned(),
        }
    }

    /// Whether every reload re-execs the master: with the app preloaded in the master,
    /// only a new image loads new code.
    fn reexecs_on_reload(&self) -> bool {
        matches!(self, Launch::Fork(fork) if !fork.lazy)
    }
}

/// Everything the loop waits for, besides the supervisor's own deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    Supervisor(Deadline),
    /// WATCHDOG=1 to systemd.
    Watchdog,
    /// EXTEND_TIMEOUT_USEC= to systemd while workers drain at shutdown.
    ExtendTimeout,
    /// Touched files have been quiet long enough.
    TouchSettled,
    /// The new binary's check runs out of time.
    UpgradeCheck,
    /// Look whether starting workers wait for connections yet (see readiness.rs).
    Probe,
    /// A control client has not sent its request in time.
    ControlTimeout,
    /// A process a worker left behind is due for SIGKILL (orphans.rs).
    Orphans,
    /// A stats connection is due to be closed (master/stats.rs).
    Stats,
    /// `cheaper`: read the listen queues (cheaper.rs).
    Cheaper,
    /// `die-on-idle`: sample whether anything is served (idle.rs).
    Idle,
}

/// The control socket, the FIFOs, and what their clients wait for.
#[derive(Debug, Default)]
struct Clients {
    control: Option<ControlServer>,
    fifos: Vec<MasterFifo>,
    /// Control clients waiting for the outcome of the reload to this generation or a
    /// later one (a reload that supersedes theirs answers for it).
    reload_waiters: Vec<(crate::control::ConnectionId, u64)>,
    last_reload: Option<ReloadOutcome>,
    /// The stats server and counters (stats/, master/stats.rs).
    stats: crate::stats::Stats,
}

/// Touched files not acted on yet (see phases.rs).
#[derive(Debug, Default)]
struct Touches {
    watcher: Option<TouchWatcher>,
    changed: Vec<PathBuf>,
}

/// The master: its sockets, its workers, and the loop that keeps them.
#[derive(Debug)]
pub struct Master {
    options: Options,
    listeners: Vec<Listener>,
    launch: Launch,
    notify: NotifySocket,
    signals: SignalFd,
    dev_null: File,
    systemd: Notifier,
    supervisor: Supervisor,
    registry: Registry,
    timers: Timers<TimerKey>,
    clients: Clients,
    /// WATCHDOG=1 this often, when systemd's watchdog is on.
    watchdog_every: Option<std::time::Duration>,
    binary: Binary,
    /// Where the options came from, read again at each reload (see reconfigure.rs).
    config_sources: Option<ConfigSources>,
    /// Every hook of the configuration, parsed at start (see phases.rs).
    hooks: Hooks,
    touches: Touches,
    /// A re-exec whose check runs.
    upgrade: Option<PendingCheck>,
    /// This image was re-exec'd by a previous one, for a reload (chain or not) that it
    /// carries out.
    resumed: Option<bool>,
    failure: Option<MasterError>,
    /// `pidfile`, held open until `daemonize2` has put the daemon's pid in it.
    held_pidfile: Option<HeldPidfile>,
    /// The working directory once `chdir` was applied, where the relative paths of the
    /// sockets, FIFOs and pidfiles start from.
    files_dir: PathBuf,
    /// How to start each mule (`mule`), in configuration order.
    mules: Vec<crate::mule::MuleCommand>,
    /// The workers' stdout/stderr pipes (`worker-output = capture`).
    outputs: crate::output::Outputs,
    /// What the listen queue has been doing, for `cheaper` (cheaper.rs).
    load: cheaper::Load,
    /// What the `die-on-idle` samples have seen (idle.rs).
    idle: idle::Idle,
    /// Notify datagrams that are not acted on: warned about at a bounded rate.
    ignored: ignored::Ignored,
    /// Watches starting workers for waiting on their sockets (readiness.rs).
    probe: readiness::Watch,
    /// Where vacuum reaches the files made before the jail.
    made_root: MadeFilesRoot,
    /// Children the master did not start (orphans.rs).
    orphans: orphans::Orphans,
}

impl Master {
    /// The sockets the workers receive, in order.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Runs until a shutdown completes. Returns the error that ended the master, if it
    /// was not a requested shutdown.
    pub fn run(mut self) -> Result<(), MasterError> {
        self.log_started();
        stopping::warn_about_worker_count(self.supervisor.desired());
        if self.resumed.is_none() {
            let held_pidfile = self.held_pidfile.take();
            crate::startup::master_start(&self.options, &self.hooks, held_pidfile)
                .inspect_err(|_| self.vacuum_failed_start())?;
        }
        self.become_subreaper();
        let now = Instant::now();
        // The first WATCHDOG=1 goes out before anything can keep the loop busy.
        self.on_timers(now);
        self.arm_cheaper(now);
        self.arm_idle(now);
        let first = match self.resumed {
            Some(chain) => self.supervisor.resume_reload(chain, now),
            None => self.supervisor.begin(now),
        };
        self.execute_all(first);
        if crate::vassal::watch_emperor() {
            self.emperor_lost();
        }
        loop {
            if self.supervisor.is_done() && !self.orphans.stopping() {
                return self.exit();
            }
            let timeout = self.timers.next().map(|deadline| {
                // Rounded up: waking a little early would spin until the deadline.
                let wait = deadline.saturating_duration_since(Instant::now());
                wait.as_micros().div_ceil(1000) as u64
            });
            let mut ready = self.registry.wait(timeout).map_err(MasterError::Poll)?;
            ready.sort_by_key(|token| source_order(*token));
            ready.dedup();
            for token in ready {
                self.on_source(token);
            }
            self.on_timers(Instant::now());
        }
    }

    fn log_started(&self) {
        let addrs: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{}={}", l.name, l.description))
            .collect();
        let control = self.clients.control.as_ref();
        info!(
            event = events::MASTER_STARTED,
            pid = std::process::id(),
            workers = self.supervisor.desired(),
            listen = %addrs.join(","),
            command = %self.launch.display(),
            ready = %self.options.ready,
            control = %control.map_or("none".into(), |c| c.path().display().to_string()),
            stats = %self.clients.stats.server.as_ref().map_or("none", |s| s.description.as_str()),
            "master started"
        );
    }

    /// The shutdown is complete: as-user-atexit, vacuum, and the outcome.
    fn exit(mut self) -> Result<(), MasterError> {
        self.run_atexit();
        info!(event = events::SHUTDOWN_COMPLETE, "shutdown complete");
        self.remove_stats_socket();
        if self.options.skip_atexit_teardown {
            // No teardown: no vacuum, no destructor run. Only the notify socket,
            // steward's private runtime file, is removed.
            let _ = std::fs::remove_file(self.notify.path());
            let failure = self.failure.take();
            std::mem::forget(self);
            return failure.map_or(Ok(()), Err);
        }
        if self.options.vacuum {
            self.vacuum();
        }
        self.failure.map_or(Ok(()), Err)
    }

    /// Reads what a ready source has to say.
    fn on_source(&mut self, token: Token) {
        match token {
            Token::UpgradeCheck => self.read_check_output(),
            Token::Notify => self.read_notify(),
            Token::Signals => {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        self.on_emperor_signal(signal, Pid::from_raw(info.ssi_pid as i32));
                        self.on_signal(signal);
                    }
                }
                // After every signal read: a shutdown among them has killed the check.
                self.upgrade_check_ended();
            }
            Token::Touch => self.on_touch(),
            Token::ControlListener | Token::Control(_) => self.on_control(),
            Token::Fifo(_) => self.on_fifos(),
            Token::WorkerOutput(slot) => self.on_output(slot),
            Token::StatsListener | Token::Stats(_) => self.on_stats(token),
            Token::Listener(_) => self.wake_up(Instant::now()),
        }
    }

    /// Sends a worker's lines on; one that matches `ready = log:` while the worker
    /// starts makes it ready.
    fn on_output(&mut self, slot: usize) {
        let writer = self.outputs.writer(slot);
        let starting = writer.is_some_and(|w| {
            let worker = self.supervisor.workers().iter().find(|x| x.pid == w.pid);
            worker.is_some_and(|x| x.state == crate::supervisor::WorkerState::Starting)
        });
        let pattern = self
            .supervisor
            .settings()
            .ready
            .log_pattern()
            .filter(|_| starting);
        let read = self.outputs.read(slot, pattern, Instant::now());
        if read.closed {
            if let Some(fd) = self.outputs.fd(slot) {
                self.registry.remove(fd);
            }
            self.outputs.close(slot);
        }
        if let (true, Some(writer)) = (read.matched, writer) {
            self.dispatch(Event::LogMatched { pid: writer.pid });
        }
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Supervisor(deadline) => self.dispatch(Event::Timer(deadline)),
                TimerKey::Watchdog => {
                    self.notify_systemd(&[State::Watchdog]);
                    if let Some(every) = self.watchdog_every {
                        self.timers.arm(TimerKey::Watchdog, now + every);
                    }
                }
                TimerKey::ExtendTimeout => self.extend_stop_timeout(now),
                TimerKey::TouchSettled => self.touches_settled(),
                TimerKey::UpgradeCheck => self.upgrade_check_timed_out(),
                TimerKey::Probe => self.probe_starting(),
                TimerKey::ControlTimeout => self.control_timed_out(),
                TimerKey::Orphans => self.kill_late_orphans(now),
                TimerKey::Stats => self.expire_stats(now),
                TimerKey::Cheaper => self.cheaper_tick(now),
                TimerKey::Idle => self.idle_tick(now),
            }
        }
        self.schedule_probe(Instant::now());
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD => self.reap(),
            Signal::SIGHUP => {
                self.begin_reload(self.options.reload_strategy == ReloadStrategy::Chain)
            }
            Signal::SIGUSR2 => self.begin_reload(true),
            Signal::SIGTERM => self.dispatch(Event::Shutdown { graceful: true }),
            Signal::SIGINT | Signal::SIGQUIT => self.dispatch(Event::Shutdown { graceful: false }),
            Signal::SIGUSR1 => self.report_status(),
            Signal::SIGTTIN => self.dispatch(Event::Resize { more: true }),
            Signal::SIGTTOU => self.dispatch(Event::Resize { more: false }),
            _ => {}
        }
    }

    fn begin_reload(&mut self, chain: bool) {
        let reexec = self.binary.changed() || self.launch.reexecs_on_reload();
        self.dispatch(Event::Reload { chain, reexec });
    }

    fn read_notify(&mut self) {
        let mut datagram = [0u8; NOTIFY_MAX];
        while let Some((sender, len)) = self.notify.receive(&mut datagram) {
            self.on_notify(sender, &datagram[..len]);
        }
    }

    fn reap(&mut self) {
        // A worker's last datagrams (STOPPING=1, STATUS=) are read while it is still
        // known: they may have come after the wake-up that brought its SIGCHLD.
        self.read_notify();
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else { continue };
            if self.check_exited(pid, &status) {
                continue;
            }
            let supervised = self.supervisor.workers().iter().any(|w| w.pid == pid)
                || self.supervisor.mule(pid).is_some();
            if supervised {
                self.ignored.worker_exited(pid);
                self.count_exit(&status);
                let how = describe_exit(&status);
                self.dispatch(Event::Exited { pid, how });
            } else {
                self.orphan_reaped(pid, &status);
            }
        }
        // What exited may have left children behind: they are reparented here.
        self.stop_leftovers(Instant::now());
    }

    fn on_notify(&mut self, sender: Pid, bytes: &[u8]) {
        let now = Instant::now();
        let Some(worker) = self.supervisor.worker_mut(sender) else {
            if self.ignored.exited_lately(sender) {
                tracing::debug!(pid = %sender, "notify message from a worker already gone");
            } else if let Some(suppressed) = self.ignored.may_warn(now) {
                warn!(event = events::NOTIFY_IGNORED, pid = %sender, suppressed, "ignored notify message: the sender is not a worker");
            }
            return;
        };
        let message = match Notification::parse(bytes) {
            Ok(message) => message,
            Err(e) => {
                if let Some(suppressed) = self.ignored.may_warn(now) {
                    warn!(event = events::NOTIFY_IGNORED, worker = worker.id, pid = %sender, error = %e, suppressed, "ignored notify message");
                }
                return;
            }
        };
        if let Some(status) = &message.status {
            worker.status = Some(status.clone());
        }
        if message.stopping {
            tracing::debug!(worker = worker.id, generation = worker.generation, pid = %sender, "worker says it is stopping");
        }
        if message.ready {
            if matches!(self.supervisor.settings().ready, ReadyMode::Auto(_)) {
                self.look_at_early_ready(sender);
            }
            self.dispatch(Event::ReadyMessage { pid: sender });
        }
        self.on_lifecycle_fields(sender, &message);
    }

    /// Hands `event` to the supervisor and carries out what it decides.
    fn dispatch(&mut self, event: Event) {
        // A reload starts the workers cheap mode retired: it replaces them.
        if matches!(event, Event::Reload { .. }) {
            self.wake_up(Instant::now());
        }
        let actions = self.supervisor.handle(event, Instant::now());
        self.execute_all(actions);
    }

    /// Carries out `actions` in order; the answers to those that are questions go back
    /// to the supervisor, and its further actions are carried out after.
    fn execute_all(&mut self, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            for answer in self.execute(action) {
                queue.extend(self.supervisor.handle(answer, Instant::now()));
            }
        }
        self.schedule_probe(Instant::now());
    }

    fn execute(&mut self, action: Action) -> Vec<Event> {
        match action {
            Action::Spawn(workers) => return self.spawn(workers),
            Action::StartMule(id) => return vec![self.start_mule(id)],
            Action::Stop(pid) => self.stop_child(pid),
            Action::Kill(pid) => {
                self.clients.stats.counters.killed_at_mercy();
                signal_group(pid, Signal::SIGKILL)
            }
            Action::Abort(pid) => recycle::abort(pid),
            Action::Arm(deadline, at) => self.timers.arm(TimerKey::Supervisor(deadline), at),
            Action::Disarm(deadline) => self.timers.disarm(TimerKey::Supervisor(deadline)),
            Action::RunHook(hook) => {
                let phase = match hook {
                    GenerationHook::PreApp => Phase::PreApp,
                    GenerationHook::PostApp => Phase::PostApp,
                };
                let since = self.hooks_start(phase);
                let result = self.hooks.run(phase);
                self.keep_orphans(since);
                return vec![Event::HookRan { hook, result }];
            }
            Action::Accepting { id, first_time } => self.run_accepting(id, first_time),
            Action::Atexit => self.run_atexit(),
            Action::Notify(states) => self.notify_systemd(&states),
            Action::ReadConfig => return vec![Event::ConfigRead(Box::new(self.reread_config()))],
            Action::StartUpgradeCheck => return self.begin_upgrade(),
            Action::KillUpgradeCheck => self.kill_upgrade_check(),
            Action::Reexec { chain } => {
                self.upgrade(chain);
                return vec![Event::ReexecFailed];
            }
            Action::ReloadFinished { generation, result } => {
                self.reload_finished(generation, result)
            }
            Action::FirstGenerationReady => crate::startup::first_generation_ready(&self.options),
            Action::ShuttingDown { .. } => self.shutting_down(),
            Action::Failed => self.failed(),
            Action::MeasureMemory { pids, smaps } => return Self::measure_memory(&pids, smaps),
        }
        Vec::new()
    }

    /// Asks a worker to stop with the worker stop signal, a mule with SIGTERM.
    fn stop_child(&self, pid: Pid) {
        if let Some(mule) = self.supervisor.mule(pid) {
            info!(event = events::MULE_STOPPING, mule = mule.id, pid = %pid, "stopping mule");
            signal_group(pid, Signal::SIGTERM);
            return;
        }
        let signal =
            Signal::try_from(self.options.worker_stop_signal.number()).unwrap_or(Signal::SIGTERM);
        if let Some(w) = self.supervisor.workers().iter().find(|w| w.pid == pid) {
            info!(event = events::WORKER_STOPPING, worker = w.id, generation = w.generation, pid = %pid, signal = %signal, "stopping worker");
        }
        signal_group(pid, signal);
    }

    /// What ended the first generation, kept as the master's outcome.
    fn failed(&mut self) {
        let failure = match self.supervisor.take_failure() {
            Some(Failure::WorkerFailedToStart { id, status }) => MasterError::WorkerFailedToStart {
                id,
                command: self.launch.display(),
                status,
            },
            Some(Failure::WorkerNotReady { id, timeout }) => MasterError::WorkerNotReady {
                id,
                command: self.launch.display(),
                timeout,
            },
            Some(Failure::WorkerNotStarted { reason }) => MasterError::WorkerNotStarted(reason),
            Some(Failure::Hook(e)) => e.into(),
            None => return,
        };
        // Said once, by whoever runs the master, when `run` returns it.
        self.failure = Some(failure);
    }

    fn notify_systemd(&self, states: &[State]) {
        if let Err(e) = self.systemd.send(states) {
            warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// The order in which ready sources are read in one pass: a worker's last lines and
/// datagrams before the SIGCHLD of its exit.
fn source_order(token: Token) -> u8 {
    match token {
        Token::UpgradeCheck => 0,
        Token::WorkerOutput(_) => 1,
        Token::Notify => 2,
        Token::Signals => 3,
        Token::Touch => 4,
        Token::ControlListener | Token::Control(_) => 5,
        Token::Fifo(_) => 6,
        Token::StatsListener | Token::Stats(_) => 7,
        // After a shutdown or reload read in the same pass: no wake-up for nothing.
        Token::Listener(_) => 8,
    }
}

/// Signals the child's process group (it leads one), so its own children hear it too.
fn signal_group(pid: Pid, signal: Signal) {
    if let Err(errno) = killpg(pid, signal) {
        // ESRCH: it has exited and awaits reaping.
        if errno != Errno::ESRCH {
            warn!(pid = %pid, signal = %signal, error = %errno, "cannot signal worker");
        }
    }
}

/// "status 1" or "signal SIGKILL", for messages.
pub(crate) fn describe_exit(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("signal {signal}"),
        other => format!("{other:?}"),
    }
}
