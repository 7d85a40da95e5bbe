//! What the main thread and the connection threads share: the worker's identity, its
//! stop state, the count of live connections, and the master's notify socket.

use std::env;
use std::io;
use std::os::fd::RawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::process;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

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
    /// `--max-requests`: after this many, ask the master for a replacement.
    pub max_requests: Option<u64>,
    served: AtomicU64,
    /// What `GET /leak` allocated and keeps, to stand for a leaking app.
    leaked: Mutex<Vec<Vec<u8>>>,
    /// `GET /wedge`: the heartbeats stop, as if the worker hung.
    pub wedged: AtomicBool,
}

impl Shared {
    /// The worker as the master started it (`STEWARD_WORKER_ID`, `STEWARD_GENERATION`,
    /// `-` when unset), not stopping, with no connection yet.
    pub fn from_env(startup_fds: Vec<RawFd>) -> Shared {
        let var = |name| {
            env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
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
            max_requests: None,
            served: AtomicU64::new(0),
            leaked: Mutex::new(Vec::new()),
            wedged: AtomicBool::new(false),
        }
    }

    /// Counts a request answered; the `--max-requests`th asks the master, once, for a
    /// replacement (gunicorn's max_requests, without the gap: this worker serves on
    /// until the replacement is ready and the master asks it to stop).
    pub fn count_request(&self) {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_requests == Some(served) {
            let datagram = format!("X_STEWARD_RECYCLE=after {served} requests");
            if let Err(e) = notify(datagram.as_bytes()) {
                log!("steward-demo: cannot ask for a replacement: {e}");
            }
        }
    }

    /// Allocates `mb` more megabytes, touched so that they are resident, and keeps
    /// them; returns how many it holds.
    pub fn leak(&self, mb: usize) -> usize {
        let mut leaked = self.leaked.lock().unwrap_or_else(PoisonError::into_inner);
        leaked.push(vec![1u8; mb * 1024 * 1024]);
        leaked.iter().map(|chunk| chunk.len() / (1024 * 1024)).sum()
    }

    pub fn stop_at(&self) -> Option<Instant> {
        self.stop_at.get().copied()
    }

    pub fn stopping(&self) -> bool {
        self.stop_at.get().is_some()
    }

    /// Marks the start of the drain (once: a second SIGTERM keeps the first time).
    pub fn begin_stop(&self) {
        let _ = self.stop_at.set(Instant::now());
    }

    /// Blocks until no connection thread is left.
    pub fn wait_until_idle(&self) {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        while *active > 0 {
            active = self
                .all_done
                .wait(active)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub fn hello(&self) -> String {
        format!(
            "hello from worker {} generation {} pid {}\n",
            self.worker_id, self.generation, self.pid
        )
    }

    pub fn who(&self) -> String {
        format!(
            "worker {} generation {} pid {}",
            self.worker_id, self.generation, self.pid
        )
    }
}

/// Counts a connection thread for as long as it lives (even if it panics).
pub(crate) struct ConnGuard(pub Arc<Shared>);

impl ConnGuard {
    pub fn new(shared: &Arc<Shared>) -> Self {
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

/// Sends WATCHDOG=1 every half interval while the master asks for heartbeats, the way
/// sd_watchdog_enabled() reads WATCHDOG_USEC and WATCHDOG_PID, until `/wedge`.
pub(crate) fn start_heartbeat(shared: &Arc<Shared>) {
    let usec = env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let for_us = env::var("WATCHDOG_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .is_none_or(|pid| pid == process::id());
    let Some(usec) = usec.filter(|usec| *usec > 0 && for_us) else {
        return;
    };
    let shared = Arc::clone(shared);
    std::thread::spawn(move || {
        while !shared.wedged.load(Ordering::Relaxed) {
            if let Err(e) = notify(b"WATCHDOG=1") {
                log!("steward-demo: cannot send WATCHDOG=1: {e}");
            }
            std::thread::sleep(Duration::from_micros(usec / 2));
        }
    });
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
