//! `worker-watchdog`: a ready worker that stops sending WATCHDOG=1, or sends
//! WATCHDOG=trigger, is aborted, killed after a short mercy and replaced.

use super::*;

fn watched(workers: usize) -> FakeLoop {
    let mut fake = FakeLoop::new(Settings {
        watchdog: Some(Duration::from_secs(2)),
        ..settings(workers, ReadyMode::Notify)
    });
    fake.ready_all(1);
    fake.take_done();
    fake
}

fn aborts(actions: &[Action]) -> Vec<Pid> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Abort(pid) => Some(*pid),
            _ => None,
        })
        .collect()
}

#[test]
fn heartbeats_keep_a_worker_and_silence_aborts_kills_and_replaces_it() {
    let mut fake = watched(2);
    let [quiet, beating] = fake.pids(1, "ready")[..] else {
        panic!("two workers")
    };
    // Watched from the first heartbeat on: both send one, then one falls silent.
    fake.send(Event::Heartbeat { pid: quiet });
    for _ in 0..3 {
        fake.advance(MS(1_500));
        fake.send(Event::Heartbeat { pid: beating });
    }
    let done = fake.take_done();
    assert_eq!(aborts(&done), vec![quiet], "only the silent one, once");
    assert!(stops(&done).is_empty(), "aborted, not asked to stop");
    assert_eq!(
        spawned(&done),
        vec![(1, 1)],
        "its slot starts again at once"
    );

    fake.advance(MS(5_000));
    assert!(
        fake.take_done().contains(&Action::Kill(quiet)),
        "SIGKILL after the mercy"
    );
    fake.exit(quiet);
    assert!(fake.supervisor.workers().iter().all(|w| w.pid != quiet));
}

#[test]
fn watchdog_trigger_aborts_at_once_and_a_starting_worker_is_not_watched() {
    let mut fake = watched(1);
    let worker = fake.pids(1, "ready")[0];
    fake.send(Event::WatchdogTrigger { pid: worker });
    let done = fake.take_done();
    assert_eq!(aborts(&done), vec![worker]);
    let told = done.iter().any(|a| {
        matches!(a, Action::Notify(states)
            if matches!(&states[..], [State::Status(s)] if s.contains("WATCHDOG=trigger")))
    });
    assert!(told, "systemd's STATUS says why: {done:?}");
    let replacement = fake.pids(1, "starting")[0];
    fake.advance(Duration::from_secs(10));
    assert!(
        aborts(&fake.take_done()).is_empty(),
        "ready-timeout's business"
    );
    fake.send(Event::ReadyMessage { pid: replacement });
    fake.send(Event::Heartbeat { pid: replacement });
    fake.advance(MS(2_100));
    assert_eq!(aborts(&fake.take_done()), vec![replacement]);
}

#[test]
fn without_the_option_no_heartbeat_is_awaited() {
    let mut fake = FakeLoop::new(settings(1, ReadyMode::Notify));
    fake.ready_all(1);
    assert!(fake.timers.next().is_none(), "an idle master sleeps");
    fake.send(Event::WatchdogTrigger {
        pid: fake.pids(1, "ready")[0],
    });
    assert!(aborts(&fake.take_done()).is_empty());
}

#[test]
fn a_worker_that_never_sends_watchdog_1_is_not_watched() {
    let mut fake = watched(1);
    fake.advance(MS(60_000));
    assert!(aborts(&fake.take_done()).is_empty());
}
