use std::{io, path::PathBuf};

use nix::errno::Errno;

/// Why the master could not start, or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The options do not hold together.
    #[error(transparent)]
    Options(#[from] steward_options::OptionError),
    /// A listening socket could not be created or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as configured.
        addr: String,
        /// The failing call's error.
        source: Errno,
    },
    /// `chmod-socket` could not be applied to a unix socket steward bound.
    #[error("chmod-socket: cannot change the mode of {}: {source}", path.display())]
    ChmodSocket {
        /// The socket file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `chown-socket` could not be applied to a unix socket steward bound.
    #[error("chown-socket: cannot change the owner of {}: {source}", path.display())]
    ChownSocket {
        /// The socket file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The socket-activation variables are inconsistent or name a non-socket.
    #[error(transparent)]
    Activation(#[from] steward_systemd::ActivationError),
    /// A handed-over socket that does not listen.
    #[error("socket activation: fd {0} is not a listening socket")]
    NotListening(i32),
    /// More handed-over sockets than configured ones.
    #[error("socket activation: fd {fd} (name {name:?}) matches no configured --listen socket; name it like one (FileDescriptorName=) or configure one more")]
    UnmatchedInheritedSocket {
        /// The descriptor.
        fd: i32,
        /// Its LISTEN_FDNAMES entry.
        name: String,
    },
    /// A unix socket path is held by a process that still accepts on it.
    #[error("cannot listen on unix:{0}: another process is listening there")]
    UnixSocketInUse(PathBuf),
    /// A unix socket path is taken by something that is not a socket.
    #[error("cannot listen on unix:{0}: the path exists and is not a socket")]
    UnixPathTaken(PathBuf),
    /// The workers' notify socket could not be set up.
    #[error("cannot create the notify socket {path}: {source}")]
    NotifySocket {
        /// Where it was to be bound.
        path: PathBuf,
        /// The failing call's error.
        source: io::Error,
    },
    /// The signals could not be blocked or the signalfd not created.
    #[error("cannot set up signal handling: {0}")]
    Signals(Errno),
    /// /dev/null could not be opened for the workers' stdin.
    #[error("cannot open /dev/null: {0}")]
    DevNull(io::Error),
    /// The worker command names a program that is not in PATH.
    #[error("worker command {0:?} not found in PATH")]
    CommandNotFound(String),
    /// The worker command names a file that cannot be executed.
    #[error("worker command {0} is not an executable file")]
    CommandNotExecutable(PathBuf),
    /// A worker command or environment string cannot be passed to execve.
    #[error("cannot prepare the worker command: {0}")]
    Plan(#[from] steward_sys::PlanError),
    /// A first worker could not be started at all.
    #[error("cannot start worker {id} ({command}): {source}")]
    Spawn {
        /// The worker's id.
        id: usize,
        /// The command line.
        command: String,
        /// What failed.
        source: steward_sys::SpawnError,
    },
    /// A worker of the first generation was not ready within `ready-timeout`.
    #[error("worker {id} ({command}) was not ready within {}s (ready-timeout); it was killed", timeout.as_secs_f64())]
    WorkerNotReady {
        /// The worker's id.
        id: usize,
        /// The command line.
        command: String,
        /// The ready timeout.
        timeout: std::time::Duration,
    },
    /// A worker of the first generation could not be started (fork or exec failed);
    /// the text names the worker and the step.
    #[error("{0}; the workers already started were stopped")]
    WorkerNotStarted(String),
    /// A worker of the first generation exited before it was ready.
    #[error("worker {id} ({command}) exited with {status} before it was ready")]
    WorkerFailedToStart {
        /// The worker's id.
        id: usize,
        /// The command line.
        command: String,
        /// "status 1" or "signal SIGKILL".
        status: String,
    },
    /// The control socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    ControlSocket {
        /// Where it was to be bound.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The stats server's socket could not be opened.
    #[error("cannot open the stats socket {addr}: {source}")]
    StatsSocket {
        /// The `stats` address.
        addr: String,
        /// What failed.
        source: io::Error,
    },
    /// A master FIFO could not be created or opened.
    #[error("cannot create the master FIFO {path}: {source}")]
    MasterFifo {
        /// Where it was to be created.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The descriptors a previous image of the master handed over are unusable.
    #[error("cannot adopt what the previous master image handed over: {0}")]
    Handover(io::Error),
    /// The handover text from a previous image of the master is unreadable.
    #[error(transparent)]
    BadHandover(#[from] crate::reexec::HandoverError),
    /// A hook, alarm, touch hook or jail setting of the configuration cannot run.
    #[error(transparent)]
    HookConfig(#[from] steward_hooks::HookConfigError),
    /// A hook of a fatal phase failed.
    #[error(transparent)]
    Hook(#[from] steward_hooks::HookError),
    /// Entering the jail (unshare, chroot) failed.
    #[error(transparent)]
    Jail(#[from] steward_hooks::JailError),
    /// The fork into a new pid namespace failed.
    #[error("cannot fork into the new pid namespace: {0}")]
    JailFork(steward_sys::ProcessError),
    /// A touch-reload or touch-hook path cannot be watched.
    #[error(transparent)]
    Touch(#[from] steward_hooks::TouchError),
    /// Preload mode: [`crate::Builder::run`] without a worker closure.
    #[error("no worker closure: call Builder::worker before Builder::run, and after Builder::load (which sets the app type anew and so drops a worker closure set before it)")]
    NoWorkerClosure,
    /// Preload mode: the load callback failed in the master.
    #[error("loading the app failed: {0}")]
    Load(String),
    /// Preload mode under `strict-fork`: the master has threads of its own at fork.
    #[error("the master has {count} threads ({names}) at fork, and strict-fork refuses to fork: threads started while loading the app do not exist in the workers; start them in the worker closure, or set lazy-apps")]
    ThreadsAtFork {
        /// How many threads.
        count: usize,
        /// Their names, comma-separated.
        names: String,
    },
    /// The master was created in a process that already runs other threads: they do
    /// not block the signals the master reads, so a SIGHUP or SIGTERM delivered to one
    /// of them would end the process instead of reloading or draining it.
    #[error("the master must be its process's only thread, but {count} other threads run ({names}): a SIGHUP or SIGTERM delivered to one of them would end the process instead of reloading or draining it; create the master first thing in main, before any thread or async runtime starts, and start those in the worker closure")]
    ThreadsAtStart {
        /// How many threads besides the calling one.
        count: usize,
        /// Their names, comma-separated.
        names: String,
    },
    /// The pipe for a worker's output could not be made.
    #[error("cannot make the pipe for a worker's output: {0}")]
    OutputPipe(Errno),
    /// poll on the master's descriptors failed.
    #[error("poll failed: {0}")]
    Poll(Errno),
    /// A user name that the password database does not know.
    #[error("{option}: no user named {value:?}")]
    UnknownUser {
        /// The option (`uid`, `immediate-uid`).
        option: String,
        /// Its value.
        value: String,
    },
    /// A group name that the group database does not know.
    #[error("{option}: no group named {value:?}")]
    UnknownGroup {
        /// The option (`gid`, `immediate-gid`, `add-gid`).
        option: String,
        /// Its value.
        value: String,
    },
    /// Switching user or groups failed.
    #[error("{what}: cannot drop privileges: {source}")]
    Privileges {
        /// Which options asked for it.
        what: &'static str,
        /// The failing call.
        source: steward_sys::ProcessError,
    },
    /// After the switch, /proc/self/status does not show what was asked for.
    #[error("{what}: privileges not dropped as configured: {problem}")]
    PrivilegesUnverified {
        /// Which options asked for it.
        what: &'static str,
        /// What /proc/self/status shows.
        problem: String,
    },
    /// A file the master created could not be given to the user it becomes.
    #[error("cannot give {path} to the uid/gid the master drops to: {source}")]
    Chown {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// A pidfile could not be written.
    #[error("{option}: cannot write {path}: {source}")]
    Pidfile {
        /// `pidfile`, `pidfile2`, `safe-pidfile` or `safe-pidfile2`.
        option: &'static str,
        /// The path.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The working directory could not be changed.
    #[error("{option}: cannot change directory to {path}: {errno}")]
    Chdir {
        /// `chdir` or `chdir2`.
        option: &'static str,
        /// The directory.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
    /// The nice value could not be set.
    #[error("priority: {0}")]
    Priority(steward_sys::ProcessError),
    /// Kernel samepage merging could not be enabled.
    #[error("ksm: {source} (kernel {kernel}; PR_SET_MEMORY_MERGE needs Linux 6.4 or later and CAP_SYS_RESOURCE)")]
    Ksm {
        /// The running kernel's release.
        kernel: String,
        /// The failing prctl.
        source: steward_sys::ProcessError,
    },
    /// The memory could not be locked.
    #[error("no-swap: {0} (RLIMIT_MEMLOCK too low? run as root, raise LimitMEMLOCK=, or use MemorySwapMax=0 in the unit)")]
    NoSwap(steward_sys::ProcessError),
    /// The log destination of a daemonized master is unusable.
    #[error("{option}: cannot log to {target}: {source}")]
    DaemonLog {
        /// `daemonize` or `daemonize2`.
        option: &'static str,
        /// The file or udp:HOST:PORT.
        target: String,
        /// What failed.
        source: io::Error,
    },
    /// Detaching failed.
    #[error("{option}: cannot detach: {source}")]
    Daemonize {
        /// `daemonize` or `daemonize2`.
        option: &'static str,
        /// The failing call.
        source: steward_sys::ProcessError,
    },
    /// The daemon's standard descriptors could not be redirected.
    #[error("{option}: cannot redirect stdin/stdout/stderr: {errno}")]
    DaemonStdio {
        /// `daemonize` or `daemonize2`.
        option: &'static str,
        /// The error.
        errno: Errno,
    },
}

impl MasterError {
    /// The option whose value this error is about, when it names one: the caller
    /// knows where that value was written (file:line, variable, flag).
    pub fn option(&self) -> Option<&str> {
        match self {
            MasterError::UnknownUser { option, .. } | MasterError::UnknownGroup { option, .. } => {
                Some(option)
            }
            MasterError::Pidfile { option, .. }
            | MasterError::Chdir { option, .. }
            | MasterError::DaemonLog { option, .. }
            | MasterError::Daemonize { option, .. }
            | MasterError::DaemonStdio { option, .. } => Some(option),
            MasterError::ChmodSocket { .. } => Some("chmod-socket"),
            MasterError::ChownSocket { .. } => Some("chown-socket"),
            _ => None,
        }
    }
}
