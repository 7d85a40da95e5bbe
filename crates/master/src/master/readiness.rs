//! Readiness that needs no cooperation: while a worker starts under `auto` or
//! `listening`, the loop looks every [`PROBE_EVERY`] whether it (or a descendant) waits
//! for connections on one of its sockets (steward-probe), and tells the supervisor. It
//! looks only while some worker starts: an idle master arms no timer for it.

use std::{
    os::fd::AsFd,
    time::{Duration, Instant},
};

use nix::unistd::Pid;
use steward_probe::{socket_inode, Observation, Probe};
use tracing::{info, warn};

use super::{Master, TimerKey};
use crate::{listen::Listener, supervisor::Event, supervisor::WorkerState};

/// How often starting workers are looked at: a reload waits at most this long past the
/// moment the new worker waits for connections (with up to [`PROBE_BUDGET`] starting).
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// Every this many passes (half a second), a look also asks whether a worker holds a
/// connection it accepted (a busy server, seldom caught waiting): that look reads the
/// host's connection tables, too costly for every pass.
const SERVING_EVERY: u64 = 25;

/// Workers looked at per pass, at most. A look costs about 40 µs, so a pass stays near
/// 2.5 ms and the loop keeps serving signals and clients while 1,024 workers start; each
/// of them is then looked at every ceil(starting / budget) passes, in turn.
const PROBE_BUDGET: usize = 64;

/// The probe over the master's sockets, and what was already said about it.
#[derive(Debug)]
pub(super) struct Watch {
    probe: Option<Probe>,
    /// /proc refused a look: said once, then each worker falls back to its timer.
    denied_said: bool,
    /// A READY=1 came before its worker waited for connections: said once.
    early_ready_said: bool,
    /// Where the next pass starts among the starting workers, when more than
    /// [`PROBE_BUDGET`] start.
    cursor: usize,
    /// Passes so far: every [`SERVING_EVERY`]th also looks for accepted connections.
    passes: u64,
}

impl Watch {
    pub fn new(listeners: &[Listener]) -> Watch {
        let inodes: Vec<u64> = listeners
            .iter()
            .filter_map(|l| socket_inode(l.as_fd()).ok())
            .collect();
        Watch {
            probe: (!inodes.is_empty()).then(|| Probe::new(inodes)),
            denied_said: false,
            early_ready_said: false,
            cursor: 0,
            passes: 0,
        }
    }
}

impl Master {
    /// The starting workers whose readiness is still to be seen.
    fn watched_workers(&self) -> impl Iterator<Item = Pid> + '_ {
        let watching = self.probe.probe.is_some() && self.supervisor.wants_listening_observed();
        self.supervisor
            .workers()
            .iter()
            .filter(move |w| watching && w.state == WorkerState::Starting && !w.unobservable)
            .map(|w| w.pid)
    }

    /// Arms the next look while a worker starts; an idle master arms nothing.
    pub(super) fn schedule_probe(&mut self, now: Instant) {
        if self.timers.is_armed(TimerKey::Probe) || self.watched_workers().next().is_none() {
            return;
        }
        self.timers.arm(TimerKey::Probe, now + PROBE_EVERY);
    }

    /// Under `auto`, READY=1 makes a starting worker ready. One that sends it before it
    /// waits for connections (gunicorn's arbiter says READY=1 before its workers have
    /// imported the app) is named once, with the mode that waits for the sockets.
    pub(super) fn look_at_early_ready(&mut self, pid: Pid) {
        let starting = self.watched_workers().any(|watched| watched == pid);
        let (Some(probe), false, true) = (&self.probe.probe, self.probe.early_ready_said, starting)
        else {
            return;
        };
        if probe.check(pid) == Observation::NotYet {
            self.probe.early_ready_said = true;
            warn!(event = crate::events::READY_BEFORE_LISTENING, pid = %pid, command = %self.launch.display(),
                "the worker sent READY=1 before it waits for connections on its sockets; it counts as ready now (ready = auto). If its app is still loading then, make it say READY=1 once loaded (gunicorn: --preload) or set ready = listening");
        }
    }

    /// Looks at up to [`PROBE_BUDGET`] starting workers, in turn.
    pub(super) fn probe_starting(&mut self) {
        let watched: Vec<Pid> = self.watched_workers().collect();
        let start = self.probe.cursor % watched.len().max(1);
        let turn: Vec<Pid> = watched
            .iter()
            .cycle()
            .skip(start)
            .take(watched.len().min(PROBE_BUDGET))
            .copied()
            .collect();
        self.probe.cursor = start + turn.len();
        self.probe.passes += 1;
        let serving = self.probe.passes % SERVING_EVERY == 0;
        for pid in turn {
            let Some(probe) = &self.probe.probe else {
                return;
            };
            let seen = if serving {
                probe.check_serving(pid)
            } else {
                probe.check(pid)
            };
            match seen {
                Observation::Waiting { pid: waiter, how } => {
                    if waiter != pid {
                        info!(pid = %pid, descendant = %waiter, how = %how, "a descendant of the worker waits for connections");
                    }
                    let how = how.name();
                    self.dispatch(Event::Listening { pid, how });
                }
                Observation::Denied => {
                    if !self.probe.denied_said {
                        self.probe.denied_said = true;
                        warn!(pid = %pid, "cannot see whether workers wait for connections (/proc refused the look); readiness falls back to time alive");
                    }
                    self.dispatch(Event::Unobservable { pid });
                }
                Observation::NotYet | Observation::Gone => {}
            }
        }
    }
}
