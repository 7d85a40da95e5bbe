//! The process effects of the options, observed from outside as a user would: ids,
//! groups and capabilities in /proc, nice values, working directories, file ownership,
//! pidfiles, what `ps` shows, files left or removed at exit, a detached daemon's log.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::PathBuf,
    process::Command,
};

use nix::unistd::Pid;

use crate::util::{demo_bin, steward_bin, steward_client, Steward, DEADLINE};

/// A fresh directory for one test, readable and searchable by everyone (the master may
/// run as nobody).
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steward-effects-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The values of a `Name:` line of /proc/PID/status.
fn status_field(pid: Pid, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn assert_credentials(who: &str, pid: Pid, uid: &str, gid: &str, groups: &[&str]) {
    assert_eq!(status_field(pid, "Uid"), [uid; 4], "{who} Uid");
    assert_eq!(status_field(pid, "Gid"), [gid; 4], "{who} Gid");
    assert_eq!(
        status_field(pid, "Groups"),
        groups,
        "{who} supplementary groups"
    );
    for cap in ["CapEff", "CapPrm"] {
        assert_eq!(status_field(pid, cap), ["0000000000000000"], "{who} {cap}");
    }
}

#[test]
fn uid_gid_and_add_gid_drop_the_master_and_its_workers_after_binding() {
    let dir = test_dir("uid");
    let control = dir.join("control.sock");
    let fifo = dir.join("master.fifo");
    let steward = Steward::start(
        &[
            "--uid",
            "nobody",
            "--gid",
            "nogroup",
            "--add-gid",
            "4",
            "--add-gid",
            "27",
            "--workers",
            "2",
            "--control-socket",
            control.to_str().unwrap(),
            "--master-fifo",
            fifo.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    steward.log.wait_for(&["uid/gid: privileges dropped"]);
    assert_credentials("master", steward.pid(), "65534", "65534", &["4", "27"]);
    for (_, worker) in steward.worker_pids(1) {
        assert_credentials("worker", worker, "65534", "65534", &["4", "27"]);
    }
    // The sockets were bound before the drop, and are served.
    assert_eq!(steward.get("/").unwrap().generation(), 1);
    // The control socket and FIFO belong to the user the master became, and only to it.
    for path in [&control, &fifo] {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{}",
            path.display()
        );
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", path.display());
    }
    // ... and still work: a reload asked through the socket happens.
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
    for (_, worker) in steward.worker_pids(2) {
        assert_credentials(
            "worker of generation 2",
            worker,
            "65534",
            "65534",
            &["4", "27"],
        );
    }
    drop(steward);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_uid_alone_takes_the_users_primary_group_and_no_supplementary_group() {
    let steward = Steward::start(&["--uid", "65534"], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    assert_credentials("master", steward.pid(), "65534", "65534", &[]);
    let (_, worker) = steward.worker_pids(1)[0];
    assert_credentials("worker", worker, "65534", "65534", &[]);
}

#[test]
fn immediate_uid_drops_before_binding_so_a_privileged_port_fails() {
    let mut command = Command::new(steward_bin());
    command.args([
        "--immediate-uid",
        "nobody",
        "--immediate-gid",
        "nogroup",
        "--listen",
        "127.0.0.1:81",
        "--",
        &demo_bin(),
    ]);
    let mut steward = Steward::spawn(command, 81);
    let status = steward.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1));
    steward
        .log
        .wait_for(&["immediate-uid/immediate-gid: privileges dropped"]);
    steward
        .log
        .wait_for(&["cannot listen on 127.0.0.1:81", "EACCES"]);
}

#[test]
fn an_unknown_user_is_a_clear_error_at_start() {
    let mut steward = Steward::start(&["--uid", "no-such-user-here"], &[&demo_bin()]);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(1));
    steward
        .log
        .wait_for(&["uid: no user named \"no-such-user-here\""]);
}
