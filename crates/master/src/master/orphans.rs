//! Children the master did not start: it is a child subreaper (PR_SET_CHILD_SUBREAPER),
//! so what a worker or a mule leaves behind (a child in its own process group or
//! session, which the stop signal to the worker's group never reached) is reparented
//! here instead of to init, and, as PID 1 of a container, so is every orphan of the pid
//! namespace. All of them are reaped, so none stays a zombie.
//!
//! Which orphans are stopped is told by when they started. One that started while a
//! hook ran (a daemon an `exec:` hook started) is the hook's to keep: it is reaped when
//! it exits, never stopped, as it was before steward reaped anything. Any other, found
//! after a reap (a worker, a mule or another orphan exited), was left behind by a
//! worker or a mule: it is stopped as a worker is, with the worker stop signal and
//! SIGKILL after `worker-reload-mercy` (SIGKILL at once in a brutal shutdown), and the
//! shutdown waits for it.
//! Reaped orphans cannot be mistaken for another process: a child's pid is not reused
//! until its parent, here, has reaped it.

use std::{collections::BTreeMap, time::Instant};

use nix::{
    errno::Errno,
    sys::{
        prctl,
        signal::{kill, killpg, Signal},
        wait::WaitStatus,
    },
    time::{clock_gettime, ClockId},
    unistd::{getpgid, getpid, sysconf, Pid, SysconfVar},
};
use steward_hooks::Phase;
use tracing::{debug, info, warn};

use super::{describe_exit, Master, TimerKey};
use crate::events;

/// The orphans seen so far, by pid, until they are reaped.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    known: BTreeMap<Pid, Orphan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Orphan {
    /// Left by a hook, or here before the loop started: reaped when it exits.
    Kept,
    /// Left by a worker or a mule: asked to stop; SIGKILL at `kill_at` unless `killed`.
    Stopping { kill_at: Instant, killed: bool },
}

impl Orphans {
    /// Whether an orphan the master stopped has yet to exit.
    pub(super) fn stopping(&self) -> bool {
        self.known
            .values()
            .any(|o| matches!(o, Orphan::Stopping { .. }))
    }

    /// When the next stopping orphan is due for SIGKILL.
    fn next_kill(&self) -> Option<Instant> {
        self.known
            .values()
            .filter_map(|o| match o {
                Orphan::Stopping {
                    kill_at,
                    killed: false,
                } => Some(*kill_at),
                _ => None,
            })
            .min()
    }
}

impl Master {
    /// Makes the master the reaper of its descendants, once the start phases ran (what
    /// they left running is no business of the master's: it goes to init as before).
    pub(super) fn become_subreaper(&mut self) {
        if let Err(errno) = prctl::set_child_subreaper(true) {
            warn!(error = %errno, "cannot become a child subreaper: children the workers leave behind go to init");
        }
        if getpid().as_raw() == 1 {
            info!("running as pid 1: every orphan of this pid namespace is reaped here");
        }
        if !proc_is_ours(getpid()) {
            warn!("/proc is another pid namespace's (mount proc in the jail): what workers leave behind is reaped, not stopped");
        }
        // What is here already (a re-exec'd image's orphans) is kept.
        self.keep_orphans(Some(0));
    }

    /// Before the hooks of `phase` run: when they start (None when the phase has no
    /// hook: it starts nothing to keep).
    pub(super) fn hooks_start(&self, phase: Phase) -> Option<u64> {
        self.hooks.has(phase).then(clock_ticks)
    }

    /// Before touched files' hooks run: when they start, if there are any.
    pub(super) fn touch_hooks_start(&self) -> Option<u64> {
        (!self.hooks.touch_hooks().is_empty()).then(clock_ticks)
    }

    /// After hooks ran (they started at `since`, [`Master::hooks_start`]): the orphans
    /// that started since are theirs, kept (reaped, never stopped).
    pub(super) fn keep_orphans(&mut self, since: Option<u64>) {
        let Some(since) = since else {
            return;
        };
        for pid in self.unknown_children() {
            if !self.orphans.known.contains_key(&pid) && started_at(pid).is_some_and(|t| t >= since)
            {
                self.orphans.known.insert(pid, Orphan::Kept);
            }
        }
    }

    /// After a reap: every child the master did not start and has not seen before was
    /// left behind by what exited, and is stopped as a worker is.
    pub(super) fn stop_leftovers(&mut self, now: Instant) {
        let brutal = self.stopping_brutally();
        let mercy = self.supervisor.settings().mercy;
        let signal = if brutal {
            Signal::SIGKILL
        } else {
            Signal::try_from(self.options.worker_stop_signal.number()).unwrap_or(Signal::SIGTERM)
        };
        for pid in self.unknown_children() {
            if self.orphans.known.contains_key(&pid) {
                continue;
            }
            info!(event = events::ORPHAN_STOPPING, pid = %pid, signal = %signal,
                "stopping a process left behind by a worker or mule");
            signal_orphan(pid, signal);
            let orphan = Orphan::Stopping {
                kill_at: now + mercy,
                killed: brutal,
            };
            self.orphans.known.insert(pid, orphan);
        }
        self.arm_orphan_kill();
    }

    /// A shutdown began: a brutal one kills the orphans still draining.
    pub(super) fn orphans_at_shutdown(&mut self, now: Instant) {
        if self.stopping_brutally() {
            self.kill_orphans(|_| true);
        }
        self.stop_leftovers(now);
    }

    /// SIGKILL for the orphans past their mercy.
    pub(super) fn kill_late_orphans(&mut self, now: Instant) {
        // Only children can be waited for: a pid that is not one any more (it was
        // reaped unseen) must not hold the shutdown.
        let alive = children();
        self.orphans.known.retain(|pid, _| alive.contains(pid));
        self.kill_orphans(|kill_at| kill_at <= now);
        self.arm_orphan_kill();
    }

    /// A reaped child that is neither a worker, a mule nor the upgrade check.
    pub(super) fn orphan_reaped(&mut self, pid: Pid, status: &WaitStatus) {
        let how = describe_exit(status);
        match self.orphans.known.remove(&pid) {
            Some(Orphan::Stopping { .. }) => {
                info!(event = events::ORPHAN_EXITED, pid = %pid, status = %how, "a process left behind exited")
            }
            _ => {
                debug!(event = events::ORPHAN_EXITED, pid = %pid, status = %how, "reaped an orphan")
            }
        }
        self.arm_orphan_kill();
    }

    fn kill_orphans(&mut self, due: impl Fn(Instant) -> bool) {
        for (pid, orphan) in &mut self.orphans.known {
            if let Orphan::Stopping {
                kill_at,
                killed: false,
            } = *orphan
            {
                if due(kill_at) {
                    warn!(event = events::ORPHAN_KILLED, pid = %pid, "a process left behind did not stop; killing it");
                    signal_orphan(*pid, Signal::SIGKILL);
                    *orphan = Orphan::Stopping {
                        kill_at,
                        killed: true,
                    };
                }
            }
        }
    }

    fn arm_orphan_kill(&mut self) {
        match self.orphans.next_kill() {
            Some(at) => self.timers.arm(TimerKey::Orphans, at),
            None => self.timers.disarm(TimerKey::Orphans),
        }
    }

    fn stopping_brutally(&self) -> bool {
        matches!(
            self.supervisor.lifecycle(),
            crate::Lifecycle::Stopping { graceful: false }
        )
    }

    /// The master's children that are not its workers, mules or upgrade check.
    fn unknown_children(&self) -> Vec<Pid> {
        let check = self.upgrade.as_ref().map(|pending| pending.check.pid);
        children()
            .into_iter()
            .filter(|pid| Some(*pid) != check)
            .filter(|pid| self.supervisor.workers().iter().all(|w| w.pid != *pid))
            .filter(|pid| self.supervisor.mule(*pid).is_none())
            .collect()
    }
}

/// The stop signal to an orphan: to its process group when it leads one (its own
/// children hear it too, as a worker's do), else to it alone.
fn signal_orphan(pid: Pid, signal: Signal) {
    let result = match getpgid(Some(pid)) {
        Ok(group) if group == pid => killpg(pid, signal),
        _ => kill(pid, signal),
    };
    match result {
        // ESRCH: it has exited and awaits reaping.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => {
            warn!(pid = %pid, signal = %signal, error = %errno, "cannot signal a process left behind")
        }
    }
}

/// This thread's children, living or zombie (the master has one thread: its
/// children), from /proc/thread-self/children, or by a scan of /proc where the kernel
/// lacks that file. None when /proc is another pid namespace's (`unshare = pid` with no
/// /proc mounted in the jail): its pids are not this namespace's, and signalling them
/// would hit other processes or none; orphans are then reaped, never stopped.
fn children() -> Vec<Pid> {
    let me = getpid();
    if !proc_is_ours(me) {
        return Vec::new();
    }
    let listed = std::fs::read_to_string("/proc/thread-self/children");
    if let Ok(list) = listed {
        return list
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok().map(Pid::from_raw))
            .collect();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me.as_raw()))
        .map(Pid::from_raw)
        .collect()
}

/// Whether /proc shows this pid namespace: /proc/self names this process by its pid.
fn proc_is_ours(me: Pid) -> bool {
    std::fs::read_link("/proc/self").is_ok_and(|link| link.as_os_str() == me.to_string().as_str())
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat, from the 3rd on (after the
/// command name, which may hold spaces and parentheses: the last `)` ends it).
fn stat_field(pid: i32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// The parent pid of `pid`.
fn parent_of(pid: i32) -> Option<i32> {
    stat_field(pid, 4).and_then(|ppid| i32::try_from(ppid).ok())
}

/// When `pid` started, in clock ticks since boot (proc(5) `starttime`).
fn started_at(pid: Pid) -> Option<u64> {
    stat_field(pid.as_raw(), 22)
}

/// Now, in the clock ticks since boot of [`started_at`]: taken before a hook runs.
fn clock_ticks() -> u64 {
    let ticks_per_second = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |t| t as u64);
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |now| {
        now.tv_sec() as u64 * ticks_per_second
            + now.tv_nsec() as u64 * ticks_per_second / 1_000_000_000
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_of_this_process_is_listed() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        assert!(children().contains(&pid));
        assert_eq!(parent_of(pid.as_raw()), Some(getpid().as_raw()));
        let started = started_at(pid).unwrap();
        assert!(started <= clock_ticks() && started + 500 > clock_ticks());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
