use std::{
    io::IoSliceMut,
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
    /// Room for the sender's credentials, allocated once rather than per datagram.
    credentials: Vec<u8>,
}

/// The largest notify message systemd accepts, and so steward.
pub(crate) const NOTIFY_MAX: usize = 4096;

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

impl NotifySocket {
    fn new(socket: UnixDatagram, path: PathBuf) -> NotifySocket {
        NotifySocket {
            socket,
            path,
            credentials: nix::cmsg_space!(nix::sys::socket::UnixCredentials),
        }
    }

    pub fn bind() -> Result<NotifySocket, MasterError> {
        Self::bind_in(&runtime_dir())
    }

    fn bind_in(dir: &Path) -> Result<NotifySocket, MasterError> {
        let pid = std::process::id();
        let name = |attempt: u32| match attempt {
            0 => format!("steward.{pid}.notify"),
            n => format!("steward.{pid}.{n}.notify"),
        };
        let mut attempt = 0;
        let (socket, path) = loop {
            let path = dir.join(name(attempt));
            // Only a dead process with our pid can have left this behind. A master that
            // already switched user may not be allowed to remove it (a sticky /tmp): then
            // the next name is taken instead of failing the start.
            let _ = std::fs::remove_file(&path);
            match UnixDatagram::bind(&path) {
                Ok(socket) => break (socket, path),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 8 => attempt += 1,
                Err(source) => return Err(MasterError::NotifySocket { path, source }),
            }
        };
        let failed = |source| MasterError::NotifySocket {
            path: path.clone(),
            source,
        };
        socket.set_nonblocking(true).map_err(failed)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(|e| failed(e.into()))?;
        // Workers may run as another user; what they send is believed only by pid.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(failed)?;
        Ok(NotifySocket::new(socket, path))
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
        Ok(NotifySocket::new(socket, path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the next datagram into `buffer`: its sender, as the kernel vouches for
    /// it, and its length; `None` when none is waiting. A datagram without credentials
    /// or larger than systemd accepts ([`NOTIFY_MAX`]) is dropped.
    pub fn receive(&mut self, buffer: &mut [u8; NOTIFY_MAX]) -> Option<(Pid, usize)> {
        loop {
            let mut iov = [IoSliceMut::new(buffer)];
            let message = match recvmsg::<UnixAddr>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut self.credentials),
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
                Some(sender) if !truncated => return Some((sender, len.min(NOTIFY_MAX))),
                _ => {
                    tracing::warn!(
                        bytes = len,
                        limit = NOTIFY_MAX,
                        "ignored notify message without credentials or over the size limit"
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
    fn a_stale_path_that_cannot_be_removed_gives_way_to_the_next_name() {
        let dir = std::env::temp_dir().join(format!("steward-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A directory stands for a leftover this user may not remove: remove_file fails
        // on it and bind finds the address in use.
        let taken = dir.join(format!("steward.{}.notify", std::process::id()));
        std::fs::create_dir_all(&taken).unwrap();
        let socket = NotifySocket::bind_in(&dir).unwrap();
        assert_eq!(
            socket.path(),
            dir.join(format!("steward.{}.1.notify", std::process::id()))
        );
        drop(socket);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
