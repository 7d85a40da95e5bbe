//! The two ways the demo ends on its own: a failure, with a message and an exit status
//! (2 for bad usage or sockets that are not ours, 1 for anything else), and a stop,
//! which names the worker and why.

use std::process;

use crate::shared::Shared;

pub(crate) fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    log!("steward-demo: {msg}");
    process::exit(code)
}

pub(crate) fn exit_now(shared: &Shared, why: &str) -> ! {
    log!("steward-demo: {} stopped ({why})", shared.who());
    process::exit(0)
}
