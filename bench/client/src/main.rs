//! A closed-loop HTTP client for the reload benchmark.
//!
//! `CONNECTIONS` threads each send `GET /` on a new connection, wait for the whole
//! answer and send the next, recording every request: when it started and ended, and
//! how it ended (200, another status, refused, reset, timeout). Meanwhile it triggers
//! `RELOADS` reloads, one every `PERIOD_MS`, and notes when each was triggered. The app
//! answers with `X-Boot` (when its process imported the app), so a response is from
//! the new generation when its process booted after the reload was triggered.
//!
//! At the end it prints one JSON object: counts, failures by kind, latency percentiles
//! in steady state and during reloads, each reload's completion time (trigger to the
//! first answer from the new generation after the last one from the old), and the
//! client's own CPU time per request.
//!
//! ```text
//! steward-bench-client ADDR CONNECTIONS WARMUP_MS RELOADS PERIOD_MS TRIGGER
//! TRIGGER: signal:SIG:PID | fifo:PATH:BYTES
//! steward-bench-client ADDR load SECONDS:CONNECTIONS[,SECONDS:CONNECTIONS...]
//! ```
//!
//! The `load` form triggers nothing: it runs a schedule of fixed-duration steps (one
//! step is a fixed-duration run, several a ramp) and reports by step (see `load.rs`).

mod load;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Ok,
    Status(u16),
    Refused,
    Reset,
    Timeout,
    Other,
}

#[derive(Clone, Copy)]
struct Record {
    start_us: u64,
    end_us: u64,
    outcome: Outcome,
    /// When the answering process imported the app, ns since the epoch (0: unknown).
    boot_ns: u64,
}

struct Reload {
    at_us: u64,
    epoch_ns: u64,
}

fn epoch_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn classify(error: &std::io::Error) -> Outcome {
    use std::io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => Outcome::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => Outcome::Reset,
        TimedOut | WouldBlock => Outcome::Timeout,
        _ => Outcome::Other,
    }
}

/// What a response said: its status, and the `X-Boot` and `X-Pid` headers (0: absent).
struct Answer {
    status: u16,
    boot_ns: u64,
    pid: u32,
}

fn header(text: &str, wanted: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case(wanted).then(|| value.trim().parse().ok())?
    })
}

fn one_request(addr: SocketAddr) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::with_capacity(512);
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(eof)?;
    Ok(Answer {
        status,
        boot_ns: header(&text, "x-boot").unwrap_or(0),
        pid: header(&text, "x-pid").unwrap_or(0) as u32,
    })
}

fn trigger(spec: &str) {
    if let Some(rest) = spec.strip_prefix("signal:") {
        let (signal, pid) = rest.split_once(':').expect("signal:SIG:PID");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid)
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    } else if let Some(rest) = spec.strip_prefix("fifo:") {
        let (path, bytes) = rest.rsplit_once(':').expect("fifo:PATH:BYTES");
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes.as_bytes()))
            .expect("write the master FIFO");
    } else {
        panic!("unknown trigger {spec}");
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn latency_json(latencies_us: &mut [u64]) -> String {
    latencies_us.sort_unstable();
    format!(
        "{{\"n\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        latencies_us.len(),
        percentile(latencies_us, 50.0),
        percentile(latencies_us, 99.0),
        latencies_us.last().map_or(f64::NAN, |v| *v as f64 / 1000.0),
    )
}

fn cpu_time_us() -> u64 {
    // utime + stime of this process, from /proc (std has no getrusage).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000 // USER_HZ is 100 on Linux
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [addr, mode, schedule] = &args[..] {
        if mode == "load" {
            return load::run(addr.parse().expect("ADDR"), schedule);
        }
    }
    let [addr, connections, warmup_ms, reloads, period_ms, spec] = &args[..] else {
        eprintln!("usage: steward-bench-client ADDR CONNECTIONS WARMUP_MS RELOADS PERIOD_MS TRIGGER");
        std::process::exit(2);
    };
    let addr: SocketAddr = addr.parse().expect("ADDR");
    let connections: usize = connections.parse().expect("CONNECTIONS");
    let warmup = Duration::from_millis(warmup_ms.parse().expect("WARMUP_MS"));
    let reloads: usize = reloads.parse().expect("RELOADS");
    let period = Duration::from_millis(period_ms.parse().expect("PERIOD_MS"));

    let origin = Instant::now();
    let since = move |t: Instant| t.duration_since(origin).as_micros() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let cpu_before = cpu_time_us();
    let threads: Vec<_> = (0..connections)
        .map(|_| {
            let (stop, records) = (stop.clone(), records.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::with_capacity(100_000);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let result = one_request(addr);
                    let end = Instant::now();
                    let (outcome, boot_ns) = match result {
                        Ok(a) if a.status == 200 => (Outcome::Ok, a.boot_ns),
                        Ok(a) => (Outcome::Status(a.status), a.boot_ns),
                        Err(e) => (classify(&e), 0),
                    };
                    mine.push(Record {
                        start_us: since(start),
                        end_us: since(end),
                        outcome,
                        boot_ns,
                    });
                }
                records.lock().unwrap().extend(mine);
            })
        })
        .collect();

    std::thread::sleep(warmup);
    let mut events = Vec::new();
    for _ in 0..reloads {
        events.push(Reload {
            at_us: since(Instant::now()),
            epoch_ns: epoch_ns(),
        });
        trigger(spec);
        std::thread::sleep(period);
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let cpu_us = cpu_time_us() - cpu_before;
    let end_us = since(Instant::now());
    let mut records = records.lock().unwrap().clone();
    records.sort_by_key(|r| r.end_us);
    report(&records, &events, warmup, period, cpu_us, end_us);
}

/// Each reload's window: from its trigger to the first new-generation answer that ends
/// after the last old-generation answer (or the next trigger, if none came). Returns
/// the windows, the completion times of the reloads that completed, and how many did not.
fn reload_windows(records: &[Record], events: &[Reload], end_us: u64) -> (Vec<(u64, u64)>, Vec<u64>, usize) {
    let mut windows = Vec::new();
    let mut completions = Vec::new();
    let mut incomplete = 0;
    for (i, event) in events.iter().enumerate() {
        let next = events.get(i + 1).map_or(end_us, |e| e.at_us);
        let after: Vec<&Record> = records
            .iter()
            .filter(|r| r.end_us >= event.at_us && r.end_us < next && r.outcome == Outcome::Ok)
            .collect();
        let last_old = after
            .iter()
            .filter(|r| r.boot_ns < event.epoch_ns)
            .map(|r| r.end_us)
            .max()
            .unwrap_or(event.at_us);
        match after
            .iter()
            .find(|r| r.boot_ns >= event.epoch_ns && r.end_us >= last_old)
        {
            Some(first_new) => {
                completions.push(first_new.end_us - event.at_us);
                windows.push((event.at_us, first_new.end_us));
            }
            None => {
                incomplete += 1;
                windows.push((event.at_us, next));
            }
        }
    }
    (windows, completions, incomplete)
}

/// The longest time in which no answer at all was completed, over the whole run, and
/// each gap over 50 ms: where it began, from the last trigger before it, and how long.
fn answer_gaps(counted: &[&Record], events: &[Reload]) -> (u64, Vec<String>) {
    let mut answered: Vec<u64> = counted
        .iter()
        .filter(|r| r.outcome == Outcome::Ok)
        .map(|r| r.end_us)
        .collect();
    answered.sort_unstable();
    let max_gap_us = answered.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let gaps: Vec<String> = answered
        .windows(2)
        .filter(|w| w[1] - w[0] > 50_000)
        .take(20)
        .map(|w| {
            let trigger = events.iter().rev().find(|e| e.at_us <= w[0]).map_or(0, |e| e.at_us);
            let ms = |us: u64| us as f64 / 1000.0;
            format!("[{:.1},{:.1}]", ms(w[0] - trigger), ms(w[1] - w[0]))
        })
        .collect();
    (max_gap_us, gaps)
}

fn report(
    records: &[Record],
    events: &[Reload],
    warmup: Duration,
    period: Duration,
    cpu_us: u64,
    end_us: u64,
) {
    let (windows, completions, incomplete) = reload_windows(records, events, end_us);
    let warmup_us = warmup.as_micros() as u64 / 2; // the first half warms the app up
    let in_reload = |r: &Record| {
        windows
            .iter()
            .any(|(from, to)| r.start_us <= *to && r.end_us >= *from)
    };
    let counted: Vec<&Record> = records.iter().filter(|r| r.start_us >= warmup_us).collect();
    let count = |kind: fn(&Outcome) -> bool| counted.iter().filter(|r| kind(&r.outcome)).count();
    let mut steady = Vec::new();
    let mut reloading = Vec::new();
    for r in counted.iter().filter(|r| r.outcome == Outcome::Ok) {
        let latency = r.end_us - r.start_us;
        if in_reload(r) {
            reloading.push(latency)
        } else {
            steady.push(latency)
        }
    }
    let mut sorted = completions.clone();
    sorted.sort_unstable();
    let (max_gap_us, gaps) = answer_gaps(&counted, events);
    let ms = |us: u64| us as f64 / 1000.0;
    let failures: Vec<String> = counted
        .iter()
        .filter(|r| r.outcome != Outcome::Ok)
        .take(20)
        .map(|r| format!("\"{:?} at {:.1} ms\"", r.outcome, ms(r.start_us)))
        .collect();
    println!(
        concat!(
            "{{\"requests\":{},\"ok\":{},\"non200\":{},\"refused\":{},\"reset\":{},",
            "\"timeout\":{},\"other\":{},\"steady\":{},\"reloading\":{},",
            "\"reloads\":{},\"incomplete\":{},\"completion_ms\":{{\"p50\":{:.1},\"max\":{:.1},\"all\":[{}]}},",
            "\"max_gap_ms\":{:.1},\"gaps_after_trigger_ms\":[{}],\"period_ms\":{},\"client_cpu_us_per_request\":{:.1},\"wall_s\":{:.1},\"first_failures\":[{}]}}"
        ),
        counted.len(),
        count(|o| *o == Outcome::Ok),
        count(|o| matches!(o, Outcome::Status(_))),
        count(|o| *o == Outcome::Refused),
        count(|o| *o == Outcome::Reset),
        count(|o| *o == Outcome::Timeout),
        count(|o| *o == Outcome::Other),
        latency_json(&mut steady),
        latency_json(&mut reloading),
        events.len(),
        incomplete,
        sorted.get(sorted.len().saturating_sub(1) / 2).map_or(f64::NAN, |v| ms(*v)),
        sorted.last().map_or(f64::NAN, |v| ms(*v)),
        completions.iter().map(|v| format!("{:.1}", ms(*v))).collect::<Vec<_>>().join(","),
        ms(max_gap_us),
        gaps.join(","),
        period.as_millis(),
        cpu_us as f64 / records.len().max(1) as f64,
        ms(end_us) / 1000.0,
        failures.join(","),
    );
}
