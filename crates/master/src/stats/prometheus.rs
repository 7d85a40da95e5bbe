//! The Prometheus text exposition format (0.0.4) of a [`Status`]: base units,
//! `_total` counters, the `process_*` names for the master itself.

use std::fmt::Write as _;

use super::schema::Status;

/// Every metric, with HELP and TYPE.
pub(crate) fn text(status: &Status) -> String {
    let mut out = Metrics(String::with_capacity(4096));
    out.family("steward_workers", "gauge", "Worker processes by state.");
    for state in ["starting", "ready", "stopping"] {
        let n = status.workers.iter().filter(|w| w.state == state).count();
        out.sample("steward_workers", &[("state", state)], n as f64);
    }
    out.family(
        "steward_workers_wanted",
        "gauge",
        "Workers the master keeps.",
    );
    out.sample("steward_workers_wanted", &[], status.workers_wanted as f64);
    if let Some(bounds) = status.workers_bounds {
        out.family(
            "steward_workers_bound",
            "gauge",
            "cheaper: the fewest and most workers the count moves between.",
        );
        out.sample(
            "steward_workers_bound",
            &[("bound", "fewest")],
            bounds.fewest as f64,
        );
        out.sample(
            "steward_workers_bound",
            &[("bound", "most")],
            bounds.most as f64,
        );
    }
    out.family(
        "steward_generation",
        "gauge",
        "The current generation (reloads begun).",
    );
    out.sample("steward_generation", &[], status.generation as f64);
    out.family(
        "steward_ready",
        "gauge",
        "1 when a generation serves and no stop is asked.",
    );
    out.sample("steward_ready", &[], f64::from(u8::from(status.ready)));
    per_worker(&mut out, status);
    out.family(
        "steward_worker_restarts_total",
        "counter",
        "Workers that ended without being asked to, by cause; killed: SIGKILLed after the mercy.",
    );
    let r = &status.restarts;
    for (cause, n) in [
        ("crash", r.crash),
        ("signal", r.signal),
        ("recycle", r.recycle),
        ("killed", r.killed),
    ] {
        out.sample(
            "steward_worker_restarts_total",
            &[("cause", cause)],
            n as f64,
        );
    }
    reloads(&mut out, status);
    sockets(&mut out, status);
    master(&mut out, status);
    out.0
}

fn per_worker(out: &mut Metrics, status: &Status) {
    type Value = fn(&super::schema::WorkerStatus) -> f64;
    let families: [(&str, &str, &str, Value); 4] = [
        (
            "steward_worker_resident_memory_bytes",
            "gauge",
            "Resident memory of a worker.",
            |w| w.process.rss_bytes as f64,
        ),
        (
            "steward_worker_cpu_seconds_total",
            "counter",
            "User and system CPU time of a worker.",
            |w| w.process.cpu_seconds,
        ),
        (
            "steward_worker_start_time_seconds",
            "gauge",
            "Start time of a worker since the epoch.",
            |w| w.process.started_at,
        ),
        (
            "steward_worker_respawns_total",
            "counter",
            "Times this worker's slot was started again after ending unasked.",
            |w| w.respawns as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for w in &status.workers {
            let (id, generation) = (w.id.to_string(), w.generation.to_string());
            let labels = [("worker", id.as_str()), ("generation", generation.as_str())];
            out.sample(name, &labels, value(w));
        }
    }
}

fn reloads(out: &mut Metrics, status: &Status) {
    let reloads = &status.reloads;
    out.family("steward_reloads_total", "counter", "Reloads by outcome.");
    out.sample(
        "steward_reloads_total",
        &[("outcome", "ok")],
        reloads.ok as f64,
    );
    out.sample(
        "steward_reloads_total",
        &[("outcome", "failed")],
        reloads.failed as f64,
    );
    let name = "steward_reload_duration_seconds";
    out.family(name, "histogram", "How long the successful reloads took.");
    for bucket in &reloads.seconds_buckets {
        let le = bucket.le.to_string();
        out.sample(
            &format!("{name}_bucket"),
            &[("le", &le)],
            bucket.count as f64,
        );
    }
    out.sample(
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        reloads.ok as f64,
    );
    out.sample(&format!("{name}_sum"), &[], reloads.seconds_sum);
    out.sample(&format!("{name}_count"), &[], reloads.ok as f64);
}

fn sockets(out: &mut Metrics, status: &Status) {
    let tcp = || status.sockets.iter().filter(|s| s.queue.is_some());
    out.family(
        "steward_listen_queue_length",
        "gauge",
        "Connections waiting to be accepted on a listening socket (TCP_INFO).",
    );
    for s in tcp() {
        let labels = [("socket", s.name.as_str()), ("address", s.address.as_str())];
        out.sample(
            "steward_listen_queue_length",
            &labels,
            f64::from(s.queue.unwrap_or(0)),
        );
    }
    out.family(
        "steward_listen_queue_max_length",
        "gauge",
        "The most a listening socket's accept queue holds (its backlog).",
    );
    for s in tcp() {
        let labels = [("socket", s.name.as_str()), ("address", s.address.as_str())];
        out.sample(
            "steward_listen_queue_max_length",
            &labels,
            f64::from(s.backlog.unwrap_or(0)),
        );
    }
    if let Some(overflows) = status.listen_overflows {
        out.family(
            "steward_listen_overflows_total",
            "counter",
            "Connections dropped on a full accept queue in the master's network namespace.",
        );
        out.sample("steward_listen_overflows_total", &[], overflows as f64);
    }
}

fn master(out: &mut Metrics, status: &Status) {
    let m = &status.master;
    out.family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the master.",
    );
    out.sample("process_resident_memory_bytes", &[], m.rss_bytes as f64);
    out.family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory of the master.",
    );
    out.sample("process_virtual_memory_bytes", &[], m.vsz_bytes as f64);
    out.family(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time of the master.",
    );
    out.sample("process_cpu_seconds_total", &[], m.cpu_seconds);
    out.family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the master since the epoch.",
    );
    out.sample("process_start_time_seconds", &[], m.started_at);
    if let Some(fds) = m.open_fds {
        out.family(
            "process_open_fds",
            "gauge",
            "Open descriptors of the master.",
        );
        out.sample("process_open_fds", &[], fds as f64);
    }
}

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}
