//! The probes a container orchestrator calls (`steward status --ready` / `--alive`, exec
//! probes) and `shutdown-delay`: on SIGTERM steward says not ready at once and serves on
//! for the delay, then drains as without it.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use steward_testkit::{demo_bin, steward_client, Steward, TestDir, DEADLINE};

/// `steward status --ready|--alive` against `control`: (exit code, stdout).
fn probe(what: &str, control: &str) -> (Option<i32>, String) {
    let out = steward_client(&["status", what, "--control-socket", control]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn probes_say_ready_and_alive_while_serving_and_fail_when_steward_is_gone() {
    let dir = TestDir::new("health");
    let control = dir.at("control.sock");
    let demo = demo_bin();
    let mut steward = Steward::start(&["--control-socket", &control], &[&demo]);
    steward.wait_generation_ready(1);
    assert_eq!(
        probe("--ready", &control),
        (Some(0), "ready: running\n".into())
    );
    assert_eq!(
        probe("--alive", &control),
        (Some(0), "alive: running\n".into())
    );
    assert!(steward.stop().success());
    let (code, out) = probe("--alive", &control);
    assert_eq!(code, Some(1));
    assert!(
        out.starts_with("not alive: cannot reach the master"),
        "{out}"
    );
}

#[test]
fn a_master_whose_loop_does_not_answer_is_not_alive() {
    let dir = TestDir::new("health-stopped");
    let control = dir.at("control.sock");
    let demo = demo_bin();
    let mut steward = Steward::start(&["--control-socket", &control], &[&demo]);
    steward.wait_generation_ready(1);
    // A stopped process still has its socket: connecting works, nothing answers.
    steward.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let out = steward_client(&[
        "status",
        "--alive",
        "--probe-timeout",
        "1",
        "--control-socket",
        &control,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text, "not alive: no answer within 1 s\n");
    assert!(started.elapsed() < Duration::from_secs(5));
    steward.signal(Signal::SIGCONT);
    assert_eq!(probe("--alive", &control).0, Some(0));
    assert!(steward.stop().success());
}

#[test]
fn with_a_shutdown_delay_sigterm_reports_not_ready_at_once_and_serves_for_the_delay() {
    let dir = TestDir::new("health-delay");
    let control = dir.at("control.sock");
    let demo = demo_bin();
    let mut steward = Steward::start(
        &["--control-socket", &control, "--shutdown-delay", "1500ms"],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let asked = Instant::now();
    steward.signal(Signal::SIGTERM);
    steward
        .log
        .wait_event("shutdown-delayed", &[("delay_ms", "1500")]);
    let (code, out) = probe("--ready", &control);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.starts_with("not ready: shutting down in "), "{out}");
    // Still alive, still serving: a balancer that has not heard yet is answered.
    assert_eq!(probe("--alive", &control).0, Some(0));
    assert_eq!(steward.get("/").unwrap().status, 200);
    let reload = steward_client(&["reload", "--control-socket", &control]);
    assert!(!reload.status.success(), "no reload during the delay");

    steward
        .log
        .wait_event("shutdown-started", &[("mode", "graceful")]);
    assert!(asked.elapsed() >= Duration::from_millis(1500));
    assert!(steward.wait_exit(DEADLINE).success());
}
