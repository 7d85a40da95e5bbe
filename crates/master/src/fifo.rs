//! uWSGI's master FIFO (`master-fifo`): one-byte commands written to a named pipe,
//! `echo r > /run/app.fifo`.
//!
//! | byte | steward | uWSGI |
//! |---|---|---|
//! | `r`, `w` | graceful reload | graceful reload / reload workers |
//! | `c` | chain reload | chain reload |
//! | `q` | graceful shutdown | graceful shutdown |
//! | `Q` | brutal shutdown | brutal shutdown |
//! | `+`, `-` | one worker more / fewer | the same (cheaper mode) |
//! | `s` | status report in the log | stats |
//! | whitespace | ignored (what `echo` appends) | |
//!
//! uWSGI commands steward has no use for (`0`-`9` FIFO switching, `R` brutal reload,
//! `f` re-fork, `l`/`L` log reopening, `p` pause, `P` pidfiles, `E`, `B`, `C`, `S`, `W`)
//! are logged as unsupported, each naming the byte.

use std::{
    fs::{File, OpenOptions},
    io::{self, ErrorKind, Read},
    os::{
        fd::{AsFd, BorrowedFd},
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg, OFlag},
    sys::stat::Mode,
};

use crate::control::ControlRequest;

/// What one FIFO byte asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FifoCommand {
    /// The same as the control request.
    Request(ControlRequest),
    /// A log line with the status (the answer has nowhere else to go).
    StatusReport,
    /// A uWSGI command with no steward meaning.
    Unsupported(u8),
    /// Whitespace.
    Ignored,
}

impl FifoCommand {
    pub fn from_byte(byte: u8) -> FifoCommand {
        match byte {
            b'r' | b'w' => FifoCommand::Request(ControlRequest::Reload { chain: false }),
            b'c' => FifoCommand::Request(ControlRequest::Reload { chain: true }),
            b'q' => FifoCommand::Request(ControlRequest::Stop { brutal: false }),
            b'Q' => FifoCommand::Request(ControlRequest::Stop { brutal: true }),
            b'+' => FifoCommand::Request(ControlRequest::Resize { more: true }),
            b'-' => FifoCommand::Request(ControlRequest::Resize { more: false }),
            b's' => FifoCommand::StatusReport,
            b if b.is_ascii_whitespace() => FifoCommand::Ignored,
            b => FifoCommand::Unsupported(b),
        }
    }
}

/// One master FIFO, open for reading.
#[derive(Debug)]
pub(crate) struct MasterFifo {
    /// Locked for as long as this master reads the FIFO: a second master on the same
    /// path would take half of the commands, so it is refused, as on the control socket.
    reader: Flock<File>,
    /// Our own writer: with it open, the reader never sees end-of-file when a client's
    /// `echo` closes, so poll does not spin on POLLHUP between commands.
    _writer: File,
    path: PathBuf,
}

impl MasterFifo {
    /// Creates the FIFO at `path` mode 0600 (a stale FIFO is reused, anything else at
    /// the path is an error) and opens it; refused while another master reads it.
    pub fn open(path: &Path) -> io::Result<MasterFifo> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    ErrorKind::AlreadyExists,
                    "the path exists and is not a FIFO",
                ))
            }
            Err(_) => nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))?,
        }
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let open = |write: bool| {
            OpenOptions::new()
                .read(!write)
                .write(write)
                .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW).bits())
                .open(path)
        };
        let reader =
            Flock::lock(open(false)?, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                match errno {
                    Errno::EWOULDBLOCK => io::Error::new(
                        ErrorKind::AddrInUse,
                        "another master reads this FIFO (its master-fifo names the same path)",
                    ),
                    other => io::Error::from(other),
                }
            })?;
        let writer = open(true)?;
        Ok(MasterFifo {
            reader,
            _writer: writer,
            path: path.to_owned(),
        })
    }

    /// Both ends it holds open (a forked worker closes them).
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.reader.as_fd(), self._writer.as_fd()]
    }

    /// The commands written since the last call.
    pub fn receive(&mut self) -> Vec<FifoCommand> {
        let mut commands = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => commands.extend(buf[..n].iter().map(|b| FifoCommand::from_byte(*b))),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        commands
    }

    /// Where the FIFO is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub fn remove_file(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl AsFd for MasterFifo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bytes_map_to_uwsgi_meanings() {
        assert_eq!(
            FifoCommand::from_byte(b'r'),
            FifoCommand::Request(ControlRequest::Reload { chain: false })
        );
        assert_eq!(
            FifoCommand::from_byte(b'c'),
            FifoCommand::Request(ControlRequest::Reload { chain: true })
        );
        assert_eq!(
            FifoCommand::from_byte(b'Q'),
            FifoCommand::Request(ControlRequest::Stop { brutal: true })
        );
        assert_eq!(FifoCommand::from_byte(b'\n'), FifoCommand::Ignored);
        assert_eq!(FifoCommand::from_byte(b'f'), FifoCommand::Unsupported(b'f'));
    }

    #[test]
    fn commands_written_to_the_fifo_are_read() {
        let dir = std::env::temp_dir().join(format!("steward-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.fifo");
        let mut fifo = MasterFifo::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(b"q\n")
            .unwrap();
        assert_eq!(
            fifo.receive(),
            [
                FifoCommand::Request(ControlRequest::Stop { brutal: false }),
                FifoCommand::Ignored
            ]
        );
        assert!(fifo.receive().is_empty());
        drop(fifo);
        MasterFifo::open(&path).unwrap().remove_file();
        assert!(!path.exists());
        std::fs::write(dir.join("plain"), b"").unwrap();
        assert!(MasterFifo::open(&dir.join("plain")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
