//! Recycling with real workers: a replacement is started and ready before the worker it
//! replaces is asked to stop, whether the worker asked for it, outlived its lifetime or
//! passed a memory limit; so load through a recycle sees no failed request.

use std::time::Duration;

use steward_testkit::{demo_bin, field, Steward};

use crate::chaos::{log_time_of_day, Outcome, Recorder};

/// The index of the first record of `name` for `pid` at or after `from`.
fn event_of(steward: &Steward, from: usize, name: &str, pid: &str) -> usize {
    steward.log.wait_event_from(from, name, &[("pid", pid)]).0
}

/// Asserts that the replacement of `old` (worker `id`) was ready before `old` was asked
/// to stop, and returns the replacement's pid.
fn replaced_gap_free(steward: &Steward, id: &str, old: &str) -> String {
    let recycling = event_of(steward, 0, "worker-recycling", old);
    let (started_at, started) =
        steward
            .log
            .wait_event_from(recycling, "worker-started", &[("worker", id)]);
    let new = field(&started, "pid");
    let ready = event_of(steward, started_at, "worker-ready", &new);
    let stopping = event_of(steward, recycling, "worker-stopping", old);
    assert!(
        ready < stopping,
        "the old worker {old} was stopped before its replacement {new} was ready"
    );
    event_of(steward, stopping, "worker-exited", old);
    new
}

/// The longest time without a request ending, and the failed requests.
fn gap_and_failures(outcomes: &[Outcome]) -> (Duration, Vec<String>) {
    let mut ends: Vec<_> = outcomes.iter().map(|o| o.end).collect();
    ends.sort();
    let gap = ends
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    let failures = outcomes.iter().filter_map(|o| o.error.clone()).collect();
    (gap, failures)
}

#[test]
fn a_worker_asking_for_replacement_after_n_requests_is_replaced_without_a_gap() {
    let demo = demo_bin();
    let mut steward = Steward::start(
        &["--workers", "1", "--ready", "notify"],
        &[&demo, "--max-requests", "5"],
    );
    steward.wait_generation_ready(1);
    let old = steward.workers(1, 1)[0].1.to_string();
    for _ in 0..5 {
        let response = steward.get("/").expect("served");
        assert_eq!(response.status, 200);
    }
    let due = steward
        .log
        .wait_event("worker-recycle-due", &[("pid", old.as_str())]);
    assert!(due.contains("after 5 requests"), "{due}");
    let new = replaced_gap_free(&steward, "1", &old);
    let body = steward.get("/").expect("served").body;
    assert!(body.contains(&format!("pid {new}")), "{body}");
    assert!(steward.stop().success());
}

#[test]
fn a_leaking_worker_is_replaced_at_reload_on_rss_under_load_with_no_failed_request() {
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--workers",
            "2",
            "--reload-on-rss",
            "60",
            "--memory-check-interval",
            "100ms",
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let load = Recorder::start(steward.port(), 4, "/");
    let leak = steward.get("/leak?mb=80").expect("leaked");
    assert_eq!(leak.status, 200);
    let recycled = steward.log.wait_event("worker-recycled", &[]);
    assert!(field(&recycled, "reason").contains("rss"), "{recycled}");
    let old = field(&recycled, "pid");
    let id = field(&recycled, "worker");
    let new = replaced_gap_free(&steward, &id, &old);
    // The load goes on past the old worker's exit, until the replacement has served.
    while !steward.get("/").expect("served").body.contains(&new) {}
    let outcomes = load.finish();
    let (gap, failures) = gap_and_failures(&outcomes);
    eprintln!(
        "reload-on-rss under load: {} requests, {} failed, worst gap {} ms",
        outcomes.len(),
        failures.len(),
        gap.as_millis()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    // Measured at 4 ms on a quiet machine; the bound leaves room for a 2-core machine
    // shared with parallel builds, where any process may stall for a while.
    assert!(gap < Duration::from_secs(1), "a gap of {gap:?}");
    assert!(outcomes.len() > 50, "too little load: {}", outcomes.len());
    assert!(steward.stop().success());
}

#[test]
fn lifetimes_with_a_delta_spread_the_replacements() {
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--workers",
            "3",
            "--max-worker-lifetime",
            "1s",
            "--max-worker-lifetime-delta",
            "600ms",
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let mut due_at = Vec::new();
    for (id, lifetime) in [("1", 1.6), ("2", 2.2), ("3", 2.8)] {
        let fields = [("worker", id), ("generation", "1")];
        let started = log_time_of_day(&steward.log.wait_event("worker-started", &fields));
        // When each came due: the replacements themselves go one at a time, so a slow
        // start may hold the next one back further.
        let due = steward.log.wait_event("worker-recycle-due", &fields);
        assert!(field(&due, "reason").contains("lifetime"), "{due}");
        let lived = log_time_of_day(&due) - started;
        // Never early; late only as much as a loaded machine delays a timer.
        assert!(
            lived >= lifetime - 0.01,
            "worker {id} due after {lived:.3}s, before its {lifetime}s"
        );
        due_at.push(log_time_of_day(&due));
        let pid = field(&due, "pid");
        replaced_gap_free(&steward, id, &pid);
    }
    eprintln!("lifetime replacements due at {due_at:?}");
    assert!(
        due_at.windows(2).all(|pair| pair[0] <= pair[1]),
        "{due_at:?}"
    );
    assert!(steward.stop().success());
}

#[test]
fn a_worker_that_stops_sending_watchdog_is_aborted_and_replaced() {
    let demo = demo_bin();
    let mut steward = Steward::start(&["--workers", "1", "--worker-watchdog", "400ms"], &[&demo]);
    steward.wait_generation_ready(1);
    let pid = steward.workers(1, 1)[0].1;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("its environment");
    let environ = String::from_utf8_lossy(&environ);
    for wanted in [
        "WATCHDOG_USEC=400000".to_owned(),
        format!("WATCHDOG_PID={pid}"),
    ] {
        assert!(environ.split('\0').any(|v| v == wanted), "no {wanted}");
    }
    // Served for three intervals, fed by its heartbeats.
    let until = std::time::Instant::now() + Duration::from_millis(1200);
    while std::time::Instant::now() < until {
        assert_eq!(steward.get("/").expect("served").status, 200);
    }
    assert!(steward.log.events("worker-watchdog", &[]).is_empty());

    let wedged_at = steward.log.len();
    let _ = steward.get("/notify?state=STATUS=handling%20a%20slow%20query");
    assert_eq!(steward.get("/wedge").expect("wedged").status, 200);
    let pid = pid.to_string();
    let (caught, record) =
        steward
            .log
            .wait_event_from(wedged_at, "worker-watchdog", &[("pid", &pid)]);
    assert!(record.contains("handling a slow query"), "{record}");
    let exited = steward
        .log
        .wait_event_from(caught, "worker-exited", &[("pid", &pid)])
        .1;
    assert!(exited.contains("SIGABRT"), "{exited}");
    let (_, ready) = steward
        .log
        .wait_event_from(caught, "worker-ready", &[("worker", "1")]);
    assert_ne!(field(&ready, "pid"), pid);
    assert!(steward.stop().success());
}

/// `cheaper`: a worker that answers one request at a time (200 ms each) under six
/// clients leaves connections waiting in the listen queue, so workers are added up to
/// `workers`; once the load stops, idle ones are retired down to `cheaper`.
#[test]
fn cheaper_follows_the_listen_queue_up_and_down() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let serial = "import socket, time\n\
        s = socket.socket(fileno=3)\n\
        while True:\n\
        \x20   c, _ = s.accept(); c.recv(4096); time.sleep(0.2)\n\
        \x20   c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'); c.close()\n";
    let steward = steward_testkit::Steward::start(
        &[
            "--workers",
            "3",
            "--cheaper",
            "1",
            "--cheaper-overload",
            "300ms",
            "--cheaper-idle",
            "1s",
            "--worker-reload-mercy",
            "1s",
        ],
        &["/usr/bin/python3", "-c", serial],
    );
    steward.wait_generation_ready(1);
    assert_eq!(
        steward.worker_pids(1).len(),
        1,
        "cheaper-initial defaults to cheaper"
    );
    let addr = steward.addr();
    let loaded = std::sync::Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let loaded = loaded.clone();
            std::thread::spawn(move || {
                while loaded.load(Ordering::Relaxed) {
                    let _ = steward_testkit::get(addr, "/");
                }
            })
        })
        .collect();
    steward.log.wait_event("cheaper", &[("decision", "more")]);
    steward
        .log
        .wait_event("workers-resized", &[("workers", "3")]);
    loaded.store(false, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let fewer = steward
        .log
        .wait_event("cheaper", &[("decision", "fewer"), ("workers", "2")]);
    assert_eq!(steward_testkit::field(&fewer, "queued"), "0", "{fewer}");
    steward
        .log
        .wait_event("workers-resized", &[("workers", "1")]);
    let refused = steward
        .log
        .events("cheaper", &[("decision", "fewer"), ("workers", "1")]);
    assert!(refused.is_empty(), "never below cheaper: {refused:?}");
}

#[test]
fn cheaper_switched_on_and_off_by_a_reload_takes_effect_at_once() {
    let dir = steward_testkit::TestDir::new("cheaper-reload");
    let control = dir.at("control.sock");
    let fixed = format!(
        "listen = [\"127.0.0.1:0\"]\nworkers = 3\ncommand = [\"{}\"]\ncontrol-socket = \"{control}\"\n",
        demo_bin()
    );
    let status = |json: bool| {
        let mut args = vec!["status", "--control-socket", &control];
        if json {
            args.push("--json");
        }
        String::from_utf8(steward_testkit::steward_client(&args).stdout).unwrap()
    };
    dir.write("app.toml", &fixed);
    let mut cmd = std::process::Command::new(steward_testkit::steward_bin());
    cmd.args(["--config", &dir.at("app.toml")]);
    let steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    assert_eq!(steward.worker_pids(1).len(), 3);

    // On: an idle queue retires workers down to the minimum, with no restart.
    dir.write(
        "app.toml",
        &format!("{fixed}cheaper = 1\ncheaper-idle = \"300ms\"\n"),
    );
    let from = steward.log.len();
    steward.signal(nix::sys::signal::Signal::SIGHUP);
    steward
        .log
        .wait_event_from(from, "cheaper", &[("decision", "fewer")]);
    steward
        .log
        .wait_event_from(from, "workers-resized", &[("workers", "1")]);
    // The bounds and the queue they follow, in both forms of the status.
    let text = status(false);
    assert!(
        text.contains(
            "cheaper: between 1 and 3 workers, following the listen queue (0 connections waiting)"
        ),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(
        json["workers_bounds"],
        serde_json::json!({"fewest": 1, "most": 3})
    );

    // Off again: back to `workers`, not the count cheaper left.
    dir.write("app.toml", &fixed);
    let from = steward.log.len();
    steward.signal(nix::sys::signal::Signal::SIGHUP);
    let (_, ready) = steward
        .log
        .wait_event_from(from, "generation-ready", &[("generation", "3")]);
    assert_eq!(field(&ready, "workers"), "3", "{ready}");
    let json: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert!(json.get("workers_bounds").is_none(), "{json}");
}
