//! The control socket and the master FIFO, driven by the `steward` client commands and
//! by writes to the FIFO, as an operator would.

use std::os::unix::fs::PermissionsExt;

use steward_testkit::{demo_bin, is_gone, steward_client, Steward, TestDir};

/// A steward with a control socket (and a FIFO) in a directory of its own.
fn start_controlled(
    name: &str,
    extra: &[&str],
    command: &[&str],
) -> (TestDir, Steward, String, String) {
    let dir = TestDir::new(name);
    let control = dir.at("control.sock");
    let fifo = dir.at("master.fifo");
    let mut args = vec!["--control-socket", &control, "--master-fifo", &fifo];
    args.extend_from_slice(extra);
    let steward = Steward::start(&args, command);
    steward.wait_generation_ready(1);
    // The directory first: dropped last, after the steward that uses it.
    (dir, steward, control, fifo)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn reload_wait_returns_once_the_new_generation_serves() {
    let demo = demo_bin();
    let (_dir, mut steward, control, _) =
        start_controlled("ctl-reload", &["--workers", "2"], &[&demo]);
    let mode = std::fs::metadata(&control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the master's user may control it");

    let reload = steward_testkit::reload_wait(&control);
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    let out = text(&reload.stdout);
    assert!(
        out.starts_with("accepted generation=2\nok generation=2 elapsed_ms="),
        "{out}"
    );
    // Returned only after the old generation was retired: every answer is from the new one.
    for _ in 0..8 {
        assert_eq!(steward.get("/").unwrap().generation(), 2);
    }

    let status = steward_client(&["status", "--json", "--control-socket", &control]);
    let json = text(&status.stdout);
    assert!(status.status.success());
    assert!(
        json.contains(r#""generation":2,"serving":2,"serving_workers":2,"workers_wanted":2"#),
        "{json}"
    );
    assert!(
        json.contains(r#""last_reload":{"generation":2,"ok":true"#),
        "{json}"
    );
    for (id, pid) in steward.workers(2, 2) {
        assert!(
            json.contains(&format!(
                r#"{{"id":{id},"generation":2,"pid":{pid},"state":"ready""#
            )),
            "worker {id} pid {pid} not in {json}"
        );
    }

    let stop = steward_client(&["stop", "--wait", "--control-socket", &control]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert_eq!(text(&stop.stdout), "accepted\nstopped\n");
    // `stop --wait` returned: the master is gone (or only awaits our reaping).
    assert!(is_gone(steward.pid()) || steward.wait_exit(steward_testkit::DEADLINE).success());
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn reload_wait_fails_when_the_new_generation_cannot_start_and_the_old_one_serves() {
    let demo = demo_bin();
    // Generation 2 of this command exits at once; generation 1 serves.
    let script = format!(r#"[ "$STEWARD_GENERATION" = 2 ] && exit 3; exec {demo}"#);
    let (_dir, steward, control, _) =
        start_controlled("ctl-fail", &[], &["/bin/sh", "-c", &script]);

    let reload = steward_testkit::reload_wait(&control);
    assert_eq!(reload.status.code(), Some(1), "{}", text(&reload.stdout));
    let stderr = text(&reload.stderr);
    assert!(
        stderr.contains("failed generation=2: worker 1 exited with status 3 before it was ready"),
        "{stderr}"
    );
    assert_eq!(steward.get("/").unwrap().generation(), 1);

    let status = steward_client(&["status", "--control-socket", &control]);
    let out = text(&status.stdout);
    assert!(
        out.contains("last reload: generation 2 failed: worker 1 exited"),
        "{out}"
    );
}

#[test]
fn bad_requests_and_a_missing_master_get_clear_errors() {
    let demo = demo_bin();
    let (_dir, _steward, control, _) = start_controlled("ctl-bad", &[], &[&demo]);
    let mut stream = std::os::unix::net::UnixStream::connect(&control).unwrap();
    std::io::Write::write_all(&mut stream, b"relaod\n").unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(
        answer.starts_with("error unknown request \"relaod\""),
        "{answer}"
    );

    let nowhere = steward_testkit::socket_path("ctl-nowhere.sock");
    let status = steward_client(&["status", "--control-socket", nowhere.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(1));
    let stderr = text(&status.stderr);
    assert!(stderr.contains("cannot reach the master at"), "{stderr}");
}

#[test]
fn the_master_fifo_takes_uwsgi_commands_and_vacuum_removes_it() {
    let demo = demo_bin();
    let (_dir, mut steward, control, fifo) =
        start_controlled("ctl-fifo", &["--workers", "2", "--vacuum"], &[&demo]);
    let write = |bytes: &[u8]| std::fs::write(&fifo, bytes).unwrap();

    write(b"c\n");
    steward
        .log
        .wait_event("reload-started", &[("strategy", "chain")]);
    steward.wait_generation_ready(2);
    write(b"+");
    steward
        .log
        .wait_event("workers-resized", &[("workers", "3")]);
    write(b"f");
    steward
        .log
        .wait_event("fifo-command-ignored", &[("command", "f")]);

    write(b"q");
    steward
        .log
        .wait_event("shutdown-started", &[("mode", "graceful")]);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    assert!(
        !std::path::Path::new(&fifo).exists(),
        "vacuum removes the FIFO"
    );
    assert!(
        !std::path::Path::new(&control).exists(),
        "vacuum removes the control socket"
    );
}

/// Two masters on one FIFO would split the commands between them: the second is
/// refused, as on the control socket, and the first still takes every command.
#[test]
fn a_second_master_on_the_same_fifo_is_refused() {
    let (_dir, mut first, _control, fifo) = start_controlled("fifo-twice", &[], &[&demo_bin()]);
    let mut second = Steward::start(&["--master-fifo", &fifo], &[&demo_bin()]);
    let refused = second.expect_start_failure(&[&format!("cannot create the master FIFO {fifo}")]);
    assert!(
        refused.contains("another master reads this FIFO"),
        "{refused}"
    );
    for _ in 0..3 {
        std::fs::write(&fifo, "s\n").unwrap();
    }
    std::fs::write(&fifo, "q\n").unwrap();
    assert!(first.wait_exit(steward_testkit::DEADLINE).success());
    let reports = first.log.events("status-report", &[]).len();
    assert_eq!(reports, 3, "{}", first.log.text());
}
