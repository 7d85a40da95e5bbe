//! The master's event loop primitives: one epoll registry of typed sources and one
//! ordered set of timers. The loop waits on the registry until the earliest timer; an
//! idle master (no timer armed) sleeps until a source has something to say.

mod registry;
mod timers;

pub(crate) use self::{
    registry::{Registry, Token},
    timers::Timers,
};

use nix::sys::signal::{SigSet, Signal};

/// The signals the master takes through its signalfd (blocked, never delivered); what
/// each does is the table on [`crate::Lifecycle`].
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
        // In a vassal, the emperor's death (PR_SET_PDEATHSIG); ignored by default anyway.
        crate::vassal::EMPEROR_LOST,
    ]
    .into_iter()
    .collect()
}
