//! Other processes, seen through /proc; and who runs the tests.

use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::DEADLINE;

/// The processes whose parent is `parent`.
pub fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent.as_raw())
            })
        })
        .map(Pid::from_raw)
        .collect()
}

/// Whether a process is gone (a zombie counts as gone: it runs no code).
pub fn is_gone(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Polls until `pid` is gone, at most [`DEADLINE`].
pub fn wait_gone(pid: Pid) {
    let deadline = Instant::now() + DEADLINE;
    while !is_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs after {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The environment of a running process.
pub fn environ(pid: Pid) -> std::collections::HashMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Resident memory of a process, in kB (VmRSS).
pub fn rss_kb(pid: Pid) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For a test that needs root (to switch uid or gid, chown, chroot, mount, unshare...):
/// true as root; otherwise says on stderr that the test is skipped and why, and the test
/// returns at once:
///
/// ```no_run
/// if !steward_testkit::root_or_skip("drops privileges to nobody") {
///     return;
/// }
/// ```
pub fn root_or_skip(why: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!("skipped: needs root: {why}");
    }
    root
}
