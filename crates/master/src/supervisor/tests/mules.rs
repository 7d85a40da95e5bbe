//! Mules supervised beside the workers: the same backoff, stop and mercy.

use super::*;
use crate::supervisor::mules::Mule;

/// A serving master of one worker and `mules` mules.
fn serving_with_mules(mules: usize) -> FakeLoop {
    let mut fake = FakeLoop::with_mules(settings(1, ReadyMode::Notify), mules);
    fake.ready_all(1);
    fake.take_done();
    fake
}

fn mule_pids(fake: &FakeLoop) -> Vec<Pid> {
    let mut mules: Vec<&Mule> = fake.supervisor.mules.running.iter().collect();
    mules.sort_by_key(|m| m.id);
    mules.iter().map(|m| m.pid).collect()
}

fn mule_starts(actions: &[Action]) -> Vec<usize> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartMule(id) => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn mules_start_before_the_first_generation() {
    let fake = FakeLoop::with_mules(settings(1, ReadyMode::Notify), 2);
    let first_spawn = fake
        .done
        .iter()
        .position(|a| matches!(a, Action::Spawn(_)))
        .unwrap();
    assert_eq!(mule_starts(&fake.done[..first_spawn]), [1, 2]);
    assert_eq!(mule_pids(&fake).len(), 2);
}

#[test]
fn a_crashing_mule_is_started_again_after_the_workers_backoff() {
    let mut fake = serving_with_mules(1);
    for expected in [100, 200, 400] {
        let pid = mule_pids(&fake)[0];
        fake.exit(pid);
        assert!(mule_starts(&fake.take_done()).is_empty());
        fake.advance(MS(expected - 1));
        assert!(mule_starts(&fake.take_done()).is_empty());
        fake.advance(MS(1));
        assert_eq!(mule_starts(&fake.take_done()), [1]);
        assert_ne!(mule_pids(&fake), [pid]);
    }
}

#[test]
fn a_mule_that_cannot_start_is_tried_again_and_not_hammered() {
    let mut fake = serving_with_mules(1);
    fake.mules_fail = true;
    fake.exit(mule_pids(&fake)[0]);
    fake.advance(MS(100));
    fake.advance(MS(199));
    assert_eq!(mule_starts(&fake.take_done()), [1], "once after 100 ms");
    fake.mules_fail = false;
    fake.advance(MS(1));
    assert_eq!(mule_starts(&fake.take_done()), [1], "again 200 ms later");
    assert_eq!(mule_pids(&fake).len(), 1);
}

#[test]
fn at_shutdown_mules_stop_with_the_workers_and_are_killed_after_the_mercy() {
    let mut fake = serving_with_mules(2);
    let mules = mule_pids(&fake);
    fake.send(Event::Shutdown { graceful: true });
    let done = fake.take_done();
    for pid in &mules {
        assert!(stops(&done).contains(pid), "mule {pid} asked to stop");
    }
    fake.exit(mules[0]);
    fake.exit(fake.supervisor.workers()[0].pid);
    assert!(!fake.supervisor.is_done(), "a mule still runs");
    fake.advance(Duration::from_secs(30));
    assert!(fake.take_done().contains(&Action::Kill(mules[1])));
    fake.exit(mules[1]);
    assert!(fake.supervisor.is_done());
    assert!(
        mule_starts(&fake.take_done()).is_empty(),
        "nothing restarted"
    );
}

#[test]
fn a_brutal_shutdown_kills_mules_at_once_and_cancels_a_pending_respawn() {
    let mut fake = serving_with_mules(2);
    let mules = mule_pids(&fake);
    fake.exit(mules[0]);
    fake.send(Event::Shutdown { graceful: false });
    assert!(fake.take_done().contains(&Action::Kill(mules[1])));
    fake.advance(Duration::from_secs(1));
    assert!(mule_starts(&fake.take_done()).is_empty());
}

#[test]
fn mules_stop_before_a_reexec_and_start_again_if_it_fails() {
    let mut fake = serving_with_mules(1);
    let mule = mule_pids(&fake)[0];
    fake.reload(false, true);
    fake.send(Event::UpgradeChecked(Ok(())));
    let done = fake.take_done();
    let stop = done.iter().position(|a| *a == Action::Stop(mule)).unwrap();
    let reexec = done
        .iter()
        .position(|a| matches!(a, Action::Reexec { .. }))
        .unwrap();
    assert!(stop < reexec, "the mule is stopped before the exec");
    fake.send(Event::ReexecFailed);
    fake.exit(mule);
    assert_eq!(mule_starts(&fake.take_done()), [1]);
}
