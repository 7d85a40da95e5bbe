//! Soak: many graceful reloads in a row. The master's memory and descriptors stay flat,
//! no worker is left a zombie, and no socket leaks into the master or the workers.
//! 100 reloads by default; `STEWARD_SOAK=1` runs 1000.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use steward_testkit::{children_of, demo_bin, rss_kb, Steward};

use crate::chaos::soak;

/// The master's open descriptors: how many, and how many are sockets.
fn fds(pid: nix::unistd::Pid) -> (usize, usize) {
    let targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    let sockets = targets.iter().filter(|t| t.starts_with("socket:")).count();
    (targets.len(), sockets)
}

/// The master's children that are zombies (exited, not reaped).
fn zombies(master: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    children_of(master)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

#[test]
fn many_reloads_leave_memory_descriptors_and_children_flat() {
    const WORKERS: usize = 2;
    let reloads: u64 = if soak() { 1000 } else { 100 };
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "2"], &[&demo]);
    steward.wait_generation_ready(1);
    let master = steward.pid();

    let reload = |generation: u64| {
        let from = steward.log.len();
        steward.signal(Signal::SIGHUP);
        steward.log.wait_event_from(
            from,
            "reload-complete",
            &[("generation", &generation.to_string())],
        );
    };
    // A few reloads first, so that buffers grown once (log formatting, the worker
    // table) count as the baseline, not as growth.
    let warmup = 10;
    for generation in 2..=warmup + 1 {
        reload(generation);
    }
    let (rss_before, fds_before) = (rss_kb(master), fds(master));

    let started = Instant::now();
    for generation in warmup + 2..=reloads + 1 {
        reload(generation);
    }
    let elapsed = started.elapsed();
    // A reload completes while its old workers may still drain, their output pipes
    // open in the master (two each): both counts may hold a few of those. A leak grows
    // with every reload (here 90 of them); a transient pipe goes once its worker is gone.
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    let fds_after = loop {
        let now = fds(master);
        if now.0 <= fds_before.0 || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let rss_after = rss_kb(master);
    println!(
        "soak: {reloads} reloads ({:.1} ms each); master RSS {rss_before} -> {rss_after} kB, \
         fds {fds_before:?} -> {fds_after:?} (all, sockets)",
        elapsed.as_secs_f64() * 1000.0 / (reloads - warmup) as f64
    );

    assert!(
        fds_after.0 <= fds_before.0 && fds_after.1 == fds_before.1,
        "the master's descriptors grew: {fds_before:?} -> {fds_after:?}"
    );
    assert!(
        rss_after <= rss_before + 256,
        "the master grew from {rss_before} kB to {rss_after} kB over {reloads} reloads"
    );

    // "reload complete" means every old worker was reaped: no zombie, and only the
    // current generation's workers are children.
    assert_eq!(zombies(master), Vec::new(), "zombie workers");
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    while children_of(master).len() != WORKERS {
        assert!(
            Instant::now() < deadline,
            "the master has {} children, not {WORKERS}",
            children_of(master).len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The last generation's workers got exactly the listening socket, nothing leaked.
    let last = reloads + 1;
    for _ in 0..10 {
        let hello = steward.get("/").unwrap();
        assert_eq!(hello.generation(), last, "{}", hello.body);
        assert_eq!(steward.get("/fds").unwrap().body.trim(), "0 1 2 3");
    }
}
