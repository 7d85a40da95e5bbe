//! Chaos: under load, a random worker is SIGKILLed every 200 ms. The master must live,
//! start every killed worker again, and only requests in flight on a killed worker may
//! fail. 5 s by default; `STEWARD_SOAK=1` runs the full 30 s.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nix::sys::signal::{kill, Signal};

use steward_testkit::{children_of, demo_bin, field, is_gone, Steward};

/// Whether the long variants of the reliability tests run (`STEWARD_SOAK=1`).
pub fn soak() -> bool {
    std::env::var_os("STEWARD_SOAK").is_some_and(|v| v != "0")
}

/// One request's fate: when it ran, and the error if it failed.
pub(crate) struct Outcome {
    pub start: Instant,
    pub end: Instant,
    pub error: Option<String>,
}

/// Client threads that each send `path` on a new connection, one after the other,
/// recording every request, until stopped.
pub(crate) struct Recorder {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Recorder {
    pub fn start(port: u16, clients: usize, path: &'static str) -> Recorder {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, outcomes) = (stop.clone(), outcomes.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let error = match steward_testkit::get(addr, path) {
                            Ok(response) if response.status == 200 => None,
                            Ok(response) => Some(format!("status {}", response.status)),
                            Err(e) => Some(format!("{:?}: {e}", e.kind())),
                        };
                        let end = Instant::now();
                        outcomes.lock().unwrap().push(Outcome { start, end, error });
                    }
                })
            })
            .collect();
        Recorder {
            stop,
            outcomes,
            threads,
        }
    }

    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

/// Seconds since midnight UTC of a log line's timestamp (`2026-01-02T03:04:05.123456Z`).
pub(crate) fn log_time_of_day(line: &str) -> f64 {
    let time = line
        .split_whitespace()
        .next()
        .and_then(|stamp| stamp.split_once('T'))
        .map(|(_, time)| time.trim_end_matches('Z'))
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

fn time_of_day(at: SystemTime) -> f64 {
    (at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()) % 86_400.0
}

/// A small xorshift: the victims need only vary, not be unpredictable.
struct Dice(u64);

impl Dice {
    fn pick(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn random_sigkills_under_load_fail_only_the_requests_in_flight_on_the_victim() {
    const WORKERS: usize = 4;
    let duration = Duration::from_secs(if soak() { 30 } else { 5 });
    let demo = demo_bin();
    // A worker that lived 100 ms is started again at once: the test measures respawns,
    // not the crash-loop backoff (which would, rightly, slow them down).
    let steward = Steward::start(
        &["--workers", "4", "--respawn-reset-after", "100ms"],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    // Requests that take a while, so a kill has requests in flight to break.
    let load = Recorder::start(steward.port(), 4, "/slow?ms=20");

    let mut dice = Dice(u64::from(std::process::id()) | 1);
    let mut kills = Vec::new();
    let until = Instant::now() + duration;
    while Instant::now() < until {
        let workers = children_of(steward.pid());
        if !workers.is_empty() {
            let victim = workers[dice.pick(workers.len())];
            let (before, wall) = (Instant::now(), SystemTime::now());
            if kill(victim, Signal::SIGKILL).is_ok() {
                kills.push((victim, before, Instant::now(), wall));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let outcomes = load.finish();

    assert!(!is_gone(steward.pid()), "the master died");
    // Every victim was seen to die and its slot served again; respawn latency is the
    // time from the kill to the slot's next READY=1 as the master logged it (the first
    // replacement may itself be a victim before it is ready: then a later one's).
    let mut latencies_ms = Vec::new();
    for (victim, _, _, wall) in &kills {
        let (at, exited) =
            steward
                .log
                .wait_event_from(0, "worker-crashed", &[("pid", &victim.to_string())]);
        let worker = field(&exited, "worker");
        let (at, _) = steward
            .log
            .wait_event_from(at, "worker-started", &[("worker", &worker)]);
        let (_, ready) = steward
            .log
            .wait_event_from(at, "worker-ready", &[("worker", &worker)]);
        let seconds = (log_time_of_day(&ready) - time_of_day(*wall)).rem_euclid(86_400.0);
        latencies_ms.push(seconds * 1000.0);
    }
    latencies_ms.sort_by(f64::total_cmp);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    println!(
        "chaos: {} kills in {duration:?}, {} requests, {} failed; respawn (kill to ready) \
         median {:.1} ms, max {:.1} ms",
        kills.len(),
        outcomes.len(),
        failed.len(),
        latencies_ms[latencies_ms.len() / 2],
        latencies_ms[latencies_ms.len() - 1],
    );

    // A failure is only allowed for a request that was in flight when a worker died.
    for outcome in &failed {
        assert!(
            kills
                .iter()
                .any(|(_, before, after, _)| outcome.start <= *after && outcome.end >= *before),
            "a request failed with no kill while it ran: {:?}",
            outcome.error
        );
    }
    // The load was real: several requests per kill (about 30 on an idle machine).
    assert!(
        outcomes.len() > 3 * kills.len(),
        "the load sent only {} requests for {} kills",
        outcomes.len(),
        kills.len()
    );

    // Afterwards the full set of workers serves again, and nothing fails.
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    while children_of(steward.pid()).len() != WORKERS {
        assert!(
            Instant::now() < deadline,
            "the workers were not all replaced"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..20 {
        assert_eq!(steward.get("/").unwrap().status, 200);
    }
}
