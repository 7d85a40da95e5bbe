//! What clients ask of the master: requests from the control socket and the master
//! FIFOs, status answers and reports, and the outcome of the reloads they wait for.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Master, TimerKey};
use crate::{
    control::{ConnectionId, ControlRequest},
    events,
    fifo::FifoCommand,
    status::{ReloadOutcome, StatusReport},
    supervisor::{Event, Worker, WorkerState},
};

impl Master {
    pub(super) fn on_control(&mut self) {
        let requests = match self.clients.control.as_mut() {
            Some(control) => control.receive(&self.registry),
            None => return,
        };
        for (connection, request) in requests {
            self.on_request(Some(connection), request);
        }
        self.arm_control_timeout();
    }

    /// Closes the clients that sent no request in time.
    pub(super) fn control_timed_out(&mut self) {
        if let Some(control) = self.clients.control.as_mut() {
            control.expire(&self.registry, std::time::Instant::now());
        }
        self.arm_control_timeout();
    }

    /// Armed while a client has not sent its request: an idle master arms nothing.
    fn arm_control_timeout(&mut self) {
        match self.clients.control.as_ref().and_then(|c| c.next_timeout()) {
            Some(at) => self.timers.arm(TimerKey::ControlTimeout, at),
            None => self.timers.disarm(TimerKey::ControlTimeout),
        }
    }

    pub(super) fn on_fifos(&mut self) {
        let commands: Vec<FifoCommand> = self
            .clients
            .fifos
            .iter_mut()
            .flat_map(|f| f.receive())
            .collect();
        // One warning per read, not per byte: a megabyte written to the FIFO must not
        // become a million lines of log.
        let mut unsupported: Vec<u8> = Vec::new();
        let mut count = 0usize;
        for command in commands {
            match command {
                FifoCommand::Request(request) => self.on_request(None, request),
                FifoCommand::StatusReport => self.report_status(),
                FifoCommand::Unsupported(byte) => {
                    count += 1;
                    if unsupported.len() < 8 && !unsupported.contains(&byte) {
                        unsupported.push(byte);
                    }
                }
                FifoCommand::Ignored => {}
            }
        }
        if count > 0 {
            let command: String = unsupported
                .iter()
                .map(|b| char::from(*b).escape_default().to_string())
                .collect();
            warn!(
                event = events::FIFO_COMMAND_IGNORED,
                command, count, "master FIFO command not supported by steward; ignored"
            );
        }
    }

    fn answer(&mut self, connection: Option<ConnectionId>, line: &str, last: bool) {
        if let (Some(id), Some(control)) = (connection, self.clients.control.as_mut()) {
            control.answer(id, line, last);
        }
    }

    /// A request from the control socket (`connection` is its client) or a FIFO.
    fn on_request(&mut self, connection: Option<ConnectionId>, request: ControlRequest) {
        let from = if connection.is_some() {
            "control socket"
        } else {
            "master FIFO"
        };
        info!(event = events::CONTROL_REQUEST, request = %request, from, "control request");
        match request {
            ControlRequest::Reload { .. }
                if self.supervisor.is_stopping() || self.supervisor.shutdown_at().is_some() =>
            {
                self.answer(connection, "failed: shutting down", true)
            }
            ControlRequest::Reload { chain } => {
                // Answered and registered first: the reload may re-exec the master,
                // which hands the waiting client over to the new image.
                let generation = self.supervisor.next_generation();
                self.answer(
                    connection,
                    &format!("accepted generation={generation}"),
                    false,
                );
                if let Some(id) = connection {
                    self.clients.reload_waiters.push((id, generation));
                }
                self.begin_reload(chain);
            }
            ControlRequest::Stop { brutal } => {
                // The client learns the master is gone when the connection closes at exit.
                self.answer(connection, "accepted", false);
                self.dispatch(Event::Shutdown { graceful: !brutal });
            }
            ControlRequest::Status { json } => {
                let status = self.status(json);
                self.answer(connection, &status, true);
            }
            ControlRequest::Resize { more } => {
                self.dispatch(Event::Resize { more });
                let line = format!("ok workers={}", self.supervisor.desired());
                self.answer(connection, &line, true);
            }
        }
    }

    /// Records how the reload to `generation` ended and answers the control clients
    /// waiting for it (or for an earlier one it superseded).
    pub(super) fn reload_finished(&mut self, generation: u64, result: Result<Duration, String>) {
        let line = match &result {
            Ok(elapsed) => format!(
                "ok generation={generation} elapsed_ms={}",
                elapsed.as_millis()
            ),
            Err(reason) => format!("failed generation={generation}: {reason}"),
        };
        let (answered, waiting) = std::mem::take(&mut self.clients.reload_waiters)
            .into_iter()
            .partition(|(_, waited_for)| *waited_for <= generation);
        self.clients.reload_waiters = waiting;
        if let Some(control) = self.clients.control.as_mut() {
            for (id, _) in answered {
                control.answer(id, &line, true);
            }
        }
        self.clients.stats.counters.reload_finished(&result);
        self.clients.last_reload = Some(ReloadOutcome { generation, result });
    }

    fn sorted_workers(&self) -> Vec<&Worker> {
        let mut workers: Vec<&Worker> = self.supervisor.workers().iter().collect();
        workers.sort_by_key(|w| (w.id, w.generation));
        workers
    }

    /// The state of the master and of every worker, as text lines or one JSON object.
    fn status(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(&self.status_document()).unwrap_or_default();
        }
        let now = Instant::now();
        let workers = self.sorted_workers();
        let waiting_for = workers
            .iter()
            .map(|w| (w.state == WorkerState::Starting).then(|| self.supervisor.waiting_for(w)))
            .collect();
        let report = StatusReport {
            lifecycle: self.supervisor.lifecycle(),
            current: self.supervisor.current(),
            serving: self.supervisor.serving(),
            desired: self.supervisor.desired(),
            shutdown_in: self
                .supervisor
                .shutdown_at()
                .map(|at| at.saturating_duration_since(now)),
            reloading: self
                .supervisor
                .reload()
                .map(|r| (r.generation, now.saturating_duration_since(r.started))),
            last_reload: self.clients.last_reload.as_ref(),
            checking: self
                .supervisor
                .checking_since()
                .map(|since| now.saturating_duration_since(since)),
            workers,
            waiting_for,
            serving_workers: self.supervisor.ready_workers(),
            respawning: self
                .supervisor
                .respawning()
                .into_iter()
                .map(|(id, crashes, exit, at)| {
                    (id, crashes, exit, at.saturating_duration_since(now))
                })
                .collect(),
            cheaper: self
                .supervisor
                .settings()
                .bounds
                .map(|bounds| (bounds, self.queued())),
        };
        report.text()
    }

    pub(super) fn report_status(&self) {
        let serving = self.supervisor.serving();
        info!(
            event = events::STATUS_REPORT,
            lifecycle = %self.supervisor.lifecycle(),
            generation = self.supervisor.current(),
            serving = %serving.map_or("none".to_owned(), |g| g.to_string()),
            workers = self.supervisor.desired(),
            processes = self.supervisor.workers().len(),
            "status"
        );
        for w in self.sorted_workers() {
            info!(
                event = events::STATUS_WORKER,
                worker = w.id,
                generation = w.generation,
                pid = %w.pid,
                state = w.state.name(),
                age_ms = w.started.elapsed().as_millis() as u64,
                status = w.status.as_deref().unwrap_or(""),
                "status of worker"
            );
        }
    }
}
