//! Where the binaries under test are, and the one-shot steward commands.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// The binary `name` that cargo built beside the running test (in `target/<profile>/`).
/// Panics, saying how to build it, when it is missing.
pub fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe.parent().expect("the test binary's directory");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("the target directory");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The steward binary.
pub fn steward_bin() -> PathBuf {
    built("steward")
}

/// The demo worker, as a string (for command lines and config text).
pub fn demo_bin() -> String {
    built("steward-demo")
        .to_str()
        .expect("a UTF-8 target directory")
        .to_owned()
}

/// steward run by a shell that leaves fd 7 open without close-on-exec, as a careless
/// parent would: for tests that nothing of it reaches a worker or a hook. Add steward's
/// arguments.
pub fn steward_with_a_leaked_fd() -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"exec 7</dev/null; exec "$@""#)
        .arg("sh")
        .arg(steward_bin());
    cmd
}

/// Runs `steward ARGS` (a client command such as `reload --wait`) to completion.
pub fn steward_client(args: &[&str]) -> Output {
    Command::new(steward_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run steward")
}

/// `steward reload --wait` through the master's control socket at `control`.
pub fn reload_wait(control: impl AsRef<Path>) -> Output {
    let control = control
        .as_ref()
        .to_str()
        .expect("a UTF-8 control socket path");
    steward_client(&["reload", "--wait", "--control-socket", control])
}
