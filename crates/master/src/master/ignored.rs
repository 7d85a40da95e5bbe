//! Notify datagrams the master cannot act on. Any local user may write to the notify
//! socket, so the warnings about them are limited to [`WARNINGS_PER_SECOND`], the rest
//! counted and said with the next one. A worker's last words (STOPPING=1 sent just
//! before it exits) may be read after its exit was reaped: those are not warned about.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use nix::unistd::Pid;

/// Warnings about ignored datagrams said per second, at most.
const WARNINGS_PER_SECOND: u32 = 5;
/// Exited workers remembered, for their late datagrams.
const RECENT_EXITS: usize = 64;

#[derive(Debug, Default)]
pub(super) struct Ignored {
    recent_exits: VecDeque<Pid>,
    window_start: Option<Instant>,
    said_in_window: u32,
    suppressed: u64,
}

impl Ignored {
    pub fn worker_exited(&mut self, pid: Pid) {
        if self.recent_exits.len() == RECENT_EXITS {
            self.recent_exits.pop_front();
        }
        self.recent_exits.push_back(pid);
    }

    /// Whether `pid` was a worker that exited lately.
    pub fn exited_lately(&self, pid: Pid) -> bool {
        self.recent_exits.contains(&pid)
    }

    /// Whether a warning may be said now; with how many were held back before it.
    pub fn may_warn(&mut self, now: Instant) -> Option<u64> {
        let new_window = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if new_window {
            self.window_start = Some(now);
            self.said_in_window = 0;
        }
        if self.said_in_window >= WARNINGS_PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.said_in_window += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_said_five_times_a_second_with_what_was_held_back() {
        let mut ignored = Ignored::default();
        let start = Instant::now();
        let said: Vec<Option<u64>> = (0..8).map(|_| ignored.may_warn(start)).collect();
        assert_eq!(
            said,
            [
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                None,
                None,
                None
            ]
        );
        assert_eq!(ignored.may_warn(start + Duration::from_secs(1)), Some(3));
    }

    #[test]
    fn late_words_of_exited_workers_are_known_for_a_while() {
        let mut ignored = Ignored::default();
        ignored.worker_exited(Pid::from_raw(7));
        assert!(ignored.exited_lately(Pid::from_raw(7)));
        for pid in 100..100 + RECENT_EXITS as i32 {
            ignored.worker_exited(Pid::from_raw(pid));
        }
        assert!(!ignored.exited_lately(Pid::from_raw(7)));
    }
}
