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
//! ```
//! use std::os::fd::AsFd;
//! use nix::unistd::Pid;
//! use steward_probe::{socket_inode, Observation, Probe};
//!
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let probe = Probe::new(vec![socket_inode(listener.as_fd())?]);
//! // A worker would inherit the listener; this process holds it but does not accept.
//! let worker = Pid::this();
//! match probe.check(worker) {
//!     Observation::Waiting { pid, how } => println!("ready: {pid} waits by {how}"),
//!     Observation::NotYet => println!("not yet: look again in a while"),
//!     Observation::Gone => println!("the worker exited"),
//!     Observation::Denied => println!("cannot be seen here: fall back to a timer"),
//! }
//! # assert_eq!(probe.check(worker), Observation::NotYet);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Sockets are matched by inode (what [`socket_inode`] gives: `fstat` of the master's
//! own descriptor, and of `/proc/PID/fd/N` in the worker), never by descriptor number,
//! which differs between the master and the worker. What counts as waiting:
//! - [`How::Accept`]: a thread blocked in `accept`/`accept4` on the socket
//!   (`/proc/PID/task/TID/syscall`, system call numbers of x86_64 and aarch64);
//! - [`How::Epoll`]: an epoll instance whose interest list holds the socket for input
//!   (`/proc/PID/fdinfo/N`, its `tfd:` lines carry the target's `ino:` and `events:`):
//!   registered interest counts even while no thread sits in `epoll_wait` (asyncio and
//!   uvicorn, Node's libuv, Go's netpoller, tokio/mio);
//! - [`How::Poll`], [`How::Select`]: a thread blocked in `poll`/`ppoll` or
//!   `select`/`pselect6` whose set holds the socket for input (`POLLIN`, the read set),
//!   read from the thread's memory (`/proc/PID/mem`) at the address in the system
//!   call's arguments (Python's `socketserver` and `http.server`, gunicorn's sync
//!   workers);
//! - [`How::Accepted`]: a process holding the socket also holds a connection accepted
//!   from it (`/proc/PID/net/tcp`, `tcp6`, `unix`: a socket, not listening, with the
//!   listening socket's local address, or its port for a wildcard listener, or its
//!   path), looked up only when no wait was seen: a server busy serving, as a gunicorn
//!   sync worker under load, is seldom caught inside `accept`, `poll` or `select`;
//! - any of these in a descendant, walked through `/proc/PID/task/TID/children`
//!   (gunicorn's own workers, a shell wrapper's child), up to 256 processes.
//!
//! Access: `/proc/PID/fd` and `fdinfo` need ptrace read access, `syscall` and `mem` need
//! ptrace attach access. A parent has both over its children and their descendants of
//! the same uid (Yama `ptrace_scope` 0 or 1), unless a process made itself non-dumpable.
//! A refused look (EACCES, EPERM), or a live process that /proc hides (`hidepid`,
//! systemd's `ProtectProc=invisible`, for another uid), is [`Observation::Denied`] when
//! nothing was seen waiting; the first refusal of a check is logged at debug level
//! (`tracing`).
//!
//! Cost: one check reads only /proc, never blocks, and allocates a handful of small
//! buffers, whatever the number of descriptors: a `fstatat` per descriptor (a `readlink`
//! only for anonymous inodes, to find epoll instances), the `fdinfo` of each epoll
//! instance, and, only in a process that holds one of the sockets, the `syscall` line of
//! each thread (plus a read of at most 32 KiB of memory for a poll or select set). About
//! 0.1 ms for a process with 20-odd descriptors and two threads.
//!
//! What cannot be seen (the answer stays [`Observation::NotYet`], and the master's timer
//! decides):
//! - an `accept` submitted through io_uring (no thread is in a system call; the ring's
//!   requests are not in /proc), nor a socket polled only through io_uring;
//! - a socket handed to a process outside the worker's descendants (over a unix socket,
//!   `SCM_RIGHTS`, or to a daemonized grandchild reparented to init), or a process
//!   beyond 256 descendants;
//! - a `poll`/`select` resumed by the kernel after the process was stopped and continued
//!   (it shows as `restart_syscall`, without its arguments), or one on a set of more than
//!   4096 entries, or a 32-bit (compat) process on a 64-bit kernel;
//! - a server that polls with a zero timeout in a busy loop (caught only while it is
//!   inside the call, or once it holds a connection it accepted);
//! - a connection accepted in another network namespace than the worker's own, or
//!   handed to a process that does not hold the listening socket;
//! - a server that listens on a socket of its own, ignoring the inherited one: by
//!   design, it does not serve on the master's socket (a duplicate of the inherited
//!   descriptor, at any number, is the same socket and is seen);
//! - anything where /proc refuses the look ([`Observation::Denied`]).
//!
//! A process that inherited an epoll instance holding the socket (forked from a process
//! that registered it) counts as waiting too: it shares that interest list.
#![deny(missing_docs)]

mod net;
mod proc;

use std::{io, os::fd::BorrowedFd};

use nix::unistd::Pid;
use tracing::debug;

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
    /// /proc refused what the check needs (another user's process, a non-dumpable one,
    /// a hardened /proc, ptrace attach denied for `syscall`/`mem`), and nothing was seen
    /// waiting. The caller falls back to its timer.
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
    ///
    /// Never blocks on the process (only /proc reads) and never fails: a process that
    /// exits during the look is [`Observation::Gone`] when it is `pid` itself, and is
    /// simply not counted when it is a descendant. `Denied` only when nothing was seen
    /// waiting and some look was refused.
    pub fn check(&self, pid: Pid) -> Observation {
        self.look(pid, false)
    }

    /// [`Probe::check`], and when nothing was seen waiting, whether a process holding
    /// the socket holds a connection accepted from it ([`How::Accepted`]): a server busy
    /// serving. This reads the namespace's connection tables (`/proc/PID/net/tcp`,
    /// `tcp6`, `unix`), whose size grows with the host's connections, so a caller asks
    /// for it seldom (the master: every half second of a start), not at every look.
    pub fn check_serving(&self, pid: Pid) -> Observation {
        self.look(pid, true)
    }

    fn look(&self, pid: Pid, serving: bool) -> Observation {
        let mut scratch = proc::Scratch::new();
        let mut pending = vec![pid];
        let mut children = Vec::new();
        let mut denied = false;
        let mut seen = 0usize;
        let mut held = Vec::new();
        let mut holder = None;
        while let Some(next) = pending.pop() {
            children.clear();
            let before = held.len();
            match proc::check_process(next, &self.inodes, &mut scratch, &mut children, &mut held) {
                Ok(Some(how)) => return Observation::Waiting { pid: next, how },
                Ok(None) => {}
                Err(proc::Refused::Denied) => denied = true,
                Err(proc::Refused::Gone) if next == pid => return Observation::Gone,
                Err(proc::Refused::Gone) => {}
            }
            if held.len() > before && holder.is_none() {
                holder = Some(next);
            }
            // A fork bomb under a worker must not make the master walk for ever.
            seen += 1;
            if seen < MAX_PROCESSES {
                pending.extend_from_slice(&children);
            }
        }
        // Only when no wait was seen: this reads the namespace's connection tables.
        let holder = holder.filter(|_| serving);
        if let Some(holder) = holder.filter(|_| net::holds_accepted(pid, &self.inodes, &held)) {
            return Observation::Waiting {
                pid: holder,
                how: How::Accepted,
            };
        }
        if denied {
            if let Some(denial) = scratch.denied {
                debug!(
                    pid = %denial.pid,
                    errno = %denial.errno,
                    "/proc refused a look at {}", denial.what
                );
            }
            Observation::Denied
        } else {
            Observation::NotYet
        }
    }

    /// Whether `pid` itself (not its descendants) holds a connection accepted from one
    /// of the sockets, waiting or not: a client connected, whether or not a request is
    /// in flight. It reads the namespace's connection tables, as
    /// [`Probe::check_serving`] does, when the process holds a socket besides the
    /// listening ones; a refused or gone process holds none.
    pub fn holds_connection(&self, pid: Pid) -> bool {
        let mut scratch = proc::Scratch::new();
        let (mut children, mut held) = (Vec::new(), Vec::new());
        let _ = proc::check_process(pid, &self.inodes, &mut scratch, &mut children, &mut held);
        !held.is_empty() && net::holds_accepted(pid, &self.inodes, &held)
    }

    /// The inodes this probe looks for.
    pub fn inodes(&self) -> &[u64] {
        &self.inodes
    }
}

/// How many processes one check looks at, at most (the worker and its descendants).
const MAX_PROCESSES: usize = 256;
