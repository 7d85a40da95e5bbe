//! The names of the master's events: the `event` field of its log records (`event=...` on
//! stderr, `STEWARD_EVENT=` in the journal). Messages are written for people and may be
//! reworded; these names are the stable part that scripts and tests match on.
//!
//! Each record also carries the fields that identify what it is about (`worker`,
//! `generation`, `pid`, `mule`), named the same on every event.

/// The loop is about to start: `pid`, `listen` (NAME=ADDRESS of each bound socket),
/// `workers`, `command`, `ready`, `control`, `stats` (where the stats server listens).
pub const MASTER_STARTED: &str = "master-started";
/// A worker was forked (and, in exec mode, its exec confirmed).
pub const WORKER_STARTED: &str = "worker-started";
/// A worker counts as ready by the readiness mode.
pub const WORKER_READY: &str = "worker-ready";
/// A worker was not ready within `ready-timeout` (`timeout_ms`) and is killed.
pub const WORKER_NOT_READY: &str = "worker-not-ready";
/// A worker was asked to stop (`signal`).
pub const WORKER_STOPPING: &str = "worker-stopping";
/// A worker was killed after its mercy ran out.
pub const WORKER_KILLED: &str = "worker-killed";
/// A worker that was asked to stop, or whose generation was replaced, exited (`status`).
pub const WORKER_EXITED: &str = "worker-exited";
/// A worker exited unasked and will be started again (`status`, `respawn_in_ms`).
pub const WORKER_CRASHED: &str = "worker-crashed";
/// Every worker of a generation is ready (`generation`).
pub const GENERATION_READY: &str = "generation-ready";
/// A reload began (`generation`, `strategy`).
pub const RELOAD_STARTED: &str = "reload-started";
/// The new generation serves and the old ones are gone (`generation`, `elapsed_ms`).
pub const RELOAD_COMPLETE: &str = "reload-complete";
/// A reload failed; the serving generation serves on (`generation`, `reason`).
pub const RELOAD_FAILED: &str = "reload-failed";
/// A reload asked for while another could not take it (`reason`).
pub const RELOAD_IGNORED: &str = "reload-ignored";
/// The worker count changed (`workers`).
pub const WORKERS_RESIZED: &str = "workers-resized";
/// A shutdown began (`mode`: graceful or brutal).
pub const SHUTDOWN_STARTED: &str = "shutdown-started";
/// A process left behind by a worker or mule (reparented to the master, a child
/// subreaper) is asked to stop (`pid`, `signal`).
pub const ORPHAN_STOPPING: &str = "orphan-stopping";
/// It did not stop within the mercy and is killed (`pid`).
pub const ORPHAN_KILLED: &str = "orphan-killed";
/// An orphan was reaped (`pid`, `status`).
pub const ORPHAN_EXITED: &str = "orphan-exited";
/// A graceful shutdown waits `delay_ms` (`shutdown-delay`), serving but not ready.
pub const SHUTDOWN_DELAYED: &str = "shutdown-delayed";
/// Every worker and mule is gone; the master exits.
pub const SHUTDOWN_COMPLETE: &str = "shutdown-complete";
/// A vassal's emperor died (PR_SET_PDEATHSIG): emperor-lost runs, then a graceful
/// shutdown (`emperor`, the pid).
pub const EMPEROR_LOST: &str = "emperor-lost";
/// A request came through the control socket or a master FIFO (`request`, `from`).
pub const CONTROL_REQUEST: &str = "control-request";
/// A status report (SIGUSR1, FIFO `s`): one record for the master...
pub const STATUS_REPORT: &str = "status-report";
/// ... and one per worker.
pub const STATUS_WORKER: &str = "status-worker";
/// The new binary's check before a re-exec started (`pid`).
pub const UPGRADE_CHECK_STARTED: &str = "upgrade-check-started";
/// The new binary was refused, or could not be exec'd; the reload goes on with this one.
pub const UPGRADE_REFUSED: &str = "upgrade-refused";
/// A new image of the master took over the workers of the previous one.
pub const UPGRADE_RESUMED: &str = "upgrade-resumed";
/// A changed option that only a restart applies (`option`, `was`, `now`; credentials:
/// `option` names them, `uid`, `gid`).
pub const NEEDS_RESTART: &str = "needs-restart";
/// A mule was started.
pub const MULE_STARTED: &str = "mule-started";
/// A mule exited: asked to, at shutdown, or unasked (`respawn_in_ms` then).
pub const MULE_EXITED: &str = "mule-exited";
/// Under `ready = auto`, a worker sent READY=1 before it was seen waiting for
/// connections (said once: `pid`, `command`).
pub const READY_BEFORE_LISTENING: &str = "ready-before-listening";
/// Lines of a worker's output were dropped (`over_rate`: past the lines per second
/// sent on; `refused`: the journal could not take them at once).
pub const WORKER_OUTPUT_DROPPED: &str = "worker-output-dropped";
/// More workers are wanted than a limit allows (`workers`, `limit`, `name`:
/// RLIMIT_NPROC or kernel.pid_max).
pub const WORKERS_OVER_LIMIT: &str = "workers-over-limit";
/// A stop began and this socket, which nothing takes over, refuses new connections
/// (`name`, `socket`).
pub const SOCKET_CLOSED: &str = "socket-closed";
/// A control client was closed before its request (`reason`: too many connections,
/// no request in time).
pub const CONTROL_DROPPED: &str = "control-dropped";
/// `cheaper` changed the worker count (`decision`: more or fewer, `queued`, `workers`,
/// `step`).
pub const CHEAPER: &str = "cheaper";
/// `die-on-idle`: nothing was served for `idle` (`idle_s`); the graceful stop begins.
pub const IDLE: &str = "idle";
/// Cheap mode (`idle` without `die-on-idle`): every worker retires (`asleep` true), or a
/// connection came and they start again (`asleep` false, `workers`).
pub const CHEAP: &str = "cheap";
/// A mule was asked to stop (shutdown, re-exec).
pub const MULE_STOPPING: &str = "mule-stopping";
/// A mule did not stop within the mercy and was killed.
pub const MULE_KILLED: &str = "mule-killed";
/// The master left root (`by`: the option that did it, `uid`, `gid`, `groups`).
pub const PRIVILEGES_DROPPED: &str = "privileges-dropped";
/// LISTEN_FDS was set for another process (`listen_pid`); the descriptors are not taken.
pub const ACTIVATION_IGNORED: &str = "activation-ignored";
/// A notify datagram was not acted on (`pid`; `error` when it could not be read).
pub const NOTIFY_IGNORED: &str = "notify-ignored";
/// A master FIFO command steward does not have (`command`).
pub const FIFO_COMMAND_IGNORED: &str = "fifo-command-ignored";
/// A resize would go below one worker (`workers`).
pub const RESIZE_REFUSED: &str = "resize-refused";
/// The binary changed: the reload re-executes the master (`binary`).
pub const UPGRADE_REEXEC: &str = "upgrade-reexec";
/// A shutdown stopped the new binary's check (`pid`).
pub const UPGRADE_CHECK_STOPPED: &str = "upgrade-check-stopped";
/// A configuration file says something steward reads differently or not at all (the
/// message is the warning, with file:line).
pub const CONFIG_WARNING: &str = "config-warning";
/// A configured socket was replaced by one handed over by the service manager
/// (`name`, `configured`, `socket`).
pub const SOCKET_INHERITED: &str = "socket-inherited";
/// A worker is due to be replaced (`worker`, `generation`, `pid`, `reason`: its
/// lifetime, a memory limit, its own request); its replacement starts in its turn.
pub const WORKER_RECYCLE_DUE: &str = "worker-recycle-due";
/// A replacement for a worker due to be replaced is started; the old one serves on.
pub const WORKER_RECYCLING: &str = "worker-recycling";
/// The replacement is ready: the replaced worker is asked to stop (`reason`, `lived_ms`).
pub const WORKER_RECYCLED: &str = "worker-recycled";
/// A worker passed an `evil-reload-on-*` limit and is killed at once (`reason`).
pub const WORKER_MEMORY_KILLED: &str = "worker-memory-killed";
/// The watchdog caught a worker (`worker-watchdog`): silent too long, or it sent
/// WATCHDOG=trigger (`reason`, `last_status`); it gets SIGABRT, then SIGKILL.
pub const WORKER_WATCHDOG: &str = "worker-watchdog";
pub use steward_hooks::events::{ALARM_RAISED, HOOK_FAILED, HOOK_RUN};
