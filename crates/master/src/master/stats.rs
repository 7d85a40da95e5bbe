//! The loop's side of the stats: the status document built from the supervisor and
//! /proc when a client asks (never otherwise), the stats connections served, their
//! deadline, and the counting of restarts and reloads.

use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;

use super::{Master, TimerKey};
use crate::{
    event::Token,
    stats::{
        procfs,
        schema::{self, Checking, LastReload, Process, Reloading, Socket, Status, WorkerStatus},
        server::{Asked, Render},
    },
    supervisor::WorkerState,
};

/// Renders what a stats client asks for, from a document built once per loop pass.
struct Renderer<'a> {
    master: &'a Master,
    status: Option<Status>,
}

impl Render for Renderer<'_> {
    fn render(&mut self, asked: Asked) -> (u16, Vec<u8>) {
        // The probes read the supervisor only: no /proc, whatever their rate.
        let ready = self.master.supervisor.ready();
        match asked {
            Asked::Alive => return (200, b"alive\n".to_vec()),
            Asked::Ready if ready => return (200, b"ready\n".to_vec()),
            Asked::Ready => return (503, b"not ready\n".to_vec()),
            Asked::Json | Asked::Metrics => {}
        }
        let status = self
            .status
            .get_or_insert_with(|| self.master.status_document());
        let body = match asked {
            Asked::Metrics => crate::stats::prometheus::text(status).into_bytes(),
            _ => crate::stats::uwsgi::document(status)
                .to_string()
                .into_bytes(),
        };
        (200, body)
    }
}

impl Master {
    /// A stats connection is waiting, or a client is readable or writable.
    pub(super) fn on_stats(&mut self, token: Token) {
        let Some(mut server) = self.clients.stats.server.take() else {
            return;
        };
        let mut renderer = Renderer {
            master: self,
            status: None,
        };
        match token {
            Token::Stats(id) => server.on_connection(id, &self.registry, &mut renderer),
            _ => server.accept(&self.registry, &mut renderer, Instant::now()),
        }
        self.clients.stats.server = Some(server);
        self.arm_stats_timer();
    }

    /// Closes the stats connections past their deadline.
    pub(super) fn expire_stats(&mut self, now: Instant) {
        if let Some(server) = self.clients.stats.server.as_mut() {
            server.expire(&self.registry, now);
        }
        self.arm_stats_timer();
    }

    /// Armed only while a connection is open: an idle master has no stats timer.
    fn arm_stats_timer(&mut self) {
        let next = self
            .clients
            .stats
            .server
            .as_ref()
            .and_then(|s| s.next_deadline());
        match next {
            Some(at) => self.timers.arm(TimerKey::Stats, at),
            None => self.timers.disarm(TimerKey::Stats),
        }
    }

    /// At exit: the unix socket file steward made for the stats goes.
    pub(super) fn remove_stats_socket(&self) {
        if let Some(path) = self.clients.stats.server.as_ref().and_then(|s| s.path()) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A worker exited: counted when nobody asked it to stop, or when it was
    /// replaced by recycling.
    pub(super) fn count_exit(&mut self, status: &WaitStatus) {
        let Some(pid) = status.pid() else { return };
        let Some(w) = self.supervisor.workers().iter().find(|w| w.pid == pid) else {
            return;
        };
        if !w.is_stopping() {
            self.clients.stats.counters.ended_unasked(w.id, status);
        } else if w.recycle.is_some() {
            self.clients.stats.counters.restarts.recycle += 1;
        }
    }

    /// The status document: schema version [`schema::SCHEMA`].
    pub(crate) fn status_document(&self) -> Status {
        let now = Instant::now();
        let ms = |d: Duration| d.as_millis() as u64;
        let supervisor = &self.supervisor;
        let counters = &self.clients.stats.counters;
        let mut workers: Vec<WorkerStatus> = supervisor
            .workers()
            .iter()
            .map(|w| WorkerStatus {
                id: w.id,
                generation: w.generation,
                pid: w.pid.as_raw(),
                state: w.state.name().to_owned(),
                age_ms: ms(w.started.elapsed()),
                waiting_for: (w.state == WorkerState::Starting).then(|| supervisor.waiting_for(w)),
                status: w.status.clone(),
                respawns: counters.respawns(w.id),
                recycle: w.recycle.as_ref().map(|r| schema::Recycle {
                    reason: r.reason.clone(),
                    replacement_started: r.begun,
                }),
                process: process(&w.pid.to_string(), false),
            })
            .collect();
        workers.sort_by_key(|w| (w.id, w.generation));
        Status {
            schema: schema::SCHEMA,
            pid: std::process::id(),
            state: crate::status::lifecycle_name(supervisor.lifecycle()).to_owned(),
            ready: supervisor.ready(),
            shutdown_in_ms: supervisor
                .shutdown_at()
                .map(|at| ms(at.saturating_duration_since(now))),
            generation: supervisor.current(),
            serving: supervisor.serving(),
            serving_workers: supervisor.ready_workers(),
            workers_wanted: supervisor.desired(),
            workers_bounds: supervisor
                .settings()
                .bounds
                .map(|(fewest, most)| schema::WorkerBounds { fewest, most }),
            ready_mode: supervisor.settings().ready.to_string(),
            reloading: supervisor.reload().map(|r| Reloading {
                generation: r.generation,
                elapsed_ms: ms(now.saturating_duration_since(r.started)),
            }),
            checking_binary: supervisor.checking_since().map(|since| Checking {
                elapsed_ms: ms(now.saturating_duration_since(since)),
            }),
            last_reload: self.clients.last_reload.as_ref().map(|last| LastReload {
                generation: last.generation,
                ok: last.result.is_ok(),
                elapsed_ms: last.result.as_ref().ok().map(|d| ms(*d)),
                error: last.result.as_ref().err().cloned(),
            }),
            reloads: counters.reloads(),
            restarts: counters.restarts.clone(),
            master: process("self", true),
            sockets: self.listeners.iter().map(socket).collect(),
            listen_overflows: procfs::listen_overflows(),
            workers,
            respawning: supervisor
                .respawning()
                .into_iter()
                .map(|(id, crashes, exit, at)| schema::Respawning {
                    id,
                    crashes_in_a_row: crashes,
                    last_exit: exit,
                    starts_in_ms: ms(at.saturating_duration_since(now)),
                })
                .collect(),
        }
    }
}

fn process(pid: &str, fds: bool) -> Process {
    let usage = procfs::usage(pid).unwrap_or_default();
    Process {
        rss_bytes: usage.rss_bytes,
        vsz_bytes: usage.vsz_bytes,
        cpu_seconds: usage.cpu_seconds,
        started_at: usage.started_at,
        open_fds: fds.then(procfs::open_fds).flatten().map(|n| n as u64),
    }
}

fn socket(listener: &crate::listen::Listener) -> Socket {
    let queue = steward_sys::accept_queue(std::os::fd::AsFd::as_fd(listener));
    Socket {
        name: listener.name.clone(),
        address: listener.description.clone(),
        queue: queue.map(|q| q.queued),
        backlog: queue.map(|q| q.backlog),
    }
}
