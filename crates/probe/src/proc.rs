//! Reading one process's descriptors, epoll sets and blocked system calls from /proc.

use std::{
    fmt, fs,
    io::{self, ErrorKind},
    os::unix::fs::FileExt,
    path::PathBuf,
};

use nix::unistd::Pid;

/// How a process waits for connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// A thread blocked in `accept` or `accept4` on the socket.
    Accept,
    /// The socket in an epoll interest list, for input.
    Epoll,
    /// A thread blocked in `poll` or `ppoll` with the socket in its set.
    Poll,
    /// A thread blocked in `select` or `pselect6` with the socket in its read set.
    Select,
}

impl How {
    /// "accept", "epoll", "poll" or "select".
    pub fn name(self) -> &'static str {
        match self {
            How::Accept => "accept",
            How::Epoll => "epoll",
            How::Poll => "poll",
            How::Select => "select",
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
    Gone,
    Denied,
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Refused {
        match e.kind() {
            ErrorKind::PermissionDenied => Refused::Denied,
            // EIO: /proc/PID/mem of a process without an mm any more (exiting).
            _ if e.raw_os_error() == Some(nix::libc::EPERM) => Refused::Denied,
            _ => Refused::Gone,
        }
    }
}

/// System call numbers the check recognises, per architecture.
#[cfg(target_arch = "x86_64")]
mod nr {
    pub const ACCEPT: &[u64] = &[43, 288];
    pub const POLL: &[u64] = &[7, 271];
    pub const SELECT: &[u64] = &[23, 270];
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const ACCEPT: &[u64] = &[202, 242];
    pub const POLL: &[u64] = &[73];
    pub const SELECT: &[u64] = &[72];
}
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod nr {
    pub const ACCEPT: &[u64] = &[];
    pub const POLL: &[u64] = &[];
    pub const SELECT: &[u64] = &[];
}

/// More descriptors than this in one poll or select set are not read (a set that large
/// is not a server's listening loop).
const MAX_SET: u64 = 4096;

fn proc_path(pid: Pid, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

/// The descriptors of `pid` that are one of the sockets, and its epoll instances.
struct Descriptors {
    sockets: Vec<i32>,
    epolls: Vec<i32>,
}

fn descriptors(pid: Pid, inodes: &[u64]) -> Result<Descriptors, Refused> {
    let mut found = Descriptors {
        sockets: Vec::new(),
        epolls: Vec::new(),
    };
    for entry in fs::read_dir(proc_path(pid, "fd"))? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A descriptor closed between the listing and the read is simply not there.
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.as_os_str().as_encoded_bytes();
        if target == b"anon_inode:[eventpoll]" {
            found.epolls.push(fd);
        } else if let Some(inode) = socket_inode_of(target) {
            if inodes.contains(&inode) {
                found.sockets.push(fd);
            }
        }
    }
    Ok(found)
}

/// `socket:[1234]` -> 1234.
fn socket_inode_of(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// Whether `pid` itself waits on one of `inodes`.
pub(crate) fn check_process(pid: Pid, inodes: &[u64]) -> Result<Option<How>, Refused> {
    let fds = descriptors(pid, inodes)?;
    for &epoll in &fds.epolls {
        if epoll_watches(pid, epoll, inodes)? {
            return Ok(Some(How::Epoll));
        }
    }
    if fds.sockets.is_empty() {
        return Ok(None);
    }
    for entry in fs::read_dir(proc_path(pid, "task"))? {
        let Ok(entry) = entry else { continue };
        let Ok(text) = fs::read_to_string(entry.path().join("syscall")) else {
            continue;
        };
        if let Some(how) = blocked_on(pid, &text, &fds.sockets)? {
            return Ok(Some(how));
        }
    }
    Ok(None)
}

/// Whether the epoll instance `epoll` of `pid` holds one of `inodes` for input. Its
/// fdinfo has a line per target: `tfd: 5 events: 19 data: ... pos:0 ino:1a2b sdev:8`
/// (events and ino in hex).
fn epoll_watches(pid: Pid, epoll: i32, inodes: &[u64]) -> Result<bool, Refused> {
    let text = match fs::read_to_string(proc_path(pid, &format!("fdinfo/{epoll}"))) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(text
        .lines()
        .filter(|line| line.starts_with("tfd:"))
        .any(|line| {
            let field = |name: &str| {
                let rest = &line[line.find(name)? + name.len()..];
                let value = rest.split_whitespace().next()?;
                u64::from_str_radix(value, 16).ok()
            };
            let input = field("events:").is_some_and(|events| events & 0x1 != 0);
            input && field("ino:").is_some_and(|ino| inodes.contains(&ino))
        }))
}

/// What a thread blocked in a system call (one line of /proc/PID/task/TID/syscall:
/// `NR arg0 ... arg5 sp pc`, in hex after the decimal NR) waits on, if it is one of the
/// socket descriptors `sockets`.
fn blocked_on(pid: Pid, line: &str, sockets: &[i32]) -> Result<Option<How>, Refused> {
    let mut words = line.split_whitespace();
    let Some(Ok(number)) = words.next().map(str::parse::<u64>) else {
        // "running", or "-1 sp pc" outside a system call.
        return Ok(None);
    };
    let args: Vec<u64> = words
        .take(6)
        .filter_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
        .collect();
    if args.len() < 3 {
        return Ok(None);
    }
    let holds = |fd: u64| sockets.iter().any(|s| *s as u64 == fd);
    if nr::ACCEPT.contains(&number) {
        return Ok(holds(args[0]).then_some(How::Accept));
    }
    if nr::POLL.contains(&number) && args[1] <= MAX_SET {
        return Ok(poll_set_holds(pid, args[0], args[1], sockets)?.then_some(How::Poll));
    }
    if nr::SELECT.contains(&number) && args[0] <= MAX_SET && args[1] != 0 {
        return Ok(select_set_holds(pid, args[1], args[0], sockets)?.then_some(How::Select));
    }
    Ok(None)
}

/// Reads `len` bytes of `pid`'s memory at `address`.
fn read_memory(pid: Pid, address: u64, len: usize) -> Result<Vec<u8>, Refused> {
    let mem = fs::File::open(proc_path(pid, "mem"))?;
    let mut buffer = vec![0u8; len];
    mem.read_exact_at(&mut buffer, address)?;
    Ok(buffer)
}

/// Whether the `struct pollfd[count]` at `address` asks for input on a socket.
fn poll_set_holds(pid: Pid, address: u64, count: u64, sockets: &[i32]) -> Result<bool, Refused> {
    let set = read_memory(pid, address, count as usize * 8)?;
    Ok(set.chunks_exact(8).any(|entry| {
        let fd = i32::from_ne_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let events = i16::from_ne_bytes([entry[4], entry[5]]);
        events & 0x1 != 0 && sockets.contains(&fd)
    }))
}

/// Whether the read `fd_set` at `address` (of `nfds` bits) holds a socket.
fn select_set_holds(pid: Pid, address: u64, nfds: u64, sockets: &[i32]) -> Result<bool, Refused> {
    // fd_set is an array of longs; read whole ones.
    let len = nfds.div_ceil(64) as usize * 8;
    let set = read_memory(pid, address, len)?;
    Ok(sockets.iter().any(|&fd| {
        let fd = fd as usize;
        (fd as u64) < nfds && set[fd / 8] & (1 << (fd % 8)) != 0
    }))
}

/// The children of every thread of `pid`.
pub(crate) fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = fs::read_dir(proc_path(pid, "task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .map(Pid::from_raw),
            );
        }
    }
    children
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode_of(b"socket:[4242]"), Some(4242));
        assert_eq!(socket_inode_of(b"pipe:[4242]"), None);
        assert_eq!(socket_inode_of(b"socket:[x]"), None);
    }

    #[test]
    fn lines_outside_a_system_call_wait_on_nothing() {
        let me = Pid::this();
        assert_eq!(blocked_on(me, "running", &[3]), Ok(None));
        assert_eq!(blocked_on(me, "-1 0x7ffc 0x7f00", &[3]), Ok(None));
        let accept = format!(
            "{} 0x3 0x0 0x0 0x80800 0x0 0x0 0x7ffc 0x7f00",
            nr::ACCEPT[0]
        );
        assert_eq!(blocked_on(me, &accept, &[3]), Ok(Some(How::Accept)));
        assert_eq!(blocked_on(me, &accept, &[4]), Ok(None));
    }
}
