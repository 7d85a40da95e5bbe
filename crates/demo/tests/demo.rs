//! Drives the real steward-demo binary over loopback.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const DEMO: &str = env!("CARGO_BIN_EXE_steward-demo");
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running demo; killed and reaped on drop, even when an assertion failed.
struct Demo {
    child: Child,
    stderr: Receiver<String>,
    port: u16,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts the demo on a free 127.0.0.1 port, retrying if another
    /// process grabs the port between our probe and the demo's bind.
    fn start(envs: &[(&str, &str)], args: &[&str]) -> Demo {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut cmd = demo_command(envs);
            cmd.arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .args(args);
            let demo = Demo::spawn(cmd, port);
            match demo.wait_line(|l| l.contains("serving on") || l.contains("cannot listen")) {
                Some(line) if line.contains("serving on") => return demo,
                Some(line) if line.contains("Address already in use") => continue,
                other => panic!("demo did not start: {other:?}"),
            }
        }
        panic!("no free port after 5 tries");
    }

    fn spawn(mut cmd: Command, port: u16) -> Demo {
        let mut child = cmd.spawn().expect("spawn steward-demo");
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[demo] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            stderr: rx,
            port,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The next stderr line matching `want`; `None` if the demo exited first.
    fn wait_line(&self, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if want(&line) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for a line from the demo")
                }
            }
        }
    }

    fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("kill");
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "demo still running after {within:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }
}

fn demo_command(envs: &[(&str, &str)]) -> Command {
    with_test_env(Command::new(DEMO), envs)
}

/// A clean environment (nothing inherited from whoever runs the tests)
/// plus `envs`, and stderr captured.
fn with_test_env(mut cmd: Command, envs: &[(&str, &str)]) -> Command {
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "STEWARD_WORKER_ID",
        "STEWARD_GENERATION",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("STEWARD_DEMO_LOG_REQUESTS", "1")
        .envs(envs.iter().copied());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Makes `fd` the child's fd 3, as a socket-activating master does.
#[allow(unsafe_code)]
fn hand_over_as_fd3(cmd: &mut Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child between fork and exec. It
    // only calls dup2/fcntl, which are async-signal-safe, and allocates
    // nothing. `fd` stays open in the parent until spawn() returns because
    // the caller keeps the listener alive across it.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep FD_CLOEXEC; clear it instead.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r == -1 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
}

/// Descriptors of this test process without FD_CLOEXEC: every child
/// inherits them (the harness may have been started with some).
fn leaked_to_children() -> Vec<RawFd> {
    const O_CLOEXEC: u32 = 0o2000000;
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .map(str::trim);
            flags
                .and_then(|f| u32::from_str_radix(f, 8).ok())
                .is_some_and(|f| f & O_CLOEXEC == 0)
        })
        .collect()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn send(&mut self, raw: &str) {
        self.reader
            .get_mut()
            .write_all(raw.as_bytes())
            .expect("write request");
    }

    fn get(&mut self, path: &str) -> Response {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.response()
    }

    fn response(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .expect("content-length")
            .1
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("body");
        Response {
            status,
            headers,
            body: String::from_utf8(body).unwrap(),
        }
    }

    /// Asserts the server closed the connection (EOF, not a hang).
    fn assert_eof(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes after close: {rest:?}"),
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

/// A datagram socket standing in for the master's NOTIFY_SOCKET.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "steward-demo-test-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(TIMEOUT)).unwrap();
        NotifySocket { sock, path }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).expect("no notify datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn hello_names_worker_generation_and_pid() {
    let demo = Demo::start(
        &[("STEWARD_WORKER_ID", "7"), ("STEWARD_GENERATION", "3")],
        &[],
    );
    let resp = demo.connect().get("/");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(
        resp.body,
        format!("hello from worker 7 generation 3 pid {}\n", demo.child.id())
    );
}

#[test]
fn keep_alive_answers_two_requests_on_one_connection() {
    let demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    let first = client.get("/");
    assert_eq!(
        (first.status, first.header("connection")),
        (200, Some("keep-alive"))
    );
    assert_eq!(
        first.body,
        format!("hello from worker - generation - pid {}\n", demo.child.id())
    );
    let second = client.get("/fds");
    assert_eq!(second.status, 200);
    assert!(second.body.starts_with("0 1 2"), "fds: {:?}", second.body);
}

#[test]
fn connection_close_and_http10_are_honoured() {
    let demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    client.send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response().header("connection"), Some("close"));
    client.assert_eof();

    let mut client = demo.connect();
    client.send("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(client.response().status, 200);
    client.assert_eof();
}

#[test]
fn bad_requests_are_rejected() {
    let demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    assert_eq!(client.get("/nope").status, 404);
    // A body is read and discarded, and the connection stays usable.
    client.send("POST /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(client.response().status, 404);
    assert_eq!(client.get("/").status, 200);

    let mut client = demo.connect();
    client.send("NOT A REQUEST LINE\r\n\r\n");
    assert_eq!(client.response().status, 400);
    client.assert_eof();

    let mut client = demo.connect();
    client.send(&format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    ));
    assert_eq!(client.response().status, 431);
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let notify = NotifySocket::new();
    let mut demo = Demo::start(&[("NOTIFY_SOCKET", notify.path.to_str().unwrap())], &[]);
    assert_eq!(notify.recv(), "READY=1");
    let mut client = demo.connect();
    client.send("GET /slow?ms=1500 HTTP/1.1\r\n\r\n");
    // The per-request log line says the request is being handled.
    demo.wait_line(|l| l.contains("request GET /slow?ms=1500"))
        .expect("request logged");
    demo.signal(Signal::SIGTERM);

    // The stop is announced only after the listener is closed: nothing new
    // gets in, while the request in flight keeps going.
    assert_eq!(notify.recv(), "STOPPING=1");
    assert!(
        TcpStream::connect(("127.0.0.1", demo.port)).is_err(),
        "still accepting after SIGTERM"
    );

    let resp = client.response();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        format!("hello from worker - generation - pid {}\n", demo.child.id())
    );
    assert_eq!(resp.header("connection"), Some("close"));
    client.assert_eof();
    let status = demo.wait_exit(TIMEOUT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn sigterm_closes_an_idle_keep_alive_connection() {
    let mut demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    assert_eq!(client.get("/").status, 200);
    let stopped = Instant::now();
    demo.signal(Signal::SIGTERM);
    client.assert_eof();
    let status = demo.wait_exit(Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(stopped.elapsed() < Duration::from_secs(3));
}

#[test]
fn sigint_exits_at_once_even_with_a_request_in_flight() {
    let mut demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    client.send("GET /slow?ms=60000 HTTP/1.1\r\n\r\n");
    demo.wait_line(|l| l.contains("request GET /slow"))
        .expect("request logged");
    demo.signal(Signal::SIGINT);
    let status = demo.wait_exit(Duration::from_secs(3));
    assert_eq!(status.code(), Some(0), "{status}");
    client.assert_eof();
}

#[test]
fn notify_route_and_abstract_notify_socket() {
    // Abstract address (`@name`), as steward's master may use.
    let name = format!("steward-demo-test-{}", std::process::id());
    let sock = {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixDatagram::bind_addr(&addr).unwrap()
    };
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    let demo = Demo::start(
        &[("NOTIFY_SOCKET", &format!("@{name}"))],
        &["--boot-ms", "300"],
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "READY=1 before the boot time"
    );

    let resp = demo
        .connect()
        .get("/notify?state=STATUS%3Dhalf%20way%0AWATCHDOG=1");
    assert_eq!((resp.status, resp.body.as_str()), (200, "sent\n"));
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STATUS=half way\nWATCHDOG=1");

    // Without NOTIFY_SOCKET (and with --no-notify nothing is sent at start).
    let quiet = Demo::start(&[], &["--no-notify"]);
    assert_eq!(quiet.connect().get("/notify?state=READY%3D1").status, 502);
}

#[test]
fn listen_pid_of_another_process_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = demo_command(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")]);
    hand_over_as_fd3(&mut cmd, listener.as_raw_fd());
    let mut demo = Demo::spawn(cmd, 0);
    let line = demo
        .wait_line(|l| l.contains("LISTEN_PID"))
        .expect("a message about LISTEN_PID");
    assert!(line.contains("LISTEN_PID=1"), "{line}");
    assert_eq!(demo.wait_exit(TIMEOUT).code(), Some(2));
}

#[test]
fn socket_activation_serves_the_inherited_socket() {
    // The socket is bound here, so there is no port race; `sh` learns the
    // pid it will keep across `exec` and sets LISTEN_PID to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut sh = Command::new("/bin/sh");
    sh.arg("-c")
        .arg(r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0""#)
        .arg(DEMO);
    let mut cmd = with_test_env(sh, &[("LISTEN_FDS", "1"), ("LISTEN_FDNAMES", "web")]);
    hand_over_as_fd3(&mut cmd, listener.as_raw_fd());
    let demo = Demo::spawn(cmd, port);
    drop(listener);
    let line = demo
        .wait_line(|l| l.contains("serving on"))
        .expect("demo did not start");
    assert!(
        line.contains(&format!("127.0.0.1:{port}")) && line.contains("(fds: web)"),
        "{line}"
    );

    // Exactly stdio, the socket, and whatever the test runner itself was
    // started with and lets its children inherit.
    let mut expected = leaked_to_children();
    expected.extend([0, 1, 2, 3]);
    expected.sort_unstable();
    expected.dedup();
    let expected: Vec<String> = expected.iter().map(i32::to_string).collect();
    let mut client = demo.connect();
    assert_eq!(client.get("/fds").body, format!("{}\n", expected.join(" ")));
    assert!(client
        .get("/")
        .body
        .ends_with(&format!("pid {}\n", demo.child.id())));
}
