//! The actions that wait: `wait_for_*` for a path or a socket, `spinningfifo` for a
//! reader. They poll, sleeping between looks: the master runs them in its start phases,
//! before its loop serves anything, so blocking only delays the phase, as uWSGI's own
//! wait does.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use nix::errno::Errno;

use super::{run::write_fifo, ActionError, WaitKind};

/// How long the waiting actions wait: the `wait-for-fs-timeout` and
/// `wait-for-socket-timeout` options, 60 s each by default as in uWSGI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitTimeouts {
    /// For `wait_for_fs`, `wait_for_file`, `wait_for_dir` and `spinningfifo`.
    pub(crate) fs: Duration,
    /// For `wait_for_socket`.
    pub(crate) socket: Duration,
}

impl Default for WaitTimeouts {
    fn default() -> Self {
        WaitTimeouts {
            fs: Duration::from_secs(60),
            socket: Duration::from_secs(60),
        }
    }
}

/// How often a waiting action looks again.
const WAIT_POLL: Duration = Duration::from_millis(100);

/// Polls until the condition of `kind` holds for `target`, or its timeout passes.
pub(super) fn wait_for(
    kind: WaitKind,
    target: &str,
    timeouts: WaitTimeouts,
) -> Result<(), ActionError> {
    let (timeout, what) = match kind {
        WaitKind::Fs => (timeouts.fs, "there"),
        WaitKind::File => (timeouts.fs, "a file"),
        WaitKind::Dir => (timeouts.fs, "a directory"),
        WaitKind::Socket => (timeouts.socket, "accepting connections"),
    };
    let ready = || match kind {
        WaitKind::Fs => fs::symlink_metadata(target).is_ok(),
        WaitKind::File => fs::metadata(target).is_ok_and(|m| m.is_file()),
        WaitKind::Dir => fs::metadata(target).is_ok_and(|m| m.is_dir()),
        WaitKind::Socket if target.contains('/') => {
            std::os::unix::net::UnixStream::connect(target).is_ok()
        }
        WaitKind::Socket => std::net::TcpStream::connect(target).is_ok(),
    };
    poll_until(timeout, ready).map_err(|()| ActionError::WaitTimedOut {
        action: kind.action_name(),
        target: target.to_owned(),
        what,
        timeout,
    })
}

/// Calls `ready` every [`WAIT_POLL`] until it says yes, or `timeout` has passed.
fn poll_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(());
        }
        std::thread::sleep(WAIT_POLL.min(deadline - now));
    }
}

/// writefifo, retried while nobody reads the FIFO (ENXIO) or it does not exist yet.
pub(super) fn spinning_fifo(path: &Path, data: &str, timeout: Duration) -> Result<(), ActionError> {
    let mut last = None;
    let waited = poll_until(timeout, || match write_fifo(path, data) {
        Err(ActionError::FifoOpen { ref cause, .. })
            if matches!(
                cause.raw_os_error().map(Errno::from_raw),
                Some(Errno::ENXIO | Errno::ENOENT)
            ) =>
        {
            false
        }
        other => {
            last = Some(other);
            true
        }
    });
    match (waited, last) {
        (Ok(()), Some(result)) => result,
        _ => Err(ActionError::WaitTimedOut {
            action: "spinningfifo",
            target: path.display().to_string(),
            what: "read",
            timeout,
        }),
    }
}
