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
    // Measured at a few ms; the bound leaves room for a loaded 2-core machine.
    assert!(gap < Duration::from_millis(250), "a gap of {gap:?}");
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
    let mut times = Vec::new();
    for id in ["1", "2", "3"] {
        // When each came due: the replacements themselves go one at a time, so a slow
        // start may hold the next one back further.
        let due = steward
            .log
            .wait_event("worker-recycle-due", &[("worker", id), ("generation", "1")]);
        assert!(field(&due, "reason").contains("lifetime"), "{due}");
        times.push(log_time_of_day(&due));
        let pid = field(&due, "pid");
        replaced_gap_free(&steward, id, &pid);
    }
    eprintln!("lifetime replacements at {times:?}");
    for pair in times.windows(2) {
        let apart = pair[1] - pair[0];
        assert!(
            (0.4..1.0).contains(&apart),
            "replacements {apart:.3}s apart, not spread by the 600 ms delta: {times:?}"
        );
    }
    assert!(steward.stop().success());
}
