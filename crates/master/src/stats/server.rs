//! The stats socket and its connections, served from the loop: non-blocking, a cap on
//! connections, a bounded request buffer each, a deadline each (see [`TIMEOUT`]).
//!
//! At the cap the oldest connection is closed for the new one.
//!
//! Plain (uWSGI's `stats`): a connection gets the JSON document at once and is closed.
//! With `stats-http`: one request is read (at most [`MAX_REQUEST`] bytes), answered
//! with `Connection: close`, and the connection closed.

use std::{
    collections::BTreeMap,
    io::{self, ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use steward_options::StatsAddr;

use super::http::{self, Request};
use crate::event::{Registry, Token};

/// More connections than this at once are accepted and closed at once: the loop's
/// memory for stats stays bounded whatever clients do.
pub(crate) const MAX_CONNECTIONS: usize = 128;
/// The most an HTTP request (line and headers) may take; a longer one is refused.
pub(crate) const MAX_REQUEST: usize = 4096;
/// A connection still open after this (a slow reader, a client that sends nothing) is
/// closed.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
/// Connections accepted per wake-up; more wait for the next pass of the loop.
const ACCEPTS_PER_PASS: usize = 64;

/// What a connection asks for, once its request is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// uWSGI's JSON document.
    Json,
    /// The Prometheus text format.
    Metrics,
    /// A readiness probe: 200 when a generation serves and no stop is asked, else 503.
    Ready,
    /// A liveness probe: 200 whenever the loop answers.
    Alive,
}

#[derive(Debug)]
enum Listening {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: Option<PathBuf>,
    },
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[derive(Debug)]
struct Connection {
    stream: Stream,
    /// The request read so far (HTTP only).
    request: Vec<u8>,
    /// The answer, once known, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// The stats server: its socket and the connections being served.
#[derive(Debug)]
pub(crate) struct StatsServer {
    listening: Listening,
    http: bool,
    connections: BTreeMap<u64, Connection>,
    next_id: u64,
    /// Where it listens, for the log.
    pub description: String,
}

/// What a ready stats connection needs from the master.
pub(crate) trait Render {
    /// The status code and the body.
    fn render(&mut self, asked: Asked) -> (u16, Vec<u8>);
}

impl StatsServer {
    /// Binds `addr` (a TCP address or a unix socket made mode 0600); `Named` takes
    /// `inherited` (the socket systemd handed over under that name).
    pub fn open(addr: &StatsAddr, http: bool, inherited: Option<OwnedFd>) -> io::Result<Self> {
        let listening = match (addr, inherited) {
            (_, Some(fd)) => from_inherited(fd)?,
            (StatsAddr::Tcp(addr), None) => Listening::Tcp(TcpListener::bind(addr)?),
            (StatsAddr::Unix(path), None) => Listening::Unix {
                listener: bind_unix(path)?,
                path: Some(path.clone()),
            },
            (StatsAddr::Named(name), None) => {
                return Err(io::Error::new(
                    ErrorKind::NotFound,
                    format!("no socket named {name:?} was handed over (LISTEN_FDNAMES)"),
                ))
            }
        };
        let description = match &listening {
            Listening::Tcp(l) => l.local_addr()?.to_string(),
            Listening::Unix { path: Some(p), .. } => format!("unix:{}", p.display()),
            Listening::Unix { path: None, .. } => addr.to_string(),
        };
        match &listening {
            Listening::Tcp(l) => l.set_nonblocking(true)?,
            Listening::Unix { listener, .. } => listener.set_nonblocking(true)?,
        }
        Ok(StatsServer {
            listening,
            http,
            connections: BTreeMap::new(),
            next_id: 0,
            description,
        })
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        match &self.listening {
            Listening::Tcp(l) => l.as_fd(),
            Listening::Unix { listener, .. } => listener.as_fd(),
        }
    }

    /// The unix socket file steward made, for vacuum.
    pub fn path(&self) -> Option<&Path> {
        match &self.listening {
            Listening::Unix { path, .. } => path.as_deref(),
            Listening::Tcp(_) => None,
        }
    }

    /// When the oldest connection times out, if any is open: the loop's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.connections.values().map(|c| c.deadline).min()
    }

    /// Accepts what waits; plain connections are answered at once.
    pub fn accept(&mut self, registry: &Registry, render: &mut dyn Render, now: Instant) {
        for _ in 0..ACCEPTS_PER_PASS {
            let stream = match &self.listening {
                Listening::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                Listening::Unix { listener, .. } => listener.accept().map(|(s, _)| Stream::Unix(s)),
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.connections.len() >= MAX_CONNECTIONS {
                // The oldest makes room: a client that holds a connection open without
                // asking or reading cannot keep the others out.
                if let Some((_, oldest)) = self.connections.pop_first() {
                    registry.remove(oldest.stream.fd());
                }
            }
            let nonblocking = match &stream {
                Stream::Tcp(s) => s.set_nonblocking(true),
                Stream::Unix(s) => s.set_nonblocking(true),
            };
            if nonblocking.is_err() {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut connection = Connection {
                stream,
                request: Vec::new(),
                answer: None,
                deadline: now + TIMEOUT,
            };
            if self.http {
                if registry
                    .add(connection.stream.fd(), Token::Stats(id))
                    .is_ok()
                {
                    self.connections.insert(id, connection);
                }
                continue;
            }
            connection.answer = Some((render.render(Asked::Json).1, 0));
            self.keep_writing(registry, id, connection);
        }
    }

    /// A connection is readable (its request) or writable (the rest of its answer).
    pub fn on_connection(&mut self, id: u64, registry: &Registry, render: &mut dyn Render) {
        let Some(mut connection) = self.connections.remove(&id) else {
            return;
        };
        registry.remove(connection.stream.fd());
        if connection.answer.is_none() {
            match read_request(&mut connection) {
                None => {
                    // Not all of it yet.
                    let _ = registry.add(connection.stream.fd(), Token::Stats(id));
                    self.connections.insert(id, connection);
                    return;
                }
                Some(Err(())) => return,
                Some(Ok(request)) => {
                    let (status, body) = match request {
                        Request::Get(asked) => render.render(asked),
                        Request::Refused(status) => (status, Vec::new()),
                    };
                    connection.answer = Some((http::response(status, body), 0));
                }
            }
        }
        self.keep_writing(registry, id, connection);
    }

    /// Writes what the socket takes; keeps the connection, watched for output, while
    /// some is left.
    fn keep_writing(&mut self, registry: &Registry, id: u64, mut connection: Connection) {
        let Some((answer, written)) = connection.answer.as_mut() else {
            return;
        };
        while *written < answer.len() {
            match connection.stream.io().write(&answer[*written..]) {
                Ok(0) => return,
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if registry
                        .add_output(connection.stream.fd(), Token::Stats(id))
                        .is_ok()
                    {
                        self.connections.insert(id, connection);
                    }
                    return;
                }
                Err(_) => return,
            }
        }
        // All written: closing the connection tells the client the document is whole.
    }

    /// Closes the connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        self.connections.retain(|_, c| {
            let keep = c.deadline > now;
            if !keep {
                registry.remove(c.stream.fd());
            }
            keep
        });
    }
}

/// Reads what has arrived of an HTTP request: None while incomplete, Err when the
/// client is gone, else the request (or why it is refused).
fn read_request(connection: &mut Connection) -> Option<Result<Request, ()>> {
    let mut buf = [0u8; 1024];
    loop {
        match connection.stream.io().read(&mut buf) {
            Ok(0) => return Some(Err(())),
            Ok(n) => {
                connection.request.extend_from_slice(&buf[..n]);
                if let Some(request) = http::parse(&connection.request) {
                    return Some(Ok(request));
                }
                if connection.request.len() > MAX_REQUEST {
                    return Some(Ok(Request::Refused(431)));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(_) => return Some(Err(())),
        }
    }
}

fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    crate::control::bind_private(path)
}

fn from_inherited(fd: OwnedFd) -> io::Result<Listening> {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    let addr: SockaddrStorage =
        getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).map_err(io::Error::from)?;
    Ok(match addr.family() {
        Some(AddressFamily::Unix) => Listening::Unix {
            listener: UnixListener::from(fd),
            path: None,
        },
        _ => Listening::Tcp(TcpListener::from(fd)),
    })
}
