//! Recycling: a worker replaced by age, on request or past a memory limit, its
//! replacement ready before it is asked to stop, one at a time.

use steward_options::MemoryLimits;

use super::*;

const MB: u64 = 1024 * 1024;

/// A master whose first generation of `workers` serves, with `recycle`.
fn serving_with(workers: usize, recycle: RecyclePolicy) -> FakeLoop {
    let mut fake = FakeLoop::new(Settings {
        recycle,
        ..settings(workers, ReadyMode::Notify)
    });
    fake.ready_all(1);
    fake.take_done();
    fake
}

fn ask(fake: &mut FakeLoop, pid: Pid) {
    fake.send(Event::RecycleRequested {
        pid,
        reason: "after 3 requests".into(),
    });
}

fn rss(mb: u64) -> Memory {
    Memory {
        rss: mb * MB,
        vsz: 2 * mb * MB,
        ..Memory::default()
    }
}

#[test]
fn a_worker_asking_to_be_replaced_stops_only_once_its_replacement_is_ready() {
    let mut fake = serving_with(2, RecyclePolicy::default());
    let old = fake.pids(1, "ready");
    ask(&mut fake, old[0]);
    let done = fake.take_done();
    assert_eq!(
        spawned(&done),
        vec![(1, 1)],
        "a replacement in the same slot"
    );
    assert!(
        stops(&done).is_empty(),
        "the old worker serves on meanwhile"
    );

    let new = fake.pids(1, "starting");
    assert_eq!(new.len(), 1);
    fake.send(Event::ReadyMessage { pid: new[0] });
    assert_eq!(stops(&fake.take_done()), vec![old[0]]);
    fake.exit(old[0]);
    assert_eq!(fake.pids(1, "ready").len(), 2);
    assert!(
        spawned(&fake.take_done()).is_empty(),
        "nothing more is started"
    );
    assert_eq!(fake.supervisor.phase(), &Phase::Serving);
}

#[test]
fn replacements_go_one_at_a_time() {
    let mut fake = serving_with(3, RecyclePolicy::default());
    let old = fake.pids(1, "ready");
    for pid in &old {
        ask(&mut fake, *pid);
    }
    assert_eq!(spawned(&fake.take_done()), vec![(1, 1)]);
    for (turn, pid) in old.iter().enumerate() {
        let new = fake.pids(1, "starting");
        assert_eq!(new.len(), 1, "turn {turn}: one replacement at a time");
        fake.send(Event::ReadyMessage { pid: new[0] });
        assert_eq!(stops(&fake.take_done()), vec![*pid]);
    }
    assert!(fake.pids(1, "starting").is_empty());
}

#[test]
fn a_replacement_that_crashes_is_retried_while_the_old_worker_serves() {
    let mut fake = serving_with(1, RecyclePolicy::default());
    let old = fake.pids(1, "ready")[0];
    ask(&mut fake, old);
    fake.take_done();
    let new = fake.pids(1, "starting")[0];
    fake.exit(new);
    fake.advance(MS(200));
    let done = fake.take_done();
    assert_eq!(
        spawned(&done),
        vec![(1, 1)],
        "started again after its backoff"
    );
    assert!(stops(&done).is_empty());
    let again = fake.pids(1, "starting")[0];
    fake.send(Event::ReadyMessage { pid: again });
    assert_eq!(stops(&fake.take_done()), vec![old]);
}

#[test]
fn lifetimes_are_spread_by_the_delta_per_worker_id() {
    let policy = RecyclePolicy {
        lifetime: Some(Duration::from_secs(60)),
        lifetime_delta: Duration::from_secs(10),
        ..RecyclePolicy::default()
    };
    let mut fake = serving_with(2, policy);
    let old = fake.pids(1, "ready");
    fake.advance(Duration::from_secs(69));
    assert!(spawned(&fake.take_done()).is_empty(), "worker 1 lives 70 s");
    fake.advance(Duration::from_secs(2));
    assert_eq!(spawned(&fake.take_done()), vec![(1, 1)]);
    let new = fake.pids(1, "starting")[0];
    fake.send(Event::ReadyMessage { pid: new });
    assert_eq!(stops(&fake.take_done()), vec![old[0]]);
    fake.exit(old[0]);
    fake.advance(Duration::from_secs(10));
    assert_eq!(
        spawned(&fake.take_done()),
        vec![(2, 1)],
        "worker 2 lives 80 s"
    );
}

#[test]
fn memory_is_measured_only_when_a_limit_is_set() {
    let mut fake = serving_with(1, RecyclePolicy::default());
    assert!(fake.timers.next().is_none(), "an idle master sleeps");
    fake.advance(Duration::from_secs(60));
    let measured = fake
        .take_done()
        .iter()
        .any(|a| matches!(a, Action::MeasureMemory { .. }));
    assert!(!measured);
}

#[test]
fn a_worker_past_reload_on_rss_is_replaced_and_past_evil_killed() {
    let policy = RecyclePolicy {
        reload_on: MemoryLimits {
            rss: 100,
            ..MemoryLimits::default()
        },
        evil: MemoryLimits {
            vsz: 1000,
            ..MemoryLimits::default()
        },
        memory_every: Duration::from_secs(1),
        ..RecyclePolicy::default()
    };
    let mut fake = serving_with(2, policy);
    let old = fake.pids(1, "ready");
    fake.advance(MS(1_000));
    let asked = fake.take_done().into_iter().find_map(|a| match a {
        Action::MeasureMemory { pids, smaps } => Some((pids, smaps)),
        _ => None,
    });
    assert_eq!(asked, Some((old.clone(), false)), "no smaps for rss and as");

    fake.send(Event::Measured {
        pid: old[0],
        memory: rss(90),
    });
    assert!(spawned(&fake.take_done()).is_empty(), "under the limit");
    fake.send(Event::Measured {
        pid: old[0],
        memory: rss(120),
    });
    assert_eq!(spawned(&fake.take_done()), vec![(1, 1)]);

    fake.send(Event::Measured {
        pid: old[1],
        memory: rss(600),
    });
    let done = fake.take_done();
    assert!(done.contains(&Action::Kill(old[1])), "evil: killed at once");
    assert_eq!(
        spawned(&done),
        vec![(2, 1)],
        "its slot started again at once"
    );
}

#[test]
fn a_reload_replaces_a_worker_due_for_recycling_like_any_other() {
    let mut fake = serving_with(1, RecyclePolicy::default());
    let old = fake.pids(1, "ready")[0];
    ask(&mut fake, old);
    let replacement = fake.pids(1, "starting")[0];
    fake.reload(false, false);
    let done = fake.take_done();
    assert!(
        stops(&done).contains(&replacement),
        "the replacement gives way"
    );
    fake.exit(replacement);
    fake.ready_all(2);
    assert_eq!(stops(&fake.take_done()), vec![old]);
}
