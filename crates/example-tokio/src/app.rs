//! An HTTP server that embeds the steward master (preload mode): the app is loaded
//! once in the master, each worker is a fork of it that starts its own tokio runtime,
//! serves on the socket the master bound, and drains in-flight requests on SIGTERM.
//!
//! The options come from `STEWARD_*` variables and `STEWARD_CONFIG`, as for `steward`
//! (`STEWARD_LISTEN`, default `127.0.0.1:8000`, or `unix:PATH`; it serves on the first; `STEWARD_WORKERS`; `STEWARD_LAZY_APPS`).
//! Two variables show what preloading shares and what it breaks:
//! `EXAMPLE_BALLAST_MIB=N` makes the load allocate and touch N MiB (shared by every
//! worker in preload mode, private to each under lazy-apps), and `EXAMPLE_LOAD_THREAD=1`
//! makes the load start a thread, which the master's thread guard reports.
//! `EXAMPLE_LOAD_MS=N` makes the load take N milliseconds, and `EXAMPLE_LOAD_GATE=FILE`
//! makes it wait until FILE exists (a load exactly as slow as a test wants).
//!
//! `GET /` answers one line: `greeting=WORD version=V worker=ID generation=G pid=PID
//! master=PPID loaded_by=PID ... served=N`, where `loaded_by` is the process that ran the
//! load and `served` counts this worker's earlier requests (kept by an after-request
//! hook). WORD is `hello`, or the word in the file `EXAMPLE_GREETING_FILE` names,
//! read by the load: configuration that a reload reads again.
//! `GET /slow?ms=N` answers the same after N milliseconds.
//!
//! With `worker-watchdog` (`STEWARD_WORKER_WATCHDOG`), each worker finds WATCHDOG_USEC
//! and WATCHDOG_PID as an exec'd one does, and sends WATCHDOG=1 at half the interval
//! (`WorkerContext::watchdog`); `GET /wedge` stops its heartbeats, as a wedged worker's
//! would stop, and the master aborts and replaces it. `heartbeats=N` in each answer
//! counts those sent.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use steward_master::{AfterRequest, BoxError, Builder, WorkerContext, WorkerSocket};
use steward_options::ConfigSources;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    task::JoinSet,
};
use tracing::warn;

/// Requests this worker has answered, counted by the after-request hook.
static SERVED: AtomicU64 = AtomicU64::new(0);

/// Set by `GET /wedge`: no more heartbeats.
static WEDGED: AtomicBool = AtomicBool::new(false);

/// Heartbeats this worker has sent (`heartbeats=` in each answer).
static HEARTBEATS: AtomicU64 = AtomicU64::new(0);

/// How long a stopping worker lets in-flight requests finish.
const DRAIN_FOR: Duration = Duration::from_secs(25);

/// What the load produces: here, a version and memory standing for a loaded app
/// (code, caches, models) that preloading shares between the workers.
struct App {
    version: &'static str,
    greeting: String,
    loaded_by: u32,
    ballast: Vec<u8>,
}

fn load(version: &'static str) -> Result<App, BoxError> {
    let mib: usize = match std::env::var("EXAMPLE_BALLAST_MIB") {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("EXAMPLE_BALLAST_MIB={text:?}: expected a number of MiB"))?,
        Err(_) => 0,
    };
    // A load that takes time, as a large app's does (EXAMPLE_LOAD_MS).
    if let Ok(text) = std::env::var("EXAMPLE_LOAD_MS") {
        let ms: u64 = text
            .parse()
            .map_err(|_| format!("EXAMPLE_LOAD_MS={text:?}: expected milliseconds"))?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(gate) = std::env::var_os("EXAMPLE_LOAD_GATE") {
        while !std::path::Path::new(&gate).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Non-zero bytes, so that every page is really allocated (not the shared zero page).
    let ballast = vec![0xa5u8; mib << 20];
    if std::env::var_os("EXAMPLE_LOAD_THREAD").is_some() {
        start_pool_thread()?;
    }
    Ok(App {
        version,
        greeting: greeting()?,
        loaded_by: std::process::id(),
        ballast,
    })
}

/// What a connection pool or a metrics exporter does when it starts at import time: a
/// thread that the forked workers will not have.
fn start_pool_thread() -> Result<(), BoxError> {
    let (started, running) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("app-pool".into())
        .spawn(move || {
            let _ = started.send(());
            loop {
                std::thread::sleep(Duration::from_secs(3600))
            }
        })?;
    running.recv()?;
    Ok(())
}

/// Configuration the app reads at load time: a reload in preload mode re-execs the
/// master, which reads it again; a broken file fails the reload, not the service.
fn greeting() -> Result<String, BoxError> {
    let Some(path) = std::env::var_os("EXAMPLE_GREETING_FILE") else {
        return Ok("hello".to_owned());
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("greeting file {}: {e}", path.to_string_lossy()))?;
    let word = text.trim();
    if word.is_empty() || word.contains(char::is_whitespace) {
        return Err(format!(
            "greeting file {}: expected one word, found {text:?}",
            path.to_string_lossy()
        )
        .into());
    }
    Ok(word.to_owned())
}

fn serve(app: &App, mut ctx: WorkerContext) -> Result<(), BoxError> {
    let listener = ctx
        .take_listeners()
        .into_iter()
        .next()
        .ok_or("no socket to serve on: set STEWARD_LISTEN=HOST:PORT or unix:PATH")?;
    let identity = Arc::new(identity(app, &ctx));
    // Started after fork: a runtime's threads would not survive a fork.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = Incoming::new(listener.socket)?;
        // The stop notice is a pipe that becomes readable when SIGTERM arrives.
        let stop = tokio::net::unix::pipe::Receiver::from_owned_fd(ctx.stop().fd()?)?;
        ctx.ready()?;
        let in_flight = accept_until_stop(&listener, &stop, &identity, &ctx).await;
        // Stop accepting (connections still queued go to the next generation, which
        // shares the socket), then let what is in flight finish.
        drop(listener);
        drain(in_flight).await;
        Ok::<(), BoxError>(())
    })
}

/// The first part of every answer: who answers, and what it was handed.
fn identity(app: &App, ctx: &WorkerContext) -> String {
    format!(
        "greeting={} version={} worker={} generation={} pid={} master={} loaded_by={} ballast_mib={} listen_pid={} listen_fds={} watchdog_usec={} watchdog_pid={}",
        app.greeting,
        app.version,
        ctx.id(),
        ctx.generation(),
        std::process::id(),
        std::os::unix::process::parent_id(),
        app.loaded_by,
        app.ballast.len() >> 20,
        std::env::var("LISTEN_PID").unwrap_or_default(),
        std::env::var("LISTEN_FDS").unwrap_or_default(),
        std::env::var("WATCHDOG_USEC").unwrap_or_default(),
        std::env::var("WATCHDOG_PID").unwrap_or_default(),
    )
}

/// Half the WATCHDOG_USEC given to this process, if one was (systemd's advice).
fn heartbeat_interval() -> Option<Duration> {
    let pid: u32 = std::env::var("WATCHDOG_PID").ok()?.parse().ok()?;
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (pid == std::process::id() && usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Answers each connection in a task of its own until the stop notice is readable,
/// sending heartbeats when asked for; returns the tasks still running.
async fn accept_until_stop(
    listener: &Incoming,
    stop: &tokio::net::unix::pipe::Receiver,
    identity: &Arc<String>,
    ctx: &WorkerContext,
) -> JoinSet<()> {
    let after_request: AfterRequest = ctx.after_request_hooks();
    let every = heartbeat_interval();
    let mut heartbeat = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.readable() => return in_flight,
            _ = heartbeat.tick(), if every.is_some() && !WEDGED.load(Ordering::SeqCst) => {
                match ctx.watchdog() {
                    Ok(()) => {
                        HEARTBEATS.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => warn!(error = %e, "cannot send the heartbeat"),
                }
            }
            accepted = listener.accept() => match accepted {
                Ok(connection) => {
                    let (identity, after_request) = (Arc::clone(identity), after_request.clone());
                    in_flight.spawn(async move {
                        let answered = match connection {
                            Connection::Tcp(stream) => answer(stream, &identity).await,
                            Connection::Unix(stream) => answer(stream, &identity).await,
                        };
                        if let Err(e) = answered {
                            warn!(error = %e, "request failed");
                        }
                        after_request.run();
                    });
                }
                Err(e) => warn!(error = %e, "accept failed"),
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
}

/// Lets the requests in flight finish, for at most [`DRAIN_FOR`].
async fn drain(mut in_flight: JoinSet<()>) {
    let drained = tokio::time::timeout(DRAIN_FOR, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            requests = in_flight.len(),
            "requests still running after the drain; abandoned"
        );
    }
}

/// The socket a worker serves on, TCP or unix, in the runtime.
enum Incoming {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

enum Connection {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Incoming {
    fn new(socket: WorkerSocket) -> std::io::Result<Incoming> {
        Ok(match socket {
            WorkerSocket::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                Incoming::Tcp(tokio::net::TcpListener::from_std(listener)?)
            }
            WorkerSocket::Unix(listener) => {
                listener.set_nonblocking(true)?;
                Incoming::Unix(tokio::net::UnixListener::from_std(listener)?)
            }
        })
    }

    async fn accept(&self) -> std::io::Result<Connection> {
        match self {
            Incoming::Tcp(listener) => Ok(Connection::Tcp(listener.accept().await?.0)),
            Incoming::Unix(listener) => Ok(Connection::Unix(listener.accept().await?.0)),
        }
    }
}

/// Reads one request and answers it, with `Connection: close`: a client never reuses
/// a connection that a draining worker would close under it.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    identity: &str,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request_line = String::from_utf8_lossy(&head);
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path.split_once('?') {
        None if path == "/" => ("200 OK", String::new()),
        None if path == "/wedge" => {
            WEDGED.store(true, Ordering::SeqCst);
            ("200 OK", "heartbeats stopped\n".to_owned())
        }
        Some(("/slow", query)) => match query.strip_prefix("ms=").map(str::parse::<u64>) {
            Some(Ok(ms)) => {
                tracing::info!(ms, "slow request started");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ("200 OK", String::new())
            }
            _ => ("400 Bad Request", "expected /slow?ms=N\n".to_owned()),
        },
        _ => ("404 Not Found", format!("no such path: {path}\n")),
    };
    let body = if body.is_empty() {
        format!(
            "{identity} served={} heartbeats={}\n",
            SERVED.load(Ordering::SeqCst),
            HEARTBEATS.load(Ordering::SeqCst)
        )
    } else {
        body
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

pub fn main(version: &'static str) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let sources = ConfigSources::from_process(None, Vec::new());
    let mut options = match sources.load_without_command() {
        Ok(config) => config.options,
        Err(e) => {
            eprintln!("steward-example-tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    if options.listen.is_empty() {
        options
            .listen
            .push("127.0.0.1:8000".parse().expect("a valid address"));
    }
    let outcome = Builder::new(options)
        .load(move || load(version))
        .worker(serve)
        .after_request(|| {
            SERVED.fetch_add(1, Ordering::SeqCst);
        })
        .run();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("steward-example-tokio: {e}");
            ExitCode::FAILURE
        }
    }
}
