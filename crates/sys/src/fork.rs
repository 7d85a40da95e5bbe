//! Forking a worker that runs a closure instead of exec'ing a command (preload mode).

use std::{
    os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd},
    sync::atomic::{AtomicBool, AtomicI32, Ordering},
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, FdFlag, OFlag},
    poll::{poll, PollFd, PollFlags, PollTimeout},
    sys::signal::{
        sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
    },
    unistd::{close, fork, getpid, pipe2, write, ForkResult, Pid},
};

use crate::{
    spawn::{await_setup_report, encode_failure, exit_now, prepare_child},
    ChildFds, ChildStage, SpawnError,
};

/// The write end of the stop pipe, for the signal handler (-1 until installed). A
/// forked worker is one process with one notice, so a process-wide slot suffices.
static STOP_PIPE: AtomicI32 = AtomicI32::new(-1);
/// Set by the signal handler once the stop signal arrived.
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// A forked worker's notice that the master asked it to stop (the worker stop signal
/// arrived). Usable from blocking code ([`StopNotice::wait`], [`StopNotice::requested`])
/// and from any event loop: [`StopNotice::fd`] is the read end of a pipe, readable
/// from then on, for `poll` or tokio (`tokio::net::unix::pipe::Receiver::from_owned_fd`).
#[derive(Debug)]
pub struct StopNotice {
    read: OwnedFd,
}

impl StopNotice {
    /// Whether the stop signal has arrived.
    pub fn requested(&self) -> bool {
        STOP_REQUESTED.load(Ordering::SeqCst)
    }

    /// Blocks until the stop signal arrives (at once if it already has).
    pub fn wait(&self) {
        while !self.requested() {
            let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
            // EINTR: another signal; look again.
            let _ = poll(&mut fds, PollTimeout::NONE);
        }
    }

    /// A new descriptor that becomes readable when the stop signal arrives and stays
    /// readable (nothing ever reads it): poll it, or await it with
    /// `tokio::net::unix::pipe::Receiver::from_owned_fd(notice.fd()?)?.readable()`.
    pub fn fd(&self) -> std::io::Result<OwnedFd> {
        self.read.try_clone()
    }
}

impl AsFd for StopNotice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

#[allow(unsafe_code)]
extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
    let fd = STOP_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `fd` is the stop pipe's write end, never closed in the worker; write
        // is async-signal-safe. A full pipe (EAGAIN) still leaves it readable.
        let _ = write(unsafe { BorrowedFd::borrow_raw(fd) }, &[1]);
    }
}

/// Forks a worker that runs `worker` instead of exec'ing; returns the child's pid once
/// its setup succeeded.
///
/// Before `worker` runs, the child gets what an exec'd worker gets: its own process
/// group, SIGKILL when the master dies, default signal dispositions (SIGPIPE stays
/// ignored, as Rust code expects) and an empty signal mask, stdin from `fds`, the
/// sockets at fd 3, 4, ... (close-on-exec, so the worker's own children do not inherit
/// them); every descriptor in `close` (the master's own) is closed. `stop_signal` is
/// caught into the [`StopNotice`] handed to `worker`. The child exits with what
/// `worker` returns (101 if it panics) and never returns into the caller.
///
/// Only call this while the calling process has one thread: see the SAFETY comment.
pub fn fork_worker<F>(
    fds: &ChildFds<'_>,
    close_in_child: &[RawFd],
    stop_signal: Signal,
    worker: F,
) -> Result<Pid, SpawnError>
where
    F: FnOnce(StopNotice) -> i32,
{
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    let parent = getpid();
    // Allocated before fork so that a failing setup step needs no allocation.
    let mut scratch: Vec<RawFd> = vec![-1; fds.sockets.len()];

    match fork_process()? {
        ForkResult::Parent { child } => {
            drop(report_write);
            // End of file on the pipe: the child closed it before calling `worker`.
            await_setup_report(&report_read, child)
        }
        ForkResult::Child => {
            drop(report_read);
            let notice = match set_up_child(fds, close_in_child, stop_signal, parent, &mut scratch)
            {
                Ok(notice) => notice,
                Err((stage, errno)) => {
                    let _ = write(&report_write, &encode_failure(stage, errno));
                    exit_now(127)
                }
            };
            drop(report_write);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker(notice)))
                .unwrap_or(101);
            // The end of the forked child, not of the caller's process: the child exists
            // to run `worker`, and returning would take it back into a copy of the
            // master's loop and run the master's destructors. std's exit flushes stdout
            // and ends the child where it stands, with `worker`'s code as its status.
            std::process::exit(code)
        }
    }
}

/// Runs `run` in a forked child and returns the child's pid at once; the child exits
/// with what `run` returns (101 if it panics) and never returns into the caller. The
/// child keeps everything of the caller (signal mask, descriptors, credentials): the
/// emperor's `as-emperor-setns` child enters a vassal's namespaces this way, then runs
/// the emperor's hooks there.
///
/// Only call this while the calling process has one thread: see the SAFETY comment of
/// the fork.
pub fn fork_call<F>(run: F) -> Result<Pid, SpawnError>
where
    F: FnOnce() -> i32,
{
    match fork_process()? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or(101);
            // The end of the child, as in fork_worker: never back into the caller's loop.
            std::process::exit(code)
        }
    }
}

/// fork(2), for a child that goes on running Rust code.
#[allow(unsafe_code)]
fn fork_process() -> Result<ForkResult, SpawnError> {
    // SAFETY: after fork only the forking thread exists in the child. Running arbitrary
    // code there (allocating, taking locks) is sound only if no other thread could have
    // held a lock (the allocator's, stdio's, a mutex of the app) at the moment of the
    // fork, i.e. if the caller is single-threaded. The steward master is one thread by
    // design and counts its threads before each fork (the thread guard), warning or
    // refusing when a loaded app started one.
    unsafe { fork() }.map_err(SpawnError::Fork)
}

/// The child's setup before the closure runs; Err names the failing step.
#[allow(unsafe_code)]
fn set_up_child(
    fds: &ChildFds<'_>,
    close_in_child: &[RawFd],
    stop_signal: Signal,
    parent: Pid,
    scratch: &mut [RawFd],
) -> Result<StopNotice, (ChildStage, Errno)> {
    // Dispositions the master set (it blocks its signals; a loaded app may have
    // installed handlers) do not belong to the worker. SIGPIPE stays ignored: Rust
    // code expects EPIPE rather than death on a closed connection.
    prepare_child(fds, parent, scratch, true)?;
    let first_free = 3 + fds.sockets.len() as RawFd;
    // The master's descriptors go first: one of them may be a listener's original
    // number inside 3.. that a copy is about to take over.
    for &fd in close_in_child {
        if !(3..first_free).contains(&fd) {
            let _ = close(fd);
        }
    }
    for (target, &copy) in (3..).zip(scratch.iter()) {
        // SAFETY: `copy` was opened just above in this process.
        let placed = unsafe { nix::unistd::dup2_raw(BorrowedFd::borrow_raw(copy), target) }
            .map_err(|e| (ChildStage::Sockets, e))?;
        // The worker takes ownership later (through its listeners): not closed here.
        let placed = std::os::fd::IntoRawFd::into_raw_fd(placed);
        fcntl(
            // SAFETY: `placed` was just created by dup2 in this process.
            unsafe { BorrowedFd::borrow_raw(placed) },
            FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| (ChildStage::Sockets, e))?;
        let _ = close(copy);
    }

    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(|e| (ChildStage::StopSignal, e))?;
    STOP_REQUESTED.store(false, Ordering::SeqCst);
    // The handler owns the write end for the life of the worker.
    STOP_PIPE.store(
        std::os::fd::IntoRawFd::into_raw_fd(write_end),
        Ordering::SeqCst,
    );
    let handler = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic and calls write(2), both
    // async-signal-safe.
    unsafe { sigaction(stop_signal, &handler) }.map_err(|e| (ChildStage::StopSignal, e))?;

    // The master's mask blocked the stop signal until now, so one sent during the
    // setup is pending and reaches the handler here rather than killing the worker.
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| (ChildStage::SignalMask, e))?;
    Ok(StopNotice { read: read_end })
}
