//! Hooks in preload mode: the example's master loads the app itself, and each forked
//! worker runs the accepting phases before its closure.

mod common;

use common::{Example, TestDir, DEADLINE};
use nix::sys::signal::Signal;
use std::{
    path::Path,
    time::{Duration, Instant},
};

const EXAMPLE: &str = env!("CARGO_BIN_EXE_steward-example-tokio");

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

/// Polls until `path` holds `expected`.
fn wait_contents(path: &Path, expected: &str, example: &Example) {
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
            example.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn preload_runs_app_phases_around_each_load_and_accepting_in_the_worker() {
    let dir = TestDir::new("hooks");
    let file = dir.join("phases");
    let hooks: Vec<(String, String)> = PHASES
        .iter()
        .map(|phase| {
            let variable = format!("STEWARD_HOOK_{}", phase.to_uppercase().replace('-', "_"));
            (variable, format!("exec:echo {phase} >> {}", file.display()))
        })
        .collect();
    let mut env = vec![("STEWARD_WORKERS", "1")];
    env.extend(hooks.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let example = Example::start(EXAMPLE.as_ref(), &env);
    let start =
        "asap\npre-jail\nin-jail\npost-jail\nas-root\nas-user\npre-app\npost-app\nmaster-start\n\
         accepting\naccepting1\naccepting-once\naccepting1-once\n";
    wait_contents(&file, start, &example);
    // A reload re-execs the master: the new image loads the app between pre-app and
    // post-app and runs no start phase; its worker is no first one (-once is done).
    // Once generation 1 serves, so that the reload is the plain case.
    example.wait_generation_ready(1);
    example.signal(Signal::SIGHUP);
    wait_contents(
        &file,
        &format!("{start}as-user-atexit\npre-app\npost-app\naccepting\naccepting1\n"),
        &example,
    );
    let status = example.stop();
    assert!(status.success(), "{status}");
    let phases = std::fs::read_to_string(&file).unwrap();
    assert!(
        phases.ends_with("post-app\naccepting\naccepting1\nas-user-atexit\n"),
        "{phases}"
    );
}
