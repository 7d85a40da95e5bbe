//! Workers' output: read by the master through a pipe per worker and written on after
//! the worker's id and pid (to stderr here; the e2e suite checks the journal), a flood
//! that cannot stall the master, `ready = log:REGEX`, and `worker-output = inherit`.

use nix::{sys::signal::Signal, unistd::Pid};
use steward_testkit::{demo_bin, field, rss_kb, steward_client, Steward, TestDir};

/// The target of descriptor `fd` of `pid`.
fn fd_target(pid: Pid, fd: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn each_line_of_a_worker_comes_after_its_id_and_pid_with_its_level() {
    let demo = demo_bin();
    let script = format!(
        "echo hello from $STEWARD_WORKER_ID; echo '<4>careful now' >&2; printf 'no newline'; exec {demo}"
    );
    let steward = Steward::start(&["--workers", "2"], &["/bin/sh", "-c", &script]);
    steward.wait_generation_ready(1);
    for (id, pid) in steward.workers(1, 2) {
        steward
            .log
            .wait_for(&[&format!("worker {id} [{pid}]: hello from {id}")]);
        steward
            .log
            .wait_for(&[&format!("worker {id} [{pid}]: warning: careful now")]);
        // The worker's stdout is a pipe of the master's, not the master's own stdout.
        let output = fd_target(pid, 1);
        assert!(output.starts_with("pipe:"), "{output}");
        assert_eq!(
            fd_target(pid, 2),
            output,
            "stdout and stderr share the pipe"
        );
        assert_ne!(fd_target(steward.pid(), 1), output);
    }
    // A last line without its newline is written when the worker's pipe closes.
    let (_, first) = steward.workers(1, 2)[0];
    steward.signal(Signal::SIGHUP);
    steward.wait_generation_ready(2);
    steward
        .log
        .wait_for(&[&format!("worker 1 [{first}]: no newline")]);
}

#[test]
fn a_worker_flooding_its_output_neither_stalls_the_master_nor_grows_it() {
    let dir = TestDir::new("output-flood");
    let control = dir.join("control.sock");
    let control = control.to_str().unwrap();
    let demo = demo_bin();
    // `yes` writes as fast as the pipe takes it, for as long as the worker lives (it is
    // in the worker's process group, so it stops with it).
    let script = format!("yes flooding the log & exec {demo}");
    let mut steward = Steward::start(
        &["--workers", "2", "--control-socket", control],
        &["/bin/sh", "-c", &script],
    );
    steward.wait_generation_ready(1);
    let dropped = steward
        .log
        .wait_event("worker-output-dropped", &[("worker", "1")]);
    assert!(
        field(&dropped, "over_rate").parse::<u64>().unwrap() > 0,
        "{dropped}"
    );
    let before = rss_kb(steward.pid());
    let status = steward_client(&["status", "--control-socket", control]);
    assert!(status.status.success());
    assert_eq!(steward.get("/").unwrap().status, 200);
    let reload = steward_client(&["reload", "--wait", "--control-socket", control]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let after = rss_kb(steward.pid());
    assert!(
        after < before + 4096,
        "the master grew from {before} kB to {after} kB"
    );
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn ready_log_makes_a_worker_ready_on_its_first_matching_line() {
    let demo = demo_bin();
    // The demo serves at once; the line that says it is ready comes 700 ms later.
    let script = format!("(sleep 0.7; echo 'Application startup complete.') & exec {demo}");
    let steward = Steward::start(
        &["--ready", "log:startup complete\\.$"],
        &["/bin/sh", "-c", &script],
    );
    steward.wait_generation_ready(1);
    let ready = steward.log.wait_event("worker-ready", &[("by", "log")]);
    let after: u64 = field(&ready, "after_ms").parse().unwrap();
    assert!(
        after >= 700,
        "ready after {after} ms, before the line: {ready}"
    );
}

#[test]
fn ready_log_with_output_left_alone_is_refused_at_once() {
    let mut steward = Steward::start(
        &["--ready", "log:up", "--worker-output", "inherit"],
        &[&demo_bin()],
    );
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(1));
    steward.log.wait_for(&["worker-output = inherit"]);
}

#[test]
fn output_left_alone_is_the_masters_own() {
    let steward = Steward::start(&["--worker-output", "inherit"], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let (_, worker) = steward.workers(1, 1)[0];
    for fd in [1, 2] {
        assert_eq!(fd_target(worker, fd), fd_target(steward.pid(), fd));
    }
}
