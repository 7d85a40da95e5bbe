/// A value that does not parse or an option set that does not hold together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    /// A `--listen` value that is not `[NAME=]HOST:PORT`, `[NAME=][V6]:PORT` or `[NAME=]unix:PATH`.
    #[error("invalid listen address {value:?}: {reason}")]
    Listen {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket name that systemd's LISTEN_FDNAMES could not carry.
    #[error("invalid socket name {name:?}: {reason}")]
    SocketName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two sockets with one name.
    #[error("socket name {0:?} is used twice")]
    DuplicateSocketName(String),
    /// A readiness mode other than `notify`, `delay:MS`, `auto[:MS]` or `immediate`.
    #[error("invalid readiness mode {0:?}: expected notify, auto[:MS], delay:MS or immediate")]
    Ready(String),
    /// A signal name or number that is not a signal a worker can be stopped with.
    #[error("invalid signal {0:?}: expected a name such as SIGTERM or TERM, or a number")]
    Signal(String),
    /// A duration that is not a number with an optional unit.
    #[error(
        "invalid duration {0:?}: expected a number of seconds, or a number with ms, s, m or h"
    )]
    Duration(String),
    /// A reload strategy other than `graceful` or `chain`.
    #[error("invalid reload strategy {0:?}: expected graceful or chain")]
    ReloadStrategy(String),
    /// A log destination that is neither a file path nor `udp:HOST:PORT`.
    #[error("invalid log destination {0:?}: expected a file path or udp:HOST:PORT")]
    LogTarget(String),
    /// No command to run in the workers.
    #[error("no worker command given: put it after `--`, as in `steward --listen 127.0.0.1:8000 -- /usr/bin/myserver`")]
    NoCommand,
    /// Zero workers.
    #[error("workers must be at least 1")]
    NoWorkers,
}
