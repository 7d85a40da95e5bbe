//! What the loop does for recycling and the worker watchdog (the decisions are in
//! supervisor/recycle.rs and watchdog.rs): it reads a worker's request to be replaced
//! and its heartbeats from its notify datagrams, measures the workers' memory from
//! /proc, and aborts a worker the watchdog caught.
//!
//! A worker's memory is the sum over the worker and its descendants (walked through
//! /proc/PID/task/TID/children), since a worker that forks its own helpers or
//! sub-workers leaks through them too. RSS and AS so summed count a page shared by
//! several processes once per process, as `ps` does; PSS divides shared pages among
//! their users, so its sum is the one that does not overcount, at the price of
//! reading smaps_rollup (read only when a USS or PSS limit is set).

use std::{fs, sync::OnceLock};

use nix::{
    sys::signal::{kill, Signal},
    unistd::{sysconf, Pid, SysconfVar},
};
use steward_systemd::Notification;

use super::Master;
use crate::supervisor::{Event, Memory};

/// The notify assignment by which a worker asks to be replaced; the value says why
/// (`1`, or a reason such as `after 1000 requests`). `X_` is the sd_notify prefix for
/// application fields, which systemd itself ignores.
pub(crate) const RECYCLE_FIELD: &str = "X_STEWARD_RECYCLE";

/// `worker-watchdog`, if set.
pub(super) fn watchdog_of(options: &steward_options::Options) -> Option<std::time::Duration> {
    Some(options.worker_watchdog).filter(|d| !d.is_zero())
}

/// The most processes one worker's measure looks at (the worker and descendants).
const MAX_PROCESSES: usize = 256;

impl Master {
    /// What `message` from worker `sender` says of its lifecycle: a heartbeat
    /// (WATCHDOG=1), that it is wedged (WATCHDOG=trigger), that it wants replacing.
    pub(super) fn on_lifecycle_fields(&mut self, sender: Pid, message: &Notification) {
        if message.watchdog {
            self.dispatch(Event::Heartbeat { pid: sender });
        }
        if message
            .other
            .iter()
            .any(|(k, v)| k == "WATCHDOG" && v == "trigger")
        {
            self.dispatch(Event::WatchdogTrigger { pid: sender });
        }
        let asked = message.other.iter().rev().find(|(k, _)| k == RECYCLE_FIELD);
        if let Some((_, reason)) = asked {
            self.dispatch(Event::RecycleRequested {
                pid: sender,
                reason: reason.clone(),
            });
        }
    }

    /// Measures each worker; one gone already is left out (its exit is on its way).
    pub(super) fn measure_memory(pids: &[Pid], smaps: bool) -> Vec<Event> {
        pids.iter()
            .filter_map(|&pid| {
                let memory = measure(pid, smaps)?;
                Some(Event::Measured { pid, memory })
            })
            .collect()
    }
}

/// SIGABRT for the worker alone: its children are not the ones caught, and a core of
/// each would only bury the one that matters. SIGKILL to the group follows.
pub(super) fn abort(pid: Pid) {
    if let Err(errno) = kill(pid, Signal::SIGABRT) {
        if errno != nix::errno::Errno::ESRCH {
            tracing::warn!(pid = %pid, error = %errno, "cannot abort worker");
        }
    }
}

/// The memory of `pid` and its descendants, or None if `pid` is gone.
fn measure(pid: Pid, smaps: bool) -> Option<Memory> {
    let mut total = Memory {
        uss: smaps.then_some(0),
        pss: smaps.then_some(0),
        ..Memory::default()
    };
    let mut queue = vec![pid];
    let mut seen = 0;
    while let Some(next) = queue.pop() {
        seen += 1;
        let Some((vsz, rss)) = statm(next) else {
            if next == pid {
                return None;
            }
            continue;
        };
        total.vsz += vsz;
        total.rss += rss;
        if smaps {
            let (uss, pss) = smaps_rollup(next).unwrap_or_default();
            total.uss = total.uss.map(|sum| sum + uss);
            total.pss = total.pss.map(|sum| sum + pss);
        }
        if seen + queue.len() < MAX_PROCESSES {
            queue.extend(children(next));
        }
    }
    Some(total)
}

/// Size and resident size of `pid`, in bytes, from /proc/PID/statm (in pages).
fn statm(pid: Pid) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (size, resident) = (fields.next()??, fields.next()??);
    Some((size * page_size(), resident * page_size()))
}

/// USS (private clean and dirty) and PSS of `pid`, in bytes, from smaps_rollup (kB).
fn smaps_rollup(pid: Pid) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let (mut uss, mut pss) = (0, 0);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(kb)) = (words.next(), words.next()) else {
            continue;
        };
        let bytes = kb.parse::<u64>().unwrap_or(0) * 1024;
        match key {
            "Pss:" => pss += bytes,
            "Private_Clean:" | "Private_Dirty:" => uss += bytes,
            _ => {}
        }
    }
    Some((uss, pss))
}

/// The children of every thread of `pid`.
fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        let Ok(list) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        children.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw),
        );
    }
    children
}

fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096, |size| size as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process_and_not_a_gone_one() {
        let me = Pid::this();
        let memory = measure(me, true).expect("this process is there");
        assert!(memory.rss > 0 && memory.vsz >= memory.rss);
        assert!(memory.pss.is_some_and(|pss| pss > 0));
        assert!(measure(Pid::from_raw(i32::MAX), false).is_none());
    }
}
