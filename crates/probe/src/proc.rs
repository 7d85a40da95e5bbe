//! Reading one process's descriptors, epoll sets and blocked system calls from /proc.
//!
//! Everything is read relative to a descriptor of `/proc/PID`, with paths formatted on
//! the stack and one read buffer per check: a check costs system calls, not allocations.
//! A descriptor is identified by `fstatat` on `/proc/PID/fd/N` (the target's type and
//! inode, no allocation); only anonymous inodes are `readlink`ed, to tell an epoll
//! instance from an eventfd or a timerfd.

use std::{
    fmt::{self, Write as _},
    fs::File,
    io::{self, Read as _},
    os::{fd::OwnedFd, unix::fs::FileExt},
};

use nix::{
    dir::Dir,
    errno::Errno,
    fcntl::{openat, readlinkat, AtFlags, OFlag},
    sys::stat::{fstatat, Mode, SFlag},
    unistd::Pid,
};

/// How a process waits for connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum How {
    /// A thread blocked in `accept` or `accept4` on the socket.
    Accept,
    /// The socket in an epoll interest list, for input.
    Epoll,
    /// A thread blocked in `poll` or `ppoll` with the socket in its set, for input.
    Poll,
    /// A thread blocked in `select` or `pselect6` with the socket in its read set.
    Select,
    /// It holds a connection accepted from the socket: it serves, though no look
    /// caught it waiting (a busy server; see the `net` module).
    Accepted,
}

impl How {
    /// "accept", "epoll", "poll" or "select".
    pub fn name(self) -> &'static str {
        match self {
            How::Accept => "accept",
            How::Epoll => "epoll",
            How::Poll => "poll",
            How::Select => "select",
            How::Accepted => "accepted",
        }
    }
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a process could not be looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The process is gone (exited, reaped, a zombie), or never was.
    Gone,
    /// /proc refused a look the check needs.
    Denied,
}

/// What a failed look at a /proc file of a live process means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Refused: another user's process, a non-dumpable one, a hardened /proc, ptrace
    /// access denied (EACCES, EPERM).
    Denied,
    /// Anything else (ENOENT, ESRCH, EIO, a short read): the thing looked at went away
    /// or changed under the look. Not an answer: looked at again next time.
    Vanished,
}

impl Failure {
    fn of(errno: Errno) -> Failure {
        match errno {
            Errno::EACCES | Errno::EPERM => Failure::Denied,
            _ => Failure::Vanished,
        }
    }

    fn of_io(e: &io::Error) -> Failure {
        Failure::of(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    }
}

/// System call numbers the check recognises, per architecture.
#[cfg(target_arch = "x86_64")]
mod nr {
    /// accept, accept4.
    pub const ACCEPT: &[u64] = &[43, 288];
    /// poll, ppoll.
    pub const POLL: &[u64] = &[7, 271];
    /// select, pselect6.
    pub const SELECT: &[u64] = &[23, 270];
}
#[cfg(target_arch = "aarch64")]
mod nr {
    /// accept, accept4.
    pub const ACCEPT: &[u64] = &[202, 242];
    /// ppoll (aarch64 has no poll).
    pub const POLL: &[u64] = &[73];
    /// pselect6 (aarch64 has no select).
    pub const SELECT: &[u64] = &[72];
}
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod nr {
    pub const ACCEPT: &[u64] = &[];
    pub const POLL: &[u64] = &[];
    pub const SELECT: &[u64] = &[];
}

/// More entries than this in one poll set, or bits in one select set, are not read (a
/// set that large is not a server's listening loop, and the read stays small).
const MAX_SET: u64 = 4096;

/// EPOLLIN, POLLIN.
const INPUT: u64 = 0x1;

/// A /proc path, formatted on the stack (nix hands `[u8]` paths to the kernel without
/// allocating either).
struct Path {
    bytes: [u8; 64],
    len: usize,
}

impl Path {
    fn new(args: fmt::Arguments<'_>) -> Path {
        let mut path = Path {
            bytes: [0; 64],
            len: 0,
        };
        // Every path here is a few words and numbers: it fits.
        let _ = path.write_fmt(args);
        path
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl fmt::Write for Path {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// State kept across the processes of one check: a read buffer, and what was refused.
pub(crate) struct Scratch {
    buffer: Vec<u8>,
    /// The first refused look, for the caller's log.
    pub(crate) denied: Option<Denial>,
}

/// A look that /proc refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Denial {
    pub(crate) pid: Pid,
    pub(crate) what: &'static str,
    pub(crate) errno: Errno,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            buffer: Vec::with_capacity(1024),
            denied: None,
        }
    }
}

/// One process being looked at: its /proc directory, opened once.
struct Process<'s> {
    pid: Pid,
    dir: OwnedFd,
    scratch: &'s mut Scratch,
    /// A look at this process was refused.
    denied: bool,
}

impl Process<'_> {
    fn refused(&mut self, what: &'static str, errno: Errno) {
        self.denied = true;
        if self.scratch.denied.is_none() {
            self.scratch.denied = Some(Denial {
                pid: self.pid,
                what,
                errno,
            });
        }
    }

    /// Notes a failed look; true when it was a refusal.
    fn failed(&mut self, what: &'static str, errno: Errno) {
        if Failure::of(errno) == Failure::Denied {
            self.refused(what, errno);
        }
    }

    /// Reads a file under /proc/PID into the scratch buffer.
    fn read(&mut self, what: &'static str, path: &Path) -> Option<&[u8]> {
        let read = openat(
            &self.dir,
            path.as_bytes(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|fd| {
            self.scratch.buffer.clear();
            File::from(fd).read_to_end(&mut self.scratch.buffer)
        });
        match read {
            Ok(_) => Some(&self.scratch.buffer),
            Err(e) => {
                self.failed(what, Errno::from_raw(e.raw_os_error().unwrap_or(0)));
                None
            }
        }
    }
}

/// Opens /proc/PID, or says the process is gone.
fn open_process(pid: Pid) -> Result<OwnedFd, Refused> {
    let path = Path::new(format_args!("/proc/{pid}"));
    match nix::fcntl::open(
        path.as_bytes(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => Ok(dir),
        Err(e) if Failure::of(e) == Failure::Denied => Err(Refused::Denied),
        // Not in this /proc: gone, or hidden (hidepid=invisible, systemd's
        // ProtectProc=invisible, for a process of another uid). A signal 0 tells.
        Err(_) => match nix::sys::signal::kill(pid, None) {
            Ok(()) | Err(Errno::EPERM) => Err(Refused::Denied),
            Err(_) => Err(Refused::Gone),
        },
    }
}

/// The descriptors of a process that are one of the sockets, and its epoll instances.
#[derive(Default)]
struct Descriptors {
    /// Descriptor numbers of the sockets (usually one).
    sockets: Vec<u64>,
    /// Descriptor numbers of epoll instances (usually zero to two).
    epolls: Vec<u64>,
    /// Inodes of its other sockets (at most [`MAX_OTHER_SOCKETS`]): connections it may
    /// have accepted.
    others: Vec<u64>,
    /// How many descriptors the process has (a zombie has none).
    count: usize,
}

fn descriptors(process: &mut Process<'_>, inodes: &[u64]) -> Result<Descriptors, Refused> {
    let mut dir = match Dir::openat(
        &process.dir,
        b"fd".as_slice(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(e) if Failure::of(e) == Failure::Denied => {
            process.refused("its descriptors (/proc/PID/fd)", e);
            return Err(Refused::Denied);
        }
        Err(_) => return Err(Refused::Gone),
    };
    let mut found = Descriptors::default();
    for entry in dir.iter() {
        let Ok(entry) = entry else { continue };
        let Some(fd) = parse_decimal(entry.file_name().to_bytes()) else {
            continue; // "." and ".."
        };
        let name = Path::new(format_args!("fd/{fd}"));
        found.count += 1;
        // The target, following the link: a socket's inode is what fstat of the
        // socket gives (see socket_inode). A descriptor closed since the listing is
        // simply not there.
        let stat = match fstatat(&process.dir, name.as_bytes(), AtFlags::empty()) {
            Ok(stat) => stat,
            Err(e) => {
                process.failed("a descriptor's target (/proc/PID/fd/N)", e);
                continue;
            }
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFSOCK {
            if inodes.contains(&stat.st_ino) {
                found.sockets.push(fd);
            } else if found.others.len() < MAX_OTHER_SOCKETS {
                found.others.push(stat.st_ino);
            }
        } else if kind.is_empty() || kind == SFlag::S_IFREG {
            // Anonymous inodes (epoll, eventfd, timerfd, signalfd, ...) have no file
            // type; a kernel that gave them one would most likely say regular file.
            match readlinkat(&process.dir, name.as_bytes()) {
                Ok(link) if link.as_encoded_bytes() == b"anon_inode:[eventpoll]" => {
                    found.epolls.push(fd);
                }
                Ok(_) => {}
                Err(e) => process.failed("a descriptor's target (/proc/PID/fd/N)", e),
            }
        }
    }
    Ok(found)
}

/// "1234" -> 1234; anything else (".", "..", a sign, overflow) -> None.
fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// "1a2b" or "0x1a2b" -> 0x1a2b.
fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

/// Whether a zombie (or dead) process: its /proc/PID/stat state after the command name.
fn is_zombie(process: &mut Process<'_>) -> bool {
    let Some(stat) = process.read(
        "its state (/proc/PID/stat)",
        &Path::new(format_args!("stat")),
    ) else {
        return false;
    };
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    matches!(stat.get(close + 2), Some(b'Z' | b'X' | b'x'))
}

/// Other sockets looked up per process, for connections accepted from ours.
const MAX_OTHER_SOCKETS: usize = 64;

/// Whether `pid` itself waits on one of `inodes`; also gives its children (of every
/// thread), for the caller's walk, and, when it holds one of `inodes`, its other
/// sockets in `held`.
pub(crate) fn check_process(
    pid: Pid,
    inodes: &[u64],
    scratch: &mut Scratch,
    children: &mut Vec<Pid>,
    held: &mut Vec<u64>,
) -> Result<Option<How>, Refused> {
    let dir = open_process(pid)?;
    let mut process = Process {
        pid,
        dir,
        scratch,
        denied: false,
    };
    let fds = match descriptors(&mut process, inodes) {
        Ok(fds) => fds,
        Err(Refused::Denied) => {
            // Its children may still be looked at (a worker that changed its
            // credentials, under a master that can see its descendants).
            tasks(&mut process, &[], children);
            return Err(Refused::Denied);
        }
        Err(gone) => return Err(gone),
    };
    if fds.count == 0 && is_zombie(&mut process) {
        return Err(Refused::Gone);
    }
    if !fds.sockets.is_empty() {
        held.extend_from_slice(&fds.others);
    }
    for &epoll in &fds.epolls {
        if epoll_watches(&mut process, epoll, inodes) {
            return Ok(Some(How::Epoll));
        }
    }
    let how = tasks(&mut process, &fds.sockets, children);
    match how {
        Some(how) => Ok(Some(how)),
        None if process.denied => Err(Refused::Denied),
        None => Ok(None),
    }
}

/// Whether the epoll instance `epoll` holds one of `inodes` for input. Its fdinfo has a
/// line per target: `tfd: 5 events: 19 data: ... pos:0 ino:1a2b sdev:8` (events and ino
/// in hex).
fn epoll_watches(process: &mut Process<'_>, epoll: u64, inodes: &[u64]) -> bool {
    let path = Path::new(format_args!("fdinfo/{epoll}"));
    let Some(text) = process.read("an epoll interest list (/proc/PID/fdinfo/N)", &path) else {
        return false;
    };
    fdinfo_watches(text, inodes)
}

fn fdinfo_watches(text: &[u8], inodes: &[u64]) -> bool {
    text.split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"tfd:"))
        .filter_map(|line| std::str::from_utf8(line).ok())
        .any(|line| {
            let field = |name: &str| {
                let rest = &line[line.find(name)? + name.len()..];
                parse_hex(rest.split_whitespace().next()?)
            };
            let input = field("events:").is_some_and(|events| events & INPUT != 0);
            input && field("ino:").is_some_and(|ino| inodes.contains(&ino))
        })
}

/// Walks the threads of the process: what each is blocked in (only when the process
/// holds one of the sockets), and whose children they have.
fn tasks(process: &mut Process<'_>, sockets: &[u64], children: &mut Vec<Pid>) -> Option<How> {
    let mut dir = match Dir::openat(
        &process.dir,
        b"task".as_slice(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(e) => {
            process.failed("its threads (/proc/PID/task)", e);
            return None;
        }
    };
    let mut mem: Option<File> = None;
    for entry in dir.iter() {
        let Ok(entry) = entry else { continue };
        let Some(tid) = parse_decimal(entry.file_name().to_bytes()) else {
            continue;
        };
        if !sockets.is_empty() {
            let path = Path::new(format_args!("task/{tid}/syscall"));
            if let Some(line) =
                process.read("a thread's system call (/proc/PID/task/TID/syscall)", &path)
            {
                if let Some(call) = Call::parse(line) {
                    if let Some(how) = call.waits_on(process, &mut mem, sockets) {
                        return Some(how);
                    }
                }
            }
        }
        let path = Path::new(format_args!("task/{tid}/children"));
        if let Some(list) = process.read("a thread's children (/proc/PID/task/TID/children)", &path)
        {
            children.extend(
                list.split(u8::is_ascii_whitespace)
                    .filter_map(parse_decimal)
                    .filter_map(|p| i32::try_from(p).ok())
                    .map(Pid::from_raw),
            );
        }
    }
    None
}

/// A system call a thread is blocked in: one line of /proc/PID/task/TID/syscall,
/// `NR arg0 ... arg5 sp pc` (NR in decimal, the rest in hex), or `running`, or
/// `-1 sp pc` outside a system call.
#[derive(Debug, PartialEq, Eq)]
struct Call {
    number: u64,
    args: [u64; 6],
}

impl Call {
    fn parse(line: &[u8]) -> Option<Call> {
        let line = std::str::from_utf8(line).ok()?;
        let mut words = line.split_whitespace();
        let number = parse_decimal(words.next()?.as_bytes())?;
        let mut args = [0u64; 6];
        for arg in &mut args {
            *arg = parse_hex(words.next()?)?;
        }
        Some(Call { number, args })
    }

    /// Whether the call waits for input on one of `sockets` (descriptor numbers).
    fn waits_on(
        &self,
        process: &mut Process<'_>,
        mem: &mut Option<File>,
        sockets: &[u64],
    ) -> Option<How> {
        let [a0, a1, ..] = self.args;
        if nr::ACCEPT.contains(&self.number) {
            return sockets.contains(&a0).then_some(How::Accept);
        }
        if nr::POLL.contains(&self.number) && a1 <= MAX_SET {
            // struct pollfd { int fd; short events; short revents; }[a1] at a0.
            let set = read_memory(process, mem, a0, a1 as usize * 8)?;
            let holds = set.chunks_exact(8).any(|entry| {
                let fd = i32::from_ne_bytes([entry[0], entry[1], entry[2], entry[3]]);
                let events = u16::from_ne_bytes([entry[4], entry[5]]);
                u64::from(events) & INPUT != 0
                    && u64::try_from(fd).is_ok_and(|fd| sockets.contains(&fd))
            });
            return holds.then_some(How::Poll);
        }
        if nr::SELECT.contains(&self.number) && a0 <= MAX_SET && a1 != 0 {
            // The read fd_set (an array of longs, a0 bits) at a1.
            let set = read_memory(process, mem, a1, a0.div_ceil(64) as usize * 8)?;
            return select_set_holds(set, a0, sockets).then_some(How::Select);
        }
        None
    }
}

fn select_set_holds(set: &[u8], nfds: u64, sockets: &[u64]) -> bool {
    sockets.iter().any(|&fd| {
        fd < nfds
            && usize::try_from(fd / 64).is_ok_and(|word| {
                let long = set.get(word * 8..word * 8 + 8).unwrap_or(&[0; 8]);
                let long = u64::from_ne_bytes(long.try_into().unwrap_or([0; 8]));
                long & (1 << (fd % 64)) != 0
            })
    })
}

/// Reads `len` bytes of the process's memory at `address` (needs ptrace access, as
/// the parent has under Yama ptrace_scope 1). `None` when refused (noted), or when the
/// thread has moved on and the address is no longer mapped.
fn read_memory<'p>(
    process: &'p mut Process<'_>,
    mem: &mut Option<File>,
    address: u64,
    len: usize,
) -> Option<&'p [u8]> {
    const WHAT: &str = "a thread's poll or select set (/proc/PID/mem)";
    if mem.is_none() {
        match openat(
            &process.dir,
            b"mem".as_slice(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => *mem = Some(File::from(fd)),
            Err(e) => {
                process.failed(WHAT, e);
                return None;
            }
        }
    }
    let file = mem.as_ref()?;
    let buffer = &mut process.scratch.buffer;
    buffer.clear();
    buffer.resize(len, 0);
    match file.read_exact_at(buffer, address) {
        Ok(()) => Some(&process.scratch.buffer),
        Err(e) => {
            if Failure::of_io(&e) == Failure::Denied {
                process.refused(WHAT, Errno::from_raw(e.raw_os_error().unwrap_or(0)));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_names_only() {
        assert_eq!(parse_decimal(b"42"), Some(42));
        assert_eq!(parse_decimal(b"."), None);
        assert_eq!(parse_decimal(b".."), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(Call::parse(b"running"), None);
        assert_eq!(Call::parse(b"-1 0x7ffc 0x7f00\n"), None);
        assert_eq!(
            Call::parse(b"43 0x3 0x0 0x0 0x80800 0x0 0x0 0x7ffc 0x7f00\n"),
            Some(Call {
                number: 43,
                args: [3, 0, 0, 0x80800, 0, 0]
            })
        );
        // Truncated: not a call.
        assert_eq!(Call::parse(b"43 0x3 0x0"), None);
    }

    #[test]
    fn epoll_interest_lines() {
        let fdinfo = b"pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
            tfd:        7 events:       19 data:                7  pos:0 ino:1a2b sdev:8\n\
            tfd:        8 events:        4 data:                8  pos:0 ino:3c4d sdev:8\n";
        assert!(fdinfo_watches(fdinfo, &[0x1a2b]));
        // Registered for output only.
        assert!(!fdinfo_watches(fdinfo, &[0x3c4d]));
        // The epoll's own ino line is not a target.
        assert!(!fdinfo_watches(fdinfo, &[0x1057]));
        assert!(!fdinfo_watches(b"", &[1]));
    }

    #[test]
    fn select_bits() {
        let mut set = [0u8; 16];
        set[8] = 0b10; // fd 65
        assert!(select_set_holds(&set, 66, &[65]));
        assert!(!select_set_holds(&set, 65, &[65]), "beyond nfds");
        assert!(!select_set_holds(&set, 128, &[3]));
    }

    #[test]
    fn refusals_are_told_apart_from_vanishing() {
        assert_eq!(Failure::of(Errno::EACCES), Failure::Denied);
        assert_eq!(Failure::of(Errno::EPERM), Failure::Denied);
        assert_eq!(Failure::of(Errno::ENOENT), Failure::Vanished);
        assert_eq!(Failure::of(Errno::ESRCH), Failure::Vanished);
        assert_eq!(Failure::of(Errno::EIO), Failure::Vanished);
    }

    #[test]
    fn paths_fit_on_the_stack() {
        let path = Path::new(format_args!("task/{}/syscall", u64::MAX));
        assert_eq!(
            path.as_bytes(),
            format!("task/{}/syscall", u64::MAX).as_bytes()
        );
    }
}
