use std::{
    fs::File,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::{
        signal::{killpg, sigprocmask, SigSet, SigmaskHow, Signal},
        signalfd::{SfdFlags, SignalFd},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};
use steward_hooks::{Callbacks, Hooks, Jail, Phase, TouchWatcher};
use steward_options::{ConfigSources, Options, ReadyMode, ReloadStrategy};
use steward_sys::{fork_worker, spawn_unconfirmed, ChildFds, Unconfirmed};
use steward_systemd::{Activation, Notification, Notifier, State};
use tracing::{error, info, warn};

use crate::{
    command::WorkerCommand,
    control::{control_socket_path, ConnectionId, ControlRequest, ControlServer},
    fifo::{FifoCommand, MasterFifo},
    listen::{listeners, Listener},
    notify::{NotifySocket, NOTIFY_MAX},
    pidfile::HeldPidfile,
    preload::{ForkLaunch, WorkerIdentity},
    procname,
    reexec::{
        exit_status, take_handover, take_kept, Binary, CheckChild, HandedListener, HandedSocket,
        HandedWaiter, HandedWorker, Handover,
    },
    startup,
    status::{ReloadOutcome, StatusReport},
    table::{describe_exit, Respawn, Slot, Worker, WorkerState},
    MasterError,
};

mod mules;
mod phases;
mod reconfigure;

/// Where the master is in its life. Signals move it along:
///
/// | signal | effect |
/// |---|---|
/// | SIGHUP | graceful reload: a new generation starts; once every new worker is ready, the old generation is asked to stop |
/// | SIGUSR2 | chain reload: the same, one worker at a time (new worker N ready, old worker N asked to stop, then N+1) |
/// | SIGTERM | graceful shutdown: every worker is asked to stop (worker stop signal, SIGKILL after the mercy); exit 0 once all are gone |
/// | SIGINT, SIGQUIT | brutal shutdown: every worker's process group gets SIGKILL; exit 0 once all are reaped |
/// | SIGUSR1 | a status report in the log: one line per worker |
/// | SIGTTIN / SIGTTOU | one worker more / one fewer (never fewer than one) |
/// | SIGCHLD | reap; a worker that exits unasked is started again (same id and generation), after a backoff if it keeps crashing |
///
/// A reload or a resize in [`Lifecycle::Starting`] or [`Lifecycle::Running`] is carried
/// out in that phase; in [`Lifecycle::Stopping`] only a brutal shutdown still acts.
///
/// A reload that re-execs the master (a replaced binary, or preload mode) first runs
/// the new binary's checks, and stays [`Lifecycle::Running`] while they run: the loop
/// goes on respawning, answering (`steward status` says the check is under way),
/// sending WATCHDOG=1; a further reload is folded into the pending one; a shutdown
/// kills the check. Once the check passes the master re-execs; once it fails (or
/// times out) the reload goes on with the running binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The first generation is starting. A worker that exits before it is ready ends
    /// the master with an error: there is nothing to keep serving.
    Starting,
    /// A generation is serving (READY=1 has been sent to systemd). Reloads, respawns and
    /// resizes happen here.
    Running,
    /// Shutting down: no worker is started again; the master exits once all are gone.
    Stopping {
        /// Workers drain (stop signal, then SIGKILL after the mercy) rather than being killed.
        graceful: bool,
    },
}

/// A worker that exited unasked, or that could not be started (no pid then).
struct FailedStart {
    id: usize,
    generation: u64,
    pid: Option<Pid>,
    state: WorkerState,
    respawned: bool,
    lived: Duration,
    how: String,
}

/// systemd's watchdog: `WATCHDOG=1` every half interval, from the loop itself, so a
/// master that hangs (or is stopped) is restarted.
#[derive(Debug)]
struct Watchdog {
    every: Duration,
    next: Instant,
}

/// While workers drain in a shutdown, systemd is asked for more time this often, so its
/// stop timeout never cuts a drain shorter than the worker reload mercy.
const EXTEND_TIMEOUT_EVERY: Duration = Duration::from_secs(5);

/// A reload in progress, from the signal until the old generations are gone.
#[derive(Debug)]
struct Reload {
    generation: u64,
    chain: bool,
    started: Instant,
}

/// A re-exec waiting for the new binary's check (see [`Lifecycle`]).
#[derive(Debug)]
struct PendingUpgrade {
    check: CheckChild,
    /// The reload to carry out, by the new image or, if refused, by this one.
    chain: bool,
    /// The check's exit, once reaped; acted on after the signals are read.
    ended: Option<std::process::ExitStatus>,
    started: Instant,
}

/// The signals the master takes through its signalfd (blocked, never delivered).
pub(crate) fn handled_signals() -> SigSet {
    [
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGCHLD,
    ]
    .into_iter()
    .collect()
}

/// How a worker starts: its command exec'd, or (preload mode, [`crate::Builder`]) a
/// fork of the master running a closure.
#[derive(Debug)]
pub(crate) enum Launch {
    Exec(WorkerCommand),
    Fork(ForkLaunch),
}

/// How many exec'd workers are forked before their execs are confirmed: enough for the
/// execs to overlap, few enough that the report pipes stay far below the descriptor limit.
const CONFIRM_BATCH: usize = 64;

/// A worker start that did not fail at once.
enum Started {
    /// Recorded in the table (a forked worker of preload mode).
    Running,
    /// Forked, exec not confirmed yet.
    Exec(Unconfirmed),
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

    lifecycle: Lifecycle,
    workers: Vec<Worker>,
    respawns: Vec<Respawn>,
    slots: Vec<Slot>,
    /// How many workers to keep: `workers`, changed by SIGTTIN / SIGTTOU.
    desired: usize,
    /// The generation new workers belong to.
    current: u64,
    /// The last generation to have been fully ready, if any.
    serving: Option<u64>,
    /// The highest generation number handed out.
    latest: u64,
    reload: Option<Reload>,
    /// A re-exec whose check runs.
    upgrade: Option<PendingUpgrade>,
    failure: Option<MasterError>,

    control: Option<ControlServer>,
    fifos: Vec<MasterFifo>,
    /// Control clients waiting for the outcome of the reload to this generation or a
    /// later one (a reload that supersedes theirs answers for it).
    reload_waiters: Vec<(ConnectionId, u64)>,
    last_reload: Option<ReloadOutcome>,
    watchdog: Option<Watchdog>,
    extend_timeout_at: Option<Instant>,
    binary: Binary,
    /// Where the options came from, read again at each reload (see reconfigure.rs).
    config_sources: Option<ConfigSources>,

    /// Every hook of the configuration, parsed at start (see phases.rs).
    hooks: Hooks,
    /// The files of touch-reload, hook-touch and run-command-on-touch.
    touch: Option<TouchWatcher>,
    /// Touched files not acted on yet, and when to (once they are quiet).
    touched: Vec<std::path::PathBuf>,
    touch_due: Option<Instant>,
    /// The last generation whose pre-app hooks ran.
    pre_app_done: u64,
    /// Worker ids whose accepting-once hooks ran.
    accepted_once: std::collections::BTreeSet<usize>,
    /// This image was re-exec'd by a previous one and adopted its workers.
    resumed: bool,
    /// `pidfile`, held open until `daemonize2` has put the daemon's pid in it.
    held_pidfile: Option<HeldPidfile>,
    /// The working directory once `chdir` was applied, where the relative paths of the
    /// sockets, FIFOs and pidfiles start from.
    files_dir: PathBuf,
    /// The auxiliary processes (`mule`), in configuration order.
    mules: Vec<crate::mule::Mule>,
    /// Where vacuum reaches the files made before the jail.
    made_root: MadeFilesRoot,
}

/// Where the sockets, the control socket and the FIFOs are, for vacuum: they are made
/// on the host's paths, before a chroot, so after it the same paths name the jail's
/// files, which are not steward's to remove.
#[derive(Debug)]
enum MadeFilesRoot {
    /// No chroot (or no vacuum): the paths mean what they meant.
    Here,
    /// The host's `/`, held from before the chroot (close-on-exec, and closed in every
    /// forked worker: a jailed process holding it could leave the jail).
    Host(std::os::fd::OwnedFd),
    /// Chrooted without a way out (a re-exec'd image): the files are left.
    Unreachable,
}

impl MadeFilesRoot {
    /// Before the jail: the host's root when a chroot is to come and vacuum needs it.
    fn before_jail(options: &Options, resumed: bool) -> MadeFilesRoot {
        if !options.vacuum || options.chroot.is_none() {
            return MadeFilesRoot::Here;
        }
        if resumed {
            return MadeFilesRoot::Unreachable;
        }
        let flags = nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_CLOEXEC;
        match nix::fcntl::open("/", flags, nix::sys::stat::Mode::empty()) {
            Ok(root) => MadeFilesRoot::Host(root),
            Err(errno) => {
                warn!(error = %errno, "cannot hold the host's root: vacuum will leave the sockets and FIFOs made outside the chroot");
                MadeFilesRoot::Unreachable
            }
        }
    }

    /// Removes `paths` (absolute, the host's); one that cannot be removed is reported
    /// and left.
    fn remove(&self, paths: Vec<PathBuf>) {
        let root = match self {
            MadeFilesRoot::Here => return remove_files(paths),
            MadeFilesRoot::Host(root) => root,
            MadeFilesRoot::Unreachable => {
                for path in paths {
                    warn!(path = %path.display(), "vacuum: left: made outside the chroot, which this image cannot reach");
                }
                return;
            }
        };
        for path in paths {
            let relative = path.strip_prefix("/").unwrap_or(&path);
            match nix::unistd::unlinkat(root, relative, nix::unistd::UnlinkatFlags::NoRemoveDir) {
                Ok(()) => info!(path = %path.display(), "vacuum: removed"),
                Err(Errno::ENOENT) => {}
                Err(errno) => {
                    warn!(path = %path.display(), error = %errno, "vacuum: cannot remove")
                }
            }
        }
    }

    fn fd(&self) -> Option<RawFd> {
        match self {
            MadeFilesRoot::Host(root) => Some(root.as_raw_fd()),
            _ => None,
        }
    }
}

impl Master {
    /// Validates `options`, binds the sockets and the notify socket, and takes over the
    /// signals of the table on [`Lifecycle`] (they are blocked and read from a signalfd,
    /// so call this from the thread that will call [`Master::run`], before starting others:
    /// it fails with [`MasterError::ThreadsAtStart`] if other threads already run).
    pub fn new(options: Options) -> Result<Master, MasterError> {
        Master::with_callbacks(options, Callbacks::new())
    }

    /// [`Master::new`] with the callbacks that `call:NAME` hooks may name, for a
    /// program that embeds the master. Runs the start phases up to as-user (see the
    /// README's Hooks section): asap before anything is bound, the jail after. With
    /// `unshare = pid` the process forks: this returns in the child, the master; the
    /// parent stays outside the namespace until the master exits, and never returns.
    pub fn with_callbacks(options: Options, callbacks: Callbacks) -> Result<Master, MasterError> {
        Master::with_launch(options, None, callbacks)
    }

    /// [`Master::with_callbacks`], with workers forked to run `fork` (preload mode) when
    /// given, else exec'd from the options' command.
    pub(crate) fn with_launch(
        options: Options,
        fork: Option<ForkLaunch>,
        callbacks: Callbacks,
    ) -> Result<Master, MasterError> {
        let others = crate::preload::other_threads();
        if !others.is_empty() {
            return Err(MasterError::ThreadsAtStart {
                count: others.len(),
                names: others.join(", "),
            });
        }
        let handover = take_handover()?;
        let resumed = handover.is_some();
        let options = match take_kept() {
            // As a reload by the old image would, the new one keeps the values the master
            // runs with of the options a reload cannot change, and names those the file
            // changed.
            Some(kept) if resumed => match crate::reexec::decode_kept(&kept) {
                Ok(running) => {
                    let (merged, needs_restart) =
                        crate::master::reconfigure::merge_reloaded(&running, options);
                    for note in needs_restart {
                        warn!(
                            event = crate::events::NEEDS_RESTART,
                            "needs a restart: {note}; the running value is kept"
                        );
                    }
                    merged
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the running options handed over; the file's apply");
                    options
                }
            },
            _ => options,
        };
        match fork {
            Some(_) => options.validate_without_command()?,
            None => options.validate()?,
        }
        let hooks = Hooks::new(&options, callbacks)?;
        let jail = Jail::new(&options)?;
        // The master is still one thread (checked above): setting its environment here
        // races nothing, and every hook and worker forked later inherits it.
        for pair in &options.env {
            if let Some((name, value)) = pair.split_once('=') {
                std::env::set_var(name, value);
            }
        }
        // Before anything rewrites the argv memory (process names).
        let mut binary = Binary::new(options.binary_path.as_deref());
        binary.check_by_environment = fork.is_some();
        let credentials = startup::asap(&options, &hooks, resumed, binary.argv())?;
        // Where relative paths of the files steward makes start from, for vacuum.
        let files_dir = std::env::current_dir().unwrap_or_default();
        if resumed {
            startup::resume_chdir2(&options);
        }
        let listeners = match &handover {
            Some(handover) => handover
                .listeners
                .iter()
                .map(HandedListener::adopt)
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let inherited = match steward_systemd::take_listen_fds()? {
                    Activation::Sockets(sockets) => sockets,
                    Activation::Absent => Vec::new(),
                    Activation::NotForThisProcess { listen_pid } => {
                        warn!(listen_pid = %listen_pid.as_deref().unwrap_or("unset"),
                            "LISTEN_FDS is set but LISTEN_PID is not this process: those descriptors are not ours; ignored");
                        Vec::new()
                    }
                };
                listeners(&options, inherited)?
            }
        };
        let fd_names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
        let notify = match handover.as_ref().and_then(|h| h.notify.clone()) {
            Some(HandedSocket { fd, path }) => NotifySocket::adopt(fd, path)?,
            None => NotifySocket::bind()?,
        };
        let systemd = Notifier::from_env().unwrap_or_else(|e| {
            warn!(error = %e, "NOTIFY_SOCKET is unusable; systemd will not be notified");
            Notifier::new(None).expect("a disabled notifier needs no socket")
        });

        if handover.is_none() {
            store_sockets(&systemd, &listeners);
        }
        let mut reload_waiters = Vec::new();
        let control = match handover.as_ref().and_then(|h| h.control.clone()) {
            Some(HandedSocket { fd, path }) => {
                let waiting = handover.as_ref().map_or(&[][..], |h| &h.waiters[..]);
                let (control, ids) = ControlServer::adopt(fd, path, waiting.iter().map(|w| w.fd))
                    .map_err(MasterError::Handover)?;
                reload_waiters = ids
                    .into_iter()
                    .zip(waiting.iter().map(|w| w.generation))
                    .collect();
                Some(control)
            }
            None => match control_socket_path(
                options.control_socket.as_deref(),
                std::env::var_os("RUNTIME_DIRECTORY").as_deref(),
            ) {
                None => None,
                Some(path) => Some(
                    ControlServer::bind(&path)
                        .map_err(|source| MasterError::ControlSocket { path, source })?,
                ),
            },
        };
        let mut fifos = Vec::new();
        for path in &options.master_fifo {
            let opened = MasterFifo::open(path).map_err(|source| MasterError::MasterFifo {
                path: path.clone(),
                source,
            });
            match opened {
                Ok(fifo) => fifos.push(fifo),
                // A re-exec'd master no longer root: a FIFO it cannot make is no reason
                // to end the master that serves.
                Err(e) if resumed => warn!(error = %e, "after re-exec; that FIFO is not read"),
                Err(e) => return Err(e),
            }
        }

        let mut owned: Vec<&std::path::Path> = vec![notify.path()];
        owned.extend(control.as_ref().map(|c| c.path()));
        owned.extend(fifos.iter().map(|f| f.path()));
        let made_root = MadeFilesRoot::before_jail(&options, resumed);
        let started = (|| {
            startup::give_to_final_user(&credentials, &owned, resumed)?;
            startup::jail(&hooks, &jail, resumed)?;
            let held_pidfile = startup::as_root(&options, &hooks, resumed)?;
            startup::drop_privileges(&credentials, resumed)?;
            startup::as_user(&options, &hooks, resumed)?;
            Ok::<_, MasterError>(held_pidfile)
        })();
        let held_pidfile = started.inspect_err(|_| {
            if options.vacuum {
                let made = made_files(&options, &files_dir, &listeners, control.as_ref(), &fifos);
                vacuum_failed_start(&options, &files_dir, made, &made_root);
            }
        })?;

        // Resolved in the jail, where the workers run.
        let launch = match fork {
            Some(fork) => Launch::Fork(fork),
            None => Launch::Exec(WorkerCommand::new(
                &options.command,
                &fd_names,
                notify.path(),
            )?),
        };
        let dev_null = File::open("/dev/null").map_err(MasterError::DevNull)?;
        let touch = phases::touch_watcher(&options, &hooks)?;
        let mules = mules::mules(&options.mule)?;
        let watchdog = steward_systemd::watchdog_interval()
            .filter(|_| systemd.is_enabled())
            .map(|interval| Watchdog {
                every: interval / 2,
                next: Instant::now(),
            });

        let mask = handled_signals();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(MasterError::Signals)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(MasterError::Signals)?;

        let desired = options.workers;
        let mut master = Master {
            options,
            listeners,
            launch,
            notify,
            signals,
            dev_null,
            systemd,
            lifecycle: Lifecycle::Starting,
            workers: Vec::new(),
            respawns: Vec::new(),
            slots: Vec::new(),
            desired,
            current: 1,
            serving: None,
            latest: 1,
            reload: None,
            upgrade: None,
            failure: None,
            control,
            fifos,
            reload_waiters,
            last_reload: None,
            watchdog,
            extend_timeout_at: None,
            binary,
            config_sources: None,
            hooks,
            touch,
            touched: Vec::new(),
            touch_due: None,
            pre_app_done: 0,
            accepted_once: Default::default(),
            resumed,
            held_pidfile,
            files_dir,
            mules,
            made_root,
        };
        if let Some(handover) = handover {
            master.resume(handover);
        }
        Ok(master)
    }

    /// Takes up where the previous image of this process left off: its workers, its
    /// generations, and the reload that asked for the re-exec.
    fn resume(&mut self, handover: Handover) {
        let now = Instant::now();
        self.workers
            .extend(handover.workers.into_iter().map(|w| w.adopt(now)));
        self.accepted_once = self.workers.iter().map(|w| w.id).collect();
        self.pre_app_done = handover.current;
        self.current = handover.current;
        self.latest = handover.latest;
        self.serving = handover.serving;
        self.desired = handover.desired;
        self.lifecycle = if self.serving.is_some() {
            Lifecycle::Running
        } else {
            Lifecycle::Starting
        };
        info!(event = crate::events::UPGRADE_RESUMED, binary = %self.binary.path.display(),
            workers = self.workers.len(),
            generation = self.current,
            "re-executed: workers adopted"
        );
        // The reload that asked for the re-exec, carried out by this image.
        self.start_reload(handover.reload_chain);
    }

    /// Starts the new binary's check before a re-exec; the loop waits for it. Returns
    /// false if it could not start, the reload then going on with the running binary.
    fn begin_upgrade(&mut self, chain: bool) -> bool {
        if self.binary.changed() {
            info!(binary = %self.binary.path.display(), "binary changed; re-executing");
        } else {
            info!(binary = %self.binary.path.display(), "preload mode: re-executing, so that the app loads anew");
        }
        match self.binary.start_check(self.options.preload_check_timeout) {
            Ok(check) => {
                info!(event = crate::events::UPGRADE_CHECK_STARTED, pid = %check.pid, "checking the new binary before the re-exec");
                self.notify_systemd(&[State::Status("reloading: checking the new binary".into())]);
                self.upgrade = Some(PendingUpgrade {
                    check,
                    chain,
                    ended: None,
                    started: Instant::now(),
                });
                true
            }
            Err(e) => {
                error!(event = crate::events::UPGRADE_REFUSED, error = %e, "re-exec refused; reloading with the running binary");
                false
            }
        }
    }

    /// Acts on the end of the pending upgrade's check: the next check, the re-exec, or
    /// (refused, or the exec failed) the reload with the running binary.
    fn upgrade_check_ended(&mut self) {
        let Some(upgrade) = self.upgrade.take() else {
            return;
        };
        let Some(status) = upgrade.ended else {
            self.upgrade = Some(upgrade);
            return;
        };
        match self.binary.check_ended(upgrade.check, status) {
            Ok(Some(next)) => {
                self.upgrade = Some(PendingUpgrade {
                    check: next,
                    ended: None,
                    ..upgrade
                });
            }
            Ok(None) => {
                self.upgrade(upgrade.chain);
                self.start_reload(upgrade.chain);
            }
            Err(e) => {
                error!(event = crate::events::UPGRADE_REFUSED, error = %e, "re-exec refused; reloading with the running binary");
                self.start_reload(upgrade.chain);
            }
        }
    }

    /// The pending upgrade's check ran out of time: killed, and the reload goes on.
    fn upgrade_check_timed_out(&mut self, now: Instant) {
        if !self
            .upgrade
            .as_ref()
            .is_some_and(|u| u.ended.is_none() && now >= u.check.deadline)
        {
            return;
        }
        let Some(upgrade) = self.upgrade.take() else {
            return;
        };
        let e = self.binary.check_timed_out(upgrade.check);
        error!(event = crate::events::UPGRADE_REFUSED, error = %e, "re-exec refused; reloading with the running binary");
        self.start_reload(upgrade.chain);
    }

    /// Re-execs the master from the new binary, whose checks passed, which carries out
    /// this reload. Returns only if it did not happen, the old image going on as it was.
    fn upgrade(&mut self, chain: bool) {
        // The new image reads the file itself, so it cannot tell a `workers` changed in
        // it from one it always had (and SIGTTIN/SIGTTOU may have moved since): the
        // change comes in the handover, as a reload by this image would apply it.
        let desired = match self.config_sources.as_ref().map(ConfigSources::load) {
            Some(Ok(config)) if config.options.workers != self.options.workers => {
                config.options.workers
            }
            _ => self.desired,
        };
        let now = Instant::now();
        let handover = Handover {
            pid: std::process::id(),
            current: self.current,
            latest: self.latest,
            serving: self.serving,
            desired,
            reload_chain: chain,
            listeners: self.listeners.iter().map(HandedListener::of).collect(),
            notify: Some(HandedSocket {
                fd: self.notify.as_fd().as_raw_fd(),
                path: self.notify.path().to_owned(),
            }),
            control: self.control.as_ref().map(|c| HandedSocket {
                fd: c.listener_fd().as_raw_fd(),
                path: c.path().to_owned(),
            }),
            waiters: self
                .reload_waiters
                .iter()
                .filter_map(|(id, generation)| {
                    let fd = self.control.as_ref()?.connection_fd(*id)?;
                    Some(HandedWaiter {
                        fd: fd.as_raw_fd(),
                        generation: *generation,
                    })
                })
                .collect(),
            workers: self
                .workers
                .iter()
                .map(|w| HandedWorker::of(w, now))
                .collect(),
        };
        // Mules are not handed over: the new image starts its own.
        self.stop_mules(true, now);
        let mut keep: Vec<BorrowedFd<'_>> = self.listeners.iter().map(|l| l.as_fd()).collect();
        keep.push(self.notify.as_fd());
        if let Some(control) = &self.control {
            keep.push(control.listener_fd());
            keep.extend(
                self.reload_waiters
                    .iter()
                    .filter_map(|(id, _)| control.connection_fd(*id)),
            );
        }
        let failure = self.binary.exec(&handover, &self.options, &keep);
        error!(event = crate::events::UPGRADE_REFUSED, error = %failure, "re-exec failed; reloading with the running binary");
    }

    /// `vacuum`: removes what the master created on the filesystem. A file that cannot
    /// be removed (the master dropped privileges and the directory is not its) is
    /// reported and left.
    fn vacuum(&self) {
        // Written after the jail: its paths are the jail's.
        remove_files(startup::pidfiles(&self.options, &self.files_dir));
        self.made_root.remove(self.made_files());
    }

    /// The files this master made, besides its pidfiles.
    fn made_files(&self) -> Vec<PathBuf> {
        made_files(
            &self.options,
            &self.files_dir,
            &self.listeners,
            self.control.as_ref(),
            &self.fifos,
        )
    }

    /// The sockets the workers receive, in order.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Runs until a shutdown completes. Returns the error that ended the master, if it
    /// was not a requested shutdown.
    pub fn run(mut self) -> Result<(), MasterError> {
        let addrs: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{}={}", l.name, l.description))
            .collect();
        info!(event = crate::events::MASTER_STARTED, pid = std::process::id(),
            workers = self.desired,
            listen = %addrs.join(","),
            command = %self.launch.display(),
            ready = %self.options.ready,
            control = %self.control.as_ref().map_or("none".into(), |c| c.path().display().to_string()),
            "master started"
        );
        if !self.resumed {
            let held_pidfile = self.held_pidfile.take();
            startup::master_start(&self.options, &self.hooks, held_pidfile).inspect_err(|_| {
                if self.options.vacuum {
                    vacuum_failed_start(
                        &self.options,
                        &self.files_dir,
                        self.made_files(),
                        &self.made_root,
                    );
                }
            })?;
        }
        self.start_due_mules(Instant::now());
        let mut datagram = [0u8; NOTIFY_MAX];
        loop {
            // A started worker can be ready at once (immediate mode), which can make a
            // generation ready and retire the old one: reconcile until nothing starts.
            while self.reconcile() {}
            if let Lifecycle::Stopping { .. } = self.lifecycle {
                if self.workers.is_empty() && !self.mules_running() {
                    self.run_atexit();
                    info!(
                        event = crate::events::SHUTDOWN_COMPLETE,
                        "shutdown complete"
                    );
                    if self.options.skip_atexit_teardown {
                        // No teardown: no vacuum, no destructor run. Only the
                        // notify socket, steward's private runtime file, is removed.
                        let _ = std::fs::remove_file(self.notify.path());
                        let code = i32::from(self.failure.is_some());
                        std::process::exit(code);
                    }
                    if self.options.vacuum {
                        self.vacuum();
                    }
                    return self.failure.map_or(Ok(()), Err);
                }
            }
            let timeout = match self.next_deadline() {
                None => PollTimeout::NONE,
                Some(deadline) => {
                    // Rounded up: waking a little early would spin until the deadline.
                    let wait = deadline.saturating_duration_since(Instant::now());
                    let millis = wait.as_micros().div_ceil(1000);
                    PollTimeout::try_from(millis.min(i32::MAX as u128) as i32)
                        .unwrap_or(PollTimeout::MAX)
                }
            };
            let (signals_ready, notify_ready, touch_ready, control_ready, fifo_ready, check_ready) = {
                let mut fds = vec![
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.notify.as_fd(), PollFlags::POLLIN),
                ];
                let check_pipe = self.upgrade.as_ref().and_then(|u| u.check.pipe());
                let check_count = usize::from(check_pipe.is_some());
                fds.extend(check_pipe.map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                let touch_count = usize::from(self.touch.is_some());
                fds.extend(
                    self.touch
                        .as_ref()
                        .map(|t| PollFd::new(t.as_fd(), PollFlags::POLLIN)),
                );
                let control_fds = self.control.as_ref().map_or(Vec::new(), |c| c.poll_fds());
                let control_count = control_fds.len();
                fds.extend(
                    control_fds
                        .into_iter()
                        .chain(self.fifos.iter().map(|f| f.as_fd()))
                        .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                );
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(errno) => return Err(MasterError::Poll(errno)),
                }
                let readable = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                let (check, rest) = fds[2..].split_at(check_count);
                let (touch, rest) = rest.split_at(touch_count);
                let (control, fifos) = rest.split_at(control_count);
                (
                    readable(&fds[0]),
                    readable(&fds[1]),
                    touch.iter().any(readable),
                    control.iter().any(readable),
                    fifos.iter().any(readable),
                    check.iter().any(readable),
                )
            };
            if check_ready {
                if let Some(upgrade) = self.upgrade.as_mut() {
                    upgrade.check.read_output();
                }
            }
            // Datagrams first: a worker's last words arrive before the SIGCHLD of its exit.
            if notify_ready {
                while let Some((sender, len)) = self.notify.receive(&mut datagram) {
                    self.on_notify(sender, &datagram[..len]);
                }
            }
            if signals_ready {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        self.on_signal(signal);
                    }
                }
                // After every signal read: a shutdown among them has killed the check.
                self.upgrade_check_ended();
            }
            if touch_ready {
                self.on_touch();
            }
            if control_ready {
                let requests = self.control.as_mut().map_or(Vec::new(), |c| c.receive());
                for (connection, request) in requests {
                    self.on_request(Some(connection), request);
                }
            }
            if fifo_ready {
                let commands: Vec<FifoCommand> =
                    self.fifos.iter_mut().flat_map(|f| f.receive()).collect();
                for command in commands {
                    match command {
                        FifoCommand::Request(request) => self.on_request(None, request),
                        FifoCommand::StatusReport => self.report_status(),
                        FifoCommand::Unsupported(byte) => warn!(
                            command = %char::from(byte).escape_default(),
                            "master FIFO command not supported by steward; ignored"
                        ),
                        FifoCommand::Ignored => {}
                    }
                }
            }
            self.on_timers(Instant::now());
        }
    }

    /// A request from the control socket (`connection` is its client) or a FIFO.
    fn on_request(&mut self, connection: Option<ConnectionId>, request: ControlRequest) {
        info!(event = crate::events::CONTROL_REQUEST, request = %request, from = if connection.is_some() { "control socket" } else { "master FIFO" }, "control request");
        let answer = |master: &mut Master, line: &str, last: bool| {
            if let (Some(id), Some(control)) = (connection, master.control.as_mut()) {
                control.answer(id, line, last);
            }
        };
        match request {
            ControlRequest::Reload { .. }
                if matches!(self.lifecycle, Lifecycle::Stopping { .. }) =>
            {
                answer(self, "failed: shutting down", true)
            }
            ControlRequest::Reload { chain } => {
                // Answered and registered first: the reload may re-exec the master,
                // which hands the waiting client over to the new image.
                let generation = self.latest + 1;
                answer(self, &format!("accepted generation={generation}"), false);
                if let Some(id) = connection {
                    self.reload_waiters.push((id, generation));
                }
                self.begin_reload(chain);
            }
            ControlRequest::Stop { brutal } => {
                // The client learns the master is gone when the connection closes at exit.
                answer(self, "accepted", false);
                self.begin_shutdown(!brutal);
            }
            ControlRequest::Status { json } => {
                let status = self.status(json);
                answer(self, &status, true);
            }
            ControlRequest::Resize { more } => {
                self.resize(more);
                let line = format!("ok workers={}", self.desired);
                answer(self, &line, true);
            }
        }
    }

    /// One worker more or fewer (never fewer than one); nothing while shutting down.
    fn resize(&mut self, more: bool) {
        if matches!(self.lifecycle, Lifecycle::Stopping { .. }) {
            return;
        }
        if more {
            self.desired += 1;
            info!(
                event = crate::events::WORKERS_RESIZED,
                workers = self.desired,
                "one worker more"
            );
        } else if self.desired > 1 {
            self.desired -= 1;
            info!(
                event = crate::events::WORKERS_RESIZED,
                workers = self.desired,
                "one worker fewer"
            );
        } else {
            warn!("not going below one worker");
        }
    }

    /// Records how the reload to `generation` ended and answers the control clients
    /// waiting for it (or for an earlier one it superseded).
    fn reload_finished(&mut self, generation: u64, result: Result<Duration, String>) {
        let line = match &result {
            Ok(elapsed) => format!(
                "ok generation={generation} elapsed_ms={}",
                elapsed.as_millis()
            ),
            Err(reason) => format!("failed generation={generation}: {reason}"),
        };
        let (answered, waiting) = std::mem::take(&mut self.reload_waiters)
            .into_iter()
            .partition(|(_, waited_for)| *waited_for <= generation);
        self.reload_waiters = waiting;
        if let Some(control) = self.control.as_mut() {
            for (id, _) in answered {
                control.answer(id, &line, true);
            }
        }
        self.last_reload = Some(ReloadOutcome { generation, result });
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD => self.reap(),
            Signal::SIGHUP => {
                self.begin_reload(self.options.reload_strategy == ReloadStrategy::Chain)
            }
            Signal::SIGUSR2 => self.begin_reload(true),
            Signal::SIGTERM => self.begin_shutdown(true),
            Signal::SIGINT | Signal::SIGQUIT => self.begin_shutdown(false),
            Signal::SIGUSR1 => self.report_status(),
            Signal::SIGTTIN => self.resize(true),
            Signal::SIGTTOU => self.resize(false),
            _ => {}
        }
    }

    fn begin_reload(&mut self, chain: bool) {
        if let Lifecycle::Stopping { .. } = self.lifecycle {
            info!(
                event = crate::events::RELOAD_IGNORED,
                "reload ignored: shutting down"
            );
            return;
        }
        if self.upgrade.is_some() {
            // Its reload is still to come, and answers for this one too.
            info!(
                event = crate::events::RELOAD_IGNORED,
                "reload folded into the pending one: the new binary's check is running"
            );
            return;
        }
        self.run_atexit();
        if self.lifecycle == Lifecycle::Running
            && (self.binary.changed() || self.launch.reexecs_on_reload())
            && self.begin_upgrade(chain)
        {
            return;
        }
        self.start_reload(chain);
    }

    /// The reload itself, once as-user-atexit ran (here, or in the image that re-exec'd
    /// this one): a new generation.
    fn start_reload(&mut self, chain: bool) {
        self.latest += 1;
        self.current = self.latest;
        self.respawns.clear();
        if self.lifecycle == Lifecycle::Running {
            let status = State::Status(format!("reloading: starting generation {}", self.current));
            self.notify_systemd(&[State::reloading_now(), status]);
        }
        self.reload = Some(Reload {
            generation: self.current,
            chain,
            started: Instant::now(),
        });
        info!(
            event = crate::events::RELOAD_STARTED,
            generation = self.current,
            strategy = if chain { "chain" } else { "graceful" },
            "reload started"
        );
        if let Err(reason) = self.reread_config() {
            self.config_reload_failed(reason);
        }
    }

    fn begin_shutdown(&mut self, graceful: bool) {
        match self.lifecycle {
            Lifecycle::Stopping { graceful: false } => return,
            Lifecycle::Stopping { graceful: true } if graceful => return,
            _ => {}
        }
        info!(
            event = crate::events::SHUTDOWN_STARTED,
            mode = if graceful { "graceful" } else { "brutal" },
            workers = self.workers.len(),
            "shutdown started"
        );
        self.lifecycle = Lifecycle::Stopping { graceful };
        self.respawns.clear();
        if let Some(reload) = self.reload.take() {
            self.reload_finished(reload.generation, Err("shutdown started".into()));
        }
        if let Some(upgrade) = self.upgrade.take() {
            info!(pid = %upgrade.check.pid, "shutdown: stopping the new binary's check");
            upgrade.check.kill();
            self.reload_finished(self.latest + 1, Err("shutdown started".into()));
        }
        self.notify_systemd(&[State::Stopping]);
        self.extend_timeout_at = Some(Instant::now());
        let now = Instant::now();
        self.stop_mules(graceful, now);
        for index in 0..self.workers.len() {
            if graceful {
                self.retire(index, now);
            } else {
                self.kill(index);
            }
        }
    }

    /// Asks worker `index` to stop with the stop signal; SIGKILL follows after the mercy.
    fn retire(&mut self, index: usize, now: Instant) {
        let worker = &mut self.workers[index];
        if worker.is_stopping() {
            return;
        }
        let signal =
            Signal::try_from(self.options.worker_stop_signal.number()).unwrap_or(Signal::SIGTERM);
        info!(event = crate::events::WORKER_STOPPING, worker = worker.id, generation = worker.generation, pid = %worker.pid, signal = %signal, "stopping worker");
        signal_group(worker.pid, signal);
        worker.state = WorkerState::Stopping {
            kill_at: now + self.options.worker_reload_mercy,
            killed: false,
        };
    }

    fn kill(&mut self, index: usize) {
        let worker = &mut self.workers[index];
        if let WorkerState::Stopping { killed: true, .. } = worker.state {
            return;
        }
        signal_group(worker.pid, Signal::SIGKILL);
        worker.state = WorkerState::Stopping {
            kill_at: Instant::now(),
            killed: true,
        };
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let Some(pid) = status.pid() else { continue };
            if let Some(upgrade) = self
                .upgrade
                .as_mut()
                .filter(|u| u.check.pid == pid && u.ended.is_none())
            {
                upgrade.ended = Some(exit_status(&status));
                continue;
            }
            let Some(index) = self.workers.iter().position(|w| w.pid == pid) else {
                self.mule_exited(pid, &status);
                continue;
            };
            let worker = self.workers.swap_remove(index);
            let how = describe_exit(&status);
            if worker.is_stopping() || matches!(self.lifecycle, Lifecycle::Stopping { .. }) {
                info!(event = crate::events::WORKER_EXITED, worker = worker.id, generation = worker.generation, pid = %pid, status = %how, "worker exited");
                continue;
            }
            self.worker_failed(&FailedStart {
                id: worker.id,
                generation: worker.generation,
                pid: Some(pid),
                state: worker.state,
                respawned: worker.respawned,
                lived: worker.started.elapsed(),
                how,
            });
        }
    }

    /// A worker exited unasked, or could not be started at all.
    fn worker_failed(&mut self, failed: &FailedStart) {
        let &FailedStart {
            id,
            generation,
            pid,
            state,
            respawned,
            lived,
            ref how,
        } = failed;
        let pid = pid.map(Pid::as_raw);
        let bringing_up = generation == self.current && self.serving != Some(self.current);
        if bringing_up && state == WorkerState::Starting && !respawned {
            if self.serving.is_none() {
                let failure = MasterError::WorkerFailedToStart {
                    id,
                    command: self.launch.display(),
                    status: how.clone(),
                };
                error!("{failure}");
                self.failure = Some(failure);
                self.begin_shutdown(true);
            } else {
                self.abort_reload(format!("worker {id} exited with {how} before it was ready"));
            }
            return;
        }
        if generation != self.current || id > self.desired {
            warn!(event = crate::events::WORKER_EXITED, worker = id, generation, pid, status = %how, "worker of a replaced generation exited; not started again");
            return;
        }
        if self.slots.len() < id {
            self.slots.resize(id, Slot::default());
        }
        let delay = self.slots[id - 1].crashed(
            generation,
            lived,
            self.options.respawn_backoff,
            self.options.respawn_backoff_max,
            self.options.respawn_reset_after,
        );
        warn!(event = crate::events::WORKER_CRASHED, worker = id, generation, pid, status = %how, respawn_in_ms = delay.as_millis() as u64, "worker exited unexpectedly");
        if !delay.is_zero() {
            self.respawns.push(Respawn {
                id,
                generation,
                at: Instant::now() + delay,
            });
        }
    }

    fn abort_reload(&mut self, reason: String) {
        let generation = self.current;
        let serving = self
            .serving
            .expect("a reload aborts only while a generation serves");
        error!(event = crate::events::RELOAD_FAILED, generation, serving, reason = %reason, "reload failed; the serving generation keeps serving");
        // systemd waits for READY=1 to end the reload, failed or not.
        let status = format!(
            "reload to generation {generation} failed: {reason}; generation {serving} serving"
        );
        self.notify_systemd(&[State::Ready, State::Status(status)]);
        self.current = serving;
        self.reload = None;
        self.respawns.clear();
        self.reload_finished(generation, Err(reason));
    }

    fn on_notify(&mut self, sender: Pid, bytes: &[u8]) {
        let Some(worker) = self.workers.iter_mut().find(|w| w.pid == sender) else {
            warn!(pid = %sender, "ignored notify message: the sender is not a worker");
            return;
        };
        let message = match Notification::parse(bytes) {
            Ok(message) => message,
            Err(e) => {
                warn!(worker = worker.id, pid = %sender, error = %e, "ignored notify message");
                return;
            }
        };
        if let Some(status) = message.status {
            worker.status = Some(status);
        }
        if message.stopping {
            tracing::debug!(worker = worker.id, generation = worker.generation, pid = %sender, "worker says it is stopping");
        }
        let believes_ready = self.options.ready.believes_ready_message();
        if message.ready && believes_ready && worker.state == WorkerState::Starting {
            mark_ready(worker);
            let id = worker.id;
            self.worker_accepting(id);
        }
    }

    fn on_timers(&mut self, now: Instant) {
        let ready_after = self.options.ready.ready_after_alive();
        for index in 0..self.workers.len() {
            let worker = &mut self.workers[index];
            match worker.state {
                WorkerState::Starting
                    if ready_after.is_some_and(|after| now >= worker.started + after) =>
                {
                    mark_ready(worker);
                    let id = worker.id;
                    self.worker_accepting(id);
                }
                WorkerState::Stopping {
                    kill_at,
                    killed: false,
                } if now >= kill_at => {
                    warn!(event = crate::events::WORKER_KILLED, worker = worker.id, generation = worker.generation, pid = %worker.pid,
                        mercy_ms = self.options.worker_reload_mercy.as_millis() as u64,
                        "worker did not stop within the mercy; killing it");
                    self.kill(index);
                }
                _ => {}
            }
        }
        self.respawns.retain(|respawn| respawn.at > now);
        self.start_due_mules(now);
        self.kill_late_mules(now);
        self.touches_settled(now);
        self.upgrade_check_timed_out(now);
        if let Some(watchdog) = self.watchdog.as_mut() {
            if now >= watchdog.next {
                watchdog.next = now + watchdog.every;
                self.notify_systemd(&[State::Watchdog]);
            }
        }
        if self.extend_timeout_at.is_some_and(|at| now >= at) {
            self.extend_stop_timeout(now);
        }
    }

    /// Asks systemd for enough time to let the draining workers finish, up to the last
    /// one's mercy; stops asking once none drains.
    fn extend_stop_timeout(&mut self, now: Instant) {
        let last_kill = self
            .workers
            .iter()
            .filter_map(|w| match w.state {
                WorkerState::Stopping {
                    kill_at,
                    killed: false,
                } => Some(kill_at),
                _ => None,
            })
            .max();
        let (Some(last_kill), true) = (last_kill, self.systemd.is_enabled()) else {
            self.extend_timeout_at = None;
            return;
        };
        // Until the next extension and a margin for the SIGKILL and the reaping after it.
        let needed = last_kill
            .saturating_duration_since(now)
            .min(EXTEND_TIMEOUT_EVERY)
            + EXTEND_TIMEOUT_EVERY;
        self.notify_systemd(&[State::ExtendTimeout {
            usec: needed.as_micros() as u64,
        }]);
        self.extend_timeout_at = Some(now + EXTEND_TIMEOUT_EVERY);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let ready_after = self.options.ready.ready_after_alive();
        let workers = self.workers.iter().filter_map(|worker| match worker.state {
            WorkerState::Starting => ready_after.map(|after| worker.started + after),
            WorkerState::Stopping {
                kill_at,
                killed: false,
            } => Some(kill_at),
            _ => None,
        });
        workers
            .chain(self.respawns.iter().map(|r| r.at))
            .chain(self.watchdog.as_ref().map(|w| w.next))
            .chain(self.extend_timeout_at)
            .chain(self.next_mule_deadline())
            .chain(self.touch_due)
            .chain(self.upgrade.as_ref().map(|u| u.check.deadline))
            .min()
    }

    /// Brings the worker table in line with what should run: stops what was replaced,
    /// starts what is missing, and notes generations that became ready. Returns whether
    /// it started a worker.
    fn reconcile(&mut self) -> bool {
        if let Lifecycle::Stopping { .. } = self.lifecycle {
            return false;
        }
        let now = Instant::now();
        let current = self.current;
        let chain = self
            .reload
            .as_ref()
            .is_some_and(|r| r.chain && r.generation == current);

        // One pass over the table: which slots have a live current worker, which a ready one.
        let mut live = vec![false; self.desired + 1];
        let mut ready = vec![false; self.desired + 1];
        let mut starting_current = false;
        for worker in self
            .workers
            .iter()
            .filter(|w| w.generation == current && !w.is_stopping())
        {
            if worker.id <= self.desired {
                live[worker.id] = true;
                ready[worker.id] |= worker.state == WorkerState::Ready;
                starting_current |= worker.state == WorkerState::Starting;
            }
        }
        let all_ready = ready[1..].iter().all(|r| *r);
        let mut started = false;

        for index in 0..self.workers.len() {
            let worker = &self.workers[index];
            if worker.is_stopping() {
                continue;
            }
            let replaced = worker.id > self.desired
                || (worker.generation != current
                    && (worker.state == WorkerState::Starting
                        || worker.generation > current
                        || all_ready
                        || (chain && ready[worker.id])));
            if replaced {
                self.retire(index, now);
            }
        }

        if all_ready && self.serving != Some(current) {
            self.generation_ready(current);
        }

        let missing = live.iter().skip(1).any(|is_live| !is_live);
        if missing && self.pre_app_done < current && !self.app_loads_in_master() {
            self.pre_app_done = current;
            if let Err(e) = self.hooks.run(Phase::PreApp) {
                self.generation_hook_failed(e);
                return started;
            }
        }
        // Exec'd workers are forked in batches and confirmed afterwards, so that their
        // execs (the slow part of a start) overlap instead of running one after another.
        let mut forked: Vec<(usize, Unconfirmed)> = Vec::new();
        for (id, &is_live) in live.iter().enumerate().skip(1) {
            if is_live
                || self
                    .respawns
                    .iter()
                    .any(|r| r.id == id && r.generation == current)
            {
                continue;
            }
            if chain && self.serving != Some(current) && starting_current {
                break;
            }
            match self.start_worker(id, current) {
                Ok(Started::Running) => {
                    started = true;
                    starting_current |= self.options.ready != ReadyMode::Immediate;
                }
                Ok(Started::Exec(child)) => {
                    forked.push((id, child));
                    // A chain reload starts one worker at a time, so it needs to know
                    // at once whether this one runs.
                    if chain || forked.len() >= CONFIRM_BATCH {
                        let (any, keep_going) = self.confirm_starts(&mut forked, current);
                        started |= any;
                        starting_current |= any && self.options.ready != ReadyMode::Immediate;
                        if !keep_going {
                            return started;
                        }
                    }
                }
                Err(e) => {
                    if !self.start_failed(id, current, None, e.to_string()) {
                        return started;
                    }
                }
            }
        }
        let (any, keep_going) = self.confirm_starts(&mut forked, current);
        started |= any;
        if !keep_going {
            return started;
        }

        if let Some(reload) = &self.reload {
            if self.serving == Some(reload.generation)
                && self
                    .workers
                    .iter()
                    .all(|w| w.generation == reload.generation)
            {
                let (generation, elapsed) = (reload.generation, reload.started.elapsed());
                info!(
                    event = crate::events::RELOAD_COMPLETE,
                    generation,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "reload complete"
                );
                self.reload = None;
                self.reload_finished(generation, Ok(elapsed));
            }
        }
        started
    }

    fn generation_ready(&mut self, generation: u64) {
        let post_app = if self.app_loads_in_master() {
            Ok(())
        } else {
            self.hooks.run(Phase::PostApp)
        };
        if let Err(e) = post_app {
            if self.serving.is_none() {
                self.generation_hook_failed(e);
                return;
            }
            error!(generation, error = %e, "post-app hook failed after a reload; the new generation serves already");
        }
        self.serving = Some(generation);
        info!(
            event = crate::events::GENERATION_READY,
            generation,
            workers = self.desired,
            "generation ready"
        );
        let status = State::Status(format!("{} workers, generation {generation}", self.desired));
        if self.lifecycle == Lifecycle::Starting {
            self.lifecycle = Lifecycle::Running;
            startup::first_generation_ready(&self.options);
            self.notify_systemd(&[State::Ready, status]);
        } else {
            self.notify_systemd(&[State::Ready, status]);
        }
    }

    /// Waits for the exec of every worker in `forked` (they exec side by side) and
    /// records each one that runs; then reports those that failed, with the step that
    /// failed. Returns whether any started and whether starting more makes sense (not
    /// after a failure that stopped the master or replaced the generation).
    fn confirm_starts(
        &mut self,
        forked: &mut Vec<(usize, Unconfirmed)>,
        generation: u64,
    ) -> (bool, bool) {
        let mut failures = Vec::new();
        let mut any = false;
        for (id, child) in forked.drain(..) {
            let pid = child.pid();
            match child.confirm() {
                Ok(pid) => {
                    self.worker_started(id, generation, pid);
                    any = true;
                }
                Err(source) => failures.push((id, pid, source)),
            }
        }
        for (id, pid, source) in failures {
            let e = MasterError::Spawn {
                id,
                command: self.launch.display(),
                source,
            };
            if !self.start_failed(id, generation, Some(pid), e.to_string()) {
                return (any, false);
            }
        }
        (any, true)
    }

    /// Reports a worker that did not start; false when the failure stopped the master or
    /// replaced the generation, so that nothing more of it is started.
    fn start_failed(&mut self, id: usize, generation: u64, pid: Option<Pid>, how: String) -> bool {
        let respawned = self.is_respawn(id, generation);
        self.worker_failed(&FailedStart {
            id,
            generation,
            pid,
            state: WorkerState::Starting,
            respawned,
            lived: Duration::ZERO,
            how,
        });
        !(matches!(self.lifecycle, Lifecycle::Stopping { .. }) || self.current != generation)
    }

    /// Whether starting worker `id` of `generation` follows a crash of that same worker.
    fn is_respawn(&self, id: usize, generation: u64) -> bool {
        self.slots
            .get(id - 1)
            .is_some_and(|s| s.crashed_generation == Some(generation))
    }

    /// Starts worker `id`: an exec'd one is forked and left to confirm (see
    /// [`Master::confirm_starts`]), a forked one (preload mode) is recorded at once.
    fn start_worker(&mut self, id: usize, generation: u64) -> Result<Started, MasterError> {
        let title = procname::worker_title(&self.options, id);
        let sockets: Vec<BorrowedFd<'_>> = self.listeners.iter().map(|l| l.as_fd()).collect();
        let fds = ChildFds {
            stdin: (!self.options.honour_stdin).then(|| self.dev_null.as_fd()),
            sockets: &sockets,
        };
        // -once hooks: noted at the fork, where a forked worker runs them.
        let first_time = !self.accepted_once.contains(&id);
        let started = match &mut self.launch {
            Launch::Exec(command) => {
                let mut plan = command.plan(id, generation, title.as_deref())?;
                return spawn_unconfirmed(&mut plan, &fds)
                    .map(Started::Exec)
                    .map_err(|source| MasterError::Spawn {
                        id,
                        command: command.display.clone(),
                        source,
                    });
            }
            Launch::Fork(fork) => {
                fork.check_threads()?;
                // The master's own descriptors, which a forked worker must not hold
                // (exec mode closes them at exec).
                let mut close: Vec<RawFd> = sockets.iter().map(|fd| fd.as_raw_fd()).collect();
                close.push(self.signals.as_fd().as_raw_fd());
                close.push(self.notify.as_fd().as_raw_fd());
                close.push(self.dev_null.as_raw_fd());
                if let Some(control) = &self.control {
                    close.extend(control.all_fds().iter().map(|fd| fd.as_raw_fd()));
                }
                for fifo in &self.fifos {
                    close.extend(fifo.fds().iter().map(|fd| fd.as_raw_fd()));
                }
                close.extend(self.touch.as_ref().map(|t| t.as_fd().as_raw_fd()));
                close.extend(self.made_root.fd());
                let stop_signal = Signal::try_from(self.options.worker_stop_signal.number())
                    .unwrap_or(Signal::SIGTERM);
                let fd_names: Vec<String> = self.listeners.iter().map(|l| l.name.clone()).collect();
                let worker = WorkerIdentity {
                    id,
                    generation,
                    title: title.as_deref(),
                    fd_names: &fd_names,
                    notify_socket: self.notify.path(),
                };
                let fork = &*fork;
                let hooks = &self.hooks;
                fork_worker(&fds, &close, stop_signal, |stop| {
                    // In the worker, before it serves (the phases are not fatal).
                    let _ = hooks.run(Phase::Accepting);
                    if id == 1 {
                        let _ = hooks.run(Phase::Accepting1);
                    }
                    if first_time {
                        let _ = hooks.run(Phase::AcceptingOnce);
                        if id == 1 {
                            let _ = hooks.run(Phase::Accepting1Once);
                        }
                    }
                    fork.run_worker(worker, stop, sockets.len())
                })
            }
        };
        if matches!(self.launch, Launch::Fork(_)) {
            self.accepted_once.insert(id);
        }
        let pid = started.map_err(|source| MasterError::Spawn {
            id,
            command: self.launch.display(),
            source,
        })?;
        self.worker_started(id, generation, pid);
        Ok(Started::Running)
    }

    /// Enters a worker that runs into the table.
    fn worker_started(&mut self, id: usize, generation: u64, pid: Pid) {
        let respawned = self.is_respawn(id, generation);
        let mut worker = Worker {
            id,
            generation,
            pid,
            state: WorkerState::Starting,
            started: Instant::now(),
            respawned,
            status: None,
        };
        info!(event = crate::events::WORKER_STARTED, worker = id, generation, pid = %pid, "worker started");
        let immediate = self.options.ready == ReadyMode::Immediate;
        if immediate {
            mark_ready(&mut worker);
        }
        self.workers.push(worker);
        if immediate {
            self.worker_accepting(id);
        }
    }

    /// The state of the master and of every worker, as text lines or one JSON object.
    fn status(&self, json: bool) -> String {
        let mut workers: Vec<&Worker> = self.workers.iter().collect();
        workers.sort_by_key(|w| (w.id, w.generation));
        let report = StatusReport {
            lifecycle: self.lifecycle,
            current: self.current,
            serving: self.serving,
            desired: self.desired,
            reloading: self
                .reload
                .as_ref()
                .map(|r| (r.generation, r.started.elapsed())),
            last_reload: self.last_reload.as_ref(),
            checking: self.upgrade.as_ref().map(|u| u.started.elapsed()),
            workers,
        };
        if json {
            report.json()
        } else {
            report.text()
        }
    }

    fn report_status(&self) {
        info!(event = crate::events::STATUS_REPORT, lifecycle = ?self.lifecycle,
            generation = self.current,
            serving = ?self.serving,
            workers = self.desired,
            processes = self.workers.len(),
            "status"
        );
        let mut workers: Vec<&Worker> = self.workers.iter().collect();
        workers.sort_by_key(|w| (w.id, w.generation));
        for w in workers {
            let state = w.state.name();
            info!(event = crate::events::STATUS_WORKER, worker = w.id,
                generation = w.generation,
                pid = %w.pid,
                state,
                age_ms = w.started.elapsed().as_millis() as u64,
                status = w.status.as_deref().unwrap_or(""),
                "status of worker"
            );
        }
    }

    fn notify_systemd(&self, states: &[State]) {
        if let Err(e) = self.systemd.send(states) {
            warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Hands the sockets steward bound itself to systemd's fd store (when the unit has one),
/// named as in LISTEN_FDNAMES, so that a restart gets them back and the port never
/// closes. Handed-over sockets are systemd's already.
fn store_sockets(systemd: &Notifier, listeners: &[Listener]) {
    if !systemd.is_enabled() || steward_systemd::fd_store_capacity() == 0 {
        return;
    }
    for listener in listeners.iter().filter(|l| !l.was_handed_over()) {
        let state = State::FdStore {
            name: listener.name.clone(),
        };
        match systemd.send_with_fds(&[state], &[listener.as_fd()]) {
            Ok(()) => {
                info!(name = %listener.name, socket = %listener.description, "socket stored in the service manager's fd store")
            }
            Err(e) => {
                warn!(name = %listener.name, error = %e, "cannot store the socket in the fd store")
            }
        }
    }
}

fn mark_ready(worker: &mut Worker) {
    worker.state = WorkerState::Ready;
    info!(event = crate::events::WORKER_READY, worker = worker.id, generation = worker.generation, pid = %worker.pid,
        after_ms = worker.started.elapsed().as_millis() as u64, "worker ready");
}

/// Signals the worker's process group (it leads one), so its own children hear it too.
fn signal_group(pid: Pid, signal: Signal) {
    if let Err(errno) = killpg(pid, signal) {
        // ESRCH: it has exited and awaits reaping.
        if errno != Errno::ESRCH {
            warn!(pid = %pid, signal = %signal, error = %errno, "cannot signal worker");
        }
    }
}

/// The files a master made, besides its pidfiles: the unix sockets it bound (not those
/// systemd handed over), the control socket and the master FIFOs. A relative path
/// starts from `files_dir`, where they were made.
fn made_files(
    options: &Options,
    files_dir: &std::path::Path,
    listeners: &[Listener],
    control: Option<&ControlServer>,
    fifos: &[MasterFifo],
) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (spec, listener) in options.listen.iter().zip(listeners) {
        if let (steward_options::ListenAddr::Unix(path), false) =
            (&spec.addr, listener.was_handed_over())
        {
            paths.push(files_dir.join(path));
        }
    }
    paths.extend(control.map(|c| files_dir.join(c.path())));
    paths.extend(fifos.iter().map(|f| files_dir.join(f.path())));
    paths
}

/// `vacuum` after a start that failed: the files it made, and the pidfiles that name
/// this process. A safe pidfile is written only once the first generation serves, so
/// one is never this start's to remove.
fn vacuum_failed_start(
    options: &Options,
    files_dir: &std::path::Path,
    made: Vec<PathBuf>,
    made_root: &MadeFilesRoot,
) {
    let own = std::process::id().to_string();
    let pidfiles = [&options.pidfile, &options.pidfile2]
        .into_iter()
        .flatten()
        .map(|path| files_dir.join(path))
        .filter(|path| std::fs::read_to_string(path).is_ok_and(|text| text.trim() == own));
    remove_files(pidfiles.collect());
    made_root.remove(made);
}

/// Removes `paths`; one that cannot be removed (the master dropped privileges and the
/// directory is not its) is reported and left.
fn remove_files(paths: Vec<PathBuf>) {
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => info!(path = %path.display(), "vacuum: removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "vacuum: cannot remove"),
        }
    }
}
