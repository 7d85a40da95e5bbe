//! Socket activation: steward started by `systemd-socket-activate`, which binds, waits for
//! the first connection and then execs steward with the socket as fd 3, as a .socket
//! unit does.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::Command,
};

use crate::util::{demo_bin, environ, free_port, get, steward_bin, Steward};

fn activate(port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra);
    cmd
}

#[test]
fn the_first_connection_starts_steward_and_is_answered_on_the_named_socket() {
    let (activated, configured) = (free_port(), free_port());
    let mut cmd = activate(activated, &["--fdname=web"]);
    cmd.arg(steward_bin()).args([
        "--listen",
        &format!("web=127.0.0.1:{configured}"),
        "--",
        &demo_bin(),
    ]);
    let steward = Steward::spawn(cmd, activated);
    steward
        .log
        .wait_for(&["Listening on", &format!("127.0.0.1:{activated}")]);

    let response = steward.get("/").expect("the first connection is answered");
    assert!(
        response
            .body
            .starts_with("hello from worker 1 generation 1"),
        "{}",
        response.body
    );
    steward.log.wait_for(&[
        "using the socket handed over by the service manager",
        "name=web",
    ]);
    // The socket named web replaced the configured one: steward bound nothing itself.
    assert!(TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, configured))).is_err());

    // The worker can answer before the master has logged its start.
    steward.wait_generation_ready(1);
    let (_, worker) = steward.worker_pids(1)[0];
    let env = environ(worker);
    let var = |key: &str| env.get(key).cloned();
    assert_eq!(var("LISTEN_FDNAMES").as_deref(), Some("web"));
    assert_eq!(var("LISTEN_PID"), Some(worker.to_string()));
}

#[test]
fn without_listen_options_the_handed_over_sockets_are_used_as_they_come() {
    let port = free_port();
    let mut cmd = activate(port, &[]);
    cmd.arg(steward_bin())
        .args(["--workers", "2", "--", &demo_bin()]);
    let steward = Steward::spawn(cmd, port);
    steward.log.wait_for(&["Listening on"]);
    assert_eq!(steward.get("/").unwrap().status, 200);
    steward.wait_generation_ready(1);
    assert_eq!(steward.get("/fds").unwrap().body.trim(), "0 1 2 3");
}

#[test]
fn sockets_for_another_pid_are_left_alone() {
    let (activated, configured) = (free_port(), free_port());
    let mut cmd = activate(activated, &[]);
    cmd.args(["/bin/sh", "-c", r#"LISTEN_PID=1 exec "$0" "$@""#])
        .arg(steward_bin())
        .args([
            "--listen",
            &format!("127.0.0.1:{configured}"),
            "--",
            &demo_bin(),
        ]);
    let steward = Steward::spawn(cmd, configured);
    steward.log.wait_for(&["Listening on"]);
    // The first connection only starts steward; it stays queued on a socket nobody serves.
    let _starter = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, activated))).unwrap();

    steward
        .log
        .wait_for(&["LISTEN_PID is not this process", "listen_pid=1"]);
    steward.wait_generation_ready(1);
    let fds = get(SocketAddr::from((Ipv4Addr::LOCALHOST, configured)), "/fds").unwrap();
    assert_eq!(
        fds.body.trim(),
        "0 1 2 3",
        "the foreign fd reached the worker"
    );
}

#[test]
fn a_handed_over_socket_that_matches_nothing_is_a_clear_error() {
    let (first, second) = (free_port(), free_port());
    let mut cmd = activate(first, &["--listen", &format!("127.0.0.1:{second}")]);
    cmd.arg(steward_bin()).args([
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--",
        &demo_bin(),
    ]);
    let mut steward = Steward::spawn(cmd, first);
    steward
        .log
        .wait_for(&["Listening on", &format!("127.0.0.1:{second}")]);
    let _starter = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, first))).unwrap();

    steward.expect_start_failure(&[
        "socket activation: fd 4",
        "matches no configured --listen socket",
    ]);
}
