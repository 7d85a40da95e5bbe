//! Binary upgrades in place: the steward binary is replaced on disk (as a package
//! upgrade does), and a reload re-execs the master under the same pid, keeping its
//! sockets and workers, with no failed request.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command};

use nix::sys::signal::Signal;

use crate::{
    util::{self, demo_bin, steward_bin, steward_client, Steward},
    Load,
};

/// A private copy of the steward binary, so that the test can replace it.
fn installed_copy(name: &str) -> PathBuf {
    let dir = util::socket_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("steward");
    std::fs::copy(steward_bin(), &path).unwrap();
    path
}

/// Replaces `path` by a new file (a new inode, as dpkg and rpm do) with `contents`.
fn replace(path: &PathBuf, contents: &[u8]) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, contents).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

fn start_from(binary: &PathBuf, control: &str) -> Steward {
    let port = util::free_port();
    let mut command = Command::new(binary);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", "2", "--control-socket", control, "--"])
        .arg(demo_bin());
    let steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);
    steward
}

#[test]
fn a_replaced_binary_is_re_executed_in_place_under_load() {
    let binary = installed_copy("upgrade-ok");
    let control = binary.with_file_name("control.sock");
    let steward = start_from(&binary, control.to_str().unwrap());
    let old_workers = steward.worker_pids(1);
    let load = Load::start(steward.port);

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    let exe = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe(steward.pid()).to_string_lossy().ends_with("(deleted)"),
        "the running image is the replaced file"
    );
    let reload = steward_client(&[
        "reload",
        "--wait",
        "--control-socket",
        control.to_str().unwrap(),
    ]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    steward.log.wait_for(&["binary changed; re-executing"]);
    steward
        .log
        .wait_for(&["re-executed: workers adopted", "workers=2"]);

    // Same pid, new image: what systemd's MainPID points at now runs the new file.
    assert_eq!(exe(steward.pid()), binary);
    for (_, pid) in &old_workers {
        util::wait_gone(*pid);
    }
    for _ in 0..10 {
        assert_eq!(steward.get("/").unwrap().generation(), 2);
    }
    let (sent, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );

    // The adopted master still does everything: another reload, then a clean stop.
    steward.signal(Signal::SIGHUP);
    steward.wait_generation_ready(3);
    let _ = std::fs::remove_dir_all(binary.parent().unwrap());
}

#[test]
fn a_binary_that_cannot_take_over_is_not_executed_and_the_reload_goes_on() {
    let binary = installed_copy("upgrade-broken");
    let control = binary.with_file_name("control.sock");
    let mut steward = start_from(&binary, control.to_str().unwrap());

    replace(&binary, b"#!/bin/sh\necho not steward\nexit 1\n");
    steward.signal(Signal::SIGHUP);
    let refused = steward.log.wait_for(&["re-exec refused"]);
    assert!(refused.contains("not steward"), "{refused}");
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);
    assert!(std::fs::read_link(format!("/proc/{}/exe", steward.pid()))
        .unwrap()
        .to_string_lossy()
        .ends_with("(deleted)"));

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(binary.parent().unwrap());
}

#[test]
fn a_master_that_dropped_privileges_re_executes_and_keeps_them_dropped() {
    let binary = installed_copy("upgrade-uid");
    let port = util::free_port();
    let mut command = Command::new(&binary);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--uid",
            "nobody",
            "--gid",
            "nogroup",
            "--add-gid",
            "27",
            "--auto-procname",
        ])
        .args(["--workers", "2", "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);
    let credentials = |pid: nix::unistd::Pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        ["Uid:", "Gid:", "Groups:", "CapEff:"]
            .map(|name| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .join("|")
    };
    let dropped = "65534 65534 65534 65534|65534 65534 65534 65534|27|0000000000000000";
    assert_eq!(credentials(steward.pid()), dropped);

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.wait_generation_ready(2);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", steward.pid())).unwrap(),
        binary
    );
    assert_eq!(credentials(steward.pid()), dropped);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", steward.pid())).unwrap();
    assert!(
        cmdline.starts_with(b"steward master\0"),
        "the new image names itself too: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    for (_, worker) in steward.worker_pids(2) {
        assert_eq!(credentials(worker), dropped);
    }
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(binary.parent().unwrap());
}
