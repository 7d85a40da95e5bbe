//! The main thread once the sockets are open: the simulated boot, accepting until
//! SIGTERM, then draining. Signals arrive through a signalfd polled beside the
//! sockets, so a stop is noticed whatever the thread is waiting for.

use std::env;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::exit::{die, exit_now};
use crate::listener::Listener;
use crate::shared::{notify, Shared};

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

/// Simulated boot time, still answering signals: nothing is in flight
/// yet, so any of them just ends the process.
pub(crate) fn boot(duration: Duration, sigfd: &SignalFd, shared: &Shared) {
    let ready_at = Instant::now() + duration;
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

/// Accepts until SIGTERM. Every accept is preceded by a poll that also
/// watches the signalfd, so the process never sits in accept() unable to
/// notice a stop while other workers take the connections.
pub(crate) fn serve(listeners: &[Listener], sigfd: &SignalFd, shared: &Arc<Shared>) {
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
pub(crate) fn drain(listeners: Vec<Listener>, sigfd: &SignalFd, shared: &Arc<Shared>) -> ! {
    shared.begin_stop();
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
        waiter.wait_until_idle();
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
