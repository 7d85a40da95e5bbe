//! The binary the master would re-exec into, and the exec itself.

use std::{
    ffi::{CString, OsStr, OsString},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use steward_options::Options;
use tracing::warn;

use super::{kept::encode_kept, Handover, ReexecError, KEPT_VARIABLE, REEXEC_VARIABLE};

/// The binary the master would re-exec, and the one it runs.
#[derive(Debug)]
pub(crate) struct Binary {
    /// Where the new binary is looked for: `binary-path`, else where ours was started from.
    pub path: PathBuf,
    running: Option<(u64, u64)>,
    /// The command line the master was started with, kept before anything can rewrite
    /// the argv memory (process names).
    pub(super) argv: Vec<OsString>,
    /// The working directory the master was started in, before `chdir`: the new image
    /// starts there, so that a relative `--config` or `--chdir` means what it meant.
    pub(super) started_in: Option<PathBuf>,
    /// Ask the check through [`crate::preload::REEXEC_CHECK_VARIABLE`] rather than a
    /// `reexec-check` argument: in preload mode the binary is the user's program, and
    /// its check loads the app (so a new build that cannot load is never exec'd).
    pub check_by_environment: bool,
    /// The newest handover the binary on disk said it reads, at its last check: what
    /// [`Binary::exec`] writes. The first version until a check says more, as every
    /// binary reads that one.
    pub(super) reads: u32,
}

impl Binary {
    pub fn new(binary_path: Option<&Path>) -> Binary {
        let exe = std::fs::read_link("/proc/self/exe").ok();
        let path = binary_path.map(Path::to_owned).or_else(|| {
            exe.map(|p| {
                // The link of a replaced binary reads "/usr/bin/steward (deleted)".
                let text = p.as_os_str().as_bytes();
                let trimmed = text.strip_suffix(b" (deleted)").unwrap_or(text);
                PathBuf::from(OsStr::from_bytes(trimmed))
            })
        });
        let running = std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Binary {
            path: path.unwrap_or_else(|| PathBuf::from("steward")),
            running,
            argv: std::env::args_os().collect(),
            started_in: std::env::current_dir().ok(),
            check_by_environment: false,
            reads: 1,
        }
    }

    /// The command line the master was started with.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Whether the file at `path` is another file than the one running.
    pub fn changed(&self) -> bool {
        let on_disk = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        on_disk.is_some() && on_disk != self.running
    }

    /// Replaces this process image with the binary, `state` in its environment and the
    /// descriptors `keep` left open. Returns only on failure, with every descriptor
    /// close-on-exec again.
    pub fn exec(
        &self,
        state: &Handover,
        running: &Options,
        keep: &[BorrowedFd<'_>],
    ) -> ReexecError {
        let (path, argv, env) = match self.prepare(state, running) {
            Ok(prepared) => prepared,
            Err(e) => return e,
        };
        if let Err(e) = set_cloexec(keep, false) {
            let _ = set_cloexec(keep, true);
            return e;
        }
        let here = std::env::current_dir().ok();
        if let Some(dir) = &self.started_in {
            if let Err(errno) = nix::unistd::chdir(dir.as_path()) {
                warn!(dir = %dir.display(), %errno,
                    "cannot re-exec from the directory steward was started in; relative paths of its command line now start from here");
            }
        }
        let errno = match nix::unistd::execve(&path, &argv, &env) {
            Err(errno) => errno,
            Ok(never) => match never {},
        };
        if let Some(dir) = &here {
            let _ = nix::unistd::chdir(dir.as_path());
        }
        let _ = set_cloexec(keep, true);
        ReexecError::Exec {
            path: self.path.clone(),
            errno,
        }
    }

    /// execve's path, argv and environment: ours, with the handover (in the version
    /// the binary reads) and the kept options in place of any inherited.
    fn prepare(&self, state: &Handover, running: &Options) -> Result<Exec, ReexecError> {
        let path = cstring(self.path.as_os_str())?;
        let argv = self
            .argv
            .iter()
            .map(|a| cstring(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = std::env::vars_os()
            .filter(|(k, _)| k != REEXEC_VARIABLE && k != KEPT_VARIABLE)
            .map(|(k, v)| {
                let mut pair = k;
                pair.push("=");
                pair.push(v);
                cstring(&pair)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let handover = state.encode(self.reads).map_err(ReexecError::Encode)?;
        env.push(cstring(format!("{REEXEC_VARIABLE}={handover}").as_ref())?);
        env.push(cstring(
            format!("{KEPT_VARIABLE}={}", encode_kept(running)).as_ref(),
        )?);
        Ok((path, argv, env))
    }
}

/// execve's arguments.
type Exec = (CString, Vec<CString>, Vec<CString>);

fn cstring(s: &OsStr) -> Result<CString, ReexecError> {
    CString::new(s.as_bytes()).map_err(|_| ReexecError::Nul(s.to_owned()))
}

fn set_cloexec(fds: &[BorrowedFd<'_>], on: bool) -> Result<(), ReexecError> {
    for fd in fds {
        let flags = if on {
            FdFlag::FD_CLOEXEC
        } else {
            FdFlag::empty()
        };
        fcntl(fd.as_fd(), FcntlArg::F_SETFD(flags)).map_err(|errno| ReexecError::KeepFd {
            fd: fd.as_raw_fd(),
            errno,
        })?;
    }
    Ok(())
}
