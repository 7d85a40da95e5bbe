//! Mules: auxiliary processes (`mule = COMMAND`) the master runs and keeps alive beside
//! the workers, without the listening sockets. The supervisor decides when each starts
//! and stops (supervisor/mules.rs); this is how one is started.

use std::{ffi::OsString, os::fd::BorrowedFd, path::Path};

use nix::unistd::Pid;
use steward_sys::{spawn, ChildFds, ExecPlan};

use crate::{command::WORKER_VARIABLES, MasterError};

/// One `mule = COMMAND`, run with `/bin/sh -c "exec COMMAND"`.
#[derive(Debug)]
pub(crate) struct MuleCommand {
    /// The command as written.
    pub command: String,
    plan: ExecPlan,
}

impl MuleCommand {
    /// Mule `id` (1-based, in configuration order; given as STEWARD_MULE_ID).
    pub fn new(id: usize, command: &str) -> Result<MuleCommand, MasterError> {
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
        Ok(MuleCommand {
            command: command.to_owned(),
            plan,
        })
    }

    /// Forks and execs the mule, its stdin `stdin`, no sockets.
    pub fn start(&mut self, stdin: BorrowedFd<'_>) -> Result<Pid, steward_sys::SpawnError> {
        let fds = ChildFds {
            stdin: Some(stdin),
            output: None,
            sockets: &[],
        };
        spawn(&mut self.plan, &fds)
    }
}

/// The mules of `commands`, none started yet.
pub(crate) fn mule_commands(commands: &[String]) -> Result<Vec<MuleCommand>, MasterError> {
    commands
        .iter()
        .enumerate()
        .map(|(index, command)| MuleCommand::new(index + 1, command))
        .collect()
}
