//! steward's emperor: `steward emperor DIR` runs one steward master, a *vassal*, for
//! each configuration file in DIR (`*.toml`, `*.ini`, `*.yaml`, `*.yml`, `*.json`), and
//! keeps the set in step with the directory, which it watches with inotify:
//!
//! - a new file starts a vassal (`steward --config FILE`), once `steward check` passes;
//! - a changed or touched file reloads it gracefully (SIGHUP), once the new text passes
//!   `steward check`; a file that does not is refused with the check's file:line and
//!   the vassal serves on with the configuration it has;
//! - a removed file stops it gracefully (SIGTERM);
//! - a vassal that dies unasked is started again after `emperor-throttle`, doubled at
//!   each death in a row (up to [`MAX_THROTTLE`]), and reported when it keeps dying;
//! - a vassal whose file says `on-demand = true` is not started: the emperor binds its
//!   `listen` sockets, waits for the first connection, and then starts it with them by
//!   socket activation (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID the vassal's own pid);
//!   when it exits 0 by itself (`idle` with `die-on-idle`) it waits again.
//!   `as-on-demand-vassal` runs each time it starts waiting, `as-on-config-vassal` when
//!   its file changes. Under systemd its sockets go to the fd store, so a restarted
//!   emperor takes them back and the port never closes.
//!
//! The emperor is one thread and one loop, as the master is: a signalfd, the inotify
//! descriptor, the vassals' notify socket and the on-demand sockets in one epoll set, which waits until the
//! earliest deadline of a small timer set. Each vassal finds the emperor's notify
//! socket in NOTIFY_SOCKET, so READY=1, RELOADING=1, STOPPING=1 and STATUS= reach the
//! emperor (believed by the sender's pid), and `STEWARD_EMPEROR_PID` tells it that it is
//! a vassal: it runs `emperor-stop`/`emperor-reload` on a stop or reload signal from that
//! pid, and notices the emperor's death at once (PR_SET_PDEATHSIG).
//!
//! What every vassal gets from the emperor's own configuration: `vassals-inherit` and
//! `vassals-include` files read before and after its own (handed down in
//! `STEWARD_VASSAL_INHERIT`/`STEWARD_VASSAL_INCLUDE`, so read again at its reloads);
//! in tyrant mode (`emperor-tyrant`) the credentials of its file's owner, dropped to
//! before the exec, a root-owned file or one asking for another user being refused;
//! and `as-emperor-setns` hooks run inside its own namespaces once it is ready.
//!
//! It is a crate of its own, not a module of steward-master: it supervises whole
//! masters from the outside (spawn, signal, reap, notify), and needs none of the
//! master's internals; keeping it apart keeps the master's loop unchanged.

#![deny(missing_docs)]

mod dir;
pub mod events;
mod run;
mod sockets;
mod timers;
mod tyrant;
mod vassal;

use std::{path::PathBuf, time::Duration};

pub use crate::{
    run::Emperor,
    tyrant::Tyrant,
    vassal::{is_vassal_config, VassalState},
};

/// The longest wait before a vassal that keeps dying is started again.
pub const MAX_THROTTLE: Duration = Duration::from_secs(60);

/// Deaths in a row (without a READY=1 between) after which a vassal is reported as
/// dying again and again.
pub const KEEPS_DYING: u32 = 3;

/// What the emperor is told to do.
#[derive(Debug)]
pub struct Settings {
    /// The directory of vassal configuration files.
    pub dir: PathBuf,
    /// The steward binary each vassal runs (the emperor's own).
    pub steward: PathBuf,
    /// The wait before a dead vassal is started again, doubled at each death in a row.
    pub throttle: Duration,
    /// The control socket `steward status` asks, if any.
    pub control: Option<PathBuf>,
    /// The emperor's own hooks (emperor-start, as-emperor-before-vassal, as-emperor).
    pub hooks: steward_hooks::Hooks,
    /// Tyrant mode (`emperor-tyrant`): each vassal runs as its file's owner.
    pub tyrant: Option<Tyrant>,
    /// Files every vassal reads before its own (`vassals-inherit`), absolute.
    pub inherit: Vec<PathBuf>,
    /// Files every vassal reads after its own (`vassals-include`), absolute.
    pub include: Vec<PathBuf>,
}

/// Why the emperor could not run.
#[derive(Debug, thiserror::Error)]
pub enum EmperorError {
    /// The directory cannot be watched or read.
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The vassal directory.
        dir: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// A descriptor of the loop (epoll, signalfd, notify socket) could not be set up.
    #[error("cannot set up the emperor's loop: {0}")]
    Setup(#[from] std::io::Error),
    /// The control socket cannot be bound.
    #[error("cannot bind the control socket {}: {source}", path.display())]
    Control {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A fatal hook failed.
    #[error(transparent)]
    Hook(#[from] steward_hooks::HookError),
}
