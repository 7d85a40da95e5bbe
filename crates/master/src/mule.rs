//! Mules: auxiliary processes (`mule = COMMAND`) the master runs and keeps alive beside
//! the workers, without the listening sockets.

use std::{
    ffi::OsString,
    os::fd::BorrowedFd,
    path::Path,
    time::{Duration, Instant},
};

use nix::unistd::Pid;
use steward_sys::{spawn, ChildFds, ExecPlan};

use crate::{
    command::WORKER_VARIABLES,
    supervisor::{Backoff, BackoffPolicy},
    MasterError,
};

/// Where a mule is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MuleState {
    /// Not running; started again at `at` (at once when in the past).
    Waiting { at: Instant },
    /// Running.
    Running { pid: Pid, started: Instant },
    /// Asked to stop; SIGKILL at `kill_at` unless `killed` already.
    Stopping {
        pid: Pid,
        kill_at: Instant,
        killed: bool,
    },
    /// Stopped for good (shutdown).
    Stopped,
}

/// One `mule = COMMAND`: its command, run with `/bin/sh -c "exec COMMAND"`, and its state.
#[derive(Debug)]
pub(crate) struct Mule {
    /// 1-based, in configuration order; given as STEWARD_MULE_ID.
    pub id: usize,
    /// The command as written.
    pub command: String,
    plan: ExecPlan,
    pub state: MuleState,
    crashes: Backoff,
}

impl Mule {
    pub fn new(id: usize, command: &str) -> Result<Mule, MasterError> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            // A mule has no sockets and no notify socket of its own.
            .filter(|(key, _)| !WORKER_VARIABLES.iter().any(|v| key == v))
            .collect();
        env.push((steward_options::vars::MULE_ID.into(), id.to_string().into()));
        let argv: Vec<OsString> = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("exec {command}").into(),
        ];
        let plan = ExecPlan::new(Path::new("/bin/sh"), &argv, &env, false)?;
        Ok(Mule {
            id,
            command: command.to_owned(),
            plan,
            state: MuleState::Waiting { at: Instant::now() },
            crashes: Backoff::default(),
        })
    }

    /// Forks and execs the mule, its stdin `stdin`, no sockets.
    pub fn start(&mut self, stdin: BorrowedFd<'_>) -> Result<Pid, steward_sys::SpawnError> {
        let fds = ChildFds {
            stdin: Some(stdin),
            sockets: &[],
        };
        let pid = spawn(&mut self.plan, &fds)?;
        self.state = MuleState::Running {
            pid,
            started: Instant::now(),
        };
        Ok(pid)
    }

    /// When the loop must next act on it: its start, or its SIGKILL.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            MuleState::Waiting { at } => Some(at),
            MuleState::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            _ => None,
        }
    }

    /// The mule's pid, if it runs.
    pub fn pid(&self) -> Option<Pid> {
        match self.state {
            MuleState::Running { pid, .. } | MuleState::Stopping { pid, .. } => Some(pid),
            MuleState::Waiting { .. } | MuleState::Stopped => None,
        }
    }

    /// It exited unasked: when to start it again (backoff as for workers).
    pub fn exited(&mut self, policy: BackoffPolicy) -> Duration {
        let lived = match self.state {
            MuleState::Running { started, .. } => started.elapsed(),
            _ => Duration::ZERO,
        };
        let delay = self.crashes.crashed(0, lived, policy);
        self.state = MuleState::Waiting {
            at: Instant::now() + delay,
        };
        delay
    }
}
