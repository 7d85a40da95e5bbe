//! The listening sockets: handed over by the master (`LISTEN_FDS`, checked against
//! `LISTEN_PID` and the descriptors open at start) or bound from `--listen`.

use std::env;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process;
use std::sync::Arc;

use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

use crate::exit::die;
use crate::http;
use crate::shared::Shared;

#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| a.to_string()),
            Listener::Unix(l) => {
                let addr = l.local_addr().ok();
                match addr
                    .as_ref()
                    .map(|a| (a.as_pathname(), a.as_abstract_name()))
                {
                    Some((Some(path), _)) => format!("unix:{}", path.display()),
                    Some((_, Some(name))) => format!("unix:@{}", String::from_utf8_lossy(name)),
                    _ => "unix:?".into(),
                }
            }
        }
    }

    /// Accepts at most one connection and hands it to a new thread.
    pub fn accept_one(&self, shared: &Arc<Shared>) -> io::Result<()> {
        // The listener is non-blocking but the connection must not be: its
        // thread uses plain blocking reads, with timeouts against stalled peers.
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(http::IO_TIMEOUT))?;
                s.set_write_timeout(Some(http::IO_TIMEOUT))?;
                http::spawn_connection(s, shared)
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(http::IO_TIMEOUT))?;
                s.set_write_timeout(Some(http::IO_TIMEOUT))?;
                http::spawn_connection(s, shared)
            }
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
    }
}

/// The descriptors open right now, ascending, without the one `read_dir` uses.
pub(crate) fn open_fds() -> Vec<RawFd> {
    let own_dir = format!("/proc/{}/fd", process::id());
    let mut fds: Vec<RawFd> = fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    fs::read_link(e.path()).is_ok_and(|target| target != Path::new(&own_dir))
                })
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds
}

/// The sockets to serve on: those the master handed over, else those of `--listen`,
/// all non-blocking.
pub(crate) fn listeners(listen: &[String], startup_fds: &[RawFd], usage: &str) -> Vec<Listener> {
    let listeners: Vec<Listener> = match env::var("LISTEN_FDS") {
        Ok(count) => {
            if !listen.is_empty() {
                log!("steward-demo: LISTEN_FDS is set; ignoring --listen");
            }
            inherited_listeners(&count, startup_fds)
        }
        Err(_) => listen
            .iter()
            .map(|a| bind(a).unwrap_or_else(|e| die(1, format!("cannot listen on {a}: {e}"))))
            .collect(),
    };
    if listeners.is_empty() {
        die(
            2,
            format!("no sockets: set LISTEN_FDS/LISTEN_PID or pass --listen\n{usage}"),
        );
    }
    // O_NONBLOCK lives on the open file description, so this also flips it
    // for every other process sharing these sockets. That is harmless (each
    // of them must cope with EAGAIN anyway) and it is what nginx, gunicorn
    // and Go do with inherited listeners too.
    for l in &listeners {
        l.set_nonblocking()
            .unwrap_or_else(|e| die(1, format!("cannot make {} non-blocking: {e}", l.describe())));
    }
    listeners
}

/// Takes ownership of a descriptor handed over by socket activation.
#[allow(unsafe_code)]
fn adopt_inherited_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was open when the process started (the caller checked the
    // /proc/self/fd snapshot taken first thing in main, before this process
    // opened or closed anything), LISTEN_PID names this process, so by the
    // socket-activation protocol the descriptor is ours; nothing else in the
    // process owns it, and each fd of 3..3+LISTEN_FDS is adopted exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn listener_from_fd(fd: OwnedFd) -> Result<Listener, String> {
    let raw = fd.as_raw_fd();
    let listening = getsockopt(&fd, sockopt::AcceptConn)
        .map_err(|e| format!("fd {raw} is not a socket: {e}"))?;
    let stream = getsockopt(&fd, sockopt::SockType).is_ok_and(|t| t == SockType::Stream);
    if !listening || !stream {
        return Err(format!("fd {raw} is not a listening stream socket"));
    }
    let addr: SockaddrStorage =
        getsockname(raw).map_err(|e| format!("getsockname(fd {raw}): {e}"))?;
    match addr.family() {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            Ok(Listener::Tcp(TcpListener::from(fd)))
        }
        Some(AddressFamily::Unix) => Ok(Listener::Unix(UnixListener::from(fd))),
        other => Err(format!("fd {raw}: unsupported socket family {other:?}")),
    }
}

/// The sockets handed over by the master (`LISTEN_FDS`), if any.
fn inherited_listeners(count: &str, startup_fds: &[RawFd]) -> Vec<Listener> {
    let me = process::id();
    match env::var("LISTEN_PID") {
        Ok(pid) if pid.trim().parse() == Ok(me) => {}
        Ok(pid) => die(2, format!("LISTEN_FDS is set but LISTEN_PID={pid} is not this process (pid {me}): the sockets are not for us")),
        Err(_) => die(2, format!("LISTEN_FDS is set but LISTEN_PID is missing (pid {me}): refusing sockets that may not be for us")),
    }
    let count: RawFd = count
        .trim()
        .parse()
        .unwrap_or_else(|_| die(2, format!("LISTEN_FDS={count} is not a number")));
    (3..3 + count)
        .map(|fd| {
            if !startup_fds.contains(&fd) {
                die(2, format!("LISTEN_FDS={count} but fd {fd} is not open"));
            }
            listener_from_fd(adopt_inherited_fd(fd)).unwrap_or_else(|e| die(2, e))
        })
        .collect()
}

fn bind(addr: &str) -> io::Result<Listener> {
    match addr.strip_prefix("unix:") {
        Some(path) => {
            // A socket file left by an earlier run would make bind fail.
            if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                fs::remove_file(path)?;
            }
            UnixListener::bind(path).map(Listener::Unix)
        }
        None => TcpListener::bind(addr).map(Listener::Tcp),
    }
}
