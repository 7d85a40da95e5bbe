//! How a master ends: what it says when it cannot start, and what it leaves behind
//! after a graceful or a brutal shutdown.

use std::{path::PathBuf, process::Command};

use nix::sys::signal::Signal;

use steward_testkit::{demo_bin, steward_bin, Steward, TestDir, DEADLINE};

use crate::effects::{eventually, start_with_files};

/// Runs steward with `args` to its end; (exit status, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(steward_bin())
        .args(args)
        .arg("--")
        .arg(demo_bin())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_start_error_says_its_cause_once() {
    let missing = format!("/nonexistent-{}/app", std::process::id());
    for (option, value, message) in [
        (
            "--pidfile",
            missing.clone(),
            format!("pidfile: cannot write {missing}"),
        ),
        (
            "--control-socket",
            missing.clone(),
            format!("cannot create the control socket {missing}"),
        ),
        (
            "--listen",
            format!("unix:{missing}"),
            format!("cannot listen on unix:{missing}"),
        ),
        (
            "--daemonize",
            missing.clone(),
            format!("daemonize: cannot log to {missing}"),
        ),
    ] {
        let (code, stderr) = run(&[option, &value]);
        assert_eq!(code, Some(1), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("steward: error: "))
            .unwrap_or_else(|| panic!("no error line: {stderr}"));
        assert!(line.contains(&message), "{line}");
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "the cause once: {line}"
        );
    }
}

#[test]
fn vacuum_also_cleans_up_after_a_brutal_shutdown() {
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        let dir = TestDir::new(&format!("vacuum-{signal}"));
        let (mut steward, files) = start_with_files(&dir, &["--vacuum"]);
        steward.signal(signal);
        assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
        for file in &files {
            assert!(
                !file.exists(),
                "{} removed by vacuum after {signal}",
                file.display()
            );
        }
    }
}

#[test]
fn vacuum_finds_relative_paths_after_chdir2() {
    let dir = TestDir::new("vacuum-relative");
    let (first, second) = (dir.join("first"), dir.join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let mut command = Command::new(steward_bin());
    command.current_dir(&dir).args([
        "--chdir",
        first.to_str().unwrap(),
        "--chdir2",
        second.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "unix:app.sock",
        "--pidfile",
        "app.pid",
        "--control-socket",
        "control.sock",
        "--master-fifo",
        "master.fifo",
        "--safe-pidfile",
        "safe.pid",
        "--vacuum",
        "--",
        &demo_bin(),
    ]);
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    // Relative paths start from where each file is made: chdir, or chdir2 for the
    // safe pidfile, written once the first generation is ready.
    let mut files: Vec<PathBuf> = ["app.sock", "app.pid", "control.sock", "master.fifo"]
        .iter()
        .map(|name| first.join(name))
        .collect();
    files.push(second.join("safe.pid"));
    for file in &files {
        eventually(&format!("{}", file.display()), || {
            file.exists().then_some(())
        });
    }
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    for file in &files {
        assert!(
            !file.exists(),
            "{} removed by vacuum: {:?}",
            file.display(),
            steward.log.lines()
        );
    }
}

#[test]
fn vacuum_cleans_up_after_a_start_that_fails_once_its_files_are_made() {
    let missing = format!("/nonexistent-{}/file", std::process::id());
    for (name, failing) in [
        ("pidfile2", ["--pidfile2", missing.as_str()]),
        ("daemonize2", ["--daemonize2", missing.as_str()]),
    ] {
        let dir = TestDir::new(&format!("vacuum-failed-{name}"));
        let path = |file: &str| dir.join(file).to_str().unwrap().to_owned();
        // A safe pidfile is never written by a start that fails: it stays as it was.
        std::fs::write(dir.join("safe.pid"), "1\n").unwrap();
        let listen = format!("unix:{}", path("app.sock"));
        let mut args = vec![
            "--vacuum".to_owned(),
            "--listen".to_owned(),
            listen,
            "--pidfile".to_owned(),
            path("app.pid"),
            "--control-socket".to_owned(),
            path("control.sock"),
            "--master-fifo".to_owned(),
            path("master.fifo"),
            "--safe-pidfile".to_owned(),
            path("safe.pid"),
        ];
        args.extend(failing.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = run(&args);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&format!("{name}: ")), "{stderr}");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["safe.pid"], "{name}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(dir.join("safe.pid")).unwrap(),
            "1\n"
        );
    }
}
