//! Binary upgrades in place: when the steward binary on disk is no longer the one
//! running (a package upgrade replaced it) or `binary-path` names another, a reload
//! first re-execs the master. The pid stays, so systemd's MainPID holds; the listening
//! sockets, the notify socket, the control socket and its waiting clients cross the
//! exec as open descriptors; the running workers stay our children and are adopted
//! from a description passed in `STEWARD_REEXEC`; then the new binary carries out the
//! reload that asked for the upgrade.
//!
//! Before giving up its image the old master runs `NEW reexec-check`, which must print
//! [`REEXEC_PROTOCOL`]: a binary that cannot run, or speaks another handover, is never
//! exec'd, and the old master goes on (and reloads) as it is.

use std::{
    ffi::{CString, OsString},
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
        unix::{ffi::OsStrExt, fs::MetadataExt},
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, FdFlag},
    unistd::Pid,
};

/// What `steward reexec-check` prints: the handover format this binary reads.
pub const REEXEC_PROTOCOL: &str = "steward reexec 1";

/// The variable carrying the handover to the new image.
pub(crate) const REEXEC_VARIABLE: &str = "STEWARD_REEXEC";

/// How long the new binary has to answer `reexec-check`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a preloading program has to answer: its check loads the app first.
const PRELOAD_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a re-exec did not happen; the old master keeps running in each case.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    /// The new binary could not be run for its check.
    #[error("cannot run {path} reexec-check: {source}")]
    CheckSpawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new binary answered the check wrongly, failed it or took too long.
    #[error("{path} reexec-check did not answer {REEXEC_PROTOCOL:?}: {answer}")]
    CheckFailed {
        /// The binary.
        path: PathBuf,
        /// What it did instead.
        answer: String,
    },
    /// A descriptor could not be kept open across the exec.
    #[error("cannot keep fd {fd} across the exec: {errno}")]
    KeepFd {
        /// The descriptor.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// A path, argument or variable holds a NUL byte.
    #[error("cannot pass {0:?} to execve: it contains a NUL byte")]
    Nul(OsString),
    /// execve itself failed.
    #[error("execve {path} failed: {errno}")]
    Exec {
        /// The binary.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
}

/// The binary the master would re-exec, and the one it runs.
#[derive(Debug)]
pub(crate) struct Binary {
    /// Where the new binary is looked for: `binary-path`, else where ours was started from.
    pub path: PathBuf,
    running: Option<(u64, u64)>,
    /// The command line the master was started with, kept before anything can rewrite
    /// the argv memory (process names).
    argv: Vec<OsString>,
    /// Ask the check through [`crate::preload::REEXEC_CHECK_VARIABLE`] rather than a
    /// `reexec-check` argument: in preload mode the binary is the user's program, and
    /// its check loads the app (so a new build that cannot load is never exec'd).
    pub check_by_environment: bool,
}

impl Binary {
    pub fn new(binary_path: Option<&Path>) -> Binary {
        let exe = std::fs::read_link("/proc/self/exe").ok();
        let path = binary_path.map(Path::to_owned).or_else(|| {
            exe.map(|p| {
                // The link of a replaced binary reads "/usr/bin/steward (deleted)".
                let text = p.as_os_str().as_bytes();
                let trimmed = text.strip_suffix(b" (deleted)").unwrap_or(text);
                PathBuf::from(std::ffi::OsStr::from_bytes(trimmed))
            })
        });
        let running = std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Binary {
            path: path.unwrap_or_else(|| PathBuf::from("steward")),
            running,
            argv: std::env::args_os().collect(),
            check_by_environment: false,
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

    /// Runs `PATH reexec-check` and insists on the expected answer.
    pub fn check(&self) -> Result<(), ReexecError> {
        let mut command = Command::new(&self.path);
        if self.check_by_environment {
            command.env(crate::preload::REEXEC_CHECK_VARIABLE, "1");
        } else {
            command.arg("reexec-check");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove(REEXEC_VARIABLE)
            .spawn()
            .map_err(|source| ReexecError::CheckSpawn {
                path: self.path.clone(),
                source,
            })?;
        let failed = |answer: String| ReexecError::CheckFailed {
            path: self.path.clone(),
            answer,
        };
        // The loop is blocked meanwhile; a sane binary answers in milliseconds and a
        // hung one is given up on.
        let timeout = if self.check_by_environment {
            PRELOAD_CHECK_TIMEOUT
        } else {
            CHECK_TIMEOUT
        };
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!("no answer within {timeout:?}")));
                }
            }
        };
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        }
        if status.success() && out.trim() == REEXEC_PROTOCOL {
            Ok(())
        } else {
            Err(failed(format!("{status}, printed {:?}", out.trim())))
        }
    }

    /// Replaces this process image with the binary, `state` in its environment and the
    /// descriptors `keep` left open. Returns only on failure, with every descriptor
    /// close-on-exec again.
    pub fn exec(&self, state: &Handover, keep: &[BorrowedFd<'_>]) -> ReexecError {
        let cstring = |s: &std::ffi::OsStr| {
            CString::new(s.as_bytes()).map_err(|_| ReexecError::Nul(s.to_owned()))
        };
        let prepared = (|| {
            let path = cstring(self.path.as_os_str())?;
            let argv = self
                .argv
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<Vec<_>, _>>()?;
            let mut env = std::env::vars_os()
                .filter(|(k, _)| k != REEXEC_VARIABLE)
                .map(|(k, v)| {
                    let mut pair = k;
                    pair.push("=");
                    pair.push(v);
                    cstring(&pair)
                })
                .collect::<Result<Vec<_>, _>>()?;
            env.push(cstring(
                format!("{REEXEC_VARIABLE}={}", state.encode()).as_ref(),
            )?);
            Ok::<_, ReexecError>((path, argv, env))
        })();
        let (path, argv, env) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return e,
        };
        if let Err(e) = set_cloexec(keep, false) {
            let _ = set_cloexec(keep, true);
            return e;
        }
        let errno = match nix::unistd::execve(&path, &argv, &env) {
            Err(errno) => errno,
            Ok(never) => match never {},
        };
        let _ = set_cloexec(keep, true);
        ReexecError::Exec {
            path: self.path.clone(),
            errno,
        }
    }
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

/// One worker as the old image knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandedWorker {
    pub id: usize,
    pub generation: u64,
    pub pid: Pid,
    /// `starting`, `ready` or `stopping`.
    pub state: String,
    pub age: Duration,
    /// For a stopping worker: how long until its SIGKILL (none once killed).
    pub kill_in: Option<Duration>,
    pub respawned: bool,
}

/// Everything the new image needs to go on where the old one stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Handover {
    pub pid: u32,
    pub current: u64,
    pub latest: u64,
    pub serving: Option<u64>,
    pub desired: usize,
    /// The reload to carry out once adopted: chain or not.
    pub reload_chain: bool,
    /// (fd, handed over by the service manager, LISTEN_FDNAMES name)
    pub listeners: Vec<(RawFd, bool, String)>,
    pub notify: Option<(RawFd, PathBuf)>,
    pub control: Option<(RawFd, PathBuf)>,
    /// Control clients waiting for a reload's outcome: (fd, generation).
    pub waiters: Vec<(RawFd, u64)>,
    pub workers: Vec<HandedWorker>,
}

/// A handover that cannot be read: the new image refuses to start from it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot read the re-exec handover (line {line}): {reason}")]
pub struct HandoverError {
    line: usize,
    reason: String,
}

impl Handover {
    /// One line per item: `KEY VALUE...`, paths and names last so they may hold spaces.
    pub fn encode(&self) -> String {
        let mut out = format!("{REEXEC_PROTOCOL}\npid {}\n", self.pid);
        out += &format!(
            "generations {} {} {} {}\n",
            self.current,
            self.latest,
            self.serving.map_or("-".into(), |g| g.to_string()),
            self.desired
        );
        out += &format!(
            "reload {}\n",
            if self.reload_chain {
                "chain"
            } else {
                "graceful"
            }
        );
        for (fd, handed_over, name) in &self.listeners {
            out += &format!("listener {fd} {} {name}\n", u8::from(*handed_over));
        }
        if let Some((fd, path)) = &self.notify {
            out += &format!("notify {fd} {}\n", path.display());
        }
        if let Some((fd, path)) = &self.control {
            out += &format!("control {fd} {}\n", path.display());
        }
        for (fd, generation) in &self.waiters {
            out += &format!("waiter {fd} {generation}\n");
        }
        for w in &self.workers {
            out += &format!(
                "worker {} {} {} {} {} {} {}\n",
                w.id,
                w.generation,
                w.pid,
                w.state,
                w.age.as_millis(),
                w.kill_in.map_or("-".into(), |d| d.as_millis().to_string()),
                u8::from(w.respawned)
            );
        }
        out
    }

    pub fn decode(text: &str) -> Result<Handover, HandoverError> {
        let mut handover = Handover::default();
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, first)) if first == REEXEC_PROTOCOL => {}
            other => {
                return Err(HandoverError {
                    line: 1,
                    reason: format!(
                        "expected {REEXEC_PROTOCOL:?}, found {:?}",
                        other.map_or("", |(_, l)| l)
                    ),
                })
            }
        }
        for (index, line) in lines {
            let bad = |reason: &str| HandoverError {
                line: index + 1,
                reason: format!("{reason}: {line:?}"),
            };
            let (key, rest) = line.split_once(' ').ok_or_else(|| bad("no value"))?;
            let mut words = rest.splitn(
                match key {
                    "listener" => 3,
                    "notify" | "control" => 2,
                    _ => usize::MAX,
                },
                ' ',
            );
            let mut next = || words.next().ok_or_else(|| bad("too few values"));
            fn num<T: std::str::FromStr>(
                word: &str,
                bad: &dyn Fn(&str) -> HandoverError,
            ) -> Result<T, HandoverError> {
                word.parse().map_err(|_| bad("not a number"))
            }
            match key {
                "pid" => handover.pid = num(next()?, &bad)?,
                "generations" => {
                    handover.current = num(next()?, &bad)?;
                    handover.latest = num(next()?, &bad)?;
                    handover.serving = match next()? {
                        "-" => None,
                        g => Some(num(g, &bad)?),
                    };
                    handover.desired = num(next()?, &bad)?;
                }
                "reload" => handover.reload_chain = next()? == "chain",
                "listener" => {
                    let fd = num(next()?, &bad)?;
                    let handed_over = next()? == "1";
                    handover
                        .listeners
                        .push((fd, handed_over, next()?.to_owned()));
                }
                "notify" => handover.notify = Some((num(next()?, &bad)?, next()?.into())),
                "control" => handover.control = Some((num(next()?, &bad)?, next()?.into())),
                "waiter" => handover
                    .waiters
                    .push((num(next()?, &bad)?, num(next()?, &bad)?)),
                "worker" => {
                    let id = num(next()?, &bad)?;
                    let generation = num(next()?, &bad)?;
                    let pid = Pid::from_raw(num(next()?, &bad)?);
                    let state = next()?.to_owned();
                    if !["starting", "ready", "stopping"].contains(&state.as_str()) {
                        return Err(bad("unknown worker state"));
                    }
                    let age = Duration::from_millis(num(next()?, &bad)?);
                    let kill_in = match next()? {
                        "-" => None,
                        ms => Some(Duration::from_millis(num(ms, &bad)?)),
                    };
                    let respawned = next()? == "1";
                    handover.workers.push(HandedWorker {
                        id,
                        generation,
                        pid,
                        state,
                        age,
                        kill_in,
                        respawned,
                    });
                }
                _ => return Err(bad("unknown key")),
            }
        }
        Ok(handover)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_reads_back_as_written() {
        let handover = Handover {
            pid: 42,
            current: 3,
            latest: 4,
            serving: Some(3),
            desired: 2,
            reload_chain: true,
            listeners: vec![(3, false, "web".into()), (4, true, "admin".into())],
            notify: Some((5, "/run/steward/app/steward.42.notify".into())),
            control: Some((6, "/run/with space/control.sock".into())),
            waiters: vec![(7, 4)],
            workers: vec![
                HandedWorker {
                    id: 1,
                    generation: 3,
                    pid: Pid::from_raw(100),
                    state: "ready".into(),
                    age: Duration::from_millis(1500),
                    kill_in: None,
                    respawned: false,
                },
                HandedWorker {
                    id: 2,
                    generation: 2,
                    pid: Pid::from_raw(101),
                    state: "stopping".into(),
                    age: Duration::from_millis(99),
                    kill_in: Some(Duration::from_millis(2500)),
                    respawned: true,
                },
            ],
        };
        assert_eq!(Handover::decode(&handover.encode()), Ok(handover));
    }

    #[test]
    fn a_foreign_or_broken_handover_is_refused_with_its_line() {
        let error = Handover::decode("steward reexec 0\n").unwrap_err();
        assert_eq!(error.line, 1);
        let error = Handover::decode(&format!("{REEXEC_PROTOCOL}\npid x\n")).unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.to_string().contains("not a number"), "{error}");
        let broken = format!("{REEXEC_PROTOCOL}\nworker 1 1 5 dancing 0 - 0\n");
        assert!(Handover::decode(&broken)
            .unwrap_err()
            .to_string()
            .contains("unknown worker state"));
    }
}
