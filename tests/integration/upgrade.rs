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
pub(crate) fn installed_copy(name: &str) -> PathBuf {
    let dir = util::socket_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("steward");
    std::fs::copy(steward_bin(), &path).unwrap();
    path
}

/// Replaces `path` by a new file (a new inode, as dpkg and rpm do) with `contents`.
pub(crate) fn replace(path: &PathBuf, contents: &[u8]) {
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

#[test]
fn a_re_executed_master_finds_its_relative_config_and_stays_in_its_chdir2() {
    let binary = installed_copy("upgrade-chdir");
    let home = binary.parent().unwrap().to_owned();
    let (first, second) = (home.join("first"), home.join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let port = util::free_port();
    std::fs::write(
        home.join("app.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = 1\nchdir = \"first\"\nchdir2 = \"{}\"\ncommand = [\"{}\"]\n",
            second.display(),
            demo_bin()
        ),
    )
    .unwrap();
    let mut command = Command::new(&binary);
    command.current_dir(&home).args(["--config", "app.toml"]);
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);
    let cwd = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    crate::effects::eventually("the master in chdir2", || {
        (cwd(steward.pid()) == second).then_some(())
    });

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.wait_generation_ready(2);
    assert_eq!(cwd(steward.pid()), second, "{:?}", steward.log.lines());
    for (_, worker) in steward.worker_pids(2) {
        assert_eq!(cwd(worker), second);
    }
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn binary_path_names_the_binary_a_reload_re_executes() {
    let other = installed_copy("binary-path");
    let port = util::free_port();
    let mut command = Command::new(steward_bin());
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--binary-path", other.to_str().unwrap(), "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);
    let exe = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe(steward.pid()), steward_bin().canonicalize().unwrap());

    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.wait_generation_ready(2);
    assert_eq!(exe(steward.pid()), other);
    // Now the binary it runs is binary-path's: the next reload is a plain one.
    let from = steward.log.len();
    steward.signal(Signal::SIGHUP);
    steward.wait_generation_ready(3);
    assert!(
        steward.log.lines()[from..]
            .iter()
            .all(|l| !l.contains("re-executing")),
        "{:?}",
        steward.log.lines()
    );

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(other.parent().unwrap());
}

#[test]
fn a_config_the_new_binary_cannot_read_keeps_the_running_master_serving() {
    let binary = installed_copy("upgrade-bad-config");
    let home = binary.parent().unwrap().to_owned();
    let port = util::free_port();
    let config = home.join("app.toml");
    let text = |workers: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = {workers}\ncommand = [\"{}\"]\n",
            demo_bin()
        )
    };
    std::fs::write(&config, text("1")).unwrap();
    let mut command = Command::new(&binary);
    command.current_dir(&home).args(["--config", "app.toml"]);
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);

    std::fs::write(&config, text("\"many\"")).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    let refused = steward.log.wait_for(&["re-exec refused"]);
    assert!(
        refused.contains("app.toml:2: workers: invalid number"),
        "{refused}"
    );
    steward
        .log
        .wait_for(&["reload failed", "app.toml:2: workers: invalid number"]);
    assert_eq!(steward.get("/").unwrap().generation(), 1);

    // Fixed, the next reload upgrades.
    std::fs::write(&config, text("2")).unwrap();
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.wait_generation_ready(3);
    assert_eq!(steward.worker_pids(3).len(), 2);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", steward.pid())).unwrap(),
        binary
    );

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn an_upgrade_with_a_new_uid_in_the_file_keeps_the_running_one_and_says_so() {
    let binary = installed_copy("upgrade-new-uid");
    let home = binary.parent().unwrap().to_owned();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = util::free_port();
    let config = home.join("app.toml");
    let text = |user: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nuid = \"{user}\"\ncontrol-socket = \"{}\"\ncommand = [\"{}\"]\n",
            home.join("control.sock").display(),
            demo_bin()
        )
    };
    std::fs::write(&config, text("nobody")).unwrap();
    let mut command = Command::new(&binary);
    command.args(["--config", config.to_str().unwrap()]);
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);
    let uid = |pid: nix::unistd::Pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|v| v.split_whitespace().next().unwrap().to_owned())
            })
            .unwrap()
    };
    assert_eq!(uid(steward.pid()), "65534");

    std::fs::write(&config, text("daemon")).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.log.wait_for(&["needs a restart", "uid"]);
    steward.wait_generation_ready(2);
    assert_eq!(uid(steward.pid()), "65534");
    for (_, worker) in steward.worker_pids(2) {
        assert_eq!(uid(worker), "65534");
    }
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn an_upgrade_after_the_chdir_directory_vanished_goes_on_serving() {
    let binary = installed_copy("upgrade-chdir-gone");
    let home = binary.parent().unwrap().to_owned();
    let gone = home.join("release-1");
    std::fs::create_dir_all(&gone).unwrap();
    let port = util::free_port();
    let mut command = Command::new(&binary);
    command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--chdir", gone.to_str().unwrap(), "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);

    std::fs::remove_dir(&gone).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.log.wait_for(&["chdir: cannot change directory to"]);
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn an_upgrade_with_a_master_fifo_it_cannot_make_goes_on_serving() {
    let binary = installed_copy("upgrade-fifo");
    let home = binary.parent().unwrap().to_owned();
    let port = util::free_port();
    let config = home.join("app.toml");
    let text = |fifo: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nmaster-fifo = \"{fifo}\"\ncommand = [\"{}\"]\n",
            demo_bin()
        )
    };
    std::fs::write(&config, text(home.join("master.fifo").to_str().unwrap())).unwrap();
    let mut command = Command::new(&binary);
    command.args(["--config", config.to_str().unwrap()]);
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);

    std::fs::write(&config, text("/nonexistent-dir/master.fifo")).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward
        .log
        .wait_for(&["cannot create the master FIFO /nonexistent-dir/master.fifo"]);
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn an_upgrade_to_a_command_or_user_that_does_not_exist_is_refused_and_the_master_serves() {
    let binary = installed_copy("upgrade-missing");
    let home = binary.parent().unwrap().to_owned();
    let port = util::free_port();
    let config = home.join("app.toml");
    let text = |extra: &str, command: &str| {
        format!("listen = \"127.0.0.1:{port}\"\n{extra}command = [\"{command}\"]\n")
    };
    std::fs::write(&config, text("", &demo_bin())).unwrap();
    let mut command = Command::new(&binary);
    command.args(["--config", config.to_str().unwrap()]);
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);

    for (extra, program, reason) in [
        (
            "",
            "/nonexistent/app",
            "worker command /nonexistent/app is not an executable file",
        ),
        (
            "uid = \"no-such-user-here\"\n",
            demo_bin().as_str(),
            "uid: no user named \"no-such-user-here\"",
        ),
    ] {
        std::fs::write(&config, text(extra, program)).unwrap();
        replace(&binary, &std::fs::read(steward_bin()).unwrap());
        let from = steward.log.len();
        steward.signal(Signal::SIGHUP);
        let (_, refused) = steward.log.wait_from(from, &["re-exec refused"]);
        assert!(refused.contains(reason), "{refused}");
        assert!(steward.get("/").is_ok());
    }

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_master_started_where_its_user_may_not_go_still_upgrades() {
    let binary = installed_copy("upgrade-private-cwd");
    let home = binary.parent().unwrap().to_owned();
    let private = home.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let port = util::free_port();
    let mut command = Command::new(&binary);
    command
        .current_dir(&private)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--uid", "nobody", "--chdir", "/", "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command, port);
    steward.wait_generation_ready(1);

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_for(&["re-executed: workers adopted"]);
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(util::DEADLINE).code(), Some(0));
    let _ = std::fs::remove_dir_all(&home);
}
