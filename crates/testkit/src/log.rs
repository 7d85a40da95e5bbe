//! A process's log as it comes, and the master's records in it.
//!
//! Every record of the master that marks a step of its life carries an `event` field
//! (`event="worker-ready"`, names in steward-master's `events` module) beside the fields
//! that say what it is about (`worker`, `generation`, `pid`...). Tests wait on those
//! ([`Log::wait_event`]) rather than on the wording of messages, which is free to change.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Instant,
};

use crate::DEADLINE;

#[derive(Debug, Default)]
struct Lines {
    lines: Vec<String>,
    /// The writing end is closed: no line will come any more.
    closed: bool,
}

/// The log lines of a running process, collected by a reader thread.
#[derive(Clone, Debug, Default)]
pub struct Log {
    shared: Arc<(Mutex<Lines>, Condvar)>,
}

impl Log {
    /// Adds a line (the reader thread's part).
    pub(crate) fn push(&self, line: String) {
        let (lines, changed) = &*self.shared;
        lines.lock().unwrap().lines.push(line);
        changed.notify_all();
    }

    /// Says that no line will come any more: waits fail at once instead of at the deadline.
    pub(crate) fn close(&self) {
        let (lines, changed) = &*self.shared;
        lines.lock().unwrap().closed = true;
        changed.notify_all();
    }

    /// Waits until the writing end is closed (every process that held it is gone), at
    /// most `limit`; whether it is.
    pub fn wait_closed(&self, limit: std::time::Duration) -> bool {
        let (lines, changed) = &*self.shared;
        let guard = lines.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, limit, |lines| !lines.closed)
            .unwrap();
        guard.closed
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.0.lock().unwrap().lines.clone()
    }

    /// Every line so far, as one text.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// The number of lines so far.
    pub fn len(&self) -> usize {
        self.shared.0.lock().unwrap().lines.len()
    }

    /// Whether no line came yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the first line at or after index `from` that `wanted` accepts; returns
    /// its index and text. Panics with the log after the deadline, or as soon as the
    /// output ended without such a line; `what` says what was waited for.
    pub fn wait_until(
        &self,
        from: usize,
        what: &dyn std::fmt::Debug,
        wanted: impl Fn(&str) -> bool,
    ) -> (usize, String) {
        let (lines, changed) = &*self.shared;
        let deadline = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some((i, line)) = guard
                .lines
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| wanted(l))
            {
                return (i, line.clone());
            }
            assert!(
                !guard.closed,
                "the output ended without a line with {what:?}; log:\n{}",
                guard.lines.join("\n")
            );
            let now = Instant::now();
            assert!(
                now < deadline,
                "no log line with {what:?} within {DEADLINE:?}; log:\n{}",
                guard.lines.join("\n")
            );
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits for the first line at or after index `from` that contains every fragment;
    /// returns its index and text. For lines that carry no event: prefer
    /// [`Log::wait_event_from`].
    pub fn wait_from(&self, from: usize, fragments: &[&str]) -> (usize, String) {
        self.wait_until(from, &fragments, |l| has_all(l, fragments))
    }

    /// [`Log::wait_from`] from the first line.
    pub fn wait_for(&self, fragments: &[&str]) -> String {
        self.wait_from(0, fragments).1
    }

    /// The index of the first line with every fragment, if there is one yet.
    pub fn position(&self, fragments: &[&str]) -> Option<usize> {
        self.lines().iter().position(|l| has_all(l, fragments))
    }

    /// How many lines so far contain every fragment.
    pub fn count(&self, fragments: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| has_all(l, fragments))
            .count()
    }

    /// Waits for the first record at or after index `from` of the event `name` whose
    /// fields have the given values; returns its index and text.
    pub fn wait_event_from(
        &self,
        from: usize,
        name: &str,
        fields: &[(&str, &str)],
    ) -> (usize, String) {
        let what = (name, fields);
        self.wait_until(from, &what, |l| is_event(l, name, fields))
    }

    /// [`Log::wait_event_from`] from the first line: the record's text.
    pub fn wait_event(&self, name: &str, fields: &[(&str, &str)]) -> String {
        self.wait_event_from(0, name, fields).1
    }

    /// The index of the first record of the event `name` with these field values, if
    /// there is one yet.
    pub fn event_position(&self, name: &str, fields: &[(&str, &str)]) -> Option<usize> {
        self.lines().iter().position(|l| is_event(l, name, fields))
    }

    /// Every record so far of the event `name` with these field values.
    pub fn events(&self, name: &str, fields: &[(&str, &str)]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| is_event(l, name, fields))
            .collect()
    }
}

fn has_all(line: &str, fragments: &[&str]) -> bool {
    fragments.iter().all(|f| line.contains(f))
}

/// Whether `line` is a record of the event `name` whose fields have the given values.
pub fn is_event(line: &str, name: &str, wanted: &[(&str, &str)]) -> bool {
    let fields = record_fields(line);
    let value = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    value("event") == Some(name) && wanted.iter().all(|(k, v)| value(k) == Some(*v))
}

/// The fields of a master's log record (`key=value` after the message, from the `event`
/// field on), in order, quoted values unquoted. Empty for a line without an event.
/// A value written with spaces and without quotes (`status=status 0`) yields its first word.
pub fn record_fields(line: &str) -> Vec<(String, String)> {
    let Some(start) = line.find(" event=") else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    let mut rest = &line[start..];
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return fields;
        }
        let token_end = rest.find([' ', '=']).unwrap_or(rest.len());
        let key = &rest[..token_end];
        if !rest[token_end..].starts_with('=')
            || key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            // Not a field: a word of an unquoted value with spaces.
            rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
            continue;
        }
        rest = &rest[token_end + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end..];
            value
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            let value = rest[..end].to_owned();
            rest = &rest[end..];
            value
        };
        fields.push((key.to_owned(), value));
    }
}

/// The value of `key=` in a log line (its first word, quotes trimmed).
pub fn field(line: &str, key: &str) -> String {
    let needle = format!(" {key}=");
    let start = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + needle.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_record_quoted_or_not() {
        let line = r#"2026-12-04T03:58:11Z  WARN worker exited unexpectedly event="worker-crashed" worker=2 generation=1 pid=7 status=signal SIGKILL respawn_in_ms=50 reason="a \"b\" c""#;
        let got = record_fields(line);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("event", "worker-crashed"),
                ("worker", "2"),
                ("generation", "1"),
                ("pid", "7"),
                ("status", "signal"),
                ("respawn_in_ms", "50"),
                ("reason", "a \"b\" c"),
            ]
        );
        assert!(is_event(line, "worker-crashed", &[("worker", "2")]));
        assert!(!is_event(line, "worker-crashed", &[("worker", "1")]));
        assert!(!is_event(line, "worker-exited", &[]));
        assert!(record_fields("steward-demo: worker 1 serving on x=y").is_empty());
    }

    #[test]
    fn a_wait_on_a_closed_log_fails_at_once() {
        let log = Log::default();
        log.push("one".into());
        log.close();
        assert_eq!(log.wait_for(&["one"]), "one");
        let failed = std::panic::catch_unwind(|| log.wait_for(&["two"]));
        assert!(failed.is_err());
    }
}
