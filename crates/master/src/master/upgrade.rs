//! The binary upgrade, seen from the loop: the new binary's check runs beside it (its
//! output pipe watched, its deadline a timer), then the master hands its state over and
//! re-execs; a new image takes that state back ([`resumed`]). The supervisor decides
//! when (see [`crate::supervisor::Phase::CheckingUpgrade`]); reexec.rs does the work.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd},
    process::ExitStatus,
    time::Instant,
};

use nix::{sys::wait::WaitStatus, unistd::Pid};
use steward_options::ConfigSources;
use steward_systemd::State;
use tracing::{error, info};

use super::{Master, TimerKey};
use crate::{
    event::Token,
    events,
    reexec::{
        exit_status, CheckChild, HandedListener, HandedSocket, HandedWaiter, HandedWorker, Handover,
    },
    supervisor::{Event, Resumed},
};

/// The new binary's check, running.
#[derive(Debug)]
pub(crate) struct PendingCheck {
    pub check: CheckChild,
    /// Its exit, once reaped; acted on after the signals are read.
    ended: Option<ExitStatus>,
}

impl Master {
    /// Starts the new binary's check; the answer comes when it ends (or at once, an
    /// error, if it could not start).
    pub(super) fn begin_upgrade(&mut self) -> Vec<Event> {
        if self.binary.changed() {
            info!(event = events::UPGRADE_REEXEC, binary = %self.binary.path.display(), "binary changed; re-executing");
        } else {
            info!(binary = %self.binary.path.display(), "preload mode: re-executing, so that the app loads anew");
        }
        match self.binary.start_check(self.options.preload_check_timeout) {
            Ok(check) => {
                info!(event = events::UPGRADE_CHECK_STARTED, pid = %check.pid, "checking the new binary before the re-exec");
                self.notify_systemd(&[State::Status("reloading: checking the new binary".into())]);
                self.watch_check(check);
                Vec::new()
            }
            Err(e) => vec![Event::UpgradeChecked(Err(e.to_string()))],
        }
    }

    fn watch_check(&mut self, check: CheckChild) {
        if let Some(pipe) = check.pipe() {
            let _ = self.registry.add(pipe, Token::UpgradeCheck);
        }
        self.timers.arm(TimerKey::UpgradeCheck, check.deadline);
        self.upgrade = Some(PendingCheck { check, ended: None });
    }

    /// Takes the check off the loop before it is dropped or killed.
    fn unwatch_check(&mut self) -> Option<PendingCheck> {
        let pending = self.upgrade.take()?;
        if let Some(pipe) = pending.check.pipe() {
            self.registry.remove(pipe);
        }
        self.timers.disarm(TimerKey::UpgradeCheck);
        Some(pending)
    }

    pub(super) fn read_check_output(&mut self) {
        let Some(pending) = self.upgrade.as_mut() else {
            return;
        };
        // At its end the pipe closes, which takes it off the epoll set: no forked
        // worker shares it (they close it, see spawn.rs).
        pending.check.read_output();
    }

    /// Whether `pid` is the check's: its exit is kept for [`Master::upgrade_check_ended`].
    pub(super) fn check_exited(&mut self, pid: Pid, status: &WaitStatus) -> bool {
        match self.upgrade.as_mut() {
            Some(pending) if pending.check.pid == pid && pending.ended.is_none() => {
                pending.ended = Some(exit_status(status));
                true
            }
            _ => false,
        }
    }

    /// Acts on the end of the check: the next stage of it, or the verdict.
    pub(super) fn upgrade_check_ended(&mut self) {
        if self.upgrade.as_ref().is_none_or(|p| p.ended.is_none()) {
            return;
        }
        let Some(PendingCheck { check, ended }) = self.unwatch_check() else {
            return;
        };
        let status = ended.expect("checked above");
        match self.binary.check_ended(check, status) {
            Ok(Some(next)) => self.watch_check(next),
            Ok(None) => self.dispatch(Event::UpgradeChecked(Ok(()))),
            Err(e) => self.dispatch(Event::UpgradeChecked(Err(e.to_string()))),
        }
    }

    /// The check ran out of time: killed, and refused.
    pub(super) fn upgrade_check_timed_out(&mut self) {
        let Some(PendingCheck { check, .. }) = self.unwatch_check() else {
            return;
        };
        let e = self.binary.check_timed_out(check);
        self.dispatch(Event::UpgradeChecked(Err(e.to_string())));
    }

    /// A shutdown came while the check runs.
    pub(super) fn kill_upgrade_check(&mut self) {
        if let Some(PendingCheck { check, .. }) = self.unwatch_check() {
            info!(event = events::UPGRADE_CHECK_STOPPED, pid = %check.pid, "shutdown: stopping the new binary's check");
            check.kill();
        }
    }

    /// Re-execs the master from the new binary, whose checks passed, which carries out
    /// this reload. Returns only if it did not happen, the old image going on as it was.
    pub(super) fn upgrade(&mut self, chain: bool) {
        let handover = self.handover(chain);
        let mut keep: Vec<BorrowedFd<'_>> = self.listeners.iter().map(|l| l.as_fd()).collect();
        keep.push(self.notify.as_fd());
        if let Some(control) = &self.clients.control {
            keep.push(control.listener_fd());
            keep.extend(
                self.clients
                    .reload_waiters
                    .iter()
                    .filter_map(|(id, _)| control.connection_fd(*id)),
            );
        }
        let failure = self.binary.exec(&handover, &self.options, &keep);
        error!(event = events::UPGRADE_REFUSED, error = %failure, "re-exec failed; reloading with the running binary");
    }

    /// What the new image needs to take over.
    fn handover(&self, chain: bool) -> Handover {
        // The new image reads the file itself, so it cannot tell a `workers` changed in
        // it from one it always had (and SIGTTIN/SIGTTOU may have moved since): the
        // change comes in the handover, as a reload by this image would apply it.
        let desired = match self.config_sources.as_ref().map(ConfigSources::load) {
            Some(Ok(config)) if config.options.workers != self.options.workers => {
                config.options.workers
            }
            _ => self.supervisor.desired(),
        };
        let now = Instant::now();
        let control = self.clients.control.as_ref();
        Handover {
            pid: std::process::id(),
            current: self.supervisor.current(),
            latest: self.supervisor.latest(),
            serving: self.supervisor.serving(),
            desired,
            reload_chain: chain,
            listeners: self.listeners.iter().map(HandedListener::of).collect(),
            notify: Some(HandedSocket {
                fd: self.notify.as_fd().as_raw_fd(),
                path: self.notify.path().to_owned(),
            }),
            control: control.map(|c| HandedSocket {
                fd: c.listener_fd().as_raw_fd(),
                path: c.path().to_owned(),
            }),
            waiters: self
                .clients
                .reload_waiters
                .iter()
                .filter_map(|(id, generation)| {
                    let fd = control?.connection_fd(*id)?.as_raw_fd();
                    Some(HandedWaiter {
                        fd,
                        generation: *generation,
                    })
                })
                .collect(),
            workers: self
                .supervisor
                .workers()
                .iter()
                .map(|w| HandedWorker::of(w, now))
                .collect(),
        }
    }
}

/// The workers and generations of a previous image of this process, as the supervisor
/// takes them back.
pub(super) fn resumed(handover: &Handover) -> Resumed {
    let now = Instant::now();
    let workers = handover
        .workers
        .iter()
        .cloned()
        .map(|w| w.adopt(now))
        .collect();
    Resumed {
        workers,
        current: handover.current,
        latest: handover.latest,
        serving: handover.serving,
        desired: handover.desired,
    }
}
