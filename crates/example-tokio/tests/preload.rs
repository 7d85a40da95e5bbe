//! Preload mode end to end: the example runs as a subprocess (its master forks, and
//! signals reach it, outside this multi-threaded test process), and each test looks at
//! what a user would see: answers, pids, /proc, the log, the exit status.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

mod common;

use common::{fields, Example, TestDir, DEADLINE};

const EXAMPLE: &str = env!("CARGO_BIN_EXE_steward-example-tokio");
const EXAMPLE_V2: &str = env!("CARGO_BIN_EXE_steward-example-tokio-v2");

impl Example {
    /// `GET path`: the fields of the answer line (`key=value ...`).
    fn get(&self, path: &str) -> BTreeMap<String, String> {
        let body = http_get(self.port(), path)
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}; log:\n{}", self.log()));
        fields(&body)
    }

    /// GETs `/` until `accept` likes the answer.
    fn get_until(
        &self,
        what: &str,
        accept: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> BTreeMap<String, String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(body) = http_get(self.port(), "/") {
                let answer = fields(&body);
                if accept(&answer) {
                    return answer;
                }
            }
            assert!(
                Instant::now() < deadline,
                "never answered with {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::other(format!("bad answer: {response:?}"))),
    }
}

/// `Shared_Clean + Shared_Dirty` of a process, in KiB.
fn shared_kib(pid: &str) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    rollup
        .lines()
        .filter(|line| line.starts_with("Shared_Clean:") || line.starts_with("Shared_Dirty:"))
        .map(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|kib| kib.parse::<u64>().ok())
                .unwrap()
        })
        .sum()
}

#[test]
fn forked_workers_serve_from_a_tokio_runtime_and_drain_on_shutdown() {
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[("STEWARD_WORKERS", "1"), ("STEWARD_READY", "notify")],
    );
    // ready = notify: the worker's READY=1 (WorkerContext::ready) made it ready.
    example.wait_generation_ready(1);
    let first = example.get("/");
    let master = example.pid().to_string();
    assert_eq!(first["version"], "1");
    assert_eq!(first["worker"], "1");
    assert_eq!(first["generation"], "1");
    assert_eq!(first["master"], master);
    assert_eq!(first["loaded_by"], master, "the app loads in the master");
    assert_eq!(first["listen_pid"], first["pid"]);
    assert_eq!(first["listen_fds"], "1");
    assert_eq!(first["served"], "0");
    // The after-request hook runs after each answer (just after: the client may read
    // the answer first), and is the only thing that counts.
    example.get_until("served=1 or more", |a| a["served"] != "0");

    // What a forked worker holds: its own process group, /dev/null on stdin, the socket
    // at fd 3, and none of the master's descriptors (its signalfd, for one).
    let pid: i32 = first["pid"].parse().unwrap();
    assert_eq!(
        nix::unistd::getpgid(Some(Pid::from_raw(pid))).unwrap(),
        Pid::from_raw(pid)
    );
    let fd_target = |fd: &str| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert_eq!(fd_target("0"), Path::new("/dev/null"));
    assert!(fd_target("3").to_string_lossy().starts_with("socket:"));
    let targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    assert!(
        !targets.iter().any(|t| t.contains("signalfd")),
        "{targets:?}"
    );

    // A request in flight when the shutdown starts is answered.
    let port = example.port();
    let slow = std::thread::spawn(move || http_get(port, "/slow?ms=1500"));
    example.wait_log("slow request started", 1);
    let status = example.stop();
    let answer = slow.join().unwrap().expect("the slow request is answered");
    assert_eq!(fields(&answer)["pid"], pid.to_string());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_forked_worker_gets_a_unix_socket_as_a_unix_listener() {
    let dir = TestDir::new("unix");
    let path = dir.join("app.sock");
    let listen = format!("web=unix:{}", path.display());
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[("STEWARD_WORKERS", "1"), ("STEWARD_LISTEN", &listen)],
    );
    example.wait_generation_ready(1);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let answer = fields(response.split_once("\r\n\r\n").unwrap().1);
    assert_eq!(answer["worker"], "1");
    assert_eq!(answer["listen_fds"], "1");
    assert_eq!(answer["master"], example.pid().to_string());
    assert_eq!(example.stop().code(), Some(0));
}

#[test]
fn preloaded_pages_are_shared_with_the_workers_and_lazy_ones_are_not() {
    let ballast = [("EXAMPLE_BALLAST_MIB", "64"), ("STEWARD_WORKERS", "1")];

    let preloaded = Example::start(EXAMPLE.as_ref(), &ballast);
    let answer = preloaded.get_until("a worker", |_| true);
    assert_eq!(answer["loaded_by"], preloaded.pid().to_string());
    let preloaded_shared = shared_kib(&answer["pid"]);
    assert_eq!(preloaded.stop().code(), Some(0));

    let lazy_env = [ballast[0], ballast[1], ("STEWARD_LAZY_APPS", "true")];
    let lazy = Example::start(EXAMPLE.as_ref(), &lazy_env);
    let answer = lazy.get_until("a worker", |_| true);
    assert_eq!(
        answer["loaded_by"], answer["pid"],
        "lazy-apps loads in the worker"
    );
    assert_eq!(answer["ballast_mib"], "64");
    let lazy_shared = shared_kib(&answer["pid"]);
    assert_eq!(lazy.stop().code(), Some(0));

    assert!(
        preloaded_shared >= 60 * 1024,
        "a preloaded worker shares the 64 MiB the master loaded: {preloaded_shared} KiB shared"
    );
    assert!(
        preloaded_shared >= lazy_shared + 48 * 1024,
        "preloaded {preloaded_shared} KiB shared, lazy {lazy_shared} KiB"
    );
}

#[test]
fn a_reload_re_execs_the_master_and_runs_the_new_binary() {
    let dir = TestDir::new("upgrade");
    let binary = dir.join("app");
    std::fs::copy(EXAMPLE, &binary).unwrap();
    // Staged early: a copy's writable descriptor may leak for a moment into a process
    // another test thread forks, which would make the check of the new binary fail.
    let staged = dir.join("app.new");
    std::fs::copy(EXAMPLE_V2, &staged).unwrap();
    let example = Example::start(&binary, &[("STEWARD_WORKERS", "2")]);
    let master = example.pid().to_string();
    let before = example.get_until("version 1", |a| a["version"] == "1");
    assert_eq!(before["generation"], "1");
    example.wait_generation_ready(1);

    // A deploy: the new build renamed over the running one.
    std::fs::rename(&staged, &binary).unwrap();
    example.signal(Signal::SIGHUP);
    let after = example.get_until("version 2", |a| a["version"] == "2");
    assert_eq!(after["generation"], "2");
    assert_eq!(after["master"], master, "the master keeps its pid");
    assert_eq!(after["loaded_by"], master);
    example
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    assert!(example.log().contains("binary changed; re-executing"));

    // With the binary unchanged, a reload still re-execs: in preload mode only a new
    // image loads the app anew.
    example.signal(Signal::SIGHUP);
    example.get_until("generation 3", |a| a["generation"] == "3");
    example
        .log
        .wait_event("reload-complete", &[("generation", "3")]);
    assert!(example
        .log()
        .contains("preload mode: re-executing, so that the app loads anew"));
    assert_eq!(example.stop().code(), Some(0));
}

#[test]
fn a_reload_loads_the_app_anew_and_one_that_cannot_load_keeps_the_running_app() {
    let dir = TestDir::new("reload-config");
    let greeting = dir.join("greeting");
    std::fs::write(&greeting, "hello\n").unwrap();
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "1"),
            ("EXAMPLE_GREETING_FILE", greeting.to_str().unwrap()),
        ],
    );
    let first = example.get_until("hello", |a| a["greeting"] == "hello");
    // A reload re-execs once the master serves (one while it starts re-forks).
    example.wait_generation_ready(1);

    // A broken configuration: the new image's load would fail, so it is never exec'd;
    // the reload goes on with the running image and its loaded app.
    std::fs::write(&greeting, "two words\n").unwrap();
    example.signal(Signal::SIGHUP);
    example.log.wait_event("upgrade-refused", &[]);
    let log = example.log();
    assert!(
        log.contains("loading the app failed: greeting file"),
        "the refusal says why:\n{log}"
    );
    let second = example.get_until("generation 2", |a| a["generation"] == "2");
    assert_eq!(second["greeting"], "hello");
    assert_ne!(second["pid"], first["pid"]);

    // Fixed: the next reload re-execs, and the load reads the new value.
    std::fs::write(&greeting, "bonjour\n").unwrap();
    example.signal(Signal::SIGHUP);
    let third = example.get_until("bonjour", |a| a["greeting"] == "bonjour");
    assert_eq!(third["generation"], "3");
    assert_eq!(third["master"], example.pid().to_string());
    assert_eq!(example.stop().code(), Some(0));
}

#[test]
fn a_chain_reload_asked_on_the_control_socket_is_answered_across_the_re_exec() {
    let dir = TestDir::new("control");
    let control = dir.join("control.sock");
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "2"),
            ("STEWARD_CONTROL_SOCKET", control.to_str().unwrap()),
        ],
    );
    example.wait_generation_ready(1);
    let mut client = std::os::unix::net::UnixStream::connect(&control).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.write_all(b"chain-reload\n").unwrap();
    // The master answers "accepted", re-execs, and the new image answers the outcome
    // on the same connection, then closes it.
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    let lines: Vec<&str> = answer.lines().collect();
    assert_eq!(lines.first(), Some(&"accepted generation=2"), "{answer}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("ok generation=2 ")),
        "{answer}\nlog:\n{}",
        example.log()
    );
    assert!(example
        .log()
        .contains("preload mode: re-executing, so that the app loads anew"));
    // Chain: one worker at a time, so both of generation 2 serve now.
    for worker in ["1", "2"] {
        example.get_until(&format!("worker {worker} of generation 2"), |a| {
            a["generation"] == "2" && a["worker"] == worker
        });
    }
    assert_eq!(example.stop().code(), Some(0));
}

#[test]
fn a_lazy_reload_re_forks_without_re_exec() {
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[("STEWARD_WORKERS", "1"), ("STEWARD_LAZY_APPS", "true")],
    );
    let first = example.get_until("generation 1", |a| a["generation"] == "1");
    example.signal(Signal::SIGHUP);
    let second = example.get_until("generation 2", |a| a["generation"] == "2");
    assert_ne!(second["pid"], first["pid"]);
    assert_eq!(second["loaded_by"], second["pid"]);
    example
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    assert!(!example.log().contains("re-executing"), "{}", example.log());
    assert_eq!(example.stop().code(), Some(0));
}

#[test]
fn a_thread_started_by_the_load_is_reported_and_refused_under_strict_fork() {
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[("STEWARD_WORKERS", "2"), ("EXAMPLE_LOAD_THREAD", "1")],
    );
    example.wait_log("more than one thread at fork", 1);
    let log = example.log();
    assert!(
        log.contains("app-pool"),
        "the warning names the thread:\n{log}"
    );
    assert!(
        log.contains("lazy-apps"),
        "the warning points to lazy-apps:\n{log}"
    );
    // Warned once for the same threads, not once per fork; and it still serves.
    example.get_until("an answer", |_| true);
    assert_eq!(
        example
            .log()
            .matches("more than one thread at fork")
            .count(),
        1
    );
    assert_eq!(example.stop().code(), Some(0));

    let mut strict = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("EXAMPLE_LOAD_THREAD", "1"),
            ("STEWARD_STRICT_FORK", "true"),
        ],
    );
    assert_eq!(strict.wait_exit().code(), Some(1));
    let log = strict.log();
    assert!(log.contains("strict-fork refuses to fork"), "{log}");
    assert!(log.contains("app-pool"), "{log}");
    assert!(!log.contains("worker started"), "no worker starts:\n{log}");
}

#[test]
fn sigint_and_sigquit_end_a_preloaded_master_at_once_as_in_exec_mode() {
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        let mut example = Example::start(
            EXAMPLE.as_ref(),
            &[
                ("STEWARD_WORKERS", "2"),
                ("STEWARD_WORKER_RELOAD_MERCY", "60"),
            ],
        );
        let worker = example.get_until("an answer", |_| true);
        let port = example.port();
        // A request that would hold a graceful shutdown for 30 s.
        let slow = std::thread::spawn(move || http_get(port, "/slow?ms=30000"));
        example.wait_log("slow request started", 1);
        let asked = Instant::now();
        example.signal(signal);
        assert_eq!(example.wait_exit().code(), Some(0), "{signal}");
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "{signal}: no drain, no mercy: {:?}",
            asked.elapsed()
        );
        assert!(
            slow.join().unwrap().is_err(),
            "{signal}: the worker was killed, not drained"
        );
        let log = example.log();
        assert!(log.contains("mode=\"brutal\""), "{signal}:\n{log}");
        assert!(
            !std::path::Path::new(&format!("/proc/{}", worker["pid"])).exists(),
            "{signal}: the worker is gone"
        );
    }
}

#[test]
fn a_slow_load_reloads_new_code_when_the_check_may_take_that_long() {
    // The check's load takes 1.5 s; 300 ms is too short for it.
    let short = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "1"),
            ("EXAMPLE_LOAD_MS", "1500"),
            ("STEWARD_PRELOAD_CHECK_TIMEOUT", "300ms"),
        ],
    );
    short.wait_generation_ready(1);
    short.signal(Signal::SIGHUP);
    short.log.wait_event("upgrade-refused", &[]);
    assert!(
        short.log().contains("no answer within 300ms"),
        "{}",
        short.log()
    );
    short.get_until("generation 2", |a| a["generation"] == "2");
    assert_eq!(short.stop().code(), Some(0));

    let long = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "1"),
            ("EXAMPLE_LOAD_MS", "1500"),
            ("STEWARD_PRELOAD_CHECK_TIMEOUT", "60s"),
        ],
    );
    long.wait_generation_ready(1);
    long.signal(Signal::SIGHUP);
    long.log
        .wait_event("reload-complete", &[("generation", "2")]);
    let log = long.log();
    assert!(log.contains("re-executed: workers adopted"), "{log}");
    assert!(!log.contains("re-exec refused"), "{log}");
    assert_eq!(long.stop().code(), Some(0));
}

/// The pid in the `upgrade-check-started` record.
fn check_pid(example: &Example) -> Pid {
    let line = example.log.wait_event("upgrade-check-started", &[]);
    Pid::from_raw(steward_testkit::field(&line, "pid").parse().unwrap())
}

fn is_running(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn the_master_serves_while_the_new_image_loads_the_app_for_its_check() {
    let dir = TestDir::new("gated-load");
    let gate = dir.join("gate");
    let control = dir.join("control.sock");
    std::fs::write(&gate, "").unwrap();
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "1"),
            ("EXAMPLE_LOAD_GATE", gate.to_str().unwrap()),
            ("STEWARD_CONTROL_SOCKET", control.to_str().unwrap()),
        ],
    );
    let first = example.get_until("generation 1", |a| a["generation"] == "1");
    example.wait_generation_ready(1);

    // The check's load now waits for the gate; the master goes on meanwhile.
    std::fs::remove_file(&gate).unwrap();
    example.signal(Signal::SIGHUP);
    let check = check_pid(&example);
    nix::sys::signal::kill(
        Pid::from_raw(first["pid"].parse().unwrap()),
        Signal::SIGKILL,
    )
    .unwrap();
    let respawned = example.get_until("a respawned worker", |a| a["pid"] != first["pid"]);
    assert_eq!(respawned["generation"], "1");
    assert!(is_running(check), "the check still loads");

    let mut client = std::os::unix::net::UnixStream::connect(&control).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.write_all(b"status\n").unwrap();
    let mut status = String::new();
    client.read_to_string(&mut status).unwrap();
    assert!(
        status.contains("reload in progress: checking the new binary"),
        "{status}"
    );

    std::fs::write(&gate, "").unwrap();
    let after = example.get_until("generation 2", |a| a["generation"] == "2");
    assert_eq!(after["master"], example.pid().to_string());
    assert_eq!(after["loaded_by"], example.pid().to_string());
    assert!(example.log().contains("re-executed: workers adopted"));
    assert_eq!(example.stop().code(), Some(0));
}

#[test]
fn sigterm_while_the_new_image_loads_for_its_check_exits_zero_and_ends_the_check() {
    let dir = TestDir::new("gated-load-term");
    let gate = dir.join("gate");
    std::fs::write(&gate, "").unwrap();
    let mut example = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "1"),
            ("EXAMPLE_LOAD_GATE", gate.to_str().unwrap()),
        ],
    );
    example.wait_generation_ready(1);
    std::fs::remove_file(&gate).unwrap();
    example.signal(Signal::SIGHUP);
    let check = check_pid(&example);
    assert!(is_running(check));

    example.signal(Signal::SIGTERM);
    assert_eq!(example.wait_exit().code(), Some(0));
    assert!(!is_running(check), "the check was left running");
    assert!(example
        .log()
        .contains("shutdown: stopping the new binary's check"));
}

#[test]
fn a_forked_worker_feeds_the_worker_watchdog_and_is_replaced_when_it_stops() {
    let example = Example::start(
        EXAMPLE.as_ref(),
        &[
            ("STEWARD_WORKERS", "1"),
            ("STEWARD_READY", "notify"),
            ("STEWARD_WORKER_WATCHDOG", "600ms"),
        ],
    );
    example.wait_generation_ready(1);
    // What an exec'd worker gets, a forked one gets too.
    let first = example.get("/");
    assert_eq!(first["watchdog_usec"], "600000");
    assert_eq!(first["watchdog_pid"], first["pid"]);
    // The master watches a worker from its first heartbeat (WorkerContext::watchdog) on:
    // wedged before it sent one, it would rightly never be caught.
    example.get_until("a heartbeat sent", |a| a["heartbeats"] != "0");
    // When they stop, it is aborted and replaced in the same slot.
    http_get(example.port(), "/wedge").expect("the wedge request is answered");
    example.wait_log("worker caught by the watchdog", 1);
    let log = example.log();
    let caught: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker caught by the watchdog"))
        .collect();
    // The wedged worker, once: fed, it had not been caught before.
    assert_eq!(caught.len(), 1, "{caught:?}");
    assert!(
        caught[0].contains(&format!("pid={} ", first["pid"])),
        "{caught:?}"
    );
    let replacement = example.get_until("a new worker", |a| a["pid"] != first["pid"]);
    assert_eq!(replacement["worker"], "1");
    assert_eq!(replacement["watchdog_pid"], replacement["pid"]);
    assert_eq!(example.stop().code(), Some(0));
}
