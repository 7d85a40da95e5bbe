use std::path::PathBuf;

use crate::Origin;

/// A value that does not parse or an option set that does not hold together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    /// A `stats` value that is not `HOST:PORT`, `:PORT`, `unix:PATH` or `fd:NAME`.
    #[error("invalid stats address {value:?}: {reason}")]
    Stats {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
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
    /// A readiness mode other than `auto[:MS]`, `notify`, `listening`, `log:REGEX`,
    /// `delay:MS` or `immediate`.
    #[error("invalid readiness mode {0:?}: expected auto[:MS], notify, listening, log:REGEX, delay:MS or immediate")]
    Ready(String),
    /// `ready = log:REGEX` with a pattern that does not compile.
    #[error("invalid readiness pattern {pattern:?}: {reason}")]
    ReadyPattern {
        /// The pattern as written.
        pattern: String,
        /// Why the regex crate refused it.
        reason: String,
    },
    /// `cheaper` asks for more workers at the least than `workers` allows at the most.
    #[error("cheaper = {cheaper} is more than workers = {workers}: cheaper is the fewest workers, workers the most")]
    CheaperAboveWorkers {
        /// The fewest.
        cheaper: usize,
        /// The most.
        workers: usize,
    },
    /// `die-on-idle` without `idle`.
    #[error("die-on-idle needs idle = SECONDS: how long without a connection counts as idle")]
    DieOnIdleWithoutIdle,
    /// `on-demand` without a socket.
    #[error("on-demand needs at least one listen address: the emperor binds them and waits for the first connection")]
    OnDemandWithoutListen,
    /// A worker output mode other than `capture` or `inherit`.
    #[error("invalid worker output {0:?}: expected capture or inherit")]
    WorkerOutput(String),
    /// `ready = log:` while the master does not read the workers' output.
    #[error(
        "ready = log:... needs the workers' output, but worker-output = inherit leaves it alone"
    )]
    ReadyLogWithoutOutput,
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
    /// A flag value that is not a boolean.
    #[error("invalid boolean {0:?}: expected true or false (also yes/no, on/off, 1/0)")]
    Bool(String),
    /// A value that is not a whole number in the allowed range.
    #[error("invalid number {value:?}: expected {expected}")]
    Number {
        /// The value as given.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A `chmod-socket` value that is not octal permission bits.
    #[error(
        "invalid socket mode {0:?}: expected octal permission bits such as 660 (none means 666)"
    )]
    SocketMode(String),
    /// An `env` value that is not `VAR=VALUE`.
    #[error("invalid environment variable {value:?}: {reason}")]
    Env {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An empty value where a path, name or command is required.
    #[error("the value is empty")]
    Empty,
    /// No command to run in the workers.
    #[error("no worker command given: put it after `--`, as in `steward --listen 127.0.0.1:8000 -- /usr/bin/myserver`")]
    NoCommand,
    /// Zero workers.
    #[error("workers must be at least 1")]
    NoWorkers,
}

/// A config source that cannot be read or says something wrong. Each names where:
/// `file:line`, the `STEWARD_*` variable or the flag. The underlying error is part of
/// the message, not a `source()`, so that it is not printed twice in a chain.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A config file larger than any configuration (a symlink to /dev/zero, a log).
    #[error("{}: larger than {} MiB: not a configuration (is it the right file?)", path.display(), limit >> 20)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most a config file may hold, in bytes.
        limit: u64,
    },
    /// A config file whose extension names no format.
    #[error("{}: unknown config format: expected a .toml, .yaml, .yml, .json or .ini file", path.display())]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// A file that is not valid in its format.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The 1-based line where the parser stopped.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A file whose top level is not a table of options.
    #[error("{}: expected a table of options (key = value) at the top level", path.display())]
    NotATable {
        /// The file.
        path: PathBuf,
    },
    /// A value that is a table, or a list of lists, where a scalar or list is expected.
    #[error("{origin}: option {key:?}: expected a string, number, boolean or a list of them")]
    Nested {
        /// Where.
        origin: Origin,
        /// The option as written.
        key: String,
    },
    /// A `uwsgi:` or `steward:` table in a TOML, YAML or JSON file, as uWSGI's own
    /// YAML and JSON forms have: steward reads options at the top level.
    #[error("{origin}: a {key:?} section: in a TOML, YAML or JSON file the options go at the top level (a [{key}] section is read from an .ini file)")]
    Section {
        /// Where.
        origin: Origin,
        /// `uwsgi` or `steward`.
        key: String,
    },
    /// An ini file without a `[uwsgi]` or `[steward]` section.
    #[error("{}: no [uwsgi] or [steward] section", path.display())]
    NoSection {
        /// The file.
        path: PathBuf,
    },
    /// An option steward does not know.
    #[error("{origin}: unknown option {key:?}{}", suggestion.map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownOption {
        /// Where.
        origin: Origin,
        /// The option as written.
        key: String,
        /// The closest known name, if one is close.
        suggestion: Option<&'static str>,
    },
    /// A list given to an option that takes one value.
    #[error("{origin}: option {key:?} takes one value, not a list")]
    NotAList {
        /// Where.
        origin: Origin,
        /// The option as written.
        key: String,
    },
    /// A value the option does not accept.
    #[error("{origin}: {key}: {error}")]
    InvalidValue {
        /// Where.
        origin: Origin,
        /// The option as written.
        key: String,
        /// What is wrong with it.
        error: OptionError,
    },
    /// Options that are each fine but do not hold together (no command, say).
    #[error("{error}")]
    Invalid {
        /// What is wrong.
        error: OptionError,
    },
}
