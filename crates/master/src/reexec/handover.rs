//! What one image of the master hands the next: its workers, sockets, waiting control
//! clients and the reload to carry out, as typed data that crosses the exec as JSON in
//! [`REEXEC_VARIABLE`]. A binary reads every version up to [`HANDOVER_VERSION`]; the
//! first one (text, [`super::legacy`]) is what every steward before this one writes
//! and reads, so that a package upgrade from one of those still hands over.

use std::{
    os::fd::{AsFd, AsRawFd, RawFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{legacy, REEXEC_VARIABLE};
use crate::{
    listen::Listener,
    supervisor::{Recycle, Worker, WorkerState},
    MasterError,
};

/// The newest handover this binary writes and reads.
pub const HANDOVER_VERSION: u32 = 2;

/// Where a handed-over worker was in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HandedState {
    Starting,
    Ready,
    /// Asked to stop; its SIGKILL is due in `kill_in`.
    Stopping {
        kill_in: Duration,
    },
    /// Asked to stop, and its SIGKILL already sent.
    Killed,
}

/// One worker as the old image knew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedWorker {
    pub id: usize,
    pub generation: u64,
    #[serde(with = "raw_pid")]
    pub pid: Pid,
    pub state: HandedState,
    pub age: Duration,
    pub respawned: bool,
    /// Due for replacement (a worker asks once: lost, it would not be asked again).
    /// Absent in what a binary before it wrote; ignored by such a binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle: Option<HandedRecycle>,
}

/// A worker's pending replacement, crossing the exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedRecycle {
    pub reason: String,
    /// Its replacement was started already (it is among the handed workers).
    pub begun: bool,
}

impl HandedWorker {
    /// `worker` as the next image adopts it, its deadlines made relative to `now`.
    pub fn of(worker: &Worker, now: Instant) -> HandedWorker {
        let state = match worker.state {
            WorkerState::Starting => HandedState::Starting,
            WorkerState::Ready => HandedState::Ready,
            WorkerState::Stopping {
                kill_at,
                killed: false,
            } => HandedState::Stopping {
                kill_in: kill_at.saturating_duration_since(now),
            },
            WorkerState::Stopping { killed: true, .. } => HandedState::Killed,
        };
        HandedWorker {
            id: worker.id,
            generation: worker.generation,
            pid: worker.pid,
            state,
            age: now.saturating_duration_since(worker.started),
            respawned: worker.respawned,
            recycle: worker.recycle.as_ref().map(|r| HandedRecycle {
                reason: r.reason.clone(),
                begun: r.begun,
            }),
        }
    }

    /// The worker in this image's table, its deadlines made absolute from `now`.
    pub fn adopt(self, now: Instant) -> Worker {
        let state = match self.state {
            HandedState::Starting => WorkerState::Starting,
            HandedState::Ready => WorkerState::Ready,
            HandedState::Stopping { kill_in } => WorkerState::Stopping {
                kill_at: now + kill_in,
                killed: false,
            },
            HandedState::Killed => WorkerState::Stopping {
                kill_at: now,
                killed: true,
            },
        };
        Worker {
            id: self.id,
            generation: self.generation,
            pid: self.pid,
            state,
            started: now.checked_sub(self.age).unwrap_or(now),
            respawned: self.respawned,
            status: None,
            unobservable: false,
            recycle: self.recycle.map(|r| Recycle {
                reason: r.reason,
                begun: r.begun,
            }),
        }
    }
}

/// A listening socket crossing the exec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedListener {
    pub fd: RawFd,
    /// Handed to the master by the service manager (so not stored in its fd store).
    pub handed_over: bool,
    /// Its LISTEN_FDNAMES name.
    pub name: String,
}

impl HandedListener {
    pub fn of(listener: &Listener) -> HandedListener {
        HandedListener {
            fd: listener.as_fd().as_raw_fd(),
            handed_over: listener.was_handed_over(),
            name: listener.name.clone(),
        }
    }

    pub fn adopt(&self) -> Result<Listener, MasterError> {
        Listener::adopt(self.fd, self.handed_over, self.name.clone())
    }
}

/// The notify or control socket crossing the exec, with the path it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedSocket {
    pub fd: RawFd,
    pub path: PathBuf,
}

/// A control client waiting for the outcome of the reload that made `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandedWaiter {
    pub fd: RawFd,
    pub generation: u64,
}

/// Everything the new image needs to go on where the old one stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct Handover {
    /// The process it is meant for: one inherited by another is stale.
    pub pid: u32,
    pub current: u64,
    pub latest: u64,
    pub serving: Option<u64>,
    pub desired: usize,
    /// The reload to carry out once adopted: chain or not.
    pub reload_chain: bool,
    pub listeners: Vec<HandedListener>,
    pub notify: Option<HandedSocket>,
    pub control: Option<HandedSocket>,
    pub waiters: Vec<HandedWaiter>,
    pub workers: Vec<HandedWorker>,
}

/// The envelope on the wire: the version first, so that a reader can refuse a newer
/// one by its number rather than by what it fails to parse.
#[derive(Serialize)]
struct Envelope<'a> {
    protocol: u32,
    handover: &'a Handover,
}

#[derive(Deserialize)]
struct Version {
    protocol: u32,
}

#[derive(Deserialize)]
struct Sealed {
    handover: Handover,
}

/// A handover that cannot be read: the new image refuses to start from it.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// A first-version (text) handover with a line this binary cannot read.
    #[error("cannot read the re-exec handover (line {line}): {reason}")]
    Legacy {
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Neither a first-version handover nor JSON of a later one.
    #[error("cannot read the re-exec handover: {0}")]
    Json(#[source] serde_json::Error),
    /// A handover newer than this binary reads.
    #[error("the re-exec handover is version {found}; this binary reads up to {HANDOVER_VERSION}")]
    Version {
        /// The version it says it is.
        found: u32,
    },
}

impl Handover {
    /// The handover as a binary that reads up to `version` reads it.
    pub fn encode(&self, version: u32) -> Result<String, serde_json::Error> {
        if version < 2 {
            return Ok(legacy::encode(self));
        }
        serde_json::to_string(&Envelope {
            protocol: HANDOVER_VERSION,
            handover: self,
        })
    }

    /// Reads a handover of any version this binary knows.
    pub fn decode(text: &str) -> Result<Handover, HandoverError> {
        // Ours is an object: anything else is text (the first version, or another).
        if !text.starts_with('{') {
            return legacy::decode(text);
        }
        let Version { protocol } = serde_json::from_str(text).map_err(HandoverError::Json)?;
        if protocol > HANDOVER_VERSION {
            return Err(HandoverError::Version { found: protocol });
        }
        let sealed: Sealed = serde_json::from_str(text).map_err(HandoverError::Json)?;
        Ok(sealed.handover)
    }
}

/// Reads (and removes) the handover a previous image of this process left in the
/// environment. One left for another pid is stale (inherited by accident) and ignored.
pub(crate) fn take_handover() -> Result<Option<Handover>, MasterError> {
    let Some(text) = std::env::var_os(REEXEC_VARIABLE) else {
        return Ok(None);
    };
    std::env::remove_var(REEXEC_VARIABLE);
    let handover = Handover::decode(&text.to_string_lossy()).map_err(MasterError::BadHandover)?;
    if handover.pid != std::process::id() {
        warn!(
            pid = handover.pid,
            "ignored a re-exec handover meant for another process"
        );
        return Ok(None);
    }
    Ok(Some(handover))
}

/// A pid as the number the kernel gave it.
mod raw_pid {
    use nix::unistd::Pid;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(pid: &Pid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(pid.as_raw())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Pid, D::Error> {
        i32::deserialize(deserializer).map(Pid::from_raw)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One of each: every worker state, a path with a space, waiters.
    pub(crate) fn sample() -> Handover {
        let worker = |id, state| HandedWorker {
            id,
            generation: 3,
            pid: Pid::from_raw(100 + id as i32),
            state,
            age: Duration::from_millis(1500),
            respawned: id % 2 == 0,
            recycle: (id == 2).then(|| HandedRecycle {
                reason: "rss 600 MB > 512 MB".into(),
                begun: false,
            }),
        };
        Handover {
            pid: 42,
            current: 3,
            latest: 4,
            serving: Some(3),
            desired: 2,
            reload_chain: true,
            listeners: vec![
                HandedListener {
                    fd: 3,
                    handed_over: false,
                    name: "web".into(),
                },
                HandedListener {
                    fd: 4,
                    handed_over: true,
                    name: "admin".into(),
                },
            ],
            notify: Some(HandedSocket {
                fd: 5,
                path: "/run/steward/app/steward.42.notify".into(),
            }),
            control: Some(HandedSocket {
                fd: 6,
                path: "/run/with space/control.sock".into(),
            }),
            waiters: vec![HandedWaiter {
                fd: 7,
                generation: 4,
            }],
            workers: vec![
                worker(1, HandedState::Starting),
                worker(2, HandedState::Ready),
                worker(
                    3,
                    HandedState::Stopping {
                        kill_in: Duration::from_millis(2500),
                    },
                ),
                worker(4, HandedState::Killed),
            ],
        }
    }

    #[test]
    fn a_handover_reads_back_as_written() {
        let handover = sample();
        let text = handover.encode(HANDOVER_VERSION).unwrap();
        assert!(text.starts_with(r#"{"protocol":2,"#), "{text}");
        assert_eq!(Handover::decode(&text).unwrap(), handover);
    }

    #[test]
    fn a_newer_handover_is_refused_by_its_version() {
        let error = Handover::decode(r#"{"protocol":3,"handover":{"whatever":1}}"#).unwrap_err();
        assert!(
            matches!(error, HandoverError::Version { found: 3 }),
            "{error}"
        );
        let error = Handover::decode("{not json").unwrap_err();
        assert!(matches!(error, HandoverError::Json(_)), "{error}");
    }

    /// Deadlines cross as what remains of them, and come back as the same instants.
    #[test]
    fn a_worker_is_adopted_in_the_state_it_was_handed_in() {
        let now = Instant::now();
        let kill_at = now + Duration::from_secs(2);
        for state in [
            WorkerState::Starting,
            WorkerState::Ready,
            WorkerState::Stopping {
                kill_at,
                killed: false,
            },
            WorkerState::Stopping {
                kill_at: now,
                killed: true,
            },
        ] {
            let worker = Worker {
                id: 1,
                generation: 2,
                pid: Pid::from_raw(7),
                state,
                started: now - Duration::from_secs(1),
                respawned: true,
                status: None,
                unobservable: false,
                recycle: Some(Recycle {
                    reason: "asked: 1000 requests".into(),
                    begun: true,
                }),
            };
            let adopted = HandedWorker::of(&worker, now).adopt(now);
            let recycle = adopted
                .recycle
                .as_ref()
                .expect("the pending recycle is kept");
            assert_eq!(
                (recycle.reason.as_str(), recycle.begun),
                ("asked: 1000 requests", true)
            );
            assert_eq!(adopted.state, state);
            assert_eq!(adopted.started, worker.started);
            assert_eq!(
                (adopted.id, adopted.generation, adopted.pid),
                (1, 2, worker.pid)
            );
            assert!(adopted.respawned);
        }
    }
}
