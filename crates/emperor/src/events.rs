//! The names of the emperor's events: the `event` field of its log records, the stable
//! part scripts and tests match on. Each record about a vassal has `vassal` (its file
//! name) and, once it runs, `pid`.

/// The emperor's loop starts: `dir`, `vassals` (files found).
pub const EMPEROR_STARTED: &str = "emperor-started";
/// Every vassal present at start is ready (or refused, or dead): READY=1 upwards.
pub const EMPEROR_READY: &str = "emperor-ready";
/// A vassal was started (`vassal`, `pid`, `config`).
pub const VASSAL_STARTED: &str = "vassal-started";
/// A vassal said READY=1 (`vassal`, `pid`).
pub const VASSAL_READY: &str = "vassal-ready";
/// A vassal was asked to reload: its file changed or was touched, or the emperor
/// reloads (`vassal`, `pid`, `reason`).
pub const VASSAL_RELOADING: &str = "vassal-reloading";
/// A vassal was asked to stop: its file is gone or the emperor stops (`vassal`, `pid`).
pub const VASSAL_STOPPING: &str = "vassal-stopping";
/// A vassal the emperor stopped exited (`vassal`, `pid`, `status`).
pub const VASSAL_EXITED: &str = "vassal-exited";
/// A vassal exited unasked; it starts again after `restart_in_ms` (`vassal`, `pid`,
/// `status`, `deaths`).
pub const VASSAL_DIED: &str = "vassal-died";
/// A vassal died [`crate::KEEPS_DYING`] times or more in a row (`vassal`, `deaths`).
pub const VASSAL_KEEPS_DYING: &str = "vassal-keeps-dying";
/// A vassal's configuration does not pass `steward check` (`vassal`, `error`, with the
/// check's file:line); a running vassal keeps its configuration.
pub const VASSAL_REFUSED: &str = "vassal-refused";
/// Tyrant mode: a running vassal's file has a new owner; the vassal is stopped and
/// started again as that owner (`vassal`, `pid`).
pub const VASSAL_OWNER_CHANGED: &str = "vassal-owner-changed";
/// The `as-emperor-setns` hooks ran in a vassal's namespaces, once it was ready after a
/// start (`vassal`, `pid` of its master, `namespaces` entered, `action`).
pub const VASSAL_SETNS: &str = "vassal-setns";
/// An `as-emperor-setns` hook could not enter a vassal's namespaces, or failed there
/// (`vassal`, `pid`, `error`).
pub const VASSAL_SETNS_FAILED: &str = "vassal-setns-failed";
/// A vassal could not be started (`vassal`, `error`).
pub const VASSAL_SPAWN_FAILED: &str = "vassal-spawn-failed";
/// A vassal sent STATUS= (`vassal`, `status`).
pub const VASSAL_STATUS: &str = "vassal-status";
/// The emperor's reload (SIGHUP) started: every vassal is reloaded (`vassals`).
pub const EMPEROR_RELOADING: &str = "emperor-reloading";
/// The emperor stops: every vassal is asked to stop (`mode`).
pub const EMPEROR_STOPPING: &str = "emperor-stopping";
/// Every vassal is gone; the emperor exits.
pub const EMPEROR_STOPPED: &str = "emperor-stopped";
/// An on-demand vassal waits for its first connection: the emperor holds its sockets
/// (`vassal`, `sockets`: the addresses bound, comma-separated).
pub const VASSAL_ON_DEMAND: &str = "vassal-on-demand";
/// A connection came to an on-demand vassal's socket: it is started with the sockets
/// (`vassal`).
pub const VASSAL_ACTIVATED: &str = "vassal-activated";
/// An on-demand vassal's sockets cannot be bound (`vassal`, `socket`, `error`); it is
/// not started, and is tried again when its file changes.
pub const VASSAL_BIND_FAILED: &str = "vassal-bind-failed";
