//! Sources registered once, each with a typed [`Token`], on a level-triggered epoll
//! instance: what `poll(2)` over a vector rebuilt at every pass used to do, at a cost
//! that does not grow with the number of idle sources.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::{
    errno::Errno,
    sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
};

/// What a ready descriptor is. A new kind of source is one more variant here, one
/// [`Registry::add`] where it is opened and one arm in the loop's dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Token {
    /// The signalfd of the handled signals.
    Signals,
    /// The workers' notify socket.
    Notify,
    /// The control socket's listener.
    ControlListener,
    /// A control client whose request is still being read.
    Control(u64),
    /// Master FIFO number N (configuration order).
    Fifo(usize),
    /// The inotify watcher of touch-reload and touch hooks.
    Touch,
    /// The output pipe of the new binary's check before a re-exec.
    UpgradeCheck,
    /// The stdout/stderr pipe in slot N of the workers' output.
    WorkerOutput(usize),
    /// The stats server's listener.
    StatsListener,
    /// A stats client: its request being read or its answer written.
    Stats(u64),
    /// Listening socket N, watched only while cheap mode has every worker retired.
    Listener(usize),
}

/// The kind of a token, in the top byte of the epoll data; its index below.
const KIND_SHIFT: u32 = 56;
const INDEX_MASK: u64 = (1 << KIND_SHIFT) - 1;

impl Token {
    fn encode(self) -> u64 {
        let (kind, index) = match self {
            Token::Signals => (0, 0),
            Token::Notify => (1, 0),
            Token::ControlListener => (2, 0),
            Token::Control(id) => (3, id & INDEX_MASK),
            Token::Fifo(n) => (4, n as u64 & INDEX_MASK),
            Token::Touch => (5, 0),
            Token::UpgradeCheck => (6, 0),
            Token::WorkerOutput(n) => (7, n as u64 & INDEX_MASK),
            Token::StatsListener => (8, 0),
            Token::Stats(id) => (9, id & INDEX_MASK),
            Token::Listener(n) => (10, n as u64 & INDEX_MASK),
        };
        (kind << KIND_SHIFT) | index
    }

    fn decode(data: u64) -> Option<Token> {
        let index = data & INDEX_MASK;
        Some(match data >> KIND_SHIFT {
            0 => Token::Signals,
            1 => Token::Notify,
            2 => Token::ControlListener,
            3 => Token::Control(index),
            4 => Token::Fifo(index as usize),
            5 => Token::Touch,
            6 => Token::UpgradeCheck,
            7 => Token::WorkerOutput(index as usize),
            8 => Token::StatsListener,
            9 => Token::Stats(index),
            10 => Token::Listener(index as usize),
            _ => return None,
        })
    }
}

/// The epoll instance and a buffer for its events.
#[derive(Debug)]
pub(crate) struct Registry {
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

/// Events taken from the kernel per wait; more stay pending for the next one.
const EVENTS_PER_WAIT: usize = 64;

impl Registry {
    pub fn new() -> Result<Registry, Errno> {
        Ok(Registry {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            events: vec![EpollEvent::empty(); EVENTS_PER_WAIT],
        })
    }

    /// Watches `fd` for input (and hang-up) under `token`, until [`Registry::remove`]
    /// or until the last descriptor of its open file closes.
    pub fn add(&self, fd: BorrowedFd<'_>, token: Token) -> Result<(), Errno> {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, token.encode());
        self.epoll.add(fd, event)
    }

    /// Watches `fd` for room to write (and hang-up) under `token`: a client whose
    /// answer did not fit in its socket's buffer at once.
    pub fn add_output(&self, fd: BorrowedFd<'_>, token: Token) -> Result<(), Errno> {
        let event = EpollEvent::new(EpollFlags::EPOLLOUT, token.encode());
        self.epoll.add(fd, event)
    }

    /// Stops watching `fd`. One that is not watched is not an error.
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        match self.epoll.delete(fd) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(errno) => tracing::debug!(error = %errno, "epoll: cannot remove a source"),
        }
    }

    /// Waits until a source is ready or `timeout_ms` passes (None: no limit); returns
    /// the ready tokens. An interrupted wait returns none.
    pub fn wait(&mut self, timeout_ms: Option<u64>) -> Result<Vec<Token>, Errno> {
        let timeout = match timeout_ms {
            None => EpollTimeout::NONE,
            Some(ms) => {
                EpollTimeout::try_from(ms.min(i32::MAX as u64) as i32).unwrap_or(EpollTimeout::MAX)
            }
        };
        let count = match self.epoll.wait(&mut self.events, timeout) {
            Ok(count) => count,
            Err(Errno::EINTR) => 0,
            Err(errno) => return Err(errno),
        };
        Ok(self.events[..count]
            .iter()
            .filter_map(|event| Token::decode(event.data()))
            .collect())
    }

    /// The epoll descriptor, which a forked worker (preload mode) closes.
    pub fn raw_fd(&self) -> RawFd {
        self.epoll.0.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_back_as_registered() {
        let tokens = [
            Token::Signals,
            Token::Notify,
            Token::ControlListener,
            Token::Control(7),
            Token::Fifo(3),
            Token::Touch,
            Token::UpgradeCheck,
            Token::WorkerOutput(1023),
            Token::StatsListener,
            Token::Stats(99),
            Token::Listener(2),
        ];
        for token in tokens {
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
    }

    #[test]
    fn a_readable_source_wakes_the_wait_with_its_token() {
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut registry = Registry::new().unwrap();
        registry.add(reader.as_fd(), Token::Fifo(2)).unwrap();
        assert_eq!(registry.wait(Some(0)).unwrap(), []);
        std::io::Write::write_all(&mut writer, b"r").unwrap();
        assert_eq!(registry.wait(Some(1000)).unwrap(), [Token::Fifo(2)]);
        registry.remove(reader.as_fd());
        assert_eq!(registry.wait(Some(0)).unwrap(), []);
    }
}
