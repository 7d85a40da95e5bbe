use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use steward_options::vars;
use steward_sys::ExecPlan;

use crate::MasterError;

/// Variables the master sets for each worker; any inherited value is dropped first.
pub(crate) const WORKER_VARIABLES: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "FDSTORE",
    vars::WORKER_ID,
    vars::GENERATION,
];

/// The worker command, resolved once, and the environment every worker shares.
#[derive(Debug)]
pub(crate) struct WorkerCommand {
    program: PathBuf,
    argv: Vec<OsString>,
    shared_env: Vec<(OsString, OsString)>,
    with_sockets: bool,
    /// `worker-watchdog`: WATCHDOG_USEC and WATCHDOG_PID for each worker.
    watchdog: Option<std::time::Duration>,
    /// For messages: the command as the user wrote it.
    pub display: String,
}

impl WorkerCommand {
    pub fn new(
        command: &[String],
        fd_names: &[String],
        notify_socket: &Path,
    ) -> Result<Self, MasterError> {
        let program = resolve(&command[0])?;
        let mut shared_env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| !WORKER_VARIABLES.iter().any(|v| key == v))
            .collect();
        shared_env.extend(shared_worker_env(fd_names, notify_socket));
        Ok(WorkerCommand {
            program,
            argv: command.iter().map(OsString::from).collect(),
            shared_env,
            with_sockets: !fd_names.is_empty(),
            watchdog: None,
            display: command.join(" "),
        })
    }

    /// Gives each worker `WATCHDOG_USEC` and `WATCHDOG_PID` (its own pid), as systemd
    /// gives them to a service, when `watchdog` is set.
    pub fn with_watchdog(mut self, watchdog: Option<std::time::Duration>) -> Self {
        self.watchdog = watchdog;
        self
    }

    /// The plan for worker `id` of `generation`, with `title` as its argv[0] if given
    /// (the program run is the same).
    pub fn plan(
        &self,
        id: usize,
        generation: u64,
        title: Option<&str>,
    ) -> Result<ExecPlan, MasterError> {
        let mut argv = self.argv.clone();
        if let Some(title) = title {
            argv[0] = title.into();
        }
        let mut env = self.shared_env.clone();
        env.extend(own_worker_env(id, generation));
        if let Some(watchdog) = self.watchdog {
            env.push((
                "WATCHDOG_USEC".into(),
                watchdog.as_micros().to_string().into(),
            ));
        }
        let plan = ExecPlan::new(&self.program, &argv, &env, self.with_sockets)?;
        Ok(match self.watchdog {
            Some(_) => plan.with_pid_var("WATCHDOG_PID"),
            None => plan,
        })
    }
}

/// What every worker of this master is told (LISTEN_PID, its own pid, is added at the
/// fork): its sockets' count and names, and where to send READY=1.
pub(crate) fn shared_worker_env(
    fd_names: &[String],
    notify_socket: &Path,
) -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    if !fd_names.is_empty() {
        env.push(("LISTEN_FDS".into(), fd_names.len().to_string().into()));
        env.push(("LISTEN_FDNAMES".into(), fd_names.join(":").into()));
    }
    env.push(("NOTIFY_SOCKET".into(), notify_socket.as_os_str().to_owned()));
    env
}

/// What one worker is told of itself: its slot and generation.
pub(crate) fn own_worker_env(id: usize, generation: u64) -> [(OsString, OsString); 2] {
    [
        (vars::WORKER_ID.into(), id.to_string().into()),
        (vars::GENERATION.into(), generation.to_string().into()),
    ]
}

/// Finds the program the way a shell would, once at start, so that the child only
/// needs execve and a missing program is reported before anything is forked.
pub(crate) fn resolve(program: &str) -> Result<PathBuf, MasterError> {
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![std::path::absolute(program).unwrap_or_else(|_| PathBuf::from(program))]
    } else {
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .collect()
    };
    let executable = |path: &Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match candidates.iter().find(|path| executable(path)) {
        Some(found) => Ok(found.clone()),
        None if program.contains('/') => {
            Err(MasterError::CommandNotExecutable(candidates[0].clone()))
        }
        None => Err(MasterError::CommandNotFound(program.to_owned())),
    }
}
