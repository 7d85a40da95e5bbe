//! What systemd hears beyond READY/RELOADING/STOPPING: the watchdog, the fd store and
//! longer stop timeouts while workers drain. A datagram socket stands in for systemd.

use std::{net::TcpListener, time::Duration};

use nix::sys::signal::Signal;

use steward_testkit::{demo_bin, Steward, SystemdSocket};

#[test]
fn the_watchdog_is_fed_from_the_loop_when_it_is_ours() {
    let systemd = SystemdSocket::bind("sd-watchdog");
    let demo = demo_bin();
    let steward = Steward::start_env(
        &[
            ("NOTIFY_SOCKET", &systemd.address()),
            ("WATCHDOG_USEC", "200000"),
        ],
        &[],
        &[&demo],
    );
    let seen = systemd.receive_until("READY=1");
    assert!(
        seen.iter().any(|n| n.text == "WATCHDOG=1\n"),
        "the first ping goes out at once"
    );
    // And it keeps coming while nothing else happens.
    for _ in 0..3 {
        assert_eq!(systemd.receive().text, "WATCHDOG=1\n");
    }
    drop(steward);

    let systemd = SystemdSocket::bind("sd-watchdog-other");
    let _steward = Steward::start_env(
        &[
            ("NOTIFY_SOCKET", &systemd.address()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
        &[],
        &[&demo],
    );
    let seen = systemd.receive_until("READY=1");
    assert!(
        seen.iter().all(|n| !n.text.contains("WATCHDOG")),
        "WATCHDOG_PID names another process: not our watchdog"
    );
}

#[test]
fn bound_sockets_go_to_the_fd_store_under_their_names() {
    let systemd = SystemdSocket::bind("sd-fdstore");
    let demo = demo_bin();
    let steward = Steward::start_env(
        &[("NOTIFY_SOCKET", &systemd.address()), ("FDSTORE", "4")],
        &[],
        &[&demo],
    );
    let seen = systemd.receive_until("READY=1");
    let stored: Vec<_> = seen
        .into_iter()
        .filter(|n| n.text.starts_with("FDSTORE=1"))
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].text, "FDSTORE=1\nFDNAME=listen0\n");
    assert_eq!(stored[0].fds.len(), 1);
    let listener = TcpListener::from(stored[0].fds[0].try_clone().unwrap());
    assert_eq!(listener.local_addr().unwrap().port(), steward.port());
    drop(steward);

    let systemd = SystemdSocket::bind("sd-no-fdstore");
    let _steward = Steward::start_env(&[("NOTIFY_SOCKET", &systemd.address())], &[], &[&demo]);
    let seen = systemd.receive_until("READY=1");
    assert!(
        seen.iter().all(|n| !n.text.contains("FDSTORE")),
        "without FDSTORE= systemd keeps no fds for us"
    );
}

#[test]
fn a_long_drain_asks_systemd_for_more_time() {
    let systemd = SystemdSocket::bind("sd-extend");
    let demo = demo_bin();
    let mut steward = Steward::start_env(
        &[
            ("NOTIFY_SOCKET", &systemd.address()),
            ("STEWARD_DEMO_LOG_REQUESTS", "1"),
        ],
        &["--worker-reload-mercy", "20s"],
        &[&demo],
    );
    systemd.receive_until("READY=1");
    let in_flight = steward.request_in_flight(1500);
    steward.signal(Signal::SIGTERM);
    assert_eq!(systemd.receive().text, "STOPPING=1\n");
    let extend = systemd.receive().text;
    let usec: u64 = extend
        .strip_prefix("EXTEND_TIMEOUT_USEC=")
        .and_then(|v| v.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("EXTEND_TIMEOUT_USEC after STOPPING=1, got {extend:?}"));
    let asked = Duration::from_micros(usec);
    assert!(
        asked > Duration::from_secs(5) && asked <= Duration::from_secs(10),
        "{asked:?}: the time to the next extension and a margin"
    );
    assert_eq!(in_flight.join().unwrap().unwrap().status, 200);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}
