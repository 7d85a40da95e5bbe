//! `daemonize` / `daemonize2`: the master detaches from its parent and terminal (fork,
//! setsid; the parent exits 0) and logs to a file (appended) or to a UDP listener.

use std::{
    fs::{File, OpenOptions},
    net::UdpSocket,
    os::fd::{AsFd, OwnedFd},
};

use steward_options::LogTarget;
use steward_systemd::{Notifier, State};

use crate::MasterError;

/// Opens the log destination before forking, so that an unusable one is reported by
/// the process that was started, with its exit status.
fn open_log(option: &'static str, target: &LogTarget) -> Result<OwnedFd, MasterError> {
    let failed = |source| MasterError::DaemonLog {
        option,
        target: target.to_string(),
        source,
    };
    match target {
        LogTarget::File(path) => {
            let file: File = OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .map_err(failed)?;
            Ok(file.into())
        }
        LogTarget::Udp(address) => {
            // Connected: each write (one log line) is one datagram to the listener.
            let local = if address.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let socket = UdpSocket::bind(local).map_err(failed)?;
            socket.connect(address.as_str()).map_err(failed)?;
            Ok(socket.into())
        }
    }
}

/// Detaches. Returns in the daemon only: the original process tells systemd (when
/// NOTIFY_SOCKET is set) the daemon's pid, so a Type=notify unit follows it, and exits 0.
/// The daemon's stdin is /dev/null, and its stdout and stderr (so the log) go to `target`.
pub(crate) fn daemonize(option: &'static str, target: &LogTarget) -> Result<(), MasterError> {
    let log = open_log(option, target)?;
    let dev_null = File::open("/dev/null").map_err(MasterError::DevNull)?;
    let failed = |source| MasterError::Daemonize { option, source };
    match steward_sys::detach().map_err(failed)? {
        steward_sys::Detached::Parent { daemon } => {
            if let Ok(systemd) = Notifier::from_env() {
                let _ = systemd.send(&[State::MainPid(daemon.as_raw() as u32)]);
            }
            std::process::exit(0);
        }
        steward_sys::Detached::Daemon => {
            let redirected = nix::unistd::dup2_stdin(dev_null.as_fd())
                .and_then(|()| nix::unistd::dup2_stdout(log.as_fd()))
                .and_then(|()| nix::unistd::dup2_stderr(log.as_fd()));
            redirected.map_err(|errno| MasterError::DaemonStdio { option, errno })
        }
    }
}
