//! systemd's side of the protocols: a notify socket to hear steward on, and socket
//! activation to hand it sockets the test bound.

use std::{
    ffi::OsStr,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    path::PathBuf,
    process::Command,
};

use crate::{socket_path, DEADLINE};

/// A stand-in for systemd's notify socket: binds a datagram socket steward is pointed
/// at with NOTIFY_SOCKET, and reads what it sends, fds included.
#[derive(Debug)]
pub struct SystemdSocket {
    socket: std::os::unix::net::UnixDatagram,
    /// Where it is bound.
    pub path: PathBuf,
}

/// One notification: its text and the fds that came with it.
#[derive(Debug)]
pub struct Notification {
    /// The datagram, as text.
    pub text: String,
    /// The fds that came with it (FDSTORE=1).
    pub fds: Vec<OwnedFd>,
}

impl SystemdSocket {
    /// Binds a socket of this test's own ([`socket_path`]); reads time out at the deadline.
    pub fn bind(name: &str) -> SystemdSocket {
        let path = socket_path(name);
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        SystemdSocket { socket, path }
    }

    /// The value for NOTIFY_SOCKET.
    pub fn address(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    /// The next notification; panics when none comes within the deadline.
    pub fn receive(&self) -> Notification {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

        let mut buffer = [0u8; 4096];
        let mut space = nix::cmsg_space!([RawFd; 8]);
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("a notification within the deadline");
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received.into_iter().map(|fd| {
                    steward_sys::adopt_inherited_socket(fd).expect("steward sends only sockets")
                }));
            }
        }
        let n = message.bytes;
        Notification {
            text: String::from_utf8_lossy(&buffer[..n]).into_owned(),
            fds,
        }
    }

    /// Notifications until one contains `fragment`; returns them all, that one last.
    pub fn receive_until(&self, fragment: &str) -> Vec<Notification> {
        let mut seen = Vec::new();
        loop {
            let notification = self.receive();
            let done = notification.text.contains(fragment);
            seen.push(notification);
            if done {
                return seen;
            }
        }
    }
}

impl Drop for SystemdSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Makes `sockets` the child's fds 3, 4, ... (without close-on-exec), as a service
/// manager that activates it does; nothing else of the test leaks into it. The sockets
/// must stay open until the command was spawned.
pub fn hand_over(cmd: &mut Command, sockets: &[&dyn AsFd]) {
    // Copies above every target first, so that no dup2 below overwrites a source.
    let lowest = 3 + sockets.len() as RawFd;
    let copies: Vec<OwnedFd> = sockets
        .iter()
        .map(|socket| {
            let raw = nix::fcntl::fcntl(
                socket.as_fd(),
                nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(lowest),
            )
            .expect("copy a socket to hand over");
            owned(raw)
        })
        .collect();
    let raw: Vec<RawFd> = copies.iter().map(AsRawFd::as_raw_fd).collect();
    pre_exec_dup(cmd, raw, copies);
}

/// Takes ownership of a descriptor fcntl just made.
#[allow(unsafe_code)]
fn owned(raw: RawFd) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: `raw` was just returned by F_DUPFD_CLOEXEC: open, and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

#[allow(unsafe_code)]
fn pre_exec_dup(cmd: &mut Command, raw: Vec<RawFd>, keep: Vec<OwnedFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child between fork and exec, and calls only
    // dup2, which is async-signal-safe; it allocates nothing. The copies it duplicates
    // are owned by the closure, so they are open at every spawn of the command.
    unsafe {
        cmd.pre_exec(move || {
            let _ = &keep;
            for (target, source) in (3..).zip(raw.iter()) {
                if libc::dup2(*source, target) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A command that runs `program` as systemd's socket activation does: `sockets` at fds
/// 3.., LISTEN_FDS, LISTEN_PID (the pid `program` will have: a shell sets it and execs),
/// and LISTEN_FDNAMES when `names` is not empty. Add the program's arguments.
pub fn socket_activated(
    program: impl AsRef<OsStr>,
    sockets: &[&dyn AsFd],
    names: &[&str],
) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$@""#)
        .arg("sh")
        .arg(program)
        .env("LISTEN_FDS", sockets.len().to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES");
    if !names.is_empty() {
        cmd.env("LISTEN_FDNAMES", names.join(":"));
    }
    hand_over(&mut cmd, sockets);
    cmd
}
