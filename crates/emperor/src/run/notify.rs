//! The vassals' notify socket: each vassal finds it in NOTIFY_SOCKET and says READY=1,
//! RELOADING=1, STOPPING=1 and STATUS= to the emperor as it would to systemd. A message
//! is believed by its sender's pid (SCM_CREDENTIALS), which must be a vassal's master.

use std::{
    io::IoSliceMut,
    os::{fd::AsRawFd, unix::fs::PermissionsExt, unix::net::UnixDatagram},
    path::PathBuf,
    time::Instant,
};

use nix::{
    sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr},
    unistd::Pid,
};
use steward_systemd::Notification;
use tracing::info;

use super::Emperor;
use crate::{events, tyrant::reachable_by_anyone, vassal::VassalState};

/// The largest notify message systemd accepts.
const NOTIFY_MAX: usize = 4096;

/// Binds the notify socket in the runtime directory (RUNTIME_DIRECTORY, XDG_RUNTIME_DIR
/// or the temporary directory), as a path: every notify client reaches paths. In tyrant
/// mode, vassals run as other users: a directory they cannot reach (XDG_RUNTIME_DIR is
/// its owner's only) is passed over.
pub(super) fn bind(tyrant: bool) -> std::io::Result<(UnixDatagram, PathBuf)> {
    let dir = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
        .into_iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .find(|p| p.is_absolute() && p.is_dir() && (!tyrant || reachable_by_anyone(p)))
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("steward-emperor.{}.notify", std::process::id()));
    // Only a dead process with our pid can have left it.
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path)?;
    socket.set_nonblocking(true)?;
    setsockopt(&socket, sockopt::PassCred, &true)?;
    // Vassals may run as other users; they are believed by pid only.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Ok((socket, path))
}

impl Emperor {
    /// Reads every waiting notify message and applies what it says to its vassal.
    pub(super) fn on_notify(&mut self) {
        let mut buffer = [0u8; NOTIFY_MAX];
        let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        loop {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let Ok(message) = recvmsg::<UnixAddr>(
                self.notify.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_DONTWAIT,
            ) else {
                return;
            };
            let len = message.bytes;
            let sender = message.cmsgs().ok().and_then(|mut c| {
                c.find_map(|c| match c {
                    ControlMessageOwned::ScmCredentials(creds) => Some(Pid::from_raw(creds.pid())),
                    _ => None,
                })
            });
            let (Some(sender), Ok(notification)) = (sender, Notification::parse(&buffer[..len]))
            else {
                continue;
            };
            self.notified(sender, &notification);
        }
    }

    fn notified(&mut self, sender: Pid, notification: &Notification) {
        let now = Instant::now();
        // A vassal with `unshare = pid` runs its master as a child of the process the
        // emperor started (steward's outer process, outside the namespace).
        let vassal_pid = match self.vassal_by_pid(sender) {
            Some(_) => sender,
            None => parent_of(sender).unwrap_or(sender),
        };
        let Some(vassal) = self.vassal_by_pid(vassal_pid) else {
            return;
        };
        if let Some(status) = &notification.status {
            info!(event = events::VASSAL_STATUS, vassal = %vassal.name, pid = %vassal_pid, status = %status, "vassal status");
            vassal.status = Some(status.clone());
        }
        if let Some((_, path)) = notification
            .other
            .iter()
            .find(|(key, _)| key == steward_systemd::CONTROL_SOCKET_FIELD)
        {
            vassal.control = Some(PathBuf::from(path));
        }
        if notification.stopping {
            vassal.set_state(VassalState::Stopping, now);
        } else if notification.reloading {
            vassal.set_state(VassalState::Reloading, now);
        }
        if notification.ready && vassal.state != VassalState::Stopping {
            let started = vassal.state == VassalState::Starting;
            vassal.set_state(VassalState::Ready, now);
            vassal.deaths = 0;
            info!(event = events::VASSAL_READY, vassal = %vassal.name, pid = %vassal_pid, "vassal ready");
            if started {
                // Its namespaces exist now; the sender is the master inside them.
                let (name, owner) = (vassal.name.clone(), vassal.owner);
                self.run_setns_hooks(&name, sender, owner);
            }
        }
    }
}

/// The parent of `pid`, from /proc/PID/stat (the field after the parenthesised name,
/// which may itself hold spaces and parentheses).
fn parent_of(pid: Pid) -> Option<Pid> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ppid = after_name.split_whitespace().nth(1)?.parse().ok()?;
    Some(Pid::from_raw(ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_of_this_process_is_read_from_proc() {
        assert_eq!(
            parent_of(nix::unistd::getpid()),
            Some(nix::unistd::getppid())
        );
    }
}
