//! The probe against real processes: Python's blocking accept, asyncio (epoll), poll and
//! select, a descendant, a process that listens late, Node when it is installed. Each
//! child gets the listening socket as its stdin (fd 0), so its descriptor number differs
//! from the test's, and runs in a process group of its own, killed whole at the end (a
//! shell's child must not outlive the test, holding the socket and the test's output).

use std::{
    net::TcpListener,
    os::{
        fd::{AsFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use steward_probe::{socket_inode, How, Observation, Probe};

/// A child that inherited a listening socket as its stdin; killed when dropped.
struct Server {
    child: Child,
    probe: Probe,
    _listener: TcpListener,
}

impl Server {
    fn start(program: &str, args: &[&str]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let probe = Probe::new(vec![socket_inode(listener.as_fd()).unwrap()]);
        let socket: OwnedFd = listener.try_clone().unwrap().into();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::from(socket))
            .process_group(0)
            .spawn()
            .unwrap();
        Server {
            child,
            probe,
            _listener: listener,
        }
    }

    fn python(code: &str) -> Server {
        Server::start("python3", &["-c", code])
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Checks until the answer is not NotYet, or 10 s pass.
    fn settled(&self) -> Observation {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen = self.probe.check(self.pid());
            if seen != Observation::NotYet || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn waits_by(&self) -> How {
        match self.settled() {
            Observation::Waiting { how, .. } => how,
            other => panic!("expected the server to wait for connections, saw {other:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

const SOCKET: &str = "import socket, sys; s = socket.socket(fileno=0); ";

#[test]
fn a_blocking_accept_is_seen() {
    let server = Server::python(&format!("{SOCKET}s.accept()"));
    assert_eq!(server.waits_by(), How::Accept);
}

#[test]
fn an_asyncio_server_is_seen_in_its_epoll_set() {
    let code = format!(
        "{SOCKET}import asyncio\n\
         async def main():\n    await asyncio.start_server(lambda r, w: None, sock=s)\n    await asyncio.sleep(60)\n\
         asyncio.run(main())"
    );
    let server = Server::python(&code);
    assert_eq!(server.waits_by(), How::Epoll);
}

#[test]
fn a_poll_loop_is_seen_in_the_set_it_waits_on() {
    let code = format!(
        "{SOCKET}import selectors\nsel = selectors.PollSelector()\nsel.register(s, selectors.EVENT_READ)\nsel.select(60)"
    );
    let server = Server::python(&code);
    assert_eq!(server.waits_by(), How::Poll);
}

#[test]
fn a_select_loop_is_seen_in_its_read_set() {
    let code = format!("{SOCKET}import select\nselect.select([s], [], [], 60)");
    let server = Server::python(&code);
    assert_eq!(server.waits_by(), How::Select);
}

#[test]
fn a_descendant_that_accepts_counts_for_its_ancestor() {
    let code = format!("{SOCKET}s.accept()");
    // No exec: the shell stays the parent of the process that accepts.
    let server = Server::start("/bin/sh", &["-c", &format!("python3 -c '{code}'; true")]);
    match server.settled() {
        Observation::Waiting { pid, how } => {
            assert_eq!(how, How::Accept);
            assert_ne!(pid, server.pid(), "the shell itself does not accept");
        }
        other => panic!("expected the shell's child to accept, saw {other:?}"),
    }
}

#[test]
fn a_server_is_not_waiting_until_it_reaches_its_accept() {
    let dir = std::env::temp_dir().join(format!("steward-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gate = dir.join("gate");
    let _ = std::fs::remove_file(&gate);
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Blocked opening the FIFO (the app "loading") until the test opens the other end.
    let code = format!(
        "{SOCKET}open({:?}).read(); s.accept()",
        gate.to_str().unwrap()
    );
    let server = Server::python(&code);
    // It cannot reach its accept before the FIFO has a writer, wherever it is now.
    assert_eq!(server.probe.check(server.pid()), Observation::NotYet);
    std::fs::write(&gate, "go").unwrap();
    assert_eq!(server.waits_by(), How::Accept);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_socket_in_accept_is_not_ours() {
    let server = Server::python(&format!("{SOCKET}s.accept()"));
    assert_eq!(server.waits_by(), How::Accept);
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let probe = Probe::new(vec![socket_inode(other.as_fd()).unwrap()]);
    assert_eq!(probe.check(server.pid()), Observation::NotYet);
}

#[test]
fn an_exited_process_is_gone() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    child.wait().unwrap();
    assert_eq!(Probe::new(vec![1]).check(pid), Observation::Gone);
}

#[test]
fn a_node_server_is_seen_in_its_epoll_set() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipped: node is not installed");
        return;
    }
    let server = Server::start(
        "node",
        &[
            "-e",
            "require('net').createServer(() => {}).listen({ fd: 0 })",
        ],
    );
    assert_eq!(server.waits_by(), How::Epoll);
}

#[test]
fn python_socketserver_serve_forever_is_seen_in_its_poll_set() {
    // socketserver (and http.server on it) waits in selectors.PollSelector between
    // requests, with a 0.5 s timeout: it is inside poll nearly all the time.
    let code = format!(
        "{SOCKET}import socketserver\n\
         class Handler(socketserver.BaseRequestHandler):\n    def handle(self): pass\n\
         server = socketserver.TCPServer(s.getsockname(), Handler, bind_and_activate=False)\n\
         server.socket.close()\nserver.socket = s\nserver.serve_forever()"
    );
    let server = Server::python(&code);
    assert_eq!(server.waits_by(), How::Poll);
}

#[test]
fn a_zombie_is_gone() {
    // Exited, not reaped yet: /proc/PID is still there, with no descriptors.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let probe = Probe::new(vec![1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = probe.check(pid);
    while seen == Observation::NotYet && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        seen = probe.check(pid);
    }
    assert!(
        std::fs::metadata(format!("/proc/{pid}")).is_ok(),
        "still a zombie"
    );
    assert_eq!(seen, Observation::Gone);
    child.wait().unwrap();
}

/// Set to a pid by [`another_users_process_is_denied`] for the helper below, which runs
/// as an unprivileged user.
const DENIED_TARGET: &str = "STEWARD_PROBE_DENIED_TARGET";

#[test]
#[ignore = "a helper: another_users_process_is_denied runs it as nobody"]
fn denied_helper() {
    let target: i32 = std::env::var(DENIED_TARGET).unwrap().parse().unwrap();
    let seen = Probe::new(vec![1]).check(Pid::from_raw(target));
    println!("observation: {seen:?}");
}

#[test]
fn another_users_process_is_denied() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root, to run the probe as another user (nobody)");
        return;
    }
    let server = Server::python(&format!("{SOCKET}s.accept()"));
    assert_eq!(server.waits_by(), How::Accept);
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "denied_helper", "--ignored", "--nocapture"])
        .env(DENIED_TARGET, server.pid().to_string())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("observation: Denied"),
        "as nobody, a root process must be Denied; the helper said:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Python opening files until it has about 20 descriptors, then `then`.
fn twenty_fds(then: &str) -> String {
    format!(
        "{SOCKET}import os\nkeep = [os.pipe() for _ in range(8)] + [open('/dev/null') for _ in range(2)]\n{then}"
    )
}

/// The mean time of one check, over many, each answering `waiting` or NotYet.
fn time_checks(server: &Server, waiting: bool) -> Duration {
    let rounds = 200;
    let started = Instant::now();
    for _ in 0..rounds {
        let seen = server.probe.check(server.pid());
        assert_eq!(
            matches!(seen, Observation::Waiting { .. }),
            waiting,
            "{seen:?}"
        );
        assert_eq!(seen == Observation::NotYet, !waiting, "{seen:?}");
    }
    started.elapsed() / rounds
}

fn descriptors_of(pid: Pid) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn one_check_is_cheap() {
    let accept = Server::python(&twenty_fds("s.accept()"));
    assert_eq!(accept.waits_by(), How::Accept);
    let epoll = Server::python(&twenty_fds(
        "import asyncio\n\
         async def main():\n    await asyncio.start_server(lambda r, w: None, sock=s)\n    await asyncio.sleep(60)\n\
         asyncio.run(main())",
    ));
    assert_eq!(epoll.waits_by(), How::Epoll);
    let poll = Server::python(&twenty_fds(
        "import selectors\nsel = selectors.PollSelector()\nsel.register(s, selectors.EVENT_READ)\nsel.select(60)",
    ));
    assert_eq!(poll.waits_by(), How::Poll);
    // The common case: a worker still starting (here: in a 60 s sleep, with a thread,
    // as an app importing). Every look is a full one, and it is repeated until ready.
    let starting = Server::python(&twenty_fds(
        "import threading, time\n\
         threading.Thread(target=time.sleep, args=(60,)).start()\n\
         time.sleep(60)",
    ));
    let ready = |server: &Server| descriptors_of(server.pid()) >= 20;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready(&starting) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (name, server, waiting) in [
        ("accept", &accept, true),
        ("epoll", &epoll, true),
        ("poll", &poll, true),
        ("not yet", &starting, false),
    ] {
        let fds = descriptors_of(server.pid());
        let each = time_checks(server, waiting);
        eprintln!("one check ({name}, {fds} descriptors): {each:?}");
        // Generous, for a loaded machine and a debug build: a regression to reading
        // much more than needed shows, scheduling noise does not.
        assert!(
            each < Duration::from_millis(5),
            "{name}: {each:?} per check"
        );
    }
}

/// A server busy with a connection it accepted (here: sleeping on it, as a sync worker
/// computing a response does) is never caught waiting, yet it serves: it holds a
/// connection whose local address is the listening socket's.
#[test]
fn a_busy_server_holding_an_accepted_connection_is_seen() {
    let code = format!("{SOCKET}c, _ = s.accept(); import time; time.sleep(60)");
    let server = Server::start("/usr/bin/python3", &["-c", &code]);
    assert_eq!(server.waits_by(), How::Accept);
    let addr = server._listener.local_addr().unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    // Out of accept, into sleep: only the accepted connection shows it serves.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match server.probe.check_serving(server.pid()) {
            Observation::Waiting {
                how: How::Accepted, ..
            } => break,
            // Still in accept, or woken and running on its way out of it.
            Observation::Waiting {
                how: How::Accept, ..
            }
            | Observation::NotYet
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => panic!("expected the accepted connection to be seen, saw {other:?}"),
        }
    }
    // A connection of another listener's is not ours.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let probe = Probe::new(vec![socket_inode(other.as_fd()).unwrap()]);
    assert_eq!(probe.check(server.pid()), Observation::NotYet);
}
