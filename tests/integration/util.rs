//! Helpers for driving the real `steward` binary: start it, read its log as it comes,
//! talk HTTP to its workers, and make sure nothing it started outlives the test.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

pub const DEADLINE: Duration = Duration::from_secs(15);

pub fn steward_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_steward"))
}

/// steward run by a shell that leaves fd 7 open without close-on-exec, as a careless
/// parent would: for tests that nothing of it reaches a worker or a hook. Add steward's
/// arguments.
pub fn steward_with_a_leaked_fd() -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"exec 7</dev/null; exec "$@""#)
        .arg("sh")
        .arg(steward_bin());
    cmd
}

/// The demo worker, built beside steward by `cargo test --workspace`.
pub fn demo_bin() -> String {
    let path = steward_bin().with_file_name("steward-demo");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path.to_str().unwrap().to_owned()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A path for a unix socket that no other test uses.
pub fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("steward-test-{}-{name}.sock", std::process::id()))
}

/// A directory of one test's own, readable and searchable by everyone (the master may
/// run as nobody), removed when dropped: also when the test fails. A directory a mount
/// leaked into (a bind of /usr, say) is left alone rather than recursed into.
pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("steward-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    /// `name` in this directory, as a string (for arguments and config text).
    pub fn at(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// Writes `text` to `name` in this directory; its path, as [`TestDir::at`].
    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.0.join(name), text).unwrap();
        self.at(name)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if !mounts.contains(self.0.to_str().unwrap()) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The log lines of a running steward, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Log {
    fn push(&self, line: String) {
        let (lines, changed) = &*self.lines;
        lines.lock().unwrap().push(line);
        changed.notify_all();
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// Waits for the first line at or after index `from` that contains every fragment;
    /// returns its index and text. Panics with the log after the deadline.
    pub fn wait_from(&self, from: usize, fragments: &[&str]) -> (usize, String) {
        let (lines, changed) = &*self.lines;
        let deadline = Instant::now() + DEADLINE;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some((i, line)) = guard
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| fragments.iter().all(|f| l.contains(f)))
            {
                return (i, line.clone());
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no log line with {fragments:?} within {DEADLINE:?}; log:\n{}",
                guard.join("\n")
            );
            guard = changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// [`Log::wait_from`] from the first line.
    pub fn wait_for(&self, fragments: &[&str]) -> String {
        self.wait_from(0, fragments).1
    }

    /// The index of the first line with every fragment, if there is one yet.
    pub fn position(&self, fragments: &[&str]) -> Option<usize> {
        self.lines()
            .iter()
            .position(|l| fragments.iter().all(|f| l.contains(f)))
    }

    /// The number of lines so far.
    pub fn len(&self) -> usize {
        self.lines.0.lock().unwrap().len()
    }
}

/// The value of `key=` in a log line.
pub fn field(line: &str, key: &str) -> String {
    let needle = format!(" {key}=");
    let start = line
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        + needle.len();
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

/// Whether a test that needs root (switching users, namespaces, mounts, chroot,
/// mlockall) must be skipped: true, after saying so on stderr, when not root. CI runs
/// as root, so there they all run.
pub fn skip_unless_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return false;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    eprintln!("skipped: {test} needs root (it switches users, namespaces or mounts)");
    true
}

/// The port of the first socket in the `master-started` event among `log` (a daemon's
/// log file, or the lines of stderr).
pub fn bound_port_in(log: &str) -> Option<u16> {
    let line = log
        .lines()
        .find(|l| l.contains("event=\"master-started\""))?;
    let listen = field(line, "listen");
    listen.split(',').next()?.rsplit(':').next()?.parse().ok()
}

/// A steward process under test; killed, with every worker it logged, when dropped.
pub struct Steward {
    child: Child,
    pub log: Log,
    pub port: u16,
}

impl Steward {
    /// Starts `steward ARGS -- COMMAND` with one TCP listener on a free port (first in
    /// `args` order, so it is fd 3).
    pub fn start(args: &[&str], command: &[&str]) -> Steward {
        Self::start_env(&[], args, command)
    }

    /// [`Steward::start`] with extra environment variables for steward and its workers.
    /// steward binds port 0 and the test learns the port the kernel chose from the
    /// `master-started` event, so no port is ever released and bound again (a race
    /// between tests running side by side). A start that fails leaves `port` 0.
    pub fn start_env(env: &[(&str, &str)], args: &[&str], command: &[&str]) -> Steward {
        let mut cmd = Command::new(steward_bin());
        cmd.envs(env.iter().copied())
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .arg("--")
            .args(command);
        let mut steward = Self::spawn(cmd, 0);
        steward.port = steward.bound_port();
        steward
    }

    /// The port of the first socket, from the `master-started` event; 0 if steward
    /// exits (or stays silent) first.
    fn bound_port(&mut self) -> u16 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let started = self
                .log
                .lines()
                .into_iter()
                .find(|l| l.contains("event=\"master-started\""));
            if let Some(port) = started.as_deref().and_then(bound_port_in) {
                return port;
            }
            if self.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                return 0;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts a prepared command (steward itself, or a shell that execs it).
    pub fn spawn(mut cmd: Command, port: u16) -> Steward {
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
                spawned => break spawned.expect("start steward"),
            }
        };
        let log = Log::default();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.push(line);
            }
        });
        Steward { child, log, port }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Waits until generation `g` is ready (every worker of it ready).
    pub fn wait_generation_ready(&self, generation: u64) {
        self.log
            .wait_for(&["generation ready", &format!("generation={generation} ")]);
    }

    /// The pids of the workers of `generation` started so far, by worker id.
    pub fn worker_pids(&self, generation: u64) -> Vec<(usize, Pid)> {
        let generation = generation.to_string();
        self.log
            .lines()
            .iter()
            .filter(|l| l.contains("worker started") && field(l, "generation") == generation)
            .map(|l| {
                (
                    field(l, "worker").parse().unwrap(),
                    Pid::from_raw(field(l, "pid").parse().unwrap()),
                )
            })
            .collect()
    }

    /// Waits for steward to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "steward did not exit within {limit:?}; log:\n{}",
                self.log.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let path = format!("/slow?ms={ms}");
        let request = std::thread::spawn(move || get(addr, &path));
        self.log.wait_for(&["request GET /slow"]);
        request
    }

    /// Sends a GET on a new connection.
    pub fn get(&self, path: &str) -> std::io::Result<Response> {
        get(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), path)
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

/// The processes whose parent is `parent`.
pub fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent.as_raw())
            })
        })
        .map(Pid::from_raw)
        .collect()
}

/// Whether a process is gone (a zombie counts as gone: it runs no code).
pub fn is_gone(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Polls until `pid` is gone, at most [`DEADLINE`].
pub fn wait_gone(pid: Pid) {
    let deadline = Instant::now() + DEADLINE;
    while !is_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still runs after {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The environment of a running process.
pub fn environ(pid: Pid) -> std::collections::HashMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// The server said `Connection: close`.
    pub closes: bool,
}

impl Response {
    /// The generation in a demo hello body.
    pub fn generation(&self) -> u64 {
        let words: Vec<&str> = self.body.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| *w == "generation")
            .expect("a hello body");
        words[at + 1].parse().unwrap()
    }
}

/// A minimal HTTP/1.1 client over one connection, reusable for keep-alive.
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream: BufReader::new(stream),
        })
    }

    /// Sends a GET and reads the whole response.
    pub fn get(&mut self, path: &str, close: bool) -> std::io::Result<Response> {
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            self.stream.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n"
        )?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let broken =
            |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned());
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line)? == 0 {
            return Err(broken("connection closed before a response"));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| broken("bad status line"))?;
        let (mut length, mut closes) = (0usize, false);
        loop {
            let mut header = String::new();
            if self.stream.read_line(&mut header)? == 0 {
                return Err(broken("connection closed in the headers"));
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => {
                        length = value.trim().parse().map_err(|_| broken("bad length"))?
                    }
                    "connection" => closes = value.trim().eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            closes,
        })
    }
}

/// One GET on a new connection, closed after the response.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    Client::connect(addr)?.get(path, true)
}

/// A stand-in for systemd's notify socket: binds a datagram socket steward is pointed
/// at with NOTIFY_SOCKET, and reads what it sends, fds included.
pub struct SystemdSocket {
    socket: std::os::unix::net::UnixDatagram,
    pub path: PathBuf,
}

/// One notification: its text and the fds that came with it.
pub struct Notification {
    pub text: String,
    pub fds: Vec<std::os::fd::OwnedFd>,
}

impl SystemdSocket {
    pub fn bind(name: &str) -> SystemdSocket {
        let path = socket_path(name);
        let _ = std::fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        SystemdSocket { socket, path }
    }

    /// The value for NOTIFY_SOCKET.
    pub fn address(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    /// The next notification; panics when none comes within the deadline.
    pub fn receive(&self) -> Notification {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::AsRawFd;

        let mut buffer = [0u8; 4096];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("a notification within the deadline");
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received.into_iter().map(|fd| {
                    steward_sys::adopt_inherited_socket(fd).expect("steward sends only sockets")
                }));
            }
        }
        let n = message.bytes;
        Notification {
            text: String::from_utf8_lossy(&buffer[..n]).into_owned(),
            fds,
        }
    }

    /// Notifications until one contains `fragment`; returns them all, that one last.
    pub fn receive_until(&self, fragment: &str) -> Vec<Notification> {
        let mut seen = Vec::new();
        loop {
            let notification = self.receive();
            let done = notification.text.contains(fragment);
            seen.push(notification);
            if done {
                return seen;
            }
        }
    }
}

impl Drop for SystemdSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `steward ARGS` (a client command such as `reload --wait`) to completion.
pub fn steward_client(args: &[&str]) -> std::process::Output {
    Command::new(steward_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run steward")
}

/// `steward reload --wait` through the master's control socket at `control`.
pub fn reload_wait(control: impl AsRef<Path>) -> std::process::Output {
    let control = control
        .as_ref()
        .to_str()
        .expect("a UTF-8 control socket path");
    steward_client(&["reload", "--wait", "--control-socket", control])
}
