//! `vacuum`: removing at exit what the master made on the filesystem, also after a
//! chroot, whose paths no longer name the host's files.

use std::{
    os::fd::{AsRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use nix::errno::Errno;
use steward_options::Options;
use tracing::{info, warn};

use super::Master;
use crate::{control::ControlServer, fifo::MasterFifo, listen::Listener, startup};

/// Where the sockets, the control socket and the FIFOs are, for vacuum: they are made
/// on the host's paths, before a chroot, so after it the same paths name the jail's
/// files, which are not steward's to remove.
#[derive(Debug)]
pub(super) enum MadeFilesRoot {
    /// No chroot (or no vacuum): the paths mean what they meant.
    Here,
    /// The host's `/`, held from before the chroot (close-on-exec, and closed in every
    /// forked worker: a jailed process holding it could leave the jail).
    Host(OwnedFd),
    /// Chrooted without a way out (a re-exec'd image): the files are left.
    Unreachable,
}

impl MadeFilesRoot {
    /// Before the jail: the host's root when a chroot is to come and vacuum needs it.
    pub fn before_jail(options: &Options, resumed: bool) -> MadeFilesRoot {
        if !options.vacuum || options.chroot.is_none() {
            return MadeFilesRoot::Here;
        }
        if resumed {
            return MadeFilesRoot::Unreachable;
        }
        let flags = nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_CLOEXEC;
        match nix::fcntl::open("/", flags, nix::sys::stat::Mode::empty()) {
            Ok(root) => MadeFilesRoot::Host(root),
            Err(errno) => {
                warn!(error = %errno, "cannot hold the host's root: vacuum will leave the sockets and FIFOs made outside the chroot");
                MadeFilesRoot::Unreachable
            }
        }
    }

    /// Removes `paths` (absolute, the host's); one that cannot be removed is reported
    /// and left.
    pub fn remove(&self, paths: Vec<PathBuf>) {
        let root = match self {
            MadeFilesRoot::Here => return remove_files(paths),
            MadeFilesRoot::Host(root) => root,
            MadeFilesRoot::Unreachable => {
                for path in paths {
                    warn!(path = %path.display(), "vacuum: left: made outside the chroot, which this image cannot reach");
                }
                return;
            }
        };
        for path in paths {
            let relative = path.strip_prefix("/").unwrap_or(&path);
            match nix::unistd::unlinkat(root, relative, nix::unistd::UnlinkatFlags::NoRemoveDir) {
                Ok(()) => info!(path = %path.display(), "vacuum: removed"),
                Err(Errno::ENOENT) => {}
                Err(errno) => {
                    warn!(path = %path.display(), error = %errno, "vacuum: cannot remove")
                }
            }
        }
    }

    pub fn fd(&self) -> Option<RawFd> {
        match self {
            MadeFilesRoot::Host(root) => Some(root.as_raw_fd()),
            _ => None,
        }
    }
}

impl Master {
    /// `vacuum`: removes what the master created on the filesystem. A file that cannot
    /// be removed (the master dropped privileges and the directory is not its) is
    /// reported and left.
    pub(super) fn vacuum(&self) {
        // Written after the jail: its paths are the jail's.
        remove_files(startup::pidfiles(&self.options, &self.files_dir));
        self.made_root.remove(self.made_files());
    }

    /// `vacuum` after a start that failed past construction (master-start).
    pub(super) fn vacuum_failed_start(&self) {
        if self.options.vacuum {
            vacuum_failed_start(
                &self.options,
                &self.files_dir,
                self.made_files(),
                &self.made_root,
            );
        }
    }

    /// The files this master made, besides its pidfiles.
    fn made_files(&self) -> Vec<PathBuf> {
        made_files(
            &self.options,
            &self.files_dir,
            &self.listeners,
            self.clients.control.as_ref(),
            &self.clients.fifos,
        )
    }
}

/// The files a master made, besides its pidfiles: the unix sockets it bound (not those
/// systemd handed over), the control socket and the master FIFOs. A relative path
/// starts from `files_dir`, where they were made.
pub(super) fn made_files(
    options: &Options,
    files_dir: &Path,
    listeners: &[Listener],
    control: Option<&ControlServer>,
    fifos: &[MasterFifo],
) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for (spec, listener) in options.listen.iter().zip(listeners) {
        if let (steward_options::ListenAddr::Unix(path), false) =
            (&spec.addr, listener.was_handed_over())
        {
            paths.push(files_dir.join(path));
        }
    }
    paths.extend(control.map(|c| files_dir.join(c.path())));
    paths.extend(fifos.iter().map(|f| files_dir.join(f.path())));
    paths
}

/// `vacuum` after a start that failed: the files it made, and the pidfiles that name
/// this process. A safe pidfile is written only once the first generation serves, so
/// one is never this start's to remove.
pub(super) fn vacuum_failed_start(
    options: &Options,
    files_dir: &Path,
    made: Vec<PathBuf>,
    made_root: &MadeFilesRoot,
) {
    let own = std::process::id().to_string();
    let pidfiles = [&options.pidfile, &options.pidfile2]
        .into_iter()
        .flatten()
        .map(|path| files_dir.join(path))
        .filter(|path| std::fs::read_to_string(path).is_ok_and(|text| text.trim() == own));
    remove_files(pidfiles.collect());
    made_root.remove(made);
}

/// Removes `paths`; one that cannot be removed (the master dropped privileges and the
/// directory is not its) is reported and left.
fn remove_files(paths: Vec<PathBuf>) {
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => info!(path = %path.display(), "vacuum: removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %path.display(), error = %e, "vacuum: cannot remove"),
        }
    }
}
