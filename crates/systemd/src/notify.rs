use std::{
    ffi::OsString,
    io::{self, IoSlice},
    os::{
        fd::{AsRawFd, BorrowedFd, RawFd},
        unix::{ffi::OsStrExt, net::UnixDatagram},
    },
};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// A notify datagram that is not a valid set of `KEY=VALUE` lines.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotifyError {
    /// The datagram is not UTF-8.
    #[error("notify message is not valid UTF-8")]
    NotUtf8,
    /// A line without `=`.
    #[error("notify message line {0:?} is not KEY=VALUE")]
    NotAssignment(String),
    /// A well-known key with a value it cannot have.
    #[error("notify message has {key}={value:?}, which is not a valid value")]
    BadValue {
        /// The key.
        key: String,
        /// The value as sent.
        value: String,
    },
}

/// What one notify datagram says, with the keys a master acts on picked out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notification {
    /// `READY=1`.
    pub ready: bool,
    /// `RELOADING=1`.
    pub reloading: bool,
    /// `STOPPING=1`.
    pub stopping: bool,
    /// `WATCHDOG=1`.
    pub watchdog: bool,
    /// `STATUS=...`.
    pub status: Option<String>,
    /// Every other assignment, in order.
    pub other: Vec<(String, String)>,
}

impl Notification {
    /// Parses a datagram the way systemd does: newline-separated `KEY=VALUE`
    /// assignments, empty lines skipped; boolean keys take `1` only.
    pub fn parse(datagram: &[u8]) -> Result<Self, NotifyError> {
        let text = std::str::from_utf8(datagram).map_err(|_| NotifyError::NotUtf8)?;
        let mut seen = Notification::default();
        for line in text.split('\n').filter(|line| !line.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| NotifyError::NotAssignment(line.to_owned()))?;
            let flag = match key {
                "READY" => Some(&mut seen.ready),
                "RELOADING" => Some(&mut seen.reloading),
                "STOPPING" => Some(&mut seen.stopping),
                "WATCHDOG" if value != "trigger" => Some(&mut seen.watchdog),
                _ => None,
            };
            match (flag, key) {
                (Some(flag), _) if value == "1" => *flag = true,
                (Some(_), _) => {
                    return Err(NotifyError::BadValue {
                        key: key.to_owned(),
                        value: value.to_owned(),
                    })
                }
                (None, "STATUS") => seen.status = Some(value.to_owned()),
                (None, _) => seen.other.push((key.to_owned(), value.to_owned())),
            }
        }
        Ok(seen)
    }
}

/// One assignment the master sends upwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// `READY=1`: the service is up.
    Ready,
    /// `STOPPING=1`: the service is shutting down.
    Stopping,
    /// `RELOADING=1` with `MONOTONIC_USEC=`, the CLOCK_MONOTONIC time of the reload's
    /// start: systemd (Type=notify-reload) ignores RELOADING=1 without it.
    Reloading {
        /// Microseconds of CLOCK_MONOTONIC, as from [`State::reloading_now`].
        monotonic_usec: u64,
    },
    /// `STATUS=...`: a one-line status for `systemctl status`.
    Status(String),
    /// `WATCHDOG=1`: the service is alive (sent every half `WATCHDOG_USEC`).
    Watchdog,
    /// `EXTEND_TIMEOUT_USEC=...`: the start, reload or stop under way needs this much
    /// more time from now; sent again before it runs out.
    ExtendTimeout {
        /// Microseconds from now.
        usec: u64,
    },
    /// `MAINPID=...`: the service's main process is now this pid (after daemonizing).
    MainPid(u32),
    /// `FDSTORE=1` with `FDNAME=...`: keep the fds sent along in the service's fd store
    /// under this name, and hand them back through LISTEN_FDS on the next start.
    FdStore {
        /// The name they come back under in LISTEN_FDNAMES.
        name: String,
    },
    /// `X_STEWARD_CONTROL_SOCKET=PATH`: a vassal tells its emperor where its control
    /// socket is, so that `steward reload --vassal NAME` finds it. An application field
    /// (`X_` prefix) in the sd_notify convention: systemd ignores it.
    ControlSocket(std::path::PathBuf),
    /// `FDSTOREREMOVE=1` with `FDNAME=...`: close the fds stored under this name (a
    /// socket no longer wanted, so that a restart does not get it back).
    FdStoreRemove {
        /// Their name in the store.
        name: String,
    },
}

/// The notify field of [`State::ControlSocket`].
pub const CONTROL_SOCKET_FIELD: &str = "X_STEWARD_CONTROL_SOCKET";

impl State {
    /// `RELOADING=1` stamped with the present CLOCK_MONOTONIC time.
    pub fn reloading_now() -> State {
        // CLOCK_MONOTONIC cannot fail on Linux; 0 would only make systemd ignore one reload.
        let monotonic_usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|now| now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000)
            .unwrap_or(0);
        State::Reloading { monotonic_usec }
    }

    /// The datagram for `states`: one `KEY=VALUE` line each.
    pub fn encode(states: &[State]) -> Vec<u8> {
        let mut datagram = String::new();
        for state in states {
            match state {
                State::Ready => datagram.push_str("READY=1\n"),
                State::Stopping => datagram.push_str("STOPPING=1\n"),
                State::Reloading { monotonic_usec } => {
                    datagram.push_str(&format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n"))
                }
                // A newline would end the assignment early and start a forged one.
                State::Status(text) => {
                    datagram.push_str("STATUS=");
                    datagram.push_str(&text.replace('\n', " "));
                    datagram.push('\n');
                }
                State::Watchdog => datagram.push_str("WATCHDOG=1\n"),
                State::ExtendTimeout { usec } => {
                    datagram.push_str(&format!("EXTEND_TIMEOUT_USEC={usec}\n"))
                }
                State::MainPid(pid) => datagram.push_str(&format!("MAINPID={pid}\n")),
                State::FdStore { name } => {
                    datagram.push_str("FDSTORE=1\nFDNAME=");
                    datagram.push_str(&name.replace(['\n', ':'], "_"));
                    datagram.push('\n');
                }
                State::ControlSocket(path) => {
                    datagram.push_str(CONTROL_SOCKET_FIELD);
                    datagram.push('=');
                    datagram.push_str(&path.to_string_lossy().replace('\n', " "));
                    datagram.push('\n');
                }
                State::FdStoreRemove { name } => {
                    datagram.push_str("FDSTOREREMOVE=1\nFDNAME=");
                    datagram.push_str(&name.replace(['\n', ':'], "_"));
                    datagram.push('\n');
                }
            }
        }
        datagram.into_bytes()
    }
}

/// Sends notifications to the socket named by NOTIFY_SOCKET, a path or an abstract
/// address written `@name` (sd-notify 0.5 cannot reach the latter).
#[derive(Debug)]
pub struct Notifier {
    target: Option<UnixAddr>,
    socket: Option<UnixDatagram>,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET` as this process received it; one that sends
    /// nothing when the variable is unset or empty.
    pub fn from_env() -> io::Result<Self> {
        Self::new(std::env::var_os("NOTIFY_SOCKET"))
    }

    /// A notifier for `address` (a path, or `@name` for the abstract namespace).
    pub fn new(address: Option<OsString>) -> io::Result<Self> {
        let target = match address.filter(|a| !a.is_empty()) {
            None => None,
            Some(address) => Some(match address.as_bytes().strip_prefix(b"@") {
                Some(name) => UnixAddr::new_abstract(name)?,
                None => UnixAddr::new(address.as_os_str())?,
            }),
        };
        let socket = target
            .as_ref()
            .map(|_| UnixDatagram::unbound())
            .transpose()?;
        Ok(Notifier { target, socket })
    }

    /// Whether anything listens for notifications.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `states` as one datagram; does nothing when notifications are disabled.
    pub fn send(&self, states: &[State]) -> io::Result<()> {
        self.send_with_fds(states, &[])
    }

    /// Sends `states` with `fds` attached (SCM_RIGHTS), as `FDSTORE=1` needs; does
    /// nothing when notifications are disabled.
    pub fn send_with_fds(&self, states: &[State], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let (Some(socket), Some(target)) = (&self.socket, &self.target) else {
            return Ok(());
        };
        let datagram = State::encode(states);
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let control: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
        sendmsg(
            socket.as_raw_fd(),
            &[IoSlice::new(&datagram)],
            control,
            MsgFlags::empty(),
            Some(target),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_workers_send() {
        let seen = Notification::parse(b"READY=1\nSTATUS=serving\nMAINPID=42\n\n").unwrap();
        assert!(seen.ready && !seen.stopping && !seen.watchdog);
        assert_eq!(seen.status.as_deref(), Some("serving"));
        assert_eq!(seen.other, [("MAINPID".to_owned(), "42".to_owned())]);

        let seen = Notification::parse(b"STOPPING=1\nWATCHDOG=1").unwrap();
        assert!(seen.stopping && seen.watchdog && !seen.ready);
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(
            Notification::parse(b"READY"),
            Err(NotifyError::NotAssignment("READY".into()))
        );
        assert_eq!(
            Notification::parse(&[0xff, b'=']),
            Err(NotifyError::NotUtf8)
        );
        assert!(matches!(
            Notification::parse(b"READY=yes"),
            Err(NotifyError::BadValue { .. })
        ));
    }

    #[test]
    fn reloading_carries_its_timestamp_in_the_same_datagram() {
        let datagram = State::encode(&[
            State::Reloading {
                monotonic_usec: 1234567,
            },
            State::Status("x".into()),
        ]);
        assert_eq!(datagram, b"RELOADING=1\nMONOTONIC_USEC=1234567\nSTATUS=x\n");
        let State::Reloading { monotonic_usec } = State::reloading_now() else {
            unreachable!()
        };
        assert!(monotonic_usec > 0);
    }

    #[test]
    fn status_cannot_forge_a_second_assignment() {
        let datagram = State::encode(&[State::Status("a\nREADY=1".into())]);
        assert_eq!(datagram, b"STATUS=a READY=1\n");
        assert!(!Notification::parse(&datagram).unwrap().ready);
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_address() {
        let dir = std::env::temp_dir().join(format!("steward-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        Notifier::new(Some(path.clone().into()))
            .unwrap()
            .send(&[State::Ready])
            .unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("steward-notify-test-{}", std::process::id());
        let receiver = {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes());
            UnixDatagram::bind_addr(&address.unwrap()).unwrap()
        };
        Notifier::new(Some(format!("@{name}").into()))
            .unwrap()
            .send(&[State::Stopping])
            .unwrap();
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");

        let disabled = Notifier::new(None).unwrap();
        assert!(!disabled.is_enabled());
        disabled.send(&[State::Ready]).unwrap();
    }

    #[test]
    fn the_other_assignments_are_encoded_as_systemd_reads_them() {
        let datagram = State::encode(&[
            State::Watchdog,
            State::ExtendTimeout { usec: 5_000_000 },
            State::MainPid(42),
            State::FdStore {
                name: "web:x\ny".into(),
            },
            State::FdStoreRemove {
                name: "a.toml/web".into(),
            },
        ]);
        assert_eq!(
            datagram,
            b"WATCHDOG=1\nEXTEND_TIMEOUT_USEC=5000000\nMAINPID=42\nFDSTORE=1\nFDNAME=web_x_y\n\
              FDSTOREREMOVE=1\nFDNAME=a.toml/web\n"
        );
    }

    #[test]
    fn fds_travel_with_the_datagram() {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        use std::os::fd::AsFd;

        let dir = std::env::temp_dir().join(format!("steward-fdstore-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let stored = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = stored.local_addr().unwrap().port();
        Notifier::new(Some(path.into()))
            .unwrap()
            .send_with_fds(&[State::FdStore { name: "web".into() }], &[stored.as_fd()])
            .unwrap();
        drop(stored);

        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let message = recvmsg::<()>(
            receiver.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut received = Vec::new();
        for cmsg in message.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                received.extend(fds);
            }
        }
        let n = message.bytes;
        assert_eq!(&buf[..n], b"FDSTORE=1\nFDNAME=web\n");
        assert_eq!(received.len(), 1);
        // The listener lives on in the received fd though ours is closed.
        let listener =
            std::net::TcpListener::from(steward_sys::adopt_inherited_socket(received[0]).unwrap());
        assert_eq!(listener.local_addr().unwrap().port(), port);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
