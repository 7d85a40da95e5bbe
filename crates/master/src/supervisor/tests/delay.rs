//! `shutdown-delay`: not ready at once, serving until the delay is over, then the
//! graceful shutdown as without a delay.

use super::*;

/// A master whose first generation of `workers` serves, with `delay` as its
/// shutdown delay.
fn serving_with_delay(workers: usize, delay: Duration) -> FakeLoop {
    let mut fake = FakeLoop::new(Settings {
        shutdown_delay: delay,
        ..settings(workers, ReadyMode::Notify)
    });
    fake.ready_all(1);
    assert!(fake.supervisor.ready());
    fake.take_done();
    fake
}

fn says_stopping(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Notify(states) if states.contains(&State::Stopping)))
}

#[test]
fn a_graceful_shutdown_serves_not_ready_for_the_delay_then_drains() {
    let mut fake = serving_with_delay(2, Duration::from_secs(5));
    let workers = fake.pids(1, "ready");
    fake.send(Event::Shutdown { graceful: true });
    let done = fake.take_done();
    assert!(stops(&done).is_empty(), "nothing stops during the delay");
    assert!(says_stopping(&done), "systemd hears of the stop at once");
    assert!(!fake.supervisor.ready(), "not ready from the request on");
    assert_eq!(fake.supervisor.phase(), &Phase::Serving);

    fake.advance(MS(4_900));
    assert!(stops(&fake.take_done()).is_empty());
    fake.advance(MS(200));
    assert_eq!(stops(&fake.take_done()), workers);
    assert!(fake.supervisor.is_stopping());
}

#[test]
fn a_worker_that_crashes_during_the_delay_is_started_again() {
    let mut fake = serving_with_delay(1, Duration::from_secs(5));
    fake.send(Event::Shutdown { graceful: true });
    let worker = fake.pids(1, "ready")[0];
    fake.exit(worker);
    fake.advance(MS(500));
    assert_eq!(spawned(&fake.take_done()), vec![(1, 1)]);
}

#[test]
fn a_brutal_shutdown_during_the_delay_kills_at_once() {
    let mut fake = serving_with_delay(2, Duration::from_secs(5));
    fake.send(Event::Shutdown { graceful: true });
    fake.take_done();
    fake.send(Event::Shutdown { graceful: false });
    let done = fake.take_done();
    let kills = done.iter().filter(|a| matches!(a, Action::Kill(_))).count();
    assert_eq!(kills, 2);
    assert!(done.contains(&Action::Disarm(Deadline::ShutdownDelay)));
    assert_eq!(
        fake.supervisor.phase(),
        &Phase::Stopping { graceful: false }
    );
}

#[test]
fn a_second_graceful_request_and_a_reload_during_the_delay_change_nothing() {
    let mut fake = serving_with_delay(1, Duration::from_secs(5));
    fake.send(Event::Shutdown { graceful: true });
    fake.advance(MS(1_000));
    fake.send(Event::Shutdown { graceful: true });
    fake.reload(false, false);
    let done = fake.take_done();
    assert!(stops(&done).is_empty() && spawned(&done).is_empty());
    // The delay still ends when the first request said.
    fake.advance(MS(4_001));
    assert_eq!(stops(&fake.take_done()).len(), 1);
}

#[test]
fn with_nothing_served_yet_there_is_no_delay() {
    let mut fake = FakeLoop::new(Settings {
        shutdown_delay: Duration::from_secs(5),
        ..settings(1, ReadyMode::Notify)
    });
    fake.send(Event::Shutdown { graceful: true });
    assert_eq!(stops(&fake.take_done()).len(), 1);
    assert!(fake.supervisor.is_stopping());
}
