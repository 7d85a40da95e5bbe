//! Binary upgrades in place: the steward binary is replaced on disk (as a package
//! upgrade does), and a reload re-execs the master under the same pid, keeping its
//! sockets and workers, with no failed request.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command};

use nix::sys::signal::Signal;

use steward_testkit::{demo_bin, root_or_skip, steward_bin, Steward, TestDir};

use crate::Load;

/// A private copy of the steward binary, so that the test can replace it, in a
/// directory of its own for the test's other files.
pub(crate) fn installed_copy(name: &str) -> (TestDir, PathBuf) {
    let dir = TestDir::new(name);
    let path = dir.join("steward");
    std::fs::copy(steward_bin(), &path).unwrap();
    (dir, path)
}

/// Replaces `path` by a new file (a new inode, as dpkg and rpm do) with `contents`.
pub(crate) fn replace(path: &PathBuf, contents: &[u8]) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, contents).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

fn start_from(binary: &PathBuf, control: &str) -> Steward {
    let mut command = Command::new(binary);
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(["--workers", "2", "--control-socket", control, "--"])
        .arg(demo_bin());
    let steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    steward
}

#[test]
fn a_replaced_binary_is_re_executed_in_place_under_load() {
    let (_home, binary) = installed_copy("upgrade-ok");
    let control = binary.with_file_name("control.sock");
    let steward = start_from(&binary, control.to_str().unwrap());
    let old_workers = steward.workers(1, 2);
    let load = Load::start(steward.port());

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    let exe = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe(steward.pid()).to_string_lossy().ends_with("(deleted)"),
        "the running image is the replaced file"
    );
    let reload = steward_testkit::reload_wait(&control);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    steward.log.wait_event("upgrade-reexec", &[]);
    steward
        .log
        .wait_event("upgrade-resumed", &[("workers", "2")]);

    // Same pid, new image: what systemd's MainPID points at now runs the new file.
    assert_eq!(exe(steward.pid()), binary);
    for (_, pid) in &old_workers {
        steward_testkit::wait_gone(*pid);
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
}

#[test]
fn a_binary_that_cannot_take_over_is_not_executed_and_the_reload_goes_on() {
    let (_home, binary) = installed_copy("upgrade-broken");
    let control = binary.with_file_name("control.sock");
    let mut steward = start_from(&binary, control.to_str().unwrap());

    replace(&binary, b"#!/bin/sh\necho not steward\nexit 1\n");
    steward.signal(Signal::SIGHUP);
    let refused = steward.log.wait_event("upgrade-refused", &[]);
    assert!(refused.contains("not steward"), "{refused}");
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);
    assert!(std::fs::read_link(format!("/proc/{}/exe", steward.pid()))
        .unwrap()
        .to_string_lossy()
        .ends_with("(deleted)"));

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn a_master_that_dropped_privileges_re_executes_and_keeps_them_dropped() {
    if !root_or_skip("switches uid, gid and groups") {
        return;
    }
    let (_home, binary) = installed_copy("upgrade-uid");
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0"])
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
    let mut steward = Steward::spawn(command);
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
    steward.log.wait_event("upgrade-resumed", &[]);
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
    for (_, worker) in steward.workers(2, 2) {
        assert_eq!(credentials(worker), dropped);
    }
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn a_re_executed_master_finds_its_relative_config_and_stays_in_its_chdir2() {
    let (home, binary) = installed_copy("upgrade-chdir");
    let (first, second) = (home.join("first"), home.join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(
        home.join("app.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nworkers = 1\nchdir = \"first\"\nchdir2 = \"{}\"\ncommand = [\"{}\"]\n",
            second.display(),
            demo_bin()
        ),
    )
    .unwrap();
    let mut command = Command::new(&binary);
    command.current_dir(&home).args(["--config", "app.toml"]);
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    let cwd = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    crate::effects::eventually("the master in chdir2", || {
        (cwd(steward.pid()) == second).then_some(())
    });

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
    steward.wait_generation_ready(2);
    assert_eq!(cwd(steward.pid()), second, "{:?}", steward.log.lines());
    for (_, worker) in steward.workers(2, 1) {
        assert_eq!(cwd(worker), second);
    }
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn binary_path_names_the_binary_a_reload_re_executes() {
    let (_home, other) = installed_copy("binary-path");
    let mut command = Command::new(steward_bin());
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(["--binary-path", other.to_str().unwrap(), "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    let exe = |pid: nix::unistd::Pid| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe(steward.pid()), steward_bin().canonicalize().unwrap());

    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
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
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn a_config_the_new_binary_cannot_read_keeps_the_running_master_serving() {
    let (home, binary) = installed_copy("upgrade-bad-config");
    let config = home.join("app.toml");
    let text = |workers: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nworkers = {workers}\ncommand = [\"{}\"]\n",
            demo_bin()
        )
    };
    std::fs::write(&config, text("1")).unwrap();
    let mut command = Command::new(&binary);
    command.current_dir(&home).args(["--config", "app.toml"]);
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);

    std::fs::write(&config, text("\"many\"")).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    let refused = steward.log.wait_event("upgrade-refused", &[]);
    assert!(
        refused.contains("app.toml:2: workers: invalid number"),
        "{refused}"
    );
    let failed = steward.log.wait_event("reload-failed", &[]);
    assert!(
        failed.contains("app.toml:2: workers: invalid number"),
        "{failed}"
    );
    assert_eq!(steward.get("/").unwrap().generation(), 1);

    // Fixed, the next reload upgrades.
    std::fs::write(&config, text("2")).unwrap();
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
    steward.wait_generation_ready(3);
    assert_eq!(steward.worker_pids(3).len(), 2);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", steward.pid())).unwrap(),
        binary
    );

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn an_upgrade_with_a_new_uid_in_the_file_keeps_the_running_one_and_says_so() {
    if !root_or_skip("switches uid") {
        return;
    }
    let (home, binary) = installed_copy("upgrade-new-uid");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = home.join("app.toml");
    let text = |user: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nuid = \"{user}\"\ncontrol-socket = \"{}\"\ncommand = [\"{}\"]\n",
            home.join("control.sock").display(),
            demo_bin()
        )
    };
    std::fs::write(&config, text("nobody")).unwrap();
    let mut command = Command::new(&binary);
    command.args(["--config", config.to_str().unwrap()]);
    let mut steward = Steward::spawn(command);
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
    steward.log.wait_event("upgrade-resumed", &[]);
    steward
        .log
        .wait_event("needs-restart", &[("option", "uid"), ("now", "daemon")]);
    steward.wait_generation_ready(2);
    let named = steward.log.events("needs-restart", &[("option", "uid")]);
    assert_eq!(named.len(), 1, "said once: {named:?}");
    assert_eq!(uid(steward.pid()), "65534");
    for (_, worker) in steward.workers(2, 1) {
        assert_eq!(uid(worker), "65534");
    }
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn an_upgrade_after_the_chdir_directory_vanished_goes_on_serving() {
    let (home, binary) = installed_copy("upgrade-chdir-gone");
    let gone = home.join("release-1");
    std::fs::create_dir_all(&gone).unwrap();
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(["--chdir", gone.to_str().unwrap(), "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);

    std::fs::remove_dir(&gone).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
    steward.log.wait_for(&["chdir: cannot change directory to"]);
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

/// An upgrade is a reload: `chdir`, the process names and the master FIFOs changed in
/// the file keep their running values in the new image and are named as needing a
/// restart, as a SIGHUP without a new binary does.
#[test]
fn an_upgrade_keeps_chdir_procname_and_master_fifo_and_names_them_as_needing_a_restart() {
    let (home, binary) = installed_copy("upgrade-kept");
    let config = home.join("app.toml");
    let (old_dir, new_dir) = (home.join("release-1"), home.join("release-2"));
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::create_dir_all(&new_dir).unwrap();
    let (old_fifo, new_fifo) = (home.join("old.fifo"), home.join("new.fifo"));
    let text = |dir: &PathBuf, name: &str, fifo: &PathBuf| {
        format!(
            "listen = \"127.0.0.1:0\"\nchdir = \"{}\"\nprocname-master = \"{name}\"\nmaster-fifo = \"{}\"\ncommand = [\"{}\"]\n",
            dir.display(),
            fifo.display(),
            demo_bin()
        )
    };
    std::fs::write(&config, text(&old_dir, "kept-boss", &old_fifo)).unwrap();
    let mut command = Command::new(&binary);
    command.args(["--config", config.to_str().unwrap()]);
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);

    std::fs::write(&config, text(&new_dir, "new-boss", &new_fifo)).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
    let chdir = steward
        .log
        .wait_event("needs-restart", &[("option", "chdir")]);
    assert!(
        chdir.contains("release-1") && chdir.contains("release-2"),
        "{chdir}"
    );
    steward.log.wait_event(
        "needs-restart",
        &[
            ("option", "procname-master"),
            ("was", "kept-boss"),
            ("now", "new-boss"),
        ],
    );
    steward
        .log
        .wait_event("needs-restart", &[("option", "master-fifo")]);
    steward.wait_generation_ready(2);
    let pid = steward.pid();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        old_dir
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).starts_with("kept-boss"),
        "{cmdline:?}"
    );
    assert!(
        !new_fifo.exists(),
        "the new image made the FIFO the file names now"
    );
    // The running FIFO is still read: a graceful reload through it.
    std::fs::write(&old_fifo, "r").unwrap();
    steward.wait_generation_ready(3);
    assert_eq!(steward.get("/").unwrap().generation(), 3);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

/// The master FIFO was made as root in a directory only root may write; the master now
/// runs as nobody, and the FIFO is gone: the new image cannot make it again, says so,
/// and serves.
#[test]
fn an_upgrade_with_a_master_fifo_it_cannot_make_goes_on_serving() {
    if !root_or_skip("switches uid") {
        return;
    }
    let (home, binary) = installed_copy("upgrade-fifo");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = home.join("master.fifo");
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0", "--uid", "nobody"])
        .args(["--master-fifo", fifo.to_str().unwrap(), "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);

    std::fs::remove_file(&fifo).unwrap();
    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
    steward.log.wait_for(&[
        "cannot create the master FIFO",
        "master.fifo",
        "after re-exec",
    ]);
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn an_upgrade_to_a_command_or_user_that_does_not_exist_is_refused_and_the_master_serves() {
    let (home, binary) = installed_copy("upgrade-missing");
    let config = home.join("app.toml");
    let text = |extra: &str, command: &str| {
        format!("listen = \"127.0.0.1:0\"\n{extra}command = [\"{command}\"]\n")
    };
    std::fs::write(&config, text("", &demo_bin())).unwrap();
    let mut command = Command::new(&binary);
    command.args(["--config", config.to_str().unwrap()]);
    let mut steward = Steward::spawn(command);
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
        let (_, refused) = steward.log.wait_event_from(from, "upgrade-refused", &[]);
        assert!(refused.contains(reason), "{refused}");
        assert!(steward.get("/").is_ok());
    }

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn a_master_started_where_its_user_may_not_go_still_upgrades() {
    if !root_or_skip("switches uid") {
        return;
    }
    let (home, binary) = installed_copy("upgrade-private-cwd");
    let private = home.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut command = Command::new(&binary);
    command
        .current_dir(&private)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--uid", "nobody", "--chdir", "/", "--"])
        .arg(demo_bin());
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);

    replace(&binary, &std::fs::read(steward_bin()).unwrap());
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event("upgrade-resumed", &[]);
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

/// Replaces `binary` by a wrapper of the real steward whose `reexec-check` waits until
/// the file `gate` exists: a check as slow as the test wants, deterministically.
fn replace_by_a_slow_check(binary: &PathBuf, gate: &std::path::Path) {
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = reexec-check ]; then\n  while [ ! -e '{}' ]; do sleep 0.02; done\nfi\nexec '{}' \"$@\"\n",
        gate.display(),
        steward_bin().display()
    );
    replace(binary, script.as_bytes());
}

/// The processes of process group `group` (a zombie counts as gone).
fn group_members(group: nix::unistd::Pid) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
                // state, ppid, pgrp
                fields.first() != Some(&"Z")
                    && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(group.as_raw())
            })
        })
        .collect()
}

#[test]
fn the_master_keeps_serving_while_the_new_binary_is_checked() {
    let (home, binary) = installed_copy("upgrade-slow-check");
    let control = binary.with_file_name("control.sock");
    let control = control.to_str().unwrap();
    let steward = start_from(&binary, control);
    let gate = home.join("gate");
    replace_by_a_slow_check(&binary, &gate);

    steward.signal(Signal::SIGHUP);
    let checking = steward.log.wait_event("upgrade-check-started", &[]);
    let check =
        nix::unistd::Pid::from_raw(steward_testkit::field(&checking, "pid").parse().unwrap());
    let from = steward.log.len();

    // A worker that dies meanwhile is started again before the check ends.
    let (_, victim) = steward.worker_pids(1)[0];
    nix::sys::signal::kill(victim, Signal::SIGKILL).unwrap();
    let (_, started) = steward
        .log
        .wait_event_from(from, "worker-started", &[("generation", "1")]);
    assert_ne!(steward_testkit::field(&started, "pid"), victim.to_string());
    assert!(
        !steward_testkit::is_gone(check),
        "the check is still waiting for its gate"
    );

    // The control socket answers, and says what is under way.
    let status = steward_testkit::steward_client(&["status", "--control-socket", control]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("reload in progress: checking the new binary"),
        "{text}"
    );
    // A second reload folds into the pending one.
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event_from(from, "reload-ignored", &[]);

    std::fs::write(&gate, "").unwrap();
    steward
        .log
        .wait_event("upgrade-resumed", &[("workers", "2")]);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", steward.pid())).unwrap(),
        steward_bin(),
        "same pid, the new binary"
    );
    steward.wait_generation_ready(2);
    assert_eq!(steward.get("/").unwrap().generation(), 2);
    assert!(
        steward
            .log
            .event_position("reload-started", &[("generation", "3")])
            .is_none(),
        "the folded reload is the same reload"
    );
}

#[test]
fn sigterm_while_the_new_binary_is_checked_kills_the_check_and_exits_zero() {
    let (home, binary) = installed_copy("upgrade-check-term");
    let control = binary.with_file_name("control.sock");
    let mut steward = start_from(&binary, control.to_str().unwrap());
    replace_by_a_slow_check(&binary, &home.join("gate"));

    steward.signal(Signal::SIGHUP);
    let checking = steward.log.wait_event("upgrade-check-started", &[]);
    let check =
        nix::unistd::Pid::from_raw(steward_testkit::field(&checking, "pid").parse().unwrap());
    assert!(!group_members(check).is_empty());

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    steward.log.wait_event("upgrade-check-stopped", &[]);
    // The check and the sleep of its script are gone with it.
    let deadline = std::time::Instant::now() + steward_testkit::DEADLINE;
    while !group_members(check).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left of the check: {:?}",
            group_members(check)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn the_watchdog_is_fed_while_the_new_binary_is_checked() {
    let (home, binary) = installed_copy("upgrade-check-watchdog");
    let systemd = steward_testkit::SystemdSocket::bind("upgrade-check-watchdog");
    let mut command = Command::new(&binary);
    command
        .env("NOTIFY_SOCKET", systemd.address())
        .env("WATCHDOG_USEC", "200000")
        .args(["--listen", "127.0.0.1:0", "--"])
        .arg(demo_bin());
    let steward = Steward::spawn(command);
    systemd.receive_until("READY=1");
    let gate = home.join("gate");
    replace_by_a_slow_check(&binary, &gate);

    steward.signal(Signal::SIGHUP);
    systemd.receive_until("STATUS=reloading: checking the new binary");
    let checking = steward.log.wait_event("upgrade-check-started", &[]);
    let check =
        nix::unistd::Pid::from_raw(steward_testkit::field(&checking, "pid").parse().unwrap());
    // Pings every 100 ms go on while the check waits for its gate.
    for _ in 0..3 {
        systemd.receive_until("WATCHDOG=1");
    }
    assert!(
        !steward_testkit::is_gone(check),
        "the check is still waiting for its gate"
    );

    std::fs::write(&gate, "").unwrap();
    steward.log.wait_event("upgrade-resumed", &[]);
    systemd.receive_until("READY=1");
}
