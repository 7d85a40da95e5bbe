//! Drives the real steward-demo binary over loopback.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use steward_testkit::{hand_over, socket_activated, Client, Response, Steward, SystemdSocket};

const DEMO: &str = env!("CARGO_BIN_EXE_steward-demo");
const TIMEOUT: Duration = Duration::from_secs(10);

/// A running demo; killed and reaped on drop, even when an assertion failed.
struct Demo {
    process: Steward,
    port: u16,
}

impl Demo {
    /// Starts the demo on `127.0.0.1:0`; the port it got is in its "serving on" line.
    fn start(envs: &[(&str, &str)], args: &[&str]) -> Demo {
        let mut cmd = demo_command(envs);
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let mut demo = Demo::spawn(cmd, 0);
        let line = demo.wait_line("serving on");
        let addr: SocketAddr = line
            .split("serving on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        demo.port = addr.port();
        demo
    }

    fn spawn(cmd: Command, port: u16) -> Demo {
        Demo {
            process: Steward::spawn(cmd),
            port,
        }
    }

    fn pid(&self) -> Pid {
        self.process.pid()
    }

    /// The first stderr line with `fragment`.
    fn wait_line(&self, fragment: &str) -> String {
        self.process.log.wait_for(&[fragment])
    }

    fn signal(&self, sig: Signal) {
        self.process.signal(sig);
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        self.process.wait_exit(within)
    }

    fn connect(&self) -> Client {
        Client::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).expect("connect")
    }
}

/// Requests written by hand: the demo's own view of HTTP, without the harness's
/// `Connection` header.
trait Raw {
    /// Sends `raw` as it is.
    fn raw(&mut self, raw: &str);
    /// Reads one response, which must say its Content-Length.
    fn answer(&mut self) -> Response;
    /// `GET path` with nothing but a Host header.
    fn request(&mut self, path: &str) -> Response {
        self.raw(&format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"));
        self.answer()
    }
}

impl Raw for Client {
    fn raw(&mut self, raw: &str) {
        self.send(raw).expect("write request");
    }

    fn answer(&mut self) -> Response {
        let response = self.response().expect("a response");
        assert!(
            response.header("content-length").is_some(),
            "content-length: {response:?}"
        );
        response
    }
}

fn demo_command(envs: &[(&str, &str)]) -> Command {
    with_test_env(Command::new(DEMO), envs)
}

/// A clean environment (nothing inherited from whoever runs the tests, beyond what
/// `cmd` sets itself) plus `envs`.
fn with_test_env(mut cmd: Command, envs: &[(&str, &str)]) -> Command {
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "NOTIFY_SOCKET",
        "STEWARD_WORKER_ID",
        "STEWARD_GENERATION",
    ] {
        if !cmd.get_envs().any(|(k, _)| k == var) {
            cmd.env_remove(var);
        }
    }
    cmd.env("STEWARD_DEMO_LOG_REQUESTS", "1")
        .envs(envs.iter().copied());
    cmd
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

#[test]
fn hello_names_worker_generation_and_pid() {
    let demo = Demo::start(
        &[("STEWARD_WORKER_ID", "7"), ("STEWARD_GENERATION", "3")],
        &[],
    );
    let resp = demo.connect().request("/");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(
        resp.body,
        format!("hello from worker 7 generation 3 pid {}\n", demo.pid())
    );
}

#[test]
fn keep_alive_answers_two_requests_on_one_connection() {
    let demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    let first = client.request("/");
    assert_eq!(
        (first.status, first.header("connection")),
        (200, Some("keep-alive"))
    );
    assert_eq!(
        first.body,
        format!("hello from worker - generation - pid {}\n", demo.pid())
    );
    let second = client.request("/fds");
    assert_eq!(second.status, 200);
    assert!(second.body.starts_with("0 1 2"), "fds: {:?}", second.body);
}

#[test]
fn connection_close_and_http10_are_honoured() {
    let demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    client.raw("GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(client.answer().header("connection"), Some("close"));
    client.assert_eof();

    let mut client = demo.connect();
    client.raw("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(client.answer().status, 200);
    client.assert_eof();
}

#[test]
fn bad_requests_are_rejected() {
    let demo = Demo::start(&[], &[]);
    let mut client = demo.connect();
    assert_eq!(client.request("/nope").status, 404);
    // A body is read and discarded, and the connection stays usable.
    client.raw("POST /nope HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(client.answer().status, 404);
    assert_eq!(client.request("/").status, 200);

    let mut client = demo.connect();
    client.raw("NOT A REQUEST LINE\r\n\r\n");
    assert_eq!(client.answer().status, 400);
    client.assert_eof();

    let mut client = demo.connect();
    client.raw(&format!(
        "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    ));
    assert_eq!(client.answer().status, 431);
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let notify = SystemdSocket::bind("demo-notify");
    let mut demo = Demo::start(&[("NOTIFY_SOCKET", &notify.address())], &[]);
    assert_eq!(notify.receive().text, "READY=1");
    let mut client = demo.connect();
    client.raw("GET /slow?ms=1500 HTTP/1.1\r\n\r\n");
    // The per-request log line says the request is being handled.
    demo.wait_line("request GET /slow?ms=1500");
    demo.signal(Signal::SIGTERM);

    // The stop is announced only after the listener is closed: nothing new
    // gets in, while the request in flight keeps going.
    assert_eq!(notify.receive().text, "STOPPING=1");
    assert!(
        TcpStream::connect(("127.0.0.1", demo.port)).is_err(),
        "still accepting after SIGTERM"
    );

    let resp = client.answer();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        format!("hello from worker - generation - pid {}\n", demo.pid())
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
    assert_eq!(client.request("/").status, 200);
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
    client.raw("GET /slow?ms=60000 HTTP/1.1\r\n\r\n");
    demo.wait_line("request GET /slow");
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
        .request("/notify?state=STATUS%3Dhalf%20way%0AWATCHDOG=1");
    assert_eq!((resp.status, resp.body.as_str()), (200, "sent\n"));
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STATUS=half way\nWATCHDOG=1");

    // Without NOTIFY_SOCKET (and with --no-notify nothing is sent at start).
    let quiet = Demo::start(&[], &["--no-notify"]);
    assert_eq!(
        quiet.connect().request("/notify?state=READY%3D1").status,
        502
    );
}

#[test]
fn listen_pid_of_another_process_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = demo_command(&[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")]);
    hand_over(&mut cmd, &[&listener]);
    let mut demo = Demo::spawn(cmd, 0);
    let line = demo.wait_line("LISTEN_PID");
    assert!(line.contains("LISTEN_PID=1"), "{line}");
    assert_eq!(demo.wait_exit(TIMEOUT).code(), Some(2));
}

#[test]
fn socket_activation_serves_the_inherited_socket() {
    // The socket is bound here, so there is no port race; `sh` learns the
    // pid it will keep across `exec` and sets LISTEN_PID to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cmd = with_test_env(socket_activated(DEMO, &[&listener], &["web"]), &[]);
    let demo = Demo::spawn(cmd, port);
    drop(listener);
    let line = demo.wait_line("serving on");
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
    assert_eq!(
        client.request("/fds").body,
        format!("{}\n", expected.join(" "))
    );
    assert!(client
        .request("/")
        .body
        .ends_with(&format!("pid {}\n", demo.pid())));
}
