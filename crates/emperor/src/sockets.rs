//! The sockets the emperor holds for an on-demand vassal: bound from the vassal's own
//! `listen` addresses, and handed to the vassal's master by socket activation when it
//! starts.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::fs::FileTypeExt,
    },
    path::{Path, PathBuf},
    process::Command,
};

use nix::{
    sys::socket::{listen, Backlog},
    unistd::{setfsgid, setfsuid, Gid, Pid, Uid},
};

use crate::tyrant::Owner;
use steward_options::{ListenAddr, ListenSpec, Options};

/// One listening socket held for a vassal.
#[derive(Debug)]
pub(crate) struct HeldSocket {
    /// Its LISTEN_FDNAMES entry: the name the vassal's configuration gives it, so that
    /// the vassal's master takes it for that `listen` entry.
    pub name: String,
    pub fd: OwnedFd,
    /// Where it is bound, for the log (`127.0.0.1:8000`, `unix:/run/app.sock`).
    pub address: String,
    /// A unix socket's path, removed when the vassal is forgotten.
    pub path: Option<PathBuf>,
    /// Its name in systemd's fd store: `VASSAL/NAME`.
    pub store_name: String,
    /// Taken back from the fd store at the emperor's start (so stored already).
    pub reused: bool,
    /// Tyrant mode: the vassal's owner, whose rights its paths are made and removed with.
    pub owner: Option<Owner>,
}

impl HeldSocket {
    /// Removes a unix socket's path: the vassal is gone, or its address changed.
    pub fn unlink(&self) {
        if let Some(path) = &self.path {
            let _as_owner = AsOwner::switch(self.owner);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// In tyrant mode the emperor, root, binds and removes an on-demand vassal's unix socket
/// paths with the vassal owner's filesystem rights (setfsuid/setfsgid, per thread: the
/// emperor is one thread), so the kernel checks the directories as if the vassal did it
/// itself, and the socket is the owner's: a vassal file cannot make root create or
/// remove a path its owner could not. The previous identity comes back on drop.
struct AsOwner(Option<(Uid, Gid)>);

impl AsOwner {
    fn switch(owner: Option<Owner>) -> AsOwner {
        AsOwner(owner.map(|owner| {
            // The group first: a non-root fsuid would still be allowed to change it
            // (CAP_SETGID is not a filesystem capability), but the order keeps it plain.
            let gid = setfsgid(owner.gid);
            let uid = setfsuid(owner.uid);
            (uid, gid)
        }))
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.0 {
            setfsuid(uid);
            setfsgid(gid);
        }
    }
}

/// The lowest port an unprivileged process may bind (net.ipv4.ip_unprivileged_port_start,
/// 1024 unless changed).
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1024)
}

/// A socket that cannot be bound: the address and why.
#[derive(Debug)]
pub(crate) struct BindError {
    pub address: String,
    pub error: std::io::Error,
}

/// Binds every `listen` address of `options` with its `listen-backlog`, named as the
/// vassal's master names them, or takes the socket of that name and address back from
/// `stored` (what systemd's fd store gave a restarted emperor). On a failure the
/// sockets bound so far are closed (and their paths removed).
pub(crate) fn bind_all(
    options: &Options,
    vassal: &str,
    stored: &mut BTreeMap<String, OwnedFd>,
    owner: Option<Owner>,
) -> Result<Vec<HeldSocket>, BindError> {
    let mut held = Vec::new();
    for (spec, name) in options.listen.iter().zip(options.fd_names()) {
        let store_name = format!("{vassal}/{name}");
        let kept = stored
            .remove(&store_name)
            .and_then(|fd| bound_at(fd, &spec.addr));
        let socket = match kept {
            Some((fd, address)) => Ok(HeldSocket {
                name,
                fd,
                address,
                path: unix_path(&spec.addr),
                store_name,
                reused: true,
                owner,
            }),
            None => bind(spec, name, store_name, options, owner),
        };
        match socket {
            Ok(socket) => held.push(socket),
            Err(error) => {
                held.iter().for_each(HeldSocket::unlink);
                return Err(BindError {
                    address: spec.addr.to_string(),
                    error,
                });
            }
        }
    }
    Ok(held)
}

/// `fd` and where it is bound, if that is `addr` (any port for port 0).
fn bound_at(fd: OwnedFd, addr: &ListenAddr) -> Option<(OwnedFd, String)> {
    match addr {
        ListenAddr::Tcp(want) => {
            let listener = std::net::TcpListener::from(fd);
            let got = listener.local_addr().ok()?;
            let same = got.ip() == want.ip() && (want.port() == 0 || got.port() == want.port());
            same.then(|| (listener.into(), got.to_string()))
        }
        ListenAddr::Unix(want) => {
            let listener = std::os::unix::net::UnixListener::from(fd);
            let got = listener.local_addr().ok()?;
            (got.as_pathname() == Some(want.as_path()))
                .then(|| (listener.into(), format!("unix:{}", want.display())))
        }
    }
}

fn unix_path(addr: &ListenAddr) -> Option<PathBuf> {
    match addr {
        ListenAddr::Unix(path) => Some(path.clone()),
        ListenAddr::Tcp(_) => None,
    }
}

fn bind(
    spec: &ListenSpec,
    name: String,
    store_name: String,
    options: &Options,
    owner: Option<Owner>,
) -> std::io::Result<HeldSocket> {
    let (fd, address, path): (OwnedFd, String, Option<PathBuf>) = match &spec.addr {
        ListenAddr::Tcp(addr) => {
            let start = unprivileged_port_start();
            if let Some(owner) = owner.filter(|_| addr.port() != 0 && addr.port() < start) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "port {} is privileged (below net.ipv4.ip_unprivileged_port_start, {start}): \
                         the vassal's owner, uid {}, could not bind it, so in tyrant mode the \
                         emperor does not either",
                        addr.port(),
                        owner.uid
                    ),
                ));
            }
            let listener = std::net::TcpListener::bind(addr)?;
            let address = listener.local_addr()?.to_string();
            (listener.into(), address, None)
        }
        ListenAddr::Unix(path) => {
            let _as_owner = AsOwner::switch(owner);
            remove_stale_socket(path);
            let listener = std::os::unix::net::UnixListener::bind(path)?;
            // `chmod-socket`, as the vassal's master would have set it (its
            // `chown-socket` is not applied here: the emperor's user owns the path).
            if let Some(mode) = options.chmod_socket {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            let address = format!("unix:{}", path.display());
            (listener.into(), address, Some(path.clone()))
        }
    };
    // std listens with its own backlog; a second listen() sets the configured one.
    let backlog = Backlog::new(options.listen_backlog).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(std::io::Error::from)?;
    Ok(HeldSocket {
        name,
        fd,
        address,
        path,
        store_name,
        reused: false,
        owner,
    })
}

/// A unix socket left at `path` by a process that is gone is replaced; anything else
/// there (a file, a directory) is left, and the bind then says why it fails.
fn remove_stale_socket(path: &Path) {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Starts `command` (the vassal's `steward --config FILE`, as the emperor built it)
/// with `sockets` at fd 3 and up, by the socket-activation protocol: LISTEN_FDS,
/// LISTEN_FDNAMES and LISTEN_PID, the pid of the vassal's master itself, which its
/// master checks before it takes the sockets.
///
/// That pid is known only after fork, so std's `Command` (whose environment is fixed
/// before it forks) cannot carry it. steward-sys's `ExecPlan` prepares everything
/// before the fork, with a fixed-width `LISTEN_PID=` slot that the child fills with its
/// own pid (getpid, written digit by digit, no allocation) between fork and execve,
/// where only async-signal-safe calls are allowed: its SAFETY comments say why that
/// holds. The child also gets what steward-sys gives every worker: its own process
/// group, default signal dispositions, /dev/null on stdin, no other descriptor, and a
/// parent-death SIGKILL that the vassal's master replaces with its own (SIGURG,
/// `emperor-lost`) as soon as its loop starts.
pub(crate) fn spawn_activated(
    command: &Command,
    sockets: &[HeldSocket],
    owner: Option<crate::tyrant::Owner>,
) -> std::io::Result<Pid> {
    let mut env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => env.insert(key.to_owned(), value.to_owned()),
            None => env.remove(key),
        };
    }
    // LISTEN_PID comes from the plan; what the emperor inherited is not the vassal's.
    env.remove(&OsString::from("LISTEN_PID"));
    let names: Vec<&str> = sockets.iter().map(|s| s.name.as_str()).collect();
    env.insert("LISTEN_FDS".into(), sockets.len().to_string().into());
    env.insert("LISTEN_FDNAMES".into(), names.join(":").into());
    let env: Vec<(OsString, OsString)> = env.into_iter().collect();
    let argv: Vec<OsString> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(ToOwned::to_owned)
        .collect();
    let mut plan = steward_sys::ExecPlan::new(command.get_program().as_ref(), &argv, &env, true)
        .map_err(std::io::Error::other)?;
    // Tyrant mode: std's Command::uid/gid do not cross into a plan; the owner does.
    if let Some(owner) = owner {
        plan = plan.with_credentials(owner.uid, owner.gid);
    }
    let stdin = std::fs::File::open("/dev/null")?;
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(|s| s.fd.as_fd()).collect();
    let child = steward_sys::ChildFds {
        stdin: Some(stdin.as_fd()),
        output: None,
        sockets: &fds,
    };
    steward_sys::spawn(&mut plan, &child).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_bound_under_the_names_the_vassal_gives_them() {
        let mut options = Options::new(vec!["/bin/true".into()]);
        options.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "admin=127.0.0.1:0".parse().unwrap(),
        ];
        let held = bind_all(&options, "a.toml", &mut BTreeMap::new(), None).unwrap();
        let names: Vec<&str> = held.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["listen0", "admin"]);
        assert_eq!(held[1].store_name, "a.toml/admin");
        let address: std::net::SocketAddr = held[1].address.parse().unwrap();
        assert_ne!(address.port(), 0);
        std::net::TcpStream::connect(address).unwrap();

        // Given back by the fd store: the same socket is taken, not a new one bound;
        // one bound elsewhere than the configuration says is not.
        let mut stored: BTreeMap<String, OwnedFd> = held
            .into_iter()
            .map(|socket| (socket.store_name, socket.fd))
            .collect();
        options.listen[0] = "127.0.0.2:0".parse().unwrap();
        let again = bind_all(&options, "a.toml", &mut stored, None).unwrap();
        assert_eq!(again[1].address, address.to_string());
        assert!(again[1].reused && !again[0].reused);
        assert!(again[0].address.starts_with("127.0.0.2:"));
        assert!(stored.is_empty());
    }

    #[test]
    fn a_unix_socket_gets_its_chmod_socket_mode_and_its_path_goes_with_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("steward-sockets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.sock");
        let mut options = Options::new(vec!["/bin/true".into()]);
        options.listen = vec![format!("unix:{}", path.display()).parse().unwrap()];
        options.chmod_socket = Some(0o660);
        let held = bind_all(&options, "a.toml", &mut BTreeMap::new(), None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        held[0].unlink();
        assert!(!path.exists());
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn an_address_in_use_is_an_error_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut options = Options::new(vec!["/bin/true".into()]);
        let address = taken.local_addr().unwrap().to_string();
        options.listen = vec![address.parse().unwrap()];
        let error = bind_all(&options, "a.toml", &mut BTreeMap::new(), None).unwrap_err();
        assert_eq!(error.address, address);
        assert_eq!(error.error.kind(), std::io::ErrorKind::AddrInUse);
    }
}
