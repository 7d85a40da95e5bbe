//! Security: what another local process can reach. The control socket and the master
//! FIFO belong to the master's user alone, and a notify datagram from a process that
//! is not a worker cannot make a reload retire the generation that serves.

use std::os::unix::{fs::MetadataExt, net::UnixDatagram};

use nix::{sys::signal::Signal, unistd::Pid};

use std::time::Instant;

use steward_testkit::{demo_bin, environ, field, is_gone, Steward, TestDir};

/// The effective uid of a running process, from /proc.
fn euid(pid: Pid) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .expect("Uid: in /proc/PID/status")
}

#[test]
fn the_control_socket_and_fifo_are_the_masters_users_alone() {
    let dir = TestDir::new("sec-modes");
    let control = dir.join("control.sock");
    let fifo = dir.join("master.fifo");
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--control-socket",
            control.to_str().unwrap(),
            "--master-fifo",
            fifo.to_str().unwrap(),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let owner = euid(steward.pid());
    for path in [&control, &fifo] {
        let meta = std::fs::metadata(path).unwrap();
        assert_eq!(
            meta.mode() & 0o777,
            0o600,
            "{} is mode {:o}",
            path.display(),
            meta.mode() & 0o777
        );
        assert_eq!(meta.uid(), owner, "{} owner", path.display());
    }
    drop(steward);
}

#[test]
fn a_foreign_ready_during_a_reload_does_not_retire_the_serving_generation() {
    let demo = demo_bin();
    // Generation 2 never says READY=1 by itself: only a forged datagram could make it
    // ready, and with it stop generation 1.
    let script =
        format!(r#"[ "$STEWARD_GENERATION" = 2 ] && exec {demo} --no-notify; exec {demo}"#);
    let steward = Steward::start(
        &["--workers", "2", "--ready", "notify"],
        &["/bin/sh", "-c", &script],
    );
    steward.wait_generation_ready(1);
    let old = steward.workers(1, 2);
    steward.signal(Signal::SIGHUP);
    let (_, started) = steward
        .log
        .wait_event_from(0, "worker-started", &[("generation", "2")]);
    let new_worker = Pid::from_raw(field(&started, "pid").parse().unwrap());
    let notify = environ(new_worker)["NOTIFY_SOCKET"].clone();

    let forged = ["READY=1", "READY=1\nMAINPID=1", "STOPPING=1", "WATCHDOG=1"];
    for message in forged {
        UnixDatagram::unbound()
            .unwrap()
            .send_to(message.as_bytes(), &notify)
            .unwrap();
    }
    let ignored = [
        "ignored notify message: the sender is not a worker",
        &format!("pid={}", std::process::id()),
    ];
    let mut from = 0;
    for _ in forged {
        from = steward.log.wait_from(from, &ignored).0 + 1;
    }
    assert_eq!(
        steward
            .log
            .event_position("generation-ready", &[("generation", "2")]),
        None
    );
    assert_eq!(
        steward
            .log
            .event_position("worker-stopping", &[("generation", "1")]),
        None
    );
    for (id, pid) in old {
        assert!(!is_gone(pid), "worker {id} of generation 1 was stopped");
    }

    // The new workers themselves are believed: the reload completes. Either generation
    // may answer a request, so ask until both new workers have said it.
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    while steward
        .log
        .event_position("generation-ready", &[("generation", "2")])
        .is_none()
    {
        assert!(Instant::now() < deadline, "generation 2 never became ready");
        assert_eq!(steward.get("/notify?state=READY%3D1").unwrap().status, 200);
    }
}
