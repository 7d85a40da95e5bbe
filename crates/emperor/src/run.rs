//! The emperor's loop: one epoll set (signals, the directory, the vassals' notify
//! socket) waiting until the earliest deadline; what wakes it is handled, then the
//! emperor tells systemd (or its own emperor) how the vassals are.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::{
        fd::AsFd,
        unix::net::{UnixDatagram, UnixListener},
    },
    path::PathBuf,
    time::{Duration, Instant},
};

use nix::{
    sys::{
        epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
    },
    unistd::Pid,
};
use steward_hooks::Phase;
use steward_systemd::{Notifier, State};
use tracing::info;

use crate::{
    dir::DirWatch,
    events,
    timers::{Timer, Timers},
    vassal::Vassal,
    EmperorError, Settings,
};

mod command;
mod control;
mod notify;
mod ondemand;
mod ops;
mod setns;

/// How long the directory must be quiet before the emperor acts on a change: one save
/// is several events (create, write, close, attributes), maybe read apart.
const SETTLE: Duration = Duration::from_millis(100);

const SIGNALS: u64 = 0;
const DIRECTORY: u64 = 1;
const NOTIFY: u64 = 2;
const CONTROL: u64 = 3;
/// Control clients' tokens are above this.
const FIRST_CLIENT: u64 = 100;

/// How the emperor is stopping, once it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Graceful,
    Brutal,
}

/// The running emperor.
#[derive(Debug)]
pub struct Emperor {
    settings: Settings,
    watch: DirWatch,
    vassals: BTreeMap<String, Vassal>,
    timers: Timers,
    /// Names seen changing in the directory, acted on once it settles.
    pending: BTreeSet<String>,
    notify: UnixDatagram,
    notify_path: PathBuf,
    signals: SignalFd,
    /// The control socket (`steward status`), when it has a path.
    control: Option<UnixListener>,
    clients: BTreeMap<u64, control::Client>,
    /// Control clients waiting for a reload's end (answered) or the exit (closed).
    waiters: Vec<std::os::unix::net::UnixStream>,
    /// `steward stop --vassal NAME --wait` clients, closed when that vassal is gone.
    stop_waiters: Vec<(String, std::os::unix::net::UnixStream)>,
    next_client: u64,
    epoll: Epoll,
    upstream: Notifier,
    stopping: Option<Stop>,
    /// Whether READY=1 went upwards since the start or the last emperor reload.
    ready_sent: bool,
    last_status: String,
    /// The sockets held for on-demand vassals.
    ondemand: ondemand::OnDemand,
}

impl Emperor {
    /// Sets up the loop's descriptors (signals blocked and taken by a signalfd, the
    /// directory watch, the notify socket); nothing is started yet.
    pub fn new(settings: Settings) -> Result<Emperor, EmperorError> {
        let mut mask = SigSet::empty();
        for signal in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGQUIT,
            Signal::SIGHUP,
        ] {
            mask.add(signal);
        }
        mask.thread_block().map_err(std::io::Error::from)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let watch = DirWatch::new(&settings.dir)?;
        let (notify, notify_path) = notify::bind(settings.tyrant.is_some())?;
        let control = match &settings.control {
            Some(path) => Some(control::bind(path).map_err(|source| EmperorError::Control {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from)?;
        let mut sources = vec![
            (signals.as_fd(), SIGNALS),
            (watch.fd(), DIRECTORY),
            (notify.as_fd(), NOTIFY),
        ];
        sources.extend(control.as_ref().map(|c| (c.as_fd(), CONTROL)));
        for (fd, token) in sources {
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
                .map_err(std::io::Error::from)?;
        }
        Ok(Emperor {
            upstream: Notifier::from_env()?,
            settings,
            watch,
            vassals: BTreeMap::new(),
            timers: Timers::default(),
            pending: BTreeSet::new(),
            notify,
            notify_path,
            signals,
            control,
            clients: BTreeMap::new(),
            waiters: Vec::new(),
            stop_waiters: Vec::new(),
            next_client: 0,
            epoll,
            stopping: None,
            ready_sent: false,
            last_status: String::new(),
            ondemand: ondemand::OnDemand::from_listen_fds(),
        })
    }

    /// Runs emperor-start, starts a vassal for each file in the directory, then keeps
    /// them in step with it until SIGTERM (graceful) or SIGINT/SIGQUIT (brutal) and
    /// every vassal is gone.
    pub fn run(mut self) -> Result<(), EmperorError> {
        self.settings.hooks.run(Phase::EmperorStart)?;
        let names = self.watch.list()?;
        info!(
            event = events::EMPEROR_STARTED,
            dir = %self.settings.dir.display(),
            vassals = names.len(),
            notify = %self.notify_path.display(),
            "emperor started"
        );
        for name in names {
            self.appeared(name, Instant::now());
        }
        self.drop_unclaimed_stored();
        let mut ready = [EpollEvent::empty(); 8];
        loop {
            self.sweep_on_demand();
            self.tell_upstream();
            if self.stopping.is_some() && self.vassals.values().all(|v| v.pid.is_none()) {
                break;
            }
            let timeout = match self.timers.timeout(Instant::now()) {
                // Rounded up: waking a little early would only spin.
                Some(wait) => EpollTimeout::try_from(wait + Duration::from_micros(999))
                    .unwrap_or(EpollTimeout::NONE),
                None => EpollTimeout::NONE,
            };
            let n = match self.epoll.wait(&mut ready, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(std::io::Error::from(e).into()),
            };
            for event in &ready[..n] {
                match event.data() {
                    SIGNALS => self.on_signals(),
                    DIRECTORY => self.on_directory(),
                    NOTIFY => self.on_notify(),
                    CONTROL => self.on_control(),
                    token if token >= ondemand::FIRST_TOKEN => self.on_demand_connection(token),
                    client => self.on_client(client),
                }
            }
            for timer in self.timers.due(Instant::now()) {
                self.on_timer(timer);
            }
        }
        let _ = std::fs::remove_file(&self.notify_path);
        if let Some(path) = self
            .settings
            .control
            .as_ref()
            .filter(|_| self.control.is_some())
        {
            let _ = std::fs::remove_file(path);
        }
        info!(event = events::EMPEROR_STOPPED, "every vassal is gone");
        Ok(())
    }

    fn on_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(Signal::SIGHUP) => self.reload_all(),
                Ok(Signal::SIGTERM) => self.stop_all(Stop::Graceful),
                Ok(Signal::SIGINT | Signal::SIGQUIT) => self.stop_all(Stop::Brutal),
                _ => {}
            }
        }
    }

    fn on_directory(&mut self) {
        let changed = self.watch.changed();
        if changed.is_empty() || self.stopping.is_some() {
            return;
        }
        self.pending.extend(changed);
        self.timers.arm(Timer::Settled, Instant::now() + SETTLE);
    }

    fn on_timer(&mut self, timer: Timer) {
        let now = Instant::now();
        match timer {
            Timer::Settled => {
                for name in std::mem::take(&mut self.pending) {
                    self.changed(name, now);
                }
            }
            Timer::Restart(name) => self.restart(&name, now),
        }
    }

    /// A file of the directory changed (written, touched, created, moved or removed).
    fn changed(&mut self, name: String, now: Instant) {
        let exists = self.watch.path(&name).is_file();
        if exists && self.on_demand_config_changed(&name, now) {
            return;
        }
        match (exists, self.vassals.get(&name).map(|v| v.pid.is_some())) {
            (true, None) => self.appeared(name, now),
            (true, Some(true)) => self.reload(&name, "config changed"),
            // Refused or waiting for its restart: the new text gets its chance now.
            (true, Some(false)) => self.restart(&name, now),
            (false, Some(_)) => self.removed(&name),
            (false, None) => {}
        }
    }

    /// READY=1 once no vassal is starting or reloading (after the start, after an
    /// emperor reload), and STATUS= with the vassals counted by state when it changes.
    fn tell_upstream(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let status = self.status_line();
        let mut states = Vec::new();
        if !self.ready_sent && !self.vassals.values().any(Vassal::is_settling) {
            self.ready_sent = true;
            info!(event = events::EMPEROR_READY, status = %status, "emperor ready");
            states.push(State::Ready);
            self.answer_waiters(&status);
        }
        if status != self.last_status {
            self.last_status.clone_from(&status);
            states.push(State::Status(status));
        }
        if !states.is_empty() {
            let _ = self.upstream.send(&states);
        }
    }

    /// "3 vassals: 2 ready, 1 starting".
    fn status_line(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for vassal in self.vassals.values() {
            *counts.entry(vassal.state.name()).or_default() += 1;
        }
        let by_state: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        format!("{} vassals: {}", self.vassals.len(), by_state.join(", "))
    }

    fn vassal_by_pid(&mut self, pid: Pid) -> Option<&mut Vassal> {
        self.vassals.values_mut().find(|v| v.pid == Some(pid))
    }
}
