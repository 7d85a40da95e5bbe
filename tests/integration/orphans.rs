//! What workers leave behind: steward is a child subreaper, so a worker's child in its
//! own session (out of reach of the stop signal to the worker's process group) comes
//! back to steward when the worker is gone; steward stops it with the worker stop
//! signal, SIGKILL after the mercy, and reaps it. What a hook started is left alone.
//! And steward as PID 1 of a pid namespace: every signal it handles still works.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use steward_testkit::{children_of, field, root_or_skip, steward_bin, Steward, DEADLINE};

/// A worker that starts `child` in a session of its own, says its pid on stderr
/// (`left-behind=PID`), then waits to be stopped.
fn worker_leaving(child: &str) -> Vec<String> {
    let script = format!("setsid {child} & echo \"left\"\"-behind=$!\" >&2; exec sleep 1000");
    vec!["/bin/sh".into(), "-c".into(), script]
}

fn start(args: &[&str], child: &str) -> Steward {
    let command = worker_leaving(child);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut all = vec!["--ready", "immediate"];
    all.extend_from_slice(args);
    let steward = Steward::start(&all, &command);
    steward.wait_generation_ready(1);
    steward
}

/// The pid of the process the worker left behind, as it said, once it runs `sleep`
/// in its own session (before, a stop of the worker's group would reach it).
fn left_behind(steward: &Steward, from: usize) -> Pid {
    let (_, line) = steward.log.wait_from(from, &["left-behind="]);
    let pid = Pid::from_raw(line.rsplit('=').next().unwrap().trim().parse().unwrap());
    let deadline = Instant::now() + DEADLINE;
    while !settled(pid) {
        assert!(
            Instant::now() < deadline,
            "{pid} never ran sleep in its own session"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    pid
}

/// Whether `pid` runs `sleep` and leads its own session.
fn settled(pid: Pid) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    // proc(5): pid (comm) state ppid pgrp session
    let session = rest.split_whitespace().nth(3);
    head.ends_with("(sleep") && session == Some(&pid.to_string())
}

/// Whether `pid` is gone and reaped (no zombie left in /proc).
fn reaped(pid: Pid) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn wait_reaped(pid: Pid) {
    let deadline = Instant::now() + DEADLINE;
    while !reaped(pid) {
        assert!(
            Instant::now() < deadline,
            "{pid} was not reaped within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The zombies among the children of `parent`.
fn zombies_of(parent: Pid) -> Vec<Pid> {
    children_of(parent)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

#[test]
fn a_child_a_killed_worker_left_behind_is_stopped_and_reaped() {
    let mut steward = start(&[], "sleep 1000");
    let orphan = left_behind(&steward, 0);
    let (_, worker) = steward.workers(1, 1)[0];
    let from = steward.log.len();
    kill(worker, Signal::SIGKILL).unwrap();
    let (_, line) =
        steward
            .log
            .wait_event_from(from, "orphan-stopping", &[("pid", &orphan.to_string())]);
    assert_eq!(field(&line, "signal"), "SIGTERM");
    wait_reaped(orphan);
    // The slot serves again, with a child of its own left behind by the next exit.
    let respawned = left_behind(&steward, from);
    assert_ne!(respawned, orphan);
    assert!(zombies_of(steward.pid()).is_empty());
    assert!(steward.stop().success());
    wait_reaped(respawned);
}

#[test]
fn at_shutdown_a_child_that_ignores_the_stop_signal_is_killed_after_the_mercy() {
    let mut steward = start(
        &["--worker-reload-mercy", "300ms"],
        "sh -c 'trap \"\" TERM; exec sleep 1000'",
    );
    let orphan = left_behind(&steward, 0);
    let started = Instant::now();
    steward.signal(Signal::SIGTERM);
    assert!(
        steward.wait_exit(DEADLINE).success(),
        "{}",
        steward.log.text()
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    steward
        .log
        .wait_event("orphan-stopping", &[("pid", &orphan.to_string())]);
    steward
        .log
        .wait_event("orphan-killed", &[("pid", &orphan.to_string())]);
    assert!(reaped(orphan), "{orphan} outlived steward");
}

#[test]
fn a_brutal_shutdown_kills_what_workers_left_behind_at_once() {
    let mut steward = start(&["--worker-reload-mercy", "30s"], "sleep 1000");
    let orphan = left_behind(&steward, 0);
    steward.signal(Signal::SIGINT);
    assert!(steward.wait_exit(Duration::from_secs(5)).code().is_some());
    let line = steward
        .log
        .wait_event("orphan-stopping", &[("pid", &orphan.to_string())]);
    assert_eq!(field(&line, "signal"), "SIGKILL");
    assert!(reaped(orphan));
}

#[test]
fn an_orphan_a_running_worker_made_is_stopped_at_the_next_reap_though_hooks_ran() {
    // A double fork: the child is reparented to steward while the worker runs, before
    // the generation's post-app phase runs (with no hook in it).
    let script = "(setsid sleep 1000 & echo \"left\"\"-behind=$!\" >&2); exec sleep 1000";
    let mut steward = Steward::start(&["--ready", "immediate"], &["/bin/sh", "-c", script]);
    steward.wait_generation_ready(1);
    let orphan = left_behind(&steward, 0);
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    steward
        .log
        .wait_event("orphan-stopping", &[("pid", &orphan.to_string())]);
    wait_reaped(orphan);
    assert!(steward.stop().success());
}

#[test]
fn a_daemon_a_hook_started_is_left_running() {
    let dir = steward_testkit::TestDir::new("orphan-hook");
    let pidfile = dir.at("daemon.pid");
    let hook = format!("exec:setsid sleep 1000 & echo $! > {pidfile}");
    let mut steward = start(&["--hook-pre-app", &hook], "sleep 1000");
    let daemon: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let daemon = Pid::from_raw(daemon);
    let orphan = left_behind(&steward, 0);
    let (_, worker) = steward.workers(1, 1)[0];
    kill(worker, Signal::SIGKILL).unwrap();
    wait_reaped(orphan);
    assert!(steward.stop().success());
    assert!(!reaped(daemon), "the hook's daemon was stopped");
    kill(daemon, Signal::SIGKILL).unwrap();
}

/// steward as PID 1 of a new pid namespace (`unshare --pid --fork --mount-proc`), as
/// the entrypoint of a container: the kernel gives PID 1 no default signal actions,
/// so each signal works only because steward handles it.
#[test]
fn as_pid_1_every_signal_does_what_it_does_elsewhere() {
    if !root_or_skip("unshare --pid makes a pid namespace") {
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc"])
        .arg(steward_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--ready",
            "immediate",
        ])
        .args(["--", "/bin/sh", "-c", "setsid sleep 1000 & exec sleep 1000"]);
    let mut steward = Steward::spawn(cmd);
    let started = steward.log.wait_event("master-started", &[]);
    assert_eq!(field(&started, "pid"), "1");
    steward.wait_generation_ready(1);
    // steward's pid outside the namespace: unshare's child.
    let pid1 = children_of(steward.pid())[0];
    let send = |signal| kill(pid1, signal).unwrap();
    // Each worker's child runs in its own session before the first reload.
    let deadline = Instant::now() + DEADLINE;
    while children_of(pid1)
        .iter()
        .filter(|worker| children_of(**worker).into_iter().any(settled))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the workers' children never settled"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    send(Signal::SIGUSR1);
    steward.log.wait_event("status-report", &[]);
    send(Signal::SIGTTIN);
    steward
        .log
        .wait_event("workers-resized", &[("workers", "3")]);
    send(Signal::SIGTTOU);
    steward
        .log
        .wait_event("workers-resized", &[("workers", "2")]);
    send(Signal::SIGHUP);
    steward.wait_generation_ready(2);
    steward
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    // Each replaced worker left a child behind: stopped (just after the reap that
    // completed the reload) and reaped, no zombie left.
    let (first, _) = steward.log.wait_event_from(0, "orphan-stopping", &[]);
    steward
        .log
        .wait_event_from(first + 1, "orphan-stopping", &[]);
    send(Signal::SIGUSR2);
    steward
        .log
        .wait_event("reload-complete", &[("generation", "3")]);
    let deadline = Instant::now() + DEADLINE;
    while !zombies_of(pid1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "zombies stay: {:?}",
            zombies_of(pid1)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    send(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    steward.log.wait_event("shutdown-complete", &[]);

    for brutal in [Signal::SIGINT, Signal::SIGQUIT] {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--mount-proc"])
            .arg(steward_bin())
            .args(["--listen", "127.0.0.1:0", "--ready", "immediate"])
            .args(["--", "sleep", "1000"]);
        let mut steward = Steward::spawn(cmd);
        steward.wait_generation_ready(1);
        kill(children_of(steward.pid())[0], brutal).unwrap();
        steward.wait_exit(DEADLINE);
        steward
            .log
            .wait_event("shutdown-started", &[("mode", "brutal")]);
        steward.log.wait_event("shutdown-complete", &[]);
    }
}
