//! The checks of the new binary before a re-exec, run while the master goes on
//! serving: `NEW reexec-check` (can it run, which handover does it read), then
//! `NEW check` of the configuration the new image would start with. Each answers with
//! a [`CheckReport`] (see [`super::report`]); a binary older than the report answers
//! the first with [`REEXEC_PROTOCOL`] alone.

use std::{
    ffi::OsString,
    os::fd::{AsFd, BorrowedFd},
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    fcntl::{fcntl, FcntlArg, OFlag},
    unistd::Pid,
};

use super::{
    handover::HANDOVER_VERSION, report::REPORT_VARIABLE, Binary, CheckReport, ReexecError,
    REEXEC_PROTOCOL, REEXEC_VARIABLE,
};

/// How long the new binary has to answer `reexec-check`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a check's output kept: a check says a line or a few warnings, and one
/// that prints more must not grow the master.
const CHECK_OUTPUT_MAX: usize = 64 * 1024;

/// Which check a [`CheckChild`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckStage {
    /// `reexec-check` (or the preload check): which handover it reads.
    Protocol,
    /// `check` of the configuration.
    Config,
}

impl Binary {
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
    /// turn); a passed configuration check, or a passed preload check, returns None,
    /// and the handover [`Binary::exec`] writes is one the binary said it reads.
    pub fn check_ended(
        &mut self,
        mut check: CheckChild,
        status: ExitStatus,
    ) -> Result<Option<CheckChild>, ReexecError> {
        check.read_output();
        let output = String::from_utf8_lossy(&check.output).into_owned();
        match check.stage {
            CheckStage::Protocol => {
                self.reads = self.protocol_verdict(status, &output)?;
                if self.check_by_environment {
                    // Preload mode: the binary is the user's program, whose check loaded the app.
                    return Ok(None);
                }
                self.start_config_check().map(Some)
            }
            CheckStage::Config => {
                self.reads = self.config_verdict(status, &output)?;
                Ok(None)
            }
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

    /// The handover version the answer to `reexec-check` says the binary reads.
    fn protocol_verdict(&self, status: ExitStatus, output: &str) -> Result<u32, ReexecError> {
        if status.success() {
            if output.trim() == REEXEC_PROTOCOL {
                return Ok(1);
            }
            if let Some(report) = CheckReport::parse(output).filter(|r| r.accepted) {
                return Ok(report.protocol.min(HANDOVER_VERSION));
            }
        }
        Err(ReexecError::CheckFailed {
            path: self.path.clone(),
            answer: format!("{status}, printed {:?}", output.trim()),
        })
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
        command.args(&args);
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

    /// What the report of `PATH check`, ended with `status`, says of the configuration;
    /// accepted, the handover version the binary reads.
    fn config_verdict(&self, status: ExitStatus, output: &str) -> Result<u32, ReexecError> {
        let Some(report) = CheckReport::parse(output) else {
            return Err(ReexecError::NoReport {
                path: self.path.clone(),
                status,
            });
        };
        if !report.accepted {
            return Err(ReexecError::ConfigRefused {
                path: self.path.clone(),
                reason: report.reason(),
            });
        }
        Ok(report.protocol.min(HANDOVER_VERSION))
    }
}

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
    /// Starts `command` with its stdout, where the answer comes, on a pipe.
    fn spawn(
        mut command: Command,
        stage: CheckStage,
        timeout: Duration,
    ) -> std::io::Result<CheckChild> {
        use std::os::unix::process::CommandExt;
        command
            .env_remove(REEXEC_VARIABLE)
            .env(REPORT_VARIABLE, "1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn()?;
        let pipe = child
            .stdout
            .take()
            .map(|out| std::fs::File::from(std::os::fd::OwnedFd::from(out)));
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
