//! Integration tests: each drives the real `steward` binary over the demo worker, and
//! checks what a user would see: answers, pids, exit statuses, log lines.

mod activation;
mod chaos;
mod check;
mod config;
mod control;
mod effects;
mod emperor;
mod emperor_vassals;
mod exit;
mod faults;
mod generate;
mod health;
mod hooks;
mod hostile;
mod ondemand;
mod orphans;
mod output;
mod readiness;
mod recycling;
mod security;
mod soak;
mod stats;
mod systemd;
mod upgrade;
mod uwsgi;

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::net::UnixDatagram,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use std::os::unix::fs::PermissionsExt;

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use steward_testkit::{demo_bin, environ, field, is_gone, wait_gone, Client, Steward, TestDir};

/// Requests sent in a loop by a client thread until stopped; every failure is kept.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// One client that reuses its connection (reconnecting when the server closes it),
    /// and one that opens a connection per request.
    fn start(port: u16) -> Load {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = [true, false]
            .into_iter()
            .map(|keep_alive| {
                let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
                std::thread::spawn(move || {
                    let mut client: Option<Client> = None;
                    while !stop.load(Ordering::Relaxed) {
                        let result = match client.take() {
                            Some(c) => Ok(c),
                            None => Client::connect(addr),
                        }
                        .and_then(|mut c| {
                            let response = c.get("/", !keep_alive)?;
                            Ok((c, response))
                        });
                        sent.fetch_add(1, Ordering::Relaxed);
                        match result {
                            Ok((c, response)) if response.status == 200 => {
                                if keep_alive && !response.closes {
                                    client = Some(c);
                                }
                            }
                            Ok((_, response)) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", response.status)),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            failures,
            threads,
        }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failures.lock().unwrap().clone(),
        )
    }
}

#[test]
fn five_graceful_reloads_under_load_fail_no_request() {
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "2"], &[&demo]);
    steward.wait_generation_ready(1);
    let load = Load::start(steward.port());

    for generation in 2..=6u64 {
        let from = steward.log.len();
        steward.signal(Signal::SIGHUP);
        steward.log.wait_event_from(
            from,
            "reload-complete",
            &[("generation", &generation.to_string())],
        );
        // Every old worker has exited: whatever answers now is of the new generation.
        for _ in 0..20 {
            let response = steward.get("/").unwrap();
            assert_eq!(response.generation(), generation, "{}", response.body);
        }
    }

    let (sent, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 100, "the load sent only {sent} requests");
}

#[test]
fn a_killed_worker_is_started_again_and_the_others_keep_running() {
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "3"], &[&demo]);
    steward.wait_generation_ready(1);
    let before = steward.worker_pids(1);
    assert_eq!(before.len(), 3);
    let (_, victim) = before.iter().find(|(id, _)| *id == 2).copied().unwrap();

    kill(victim, Signal::SIGKILL).unwrap();
    let (crashed, line) = steward
        .log
        .wait_event_from(0, "worker-crashed", &[("worker", "2")]);
    assert!(
        line.contains(&format!("pid={victim} ")) && line.contains("signal SIGKILL"),
        "{line}"
    );
    let (_, line) = steward.log.wait_event_from(
        crashed,
        "worker-started",
        &[("worker", "2"), ("generation", "1")],
    );
    let respawned = Pid::from_raw(field(&line, "pid").parse().unwrap());
    assert_ne!(respawned, victim);

    for (id, pid) in before.iter().filter(|(id, _)| *id != 2) {
        assert!(!is_gone(*pid), "worker {id} (pid {pid}) should still run");
    }
    assert_eq!(
        steward.worker_pids(1).len(),
        4,
        "exactly one worker was started again"
    );
    steward.log.wait_event(
        "worker-ready",
        &[("worker", "2"), ("pid", &respawned.to_string())],
    );
    assert_eq!(steward.get("/").unwrap().status, 200);
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let demo = demo_bin();
    let log_requests = [("STEWARD_DEMO_LOG_REQUESTS", "1")];
    let mut steward = Steward::start_env(&log_requests, &["--workers", "1"], &[&demo]);
    steward.wait_generation_ready(1);
    let slow = steward.request_in_flight(1500);
    steward.signal(Signal::SIGTERM);

    let response = slow.join().unwrap().expect("the slow request is answered");
    assert_eq!(response.status, 200);
    assert!(
        response
            .body
            .starts_with("hello from worker 1 generation 1"),
        "{}",
        response.body
    );
    let status = steward.wait_exit(steward_testkit::DEADLINE);
    assert_eq!(status.code(), Some(0));
    steward.log.wait_event("shutdown-complete", &[]);
}

#[test]
fn sigint_kills_every_worker_at_once() {
    let demo = demo_bin();
    let log_requests = [("STEWARD_DEMO_LOG_REQUESTS", "1")];
    let mut steward = Steward::start_env(&log_requests, &["--workers", "3"], &[&demo]);
    steward.wait_generation_ready(1);
    let workers = steward.workers(1, 3);
    // A request that a graceful shutdown would wait a minute for.
    let slow = steward.request_in_flight(60_000);
    steward.signal(Signal::SIGINT);

    let status = steward.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    for (_, pid) in workers {
        assert!(is_gone(pid), "worker {pid} outlived a brutal shutdown");
    }
    assert!(
        slow.join().unwrap().is_err(),
        "the killed request cannot have been answered"
    );
}

#[test]
fn no_worker_outlives_a_sigkilled_master() {
    let demo = demo_bin();
    let mut steward = Steward::start(&["--workers", "3"], &[&demo]);
    steward.wait_generation_ready(1);
    let workers = steward.workers(1, 3);

    steward.signal(Signal::SIGKILL);
    steward.wait_exit(steward_testkit::DEADLINE);
    for (_, pid) in workers {
        wait_gone(pid);
    }
}

#[test]
fn a_command_that_fails_at_once_ends_steward_with_a_clear_message() {
    let mut steward = Steward::start(&["--workers", "2"], &["/bin/sh", "-c", "exit 3"]);
    let status = steward.wait_exit(steward_testkit::DEADLINE);
    assert_eq!(status.code(), Some(1));
    steward.log.wait_for(&[
        "steward: error:",
        "(/bin/sh -c exit 3) exited with status 3 before it was ready",
    ]);
    assert!(steward.log.wait_closed(steward_testkit::DEADLINE));
    let said = steward
        .log
        .count(&["exited with status 3 before it was ready"]);
    assert_eq!(said, 1, "the error is said once");
    let started = steward.log.events("worker-started", &[]).len();
    assert!(
        started <= 2,
        "steward kept starting a failing command: {started} starts"
    );
}

/// More workers than steward forks before confirming their execs: every one of them
/// runs, under the id and pid the log gives it.
#[test]
fn workers_forked_in_batches_each_run_with_their_own_id() {
    let dir = TestDir::new("batched-starts");
    let script = format!(
        "echo $$ > {}/$STEWARD_WORKER_ID; exec sleep 600",
        dir.display()
    );
    let steward = Steward::start(
        &["--workers", "150", "--ready", "immediate"],
        &["/bin/sh", "-c", &script],
    );
    steward.wait_generation_ready(1);
    let workers = steward.worker_pids(1);
    assert_eq!(workers.len(), 150);
    for (id, pid) in workers {
        let file = dir.join(id.to_string());
        let deadline = std::time::Instant::now() + steward_testkit::DEADLINE;
        let written = loop {
            match std::fs::read_to_string(&file) {
                Ok(text) if text.ends_with('\n') => break text,
                _ if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => panic!("worker {id} (pid {pid}) never wrote {}", file.display()),
            }
        };
        assert_eq!(written.trim(), pid.to_string(), "worker {id}");
    }
}

/// Workers whose exec fails, forked side by side: the failure is still reported with
/// the step and errno, and steward exits 1.
#[test]
fn an_exec_failure_among_batched_starts_is_reported_with_its_step() {
    let dir = TestDir::new("batched-exec-failure");
    let script = dir.write("bad-interpreter", "#!/nonexistent/steward-interpreter\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut steward = Steward::start(&["--workers", "100"], &[&script]);
    steward.expect_start_failure(&["steward: error:", "execve failed in the worker: ENOENT"]);
}

#[test]
fn a_missing_command_is_reported_before_anything_starts() {
    let mut steward = Steward::start(&[], &["steward-no-such-program"]);
    steward.expect_start_failure(&["worker command \"steward-no-such-program\" not found in PATH"]);
    assert_eq!(steward.log.event_position("worker-started", &[]), None);
}

#[test]
fn a_worker_gets_its_sockets_and_environment_and_nothing_else() {
    let demo = demo_bin();
    let unix = steward_testkit::socket_path("fds");
    let mut cmd = steward_testkit::steward_with_a_leaked_fd();
    cmd.args([
        "--listen",
        "web=127.0.0.1:0",
        "--listen",
        &format!("admin=unix:{}", unix.display()),
    ])
    .args(["--", &demo]);
    let steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    assert!(
        std::fs::read_link(format!("/proc/{}/fd/7", steward.pid())).is_ok(),
        "steward itself has fd 7"
    );

    let response = steward.get("/fds").unwrap();
    assert_eq!(response.body.trim(), "0 1 2 3 4");

    let (_, worker) = steward.worker_pids(1)[0];
    let env = environ(worker);
    let var = |key: &str| env.get(key).cloned();
    assert_eq!(var("LISTEN_FDS").as_deref(), Some("2"));
    assert_eq!(var("LISTEN_PID"), Some(worker.to_string()));
    assert_eq!(var("LISTEN_FDNAMES").as_deref(), Some("web:admin"));
    assert_eq!(var("STEWARD_WORKER_ID").as_deref(), Some("1"));
    assert_eq!(var("STEWARD_GENERATION").as_deref(), Some("1"));
    let notify = var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET is set");
    assert!(
        std::fs::metadata(&notify).is_ok(),
        "NOTIFY_SOCKET {notify} exists"
    );

    // fd 4 is the unix socket: the worker answers there too.
    let mut stream = std::os::unix::net::UnixStream::connect(&unix).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.contains(&format!("hello from worker 1 generation 1 pid {worker}")),
        "{answer}"
    );
    drop(steward);
    let _ = std::fs::remove_file(unix);
}

#[test]
fn ready_from_a_process_that_is_not_a_worker_is_ignored() {
    let demo = demo_bin();
    let steward = Steward::start(&["--ready", "notify"], &[&demo, "--no-notify"]);
    let started = steward.log.wait_event("worker-started", &[]);
    let worker = Pid::from_raw(field(&started, "pid").parse().unwrap());
    steward.log.wait_for(&["steward-demo: worker 1"]);
    let notify = environ(worker)["NOTIFY_SOCKET"].clone();

    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"READY=1\n", &notify)
        .unwrap();
    let pid = std::process::id().to_string();
    steward.log.wait_event("notify-ignored", &[("pid", &pid)]);
    assert_eq!(
        steward.log.event_position("generation-ready", &[]),
        None,
        "a foreign READY=1 made the generation ready"
    );
    assert_eq!(steward.log.event_position("worker-ready", &[]), None);

    // The worker itself is believed.
    assert_eq!(steward.get("/notify?state=READY%3D1").unwrap().status, 200);
    steward
        .log
        .wait_event("worker-ready", &[("pid", &worker.to_string())]);
    steward.wait_generation_ready(1);
}

#[test]
fn chain_reload_replaces_one_worker_at_a_time() {
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "3"], &[&demo]);
    steward.wait_generation_ready(1);
    steward.signal(Signal::SIGUSR2);
    steward
        .log
        .wait_event("reload-complete", &[("generation", "2")]);

    let at = |event: &str, worker: usize, generation: &str| {
        let fields = [("worker", &*worker.to_string()), ("generation", generation)];
        steward
            .log
            .event_position(event, &fields)
            .unwrap_or_else(|| panic!("no {event} {fields:?}"))
    };
    for id in 1..=3 {
        let new_ready = at("worker-ready", id, "2");
        let old_stopped = at("worker-stopping", id, "1");
        assert!(
            new_ready < old_stopped,
            "worker {id}: the old one stopped before the new one was ready"
        );
        if id < 3 {
            let next_started = at("worker-started", id + 1, "2");
            assert!(
                new_ready < next_started,
                "worker {} started before worker {id} was ready",
                id + 1
            );
        }
    }
}

#[test]
fn sigttin_and_sigttou_add_and_remove_a_worker() {
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "1"], &[&demo]);
    steward.wait_generation_ready(1);

    steward.signal(Signal::SIGTTIN);
    let line = steward.log.wait_event("worker-started", &[("worker", "2")]);
    let second = Pid::from_raw(field(&line, "pid").parse().unwrap());
    steward.log.wait_event("worker-ready", &[("worker", "2")]);

    steward.signal(Signal::SIGTTOU);
    steward
        .log
        .wait_event("worker-stopping", &[("worker", "2")]);
    wait_gone(second);
    steward.signal(Signal::SIGTTOU);
    steward
        .log
        .wait_event("resize-refused", &[("workers", "1")]);
    assert_eq!(steward.get("/").unwrap().status, 200);
}

#[test]
fn a_crash_loop_backs_off_doubling() {
    // Ready at once, then exits: the first generation counts as up, so steward respawns.
    let steward = Steward::start(
        &["--ready", "immediate", "--respawn-backoff", "50ms"],
        &["/bin/sh", "-c", "exit 1"],
    );
    let mut from = 0;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (at, line) = steward.log.wait_event_from(from, "worker-crashed", &[]);
        delays.push(field(&line, "respawn_in_ms").parse::<u64>().unwrap());
        from = at + 1;
    }
    assert_eq!(delays, [50, 100, 200, 400]);
}

#[test]
fn sigusr1_reports_every_worker() {
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "2"], &[&demo]);
    steward.wait_generation_ready(1);
    steward.signal(Signal::SIGUSR1);
    for (id, pid) in steward.workers(1, 2) {
        steward.log.wait_event(
            "status-worker",
            &[
                ("worker", &id.to_string()),
                ("pid", &pid.to_string()),
                ("state", "ready"),
            ],
        );
    }
}

#[test]
fn a_worker_that_ignores_the_stop_signal_is_killed_after_the_mercy() {
    // An ignored SIGTERM survives exec: sleep never hears it.
    let mut steward = Steward::start(
        &["--worker-reload-mercy", "300ms", "--ready", "immediate"],
        &[
            "/bin/sh",
            "-c",
            r#"trap "" TERM; echo "SIGTERM ignored by $$" >&2; exec sleep 600"#,
        ],
    );
    steward.wait_generation_ready(1);
    let (_, worker) = steward.worker_pids(1)[0];
    steward
        .log
        .wait_for(&[&format!("SIGTERM ignored by {worker}")]);
    steward.signal(Signal::SIGTERM);
    let line = steward
        .log
        .wait_event("worker-killed", &[("pid", &worker.to_string())]);
    assert!(line.contains("mercy_ms=300"), "{line}");
    assert!(steward
        .log
        .wait_event("worker-exited", &[("pid", &worker.to_string())])
        .contains("signal SIGKILL"));
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn the_stop_signal_is_configurable() {
    let demo = demo_bin();
    let mut steward = Steward::start(&["--worker-stop-signal", "INT"], &[&demo]);
    steward.wait_generation_ready(1);
    steward.signal(Signal::SIGTERM);
    steward
        .log
        .wait_event("worker-stopping", &[("signal", "SIGINT")]);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn bad_command_line_values_are_refused_with_the_reason() {
    for (args, expected) in [
        (
            &["--listen", "localhost:80"][..],
            "host names are not resolved",
        ),
        (&["--ready", "sometimes"][..], "invalid readiness mode"),
        (&["--worker-stop-signal", "SIGFOO"][..], "invalid signal"),
        (&["--worker-reload-mercy", "soon"][..], "invalid duration"),
        (&["--workers", "0"][..], "workers must be at least 1"),
    ] {
        let output = Command::new(steward_testkit::steward_bin())
            .args(args)
            .args(["--", "/bin/true"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn systemd_hears_ready_reloading_with_its_timestamp_ready_again_and_stopping() {
    let systemd = steward_testkit::SystemdSocket::bind("systemd-notify");
    let receive = || systemd.receive().text;
    let monotonic_usec = || {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000
    };

    let demo = demo_bin();
    let notify_socket = systemd.address();
    let mut steward = Steward::start_env(
        &[("NOTIFY_SOCKET", &notify_socket)],
        &["--workers", "2"],
        &[&demo],
    );
    assert_eq!(receive(), "READY=1\nSTATUS=2 workers, generation 1\n");

    let before = monotonic_usec();
    steward.signal(Signal::SIGHUP);
    let reloading = receive();
    let after = monotonic_usec();
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines[0], "RELOADING=1", "{reloading}");
    let stamp: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .expect("MONOTONIC_USEC in the same datagram")
        .parse()
        .unwrap();
    assert!(
        before <= stamp && stamp <= after,
        "{stamp} not within [{before}, {after}]"
    );
    assert_eq!(lines[2], "STATUS=reloading: starting generation 2");
    assert_eq!(receive(), "READY=1\nSTATUS=2 workers, generation 2\n");

    steward.signal(Signal::SIGTERM);
    assert_eq!(receive(), "STOPPING=1\n");
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn two_sockets_on_any_free_port_each_get_their_own_and_both_answer() {
    let demo = demo_bin();
    let steward = Steward::start(&["--listen", "second=127.0.0.1:0"], &[&demo]);
    steward.wait_generation_ready(1);
    let listening = steward.listening();
    assert_eq!(listening.len(), 2, "{listening:?}");
    let (first, second) = (steward.port(), steward.port_of("second"));
    assert_ne!(first, second);
    for port in [first, second] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(steward_testkit::get(addr, "/").unwrap().status, 200);
    }
}
