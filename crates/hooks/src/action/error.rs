//! Why an action failed when it ran: each error names the file, command or name it
//! was about and the system's reason.

use std::{path::PathBuf, time::Duration};

use nix::errno::Errno;

/// Why an action failed when it ran.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// mkdir failed.
    #[error("cannot create directory {}: {cause}", path.display())]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// chdir failed.
    #[error("cannot change directory to {}: {cause}", path.display())]
    Chdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The command holds a NUL byte or the environment cannot be passed on.
    #[error("cannot prepare /bin/sh: {0}")]
    Plan(#[from] steward_sys::PlanError),
    /// The pipe for an alarm's message, or /dev/null, could not be opened.
    #[error("cannot prepare the command's stdin: {0}")]
    Stdin(std::io::Error),
    /// The shell could not be started.
    #[error("cannot run /bin/sh: {0}")]
    Shell(steward_sys::SpawnError),
    /// Waiting for the command failed.
    #[error("cannot wait for the command: {0}")]
    Wait(Errno),
    /// The command ran and failed.
    #[error("command {command:?} failed: {status}")]
    CommandFailed {
        /// The command.
        command: String,
        /// How it ended: `exit status 4`, `killed by SIGKILL`.
        status: String,
    },
    /// A registered callback returned an error.
    #[error("callback {name:?} failed: {message}")]
    Callback {
        /// The callback's name.
        name: String,
        /// What it said.
        message: String,
    },
    /// No callback under that name (only an executor built without checks meets this).
    #[error("no callback registered as {0:?}")]
    NoCallback(String),
    /// The FIFO could not be opened (ENXIO: no reader).
    #[error("cannot open FIFO {}: {cause}", path.display())]
    FifoOpen {
        /// The FIFO.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The path is not a FIFO.
    #[error("{} is not a FIFO", .0.display())]
    NotAFifo(PathBuf),
    /// Writing a file or FIFO failed.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// mount(2) failed.
    #[error("cannot mount {fstype} {source_path} on {}: {errno}", target.display())]
    Mount {
        /// The filesystem type.
        fstype: String,
        /// The source.
        source_path: String,
        /// The mount point.
        target: PathBuf,
        /// The cause.
        errno: Errno,
    },
    /// umount2(2) failed.
    #[error("cannot unmount {}: {errno}", target.display())]
    Umount {
        /// The mount point.
        target: PathBuf,
        /// The cause.
        errno: Errno,
    },
    /// sethostname(2) failed.
    #[error("cannot set the host name to {name:?}: {errno}")]
    SetHostname {
        /// The name.
        name: String,
        /// The cause.
        errno: Errno,
    },
    /// unlink(2) failed.
    #[error("cannot remove {}: {cause}", path.display())]
    Unlink {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// chmod(2) failed, or stat(2) before a sticky bit.
    #[error("cannot change the mode of {}: {cause}", path.display())]
    Chmod {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The user or group of a `chown:` is not in the database.
    #[error("chown {}: no {kind} named {name:?}", path.display())]
    UnknownOwner {
        /// The file.
        path: PathBuf,
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// chown(2) failed.
    #[error("cannot change the owner of {}: {cause}", path.display())]
    Chown {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A `wait_for_*` or `spinningfifo` action waited its whole timeout.
    #[error("{action}: {target} still not {what} after {}s", timeout.as_secs_f64())]
    WaitTimedOut {
        /// The action name.
        action: &'static str,
        /// The path or address.
        target: String,
        /// What it waited for: `there`, `a file`, `accepting connections`, `read`.
        what: &'static str,
        /// How long it waited.
        timeout: Duration,
    },
    /// Writing to standard output failed.
    #[error("cannot print: {0}")]
    Print(std::io::Error),
    /// The alarm is not declared (only an executor built without checks meets this).
    #[error("no alarm named {0:?}")]
    NoAlarm(String),
    /// The alarm's command could not be run or failed.
    #[error("alarm {name:?}: {cause}")]
    AlarmCommand {
        /// The alarm's name.
        name: String,
        /// What went wrong with its command.
        cause: Box<ActionError>,
    },
}
