//! steward's process primitives: the one crate of the workspace that uses `unsafe`.
//!
//! It adopts the sockets a service manager hands over ([`adopt_inherited_socket`]), and
//! it forks a worker and execs its command in a way that is safe in the child:
//! everything the child needs (argument and environment arrays, a slot for LISTEN_PID,
//! scratch space for file descriptors) is prepared in an [`ExecPlan`] before `fork`, and
//! between `fork` and `execve` the child makes only async-signal-safe system calls. If
//! any step in the child fails, the parent learns which one and why through a
//! close-on-exec pipe, as [`SpawnError::Child`].
//! [`spawn`] waits for that answer; [`spawn_unconfirmed`] returns once the child is
//! forked, so that many children exec side by side and are confirmed afterwards.
//!
//! [`fork_worker`] is the other way to start a worker (preload mode): the child gets
//! the same setup, then runs a closure instead of a command, with a [`StopNotice`] for
//! the worker stop signal.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use steward_sys::{spawn, ChildFds, ExecPlan};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let env = vec![("LISTEN_FDS".into(), "1".into())];
//! let mut plan = ExecPlan::new("/usr/bin/myserver".as_ref(), &["myserver".into()], &env, true).unwrap();
//! let fds = ChildFds { stdin: None, output: None, sockets: &[listener.as_fd()] };
//! let pid = spawn(&mut plan, &fds).unwrap();
//! println!("worker {pid} serves on fd 3 with LISTEN_PID={pid}");
//! ```
#![deny(missing_docs)]

mod fds;
mod fork;
mod process;
mod spawn;
mod tcp;

pub use crate::{
    fds::{adopt_inherited_socket, AdoptError},
    fork::{fork_call, fork_worker, StopNotice},
    process::{
        change_group, change_user, clear_inherited_capabilities, detach, drop_privileges,
        enable_memory_merge, fork_master, lock_memory, set_priority, Detached, Forked,
        ProcessError,
    },
    spawn::{
        spawn, spawn_unconfirmed, ChildFds, ChildStage, ExecPlan, PlanError, SpawnError,
        Unconfirmed,
    },
    tcp::{accept_queue, AcceptQueue},
};
