//! The control socket: the master's signal table, over a unix socket, with answers.
//!
//! The protocol is one request line from the client; the master answers with lines and
//! closes the connection when it has nothing more to say:
//!
//! | request | answer |
//! |---|---|
//! | `reload`, `chain-reload` | `accepted generation=N` at once, then `ok generation=N elapsed_ms=M` or `failed generation=N: REASON` when the reload has finished |
//! | `stop`, `stop brutal` | `accepted`; the connection stays open until the master exits |
//! | `status`, `status json` | the status, as text lines or one JSON object |
//! | `workers +1`, `workers -1` | `ok workers=N` |
//!
//! Anything else is answered `error ...` naming the request. The socket is created mode
//! 0600, so only the master's user (and root) can talk to it.

use std::{
    fmt,
    io::{self, ErrorKind, Read, Write},
    os::{
        fd::{AsFd, BorrowedFd, RawFd},
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant},
};

use tracing::warn;

use crate::{
    event::{Registry, Token},
    events,
};

/// A request to the master, as a client sends it on one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// A graceful reload (SIGHUP), or a chain reload (SIGUSR2).
    Reload {
        /// One worker at a time.
        chain: bool,
    },
    /// A shutdown: graceful (SIGTERM) or brutal (SIGINT).
    Stop {
        /// Kill the workers instead of letting them drain.
        brutal: bool,
    },
    /// The state of the master and of every worker.
    Status {
        /// One JSON object instead of text lines.
        json: bool,
    },
    /// One worker more (SIGTTIN) or fewer (SIGTTOU).
    Resize {
        /// `true` for one more.
        more: bool,
    },
}

/// A request line that is not one of the protocol's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown request {0:?}: expected reload, chain-reload, stop, stop brutal, status, status json, workers +1 or workers -1")]
pub struct UnknownRequest(pub String);

impl FromStr for ControlRequest {
    type Err = UnknownRequest;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["reload"] => ControlRequest::Reload { chain: false },
            ["chain-reload"] => ControlRequest::Reload { chain: true },
            ["stop"] => ControlRequest::Stop { brutal: false },
            ["stop", "brutal"] => ControlRequest::Stop { brutal: true },
            ["status"] => ControlRequest::Status { json: false },
            ["status", "json"] => ControlRequest::Status { json: true },
            ["workers", "+1"] => ControlRequest::Resize { more: true },
            ["workers", "-1"] => ControlRequest::Resize { more: false },
            _ => return Err(UnknownRequest(line.trim().to_owned())),
        })
    }
}

impl fmt::Display for ControlRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControlRequest::Reload { chain: false } => "reload",
            ControlRequest::Reload { chain: true } => "chain-reload",
            ControlRequest::Stop { brutal: false } => "stop",
            ControlRequest::Stop { brutal: true } => "stop brutal",
            ControlRequest::Status { json: false } => "status",
            ControlRequest::Status { json: true } => "status json",
            ControlRequest::Resize { more: true } => "workers +1",
            ControlRequest::Resize { more: false } => "workers -1",
        })
    }
}

/// Where the control socket is: the `control-socket` option, else `control.sock` in
/// systemd's RuntimeDirectory= (first entry) when there is one, else nowhere.
pub fn control_socket_path(
    configured: Option<&Path>,
    runtime_directory: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    if let Some(path) = configured {
        return Some(path.to_owned());
    }
    let first = runtime_directory?.to_str()?.split(':').next()?;
    (!first.is_empty()).then(|| Path::new(first).join("control.sock"))
}

/// Identifies a client connection across loop turns.
pub(crate) type ConnectionId = u64;

/// A client whose request line has not fully arrived, or who waits for an outcome.
struct Connection {
    id: ConnectionId,
    stream: UnixStream,
    received: Vec<u8>,
    /// The request has been read; the connection stays only to be answered later.
    answered_later: bool,
    /// When it was accepted: a request not read by [`REQUEST_TIMEOUT`] after is dropped.
    opened: Instant,
}

/// What reading a client gave.
enum ReadOutcome {
    /// Not a whole line yet.
    Partial,
    /// Malformed, too long or empty: answered with an error; the connection closes.
    Refused,
    Request(ControlRequest),
}

impl Connection {
    fn read_request(&mut self) -> ReadOutcome {
        let mut buf = [0u8; MAX_REQUEST];
        let closed = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break false,
            }
            if self.received.len() > MAX_REQUEST {
                break true;
            }
        };
        let line_end = self.received.iter().position(|b| *b == b'\n');
        let line = match line_end {
            Some(end) => &self.received[..end],
            // A client that half-closes after its request needs no newline.
            None if closed => &self.received[..],
            None => return ReadOutcome::Partial,
        };
        if line.len() > MAX_REQUEST || (line.is_empty() && closed) {
            let _ = self.stream.write_all(b"error request too long or empty\n");
            return ReadOutcome::Refused;
        }
        match String::from_utf8_lossy(line).parse::<ControlRequest>() {
            Ok(request) => ReadOutcome::Request(request),
            Err(e) => {
                let _ = writeln!(self.stream, "error {e}");
                ReadOutcome::Refused
            }
        }
    }
}

/// The longest request line; a client sending more is cut off.
const MAX_REQUEST: usize = 256;
/// Clients at once, so that a flood cannot exhaust our fds. At the limit, a new client
/// takes the place of the oldest one still silent: whoever holds idle connections
/// cannot lock an operator out.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request line.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening control socket and its clients.
pub(crate) struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    connections: Vec<Connection>,
    next_id: ConnectionId,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("connections", &self.connections.len())
            .finish()
    }
}

/// Binds a unix socket at `path`, mode 0600, replacing a stale socket left by a dead
/// master but never one a live master still accepts on, nor a file that is no socket.
pub(crate) fn bind_private(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(io::Error::new(
                ErrorKind::AddrInUse,
                "another master is listening there",
            ))
        }
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            std::fs::remove_file(path)?
        }
        Ok(_) => {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl ControlServer {
    /// Binds `path` mode 0600 ([`bind_private`]).
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        let listener = bind_private(path)?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            connections: Vec::new(),
            next_id: 0,
        })
    }

    /// Takes the control socket and its waiting clients back from a previous image of
    /// this master (re-exec); returns the clients' new ids, in order.
    pub fn adopt(
        listener: RawFd,
        path: PathBuf,
        waiting: impl Iterator<Item = RawFd>,
    ) -> io::Result<(ControlServer, Vec<ConnectionId>)> {
        let adopt = |fd| steward_sys::adopt_inherited_socket(fd).map_err(io::Error::other);
        let listener = UnixListener::from(adopt(listener)?);
        listener.set_nonblocking(true)?;
        let mut server = ControlServer {
            listener,
            path,
            connections: Vec::new(),
            next_id: 0,
        };
        let mut ids = Vec::new();
        for fd in waiting {
            let stream = UnixStream::from(adopt(fd)?);
            stream.set_nonblocking(true)?;
            server.next_id += 1;
            ids.push(server.next_id);
            server.connections.push(Connection {
                id: server.next_id,
                stream,
                received: Vec::new(),
                answered_later: true,
                opened: Instant::now(),
            });
        }
        Ok((server, ids))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The descriptor of a client connection still open.
    pub fn connection_fd(&self, id: ConnectionId) -> Option<BorrowedFd<'_>> {
        self.connections
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.stream.as_fd())
    }

    /// Every descriptor it holds: the listener and each connection (a forked worker
    /// closes them).
    pub fn all_fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd())
            .chain(self.connections.iter().map(|c| c.stream.as_fd()))
            .collect()
    }

    /// Accepts new clients and reads what they sent; returns the complete requests.
    /// Malformed requests are answered and closed here. A client is watched in
    /// `registry` while its request is being read, not while it waits for an answer.
    pub fn receive(&mut self, registry: &Registry) -> Vec<(ConnectionId, ControlRequest)> {
        self.accept(registry);
        let mut requests = Vec::new();
        self.connections.retain_mut(|connection| {
            if connection.answered_later {
                return true;
            }
            match connection.read_request() {
                ReadOutcome::Partial => true,
                ReadOutcome::Refused => false,
                ReadOutcome::Request(request) => {
                    connection.answered_later = true;
                    registry.remove(connection.stream.as_fd());
                    requests.push((connection.id, request));
                    true
                }
            }
        });
        requests
    }

    /// Accepts every waiting client; at [`MAX_CONNECTIONS`] the oldest one that has not
    /// sent its request makes room (or, when all wait for answers, the new one is
    /// turned away).
    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((stream, _))
                    if self.connections.len() >= MAX_CONNECTIONS
                        && !self.drop_oldest_silent(registry) =>
                {
                    let mut stream = stream;
                    let _ = stream
                        .write_all(b"error too many control connections waiting for answers\n");
                }
                Ok((stream, _)) => {
                    let id = self.next_id + 1;
                    let watched = stream.set_nonblocking(true).is_ok()
                        && registry.add(stream.as_fd(), Token::Control(id)).is_ok();
                    if watched {
                        self.next_id = id;
                        self.connections.push(Connection {
                            id,
                            stream,
                            received: Vec::new(),
                            answered_later: false,
                            opened: Instant::now(),
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    break;
                }
            }
        }
    }

    /// Closes the oldest connection that has not sent its request, telling it why;
    /// whether there was one.
    fn drop_oldest_silent(&mut self, registry: &Registry) -> bool {
        let oldest = self
            .connections
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.answered_later)
            .min_by_key(|(_, c)| c.opened)
            .map(|(index, _)| index);
        let Some(index) = oldest else {
            return false;
        };
        let mut connection = self.connections.swap_remove(index);
        registry.remove(connection.stream.as_fd());
        let _ = connection.stream.write_all(
            b"error closed: too many control connections, and this one sent no request\n",
        );
        warn!(
            event = events::CONTROL_DROPPED,
            reason = "too many connections",
            "control client dropped to make room"
        );
        true
    }

    /// When the oldest connection still without its request times out.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.connections
            .iter()
            .filter(|c| !c.answered_later)
            .map(|c| c.opened + REQUEST_TIMEOUT)
            .min()
    }

    /// Closes the connections that sent no request within [`REQUEST_TIMEOUT`].
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        self.connections.retain_mut(|c| {
            if c.answered_later || now < c.opened + REQUEST_TIMEOUT {
                return true;
            }
            registry.remove(c.stream.as_fd());
            let said = format!(
                "error no request within {} s; closed\n",
                REQUEST_TIMEOUT.as_secs()
            );
            let _ = c.stream.write_all(said.as_bytes());
            warn!(
                event = events::CONTROL_DROPPED,
                reason = "no request in time",
                "control client dropped"
            );
            false
        });
    }

    /// Writes `line` to the client; with `last`, closes the connection after it.
    pub fn answer(&mut self, id: ConnectionId, line: &str, last: bool) {
        let Some(index) = self.connections.iter().position(|c| c.id == id) else {
            return;
        };
        // Answers are short and the client is waiting to read them; a client that does
        // not read loses its answer rather than stalling the master.
        let connection = &mut self.connections[index];
        let _ = connection.stream.set_nonblocking(false);
        let _ = connection
            .stream
            .set_write_timeout(Some(std::time::Duration::from_millis(100)));
        let written = writeln!(connection.stream, "{line}");
        let _ = connection.stream.set_nonblocking(true);
        if last || written.is_err() {
            self.connections.swap_remove(index);
        }
    }

    #[cfg(test)]
    pub fn remove_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_reads_back_as_written() {
        for request in [
            ControlRequest::Reload { chain: false },
            ControlRequest::Reload { chain: true },
            ControlRequest::Stop { brutal: false },
            ControlRequest::Stop { brutal: true },
            ControlRequest::Status { json: false },
            ControlRequest::Status { json: true },
            ControlRequest::Resize { more: true },
            ControlRequest::Resize { more: false },
        ] {
            assert_eq!(request.to_string().parse(), Ok(request));
        }
        assert_eq!(
            " reload \r".parse(),
            Ok(ControlRequest::Reload { chain: false })
        );
        let error = "relaod".parse::<ControlRequest>().unwrap_err();
        assert!(error.to_string().contains("\"relaod\""), "{error}");
        assert!("stop now".parse::<ControlRequest>().is_err());
    }

    #[test]
    fn the_socket_is_configured_or_in_the_runtime_directory() {
        assert_eq!(
            control_socket_path(Some(Path::new("/x/c.sock")), Some("/run/app".as_ref())),
            Some(PathBuf::from("/x/c.sock"))
        );
        assert_eq!(
            control_socket_path(None, Some("/run/steward/demo:/run/other".as_ref())),
            Some(PathBuf::from("/run/steward/demo/control.sock"))
        );
        assert_eq!(control_socket_path(None, None), None);
        assert_eq!(control_socket_path(None, Some("".as_ref())), None);
    }

    #[test]
    fn requests_are_read_and_answered() {
        let dir = std::env::temp_dir().join(format!("steward-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let mut server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(ControlServer::bind(&path).is_err(), "a live socket is kept");

        let mut good = UnixStream::connect(&path).unwrap();
        good.write_all(b"status json\n").unwrap();
        let mut bad = UnixStream::connect(&path).unwrap();
        bad.write_all(b"dance\n").unwrap();
        let mut registry = Registry::new().unwrap();
        registry
            .add(server.listener_fd(), Token::ControlListener)
            .unwrap();
        let mut requests = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while requests.is_empty() && std::time::Instant::now() < deadline {
            registry.wait(Some(1000)).unwrap();
            requests = server.receive(&registry);
        }
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].1, ControlRequest::Status { json: true });
        server.answer(requests[0].0, "{}", true);
        let mut answer = String::new();
        good.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "{}\n");
        let mut refused = String::new();
        bad.read_to_string(&mut refused).unwrap();
        assert!(
            refused.starts_with("error unknown request \"dance\""),
            "{refused}"
        );

        drop(server);
        // The file of a dead master's socket is replaced.
        ControlServer::bind(&path).unwrap().remove_file();
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
