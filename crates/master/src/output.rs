//! Workers' output (`worker-output = capture`): one pipe per worker on its stdout and
//! stderr both, so lines keep the order they were written in, as systemd's own stream
//! for a service keeps them. The loop reads each pipe when it is readable and sends
//! every line on with the worker's id, generation and pid: to the journal as a record
//! of its own under systemd, else to the master's stderr after `worker N [PID]:`.
//!
//! A worker that floods its output can neither block the master nor grow its memory:
//! a pass reads at most [`READ_BUDGET`] bytes of one pipe (epoll is level-triggered,
//! so the rest waits for the next pass, after the other sources), a line is cut at
//! [`LINE_MAX`], and past [`LINES_PER_SECOND`] a worker's lines are dropped and
//! counted, as are those the journal cannot take at once; each drop is reported.

use std::{
    io::{self, Write as _},
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, OFlag},
    unistd::{pipe2, read, Pid},
};
use steward_options::LogPattern;
use steward_systemd::JournalSender;
use tracing::warn;

use crate::events;

/// The most one pass reads of one worker's pipe.
pub const READ_BUDGET: usize = 64 * 1024;
/// A longer line is sent in pieces of this size (journald's own default is 48 KiB).
pub const LINE_MAX: usize = 16 * 1024;
/// Lines per second and worker sent on; the rest of that second's are dropped.
pub const LINES_PER_SECOND: u32 = 10_000;

/// Who wrote a line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer {
    pub id: usize,
    pub generation: u64,
    pub pid: Pid,
}

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Journal(JournalSender),
    Stderr,
}

/// One worker's pipe and what is pending of it.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    writer: Option<Writer>,
    /// The start of a line whose end has not come yet.
    partial: Vec<u8>,
    window_start: Option<Instant>,
    lines_in_window: u32,
    over_rate: u64,
    refused: u64,
}

/// Every worker's pipe, by slot (the index in [`crate::event::Token::WorkerOutput`]).
#[derive(Debug)]
pub(crate) struct Outputs {
    pipes: Vec<Option<Pipe>>,
    sink: Sink,
    /// SYSLOG_IDENTIFIER of the lines: the worker command's name.
    identifier: String,
}

/// What one pass over a pipe found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Read {
    /// A line matched the readiness pattern asked about.
    pub matched: bool,
    /// Every writer has closed it and all is read: unregister it, then close it.
    pub closed: bool,
}

impl Outputs {
    /// Lines go to the journal when the master's stderr is the journal, else to stderr.
    pub fn new(identifier: String) -> Outputs {
        let journal = steward_systemd::stderr_is_journal()
            .then(|| {
                JournalSender::connect(std::path::Path::new(steward_systemd::JOURNAL_SOCKET)).ok()
            })
            .flatten()
            .map(
                |sender| match std::env::var(steward_options::vars::VASSAL) {
                    Ok(name) => sender.with_field("VASSAL", &name),
                    Err(_) => sender,
                },
            );
        Outputs {
            pipes: Vec::new(),
            sink: journal.map_or(Sink::Stderr, Sink::Journal),
            identifier,
        }
    }

    /// A new pipe for a worker about to start: its slot, and the end to put on the
    /// worker's stdout and stderr (close-on-exec here, as every master descriptor;
    /// dup2 in the child clears that on fd 1 and 2).
    pub fn open(&mut self) -> Result<(usize, OwnedFd), Errno> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        // Only the master's end: the worker's stays blocking, as programs expect.
        fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let pipe = Pipe::new(read);
        let slot = match self.pipes.iter().position(Option::is_none) {
            Some(free) => {
                self.pipes[free] = Some(pipe);
                free
            }
            None => {
                self.pipes.push(Some(pipe));
                self.pipes.len() - 1
            }
        };
        Ok((slot, write))
    }

    /// The worker of `slot` runs: its lines are tagged with `writer`.
    pub fn attach(&mut self, slot: usize, writer: Writer) {
        if let Some(pipe) = self.pipes.get_mut(slot).and_then(Option::as_mut) {
            pipe.writer = Some(writer);
        }
    }

    /// The read end of `slot`, to register or unregister.
    pub fn fd(&self, slot: usize) -> Option<BorrowedFd<'_>> {
        self.pipes.get(slot)?.as_ref().map(|pipe| pipe.read.as_fd())
    }

    /// Every read end, which a forked worker (preload mode) must not hold.
    pub fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.pipes.iter().flatten().map(|pipe| pipe.read.as_fd())
    }

    /// The writer of `slot`, if its worker started.
    pub fn writer(&self, slot: usize) -> Option<Writer> {
        self.pipes.get(slot)?.as_ref()?.writer
    }

    /// Closes `slot` (its worker did not start, or the pipe was read to its end).
    pub fn close(&mut self, slot: usize) {
        if let Some(pipe) = self.pipes.get_mut(slot) {
            *pipe = None;
        }
    }

    /// Reads what `slot` has, up to [`READ_BUDGET`], and sends its complete lines on;
    /// `pattern`: report whether one matched it.
    pub fn read(&mut self, slot: usize, pattern: Option<&LogPattern>, now: Instant) -> Read {
        let mut outcome = Read::default();
        let Some(pipe) = self.pipes.get_mut(slot).and_then(Option::as_mut) else {
            return outcome;
        };
        let mut buffer = [0u8; 16 * 1024];
        let mut budget = READ_BUDGET;
        while budget > 0 {
            match read(&pipe.read, &mut buffer) {
                Ok(0) => {
                    outcome.closed = true;
                    break;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let lines = pipe.take_lines(&buffer[..n]);
                    for line in lines {
                        outcome.matched |=
                            pipe.send(&self.sink, &self.identifier, &line, pattern, now);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => {
                    outcome.closed = true;
                    break;
                }
            }
        }
        if outcome.closed {
            let rest = std::mem::take(&mut pipe.partial);
            if !rest.is_empty() {
                outcome.matched |= pipe.send(&self.sink, &self.identifier, &rest, pattern, now);
            }
            pipe.report_drops();
        }
        outcome
    }
}

impl Pipe {
    fn new(read: OwnedFd) -> Pipe {
        Pipe {
            read,
            writer: None,
            partial: Vec::new(),
            window_start: None,
            lines_in_window: 0,
            over_rate: 0,
            refused: 0,
        }
    }

    /// Appends `bytes` and takes out each complete line (a piece of [`LINE_MAX`] of
    /// a longer one counts as one).
    fn take_lines(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(end) => {
                    self.partial.extend_from_slice(end);
                    lines.push(std::mem::take(&mut self.partial));
                }
                None => self.partial.extend_from_slice(piece),
            }
            while self.partial.len() >= LINE_MAX {
                let rest = self.partial.split_off(LINE_MAX);
                lines.push(std::mem::replace(&mut self.partial, rest));
            }
        }
        lines
    }

    /// Sends one line on, unless the worker is over its rate; whether it matched
    /// `pattern`.
    fn send(
        &mut self,
        sink: &Sink,
        identifier: &str,
        line: &[u8],
        pattern: Option<&LogPattern>,
        now: Instant,
    ) -> bool {
        let text = String::from_utf8_lossy(line);
        let (priority, message) = split_priority(&text);
        let matched = pattern.is_some_and(|p| p.is_match(message));
        if self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            self.report_drops();
            self.window_start = Some(now);
            self.lines_in_window = 0;
        }
        self.lines_in_window += 1;
        if self.lines_in_window > LINES_PER_SECOND {
            self.over_rate += 1;
            return matched;
        }
        let sent = match sink {
            Sink::Journal(journal) => {
                send_to_journal(journal, identifier, self.writer, priority, message)
            }
            Sink::Stderr => write_to_stderr(self.writer, priority, message),
        };
        if sent.is_err() {
            self.refused += 1;
        }
        matched
    }

    /// Says how many lines were dropped since the last report, if any.
    fn report_drops(&mut self) {
        let (over_rate, refused) = (
            std::mem::take(&mut self.over_rate),
            std::mem::take(&mut self.refused),
        );
        if over_rate + refused == 0 {
            return;
        }
        let (worker, generation, pid) = match self.writer {
            Some(w) => (w.id, w.generation, w.pid.as_raw()),
            None => (0, 0, 0),
        };
        warn!(event = events::WORKER_OUTPUT_DROPPED, worker, generation, pid, over_rate, refused,
            limit_per_second = LINES_PER_SECOND,
            "worker output lines dropped: {over_rate} over the rate limit, {refused} refused by the log");
    }
}

/// `<N>` at the start of a line (sd-daemon's levels, 0 to 7) sets its priority;
/// otherwise it is informational (6).
fn split_priority(line: &str) -> (u8, &str) {
    let bytes = line.as_bytes();
    if bytes.len() >= 3 && bytes[0] == b'<' && bytes[2] == b'>' && (b'0'..=b'7').contains(&bytes[1])
    {
        return (bytes[1] - b'0', &line[3..]);
    }
    (6, line)
}

fn send_to_journal(
    journal: &JournalSender,
    identifier: &str,
    writer: Option<Writer>,
    priority: u8,
    message: &str,
) -> io::Result<()> {
    let priority = priority.to_string();
    let Some(Writer {
        id,
        generation,
        pid,
    }) = writer
    else {
        return journal.send(
            message,
            &[("PRIORITY", &priority), ("SYSLOG_IDENTIFIER", identifier)],
        );
    };
    let (id, generation, pid) = (id.to_string(), generation.to_string(), pid.to_string());
    journal.send(
        message,
        &[
            ("PRIORITY", &priority),
            ("SYSLOG_IDENTIFIER", identifier),
            ("SYSLOG_PID", &pid),
            ("WORKER_ID", &id),
            ("GENERATION", &generation),
            ("WORKER_PID", &pid),
        ],
    )
}

fn write_to_stderr(writer: Option<Writer>, priority: u8, message: &str) -> io::Result<()> {
    let level = match priority {
        0..=3 => "error: ",
        4 => "warning: ",
        _ => "",
    };
    // A vassal's workers share the emperor's stderr with every other vassal's.
    static VASSAL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let vassal = VASSAL.get_or_init(|| {
        std::env::var(steward_options::vars::VASSAL).map_or(String::new(), |name| name + " ")
    });
    let line = match writer {
        Some(Writer { id, pid, .. }) => {
            format!("{vassal}worker {id} [{pid}]: {level}{message}\n")
        }
        None => format!("{vassal}worker: {level}{message}\n"),
    };
    // One write per line: a daemon's stderr may be a datagram socket (udp:HOST:PORT).
    io::stderr().write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> Pipe {
        Pipe::new(pipe2(OFlag::O_CLOEXEC).unwrap().0)
    }

    #[test]
    fn lines_are_taken_whole_across_reads_and_long_ones_in_pieces() {
        let mut pipe = pipe();
        assert_eq!(pipe.take_lines(b"one\ntw"), [b"one".to_vec()]);
        assert_eq!(
            pipe.take_lines(b"o\n\nthree"),
            [b"two".to_vec(), Vec::new()]
        );
        assert_eq!(pipe.partial, b"three");
        let long = vec![b'x'; LINE_MAX * 2 + 5];
        let pieces = pipe.take_lines(&long);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].len(), LINE_MAX);
        assert!(pieces[0].starts_with(b"three"));
        assert_eq!(pipe.partial.len(), 10);
    }

    #[test]
    fn a_priority_prefix_sets_the_level_and_is_taken_off() {
        assert_eq!(split_priority("<3>disk full"), (3, "disk full"));
        assert_eq!(split_priority("<7>"), (7, ""));
        assert_eq!(split_priority("<8>not a level"), (6, "<8>not a level"));
        assert_eq!(split_priority("plain"), (6, "plain"));
        assert_eq!(split_priority("<3"), (6, "<3"));
    }
}
