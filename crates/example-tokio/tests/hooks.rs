//! Hooks in preload mode: the example's master loads the app itself, and each forked
//! worker runs the accepting phases before its closure.

use std::{
    fs::File,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

const EXAMPLE: &str = env!("CARGO_BIN_EXE_steward-example-tokio");
const DEADLINE: Duration = Duration::from_secs(20);

const PHASES: &[&str] = &[
    "asap",
    "pre-jail",
    "in-jail",
    "post-jail",
    "as-root",
    "as-user",
    "master-start",
    "pre-app",
    "post-app",
    "accepting",
    "accepting1",
    "accepting-once",
    "accepting1-once",
    "as-user-atexit",
];

/// The example's master, killed (its workers with it, by their death signal) if the
/// test ends without stopping it.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until `path` holds `expected`.
fn wait_contents(path: &PathBuf, expected: &str, log: &PathBuf) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {got:?}, not {expected:?}; log:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn preload_runs_pre_app_and_post_app_around_the_load_and_accepting_in_the_worker() {
    let dir = std::env::temp_dir().join(format!("steward-preload-hooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (file, log) = (dir.join("phases"), dir.join("stderr.log"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(EXAMPLE);
    command
        .env("STEWARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("STEWARD_WORKERS", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("STEWARD_REEXEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap());
    for phase in PHASES {
        let variable = format!("STEWARD_HOOK_{}", phase.to_uppercase().replace('-', "_"));
        command.env(variable, format!("exec:echo {phase} >> {}", file.display()));
    }
    let mut child = Killed(command.spawn().unwrap());
    let child = &mut child.0;
    wait_contents(
        &file,
        "asap\npre-jail\nin-jail\npost-jail\nas-root\nas-user\npre-app\npost-app\nmaster-start\n\
         accepting\naccepting1\naccepting-once\naccepting1-once\n",
        &log,
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the example did not stop");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    let phases = std::fs::read_to_string(&file).unwrap();
    assert!(
        phases.ends_with("accepting1-once\nas-user-atexit\n"),
        "{phases}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
