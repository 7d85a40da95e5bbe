//! steward's readiness probe: whether a process, or one of its descendants, waits for
//! connections on one of a set of listening sockets, seen from outside through /proc,
//! with no cooperation from the process.
//!
//! A server that never sends `READY=1` (uvicorn, Node, Go, gunicorn, Python's
//! socketserver) still shows when it is ready to serve: it blocks in `accept` on its
//! socket, or it adds the socket to the set its event loop waits on. The master asks
//! [`Probe::check`] about each starting worker at a short interval, and counts the worker
//! ready once the answer is [`Observation::Waiting`].
//!
//! ```no_run
//! use std::os::fd::AsFd;
//! use steward_probe::{socket_inode, Observation, Probe};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let probe = Probe::new(vec![socket_inode(listener.as_fd()).unwrap()]);
//! // ... start a worker that inherits the listener, then:
//! # let worker = nix::unistd::Pid::from_raw(1);
//! if let Observation::Waiting { how, .. } = probe.check(worker) {
//!     println!("ready: waits for connections ({how})");
//! }
//! ```
//!
//! Sockets are matched by inode (`socket:[INODE]` in `/proc/PID/fd`), never by
//! descriptor number, which differs between the master and the worker. What counts as
//! waiting:
//! - a thread blocked in `accept`/`accept4` on the socket (`/proc/PID/task/TID/syscall`);
//! - an epoll instance whose interest list holds the socket for input
//!   (`/proc/PID/fdinfo/N`, its `tfd:` lines carry the target's `ino:`): registered
//!   interest counts even while no thread sits in `epoll_wait` (asyncio, libuv, Go);
//! - a thread blocked in `poll`/`ppoll` or `select`/`pselect6` whose set holds the socket
//!   for input, read from the thread's memory (`/proc/PID/mem`) at the address in the
//!   system call's arguments;
//! - any of these in a descendant (gunicorn's own workers, a shell wrapper's child).
//!
//! What cannot be seen: an `accept` submitted through io_uring, a socket handed to a
//! process outside the worker's descendants (over a unix socket), a server that polls
//! with a zero timeout in a busy loop (it is caught only while inside the call), and
//! anything at all where /proc refuses the access ([`Observation::Denied`]: the master
//! then falls back to its timer and says so).
#![deny(missing_docs)]

mod proc;

use std::{io, os::fd::BorrowedFd};

use nix::unistd::Pid;

pub use crate::proc::How;

/// The inode of a socket, as `/proc/PID/fd` names it (`socket:[INODE]`).
pub fn socket_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(nix::sys::stat::fstat(fd)?.st_ino)
}

/// What [`Probe::check`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// `pid` (the process asked about, or a descendant) waits for connections.
    Waiting {
        /// The process that waits.
        pid: Pid,
        /// How it waits.
        how: How,
    },
    /// Alive, not (yet) waiting on any of the sockets.
    NotYet,
    /// The process is gone (or was never there).
    Gone,
    /// /proc refused what the check needs (another user's process, a hardened /proc).
    Denied,
}

/// The sockets to look for, by inode.
#[derive(Debug, Clone)]
pub struct Probe {
    inodes: Vec<u64>,
}

impl Probe {
    /// A probe for the sockets of these inodes (see [`socket_inode`]).
    pub fn new(inodes: Vec<u64>) -> Probe {
        Probe { inodes }
    }

    /// Whether `pid` or a descendant waits for connections on one of the sockets.
    pub fn check(&self, pid: Pid) -> Observation {
        let mut pending = vec![pid];
        let mut denied = false;
        let mut seen = 0usize;
        while let Some(next) = pending.pop() {
            match proc::check_process(next, &self.inodes) {
                Ok(Some(how)) => return Observation::Waiting { pid: next, how },
                Ok(None) => {}
                Err(proc::Refused::Denied) => denied = true,
                Err(proc::Refused::Gone) if next == pid => return Observation::Gone,
                Err(proc::Refused::Gone) => {}
            }
            // A fork bomb under a worker must not make the master walk for ever.
            seen += 1;
            if seen < MAX_PROCESSES {
                pending.extend(proc::children(next));
            }
        }
        if denied {
            Observation::Denied
        } else {
            Observation::NotYet
        }
    }
}

/// How many processes one check looks at, at most (the worker and its descendants).
const MAX_PROCESSES: usize = 256;
