//! The names of the `STEWARD_*` environment variables that are not options: what steward
//! reads besides its options, what the master tells its workers and mules, and what one
//! image of the master hands the next across a re-exec. Every crate names them through
//! these constants, so that the config reader knows which variables to leave alone.

/// The config file, when `--config` is not given.
pub const CONFIG: &str = "STEWARD_CONFIG";
/// The log filter (`debug`, `info`, ...).
pub const LOG: &str = "STEWARD_LOG";
/// To a worker: its 1-based slot.
pub const WORKER_ID: &str = "STEWARD_WORKER_ID";
/// To a worker: how many reloads the master had begun when it was started.
pub const GENERATION: &str = "STEWARD_GENERATION";
/// To a mule: its 1-based number in configuration order.
pub const MULE_ID: &str = "STEWARD_MULE_ID";
/// From an image of the master to the next: the workers, sockets and reload handed over.
pub const REEXEC: &str = "STEWARD_REEXEC";
/// From an image of the master to the check of the next: which check to run.
pub const REEXEC_CHECK: &str = "STEWARD_REEXEC_CHECK";
/// From an image of the master to the next: the running values of restart-only options.
pub const REEXEC_KEPT: &str = "STEWARD_REEXEC_KEPT";
/// From a master to the checks of the binary it may re-exec into: answer with a JSON
/// report on stdout rather than text for a person.
pub const CHECK_REPORT: &str = "STEWARD_CHECK_REPORT";
/// From an emperor to each vassal: the emperor's pid. The vassal runs `emperor-stop` and
/// `emperor-reload` on a stop or reload signal sent by this pid, and `emperor-lost` when
/// this process dies.
pub const EMPEROR_PID: &str = "STEWARD_EMPEROR_PID";
/// From an emperor to each vassal: the vassal's name (its configuration file's name).
pub const VASSAL: &str = "STEWARD_VASSAL";
/// From an emperor to each vassal and its check: the files of `vassals-inherit`, one a
/// line, read before the vassal's file.
pub const VASSAL_INHERIT: &str = "STEWARD_VASSAL_INHERIT";
/// From an emperor to each vassal and its check: the files of `vassals-include`, one a
/// line, read after the vassal's file.
pub const VASSAL_INCLUDE: &str = "STEWARD_VASSAL_INCLUDE";

/// Every variable above: `STEWARD_*` names that are not options.
pub const NOT_OPTIONS: &[&str] = &[
    CONFIG,
    LOG,
    WORKER_ID,
    GENERATION,
    MULE_ID,
    REEXEC,
    REEXEC_CHECK,
    REEXEC_KEPT,
    CHECK_REPORT,
    EMPEROR_PID,
    VASSAL,
    VASSAL_INHERIT,
    VASSAL_INCLUDE,
];
