//! The jail: namespaces to unshare and a directory to chroot into, entered between the
//! pre-jail and post-jail phases.

use std::{fs::File, os::fd::AsFd, path::PathBuf};

use nix::{errno::Errno, mount::MsFlags, sched::CloneFlags};
use steward_options::Options;

use crate::HookConfigError;

/// What jailing the master does: unshare these namespaces, then chroot. The default
/// does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    namespaces: CloneFlags,
    names: Vec<String>,
    chroot: Option<PathBuf>,
}

/// Entering the jail failed.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// unshare(2) failed.
    #[error("cannot unshare namespaces {names}: {errno}")]
    Unshare {
        /// The namespaces asked for.
        names: String,
        /// The cause.
        errno: Errno,
    },
    /// Making the new mount namespace's mounts private failed.
    #[error("cannot make mounts private in the new mount namespace: {0}")]
    PrivateMounts(Errno),
    /// chroot(2) failed.
    #[error("cannot chroot to {}: {errno}", path.display())]
    Chroot {
        /// The directory.
        path: PathBuf,
        /// The cause.
        errno: Errno,
    },
    /// /proc/self/ns/pid could not be opened.
    #[error("cannot open this process's pid namespace: {0}")]
    OpenPidNamespace(std::io::Error),
    /// setns(2) back into the original pid namespace failed.
    #[error("cannot return to the original pid namespace: {0}")]
    RestorePidNamespace(Errno),
    /// chdir("/") after chroot failed.
    #[error("cannot change directory to / in the chroot: {0}")]
    ChdirRoot(Errno),
}

impl Default for Jail {
    fn default() -> Jail {
        Jail {
            namespaces: CloneFlags::empty(),
            names: Vec::new(),
            chroot: None,
        }
    }
}

impl Jail {
    /// The jail of `options` (`unshare`, `chroot`), or an error naming a namespace
    /// steward cannot unshare.
    pub fn new(options: &Options) -> Result<Jail, HookConfigError> {
        let mut namespaces = CloneFlags::empty();
        for (index, name) in options.unshare.iter().enumerate() {
            let flag = match name.as_str() {
                "mount" | "mnt" | "fs" => CloneFlags::CLONE_NEWNS,
                "uts" => CloneFlags::CLONE_NEWUTS,
                "ipc" => CloneFlags::CLONE_NEWIPC,
                "net" => CloneFlags::CLONE_NEWNET,
                "cgroup" => CloneFlags::CLONE_NEWCGROUP,
                "user" => CloneFlags::CLONE_NEWUSER,
                "pid" => CloneFlags::CLONE_NEWPID,
                _ => {
                    return Err(HookConfigError::new(
                        "unshare",
                        index,
                        name,
                        "unknown namespace (mount, uts, ipc, pid, net, cgroup, user)",
                    ))
                }
            };
            namespaces |= flag;
        }
        Ok(Jail {
            namespaces,
            names: options.unshare.clone(),
            chroot: options.chroot.clone(),
        })
    }

    /// Whether entering the jail needs a fork: a new pid namespace takes in only the
    /// children of the process that unshares it, so the master goes on in its first
    /// child (pid 1 there).
    pub fn forks(&self) -> bool {
        self.namespaces.contains(CloneFlags::CLONE_NEWPID)
    }

    /// Whether there is anything to do.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.chroot.is_none()
    }

    /// Moves this process into the new namespaces but the pid namespace (see
    /// [`Jail::unshare_pid`]). In a new mount namespace every mount is made private
    /// first, so what is mounted in it never shows on the host.
    pub fn unshare(&self) -> Result<(), JailError> {
        let namespaces = self.namespaces - CloneFlags::CLONE_NEWPID;
        if namespaces.is_empty() {
            return Ok(());
        }
        nix::sched::unshare(namespaces).map_err(|errno| JailError::Unshare {
            names: self.names.join(","),
            errno,
        })?;
        if namespaces.contains(CloneFlags::CLONE_NEWNS) {
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(JailError::PrivateMounts)?;
        }
        Ok(())
    }

    /// Makes a new pid namespace for the children this process forks from now on (the
    /// first is its pid 1), if the jail has one.
    pub fn unshare_pid(&self) -> Result<(), JailError> {
        if !self.forks() {
            return Ok(());
        }
        nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(|errno| JailError::Unshare {
            names: "pid".into(),
            errno,
        })
    }

    /// This process's own pid namespace, to come back to with
    /// [`Jail::restore_pid_namespace`]: after unsharing one, every child of the process
    /// goes to the new namespace, the process itself staying where it was.
    pub fn pid_namespace() -> Result<File, JailError> {
        File::open("/proc/self/ns/pid").map_err(JailError::OpenPidNamespace)
    }

    /// Makes the children this process forks from now on go to `namespace` again (one
    /// from [`Jail::pid_namespace`]).
    pub fn restore_pid_namespace(namespace: &File) -> Result<(), JailError> {
        nix::sched::setns(namespace.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(JailError::RestorePidNamespace)
    }

    /// Changes this process's root to the chroot directory (and its working directory
    /// to the new root).
    pub fn chroot(&self) -> Result<(), JailError> {
        let Some(path) = &self.chroot else {
            return Ok(());
        };
        nix::unistd::chroot(path).map_err(|errno| JailError::Chroot {
            path: path.clone(),
            errno,
        })?;
        nix::unistd::chdir("/").map_err(JailError::ChdirRoot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_checked() {
        let mut options = Options::new(vec!["/bin/true".into()]);
        options.unshare = vec!["mount".into(), "uts".into()];
        let jail = Jail::new(&options).unwrap();
        assert!(!jail.is_empty());
        options.unshare = vec!["uts".into(), "time-travel".into()];
        let err = Jail::new(&options).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("unknown namespace"), "{err}");
        options.unshare = vec!["pid".into()];
        assert!(Jail::new(&options).unwrap().forks());
        options.unshare = vec!["mount".into()];
        assert!(!Jail::new(&options).unwrap().forks());
        options.unshare.clear();
        assert!(Jail::new(&options).unwrap().is_empty());
    }
}
