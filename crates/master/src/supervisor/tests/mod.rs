//! The supervisor driven through its life with a fake clock and fake processes: every
//! decision checked without forking anything.

use std::time::{Duration, Instant};

use nix::unistd::Pid;
use steward_options::ReadyMode;

use super::*;
use crate::event::Timers;

mod cheap;
mod delay;
mod mules;
mod recycle;
mod watchdog;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The loop, faked: pids are handed out in order, hooks and config reads succeed,
/// timers fire when the clock is moved past them.
struct FakeLoop {
    supervisor: Supervisor,
    now: Instant,
    timers: Timers<Deadline>,
    next_pid: i32,
    /// Every action carried out, in order.
    done: Vec<Action>,
    /// What the next config read answers.
    config: Option<Result<Settings, String>>,
    /// The next mule starts fail.
    mules_fail: bool,
}

fn settings(workers: usize, ready: ReadyMode) -> Settings {
    Settings {
        workers,
        ready,
        mercy: Duration::from_secs(30),
        shutdown_delay: Duration::ZERO,
        backoff: BackoffPolicy {
            first: MS(100),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(10),
        },
        ready_timeout: Some(Duration::from_secs(60)),
        observable: false,
        generation_hooks: true,
        accepting_in_master: true,
        recycle: RecyclePolicy::default(),
        watchdog: None,
        bounds: None,
    }
}

impl FakeLoop {
    fn new(settings: Settings) -> FakeLoop {
        FakeLoop::with_mules(settings, 0)
    }

    fn with_mules(settings: Settings, mules: usize) -> FakeLoop {
        let mut fake = FakeLoop {
            supervisor: Supervisor::new(settings).with_mules(mules),
            now: Instant::now(),
            timers: Timers::new(),
            next_pid: 100,
            done: Vec::new(),
            config: None,
            mules_fail: false,
        };
        let first = fake.supervisor.begin(fake.now);
        fake.run(first);
        fake
    }

    fn send(&mut self, event: Event) {
        let actions = self.supervisor.handle(event, self.now);
        self.run(actions);
    }

    fn run(&mut self, actions: Vec<Action>) {
        let mut queue = std::collections::VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            let answers = self.execute(&action);
            self.done.push(action);
            for answer in answers {
                queue.extend(self.supervisor.handle(answer, self.now));
            }
        }
    }

    fn execute(&mut self, action: &Action) -> Vec<Event> {
        match action {
            Action::Spawn(requests) => requests
                .iter()
                .map(|r| {
                    self.next_pid += 1;
                    Event::Started {
                        id: r.id,
                        generation: r.generation,
                        pid: Pid::from_raw(self.next_pid),
                    }
                })
                .collect(),
            Action::StartMule(id) if self.mules_fail => vec![Event::MuleStartFailed {
                id: *id,
                how: "no such file".into(),
            }],
            Action::StartMule(id) => {
                self.next_pid += 1;
                vec![Event::MuleStarted {
                    id: *id,
                    pid: Pid::from_raw(self.next_pid),
                }]
            }
            Action::Arm(deadline, at) => {
                self.timers.arm(*deadline, *at);
                Vec::new()
            }
            Action::Disarm(deadline) => {
                self.timers.disarm(*deadline);
                Vec::new()
            }
            Action::RunHook(hook) => vec![Event::HookRan {
                hook: *hook,
                result: Ok(()),
            }],
            Action::ReadConfig => {
                let settings = self.supervisor.settings().clone();
                vec![Event::ConfigRead(Box::new(
                    self.config.take().unwrap_or(Ok(settings)),
                ))]
            }
            _ => Vec::new(),
        }
    }

    /// Moves the clock to `to`, firing every timer due on the way, in order.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = self.timers.next().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            let deadline = self.timers.pop_due(self.now).unwrap();
            self.send(Event::Timer(deadline));
        }
        self.now = end;
    }

    /// The pids of generation `generation` in `state`, by id.
    fn pids(&self, generation: u64, state: &str) -> Vec<Pid> {
        let mut workers: Vec<&Worker> = self
            .supervisor
            .workers()
            .iter()
            .filter(|w| w.generation == generation && w.state.name() == state)
            .collect();
        workers.sort_by_key(|w| w.id);
        workers.iter().map(|w| w.pid).collect()
    }

    fn ready_all(&mut self, generation: u64) {
        for pid in self.pids(generation, "starting") {
            self.send(Event::ReadyMessage { pid });
        }
    }

    fn reload(&mut self, chain: bool, reexec: bool) {
        self.send(Event::Reload { chain, reexec });
    }

    fn exit(&mut self, pid: Pid) {
        self.send(Event::Exited {
            pid,
            how: "status 0".into(),
        });
    }

    fn take_done(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.done)
    }
}

fn stops(actions: &[Action]) -> Vec<Pid> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop(pid) => Some(*pid),
            _ => None,
        })
        .collect()
}

fn spawned(actions: &[Action]) -> Vec<(usize, u64)> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Spawn(requests) => requests.iter().map(|r| (r.id, r.generation)).collect(),
            _ => Vec::new(),
        })
        .collect()
}

fn finished(actions: &[Action]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReloadFinished { generation, result } => Some((*generation, result.is_ok())),
            _ => None,
        })
        .collect()
}

fn says_ready(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::Notify(states) if states.contains(&State::Ready)))
}

/// A master whose first generation of `workers` serves.
fn serving(workers: usize) -> FakeLoop {
    let mut fake = FakeLoop::new(settings(workers, ReadyMode::Notify));
    fake.ready_all(1);
    assert_eq!(fake.supervisor.serving(), Some(1));
    fake.take_done();
    fake
}

#[test]
fn the_first_generation_starts_after_pre_app_and_is_announced_once_all_are_ready() {
    let mut fake = FakeLoop::new(settings(3, ReadyMode::Notify));
    let done = fake.take_done();
    assert_eq!(done[0], Action::RunHook(GenerationHook::PreApp));
    assert_eq!(spawned(&done), [(1, 1), (2, 1), (3, 1)]);
    let pids = fake.pids(1, "starting");
    assert_eq!(pids.len(), 3);
    fake.send(Event::ReadyMessage { pid: pids[0] });
    fake.send(Event::ReadyMessage { pid: pids[1] });
    assert!(
        !says_ready(&fake.done),
        "READY=1 before every worker is ready"
    );
    fake.send(Event::ReadyMessage { pid: pids[2] });
    let done = fake.take_done();
    assert!(done.contains(&Action::RunHook(GenerationHook::PostApp)));
    assert!(done.contains(&Action::FirstGenerationReady));
    assert!(says_ready(&done));
    assert_eq!(*fake.supervisor.phase(), Phase::Serving);
    assert_eq!(fake.supervisor.lifecycle(), crate::Lifecycle::Running);
}

#[test]
fn auto_readiness_comes_from_the_timer_when_no_ready_message_does() {
    let mut fake = FakeLoop::new(settings(2, ReadyMode::Auto(MS(1000))));
    fake.advance(MS(999));
    assert_eq!(fake.supervisor.serving(), None);
    fake.advance(MS(1));
    assert_eq!(fake.supervisor.serving(), Some(1));
    assert_eq!(fake.pids(1, "ready").len(), 2);
}

#[test]
fn a_graceful_reload_stops_the_old_generation_only_once_the_new_one_is_ready() {
    let mut fake = serving(2);
    let old = fake.pids(1, "ready");
    assert_eq!(old.len(), 2);
    fake.reload(false, false);
    let done = fake.take_done();
    assert!(done.contains(&Action::Atexit));
    assert!(done.contains(&Action::ReadConfig));
    assert_eq!(spawned(&done), [(1, 2), (2, 2)]);
    assert!(stops(&done).is_empty());
    let new = fake.pids(2, "starting");
    fake.send(Event::ReadyMessage { pid: new[0] });
    assert!(
        stops(&fake.done).is_empty(),
        "stopped before the whole generation was ready"
    );
    fake.send(Event::ReadyMessage { pid: new[1] });
    assert_eq!(stops(&fake.take_done()), old);
    fake.exit(old[0]);
    assert!(finished(&fake.done).is_empty());
    fake.exit(old[1]);
    assert_eq!(finished(&fake.take_done()), [(2, true)]);
    assert_eq!(*fake.supervisor.phase(), Phase::Serving);
}

#[test]
fn a_chain_reload_replaces_one_worker_at_a_time() {
    let mut fake = serving(3);
    let old = fake.pids(1, "ready");
    fake.reload(true, false);
    for (index, old_pid) in old.iter().enumerate() {
        let done = fake.take_done();
        assert_eq!(spawned(&done), [(index + 1, 2)], "step {index}");
        let new = fake.pids(2, "starting");
        assert_eq!(new.len(), 1);
        fake.send(Event::ReadyMessage { pid: new[0] });
        assert_eq!(stops(&fake.done), [*old_pid], "step {index}");
        fake.exit(*old_pid);
    }
    assert_eq!(finished(&fake.take_done()), [(2, true)]);
    assert_eq!(fake.pids(2, "ready").len(), 3);
}

#[test]
fn a_crashing_worker_is_started_again_after_a_doubling_backoff() {
    let mut fake = serving(1);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let pid = fake.pids(1, "ready")[0];
        fake.exit(pid);
        assert!(spawned(&fake.done).is_empty(), "started again at once");
        let before = fake.now;
        let armed = fake.timers.next().expect("a respawn timer");
        delays.push(armed - before);
        fake.advance(armed - before);
        assert_eq!(spawned(&fake.take_done()), [(1, 1)]);
        fake.ready_all(1);
        fake.advance(MS(10));
    }
    assert_eq!(delays, [MS(100), MS(200), MS(400), MS(800)]);
}

#[test]
fn a_first_generation_worker_that_dies_before_it_is_ready_ends_the_start() {
    let mut fake = FakeLoop::new(settings(2, ReadyMode::Notify));
    let pids = fake.pids(1, "starting");
    fake.exit(pids[0]);
    let done = fake.take_done();
    assert!(done.contains(&Action::Failed));
    assert!(matches!(
        fake.supervisor.take_failure(),
        Some(Failure::WorkerFailedToStart { id: 1, .. })
    ));
    assert_eq!(stops(&done), [pids[1]]);
    assert!(fake.supervisor.is_stopping());
    fake.exit(pids[1]);
    assert!(fake.supervisor.is_done());
}

#[test]
fn a_reload_whose_worker_dies_before_it_is_ready_fails_and_the_old_generation_serves_on() {
    let mut fake = serving(2);
    let old = fake.pids(1, "ready");
    fake.reload(false, false);
    let new = fake.pids(2, "starting");
    fake.take_done();
    fake.exit(new[0]);
    let done = fake.take_done();
    assert_eq!(finished(&done), [(2, false)]);
    assert!(
        says_ready(&done),
        "systemd must hear READY=1 to end its reload"
    );
    assert_eq!(stops(&done), [new[1]]);
    assert_eq!(fake.supervisor.current(), 1);
    assert_eq!(fake.pids(1, "ready"), old);
    assert_eq!(*fake.supervisor.phase(), Phase::Serving);
}

#[test]
fn a_reload_with_a_broken_configuration_fails_before_starting_anything() {
    let mut fake = serving(2);
    fake.config = Some(Err("app.toml:3: bad".into()));
    fake.reload(false, false);
    let done = fake.take_done();
    assert!(spawned(&done).is_empty());
    assert_eq!(finished(&done), [(2, false)]);
    assert_eq!(fake.supervisor.serving(), Some(1));
    assert_eq!(fake.supervisor.current(), 1);
}

#[test]
fn a_shutdown_during_a_reload_fails_it_and_kills_whoever_outlives_the_mercy() {
    let mut fake = serving(1);
    fake.reload(false, false);
    fake.take_done();
    fake.send(Event::Shutdown { graceful: true });
    let done = fake.take_done();
    assert_eq!(finished(&done), [(2, false)]);
    assert!(done.contains(&Action::ShuttingDown { graceful: true }));
    assert_eq!(stops(&done).len(), 2);
    fake.advance(Duration::from_secs(30));
    let kills = fake
        .take_done()
        .iter()
        .filter(|a| matches!(a, Action::Kill(_)))
        .count();
    assert_eq!(kills, 2);
    let pids: Vec<Pid> = fake.supervisor.workers().iter().map(|w| w.pid).collect();
    assert_eq!(pids.len(), 2);
    for pid in pids {
        fake.exit(pid);
    }
    assert!(fake.supervisor.is_done());
    assert!(
        spawned(&fake.done).is_empty(),
        "nothing starts while stopping"
    );
}

#[test]
fn an_upgrade_check_folds_further_reloads_and_a_refusal_reloads_with_the_running_binary() {
    let mut fake = serving(1);
    fake.reload(false, true);
    assert!(fake.take_done().contains(&Action::StartUpgradeCheck));
    assert!(fake.supervisor.checking_since().is_some());
    fake.reload(true, true);
    assert!(
        fake.take_done().is_empty(),
        "a reload during the check is folded into it"
    );
    fake.send(Event::UpgradeChecked(Err("refused".into())));
    let done = fake.take_done();
    assert_eq!(spawned(&done), [(1, 2)]);
    assert!(matches!(fake.supervisor.phase(), Phase::Reloading(r) if !r.chain));
}

#[test]
fn a_passed_upgrade_check_re_execs_and_a_failed_exec_reloads_here() {
    let mut fake = serving(1);
    fake.reload(true, true);
    fake.take_done();
    fake.send(Event::UpgradeChecked(Ok(())));
    assert!(fake.take_done().contains(&Action::Reexec { chain: true }));
    fake.send(Event::ReexecFailed);
    assert_eq!(spawned(&fake.take_done()), [(1, 2)]);
}

#[test]
fn a_shutdown_during_the_upgrade_check_kills_the_check_and_answers_its_waiters() {
    let mut fake = serving(1);
    fake.reload(false, true);
    fake.take_done();
    fake.send(Event::Shutdown { graceful: false });
    let done = fake.take_done();
    assert!(done.contains(&Action::KillUpgradeCheck));
    assert_eq!(finished(&done), [(2, false)]);
    assert!(done.iter().any(|a| matches!(a, Action::Kill(_))));
}

#[test]
fn resizing_starts_or_retires_a_worker_and_never_goes_below_one() {
    let mut fake = serving(1);
    fake.send(Event::Resize { more: true });
    assert_eq!(spawned(&fake.take_done()), [(2, 1)]);
    fake.ready_all(1);
    let second = fake.pids(1, "ready")[1];
    fake.send(Event::Resize { more: false });
    assert_eq!(stops(&fake.take_done()), [second]);
    fake.send(Event::Resize { more: false });
    assert_eq!(fake.supervisor.desired(), 1);
}

#[test]
fn an_idle_master_has_no_timer_armed() {
    let fake = serving(4);
    assert_eq!(fake.timers.next(), None);
}

#[test]
fn a_first_generation_never_ready_is_killed_at_the_ready_timeout_and_ends_the_start() {
    let mut fake = FakeLoop::new(settings(1, ReadyMode::Notify));
    let pid = fake.pids(1, "starting")[0];
    fake.advance(Duration::from_secs(59));
    assert!(!fake.supervisor.is_stopping());
    fake.advance(Duration::from_secs(1));
    let done = fake.take_done();
    assert!(done.contains(&Action::Kill(pid)));
    assert!(done.contains(&Action::Failed));
    assert!(matches!(
        fake.supervisor.take_failure(),
        Some(Failure::WorkerNotReady { id: 1, .. })
    ));
    assert!(fake.supervisor.is_stopping());
}

#[test]
fn a_reload_never_ready_fails_at_the_ready_timeout_and_the_old_generation_serves_on() {
    let mut fake = serving(2);
    let old = fake.pids(1, "ready");
    fake.reload(false, false);
    let new = fake.pids(2, "starting");
    assert_eq!(new.len(), 2);
    fake.send(Event::ReadyMessage { pid: new[0] });
    fake.take_done();
    fake.advance(Duration::from_secs(60));
    let done = fake.take_done();
    assert!(done.contains(&Action::Kill(new[1])));
    assert_eq!(finished(&done), [(2, false)]);
    assert!(
        says_ready(&done),
        "systemd must hear READY=1 to end its reload"
    );
    assert_eq!(stops(&done), [new[0]]);
    assert_eq!(fake.pids(1, "ready"), old);
    assert_eq!(fake.supervisor.current(), 1);
}

#[test]
fn a_ready_worker_has_no_ready_timeout_left() {
    let mut fake = serving(1);
    fake.advance(Duration::from_secs(120));
    assert_eq!(fake.pids(1, "ready").len(), 1);
    assert!(fake.take_done().is_empty());
}

#[test]
fn under_auto_a_worker_with_sockets_is_ready_when_seen_listening_not_after_a_second() {
    let mut fake = FakeLoop::new(Settings {
        observable: true,
        ..settings(1, ReadyMode::Auto(MS(1000)))
    });
    let pid = fake.pids(1, "starting")[0];
    assert!(fake.supervisor.wants_listening_observed());
    fake.advance(MS(5000));
    assert_eq!(fake.supervisor.serving(), None, "a timer made it ready");
    let worker = &fake.supervisor.workers()[0];
    assert_eq!(
        fake.supervisor.waiting_for(worker),
        "READY=1 or waiting for connections on its sockets"
    );
    fake.send(Event::Listening { pid, how: "epoll" });
    assert_eq!(fake.supervisor.serving(), Some(1));
}

#[test]
fn where_listening_cannot_be_seen_time_alive_stands_in() {
    let mut fake = FakeLoop::new(Settings {
        observable: true,
        ..settings(1, ReadyMode::Auto(MS(1000)))
    });
    let pid = fake.pids(1, "starting")[0];
    fake.advance(MS(300));
    fake.send(Event::Unobservable { pid });
    let worker = &fake.supervisor.workers()[0];
    assert_eq!(
        fake.supervisor.waiting_for(worker),
        "READY=1 or alive 1000 ms"
    );
    fake.advance(MS(699));
    assert_eq!(fake.supervisor.serving(), None);
    fake.advance(MS(1));
    assert_eq!(fake.supervisor.serving(), Some(1));
}

#[test]
fn notify_mode_ignores_listening() {
    let mut fake = FakeLoop::new(Settings {
        observable: true,
        ..settings(1, ReadyMode::Notify)
    });
    let pid = fake.pids(1, "starting")[0];
    assert!(!fake.supervisor.wants_listening_observed());
    fake.send(Event::Listening { pid, how: "accept" });
    assert_eq!(fake.supervisor.serving(), None);
}

#[test]
fn with_cheaper_bounds_resizes_stay_within_them() {
    let mut fake = FakeLoop::new(Settings {
        bounds: Some((2, 3)),
        ..settings(2, ReadyMode::Notify)
    });
    fake.ready_all(1);
    fake.send(Event::Resize { more: false });
    assert_eq!(fake.supervisor.desired(), 2, "not below cheaper");
    fake.send(Event::Resize { more: true });
    fake.send(Event::Resize { more: true });
    assert_eq!(fake.supervisor.desired(), 3, "not above workers");
}
