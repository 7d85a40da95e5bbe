//! On-demand vassals: the emperor holds the vassal's socket and starts it at the first
//! connection; with `idle` and `die-on-idle` the vassal exits when nothing is served
//! and the emperor waits for the next connection again.

use std::{net::SocketAddr, process::Command};

use nix::unistd::Pid;
use steward_testkit::{
    demo_bin, field, get, socket_activated, steward_bin, wait_gone, Client, Steward, SystemdSocket,
    TestDir,
};

use crate::emperor::{recorded, recording_hooks};

/// An on-demand vassal of one demo worker on `listen`, idle after a second.
fn on_demand_vassal(listen: &str) -> String {
    format!(
        "listen = [\"{listen}\"]\nworkers = 1\ncommand = [\"{}\"]\n\
         on-demand = true\nidle = 1\ndie-on-idle = true\n",
        demo_bin()
    )
}

/// The address of the socket the emperor holds, from `vassal-on-demand` at or after
/// log line `from`; and that line's index.
fn waiting(emperor: &Steward, from: usize, name: &str) -> (usize, SocketAddr) {
    let (at, line) = emperor
        .log
        .wait_event_from(from, "vassal-on-demand", &[("vassal", name)]);
    (at, field(&line, "sockets").parse().unwrap())
}

/// The pid of the vassal started at or after `from`, once the emperor says so.
fn started(emperor: &Steward, from: usize, name: &str) -> Pid {
    let (_, line) = emperor
        .log
        .wait_event_from(from, "vassal-started", &[("vassal", name)]);
    Pid::from_raw(field(&line, "pid").parse().unwrap())
}

/// The lines recorded for `phase` once there are `count` (the hook runs after the
/// record that says it starts), within the deadline.
fn recorded_n(record: &str, phase: &str, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + steward_testkit::DEADLINE;
    loop {
        let lines = recorded(record, phase);
        if lines.len() >= count || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn an_on_demand_vassal_starts_at_its_first_connection_and_idles_back_out() {
    let dir = TestDir::new("emperor-on-demand");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let record = dir.at("record");
    let emperor_config = dir.write(
        "emperor.toml",
        &recording_hooks(
            &record,
            &[
                ("as-on-demand-vassal", "$UWSGI_VASSAL_CONFIG"),
                ("as-on-config-vassal", "$UWSGI_VASSAL_CONFIG"),
            ],
        ),
    );
    let a = vassals.join("a.toml");
    std::fs::write(&a, on_demand_vassal("127.0.0.1:0")).unwrap();
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor").arg(&vassals).args([
        "--config",
        &emperor_config,
        "--emperor-throttle",
        "100",
    ]);
    let mut emperor = Steward::spawn(cmd);
    let (emperor_pid, a) = (emperor.pid().to_string(), a.to_str().unwrap().to_owned());

    // Held, not started: the emperor is ready with no vassal running.
    let (_, first) = waiting(&emperor, 0, "a.toml");
    emperor.log.wait_event("emperor-ready", &[]);
    assert!(emperor.log.events("vassal-started", &[]).is_empty());
    assert_eq!(
        recorded_n(&record, "as-on-demand-vassal", 1),
        [format!("{emperor_pid} {a}")]
    );

    // Its address changes while it waits: as-on-config-vassal, and the new address is
    // bound in place of the old one (which now refuses).
    let from = emperor.log.len();
    std::fs::write(
        dir.join("vassals/a.toml"),
        on_demand_vassal("web=127.0.0.1:0"),
    )
    .unwrap();
    let (at, addr) = waiting(&emperor, from, "a.toml");
    assert_ne!(addr, first);
    assert_eq!(
        recorded_n(&record, "as-on-config-vassal", 1),
        [format!("{emperor_pid} {a}")]
    );
    assert!(std::net::TcpStream::connect(first).is_err());
    // Still waiting, not entering again.
    assert_eq!(recorded(&record, "as-on-demand-vassal").len(), 1);

    // The first connection starts it, with the emperor's socket, and is answered.
    assert_eq!(get(addr, "/").unwrap().status, 200);
    let pid = started(&emperor, at, "a.toml");
    emperor
        .log
        .wait_event_from(at, "socket-inherited", &[("name", "web")]);

    // Nothing more comes: it exits 0 by itself, which is no death, and waits again.
    let (at, _) = emperor.log.wait_event_from(at, "idle", &[]);
    let (at, again) = waiting(&emperor, at, "a.toml");
    assert_eq!(again, addr);
    wait_gone(pid);
    assert!(emperor.log.events("vassal-died", &[]).is_empty());
    assert_eq!(
        recorded_n(&record, "as-on-demand-vassal", 2),
        [format!("{emperor_pid} {a}"), format!("{emperor_pid} {a}")]
    );

    // The next connection starts a new master on the same socket, and is answered.
    assert_eq!(get(addr, "/").unwrap().status, 200);
    let second = started(&emperor, at, "a.toml");
    assert_ne!(second, pid);
    assert!(emperor.stop().success());
    wait_gone(second);
}

/// Under systemd with an fd store, the emperor stores the socket it binds; a restarted
/// emperor takes it back from LISTEN_FDS, so a connection made while no emperor runs
/// waits in the backlog and is answered by the vassal the new emperor starts.
#[test]
fn an_on_demand_socket_survives_the_emperors_restart_through_the_fd_store() {
    let dir = TestDir::new("emperor-on-demand-fdstore");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    std::fs::write(vassals.join("a.toml"), on_demand_vassal("127.0.0.1:0")).unwrap();
    let systemd = SystemdSocket::bind("on-demand-fdstore");
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor")
        .arg(&vassals)
        .env("NOTIFY_SOCKET", systemd.address())
        .env("FDSTORE", "16");
    let mut emperor = Steward::spawn(cmd);
    let (_, addr) = waiting(&emperor, 0, "a.toml");
    let stored = systemd.receive_until("FDSTORE=1\nFDNAME=a.toml/listen0");
    let mut store = stored.into_iter().last().unwrap().fds;
    assert_eq!(store.len(), 1);
    assert!(emperor.stop().success());

    // No emperor: the connection waits in the backlog of the stored socket.
    let mut client = Client::connect(addr).unwrap();
    client
        .send("GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();

    let stored = store.pop().unwrap();
    let mut cmd = socket_activated(steward_bin(), &[&stored], &["a.toml/listen0"]);
    cmd.arg("emperor")
        .arg(&vassals)
        .env("NOTIFY_SOCKET", systemd.address())
        .env("FDSTORE", "16");
    let mut restarted = Steward::spawn(cmd);
    drop(stored);
    let (at, again) = waiting(&restarted, 0, "a.toml");
    assert_eq!(again, addr);
    assert_eq!(client.response().unwrap().status, 200);
    let pid = started(&restarted, at, "a.toml");
    // Socket activation as systemd does it, for the vassal's own pid; the emperor's
    // fd store is not the vassal's.
    let env = steward_testkit::environ(pid);
    assert_eq!(env.get("LISTEN_PID"), Some(&pid.to_string()), "{env:?}");
    assert_eq!(env.get("LISTEN_FDS").map(String::as_str), Some("1"));
    assert_eq!(
        env.get("LISTEN_FDNAMES").map(String::as_str),
        Some("listen0")
    );
    assert!(!env.contains_key("FDSTORE"), "{env:?}");
    assert!(restarted.stop().success());
    wait_gone(pid);
}

/// `idle` with `die-on-idle` in a plain master: a client that stays connected keeps it
/// serving; once it leaves, the master stops by itself and exits 0.
#[test]
fn a_master_with_die_on_idle_exits_once_no_client_is_connected() {
    let mut steward = Steward::start(
        &["--listen", "127.0.0.1:0", "--idle", "1", "--die-on-idle"],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    let addr: SocketAddr = format!("127.0.0.1:{}", steward.port()).parse().unwrap();
    let mut client = Client::connect(addr).unwrap();
    assert_eq!(client.get("/", false).unwrap().status, 200);
    // Connected and silent for more than twice `idle` (an absence can only be waited
    // out): still serving, on the same connection.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(client.get("/", false).unwrap().status, 200);
    assert_eq!(steward.log.event_position("idle", &[]), None);
    drop(client);
    steward.log.wait_event("idle", &[]);
    assert!(steward.wait_exit(steward_testkit::DEADLINE).success());
}

/// An on-demand vassal whose address is taken: refused with the address and why, the
/// emperor and its other vassals unharmed; a corrected file is held again.
#[test]
fn an_on_demand_address_in_use_is_refused_and_the_emperor_serves_on() {
    let dir = TestDir::new("emperor-on-demand-in-use");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    dir.write("a.toml", &on_demand_vassal(&taken_addr));
    dir.write("b.toml", &on_demand_vassal("127.0.0.1:0"));
    let mut cmd = Command::new(steward_bin());
    cmd.args(["emperor", &dir.at(""), "--emperor-throttle", "100"]);
    let mut emperor = Steward::spawn(cmd);
    let failed = emperor
        .log
        .wait_event("vassal-bind-failed", &[("vassal", "a.toml")]);
    assert_eq!(field(&failed, "socket"), taken_addr);
    assert!(failed.contains("in use"), "{failed}");
    let (_, b) = waiting(&emperor, 0, "b.toml");
    assert_eq!(get(b, "/").unwrap().status, 200);

    let from = emperor.log.len();
    dir.write("a.toml", &on_demand_vassal("127.0.0.1:0"));
    let (at, a) = waiting(&emperor, from, "a.toml");
    assert_eq!(get(a, "/").unwrap().status, 200);
    let pid = started(&emperor, at, "a.toml");
    assert!(emperor.stop().success());
    wait_gone(pid);
}

/// `idle` without `die-on-idle` (uWSGI's cheap mode): every worker retires while idle,
/// the master stays, and the next connection starts them again and is answered.
#[test]
fn a_master_with_idle_alone_retires_its_workers_until_the_next_connection() {
    let mut steward = Steward::start(
        &["--listen", "127.0.0.1:0", "--workers", "2", "--idle", "1"],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    let addr: SocketAddr = format!("127.0.0.1:{}", steward.port()).parse().unwrap();
    let first: Vec<Pid> = steward.workers(1, 2).into_iter().map(|(_, p)| p).collect();
    let (asleep, _) = steward
        .log
        .wait_event_from(0, "cheap", &[("asleep", "true")]);
    first.iter().for_each(|pid| wait_gone(*pid));
    assert!(!steward_testkit::is_gone(steward.pid()));

    assert_eq!(get(addr, "/").unwrap().status, 200);
    let (awake, line) = steward
        .log
        .wait_event_from(asleep, "cheap", &[("asleep", "false")]);
    assert_eq!(field(&line, "workers"), "2");
    let (_, started) = steward.log.wait_event_from(awake, "worker-started", &[]);
    assert!(!first.contains(&Pid::from_raw(field(&started, "pid").parse().unwrap())));

    // Idle again: retired again; a stop while asleep exits at once, 0.
    steward
        .log
        .wait_event_from(awake, "cheap", &[("asleep", "true")]);
    assert!(steward.stop().success());
}

#[test]
fn an_on_demand_vassal_stopped_by_name_waits_for_its_next_connection() {
    let dir = TestDir::new("emperor-on-demand-stop");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    // No idle exit: only the stop ends it.
    let text = on_demand_vassal("127.0.0.1:0").replace("idle = 1\ndie-on-idle = true\n", "");
    std::fs::write(vassals.join("a.toml"), text).unwrap();
    let control = dir.at("emperor.sock");
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor")
        .arg(&vassals)
        .args(["--control-socket", &control]);
    let mut emperor = Steward::spawn(cmd);
    let (at, addr) = waiting(&emperor, 0, "a.toml");
    assert_eq!(get(addr, "/").unwrap().status, 200);
    let pid = started(&emperor, at, "a.toml");

    let from = emperor.log.len();
    let stop = steward_testkit::steward_client(&[
        "stop",
        "--wait",
        "--control-socket",
        &control,
        "--vassal",
        "a.toml",
    ]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains("starts again at its next connection"),
        "{stop:?}"
    );
    wait_gone(pid);
    let (at, again) = waiting(&emperor, from, "a.toml");
    assert_eq!(again, addr);
    assert_eq!(get(addr, "/").unwrap().status, 200);
    assert_ne!(started(&emperor, at, "a.toml"), pid);
    assert!(emperor.stop().success());
}
