//! steward-demo: the bundled demo worker of steward.
//!
//! A small HTTP/1.1 server that takes its listening sockets the systemd
//! socket-activation way (`LISTEN_FDS`), tells the master when it is ready
//! (`NOTIFY_SOCKET`) and, on SIGTERM, drains: it stops accepting at once but
//! finishes every request already in flight, so a reload drops nothing.
//! The integration tests of steward drive this binary.

/// Writes one line to stderr with a single write(2): steward and its other workers share
/// the pipe, and a line written in pieces (as `eprintln!` may do) interleaves with theirs.
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }};
}

mod exit;
mod http;
mod listener;
mod serve;
mod shared;

use std::env;
use std::os::fd::RawFd;
use std::process;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::exit::die;
use crate::listener::Listener;
use crate::shared::{notify, start_heartbeat, Shared};

struct Options {
    listen: Vec<String>,
    boot: Duration,
    notify: bool,
    max_requests: Option<u64>,
}

const USAGE: &str =
    "usage: steward-demo [--listen HOST:PORT | --listen unix:PATH]... [--boot-ms N] [--no-notify] [--max-requests N]";

fn parse_args() -> Options {
    let mut opts = Options {
        listen: Vec::new(),
        boot: Duration::ZERO,
        notify: true,
        max_requests: None,
    };
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .unwrap_or_else(|| die(2, format!("{flag} needs a value\n{USAGE}")))
        };
        match flag.as_str() {
            "--listen" => opts.listen.push(value()),
            "--boot-ms" => {
                let v = value();
                let ms = v
                    .parse()
                    .unwrap_or_else(|_| die(2, format!("--boot-ms: not a number: {v}")));
                opts.boot = Duration::from_millis(ms);
            }
            "--no-notify" => opts.notify = false,
            "--max-requests" => {
                let v = value();
                let n = v
                    .parse()
                    .unwrap_or_else(|_| die(2, format!("--max-requests: not a number: {v}")));
                opts.max_requests = Some(n);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                process::exit(0)
            }
            _ => die(2, format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    opts
}

/// Blocks the stop signals, before any thread exists so that every thread inherits
/// the mask and the signals are only ever delivered through the signalfd.
fn block_stop_signals() -> SigSet {
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        mask.add(sig);
    }
    if let Err(e) = mask.thread_block() {
        die(1, format!("cannot block signals: {e}"));
    }
    mask
}

/// Tells the master this worker is ready (unless `--no-notify`) and says where it serves.
fn announce(opts: &Options, listeners: &[Listener], shared: &Shared) {
    if opts.notify && env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = notify(b"READY=1") {
            log!("steward-demo: cannot send READY=1: {e}");
        }
    }
    let addrs: Vec<String> = listeners.iter().map(Listener::describe).collect();
    log!(
        "steward-demo: {} serving on {} (fds: {})",
        shared.who(),
        addrs.join(", "),
        env::var("LISTEN_FDNAMES").unwrap_or_else(|_| "-".into())
    );
}

fn main() {
    // First, before this process opens anything: what we were handed.
    let startup_fds: Vec<RawFd> = listener::open_fds();
    let mask = block_stop_signals();
    let opts = parse_args();
    let listeners = listener::listeners(&opts.listen, &startup_fds, USAGE);
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .unwrap_or_else(|e| die(1, format!("signalfd: {e}")));
    let mut shared = Shared::from_env(startup_fds);
    shared.max_requests = opts.max_requests;
    let shared = Arc::new(shared);
    serve::boot(opts.boot, &sigfd, &shared);
    announce(&opts, &listeners, &shared);
    start_heartbeat(&shared);
    serve::serve(&listeners, &sigfd, &shared);
    serve::drain(listeners, &sigfd, &shared)
}
