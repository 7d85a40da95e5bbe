//! Building a master, in named steps: the handover of a previous image (if any), the
//! options it keeps, the hooks and the jail, the start phases up to as-user
//! (startup.rs), the sockets, the control socket and FIFOs, and the loop's sources.

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
    time::Instant,
};

use nix::sys::{
    signal::{sigprocmask, SigmaskHow},
    signalfd::{SfdFlags, SignalFd},
};
use steward_hooks::{Callbacks, Hooks, Jail};
use steward_options::Options;
use steward_systemd::{Activation, Notifier, State};
use tracing::{info, warn};

use super::{phases, upgrade, vacuum::MadeFilesRoot, Clients, Launch, Master, TimerKey, Touches};
use crate::{
    command::WorkerCommand,
    control::{control_socket_path, ConnectionId, ControlServer},
    event::{handled_signals, Registry, Timers, Token},
    events,
    fifo::MasterFifo,
    listen::{listeners, Listener},
    notify::NotifySocket,
    pidfile::HeldPidfile,
    preload::ForkLaunch,
    reexec::{take_handover, take_kept, Binary, HandedListener, HandedSocket, Handover},
    startup,
    supervisor::{Settings, Supervisor},
    MasterError,
};

impl Master {
    /// Validates `options`, binds the sockets and the notify socket, and takes over the
    /// signals of the table on [`crate::Lifecycle`] (they are blocked and read from a
    /// signalfd, so call this from the thread that will call [`Master::run`], before
    /// starting others: it fails with [`MasterError::ThreadsAtStart`] if other threads
    /// already run).
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
        let before = BeforeSockets::new(options, fork.is_some(), callbacks)?;
        let opened = Opened::open(&before.options, before.handover.as_ref())?;
        let held_pidfile = jail_and_drop(&before, &opened)?;
        Master::assemble(before, opened, fork, held_pidfile)
    }

    /// The master, its launch and its supervisor, from what the start steps made.
    fn assemble(
        before: BeforeSockets,
        opened: Opened,
        fork: Option<ForkLaunch>,
        held_pidfile: Option<HeldPidfile>,
    ) -> Result<Master, MasterError> {
        let BeforeSockets {
            handover,
            options,
            hooks,
            binary,
            files_dir,
            made_root,
            ..
        } = before;
        let launch = launch_of(fork, &options, &opened)?;
        let forked = matches!(launch, Launch::Fork(_));
        let sockets = !opened.listeners.is_empty();
        let settings = Settings::new(&options, forked, launch.reexecs_on_reload(), sockets);
        let supervisor = match &handover {
            Some(handover) => Supervisor::resume(settings, upgrade::resumed(handover)),
            None => Supervisor::new(settings),
        }
        .with_mules(options.mule.len());
        let touches = Touches {
            watcher: phases::touch_watcher(&options, &hooks)?,
            changed: Vec::new(),
        };
        let master = Master {
            mules: crate::mule::mule_commands(&options.mule)?,
            dev_null: File::open("/dev/null").map_err(MasterError::DevNull)?,
            watchdog_every: steward_systemd::watchdog_interval()
                .filter(|_| opened.systemd.is_enabled())
                .map(|interval| interval / 2),
            signals: take_signals()?,
            registry: Registry::new().map_err(MasterError::Poll)?,
            timers: Timers::new(),
            probe: super::readiness::Watch::new(&opened.listeners),
            ignored: Default::default(),
            load: Default::default(),
            idle: Default::default(),
            outputs: crate::output::Outputs::new(output_identifier(&options, forked)),
            options,
            listeners: opened.listeners,
            launch,
            notify: opened.notify,
            systemd: opened.systemd,
            supervisor,
            clients: opened.clients,
            binary,
            config_sources: None,
            hooks,
            touches,
            upgrade: None,
            resumed: handover.as_ref().map(|h| h.reload_chain),
            failure: None,
            held_pidfile,
            files_dir,
            made_root,
            orphans: Default::default(),
        };
        master.register_sources()?;
        if master.resumed.is_some() {
            info!(event = events::UPGRADE_RESUMED, binary = %master.binary.path.display(),
                workers = master.supervisor.workers().len(),
                generation = master.supervisor.current(), "re-executed: workers adopted");
        }
        Ok(master.with_first_timers())
    }

    /// Every source the loop waits on, each under its token, for the life of the master.
    fn register_sources(&self) -> Result<(), MasterError> {
        let add = |fd, token| self.registry.add(fd, token).map_err(MasterError::Poll);
        add(self.signals.as_fd(), Token::Signals)?;
        add(self.notify.as_fd(), Token::Notify)?;
        if let Some(control) = &self.clients.control {
            add(control.listener_fd(), Token::ControlListener)?;
        }
        for (index, fifo) in self.clients.fifos.iter().enumerate() {
            add(fifo.as_fd(), Token::Fifo(index))?;
        }
        if let Some(watcher) = &self.touches.watcher {
            add(watcher.as_fd(), Token::Touch)?;
        }
        if let Some(stats) = &self.clients.stats.server {
            add(stats.listener_fd(), Token::StatsListener)?;
        }
        Ok(())
    }

    fn with_first_timers(mut self) -> Master {
        if self.watchdog_every.is_some() {
            self.timers.arm(TimerKey::Watchdog, Instant::now());
        }
        self
    }
}

/// What is settled before any socket is bound: the handover of a previous image, the
/// options, hooks and jail, the asap step (credentials resolved), the directories.
struct BeforeSockets {
    handover: Option<Handover>,
    options: Options,
    hooks: Hooks,
    jail: Jail,
    binary: Binary,
    credentials: crate::privileges::Credentials,
    files_dir: PathBuf,
    made_root: MadeFilesRoot,
}

impl BeforeSockets {
    fn new(options: Options, forked: bool, callbacks: Callbacks) -> Result<Self, MasterError> {
        refuse_threads()?;
        let handover = take_handover()?;
        let resumed = handover.is_some();
        let options = keep_running_values(options, resumed);
        if forked {
            options.validate_without_command()?;
        } else {
            options.validate()?;
        }
        let hooks = Hooks::new(&options, callbacks)?;
        let jail = hooks.jail().clone();
        set_environment(&options);
        // Before anything rewrites the argv memory (process names).
        let mut binary = Binary::new(options.binary_path.as_deref());
        binary.check_by_environment = forked;
        let credentials = startup::asap(&options, &hooks, resumed, binary.argv())?;
        // Where relative paths of the files steward makes start from, for vacuum.
        let files_dir = std::env::current_dir().unwrap_or_default();
        if resumed {
            startup::resume_chdir2(&options);
        }
        let made_root = MadeFilesRoot::before_jail(&options, resumed);
        Ok(BeforeSockets {
            handover,
            options,
            hooks,
            jail,
            binary,
            credentials,
            files_dir,
            made_root,
        })
    }
}

/// How workers start: forked from the loaded app, or the command (resolved in the
/// jail, where the workers run).
fn launch_of(
    fork: Option<ForkLaunch>,
    options: &Options,
    opened: &Opened,
) -> Result<Launch, MasterError> {
    Ok(match fork {
        Some(fork) => Launch::Fork(fork),
        None => {
            let fd_names: Vec<String> = opened.listeners.iter().map(|l| l.name.clone()).collect();
            Launch::Exec(
                WorkerCommand::new(&options.command, &fd_names, opened.notify.path())?
                    .with_watchdog(super::recycle::watchdog_of(options)),
            )
        }
    })
}

/// What the master opens as root, before the jail: the listening sockets, the notify
/// socket, the control socket and FIFOs, and its channel to systemd.
struct Opened {
    listeners: Vec<Listener>,
    notify: NotifySocket,
    systemd: Notifier,
    clients: Clients,
}

impl Opened {
    fn open(options: &Options, handover: Option<&Handover>) -> Result<Opened, MasterError> {
        let (listeners, stats_fd) = open_listeners(options, handover)?;
        let notify = match handover.and_then(|h| h.notify.clone()) {
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
        let mut clients = open_clients(options, handover)?;
        clients.stats.server = open_stats(options, stats_fd, handover.is_some())?;
        tell_emperor_the_control_socket(&systemd, clients.control.as_ref());
        Ok(Opened {
            listeners,
            notify,
            systemd,
            clients,
        })
    }
}

/// Steps 3 to 7 of startup.rs: the files to the final user, the jail, as-root, the
/// privilege drop, as-user. A failure removes what this start made (vacuum).
fn jail_and_drop(
    before: &BeforeSockets,
    opened: &Opened,
) -> Result<Option<HeldPidfile>, MasterError> {
    let BeforeSockets {
        options,
        hooks,
        jail,
        credentials,
        ..
    } = before;
    let resumed = before.handover.is_some();
    let mut owned: Vec<&Path> = vec![opened.notify.path()];
    owned.extend(opened.clients.control.as_ref().map(|c| c.path()));
    owned.extend(opened.clients.fifos.iter().map(|f| f.path()));
    // The stats unix socket is the master's user's, as the control socket is.
    owned.extend(opened.clients.stats.server.as_ref().and_then(|s| s.path()));
    let started = (|| {
        startup::give_to_final_user(credentials, &owned, resumed)?;
        startup::jail(hooks, jail, resumed)?;
        let held_pidfile = startup::as_root(options, hooks, resumed)?;
        startup::drop_privileges(credentials, resumed)?;
        startup::as_user(options, hooks, resumed)?;
        Ok::<_, MasterError>(held_pidfile)
    })();
    started.inspect_err(|_| {
        if options.vacuum {
            let control = opened.clients.control.as_ref();
            let (dir, fifos) = (&before.files_dir, &opened.clients.fifos);
            let made = super::vacuum::made_files(options, dir, &opened.listeners, control, fifos);
            super::vacuum::vacuum_failed_start(options, dir, made, &before.made_root);
        }
    })
}

/// The master must be the only thread: signals are blocked in it alone, and a thread
/// started before would receive them (and end the master at the first SIGHUP).
fn refuse_threads() -> Result<(), MasterError> {
    let others = crate::preload::other_threads();
    if others.is_empty() {
        return Ok(());
    }
    Err(MasterError::ThreadsAtStart {
        count: others.len(),
        names: others.join(", "),
    })
}

/// The name worker lines carry (SYSLOG_IDENTIFIER): the worker command's, or in
/// preload mode the program's, as `ps` shows them.
fn output_identifier(options: &Options, forked: bool) -> String {
    let program = match options.command.first() {
        Some(command) if !forked => command.clone(),
        _ => std::env::args().next().unwrap_or_default(),
    };
    match Path::new(&program).file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => "worker".to_owned(),
    }
}

/// As a reload by the old image would, a re-exec'd image keeps the values the master
/// runs with of the options a reload cannot change. The reload it carries out reads
/// the file again and names those the file changed, once.
fn keep_running_values(options: Options, resumed: bool) -> Options {
    let Some(kept) = take_kept().filter(|_| resumed) else {
        return options;
    };
    match crate::reexec::decode_kept(&kept) {
        Ok(running) => {
            let (merged, _named_by_the_reload) = super::merge_reloaded(&running, options);
            merged
        }
        Err(e) => {
            warn!(error = %e, "cannot read the running options handed over; the file's apply");
            options
        }
    }
}

/// `env = VAR=VALUE`. The master is still one thread (checked first): setting its
/// environment races nothing, and every hook and worker forked later inherits it.
fn set_environment(options: &Options) {
    for pair in &options.env {
        if let Some((name, value)) = pair.split_once('=') {
            std::env::set_var(name, value);
        }
    }
}

/// The listening sockets: handed over by the previous image, or from socket activation
/// and bound; and the socket systemd handed over for `stats = fd:NAME`.
fn open_listeners(
    options: &Options,
    handover: Option<&Handover>,
) -> Result<(Vec<Listener>, Option<std::os::fd::OwnedFd>), MasterError> {
    if let Some(handover) = handover {
        let listeners = handover.listeners.iter().map(HandedListener::adopt);
        return Ok((listeners.collect::<Result<_, _>>()?, None));
    }
    let mut inherited = match steward_systemd::take_listen_fds()? {
        Activation::Sockets(sockets) => sockets,
        Activation::Absent => Vec::new(),
        Activation::NotForThisProcess { listen_pid } => {
            warn!(event = events::ACTIVATION_IGNORED,
                listen_pid = %listen_pid.as_deref().unwrap_or("unset"),
                "LISTEN_FDS is set but LISTEN_PID is not this process: those descriptors are not ours; ignored");
            Vec::new()
        }
    };
    let stats_fd = match &options.stats {
        Some(steward_options::StatsAddr::Named(name)) => inherited
            .iter()
            .position(|s| s.name.as_ref() == Some(name))
            .map(|at| inherited.remove(at).fd),
        _ => None,
    };
    Ok((listeners(options, inherited)?, stats_fd))
}

/// The stats server, when `stats` is set. A re-exec'd master that cannot open it (a
/// systemd socket is not handed over across the exec) serves on without it.
fn open_stats(
    options: &Options,
    inherited: Option<std::os::fd::OwnedFd>,
    resumed: bool,
) -> Result<Option<crate::stats::server::StatsServer>, MasterError> {
    let Some(addr) = &options.stats else {
        return Ok(None);
    };
    match crate::stats::server::StatsServer::open(addr, options.stats_http, inherited) {
        Ok(server) => Ok(Some(server)),
        Err(e) if resumed => {
            warn!(error = %e, stats = %addr, "after re-exec: no stats server");
            Ok(None)
        }
        Err(source) => Err(MasterError::StatsSocket {
            addr: addr.to_string(),
            source,
        }),
    }
}

/// The control socket (with the clients a previous image handed over, still waiting
/// for their reload) and the master FIFOs.
fn open_clients(options: &Options, handover: Option<&Handover>) -> Result<Clients, MasterError> {
    let resumed = handover.is_some();
    let mut clients = Clients::default();
    clients.control = match handover.and_then(|h| h.control.clone()) {
        Some(HandedSocket { fd, path }) => {
            let waiting = handover.map_or(&[][..], |h| &h.waiters[..]);
            let (control, ids) = ControlServer::adopt(fd, path, waiting.iter().map(|w| w.fd))
                .map_err(MasterError::Handover)?;
            clients.reload_waiters = ids
                .into_iter()
                .zip(waiting.iter().map(|w| w.generation))
                .collect::<Vec<(ConnectionId, u64)>>();
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
    for path in &options.master_fifo {
        let opened = MasterFifo::open(path).map_err(|source| MasterError::MasterFifo {
            path: path.clone(),
            source,
        });
        match opened {
            Ok(fifo) => clients.fifos.push(fifo),
            // A re-exec'd master no longer root: a FIFO it cannot make is no reason
            // to end the master that serves.
            Err(e) if resumed => warn!(error = %e, "after re-exec; that FIFO is not read"),
            Err(e) => return Err(e),
        }
    }
    Ok(clients)
}

/// Blocks the handled signals and opens the signalfd they are read from.
fn take_signals() -> Result<SignalFd, MasterError> {
    let mask = handled_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(MasterError::Signals)?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(MasterError::Signals)
}

/// A vassal's emperor learns where its control socket is (`steward reload --vassal`
/// connects there); after a re-exec too, as the path may have changed.
fn tell_emperor_the_control_socket(systemd: &Notifier, control: Option<&ControlServer>) {
    if let (Some(_), Some(control)) = (crate::vassal::emperor(), control) {
        // A path with a newline cannot be one assignment: better none than a wrong one.
        if !control.path().to_string_lossy().contains('\n') {
            let _ = systemd.send(&[State::ControlSocket(control.path().to_owned())]);
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
