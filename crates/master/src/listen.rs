use std::{
    io::ErrorKind,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::fs::{FileTypeExt, PermissionsExt},
    },
    path::Path,
};

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6, UnixAddr,
};
use nix::unistd::{Gid, Uid};
use steward_options::{ListenAddr, ListenSpec};
use steward_systemd::InheritedSocket;

use crate::MasterError;

/// A listening socket the master holds for its workers.
#[derive(Debug)]
pub struct Listener {
    /// Its name in LISTEN_FDNAMES.
    pub name: String,
    /// Where it listens, for messages: `127.0.0.1:8000`, `unix:/run/app.sock`.
    pub description: String,
    fd: OwnedFd,
    handed_over: bool,
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Listener {
    /// Whether the service manager handed this socket over (socket activation or the fd
    /// store) rather than steward binding it.
    pub fn was_handed_over(&self) -> bool {
        self.handed_over
    }

    /// Binds `spec` (named `name`) with the given listen backlog. The socket is
    /// close-on-exec in the master; workers receive it by explicit placement.
    pub fn bind(spec: &ListenSpec, name: String, backlog: i32) -> Result<Listener, MasterError> {
        let failed = |source| MasterError::Bind {
            addr: spec.addr.to_string(),
            source,
        };
        let backlog = Backlog::new(backlog).unwrap_or(Backlog::MAXCONN);
        let fd = match &spec.addr {
            ListenAddr::Tcp(addr) => {
                let family = if addr.is_ipv6() {
                    AddressFamily::Inet6
                } else {
                    AddressFamily::Inet
                };
                let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                    .map_err(failed)?;
                // A restarted steward must be able to bind while old connections sit in TIME_WAIT.
                setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(failed)?;
                match addr {
                    std::net::SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(*v4)),
                    std::net::SocketAddr::V6(v6) => {
                        // [::]:80 means IPv6 only, as written; 0.0.0.0:80 is its own entry.
                        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(failed)?;
                        bind(fd.as_raw_fd(), &SockaddrIn6::from(*v6))
                    }
                }
                .map_err(failed)?;
                fd
            }
            ListenAddr::Unix(path) => {
                remove_stale_unix_socket(path)?;
                let fd = socket(
                    AddressFamily::Unix,
                    SockType::Stream,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )
                .map_err(failed)?;
                bind(
                    fd.as_raw_fd(),
                    &UnixAddr::new(path.as_path()).map_err(failed)?,
                )
                .map_err(failed)?;
                fd
            }
        };
        listen(&fd, backlog).map_err(failed)?;
        // The address as bound: with port 0 the kernel chose one, and this says which.
        let description = bound_address(&fd).unwrap_or_else(|| spec.addr.to_string());
        Ok(Listener {
            name,
            description,
            fd,
            handed_over: false,
        })
    }

    /// Takes a listening socket back from a previous image of this master (re-exec).
    pub(crate) fn adopt(
        fd: RawFd,
        handed_over: bool,
        name: String,
    ) -> Result<Listener, MasterError> {
        let fd = steward_sys::adopt_inherited_socket(fd)
            .map_err(|e| MasterError::Handover(std::io::Error::other(e)))?;
        let mut listener = Listener::inherited(name, fd)?;
        listener.handed_over = handed_over;
        Ok(listener)
    }

    /// Takes a socket the service manager handed over; it must already listen.
    pub fn inherited(name: String, fd: OwnedFd) -> Result<Listener, MasterError> {
        let raw = fd.as_raw_fd();
        if !nix::sys::socket::getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            return Err(MasterError::NotListening(raw));
        }
        let description = bound_address(&fd).unwrap_or_else(|| format!("inherited fd {raw}"));
        Ok(Listener {
            name,
            description,
            fd,
            handed_over: true,
        })
    }
}

/// Where a socket is bound (getsockname), as messages write it: `127.0.0.1:8000`,
/// `[::1]:8000`, `unix:/run/app.sock`.
fn bound_address(fd: &OwnedFd) -> Option<String> {
    let addr: nix::sys::socket::SockaddrStorage =
        nix::sys::socket::getsockname(fd.as_raw_fd()).ok()?;
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(std::net::SocketAddrV4::from(*v4).to_string())
    } else if let Some(v6) = addr.as_sockaddr_in6() {
        Some(std::net::SocketAddrV6::from(*v6).to_string())
    } else {
        addr.as_unix_addr()
            .and_then(|u| u.path())
            .map(|p| format!("unix:{}", p.display()))
    }
}

/// A socket file left by a process that is gone is removed; one that still accepts
/// connections, or a path that is not a socket at all, is an error, never overwritten.
fn remove_stale_unix_socket(path: &Path) -> Result<(), MasterError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(_) => return Ok(()),
    };
    if !metadata.file_type().is_socket() {
        return Err(MasterError::UnixPathTaken(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(MasterError::UnixSocketInUse(path.to_owned())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            let _ = std::fs::remove_file(path);
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// The master's sockets: those handed over by socket activation, matched to the
/// configured ones by name (LISTEN_FDNAMES) and then by order, and the configured ones
/// nothing was handed over for, bound here. With no `--listen` at all, every handed-over
/// socket is used as it comes.
pub(crate) fn listeners(
    options: &steward_options::Options,
    inherited: Vec<InheritedSocket>,
) -> Result<Vec<Listener>, MasterError> {
    let names = options.fd_names();
    if options.listen.is_empty() {
        return inherited
            .into_iter()
            .enumerate()
            .map(|(i, socket)| {
                Listener::inherited(
                    socket.name.unwrap_or_else(|| format!("listen{i}")),
                    socket.fd,
                )
            })
            .collect();
    }
    let access = SocketAccess::new(options)?;
    let mut slots: Vec<Option<OwnedFd>> = names.iter().map(|_| None).collect();
    let mut unmatched = Vec::new();
    for socket in inherited {
        match socket
            .name
            .as_ref()
            .and_then(|name| names.iter().position(|n| n == name))
        {
            Some(slot) if slots[slot].is_none() => slots[slot] = Some(socket.fd),
            _ => unmatched.push(socket),
        }
    }
    for socket in unmatched {
        match slots.iter().position(Option::is_none) {
            Some(slot) => slots[slot] = Some(socket.fd),
            None => {
                return Err(MasterError::UnmatchedInheritedSocket {
                    fd: socket.fd.as_raw_fd(),
                    name: socket.name.unwrap_or_else(|| "unknown".into()),
                })
            }
        }
    }
    options
        .listen
        .iter()
        .zip(names)
        .zip(slots)
        .map(|((spec, name), fd)| match fd {
            Some(fd) => {
                let listener = Listener::inherited(name, fd)?;
                tracing::info!(event = crate::events::SOCKET_INHERITED, name = %listener.name, configured = %spec.addr, socket = %listener.description,
                    "using the socket handed over by the service manager");
                Ok(listener)
            }
            None => {
                let listener = Listener::bind(spec, name, options.listen_backlog)?;
                access.apply(&spec.addr)?;
                Ok(listener)
            }
        })
        .collect()
}

/// `chmod-socket` and `chown-socket`, resolved before anything is bound, for the unix
/// sockets steward binds itself (systemd's have the socket unit's `SocketMode=`).
pub(crate) struct SocketAccess {
    mode: Option<u32>,
    owner: Option<(Uid, Option<Gid>)>,
}

impl SocketAccess {
    pub(crate) fn new(options: &steward_options::Options) -> Result<SocketAccess, MasterError> {
        let owner = match options.chown_socket.as_deref() {
            None => None,
            Some(value) => {
                let (user, group) = match value.split_once(':') {
                    Some((user, group)) => (user, Some(group)),
                    None => (value, None),
                };
                let (uid, _) = crate::privileges::resolve_user("chown-socket", user)?;
                // As uWSGI: without a group, the socket's group is left as it is.
                let gid = group
                    .map(|group| crate::privileges::resolve_group("chown-socket", group))
                    .transpose()?;
                Some((uid, gid))
            }
        };
        Ok(SocketAccess {
            mode: options.chmod_socket,
            owner,
        })
    }

    /// Right after bind, while the master is still root, so that a chown can work.
    fn apply(&self, addr: &ListenAddr) -> Result<(), MasterError> {
        if self.mode.is_none() && self.owner.is_none() {
            return Ok(());
        }
        let path = match addr {
            ListenAddr::Unix(path) => path,
            ListenAddr::Tcp(addr) => {
                tracing::warn!(socket = %addr, "chmod-socket and chown-socket apply to unix sockets only; ignored for this one");
                return Ok(());
            }
        };
        if let Some(mode) = self.mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                |source| MasterError::ChmodSocket {
                    path: path.clone(),
                    source,
                },
            )?;
        }
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid.as_raw()), gid.map(Gid::as_raw)).map_err(
                |source| MasterError::ChownSocket {
                    path: path.clone(),
                    source,
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real listening socket, as systemd would hand it over, and its address.
    fn handed(name: Option<&str>) -> (InheritedSocket, String) {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap().to_string();
        let inherited = InheritedSocket {
            fd: OwnedFd::from(socket),
            name: name.map(str::to_owned),
        };
        (inherited, address)
    }

    fn configured(listen: &[&str]) -> steward_options::Options {
        let mut options = steward_options::Options::new(vec!["/bin/true".into()]);
        options.listen = listen.iter().map(|spec| spec.parse().unwrap()).collect();
        options
    }

    /// (name, address, handed over) of each listener, in worker fd order.
    fn summary(listeners: &[Listener]) -> Vec<(String, String, bool)> {
        listeners
            .iter()
            .map(|l| (l.name.clone(), l.description.clone(), l.was_handed_over()))
            .collect()
    }

    #[test]
    fn a_named_socket_replaces_the_configured_socket_of_that_name_whatever_its_position() {
        let (b, b_addr) = handed(Some("b"));
        let (a, a_addr) = handed(Some("a"));
        let options = configured(&["a=127.0.0.1:0", "b=127.0.0.1:0"]);
        let got = listeners(&options, vec![b, a]).unwrap();
        assert_eq!(
            summary(&got),
            [("a".into(), a_addr, true), ("b".into(), b_addr, true)]
        );
    }

    #[test]
    fn unnamed_sockets_take_the_remaining_configured_ones_in_order_and_the_rest_are_bound() {
        let (unnamed, unnamed_addr) = handed(None);
        let (b, b_addr) = handed(Some("b"));
        let options = configured(&["a=127.0.0.1:0", "b=127.0.0.1:0", "c=127.0.0.1:0"]);
        let got = summary(&listeners(&options, vec![unnamed, b]).unwrap());
        assert_eq!(got[0], ("a".into(), unnamed_addr, true));
        assert_eq!(got[1], ("b".into(), b_addr, true));
        assert_eq!(
            (got[2].0.as_str(), got[2].2),
            ("c", false),
            "c is bound by steward"
        );
    }

    #[test]
    fn a_bound_socket_is_described_by_the_address_it_got() {
        let spec: ListenSpec = "127.0.0.1:0".parse().unwrap();
        let listener = Listener::bind(&spec, "web".into(), 16).unwrap();
        let port: u16 = listener
            .description
            .strip_prefix("127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{}", listener.description));
        assert_ne!(port, 0);
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("it listens there");
    }

    #[test]
    fn a_name_that_matches_nothing_maps_by_order_and_a_leftover_is_an_error() {
        let (web, web_addr) = handed(Some("web"));
        let options = configured(&["127.0.0.1:0"]);
        let got = listeners(&options, vec![web]).unwrap();
        assert_eq!(summary(&got), [("listen0".into(), web_addr, true)]);

        let (a, _) = handed(Some("a"));
        let (extra, _) = handed(Some("extra"));
        let extra_fd = extra.fd.as_raw_fd();
        let options = configured(&["a=127.0.0.1:0"]);
        match listeners(&options, vec![a, extra]) {
            Err(MasterError::UnmatchedInheritedSocket { fd, name }) => {
                assert_eq!((fd, name.as_str()), (extra_fd, "extra"));
            }
            other => panic!("expected UnmatchedInheritedSocket, got {other:?}"),
        }
    }

    #[test]
    fn without_listen_every_handed_over_socket_is_used_under_its_name() {
        let (web, web_addr) = handed(Some("web"));
        let (unnamed, unnamed_addr) = handed(None);
        let got = listeners(&configured(&[]), vec![web, unnamed]).unwrap();
        assert_eq!(
            summary(&got),
            [
                ("web".into(), web_addr, true),
                ("listen1".into(), unnamed_addr, true)
            ]
        );
    }
}
