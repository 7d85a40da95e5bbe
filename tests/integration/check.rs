//! `steward check` as the guard of a start (ExecStartPre=): every problem at once, what
//! a start here would refuse, printing only when asked, and no panic on a closed pipe.

use std::{
    os::{fd::OwnedFd, unix::fs::PermissionsExt},
    process::{Command, Stdio},
};

use steward_testkit::{demo_bin, steward_bin, Steward, TestDir};

use crate::uwsgi::check;

/// A check with no worker command names that error, every other error, and every
/// warning, each with its file:line.
#[test]
fn check_reports_every_error_and_warning_at_once() {
    let dir = TestDir::new("check-all");
    let file = dir.write(
        "app.ini",
        "[uwsgi]\nmodule = app:wsgi\nsocket = 127.0.0.1:0\nprocesses = many\nthunder-lock = true\nready = sometimes\n\
         hook-asap = mkdri:/run/x\nhook-as-root = unix_signal:2 grace_them_all\n",
    );
    let (code, stdout, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(1), "{stdout}");
    for expected in [
        format!("steward: warning: {file}:2: uWSGI option \"module\" is not supported"),
        format!("steward: warning: {file}:5: uWSGI option \"thunder-lock\" is not supported"),
        format!("steward: error: {file}:4: processes: invalid number \"many\""),
        format!("steward: error: {file}:6: ready: invalid readiness mode"),
        "steward: error: no worker command given".to_owned(),
        format!("steward: error: {file}:7: hook-asap = \"mkdri:/run/x\": unknown hook action \"mkdri\""),
        format!("steward: error: {file}:8: hook-as-root = \"unix_signal:2 grace_them_all\": uWSGI's hook action \"unix_signal\" is not supported by steward: steward's signals are fixed"),
    ] {
        assert!(
            stderr.contains(&expected),
            "{expected:?} missing from:\n{stderr}"
        );
    }
    assert!(stdout.is_empty(), "{stdout}");
}

/// What a start would refuse for want of something on this machine fails the check,
/// each naming where it was set.
#[test]
fn check_refuses_what_a_start_here_would_refuse() {
    let dir = TestDir::new("check-start");
    let not_executable = dir.write("app.sh", "#!/bin/sh\n");
    let long = format!("{}/{}.sock", dir.display(), "x".repeat(120));
    let file = dir.write(
        "app.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nchdir = \"/nonexistent/app\"\ntouch-reload = \"/nonexistent/dir/reload\"\n\
             pidfile = \"/nonexistent/run/app.pid\"\nsafe-pidfile = \"/nonexistent/run/safe.pid\"\n\
             control-socket = \"{long}\"\nchown-socket = \"no-such-user-here\"\ncommand = \"{not_executable}\"\n"
        ),
    );
    let (code, _, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in [
        format!("{file}:2: chdir: no such directory /nonexistent/app"),
        format!("{file}:3: touch-reload: /nonexistent/dir/reload: the directory /nonexistent/dir does not exist"),
        format!("{file}:4: pidfile: /nonexistent/run/app.pid: the directory /nonexistent/run does not exist"),
        format!("{file}:5: safe-pidfile: /nonexistent/run/safe.pid: the directory"),
        format!("{file}:6: control-socket: {long}: a unix socket path must be shorter than 108 bytes"),
        format!("{file}:7: chown-socket: no user named \"no-such-user-here\""),
        format!("{file}:8: worker command {not_executable} is not an executable file"),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} missing from:\n{stderr}");
    }
}

/// No socket and no socket activation: the workers would have nothing to serve on.
#[test]
fn check_refuses_a_configuration_with_no_socket() {
    let dir = TestDir::new("check-nosocket");
    let file = dir.write(
        "app.ini",
        "[uwsgi]\nmodule = app:wsgi\ncommand = /bin/true\n",
    );
    let (code, _, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("steward: error: no socket to serve on: set listen (uWSGI's socket, http-socket or http)"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&["--config", &file, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// The start names where the missing chown-socket user was set, as check does.
#[test]
fn a_start_error_about_an_option_names_where_it_was_set() {
    let dir = TestDir::new("start-located");
    let file = dir.write(
        "app.toml",
        &format!(
            "listen = \"unix:{}\"\nchown-socket = \"no-such-user-here\"\ncommand = \"{}\"\n",
            dir.at("app.sock"),
            demo_bin()
        ),
    );
    let mut cmd = Command::new(steward_bin());
    cmd.arg("--config").arg(&file);
    let mut steward = Steward::spawn(cmd);
    steward.expect_start_failure(&[&format!(
        "{file}:2: chown-socket: no user named \"no-such-user-here\""
    )]);
}

/// Quiet by default (one line), the whole configuration with `--print`, nothing but
/// errors with `--quiet`.
#[test]
fn check_prints_the_configuration_only_when_asked() {
    let dir = TestDir::new("check-print");
    let file = dir.write(
        "app.ini",
        "[uwsgi]\nsocket = 127.0.0.1:0\nthunder-lock = true\ncommand = /bin/true\n",
    );
    let (code, stdout, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("steward: the configuration ({file}) is good, 2 warning(s)\n")
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    let (_, stdout, _) = check(&["--config", &file, "--print"]);
    assert!(stdout.contains("\nworkers = 1"), "{stdout}");
    assert!(stdout.lines().count() > 20, "{stdout}");
    let (code, stdout, stderr) = check(&["--config", &file, "--quiet"]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "", ""));
    for unit in [
        "systemd/steward@.service",
        "systemd/pre-253/steward@.service",
    ] {
        let text = std::fs::read_to_string(format!("{}/../../{unit}", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
        assert!(
            text.contains("ExecStartPre=/usr/bin/steward check --quiet "),
            "{unit}"
        );
    }
}

/// A pipe whose reader has gone: `steward check | head -1`.
fn closed_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

/// `steward check | head -1`, `steward status | head -3`: the output stops, the
/// command ends with its own exit status, and nothing panics.
#[test]
fn no_command_panics_on_a_closed_pipe() {
    let dir = TestDir::new("closed-pipe");
    let output = Command::new(steward_bin())
        .args([
            "check",
            "--print",
            "--listen",
            "127.0.0.1:0",
            "--",
            "/bin/true",
        ])
        .stdout(Stdio::from(closed_pipe()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let control = dir.at("control.sock");
    let mut steward = Steward::start(&["--control-socket", &control], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    for args in [&["status"][..], &["status", "--json"]] {
        let output = Command::new(steward_bin())
            .args(args)
            .args(["--control-socket", &control])
            .stdout(Stdio::from(closed_pipe()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(steward.stop().success());
}

/// pidfile2 is written after the drop to `uid`, and the workers exec the program as
/// that user: checked as root, both are checked as that user, not as root.
#[test]
fn what_happens_after_the_drop_is_checked_as_the_target_user() {
    if !steward_testkit::root_or_skip("checks a directory as another user") {
        return;
    }
    let dir = TestDir::new("check-as-user");
    let root_only = dir.join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    let pidfile = format!("{}/app.pid", root_only.display());
    let program = dir.write("app.sh", "#!/bin/sh\n");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o700)).unwrap();
    let listen = ["--listen", "127.0.0.1:0", "--uid", "nobody"];
    let (code, _, stderr) =
        check(&[&listen[..], &["--pidfile2", &pidfile, "--", "/bin/true"]].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: --pidfile2: pidfile2: {pidfile}: the master writes it after it drops privileges, and uid 65534"
        )),
        "{stderr}"
    );
    let (code, _, stderr) = check(&[&listen[..], &["--", &program]].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the command line (after --): command: {program}: the workers run it as uid 65534"
        )),
        "{stderr}"
    );
    // pidfile is written before the drop, as root; a program anyone may run is fine.
    let (code, _, stderr) =
        check(&[&listen[..], &["--pidfile", &pidfile, "--", "/bin/true"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
}
