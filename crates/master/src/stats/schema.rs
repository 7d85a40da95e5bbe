//! The status document, schema version [`SCHEMA`]: what `steward status --json`
//! answers, what the stats server's JSON (beside uWSGI's fields) and `/metrics` are
//! made from, and what `steward top` reads. Fields are only ever added within a
//! version; a field removed or changing meaning is a new version.

use serde::{Deserialize, Serialize};

/// The version of this schema, in every document as `schema`.
pub const SCHEMA: u32 = 1;

/// The master and its workers at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The master's pid.
    pub pid: u32,
    /// `starting`, `running`, `stopping` or `stopping brutally`.
    pub state: String,
    /// Whether a load balancer should send traffic here.
    pub ready: bool,
    /// What is left of `shutdown-delay` in a shutdown.
    pub shutdown_in_ms: Option<u64>,
    /// The current generation (the number of reloads begun).
    pub generation: u64,
    /// The generation that last became fully ready.
    pub serving: Option<u64>,
    /// Ready workers of the serving generation: 0 means nothing takes connections.
    pub serving_workers: usize,
    /// How many workers the master keeps.
    pub workers_wanted: usize,
    /// With `cheaper`: the fewest and most workers the count moves between (it
    /// follows the sockets' queues); absent with a fixed count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_bounds: Option<WorkerBounds>,
    /// The `ready` option: when a worker counts as ready.
    pub ready_mode: String,
    /// The reload under way.
    pub reloading: Option<Reloading>,
    /// A reload waiting for the new binary's check.
    pub checking_binary: Option<Checking>,
    /// How the last reload ended.
    pub last_reload: Option<LastReload>,
    /// Reloads by outcome, and how long the successful ones took.
    pub reloads: Reloads,
    /// Workers that ended without being asked to, by cause.
    pub restarts: Restarts,
    /// The master process itself.
    pub master: Process,
    /// The listening sockets, in configuration order.
    pub sockets: Vec<Socket>,
    /// Connections dropped on a full accept queue in the master's network namespace
    /// (the kernel does not count them per socket); null where it cannot be read.
    pub listen_overflows: Option<u64>,
    /// Every worker process, by id then generation (during a reload a slot has two).
    pub workers: Vec<WorkerStatus>,
    /// Slots in a crash loop, waiting out their backoff.
    pub respawning: Vec<Respawning>,
}

/// `cheaper`'s bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerBounds {
    /// `cheaper`: never fewer.
    pub fewest: usize,
    /// `workers`: never more.
    pub most: usize,
}

/// A slot whose worker keeps crashing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Respawning {
    /// The slot.
    pub id: usize,
    /// Crashes in a row, each after a short life.
    pub crashes_in_a_row: u32,
    /// How the last one ended: "status 3", "signal SIGSEGV".
    pub last_exit: String,
    /// Until it is started again.
    pub starts_in_ms: u64,
}

/// Why a worker is being replaced (recycling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recycle {
    /// "rss 612 MB > 512 MB", "lifetime", what the worker asked...
    pub reason: String,
    /// Its replacement has been started.
    pub replacement_started: bool,
}

/// A reload under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reloading {
    /// The generation it is (or was) for.
    pub generation: u64,
    /// How long it has run.
    pub elapsed_ms: u64,
}

/// The new binary's check under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checking {
    /// How long it has run.
    pub elapsed_ms: u64,
}

/// How a reload ended: `elapsed_ms` when it succeeded, `error` when it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReload {
    /// The generation it is (or was) for.
    pub generation: u64,
    /// Whether the new generation became ready.
    pub ok: bool,
    /// How long it took, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reload counts and a histogram of the durations of those that succeeded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloads {
    /// Reloads whose new generation became ready.
    pub ok: u64,
    /// Reloads that left the serving generation serving.
    pub failed: u64,
    /// The sum of the successful reloads' durations.
    pub seconds_sum: f64,
    /// Cumulative: how many took at most `le` seconds, for each of [`RELOAD_BUCKETS`].
    pub seconds_buckets: Vec<Bucket>,
}

/// One bucket of a cumulative histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's upper bound, in seconds.
    pub le: f64,
    /// How many observations were at most `le`.
    pub count: u64,
}

/// The upper bounds of the reload duration histogram, in seconds.
pub const RELOAD_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Workers that ended unasked, by cause. `recycle` counts workers replaced on purpose
/// by a recycling rule; `killed` those stopped that had to be SIGKILLed after the
/// mercy (asked to stop, they did not in time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Restarts {
    /// Exited by itself, whatever the status.
    pub crash: u64,
    /// Killed by a signal nobody in the master sent.
    pub signal: u64,
    /// Replaced on purpose by a recycling rule.
    pub recycle: u64,
    /// SIGKILLed after the mercy, asked to stop.
    pub killed: u64,
}

/// What /proc says of a process; zeros once it is gone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// Resident memory.
    pub rss_bytes: u64,
    /// Virtual memory.
    pub vsz_bytes: u64,
    /// User and system CPU time.
    pub cpu_seconds: f64,
    /// Start time, seconds since the epoch.
    pub started_at: f64,
    /// Open descriptors (the master only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u64>,
}

/// A listening socket and its accept queue (TCP only: null for a unix socket).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Socket {
    /// Its name in LISTEN_FDNAMES.
    pub name: String,
    /// Where it listens: `127.0.0.1:8000`, `unix:/run/app.sock`.
    pub address: String,
    /// Connections waiting to be accepted.
    pub queue: Option<u32>,
    /// The most the queue holds.
    pub backlog: Option<u32>,
}

/// One worker process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The slot, 1-based (STEWARD_WORKER_ID).
    pub id: usize,
    /// The generation it is (or was) for.
    pub generation: u64,
    /// Its pid.
    pub pid: i32,
    /// `starting`, `ready` or `stopping`.
    pub state: String,
    /// Since it was started.
    pub age_ms: u64,
    /// While it starts: what it waits for to count as ready.
    pub waiting_for: Option<String>,
    /// The last STATUS= it sent.
    pub status: Option<String>,
    /// How often this slot was started again after ending unasked.
    pub respawns: u64,
    /// Why it is being replaced, if it is.
    pub recycle: Option<Recycle>,
    /// What /proc says of it (flattened into the worker's object).
    #[serde(flatten)]
    pub process: Process,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_has_an_error_and_no_duration() {
        let failed = LastReload {
            generation: 3,
            ok: false,
            elapsed_ms: None,
            error: Some("worker 1 exited".into()),
        };
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            r#"{"generation":3,"ok":false,"error":"worker 1 exited"}"#
        );
    }
}
