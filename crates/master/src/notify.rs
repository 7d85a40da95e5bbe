use std::{
    io::{ErrorKind, IoSliceMut},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::{fs::PermissionsExt, net::UnixDatagram},
    },
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr},
    unistd::Pid,
};

use crate::MasterError;

/// The socket the workers find in NOTIFY_SOCKET. It is a path (not an abstract address)
/// because common notify clients, the sd-notify crate among them, reach only paths.
#[derive(Debug)]
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

/// One datagram and the pid the kernel vouches for.
pub(crate) struct Datagram {
    pub sender: Pid,
    pub bytes: Vec<u8>,
}

/// Where the notify socket goes: systemd's RuntimeDirectory= if the unit has one, the
/// user's runtime directory, or the temporary directory.
fn runtime_dir() -> PathBuf {
    let from_env = |name| {
        std::env::var_os(name)
            .and_then(|v| {
                v.to_str()
                    .and_then(|s| s.split(':').next())
                    .map(PathBuf::from)
            })
            .filter(|p| p.is_absolute() && p.is_dir())
    };
    from_env("RUNTIME_DIRECTORY")
        .or_else(|| from_env("XDG_RUNTIME_DIR"))
        .unwrap_or_else(std::env::temp_dir)
}

/// How many names `bind` tries before giving up.
const NAME_ATTEMPTS: u32 = 16;

impl NotifySocket {
    pub fn bind() -> Result<NotifySocket, MasterError> {
        NotifySocket::bind_in(&runtime_dir())
    }

    /// Binds `steward.PID.notify` in `dir`, or `steward.PID.N.notify` when that name is
    /// taken for good: a socket left by a dead process with our pid is removed, but one
    /// owned by another user is not ours to remove (a master that dropped privileges
    /// cannot unlink root's file in a sticky /tmp), and pids are reused.
    fn bind_in(dir: &Path) -> Result<NotifySocket, MasterError> {
        let pid = std::process::id();
        let mut attempt = 0;
        loop {
            let path = match attempt {
                0 => dir.join(format!("steward.{pid}.notify")),
                n => dir.join(format!("steward.{pid}.{n}.notify")),
            };
            // Only a dead process with our pid can have left this behind.
            let _ = std::fs::remove_file(&path);
            match UnixDatagram::bind(&path) {
                Ok(socket) => return NotifySocket::set_up(socket, path),
                Err(e) if e.kind() == ErrorKind::AddrInUse && attempt + 1 < NAME_ATTEMPTS => {
                    attempt += 1;
                }
                Err(source) => return Err(MasterError::NotifySocket { path, source }),
            }
        }
    }

    fn set_up(socket: UnixDatagram, path: PathBuf) -> Result<NotifySocket, MasterError> {
        let failed = |source| MasterError::NotifySocket {
            path: path.clone(),
            source,
        };
        socket.set_nonblocking(true).map_err(failed)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(|e| failed(e.into()))?;
        // Workers may run as another user; what they send is believed only by pid.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(failed)?;
        Ok(NotifySocket { socket, path })
    }

    /// Takes the notify socket back from a previous image of this master (re-exec); the
    /// workers know its path, which stays.
    pub fn adopt(fd: std::os::fd::RawFd, path: PathBuf) -> Result<NotifySocket, MasterError> {
        let fd = steward_sys::adopt_inherited_socket(fd)
            .map_err(|e| MasterError::Handover(std::io::Error::other(e)))?;
        let socket = UnixDatagram::from(fd);
        socket
            .set_nonblocking(true)
            .map_err(MasterError::Handover)?;
        Ok(NotifySocket { socket, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram, `None` when none is waiting. A datagram without credentials
    /// or larger than systemd accepts (4 KiB) is dropped.
    pub fn receive(&self) -> Option<Datagram> {
        let mut buffer = [0u8; 4096];
        loop {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
            let message = match recvmsg::<UnixAddr>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
            ) {
                Ok(message) => message,
                Err(Errno::EINTR) => continue,
                Err(_) => return None,
            };
            let len = message.bytes;
            let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
            let sender = message.cmsgs().ok()?.find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(creds) => Some(Pid::from_raw(creds.pid())),
                _ => None,
            });
            match sender {
                Some(sender) if !truncated => {
                    return Some(Datagram {
                        sender,
                        bytes: buffer[..len.min(buffer.len())].to_vec(),
                    })
                }
                _ => {
                    tracing::warn!(
                        bytes = len,
                        "ignored notify message without credentials or over 4096 bytes"
                    );
                    continue;
                }
            }
        }
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_cannot_be_reclaimed_is_skipped() {
        let dir = std::env::temp_dir().join(format!("steward-notify-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Stands for another user's stale socket: remove_file cannot take it away.
        let taken = dir.join(format!("steward.{}.notify", std::process::id()));
        std::fs::create_dir(&taken).unwrap();
        std::fs::write(taken.join("keep"), b"").unwrap();

        let socket = NotifySocket::bind_in(&dir).unwrap();
        assert_eq!(
            socket.path(),
            dir.join(format!("steward.{}.1.notify", std::process::id()))
        );
        let sender = UnixDatagram::unbound().unwrap();
        sender.send_to(b"READY=1", socket.path()).unwrap();
        drop(socket);
        assert!(taken.is_dir(), "someone else's file is left alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
