//! uWSGI's stats document (what `uwsgi --stats` dumps and uwsgitop reads), made from
//! the [`Status`]: uWSGI's fields where steward knows the value, 0 where it cannot
//! (requests, exceptions, transmitted bytes of an arbitrary program), and steward's
//! whole status beside them under `steward`.

use serde_json::{json, Value};

use super::schema::{Status, WorkerStatus};

/// The document, as uWSGI's stats server sends it.
pub(crate) fn document(status: &Status) -> Value {
    let queued: u32 = status.sockets.iter().filter_map(|s| s.queue).sum();
    let sockets: Vec<Value> = status
        .sockets
        .iter()
        .map(|s| {
            json!({
                "name": s.address,
                "proto": "steward",
                "queue": s.queue.unwrap_or(0),
                "max_queue": s.backlog.unwrap_or(0),
                "shared": 0,
                "can_offload": 0,
            })
        })
        .collect();
    json!({
        "version": concat!("steward-", env!("CARGO_PKG_VERSION")),
        "listen_queue": queued,
        "listen_queue_errors": status.listen_overflows.unwrap_or(0),
        "signal_queue": 0,
        "load": queued,
        "pid": status.pid,
        "uid": nix::unistd::getuid().as_raw(),
        "gid": nix::unistd::getgid().as_raw(),
        "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "locks": [],
        "sockets": sockets,
        "workers": status.workers.iter().map(worker).collect::<Vec<_>>(),
        "steward": status,
    })
}

/// uWSGI's `status` of a worker: `idle` for one that serves (steward does not see
/// requests, so never `busy`), `cheap` while it starts (not taking requests yet), `sig`
/// while it stops (uWSGI's word for a worker handling a signal; uwsgitop colours it).
fn worker(w: &WorkerStatus) -> Value {
    let status = match w.state.as_str() {
        "ready" => "idle",
        "starting" => "cheap",
        _ => "sig",
    };
    json!({
        "id": w.id,
        "pid": w.pid,
        "accepting": u8::from(w.state == "ready"),
        "requests": 0,
        "delta_requests": 0,
        "exceptions": 0,
        "harakiri_count": 0,
        "signals": 0,
        "signal_queue": 0,
        "status": status,
        "rss": w.process.rss_bytes,
        "vsz": w.process.vsz_bytes,
        "running_time": 0,
        "last_spawn": w.process.started_at as u64,
        "respawn_count": w.respawns,
        "tx": 0,
        "avg_rt": 0,
        "apps": [],
        "cores": [],
        "generation": w.generation,
        "state": w.state,
        "age_ms": w.age_ms,
        "cpu_seconds": w.process.cpu_seconds,
    })
}
