//! Socket activation: steward started as a .socket unit starts it, with sockets the test
//! bound as fds 3.., LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (the test binds them, so
//! it knows their ports before steward starts and no other test can take them).

use std::net::TcpListener;

use steward_testkit::{demo_bin, environ, get, socket_activated, steward_bin, Steward};

fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

#[test]
fn the_first_connection_is_answered_on_the_named_socket() {
    let activated = loopback();
    let addr = activated.local_addr().unwrap();
    let mut cmd = socket_activated(steward_bin(), &[&activated], &["web"]);
    cmd.args(["--listen", "web=127.0.0.1:0", "--", &demo_bin()]);
    let steward = Steward::spawn(cmd);
    drop(activated);

    let response = get(addr, "/").expect("the first connection is answered");
    assert!(
        response
            .body
            .starts_with("hello from worker 1 generation 1"),
        "{}",
        response.body
    );
    steward
        .log
        .wait_event("socket-inherited", &[("name", "web")]);
    // The socket named web replaced the configured one: steward bound nothing itself.
    assert_eq!(steward.listening(), [("web".to_owned(), addr.to_string())]);

    // The worker can answer before the master has logged its start.
    steward.wait_generation_ready(1);
    let (_, worker) = steward.workers(1, 1)[0];
    let env = environ(worker);
    let var = |key: &str| env.get(key).cloned();
    assert_eq!(var("LISTEN_FDNAMES").as_deref(), Some("web"));
    assert_eq!(var("LISTEN_PID"), Some(worker.to_string()));
}

#[test]
fn without_listen_options_the_handed_over_sockets_are_used_as_they_come() {
    let activated = loopback();
    let addr = activated.local_addr().unwrap();
    let mut cmd = socket_activated(steward_bin(), &[&activated], &[]);
    cmd.args(["--workers", "2", "--", &demo_bin()]);
    let steward = Steward::spawn(cmd);
    drop(activated);
    assert_eq!(get(addr, "/").unwrap().status, 200);
    steward.wait_generation_ready(1);
    assert_eq!(get(addr, "/fds").unwrap().body.trim(), "0 1 2 3");
}

#[test]
fn sockets_for_another_pid_are_left_alone() {
    let activated = loopback();
    let mut cmd = socket_activated("/bin/sh", &[&activated], &[]);
    cmd.args(["-c", r#"LISTEN_PID=1 exec "$0" "$@""#])
        .arg(steward_bin())
        .args(["--listen", "127.0.0.1:0", "--", &demo_bin()]);
    let steward = Steward::spawn(cmd);

    steward
        .log
        .wait_event("activation-ignored", &[("listen_pid", "1")]);
    steward.wait_generation_ready(1);
    let configured = steward.port();
    assert_ne!(configured, activated.local_addr().unwrap().port());
    let fds = steward.get("/fds").unwrap();
    assert_eq!(
        fds.body.trim(),
        "0 1 2 3",
        "the foreign fd reached the worker"
    );
}

#[test]
fn a_handed_over_socket_that_matches_nothing_is_a_clear_error() {
    let (first, second) = (loopback(), loopback());
    let mut cmd = socket_activated(steward_bin(), &[&first, &second], &[]);
    cmd.args(["--listen", "127.0.0.1:0", "--", &demo_bin()]);
    let mut steward = Steward::spawn(cmd);
    drop((first, second));

    steward.expect_start_failure(&[
        "socket activation: fd 4",
        "matches no configured --listen socket",
    ]);
}
