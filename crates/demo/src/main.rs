//! steward-demo: the bundled demo worker of steward.
//!
//! A small HTTP/1.1 server that takes its listening sockets the systemd
//! socket-activation way (`LISTEN_FDS`), tells the master when it is ready
//! (`NOTIFY_SOCKET`) and, on SIGTERM, drains: it stops accepting at once but
//! finishes every request already in flight, so a reload drops nothing.
//! The integration tests of steward drive this binary.

/// Writes one line to stderr with a single write(2): steward and its other workers share
/// the pipe, and a line written in pieces (as `eprintln!` may do) interleaves with theirs.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

mod http;

use std::env;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixListener};
use std::path::Path;
use std::process;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

/// How long an idle keep-alive connection still accepts a request after
/// SIGTERM: a client may already be reusing it, and answering (with
/// `Connection: close`) beats closing under its feet.
pub(crate) const DRAIN_WINDOW: Duration = Duration::from_millis(200);

/// State shared by the main thread and the connection threads.
#[derive(Debug)]
pub(crate) struct Shared {
    pub worker_id: String,
    pub generation: String,
    pub pid: u32,
    /// The descriptors open when the process started, for `GET /fds`.
    pub startup_fds: Vec<RawFd>,
    pub log_requests: bool,
    /// Set once, when SIGTERM arrives; connection threads read it lock-free.
    stop_at: OnceLock<Instant>,
    /// Number of live connection threads; `all_done` fires when it hits 0.
    active: Mutex<usize>,
    all_done: Condvar,
}

impl Shared {
    pub fn stop_at(&self) -> Option<Instant> {
        self.stop_at.get().copied()
    }

    pub fn stopping(&self) -> bool {
        self.stop_at.get().is_some()
    }

    pub fn hello(&self) -> String {
        format!(
            "hello from worker {} generation {} pid {}\n",
            self.worker_id, self.generation, self.pid
        )
    }

    fn who(&self) -> String {
        format!(
            "worker {} generation {} pid {}",
            self.worker_id, self.generation, self.pid
        )
    }
}

/// Counts a connection thread for as long as it lives (even if it panics).
struct ConnGuard(Arc<Shared>);

impl ConnGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        *shared.active.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        ConnGuard(Arc::clone(shared))
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut active = self.0.active.lock().unwrap_or_else(PoisonError::into_inner);
        *active -= 1;
        if *active == 0 {
            self.0.all_done.notify_all();
        }
    }
}

#[derive(Debug)]
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    fn describe(&self) -> String {
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
    fn accept_one(&self, shared: &Arc<Shared>) -> io::Result<()> {
        // The listener is non-blocking but the connection must not be: its
        // thread uses plain blocking reads, with timeouts against stalled peers.
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(http::IO_TIMEOUT))?;
                s.set_write_timeout(Some(http::IO_TIMEOUT))?;
                spawn_connection(s, shared)
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(Some(http::IO_TIMEOUT))?;
                s.set_write_timeout(Some(http::IO_TIMEOUT))?;
                spawn_connection(s, shared)
            }
        }
    }
}

fn spawn_connection<S: http::Stream>(stream: S, shared: &Arc<Shared>) -> io::Result<()> {
    // Counted before the thread exists, so a SIGTERM handled right after this
    // accept already waits for it.
    let guard = ConnGuard::new(shared);
    thread::Builder::new()
        .name("conn".into())
        .spawn(move || http::serve(stream, &guard.0))?;
    Ok(())
}

struct Options {
    listen: Vec<String>,
    boot: Duration,
    notify: bool,
}

const USAGE: &str =
    "usage: steward-demo [--listen HOST:PORT | --listen unix:PATH]... [--boot-ms N] [--no-notify]";

fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    log!("steward-demo: {msg}");
    process::exit(code)
}

fn parse_args() -> Options {
    let mut opts = Options {
        listen: Vec::new(),
        boot: Duration::ZERO,
        notify: true,
    };
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| die(2, format!("{flag} needs a value\n{USAGE}")))
        };
        match flag.as_str() {
            "--listen" => opts.listen.push(value()),
            "--boot-ms" => {
                let v = value();
                let ms = v
                    .parse()
                    .unwrap_or_else(|_| die(2, format!("--boot-ms: not a number: {v}")));
                opts.boot = Duration::from_millis(ms);
            }
            "--no-notify" => opts.notify = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                process::exit(0)
            }
            _ => die(2, format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    opts
}

/// The descriptors open right now, ascending, without the one `read_dir` uses.
fn open_fds() -> Vec<RawFd> {
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

/// Sends one datagram to the master's `NOTIFY_SOCKET` (a path or `@abstract`).
pub(crate) fn notify(state: &[u8]) -> io::Result<()> {
    let target = env::var_os("NOTIFY_SOCKET")
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "NOTIFY_SOCKET is not set"))?;
    let sock = UnixDatagram::unbound()?;
    let sent = match target.as_bytes().strip_prefix(b"@") {
        Some(name) => sock.send_to_addr(state, &UnixAddr::from_abstract_name(name)?)?,
        None => sock.send_to(state, &target)?,
    };
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    Drain,
    Now(Signal),
}

/// Reads every pending signal; SIGINT/SIGQUIT win over SIGTERM.
fn pending_stop(sigfd: &SignalFd) -> Option<Stop> {
    let mut stop = None;
    while let Ok(Some(info)) = sigfd.read_signal() {
        match Signal::try_from(info.ssi_signo as i32) {
            Ok(sig @ (Signal::SIGINT | Signal::SIGQUIT)) => return Some(Stop::Now(sig)),
            Ok(Signal::SIGTERM) => stop = Some(Stop::Drain),
            _ => {}
        }
    }
    stop
}

/// Polls `fds` (signalfd first), retrying on EINTR. `None` waits forever.
fn poll_until(fds: &mut [PollFd], timeout: Option<Duration>) {
    let timeout = timeout.map_or(PollTimeout::NONE, |t| {
        PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX)
    });
    match poll(fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => die(1, format!("poll: {e}")),
    }
}

fn exit_now(shared: &Shared, why: &str) -> ! {
    log!("steward-demo: {} stopped ({why})", shared.who());
    process::exit(0)
}

/// Accepts until SIGTERM. Every accept is preceded by a poll that also
/// watches the signalfd, so the process never sits in accept() unable to
/// notice a stop while other workers take the connections.
fn serve(listeners: &[Listener], sigfd: &SignalFd, shared: &Arc<Shared>) {
    let mut fds: Vec<PollFd> = std::iter::once(sigfd.as_fd())
        .chain(listeners.iter().map(Listener::as_fd))
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    loop {
        poll_until(&mut fds, None);
        let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(false)).collect();
        if ready[0] {
            match pending_stop(sigfd) {
                Some(Stop::Now(sig)) => exit_now(shared, sig.as_str()),
                Some(Stop::Drain) => return,
                None => {}
            }
        }
        for (listener, _) in listeners.iter().zip(&ready[1..]).filter(|(_, r)| **r) {
            // One accept per wake-up: the other workers polling the same
            // socket get their share, and signals are checked in between.
            match listener.accept_one(shared) {
                Ok(()) => {}
                // Another process sharing the socket took the connection
                // first, or the client gave up: nothing to do, poll again.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    // EMFILE and friends leave the socket readable; back off
                    // instead of spinning on poll.
                    log!("steward-demo: accept on {}: {e}", listener.describe());
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// Graceful stop: never accept again, let every connection finish, exit 0.
fn drain(listeners: Vec<Listener>, sigfd: &SignalFd, shared: &Arc<Shared>) -> ! {
    let _ = shared.stop_at.set(Instant::now());
    // Closing our descriptors (never shutdown(), which would stop the socket
    // for every worker sharing it) leaves queued connections to the others.
    drop(listeners);
    if env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = notify(b"STOPPING=1") {
            log!("steward-demo: cannot send STOPPING=1: {e}");
        }
    }
    let waiter = Arc::clone(shared);
    thread::spawn(move || {
        let mut active = waiter.active.lock().unwrap_or_else(PoisonError::into_inner);
        while *active > 0 {
            active = waiter
                .all_done
                .wait(active)
                .unwrap_or_else(PoisonError::into_inner);
        }
        exit_now(&waiter, "SIGTERM, drained");
    });
    // Meanwhile SIGINT/SIGQUIT still mean "now".
    let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
    loop {
        poll_until(&mut fds, None);
        if let Some(Stop::Now(sig)) = pending_stop(sigfd) {
            exit_now(shared, sig.as_str());
        }
    }
}

fn main() {
    // First, before this process opens anything: what we were handed.
    let startup_fds = open_fds();
    // Blocked before any thread exists so every thread inherits the mask and
    // the signals are only ever delivered through the signalfd.
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        mask.add(sig);
    }
    if let Err(e) = mask.thread_block() {
        die(1, format!("cannot block signals: {e}"));
    }
    let opts = parse_args();
    let listeners = listeners(&opts, &startup_fds);
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .unwrap_or_else(|e| die(1, format!("signalfd: {e}")));
    let shared = Arc::new(shared(startup_fds));
    boot(&opts, &sigfd, &shared);

    if opts.notify && env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = notify(b"READY=1") {
            log!("steward-demo: cannot send READY=1: {e}");
        }
    }
    let addrs: Vec<String> = listeners.iter().map(Listener::describe).collect();
    log!(
        "steward-demo: {} serving on {} (fds: {})",
        shared.who(),
        addrs.join(", "),
        env::var("LISTEN_FDNAMES").unwrap_or_else(|_| "-".into())
    );

    serve(&listeners, &sigfd, &shared);
    drain(listeners, &sigfd, &shared)
}

/// The sockets to serve: handed over (LISTEN_FDS), else bound from --listen; made
/// non-blocking.
fn listeners(opts: &Options, startup_fds: &[RawFd]) -> Vec<Listener> {
    let listeners: Vec<Listener> = match env::var("LISTEN_FDS") {
        Ok(count) => {
            if !opts.listen.is_empty() {
                log!("steward-demo: LISTEN_FDS is set; ignoring --listen");
            }
            inherited_listeners(&count, startup_fds)
        }
        Err(_) => opts
            .listen
            .iter()
            .map(|a| bind(a).unwrap_or_else(|e| die(1, format!("cannot listen on {a}: {e}"))))
            .collect(),
    };
    if listeners.is_empty() {
        die(
            2,
            format!("no sockets: set LISTEN_FDS/LISTEN_PID or pass --listen\n{USAGE}"),
        );
    }
    // O_NONBLOCK lives on the open file description, so this also flips it
    // for every other process sharing these sockets. That is harmless (each
    // of them must cope with EAGAIN anyway) and it is what nginx, gunicorn
    // and Go do with inherited listeners too.
    for l in &listeners {
        let set = match l {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        };
        set.unwrap_or_else(|e| die(1, format!("cannot make {} non-blocking: {e}", l.describe())));
    }
    listeners
}

/// What the request threads share: who this worker is, and the drain's bookkeeping.
fn shared(startup_fds: Vec<RawFd>) -> Shared {
    let var = |name| {
        env::var(name)
            .ok()
            .filter(|v: &String| !v.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    Shared {
        worker_id: var("STEWARD_WORKER_ID"),
        generation: var("STEWARD_GENERATION"),
        pid: process::id(),
        startup_fds,
        log_requests: env::var("STEWARD_DEMO_LOG_REQUESTS").is_ok_and(|v| v == "1"),
        stop_at: OnceLock::new(),
        active: Mutex::new(0),
        all_done: Condvar::new(),
    }
}

/// Simulated boot time, still answering signals: nothing is in flight yet, so any of
/// them just ends the process.
fn boot(opts: &Options, sigfd: &SignalFd, shared: &Shared) {
    let ready_at = Instant::now() + opts.boot;
    let mut sigpoll = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
    while let Some(left) = ready_at
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        poll_until(&mut sigpoll, Some(left));
        match pending_stop(sigfd) {
            Some(Stop::Now(sig)) => exit_now(shared, sig.as_str()),
            Some(Stop::Drain) => exit_now(shared, "SIGTERM during boot"),
            None => {}
        }
    }
}
