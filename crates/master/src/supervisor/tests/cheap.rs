//! Cheap mode: every worker retires while idle, and the count comes back at the next
//! connection; a resize while asleep changes the count to come back to.

use super::*;

#[test]
fn asleep_every_worker_retires_and_awake_the_count_comes_back() {
    let mut fake = serving(2);
    let pids = fake.pids(1, "ready");
    fake.send(Event::Idle { asleep: true });
    assert!(fake.supervisor.is_asleep());
    assert_eq!(stops(&fake.take_done()), pids);
    for pid in pids {
        fake.exit(pid);
    }
    assert!(spawned(&fake.take_done()).is_empty());
    assert_eq!(fake.supervisor.desired(), 0);

    // SIGTTIN while asleep: one more once awake, none now.
    fake.send(Event::Resize { more: true });
    assert!(spawned(&fake.take_done()).is_empty());

    fake.send(Event::Idle { asleep: false });
    assert!(!fake.supervisor.is_asleep());
    assert_eq!(spawned(&fake.take_done()), [(1, 1), (2, 1), (3, 1)]);
    assert_eq!(fake.supervisor.desired(), 3);
}

#[test]
fn a_stopping_master_does_not_fall_asleep() {
    let mut fake = serving(1);
    fake.send(Event::Shutdown { graceful: true });
    fake.send(Event::Idle { asleep: true });
    assert!(!fake.supervisor.is_asleep());
}
