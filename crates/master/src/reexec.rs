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
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, FdFlag, OFlag},
    unistd::Pid,
};
use steward_options::{table, Options};
use tracing::warn;

/// What `steward reexec-check` prints: the handover format this binary reads.
pub const REEXEC_PROTOCOL: &str = "steward reexec 1";

/// How `steward check` ends the warning about a user, group or program it cannot find.
pub const UNRESOLVED_SUFFIX: &str = ": a start here would fail";

/// The variable carrying the handover to the new image.
pub(crate) const REEXEC_VARIABLE: &str = steward_options::vars::REEXEC;

/// The variable carrying, to the new image, the values the running master keeps of the
/// options a reload cannot change. Apart from the handover, so that an image that does
/// not know it (an older one) ignores it rather than refusing the handover.
pub(crate) const KEPT_VARIABLE: &str = steward_options::vars::REEXEC_KEPT;

/// How long the new binary has to answer `reexec-check`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The new binary could not be run to check the configuration.
    #[error("cannot run {path} check: {source}")]
    ConfigCheckSpawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new binary cannot read the configuration the new image would start with.
    #[error("{path} cannot read the configuration: {reason}")]
    ConfigRefused {
        /// The binary.
        path: PathBuf,
        /// Its `check`'s error, or how it ended.
        reason: String,
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
    /// The working directory the master was started in, before `chdir`: the new image
    /// starts there, so that a relative `--config` or `--chdir` means what it meant.
    started_in: Option<PathBuf>,
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
            started_in: std::env::current_dir().ok(),
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

    /// Starts `PATH reexec-check` (in preload mode: the program with
    /// [`crate::preload::REEXEC_CHECK_VARIABLE`], whose check loads the app and may take
    /// `preload_timeout`). The master's loop waits for it (see [`CheckChild`]) and hands
    /// its end to [`Binary::check_ended`].
    pub fn start_check(&self, preload_timeout: Duration) -> Result<CheckChild, ReexecError> {
        let mut command = Command::new(&self.path);
        if self.check_by_environment {
            command.env(crate::preload::REEXEC_CHECK_VARIABLE, "1");
        } else {
            command.arg("reexec-check");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let timeout = if self.check_by_environment {
            preload_timeout
        } else {
            CHECK_TIMEOUT
        };
        CheckChild::spawn(command, CheckStage::Protocol, timeout).map_err(|source| {
            ReexecError::CheckSpawn {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Judges a check child that exited with `status`: the answer to `reexec-check`
    /// then starts `PATH check` of the configuration (returned, to be waited for in
    /// turn); a passed configuration check, or a passed preload check, returns None.
    pub fn check_ended(
        &self,
        mut check: CheckChild,
        status: ExitStatus,
    ) -> Result<Option<CheckChild>, ReexecError> {
        check.read_output();
        let output = String::from_utf8_lossy(&check.output).into_owned();
        match check.stage {
            CheckStage::Protocol => {
                if !(status.success() && output.trim() == REEXEC_PROTOCOL) {
                    return Err(ReexecError::CheckFailed {
                        path: self.path.clone(),
                        answer: format!("{status}, printed {:?}", output.trim()),
                    });
                }
                if self.check_by_environment {
                    // Preload mode: the binary is the user's program, whose check loaded the app.
                    return Ok(None);
                }
                self.start_config_check().map(Some)
            }
            CheckStage::Config => self.config_verdict(status, &output).map(|()| None),
        }
    }

    /// Why a check that ran out of time failed; `check` is killed first.
    pub fn check_timed_out(&self, check: CheckChild) -> ReexecError {
        let (stage, timeout) = (check.stage, check.timeout);
        check.kill();
        let answer = format!("no answer within {timeout:?}");
        match stage {
            CheckStage::Protocol => ReexecError::CheckFailed {
                path: self.path.clone(),
                answer,
            },
            CheckStage::Config => ReexecError::ConfigRefused {
                path: self.path.clone(),
                reason: answer,
            },
        }
    }

    /// Starts `PATH check` with the master's own arguments, from the directory it was
    /// started in: a configuration the new image could not read would end the master
    /// at once, so it must read now.
    fn start_config_check(&self) -> Result<CheckChild, ReexecError> {
        let mut args: Vec<OsString> = self.argv.iter().skip(1).cloned().collect();
        match args.first() {
            Some(first) if first == "run" => args[0] = "check".into(),
            _ => args.insert(0, "check".into()),
        }
        let mut command = Command::new(&self.path);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A master that left root may no longer enter it; then, as the exec, from here.
        let enterable = |dir: &&PathBuf| {
            nix::unistd::access(dir.as_path(), nix::unistd::AccessFlags::X_OK).is_ok()
        };
        if let Some(dir) = self.started_in.as_ref().filter(enterable) {
            command.current_dir(dir);
        }
        CheckChild::spawn(command, CheckStage::Config, CHECK_TIMEOUT).map_err(|source| {
            ReexecError::ConfigCheckSpawn {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// What `PATH check` ending with `status` after printing `err` says of the
    /// configuration.
    fn config_verdict(&self, status: ExitStatus, err: &str) -> Result<(), ReexecError> {
        let refused = |reason: String| ReexecError::ConfigRefused {
            path: self.path.clone(),
            reason,
        };
        if !status.success() {
            let reason = err
                .lines()
                .rev()
                .find_map(|line| line.strip_prefix("steward: error: "))
                .map_or_else(|| format!("check {status}"), str::to_owned);
            return Err(refused(reason));
        }
        // A user, group or program the check could not find would end the new image.
        match err.lines().find(|line| line.ends_with(UNRESOLVED_SUFFIX)) {
            Some(line) => Err(refused(
                line.trim_start_matches("steward: warning: ")
                    .trim_end_matches(UNRESOLVED_SUFFIX)
                    .to_owned(),
            )),
            None => Ok(()),
        }
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
                .filter(|(k, _)| k != REEXEC_VARIABLE && k != KEPT_VARIABLE)
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
            env.push(cstring(
                format!("{KEPT_VARIABLE}={}", encode_kept(running)).as_ref(),
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
}

/// Which check a [`CheckChild`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckStage {
    /// `reexec-check` (or the preload check): its stdout must be [`REEXEC_PROTOCOL`].
    Protocol,
    /// `check` of the configuration: its stderr holds the error or the warnings.
    Config,
}

/// The most of a check's output kept: a check says a line or a few warnings, and one
/// that prints more must not grow the master.
const CHECK_OUTPUT_MAX: usize = 64 * 1024;

/// A check child running while the master's loop goes on serving: the loop polls its
/// output pipe (read as it comes, so a chatty check never blocks on a full pipe),
/// learns its end from SIGCHLD (its pid is reaped with the workers') and kills it at
/// its deadline. It leads a process group of its own, so that killing it (deadline,
/// shutdown) also ends what it started, such as a wrapper script's `sleep`.
#[derive(Debug)]
pub(crate) struct CheckChild {
    pub pid: Pid,
    pub deadline: Instant,
    stage: CheckStage,
    timeout: Duration,
    pipe: Option<std::fs::File>,
    output: Vec<u8>,
}

impl CheckChild {
    fn spawn(
        mut command: Command,
        stage: CheckStage,
        timeout: Duration,
    ) -> std::io::Result<CheckChild> {
        use std::os::unix::process::CommandExt;
        command.env_remove(REEXEC_VARIABLE).process_group(0);
        let mut child = command.spawn()?;
        let pipe = match stage {
            CheckStage::Protocol => child.stdout.take().map(std::os::fd::OwnedFd::from),
            CheckStage::Config => child.stderr.take().map(std::os::fd::OwnedFd::from),
        };
        let pipe = pipe.map(std::fs::File::from);
        if let Some(pipe) = &pipe {
            // Read whenever poll says so, and once more at the end: never block there.
            let _ = fcntl(pipe.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
        // The master reaps it by pid (waitpid of any child); the handle is not waited on.
        let pid = Pid::from_raw(child.id() as i32);
        drop(child);
        Ok(CheckChild {
            pid,
            deadline: Instant::now() + timeout,
            stage,
            timeout,
            pipe,
            output: Vec::new(),
        })
    }

    /// The output pipe, for the loop's poll, until it reached its end.
    pub fn pipe(&self) -> Option<BorrowedFd<'_>> {
        self.pipe.as_ref().map(|p| p.as_fd())
    }

    /// Reads what the check printed so far; closes the pipe at its end.
    pub fn read_output(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut buffer = [0u8; 4096];
        loop {
            match std::io::Read::read(pipe, &mut buffer) {
                Ok(0) => {
                    self.pipe = None;
                    return;
                }
                Ok(n) => {
                    let room = CHECK_OUTPUT_MAX.saturating_sub(self.output.len());
                    self.output.extend_from_slice(&buffer[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // WouldBlock: all there is for now (a grandchild may keep it open).
                Err(_) => return,
            }
        }
    }

    /// Kills the check and what it started, and reaps it.
    pub fn kill(self) {
        let _ = nix::sys::signal::killpg(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// The exit status of a reaped child, as std shows it ("exit status: 1").
pub(crate) fn exit_status(status: &nix::sys::wait::WaitStatus) -> ExitStatus {
    use nix::sys::wait::WaitStatus;
    use std::os::unix::process::ExitStatusExt;
    match *status {
        WaitStatus::Exited(_, code) => ExitStatus::from_raw((code & 0xff) << 8),
        WaitStatus::Signaled(_, signal, _) => ExitStatus::from_raw(signal as i32),
        _ => ExitStatus::from_raw(0x7f),
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

/// The options a reload cannot change (the table's `needs_restart`), one `NAME VALUE`
/// line per value of each, with `\\` and newlines escaped; a name alone marks an
/// option with no value.
pub(crate) fn encode_kept(running: &Options) -> String {
    let mut out = String::new();
    for def in kept_defs() {
        let values = def.show(running);
        if values.is_empty() {
            out += &format!("{}\n", def.name());
        }
        for value in values {
            let escaped = value.replace('\\', "\\\\").replace('\n', "\\n");
            out += &format!("{} {escaped}\n", def.name());
        }
    }
    out
}

/// The running master's options, rebuilt from [`encode_kept`]'s text: the kept options
/// have the running values, the others their defaults.
pub(crate) fn decode_kept(text: &str) -> Result<Options, String> {
    let mut options = Options::new(Vec::new());
    let mut cleared = std::collections::HashSet::new();
    for line in text.lines() {
        let (name, value) = match line.split_once(' ') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        let def = kept_defs()
            .find(|def| def.name() == name)
            .ok_or_else(|| format!("{name}: not an option a reload keeps"))?;
        if cleared.insert(name) {
            def.clear(&mut options);
        }
        if let Some(value) = value {
            let mut unescaped = String::with_capacity(value.len());
            let mut chars = value.chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => unescaped.push('\n'),
                        Some(other) => unescaped.push(other),
                        None => return Err(format!("{name}: a value ends in a lone \\")),
                    },
                    (c, false) => unescaped.push(c),
                }
            }
            def.apply(&mut options, &unescaped)
                .map_err(|e| format!("{name}: {e}"))?;
        }
    }
    Ok(options)
}

fn kept_defs() -> impl Iterator<Item = &'static table::OptionDef> {
    table::table()
        .iter()
        .filter(|def| def.key() == def.name() && def.needs_restart())
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

/// Reads (and removes) the running options a previous image of this process left in
/// the environment.
pub(crate) fn take_kept() -> Option<String> {
    let text = std::env::var_os(KEPT_VARIABLE)?;
    std::env::remove_var(KEPT_VARIABLE);
    Some(text.to_string_lossy().into_owned())
}

/// Reads (and removes) the handover a previous image of this process left in the
/// environment. One left for another pid is stale (inherited by accident) and ignored.
pub(crate) fn take_handover() -> Result<Option<Handover>, crate::MasterError> {
    let Some(text) = std::env::var_os(REEXEC_VARIABLE) else {
        return Ok(None);
    };
    std::env::remove_var(REEXEC_VARIABLE);
    let handover =
        Handover::decode(&text.to_string_lossy()).map_err(crate::MasterError::BadHandover)?;
    if handover.pid != std::process::id() {
        warn!(
            pid = handover.pid,
            "ignored a re-exec handover meant for another process"
        );
        return Ok(None);
    }
    Ok(Some(handover))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a reload keeps crosses the exec intact: lists, flags, unset values, and
    /// text with backslashes or newlines.
    #[test]
    fn the_kept_options_cross_the_exec_intact() {
        let mut running = Options::new(Vec::new());
        let set = |options: &mut Options, name: &str, value: &str| {
            let def = table::table().iter().find(|d| d.name() == name).unwrap();
            def.apply(options, value).unwrap();
        };
        set(&mut running, "chdir", "/srv/a b");
        set(&mut running, "procname-master", "app \\master\nline");
        set(&mut running, "master-fifo", "/run/one.fifo");
        set(&mut running, "master-fifo", "/run/two.fifo");
        set(&mut running, "vacuum", "true");
        set(&mut running, "uid", "nobody");
        set(&mut running, "hook-as-user", "exec:echo a,b");
        set(&mut running, "listen", "127.0.0.1:8080");
        assert_eq!(decode_kept(&encode_kept(&running)).unwrap(), running);
        let defaults = Options::new(Vec::new());
        assert_eq!(decode_kept(&encode_kept(&defaults)).unwrap(), defaults);
    }

    #[test]
    fn an_unknown_kept_option_is_refused_by_name() {
        let error = decode_kept("workers 3\n").unwrap_err();
        assert!(error.starts_with("workers:"), "{error}");
    }

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
