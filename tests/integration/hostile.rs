//! The running master under hostile or careless input: floods of notify datagrams and
//! FIFO bytes are said in a few lines, not one per datagram or byte, and a worker's
//! last words after its exit are not mistaken for a stranger's.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use steward_testkit::{demo_bin, environ, field, is_event, Steward, TestDir, DEADLINE};

#[test]
fn a_flood_of_foreign_notify_datagrams_is_said_in_a_few_lines() {
    let steward = Steward::start(&[], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let (_, worker) = steward.workers(1, 1)[0];
    let notify = environ(worker)["NOTIFY_SOCKET"].clone();
    let socket = std::os::unix::net::UnixDatagram::unbound().unwrap();
    for _ in 0..2000 {
        socket.send_to(b"READY=1\n", &notify).unwrap();
    }
    // Once the rate's second is over, the next warning carries the count held back.
    let pid = std::process::id().to_string();
    let with_count = |l: &str| {
        is_event(l, "notify-ignored", &[("pid", &pid)])
            && field(l, "suppressed").parse::<u64>().unwrap_or(0) > 0
    };
    let deadline = Instant::now() + DEADLINE;
    let last = loop {
        if let Some(line) = steward.log.lines().into_iter().find(|l| with_count(l)) {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no warning with a count of held back ones"
        );
        socket.send_to(b"READY=1\n", &notify).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = steward.log.events("notify-ignored", &[]).len();
    assert!(said <= 40, "{said} warnings for over 2000 datagrams");
    let suppressed: u64 = field(&last, "suppressed").parse().unwrap();
    assert!(suppressed >= 1900, "{said} said, {suppressed} held back");
    assert_eq!(steward.get("/").unwrap().status, 200);
}

#[test]
fn a_megabyte_written_to_the_master_fifo_is_a_few_warnings() {
    let dir = TestDir::new("fifo-flood");
    let fifo = dir.at("master.fifo");
    let steward = Steward::start(&["--master-fifo", &fifo], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let junk = vec![b'f'; 1 << 20];
    std::fs::write(&fifo, &junk).unwrap();
    let counted = || -> u64 {
        let warnings = steward
            .log
            .events("fifo-command-ignored", &[("command", "f")]);
        warnings
            .iter()
            .map(|l| field(l, "count").parse::<u64>().unwrap())
            .sum()
    };
    let deadline = Instant::now() + DEADLINE;
    while counted() < junk.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {} bytes said",
            counted(),
            junk.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counted(), junk.len() as u64);
    let lines = steward.log.events("fifo-command-ignored", &[]).len();
    // One per time the FIFO was readable: the writer's pieces, not its bytes.
    assert!(lines <= 64, "{lines} warnings for one write of 1 MiB");
}

#[test]
fn a_workers_stopping_just_before_its_exit_is_no_strangers_message() {
    let steward = Steward::start(&["--workers", "2"], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    // The demo says STOPPING=1 and exits on SIGTERM; each reload stops the old workers
    // that way, and each exit races its datagram.
    for generation in 2..=6 {
        steward.signal(Signal::SIGHUP);
        steward.wait_generation_ready(generation);
    }
    steward.signal(Signal::SIGTERM);
    steward.log.wait_event("shutdown-complete", &[]);
    let strangers = steward.log.events("notify-ignored", &[]);
    assert!(strangers.is_empty(), "{strangers:?}");
}

#[test]
fn the_status_report_is_written_for_a_person() {
    let steward = Steward::start(&[], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    steward.signal(Signal::SIGUSR1);
    let report = steward.log.wait_event("status-report", &[]);
    assert_eq!(field(&report, "lifecycle"), "running", "{report}");
    assert_eq!(field(&report, "serving"), "1", "{report}");
    assert!(
        !report.contains("Some(") && !report.contains("Running"),
        "{report}"
    );
}

/// Every worker crashing again at each start: status says so (not "running, serving"),
/// and so does systemd's STATUS=.
#[test]
fn a_crash_loop_shows_in_status_and_in_systemds_status() {
    let dir = TestDir::new("crash-loop");
    let control = dir.at("control.sock");
    let systemd = steward_testkit::SystemdSocket::bind("sd-crash-loop");
    let marker = dir.at("crash");
    let script = format!("[ -e {marker} ] && exit 3; exec {}", demo_bin());
    let steward = Steward::start_env(
        &[("NOTIFY_SOCKET", &systemd.address())],
        &["--workers", "2", "--control-socket", &control],
        &["/bin/sh", "-c", &script],
    );
    systemd.receive_until("READY=1");
    std::fs::write(&marker, "").unwrap();
    for (_, pid) in steward.workers(1, 2) {
        nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    }
    // The first crash is the SIGKILL; the next ones are the loop, with no worker left.
    loop {
        let said = systemd.receive().text;
        if said.contains("times in a row (status 3)") && said.contains("0 of 2 workers ready") {
            break;
        }
    }
    // Once each slot crashed again at its restart, status shows the loop.
    let deadline = Instant::now() + DEADLINE;
    let text = loop {
        let out = steward_testkit::steward_client(&["status", "--control-socket", &control]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("worker 2 crashed 2 times in a row") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("not serving: no worker is ready"), "{text}");
    assert!(
        text.contains("(last: status 3), started again in"),
        "{text}"
    );
    let json = steward_testkit::steward_client(&["status", "--json", "--control-socket", &control]);
    let json = String::from_utf8_lossy(&json.stdout).into_owned();
    assert!(json.contains(r#""serving_workers":0"#), "{json}");
    assert!(json.contains(r#""last_exit":"status 3""#), "{json}");
    // Fixed: the slots come back, and so does the plain count.
    std::fs::remove_file(&marker).unwrap();
    let back = systemd.receive_until("2 workers, generation 1");
    assert!(!back.is_empty());
}

/// systemd may start a service with inheritable (and ambient) capabilities; leaving
/// root keeps the inheritable ones unless they are cleared, and steward clears both.
#[test]
fn leaving_root_clears_the_inheritable_and_ambient_capabilities() {
    if !steward_testkit::root_or_skip("starts steward with capabilities and drops to nobody") {
        return;
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--inh-caps=+chown,+net_bind_service",
        "--ambient-caps=+chown",
        "--",
    ])
    .arg(steward_testkit::steward_bin())
    .args([
        "--listen",
        "127.0.0.1:0",
        "--uid",
        "nobody",
        "--gid",
        "nogroup",
        "--",
    ])
    .arg(demo_bin());
    let steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    let (_, worker) = steward.workers(1, 1)[0];
    for pid in [steward.pid(), worker] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        for set in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
            let value = status
                .lines()
                .find_map(|l| l.strip_prefix(set))
                .unwrap()
                .trim();
            assert_eq!(value, "0000000000000000", "{set} of {pid}");
        }
    }
}

/// Under a process limit, the fork of worker 30 fails: the start fails with one clear
/// message, every worker already forked is logged and stopped, and the limit was
/// named before the first fork.
#[test]
fn a_fork_refused_at_start_is_a_clean_failure() {
    if !steward_testkit::root_or_skip("runs steward as nobody under RLIMIT_NPROC") {
        return;
    }
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["prlimit", "--nproc=30", "--"])
        .arg(steward_testkit::steward_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "60",
            "--ready",
            "immediate",
            "--",
        ])
        .arg(demo_bin());
    let mut steward = Steward::spawn(cmd);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(1));
    assert!(steward.log.wait_closed(DEADLINE));
    let over = steward
        .log
        .wait_event("workers-over-limit", &[("name", "RLIMIT_NPROC")]);
    assert_eq!(field(&over, "limit"), "30", "{over}");
    let started = steward.log.events("worker-started", &[]).len();
    let exited = steward.log.events("worker-exited", &[]).len();
    assert!(started > 0 && started < 60, "{started} started");
    assert_eq!(exited, started, "every worker started is stopped");
    let shutdown = steward.log.wait_event("shutdown-started", &[]);
    assert_eq!(
        field(&shutdown, "workers"),
        started.to_string(),
        "{shutdown}"
    );
    let error = steward.log.wait_for(&["steward: error:"]);
    assert!(error.contains("fork failed: EAGAIN"), "{error}");
    assert!(!error.contains("exited with"), "{error}");
    assert_eq!(steward.log.count(&["steward: error:"]), 1);
}

/// A graceful stop with a socket nothing takes over: new connections are refused at
/// once (not queued through the drain and reset at its end), the request in flight is
/// answered.
#[test]
fn a_stop_refuses_new_connections_at_once_and_finishes_what_is_in_flight() {
    let log_requests = [("STEWARD_DEMO_LOG_REQUESTS", "1")];
    let steward = Steward::start_env(&log_requests, &[], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let in_flight = steward.request_in_flight(1500);
    steward.signal(Signal::SIGTERM);
    steward.log.wait_event("socket-closed", &[]);
    let refused = std::net::TcpStream::connect(steward.addr()).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(in_flight.join().unwrap().unwrap().status, 200);
}

/// With a socket systemd handed over, systemd keeps it across the stop: connections
/// queue for the next start rather than being refused.
#[test]
fn a_stop_leaves_a_socket_systemd_handed_over_open() {
    let activated = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd =
        steward_testkit::socket_activated(steward_testkit::steward_bin(), &[&activated], &[]);
    cmd.env("STEWARD_DEMO_LOG_REQUESTS", "1")
        .args(["--", &demo_bin()]);
    let mut steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    let in_flight = steward.request_in_flight(1500);
    steward.signal(Signal::SIGTERM);
    steward.log.wait_event("shutdown-started", &[]);
    let queued = std::net::TcpStream::connect(activated.local_addr().unwrap());
    assert!(queued.is_ok(), "{queued:?}");
    assert_eq!(in_flight.join().unwrap().unwrap().status, 200);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    assert!(steward.log.events("socket-closed", &[]).is_empty());
}

/// 64 idle connections to the control socket (a local user sharing the master's uid)
/// no longer lock `status` out: the oldest silent one makes room and is told why, and
/// silent ones are closed after 5 s.
#[test]
fn idle_control_connections_cannot_lock_an_operator_out() {
    use std::io::Read;
    let dir = TestDir::new("control-flood");
    let control = dir.at("control.sock");
    let steward = Steward::start(&["--control-socket", &control], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let mut idle: Vec<std::os::unix::net::UnixStream> = (0..64)
        .map(|_| std::os::unix::net::UnixStream::connect(&control).unwrap())
        .collect();
    let status = steward_testkit::steward_client(&["status", "--control-socket", &control]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut told = String::new();
    idle[0].read_to_string(&mut told).unwrap();
    assert!(told.contains("too many control connections"), "{told}");
    // The others are closed once they have said nothing for 5 s.
    steward
        .log
        .wait_event("control-dropped", &[("reason", "no request in time")]);
    let mut told = String::new();
    idle[63].read_to_string(&mut told).unwrap();
    assert!(told.contains("no request within 5 s"), "{told}");
}
