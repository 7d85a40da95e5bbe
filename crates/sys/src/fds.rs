use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, FdFlag},
    sys::stat::{fstat, SFlag},
};

/// Why an inherited descriptor cannot be adopted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdoptError {
    /// Nothing is open at that number.
    #[error("fd {0} is not open")]
    NotOpen(RawFd),
    /// It is open but is not a socket.
    #[error("fd {0} is not a socket")]
    NotSocket(RawFd),
    /// It is one of stdin, stdout, stderr.
    #[error("fd {0} is a standard stream, not an inherited socket")]
    Standard(RawFd),
    /// fstat or fcntl failed.
    #[error("fd {fd}: {errno}")]
    Io {
        /// The descriptor.
        fd: RawFd,
        /// The error.
        errno: Errno,
    },
}

/// Takes ownership of a socket this process inherited at `fd` (socket activation), and
/// marks it close-on-exec so that it reaches children only by explicit placement.
///
/// Checks first that `fd` is open, above the standard streams and a socket, so that a
/// wrong LISTEN_FDS cannot make the caller own (and later close) an unrelated descriptor.
pub fn adopt_inherited_socket(fd: RawFd) -> Result<OwnedFd, AdoptError> {
    if fd <= 2 {
        return Err(AdoptError::Standard(fd));
    }
    let borrowed = fd_if_open(fd)?;
    let stat = fstat(borrowed).map_err(|errno| AdoptError::Io { fd, errno })?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(AdoptError::NotSocket(fd));
    }
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|errno| AdoptError::Io { fd, errno })?;
    Ok(own(fd))
}

#[allow(unsafe_code)]
fn fd_if_open(fd: RawFd) -> Result<std::os::fd::BorrowedFd<'static>, AdoptError> {
    // SAFETY: the borrow is used only for fcntl/fstat below while `fd` stays open; nothing
    // in this process closes inherited descriptors behind the caller's back.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match fcntl(borrowed, FcntlArg::F_GETFD) {
        Ok(_) => Ok(borrowed),
        Err(Errno::EBADF) => Err(AdoptError::NotOpen(fd)),
        Err(errno) => Err(AdoptError::Io { fd, errno }),
    }
}

#[allow(unsafe_code)]
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is open (checked) and was handed to this process by its parent with
    // the socket-activation protocol, which makes this process its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};

    use super::*;

    #[test]
    fn adopts_sockets_and_refuses_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let raw = listener.into_raw_fd();
        let owned = adopt_inherited_socket(raw).unwrap();
        assert_eq!(owned.as_raw_fd(), raw);

        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            adopt_inherited_socket(file.as_raw_fd()).unwrap_err(),
            AdoptError::NotSocket(file.as_raw_fd())
        );
        assert_eq!(
            adopt_inherited_socket(1).unwrap_err(),
            AdoptError::Standard(1)
        );
        assert_eq!(
            adopt_inherited_socket(100_000).unwrap_err(),
            AdoptError::NotOpen(100_000)
        );
    }
}
