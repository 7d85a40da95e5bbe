//! Preload mode from blocking code (`steward-example-blocking`, no runtime): every
//! socket in configured order with its name, the stop notice waited on, `call:` hooks
//! named in the configuration, a crashed worker forked again, a worker closure that
//! fails, and a master started from a program that already has threads.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::Path,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

mod common;

use common::{fields, Example, TestDir, DEADLINE};

const EXAMPLE: &str = env!("CARGO_BIN_EXE_steward-example-blocking");

/// The fields (`key=value ...`) of the answer on a connected stream.
fn ask(mut stream: impl Read + Write) -> std::io::Result<BTreeMap<String, String>> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(fields(body)),
        _ => Err(std::io::Error::other(format!("bad answer: {response:?}"))),
    }
}

fn ask_tcp(port: u16) -> std::io::Result<BTreeMap<String, String>> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    ask(stream)
}

fn ask_unix(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    ask(stream)
}

/// Asks on `port` until `accept` likes the answer.
fn ask_until(
    example: &Example,
    port: u16,
    what: &str,
    accept: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(answer) = ask_tcp(port) {
            if accept(&answer) {
                return answer;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never answered with {what}; log:\n{}",
            example.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_socket_arrives_in_order_with_its_name_and_a_blocking_worker_hears_the_stop() {
    let dir = TestDir::new("sockets");
    let unix = dir.join("second.sock");
    // Two sockets on 127.0.0.1:0 would be one address listed twice: the third is bound
    // here and handed over, as systemd would, under the name it gets.
    let handed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let third = handed.local_addr().unwrap().port();
    let listen = format!(
        "front=127.0.0.1:0,admin=unix:{},127.0.0.1:{third}",
        unix.display()
    );
    let command = steward_testkit::socket_activated(EXAMPLE, &[&handed], &["listen2"]);
    let mut example = Example::spawn(
        command,
        &[
            ("STEWARD_LISTEN", &listen),
            ("STEWARD_WORKERS", "1"),
            ("STEWARD_READY", "notify"),
            // Long: a worker that only stopped at the SIGKILL would fail the deadline.
            ("STEWARD_WORKER_RELOAD_MERCY", "120"),
        ],
    );
    example.wait_generation_ready(1);
    drop(handed);
    let first = example.port_of("front");
    assert_eq!(example.port_of("listen2"), third);
    let answers = [
        ask_tcp(first).unwrap(),
        ask_unix(&unix).unwrap(),
        ask_tcp(third).unwrap(),
    ];
    let seen: Vec<(&str, &str, &str)> = answers
        .iter()
        .map(|a| (a["index"].as_str(), a["name"].as_str(), a["kind"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("0", "front", "tcp"),
            ("1", "admin", "unix"),
            ("2", "listen2", "tcp")
        ]
    );
    assert!(answers
        .iter()
        .all(|a| a["worker"] == "1" && a["generation"] == "1"));

    // ctx.stop().wait() returns at the stop signal: the worker exits 0 by itself.
    let asked = Instant::now();
    example.signal(Signal::SIGTERM);
    assert_eq!(example.wait_exit().code(), Some(0));
    assert!(asked.elapsed() < DEADLINE);
    let log = example.log();
    assert!(log.contains("stop notice received"), "{log}");
    assert!(log.contains("status=status 0"), "{log}");
}

#[test]
fn call_hooks_named_in_the_configuration_run_the_registered_functions() {
    let dir = TestDir::new("calls");
    let marks = dir.join("marks");
    let mut example = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "2"),
            ("EXAMPLE_MARK_FILE", marks.to_str().unwrap()),
            ("STEWARD_HOOK_MASTER_START", "call:mark"),
            ("STEWARD_HOOK_ACCEPTING", "call:mark"),
        ],
    );
    example.wait_generation_ready(1);
    let worker = ask_until(&example, example.port(), "an answer", |_| true);
    let marked = std::fs::read_to_string(&marks).unwrap();
    let mut pids: Vec<&str> = marked
        .lines()
        .map(|line| line.strip_prefix("mark pid=").unwrap())
        .collect();
    assert_eq!(
        pids.len(),
        3,
        "master-start once, accepting in each worker: {marked}"
    );
    assert_eq!(
        pids.remove(0),
        example.pid().to_string(),
        "master-start runs in the master"
    );
    assert!(
        pids.contains(&worker["pid"].as_str()),
        "accepting runs in the worker: {marked}"
    );
    example.signal(Signal::SIGTERM);
    assert_eq!(example.wait_exit().code(), Some(0));

    // A `call:` naming nothing registered stops the start, naming the option.
    let mut unknown = Example::start(
        EXAMPLE.as_ref(),
        &[("STEWARD_HOOK_MASTER_START", "call:nothing-here")],
    );
    assert_eq!(unknown.wait_exit().code(), Some(1));
    let log = unknown.log();
    assert!(
        log.contains("hook-master-start") && log.contains("nothing-here"),
        "{log}"
    );
}

#[test]
fn a_crashed_forked_worker_is_forked_again_with_its_id_and_generation() {
    let mut example = Example::start(EXAMPLE.as_ref(), &[("STEWARD_WORKERS", "1")]);
    let port = example.port();
    let before = ask_until(&example, port, "an answer", |_| true);
    // A worker can answer before the master counts it ready, and one of the first
    // generation that dies before that ends the start: crash it only once it is ready.
    example.wait_generation_ready(1);
    let crashed: i32 = before["pid"].parse().unwrap();
    kill(Pid::from_raw(crashed), Signal::SIGKILL).unwrap();
    let after = ask_until(&example, port, "another pid", |a| a["pid"] != before["pid"]);
    assert_eq!(after["worker"], "1");
    assert_eq!(after["generation"], "1");
    example.log.wait_event("worker-crashed", &[]);
    example.signal(Signal::SIGTERM);
    assert_eq!(example.wait_exit().code(), Some(0));
}

#[test]
fn a_worker_closure_that_fails_before_it_is_ready_ends_the_start() {
    for (fails, status, says) in [
        ("error", "status 1", "the worker was told to fail"),
        ("panic", "status 101", "the worker was told to panic"),
    ] {
        let mut example = Example::start(
            EXAMPLE.as_ref(),
            &[("STEWARD_WORKERS", "1"), ("EXAMPLE_WORKER_FAILS", fails)],
        );
        assert_eq!(example.wait_exit().code(), Some(1));
        let log = example.log();
        assert!(log.contains(says), "{log}");
        assert!(
            log.contains(&format!("exited with {status} before it was ready")),
            "{log}"
        );
    }
}

#[test]
fn a_program_that_has_threads_before_run_is_refused_naming_them() {
    let mut example = Example::start(
        EXAMPLE.as_ref(),
        &[("STEWARD_WORKERS", "1"), ("EXAMPLE_THREAD_BEFORE_RUN", "1")],
    );
    // Such a master could not keep its signals: a SIGHUP delivered to the other thread
    // would end the process instead of reloading it. It must not start at all.
    assert_eq!(example.wait_exit().code(), Some(1));
    let log = example.log();
    assert!(
        log.contains("early-thread"),
        "the error names the thread:\n{log}"
    );
    assert!(!log.contains("worker started"), "no worker starts:\n{log}");
}
