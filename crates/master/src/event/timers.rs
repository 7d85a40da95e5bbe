//! Every deadline of the master in one ordered set, keyed by what it is for: arming a
//! key again moves its deadline, and the loop sleeps until the earliest one.

use std::{
    collections::{BTreeSet, HashMap},
    hash::Hash,
    time::Instant,
};

/// Deadlines by key; at most one per key.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K: Ord + Hash + Copy> Timers<K> {
    pub fn new() -> Timers<K> {
        Timers {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }

    /// `key` is due at `at` (replacing an earlier deadline of the same key).
    pub fn arm(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    pub fn disarm(&mut self, key: K) {
        if let Some(at) = self.by_key.remove(&key) {
            self.by_time.remove(&(at, key));
        }
    }

    pub fn is_armed(&self, key: K) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes the earliest key due at `now`, disarming it.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.disarm(key);
        Some(key)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_come_due_in_order_and_rearming_moves_a_deadline() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut timers = Timers::new();
        timers.arm("watchdog", at(50));
        timers.arm("mercy", at(30));
        timers.arm("respawn", at(40));
        timers.arm("mercy", at(60));
        timers.disarm("respawn");
        assert_eq!(timers.next(), Some(at(50)));
        assert_eq!(timers.pop_due(at(49)), None);
        assert_eq!(timers.pop_due(at(100)), Some("watchdog"));
        assert_eq!(timers.pop_due(at(100)), Some("mercy"));
        assert_eq!(timers.pop_due(at(100)), None);
        assert!(timers.is_empty());
    }
}
