//! steward's master: it binds the listening sockets, forks and execs the workers that
//! serve on them, keeps them alive, and replaces or stops them on request, in one thread
//! that waits on a signalfd, its workers' notify socket and its own timers.
//!
//! ```no_run
//! use steward_master::Master;
//! use steward_options::Options;
//!
//! let mut options = Options::new(vec!["/usr/bin/myserver".into(), "--its-flags".into()]);
//! options.listen.push("127.0.0.1:8000".parse().unwrap());
//! options.workers = 4;
//! // Binds, blocks the signals it handles, and runs until a shutdown completes.
//! Master::new(options).unwrap().run().unwrap();
//! ```
//!
//! The signal table and the lifecycle are documented on [`Lifecycle`].
//!
//! A Rust server can also embed the master and have it fork a closure instead of
//! exec'ing a command (preload mode): [`Builder`] takes a load callback (run once in
//! the master, or in each worker under `lazy-apps`) and a worker closure that receives
//! its sockets, id, generation and stop notice in a [`WorkerContext`].
#![deny(missing_docs)]

mod command;
mod control;
mod daemon;
mod error;
mod event;
pub mod events;
mod fifo;
mod lifecycle;
mod listen;
mod master;
mod mule;
mod notify;
mod output;
mod pidfile;
mod preflight;
mod preload;
mod privileges;
mod procname;
mod reexec;
mod startup;
pub mod stats;
mod status;
mod supervisor;
mod vassal;

pub use crate::{
    control::{control_socket_path, ControlRequest, UnknownRequest},
    error::MasterError,
    lifecycle::Lifecycle,
    listen::Listener,
    master::Master,
    preflight::{preflight, Finding},
    preload::{
        AfterRequest, BoxError, Builder, CallError, CallHooks, WorkerContext, WorkerListener,
        WorkerSocket,
    },
    reexec::{
        reexec_check_answer, CheckFinding, CheckReport, HandoverError, ReexecError,
        REEXEC_PROTOCOL, UNRESOLVED_SUFFIX,
    },
    startup::unresolved_names,
};
pub use steward_sys::StopNotice;
