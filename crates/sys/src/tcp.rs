//! The accept queue of a listening TCP socket, from TCP_INFO.

use std::os::fd::{AsRawFd, BorrowedFd};

/// A listening socket's accept queue: for a socket in LISTEN state Linux reports the
/// connections waiting to be accepted in `tcpi_unacked` and the backlog in
/// `tcpi_sacked` (tcp_get_info in net/ipv4/tcp.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptQueue {
    /// Connections established and not yet accepted.
    pub queued: u32,
    /// The most the queue holds (the listen backlog, as the kernel capped it).
    pub backlog: u32,
}

/// The accept queue of `fd`, a listening TCP socket; None for any other socket (a
/// unix socket, a socket not listening) or when the kernel does not answer.
#[allow(unsafe_code)]
pub fn accept_queue(fd: BorrowedFd<'_>) -> Option<AcceptQueue> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is a valid open descriptor for the borrow; `info` is a zeroed
    // buffer of `len` bytes that the kernel fills at most up to `len` (and says how
    // much in `len`); every bit pattern is a valid tcp_info (plain integers).
    let (rc, info) = unsafe {
        let rc = libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        );
        (rc, info.assume_init())
    };
    // The state is the first byte; 10 is TCP_LISTEN.
    if rc != 0
        || (len as usize) < std::mem::size_of::<libc::tcp_info>() / 2
        || info.tcpi_state != 10
    {
        return None;
    }
    Some(AcceptQueue {
        queued: info.tcpi_unacked,
        backlog: info.tcpi_sacked,
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_listening_socket_reports_its_queue_and_backlog() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let empty = accept_queue(listener.as_fd()).unwrap();
        assert_eq!(empty.queued, 0);
        assert!(empty.backlog > 0);
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(accept_queue(listener.as_fd()).unwrap().queued, 2);
        let connected = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(accept_queue(connected.as_fd()), None);
    }
}
