//! The emperor's control socket, the master's protocol: `status` (text or `json`) lists
//! the vassals; `reload` reloads every vassal and, for `steward reload --wait`, answers
//! `ok` once all are ready again; `stop` stops them all, the connection held until the
//! emperor exits (`steward stop --wait`). One vassal: `vassal-socket NAME` says where
//! its master's control socket is (the client goes on there), `vassal-stop NAME` and
//! `vassal-kill NAME` stop it until its file changes. Requests are read without blocking the loop:
//! a connection stays until its line has come (at most [`LINE_MAX`] bytes).

use std::{
    io::{ErrorKind, Read, Write},
    os::{
        fd::AsFd,
        unix::net::{UnixListener, UnixStream},
    },
    path::Path,
    time::Instant,
};

use nix::sys::epoll::{EpollEvent, EpollFlags};
use serde_json::json;

use super::{Emperor, Stop, FIRST_CLIENT};

/// The longest request line.
const LINE_MAX: usize = 256;

/// A client whose request line has not fully arrived.
#[derive(Debug)]
pub(super) struct Client {
    stream: UnixStream,
    received: Vec<u8>,
}

/// Binds the control socket (replacing one a dead emperor left), owner-only.
pub(super) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

impl Emperor {
    /// Accepts every waiting connection; each is read as its bytes come.
    pub(super) fn on_control(&mut self) {
        let Some(listener) = &self.control else {
            return;
        };
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.next_client += 1;
            let token = FIRST_CLIENT + self.next_client;
            let event = EpollEvent::new(EpollFlags::EPOLLIN, token);
            if self.epoll.add(stream.as_fd(), event).is_ok() {
                let received = Vec::new();
                self.clients.insert(token, Client { stream, received });
            }
        }
    }

    /// Reads what client `token` sent; answers and closes once the line is whole (or
    /// too long, or the client went away).
    pub(super) fn on_client(&mut self, token: u64) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let mut buffer = [0u8; LINE_MAX];
        let line = loop {
            match client.stream.read(&mut buffer) {
                Ok(0) => break None,
                Ok(n) => client.received.extend_from_slice(&buffer[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break None,
            }
            if let Some(end) = client.received.iter().position(|b| *b == b'\n') {
                break Some(String::from_utf8_lossy(&client.received[..end]).into_owned());
            }
            if client.received.len() > LINE_MAX {
                break None;
            }
        };
        let mut client = self.clients.remove(&token).expect("looked up above");
        let _ = self.epoll.delete(client.stream.as_fd());
        let answer = match line.as_deref().map(str::trim) {
            Some("status") => self.status_text(),
            Some("status json") => self.status_json(),
            Some("reload") => {
                self.reload_all();
                let answer = format!("reloading {} vassals\n", self.vassals.len());
                answer_and(&mut client.stream, &answer);
                return self.waiters.push(client.stream);
            }
            Some(stop @ ("stop" | "stop brutal")) => {
                self.stop_all(if stop == "stop" {
                    Stop::Graceful
                } else {
                    Stop::Brutal
                });
                answer_and(&mut client.stream, "stopping every vassal\n");
                // Held open until the emperor exits: `steward stop --wait`.
                return self.waiters.push(client.stream);
            }
            Some(other) => match self.vassal_request(other) {
                Some(Ok(answer)) if other.starts_with("vassal-stop ") => {
                    answer_and(&mut client.stream, &format!("{answer}\n"));
                    let name = other.split_once(' ').map_or("", |(_, n)| n).trim();
                    // Held open until that vassal is gone: `stop --vassal NAME --wait`.
                    return self.stop_waiters.push((name.to_owned(), client.stream));
                }
                Some(Ok(answer)) => format!("{answer}\n"),
                Some(Err(error)) => format!("error {error}\n"),
                None => format!("error an emperor answers status, reload, stop, vassal-socket NAME, vassal-stop NAME and vassal-kill NAME, not {other:?}\n"),
            },
            None => return,
        };
        answer_and(&mut client.stream, &answer);
    }

    /// The requests about one vassal, NAME being the rest of the line (a file name may
    /// hold spaces): `vassal-socket NAME` answers `socket PATH`, its master's control
    /// socket, where `steward reload/status/top --vassal NAME` go on; `vassal-stop` and
    /// `vassal-kill` stop it gracefully or brutally until its file changes.
    fn vassal_request(&mut self, line: &str) -> Option<Result<String, String>> {
        let (verb, name) = line.split_once(' ')?;
        let name = name.trim();
        Some(match verb {
            "vassal-socket" => self.vassal_socket(name),
            "vassal-stop" => self.stop_one(name, false),
            "vassal-kill" => self.stop_one(name, true),
            _ => return None,
        })
    }

    fn vassal_socket(&self, name: &str) -> Result<String, String> {
        let vassal = self
            .vassals
            .get(name)
            .ok_or_else(|| super::ops::no_vassal(name))?;
        match (&vassal.control, vassal.pid) {
            (Some(path), Some(_)) => Ok(format!("socket {}", path.display())),
            (None, Some(_)) => Err(format!("vassal {name} has no control socket (yet): it makes one when the emperor has one, or when its config names `control-socket`")),
            (_, None) => Err(format!("vassal {name} is not running ({})", vassal.state.name())),
        }
    }

    /// Closes the connections of `stop --vassal NAME --wait`: NAME is gone.
    pub(super) fn stopped_waiters(&mut self, name: &str) {
        self.stop_waiters
            .retain(|(waiting_for, _)| waiting_for != name);
    }

    /// The emperor is ready again after a reload: each `reload --wait` hears it.
    pub(super) fn answer_waiters(&mut self, outcome: &str) {
        for mut stream in std::mem::take(&mut self.waiters) {
            answer_and(&mut stream, &format!("ok {outcome}\n"));
        }
    }

    fn status_text(&self) -> String {
        let now = Instant::now();
        let mut text = format!(
            "emperor pid {}, {}: {}\n",
            std::process::id(),
            self.settings.dir.display(),
            self.status_line()
        );
        for v in self.vassals.values() {
            let pid = v.pid.map_or("-".to_owned(), |p| p.to_string());
            text.push_str(&format!(
                "vassal {} pid {pid} {} for {}s, restarts {}, config {}{}\n",
                v.name,
                v.state.name(),
                now.duration_since(v.since).as_secs(),
                v.restarts,
                v.config.display(),
                v.status
                    .as_ref()
                    .map_or(String::new(), |s| format!(": {s}")),
            ));
        }
        text
    }

    fn status_json(&self) -> String {
        let now = Instant::now();
        let vassals: Vec<_> = self
            .vassals
            .values()
            .map(|v| {
                json!({
                    "name": v.name,
                    "pid": v.pid.map(|p| p.as_raw()),
                    "state": v.state.name(),
                    "config": v.config,
                    "since_ms": now.duration_since(v.since).as_millis() as u64,
                    "restarts": v.restarts,
                    "deaths": v.deaths,
                    "status": v.status,
                })
            })
            .collect();
        let state = if self.stopping.is_some() {
            "stopping"
        } else {
            "running"
        };
        let status = json!({
            "emperor": std::process::id(),
            "dir": self.settings.dir,
            "state": state,
            "ready": self.ready_sent && self.stopping.is_none(),
            "vassals": vassals,
        });
        format!("{status}\n")
    }
}

/// Writes an answer; a client that does not read it loses it: the loop never waits
/// more than a moment.
fn answer_and(stream: &mut UnixStream, answer: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_millis(100)));
    let _ = stream.write_all(answer.as_bytes());
}
