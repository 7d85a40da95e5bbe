//! Starting workers: an exec'd worker is forked and its exec confirmed later, so that
//! the execs of a batch overlap; a forked worker (preload mode) runs at once.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::{sys::signal::Signal, unistd::Pid};
use steward_hooks::Phase;
use steward_options::WorkerOutput;
use steward_sys::{fork_worker, spawn_unconfirmed, ChildFds, Unconfirmed};
use tracing::warn;

use super::{Launch, Master};
use crate::{
    event::Token, output::Writer, preload::WorkerIdentity, procname, supervisor::Event,
    supervisor::SpawnRequest, MasterError,
};

/// How many exec'd workers are forked before their execs are confirmed: enough for the
/// execs to overlap, few enough that the report pipes stay far below the descriptor limit.
const CONFIRM_BATCH: usize = 64;

impl Master {
    /// Starts `requests`; one event each: started, or why not.
    pub(super) fn spawn(&mut self, requests: Vec<SpawnRequest>) -> Vec<Event> {
        let mut events = Vec::with_capacity(requests.len());
        let mut forked: Vec<(SpawnRequest, Unconfirmed)> = Vec::new();
        let mut requests = requests.into_iter();
        while let Some(request) = requests.next() {
            let started = match &self.launch {
                Launch::Exec(_) => self.fork_exec(request),
                Launch::Fork(_) => self.fork_closure(request).map(|pid| {
                    events.push(started(request, pid));
                    None
                }),
            };
            match started {
                Ok(Some(child)) => forked.push((request, child)),
                Ok(None) => {}
                Err(e) => {
                    // The workers forked before it are told of first (so that a failed
                    // start stops them, and says so), and no more forks are tried: a
                    // process limit (EAGAIN) would refuse each of them the same way.
                    self.confirm(&mut forked, &mut events);
                    events.push(failed(request, None, e));
                    let reason = "not started: the fork of an earlier worker failed";
                    events.extend(requests.by_ref().map(|r| not_started(r, reason)));
                }
            }
            if forked.len() >= CONFIRM_BATCH {
                self.confirm(&mut forked, &mut events);
            }
        }
        self.confirm(&mut forked, &mut events);
        events
    }

    /// Waits for the exec of every worker in `forked` (they exec side by side); the
    /// failures come after the successes, each with the step that failed.
    fn confirm(&self, forked: &mut Vec<(SpawnRequest, Unconfirmed)>, events: &mut Vec<Event>) {
        let mut failures = Vec::new();
        for (request, child) in forked.drain(..) {
            let pid = child.pid();
            match child.confirm() {
                Ok(pid) => events.push(started(request, pid)),
                Err(source) => {
                    let e = MasterError::Spawn {
                        id: request.id,
                        command: self.launch.display(),
                        source,
                    };
                    failures.push(failed(request, Some(pid), e));
                }
            }
        }
        events.extend(failures);
    }

    fn fork_exec(&mut self, request: SpawnRequest) -> Result<Option<Unconfirmed>, MasterError> {
        let output = self.open_output()?;
        let Launch::Exec(command) = &mut self.launch else {
            unreachable!("fork_exec is for exec mode");
        };
        let title = procname::worker_title(&self.options, request.id);
        let sockets: Vec<BorrowedFd<'_>> = self.listeners.iter().map(|l| l.as_fd()).collect();
        let fds = ChildFds {
            stdin: (!self.options.honour_stdin).then(|| self.dev_null.as_fd()),
            output: output.as_ref().map(|(_, write)| write.as_fd()),
            sockets: &sockets,
        };
        let mut plan = command.plan(request.id, request.generation, title.as_deref())?;
        let spawned = spawn_unconfirmed(&mut plan, &fds).map_err(|source| MasterError::Spawn {
            id: request.id,
            command: command.display.clone(),
            source,
        });
        let pid = spawned.as_ref().ok().map(Unconfirmed::pid);
        self.watch_output(output, request, pid);
        spawned.map(Some)
    }

    /// A pipe for the output of a worker about to start, if the master reads it.
    fn open_output(&mut self) -> Result<Option<(usize, OwnedFd)>, MasterError> {
        if self.options.worker_output != WorkerOutput::Capture {
            return Ok(None);
        }
        self.outputs
            .open()
            .map(Some)
            .map_err(MasterError::OutputPipe)
    }

    /// The worker `pid` started with `output` on its stdout and stderr: its lines are
    /// read in the loop from now on. Without a pid, the pipe is closed.
    fn watch_output(
        &mut self,
        output: Option<(usize, OwnedFd)>,
        request: SpawnRequest,
        pid: Option<Pid>,
    ) {
        // The worker's end is the worker's alone from here, so that the end of file
        // comes when it and its children are gone.
        let Some((slot, _write)) = output else {
            return;
        };
        let Some(pid) = pid else {
            self.outputs.close(slot);
            return;
        };
        self.outputs.attach(
            slot,
            Writer {
                id: request.id,
                generation: request.generation,
                pid,
            },
        );
        let registered = self
            .outputs
            .fd(slot)
            .map(|fd| self.registry.add(fd, Token::WorkerOutput(slot)));
        if let Some(Err(errno)) = registered {
            warn!(worker = request.id, pid = %pid, error = %errno, "cannot watch the worker's output; it is not read");
            self.outputs.close(slot);
        }
    }

    /// Forks a worker that runs the closure (preload mode), after its accepting hooks.
    fn fork_closure(&mut self, request: SpawnRequest) -> Result<Pid, MasterError> {
        let SpawnRequest {
            id,
            generation,
            first_time,
        } = request;
        let title = procname::worker_title(&self.options, id);
        let output = self.open_output()?;
        let close = self.master_fds();
        let Launch::Fork(fork) = &mut self.launch else {
            unreachable!("fork_closure is for preload mode");
        };
        fork.check_threads()?;
        let sockets: Vec<BorrowedFd<'_>> = self.listeners.iter().map(|l| l.as_fd()).collect();
        let fds = ChildFds {
            stdin: (!self.options.honour_stdin).then(|| self.dev_null.as_fd()),
            output: output.as_ref().map(|(_, write)| write.as_fd()),
            sockets: &sockets,
        };
        let stop_signal =
            Signal::try_from(self.options.worker_stop_signal.number()).unwrap_or(Signal::SIGTERM);
        let fd_names: Vec<String> = self.listeners.iter().map(|l| l.name.clone()).collect();
        let worker = WorkerIdentity {
            id,
            generation,
            title: title.as_deref(),
            fd_names: &fd_names,
            notify_socket: self.notify.path(),
            watchdog: super::recycle::watchdog_of(&self.options),
        };
        let fork = &*fork;
        let hooks = &self.hooks;
        let forked = fork_worker(&fds, &close, stop_signal, |stop| {
            // In the worker, before it serves (the phases are not fatal).
            for phase in accepting_phases(id, first_time) {
                let _ = hooks.run(phase);
            }
            fork.run_worker(worker, stop, sockets.len())
        })
        .map_err(|source| MasterError::Spawn {
            id,
            command: self.launch.display(),
            source,
        });
        self.watch_output(output, request, forked.as_ref().ok().copied());
        forked
    }

    /// The master's own descriptors, which a forked worker must not hold (exec mode
    /// closes them at exec).
    fn master_fds(&self) -> Vec<RawFd> {
        let mut close: Vec<RawFd> = self
            .listeners
            .iter()
            .map(|l| l.as_fd().as_raw_fd())
            .collect();
        close.push(self.signals.as_fd().as_raw_fd());
        close.push(self.notify.as_fd().as_raw_fd());
        close.push(self.dev_null.as_raw_fd());
        close.push(self.registry.raw_fd());
        if let Some(control) = &self.clients.control {
            close.extend(control.all_fds().iter().map(|fd| fd.as_raw_fd()));
        }
        for fifo in &self.clients.fifos {
            close.extend(fifo.fds().iter().map(|fd| fd.as_raw_fd()));
        }
        close.extend(self.touches.watcher.as_ref().map(|t| t.as_fd().as_raw_fd()));
        close.extend(
            self.upgrade
                .as_ref()
                .and_then(|u| u.check.pipe())
                .map(|fd| fd.as_raw_fd()),
        );
        close.extend(self.made_root.fd());
        close.extend(self.outputs.fds().map(|fd| fd.as_raw_fd()));
        close
    }
}

/// The accepting phases of worker `id`, in order (`first_time`: the -once ones too).
pub(super) fn accepting_phases(id: usize, first_time: bool) -> Vec<Phase> {
    let mut phases = vec![Phase::Accepting];
    if id == 1 {
        phases.push(Phase::Accepting1);
    }
    if first_time {
        phases.push(Phase::AcceptingOnce);
        if id == 1 {
            phases.push(Phase::Accepting1Once);
        }
    }
    phases
}

fn started(request: SpawnRequest, pid: Pid) -> Event {
    Event::Started {
        id: request.id,
        generation: request.generation,
        pid,
    }
}

fn not_started(request: SpawnRequest, reason: &str) -> Event {
    Event::StartFailed {
        id: request.id,
        generation: request.generation,
        pid: None,
        how: reason.to_owned(),
    }
}

fn failed(request: SpawnRequest, pid: Option<Pid>, e: MasterError) -> Event {
    Event::StartFailed {
        id: request.id,
        generation: request.generation,
        pid,
        how: e.to_string(),
    }
}
