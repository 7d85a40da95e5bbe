//! A process under test: steward, a program that embeds its master, or a worker run on
//! its own; its log, its sockets, its workers; stopped with everything it started.

use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{children_of, field, get, record_fields, steward_bin, Log, Response};

/// How long a test waits for anything before it fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A process under test, its stderr read line by line into [`Steward::log`]; killed,
/// with its present children, when dropped.
#[derive(Debug)]
pub struct Steward {
    child: Child,
    /// What it wrote on stderr so far.
    pub log: Log,
}

impl Steward {
    /// Starts `steward ARGS -- COMMAND` with one TCP listener on `127.0.0.1:0` (first in
    /// `args` order, so it is fd 3); [`Steward::port`] says which port it got.
    pub fn start(args: &[&str], command: &[&str]) -> Steward {
        Self::start_env(&[], args, command)
    }

    /// [`Steward::start`] with extra environment variables for steward and its workers.
    pub fn start_env(env: &[(&str, &str)], args: &[&str], command: &[&str]) -> Steward {
        let mut cmd = Command::new(steward_bin());
        cmd.envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--")
            .args(command);
        Self::spawn(cmd)
    }

    /// Starts a prepared command (steward itself, a shell that execs it, another
    /// program), stdin from /dev/null, stderr into the log.
    pub fn spawn(mut cmd: Command) -> Steward {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A binary a test just copied (upgrade tests) can be busy for a moment: another
        // test thread forking during the copy holds the writable descriptor until its exec.
        let deadline = Instant::now() + DEADLINE;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    assert!(Instant::now() < deadline, "the binary stays busy");
                    std::thread::sleep(Duration::from_millis(10));
                }
                spawned => break spawned.expect("start the process under test"),
            }
        };
        let log = Log::default();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.push(line);
            }
            sink.close();
        });
        Steward { child, log }
    }

    /// Its pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// The master's sockets as its first `master-started` record gives them (waiting for
    /// it): (name, address) in worker fd order, the address as bound (`127.0.0.1:41234`,
    /// `unix:/run/app.sock`).
    pub fn listening(&self) -> Vec<(String, String)> {
        listening(&self.log.wait_event("master-started", &[]))
    }
}

/// The sockets a `master-started` record names (its `listen` field): (name, address) in
/// worker fd order. For a master whose log is not its stderr (daemonized, say).
pub fn listening(record: &str) -> Vec<(String, String)> {
    let listen = record_fields(record)
        .into_iter()
        .find(|(k, _)| k == "listen")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no listen= in {record:?}"));
    listen
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|socket| {
            let (name, address) = socket
                .split_once('=')
                .unwrap_or_else(|| panic!("no NAME=ADDRESS in {socket:?}"));
            (name.to_owned(), address.to_owned())
        })
        .collect()
}

impl Steward {
    /// The address of the socket named `name` (see [`Steward::listening`]).
    pub fn address(&self, name: &str) -> String {
        let listening = self.listening();
        listening
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no socket named {name} in {listening:?}"))
    }

    /// Where the stats server listens, as `master-started` says (`stats` field):
    /// `127.0.0.1:41234` or `unix:PATH`.
    pub fn stats_address(&self) -> String {
        let record = self.log.wait_event("master-started", &[]);
        let stats = crate::field(&record, "stats");
        assert_ne!(stats, "none", "no stats server in {record:?}");
        stats
    }

    /// The port of the master's first TCP socket on 127.0.0.1.
    pub fn port(&self) -> u16 {
        let listening = self.listening();
        listening
            .iter()
            .find_map(|(_, a)| a.strip_prefix("127.0.0.1:")?.parse().ok())
            .unwrap_or_else(|| panic!("no socket on 127.0.0.1 in {listening:?}"))
    }

    /// The port of the TCP socket named `name`.
    pub fn port_of(&self, name: &str) -> u16 {
        let address = self.address(name);
        address
            .parse::<SocketAddr>()
            .unwrap_or_else(|_| panic!("{name} is no TCP socket: {address}"))
            .port()
    }

    /// Waits until generation `g` is ready (every worker of it ready).
    pub fn wait_generation_ready(&self, generation: u64) {
        self.log.wait_event(
            "generation-ready",
            &[("generation", &generation.to_string())],
        );
    }

    /// The pids of the workers of `generation` started so far, by worker id.
    pub fn worker_pids(&self, generation: u64) -> Vec<(usize, Pid)> {
        self.log
            .events("worker-started", &[("generation", &generation.to_string())])
            .iter()
            .map(|l| {
                (
                    field(l, "worker").parse().unwrap(),
                    Pid::from_raw(field(l, "pid").parse().unwrap()),
                )
            })
            .collect()
    }

    /// [`Steward::worker_pids`], asserting that there are `count` of them: a loop over
    /// them cannot pass on an empty list.
    pub fn workers(&self, generation: u64, count: usize) -> Vec<(usize, Pid)> {
        let workers = self.worker_pids(generation);
        assert_eq!(
            workers.len(),
            count,
            "workers of generation {generation}: {workers:?}; log:\n{}",
            self.log.text()
        );
        workers
    }

    /// Waits for it to exit, at most `limit`; then, briefly, for the rest of its output
    /// (unless something it started still holds its stderr), so that [`Steward::log`] has
    /// every line it wrote.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.log.wait_closed(Duration::from_secs(2));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}; log:\n{}",
                self.pid(),
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then [`Steward::wait_exit`] within the [`DEADLINE`].
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(DEADLINE)
    }

    /// Asserts that steward refused to start: it exits 1, and its log has a line with
    /// every fragment (the error naming what is wrong). Returns that line.
    pub fn expect_start_failure(&mut self, fragments: &[&str]) -> String {
        assert_eq!(self.wait_exit(DEADLINE).code(), Some(1));
        self.log.wait_for(fragments)
    }

    /// Sends `GET /slow?ms=MS` from a thread and returns once the demo worker logged it
    /// (it must run with STEWARD_DEMO_LOG_REQUESTS=1): the request is then in flight.
    pub fn request_in_flight(&self, ms: u64) -> std::thread::JoinHandle<std::io::Result<Response>> {
        let addr = self.addr();
        let path = format!("/slow?ms={ms}");
        let from = self.log.len();
        let request = std::thread::spawn(move || get(addr, &path));
        self.log.wait_from(from, &["request GET /slow"]);
        request
    }

    /// The address of [`Steward::port`].
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port()))
    }

    /// Sends a GET on a new connection to [`Steward::port`].
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        get(self.addr(), path)
    }
}

impl Drop for Steward {
    fn drop(&mut self) {
        // Only the master's present children: their pids cannot be reused before the
        // master reaps them. A pid from an old log line may belong to anyone by now.
        if self.child.try_wait().ok().flatten().is_none() {
            for worker in children_of(self.pid()) {
                let _ = kill(worker, Signal::SIGKILL);
            }
        }
        let pid = self.pid();
        let killed = matches!(self.child.try_wait(), Ok(None));
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed master leaves its notify socket behind; a later master with the same
        // pid that drops to another user at once could not replace it.
        if killed {
            let _ =
                std::fs::remove_file(std::env::temp_dir().join(format!("steward.{pid}.notify")));
        }
    }
}
