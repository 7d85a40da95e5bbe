//! Load with no trigger: a schedule of steps, each SECONDS long with CONNECTIONS
//! closed-loop connections (`30:8` is a fixed-duration run, `5:1,20:8,20:1` a ramp).
//!
//! One thread per connection of the largest step; thread `i` sends requests while the
//! current step has more than `i` connections and idles otherwise, so a ramp changes
//! the offered concurrency without starting threads mid-run. Every request is kept
//! (start, end, outcome, answering pid) and at the end one JSON object is printed:
//! failures by kind, p50/p99/max latency over the run and per step, the distinct pids
//! that answered (a recycled worker shows up as a new pid, under any server), and the
//! worst gap: the longest time in which requests were outstanding and none was answered.

use crate::{classify, latency_json, one_request, Outcome};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

#[derive(Clone, Copy)]
struct Request {
    start_us: u64,
    end_us: u64,
    outcome: Outcome,
    pid: u32,
}

struct Step {
    seconds: f64,
    connections: usize,
}

fn parse(schedule: &str) -> Vec<Step> {
    schedule
        .split(',')
        .map(|step| {
            let (seconds, connections) = step.split_once(':').expect("SECONDS:CONNECTIONS");
            Step {
                seconds: seconds.parse().expect("SECONDS"),
                connections: connections.parse().expect("CONNECTIONS"),
            }
        })
        .collect()
}

/// One connection's loop: requests while it is among the active ones, until `stop`.
fn connection(
    index: usize,
    addr: SocketAddr,
    origin: Instant,
    active: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<Request> {
    let since = |t: Instant| t.duration_since(origin).as_micros() as u64;
    let mut mine = Vec::with_capacity(50_000);
    while !stop.load(Ordering::Relaxed) {
        if index >= active.load(Ordering::Relaxed) {
            // Idle in this step; 1 ms is short next to any step and costs nothing.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let start = Instant::now();
        let result = one_request(addr);
        let end = Instant::now();
        let (outcome, pid) = match result {
            Ok(a) if a.status == 200 => (Outcome::Ok, a.pid),
            Ok(a) => (Outcome::Status(a.status), a.pid),
            Err(e) => (classify(&e), 0),
        };
        mine.push(Request {
            start_us: since(start),
            end_us: since(end),
            outcome,
            pid,
        });
    }
    mine
}

pub fn run(addr: SocketAddr, schedule: &str) {
    let steps = parse(schedule);
    let most = steps.iter().map(|s| s.connections).max().unwrap_or(0);
    let origin = Instant::now();
    let active = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let all = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..most)
        .map(|i| {
            let (active, stop, all) = (active.clone(), stop.clone(), all.clone());
            std::thread::spawn(move || {
                let mine = connection(i, addr, origin, active, stop);
                all.lock().unwrap().extend(mine);
            })
        })
        .collect();
    // Each step's start, µs since `origin`; the last entry is the end of the run.
    let mut bounds = Vec::new();
    for step in &steps {
        bounds.push(origin.elapsed().as_micros() as u64);
        active.store(step.connections, Ordering::Relaxed);
        std::thread::sleep(Duration::from_secs_f64(step.seconds));
    }
    bounds.push(origin.elapsed().as_micros() as u64);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let mut requests = all.lock().unwrap().clone();
    requests.sort_by_key(|r| r.end_us);
    report(&requests, &steps, &bounds);
}

/// The longest interval between two consecutive answers during which a request was
/// outstanding (started before its end, not finished before its start): (start, length).
fn worst_gap(requests: &[Request]) -> (u64, u64) {
    let ends: Vec<u64> = requests
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| r.end_us)
        .collect();
    let mut by_start: Vec<(u64, u64)> = requests.iter().map(|r| (r.start_us, r.end_us)).collect();
    by_start.sort_unstable();
    let outstanding = |from: u64, to: u64| {
        by_start
            .iter()
            .take_while(|(start, _)| *start < to)
            .any(|(_, end)| *end > from)
    };
    let mut candidates: Vec<(u64, u64)> = ends.windows(2).map(|w| (w[0], w[1] - w[0])).collect();
    candidates.sort_unstable_by_key(|(_, len)| std::cmp::Reverse(*len));
    candidates
        .into_iter()
        .find(|(from, len)| outstanding(*from, from + len))
        .unwrap_or((0, 0))
}

fn failures_json(requests: &[Request]) -> String {
    let count = |kind: fn(&Outcome) -> bool| requests.iter().filter(|r| kind(&r.outcome)).count();
    format!(
        "\"ok\":{},\"non200\":{},\"refused\":{},\"reset\":{},\"timeout\":{},\"other\":{}",
        count(|o| *o == Outcome::Ok),
        count(|o| matches!(o, Outcome::Status(_))),
        count(|o| *o == Outcome::Refused),
        count(|o| *o == Outcome::Reset),
        count(|o| *o == Outcome::Timeout),
        count(|o| *o == Outcome::Other),
    )
}

/// Latency and failures of the requests started within [from, to).
fn part_json(requests: &[Request], from: u64, to: u64) -> String {
    let part: Vec<Request> = requests
        .iter()
        .filter(|r| r.start_us >= from && r.start_us < to)
        .copied()
        .collect();
    let mut latencies: Vec<u64> = part
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| r.end_us - r.start_us)
        .collect();
    format!(
        "{{\"requests\":{},{},\"latency\":{}}}",
        part.len(),
        failures_json(&part),
        latency_json(&mut latencies)
    )
}

fn report(requests: &[Request], steps: &[Step], bounds: &[u64]) {
    let mut pids: Vec<u32> = requests.iter().map(|r| r.pid).filter(|p| *p != 0).collect();
    pids.sort_unstable();
    pids.dedup();
    let (gap_at, gap_len) = worst_gap(requests);
    let per_step: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "{{\"seconds\":{},\"connections\":{},\"from_s\":{:.3},\"result\":{}}}",
                s.seconds,
                s.connections,
                bounds[i] as f64 / 1e6,
                part_json(requests, bounds[i], bounds[i + 1])
            )
        })
        .collect();
    let overall = part_json(requests, 0, u64::MAX);
    println!(
        "{{\"all\":{},\"steps\":[{}],\"distinct_pids\":{},\"worst_gap_ms\":{:.1},\"worst_gap_at_s\":{:.3},\"wall_s\":{:.3}}}",
        overall,
        per_step.join(","),
        pids.len(),
        gap_len as f64 / 1000.0,
        gap_at as f64 / 1e6,
        bounds.last().copied().unwrap_or(0) as f64 / 1e6,
    );
}
