//! On-demand vassals, the loop's side. A vassal whose configuration says `on-demand =
//! true` is not started when it appears: the emperor binds the vassal's `listen`
//! sockets itself, puts them in its epoll set, and waits. The first connection (EPOLLIN
//! on one of them) starts the vassal with the sockets handed over by socket activation
//! (`crate::sockets::spawn_activated`); that connection waits in the accept queue until
//! a worker accepts it, so it is answered.
//!
//! While the vassal runs, the emperor keeps its copies of the sockets out of its epoll
//! set (the vassal's workers accept). A vassal that exits 0 by itself (`die-on-idle`)
//! goes back to waiting and is no death; one that dies is started again after its
//! throttled wait as any vassal, which for an on-demand vassal means waiting again.
//!
//! `as-on-demand-vassal` runs in the emperor each time a vassal enters on-demand mode,
//! `as-on-config-vassal` when an on-demand vassal's file changes; the sockets are read
//! again from the file then (at once when it waits, at its return to waiting when it
//! runs), and a changed address is bound anew.
//!
//! Under systemd with an fd store (`FileDescriptorStoreMax=`), each socket the emperor
//! binds is stored (FDSTORE=1, FDNAME=`VASSAL/NAME`) and taken back from LISTEN_FDS by
//! the next emperor, so a `systemctl restart` never closes the port: connections wait
//! in the backlog meanwhile. A socket no longer wanted (its vassal removed, its address
//! changed, no vassal claims it at start) is removed from the store (FDSTOREREMOVE=1);
//! one held when the emperor stops stays there, and so does a unix socket's path.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, OwnedFd},
    process::Command,
    time::Instant,
};

use nix::{
    sys::epoll::{EpollEvent, EpollFlags},
    unistd::Pid,
};
use steward_hooks::Phase;
use steward_options::{ConfigSources, ListenSpec, Options};
use steward_systemd::{Activation, State};
use tracing::{error, info, warn};

use super::Emperor;
use crate::{
    events,
    sockets::{bind_all, spawn_activated, HeldSocket},
    tyrant::Owner,
    vassal::VassalState,
};

/// Epoll tokens of the on-demand sockets are at and above this (control clients' are
/// between 100 and this).
pub(super) const FIRST_TOKEN: u64 = 1 << 40;

/// The emperor's settings that reach it by environment and are not the vassals' (as in
/// `Emperor::steward`).
const EMPEROR_ONLY: [&str; 4] = [
    "STEWARD_CONFIG",
    "STEWARD_CONTROL_SOCKET",
    "STEWARD_EMPEROR",
    "STEWARD_EMPEROR_THROTTLE",
];

/// The sockets held for the on-demand vassals, by vassal name.
#[derive(Debug, Default)]
pub(super) struct OnDemand {
    held: BTreeMap<String, Held>,
    next_token: u64,
    /// Sockets systemd's fd store gave back at start, by store name, until a vassal
    /// takes them.
    stored: BTreeMap<String, OwnedFd>,
    /// The unit's fd store size ($FDSTORE, systemd 254+), 0 without one.
    fd_store: usize,
}

impl OnDemand {
    /// With the sockets a restarted emperor gets back from systemd's fd store
    /// (LISTEN_FDS for this pid; any other LISTEN_FDS is left alone and unset).
    pub(super) fn from_listen_fds() -> OnDemand {
        let stored = match steward_systemd::take_listen_fds() {
            Ok(Activation::Sockets(sockets)) => sockets
                .into_iter()
                .filter_map(|socket| Some((socket.name?, socket.fd)))
                .collect(),
            Ok(_) => BTreeMap::new(),
            Err(e) => {
                warn!(error = %e, "the sockets handed over are not used");
                BTreeMap::new()
            }
        };
        // The store is the emperor's: a vassal that saw $FDSTORE would send its own
        // sockets to the emperor's notify socket, and keep them open at its stop as if
        // systemd kept them.
        let fd_store = steward_systemd::fd_store_capacity();
        std::env::remove_var("FDSTORE");
        OnDemand {
            stored,
            fd_store,
            ..OnDemand::default()
        }
    }
}

#[derive(Debug)]
struct Held {
    /// The epoll token of all its sockets.
    token: u64,
    /// The addresses they were bound from, to see a change.
    specs: Vec<ListenSpec>,
    /// Tyrant mode: whose rights they were bound with (a new owner binds them anew).
    owner: Option<Owner>,
    sockets: Vec<HeldSocket>,
    /// In the epoll set: waiting for a connection.
    armed: bool,
    /// A connection came: the next start hands the sockets over.
    woken: bool,
}

impl Emperor {
    /// At a start, once the check passed: an on-demand vassal waits for its first
    /// connection instead (true: not to be started now). False when it is no on-demand
    /// vassal (sockets held for it before are closed) or a connection woke it.
    pub(super) fn wait_on_demand(
        &mut self,
        name: &str,
        owner: Option<Owner>,
        now: Instant,
    ) -> bool {
        let Some(options) = self.vassal_options(name).filter(|o| o.on_demand) else {
            self.forget_on_demand(name);
            return false;
        };
        if let Some(held) = self.ondemand.held.get_mut(name) {
            if held.woken && held.specs == options.listen && held.owner == owner {
                held.woken = false;
                return false;
            }
        }
        // A rebind while it waits is no new entry into on-demand mode.
        let entering = !self.ondemand.held.get(name).is_some_and(|held| held.armed);
        let same = self
            .ondemand
            .held
            .get(name)
            .is_some_and(|held| held.specs == options.listen && held.owner == owner);
        if !same && !self.bind_on_demand(name, &options, owner, now) {
            return true;
        }
        let held = self.ondemand.held.get_mut(name).expect("bound above");
        held.woken = false;
        if !held.armed {
            for socket in &held.sockets {
                let event = EpollEvent::new(EpollFlags::EPOLLIN, held.token);
                if let Err(e) = self.epoll.add(socket.fd.as_fd(), event) {
                    error!(vassal = %name, error = %e, "cannot watch the on-demand socket");
                }
            }
            held.armed = true;
        }
        let sockets: Vec<&str> = held.sockets.iter().map(|s| s.address.as_str()).collect();
        let sockets = sockets.join(",");
        if let Some(vassal) = self.vassals.get_mut(name) {
            vassal.set_state(VassalState::OnDemand, now);
        }
        info!(event = events::VASSAL_ON_DEMAND, vassal = %name, sockets = %sockets, "vassal waits for its first connection");
        if entering {
            self.run_vassal_phase(Phase::AsOnDemandVassal, name);
        }
        true
    }

    /// Binds the sockets of `options` for `name`, replacing those held before; false
    /// (and the vassal refused until its file changes) if one cannot be bound.
    fn bind_on_demand(
        &mut self,
        name: &str,
        options: &Options,
        owner: Option<Owner>,
        now: Instant,
    ) -> bool {
        // The old ones first: the new address may be the old one's path or port.
        self.forget_on_demand(name);
        match bind_all(options, name, &mut self.ondemand.stored, owner) {
            Ok(sockets) => {
                self.store(&sockets);
                self.ondemand.next_token += 1;
                let held = Held {
                    token: FIRST_TOKEN + self.ondemand.next_token,
                    specs: options.listen.clone(),
                    owner,
                    sockets,
                    armed: false,
                    woken: false,
                };
                self.ondemand.held.insert(name.to_owned(), held);
                true
            }
            Err(failed) => {
                if let Some(vassal) = self.vassals.get_mut(name) {
                    vassal.set_state(VassalState::Refused, now);
                }
                error!(event = events::VASSAL_BIND_FAILED, vassal = %name, socket = %failed.address, error = %failed.error, "cannot bind the on-demand vassal's socket; not started");
                false
            }
        }
    }

    /// A connection came to an on-demand vassal's socket: out of the epoll set (the
    /// vassal's workers accept from now on), and the vassal starts with its sockets.
    pub(super) fn on_demand_connection(&mut self, token: u64) {
        let Some((name, held)) = self
            .ondemand
            .held
            .iter_mut()
            .find(|(_, held)| held.token == token)
        else {
            return;
        };
        disarm(held, &self.epoll);
        if self.stopping.is_some() {
            return;
        }
        held.woken = true;
        let name = name.clone();
        info!(event = events::VASSAL_ACTIVATED, vassal = %name, "a connection came: starting the on-demand vassal");
        self.start(&name, Instant::now());
    }

    /// Spawns a vassal: an on-demand one woken by a connection with its sockets, any
    /// other as `command` says.
    pub(super) fn spawn_vassal(
        &self,
        name: &str,
        command: &mut Command,
        owner: Option<Owner>,
    ) -> std::io::Result<Pid> {
        match self.ondemand.held.get(name) {
            Some(held) => spawn_activated(command, &held.sockets, owner),
            None => command
                .spawn()
                .map(|child| Pid::from_raw(child.id() as i32)),
        }
    }

    /// Whether `name` is an on-demand vassal (its sockets are the emperor's).
    pub(super) fn is_on_demand(&self, name: &str) -> bool {
        self.ondemand.held.contains_key(name)
    }

    /// An on-demand vassal that exited 0 by itself (idle) waits again; false for any
    /// other vassal.
    pub(super) fn back_to_on_demand(&mut self, name: &str, pid: Pid, now: Instant) -> bool {
        if !self.ondemand.held.contains_key(name) {
            return false;
        }
        info!(event = events::VASSAL_EXITED, vassal = %name, pid = %pid, status = "exit status 0", "on-demand vassal exited (idle)");
        self.start(name, now);
        true
    }

    /// An on-demand vassal's file changed: `as-on-config-vassal`, then a running one
    /// reloads, a waiting one reads its sockets again. False for any other vassal.
    pub(super) fn on_demand_config_changed(&mut self, name: &str, now: Instant) -> bool {
        if !self.ondemand.held.contains_key(name) {
            return false;
        }
        self.run_vassal_phase(Phase::AsOnConfigVassal, name);
        match self.vassals.get(name).map(|v| v.pid.is_some()) {
            Some(true) => self.reload(name, "config changed"),
            Some(false) => self.start(name, now),
            None => {}
        }
        true
    }

    /// Closes the sockets held for vassals that are gone (their file removed).
    pub(super) fn sweep_on_demand(&mut self) {
        let gone: Vec<String> = self
            .ondemand
            .held
            .keys()
            .filter(|name| !self.vassals.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.forget_on_demand(&name);
        }
    }

    /// Closes the sockets held for `name`; unless the emperor stops (a restart takes
    /// them back), they also leave the fd store, and a unix socket's path is removed.
    fn forget_on_demand(&mut self, name: &str) {
        let Some(mut held) = self.ondemand.held.remove(name) else {
            return;
        };
        disarm(&mut held, &self.epoll);
        if self.stopping.is_some() {
            return;
        }
        held.sockets.iter().for_each(HeldSocket::unlink);
        if self.fd_store() {
            let removed: Vec<State> = held
                .sockets
                .iter()
                .map(|s| State::FdStoreRemove {
                    name: s.store_name.clone(),
                })
                .collect();
            let _ = self.upstream.send(&removed);
        }
    }

    /// After the start: what the fd store gave back and no vassal took leaves the store.
    pub(super) fn drop_unclaimed_stored(&mut self) {
        for (name, _fd) in std::mem::take(&mut self.ondemand.stored) {
            info!(name = %name, "a socket from the fd store no on-demand vassal claims; closed");
            if self.fd_store() {
                let _ = self.upstream.send(&[State::FdStoreRemove { name }]);
            }
        }
    }

    /// Whether the sockets go to systemd's fd store: under systemd, with a store.
    fn fd_store(&self) -> bool {
        self.upstream.is_enabled() && self.ondemand.fd_store > 0
    }

    /// New sockets into the fd store (those taken back from it are there already).
    fn store(&self, sockets: &[HeldSocket]) {
        if !self.fd_store() {
            return;
        }
        for socket in sockets.iter().filter(|s| !s.reused) {
            let name = socket.store_name.clone();
            // A socket stored before under this name (an address since changed) goes
            // first, in a datagram of its own: the order is then certain.
            let _ = self
                .upstream
                .send(&[State::FdStoreRemove { name: name.clone() }]);
            let stored = [State::FdStore { name }];
            if let Err(e) = self.upstream.send_with_fds(&stored, &[socket.fd.as_fd()]) {
                warn!(name = %socket.store_name, error = %e, "cannot store the socket in the fd store");
            }
        }
    }

    /// The vassal's options as its master will read them (its file, the `STEWARD_*`
    /// variables it inherits); None if they do not load (the check said why).
    fn vassal_options(&self, name: &str) -> Option<Options> {
        let env = std::env::vars()
            .filter(|(key, _)| key.starts_with("STEWARD_") && !EMPEROR_ONLY.contains(&key.as_str()))
            .collect();
        let sources = ConfigSources {
            file: Some(self.watch.path(name)),
            env,
            cli: Vec::new(),
        };
        sources.load().ok().map(|config| config.options)
    }

    /// Runs an emperor phase about vassal `name`, with its file in UWSGI_VASSAL_CONFIG
    /// (as as-emperor-before-vassal has it); a failure is logged, never fatal.
    fn run_vassal_phase(&self, phase: Phase, name: &str) {
        std::env::set_var("UWSGI_VASSAL_CONFIG", self.watch.path(name));
        if let Err(e) = self.settings.hooks.run(phase) {
            error!(vassal = %name, error = %e, "hook failed");
        }
        std::env::remove_var("UWSGI_VASSAL_CONFIG");
    }
}

fn disarm(held: &mut Held, epoll: &nix::sys::epoll::Epoll) {
    if std::mem::take(&mut held.armed) {
        for socket in &held.sockets {
            let _ = epoll.delete(socket.fd.as_fd());
        }
    }
}
