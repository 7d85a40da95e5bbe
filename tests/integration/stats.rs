//! The stats server as its clients see it: uwsgitop on a terminal, the JSON and the
//! Prometheus text over HTTP (promtool checks the metrics), a unix socket only its
//! user can open, and clients that try to hold the master (a thousand idle
//! connections, garbage, slow readers).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        net::UnixStream,
    },
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use steward_testkit::{demo_bin, get, steward_client, Steward, Terminal, TestDir, DEADLINE};

fn stats_http(workers: &str) -> (Steward, SocketAddr) {
    let demo = demo_bin();
    let args = [
        "--workers",
        workers,
        "--stats",
        "127.0.0.1:0",
        "--stats-http",
    ];
    let steward = Steward::start(&args, &[&demo]);
    let addr = steward.stats_address().parse().unwrap();
    steward.wait_generation_ready(1);
    (steward, addr)
}

fn json(addr: SocketAddr) -> Value {
    let response = get(addr, "/").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_str(&response.body).unwrap()
}

fn metrics(addr: SocketAddr) -> String {
    let response = get(addr, "/metrics").unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

fn venv_bin(name: &str) -> PathBuf {
    std::env::var_os("READINESS_TEST_VENV")
        .map_or_else(|| "/var/cache/steward-test-venv".into(), PathBuf::from)
        .join("bin")
        .join(name)
}

#[test]
fn uwsgitop_shows_every_worker_of_a_running_steward() {
    let uwsgitop = venv_bin("uwsgitop");
    if !uwsgitop.exists() || !Terminal::available() {
        eprintln!(
            "skipped: no uwsgitop at {} or no tmux (.ci/run installs both)",
            uwsgitop.display()
        );
        return;
    }
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "3", "--stats", "127.0.0.1:0"], &[&demo]);
    let stats = steward.stats_address();
    steward.wait_generation_ready(1);
    let workers = steward.workers(1, 3);
    let terminal = Terminal::start("uwsgitop", 150, 12, &[uwsgitop.to_str().unwrap(), &stats]);
    let rows = |screen: &str| {
        workers.iter().all(|(id, pid)| {
            screen.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.len() > 7
                    && words[0] == id.to_string()
                    && words[2] == pid.to_string()
                    && words[7] == "idle"
            })
        })
    };
    let screen = terminal.wait_for("a row per worker", rows);
    eprintln!("uwsgitop:\n{screen}");
    assert!(screen.starts_with("uwsgi-steward-"), "{screen}");
    assert!(
        screen.contains(&format!("masterpid: {}", steward.pid())),
        "{screen}"
    );
    assert!(screen.contains("WID") && screen.contains("RSS") && screen.contains("ReSpwn"));
    terminal.keys(&["q"]);
    terminal.wait_for("uwsgitop to quit", |_| terminal.exited());
}

#[test]
fn stats_http_serves_the_json_and_metrics_that_promtool_accepts() {
    let (mut steward, addr) = stats_http("2");
    let workers = steward.workers(1, 2);
    let doc = json(addr);
    let pids: Vec<i64> = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(
        pids,
        workers
            .iter()
            .map(|(_, p)| i64::from(p.as_raw()))
            .collect::<Vec<_>>()
    );
    assert_eq!(doc["pid"], i64::from(steward.pid().as_raw()));
    assert_eq!(doc["workers"][0]["status"], "idle");
    assert!(doc["workers"][0]["rss"].as_u64().unwrap() > 0);
    assert_eq!(doc["steward"]["schema"], 1);
    assert_eq!(doc["steward"]["sockets"][0]["queue"], 0);
    assert!(doc["steward"]["sockets"][0]["backlog"].as_u64().unwrap() > 0);
    assert!(doc.get("environ").is_none() && !doc.to_string().contains("PATH="));

    // A crash, then a reload: both are counted.
    kill(workers[0].1, Signal::SIGKILL).unwrap();
    steward.log.wait_event("worker-crashed", &[("worker", "1")]);
    steward.wait_generation_ready(1);
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    let text = metrics(addr);
    assert_eq!(sample(&text, r#"steward_workers{state="ready"}"#), 2.0);
    assert_eq!(
        sample(&text, r#"steward_worker_restarts_total{cause="signal"}"#),
        1.0
    );
    assert_eq!(sample(&text, r#"steward_reloads_total{outcome="ok"}"#), 1.0);
    assert_eq!(sample(&text, "steward_reload_duration_seconds_count"), 1.0);
    let socket = format!(
        r#"{{socket="listen0",address="127.0.0.1:{}"}}"#,
        steward.port()
    );
    assert_eq!(
        sample(&text, &format!("steward_listen_queue_length{socket}")),
        0.0
    );
    assert_eq!(
        sample(&text, &format!("steward_listen_queue_max_length{socket}")),
        1024.0
    );
    assert!(sample(&text, "process_resident_memory_bytes") > 0.0);
    assert!(sample(&text, "process_open_fds") > 3.0);
    promtool_accepts(&text);

    assert_eq!(get(addr, "/nothing").unwrap().status, 404);
    let ready = get(addr, "/ready").unwrap();
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    assert_eq!(get(addr, "/alive").unwrap().status, 200);
    assert!(steward.stop().success());
}

/// `promtool check metrics` (Debian's prometheus) reads `text` without a complaint.
fn promtool_accepts(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("skipped promtool: not installed (.ci/run installs Debian's prometheus)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

#[test]
fn a_unix_stats_socket_is_its_users_only_and_answers_each_connection_once() {
    let dir = TestDir::new("stats-unix");
    let path = dir.at("stats.sock");
    let control = dir.at("control.sock");
    let demo = demo_bin();
    let stats = format!("unix:{path}");
    let args = ["--stats", &stats, "--control-socket", &control];
    let mut steward = Steward::start(&args, &[&demo]);
    assert_eq!(steward.stats_address(), stats);
    steward.wait_generation_ready(1);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for _ in 0..2 {
        let doc = unix_document(&path);
        assert_eq!(doc["workers"].as_array().unwrap().len(), 1);
    }
    // steward status --json is the same document, versioned.
    let out = steward_client(&["status", "--json", "--control-socket", &control]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["schema"], 1);
    assert_eq!(status["workers"][0]["state"], "ready");
    assert!(status["workers"][0]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(steward.stop().success());
    assert!(
        !std::path::Path::new(&path).exists(),
        "the stats socket is left behind"
    );
}

#[test]
fn a_thousand_idle_connections_garbage_and_slow_readers_do_not_hold_the_master() {
    let (mut steward, addr) = stats_http("1");
    let rss = |addr| sample(&metrics(addr), "process_resident_memory_bytes");
    let before = rss(addr);
    // A thousand connections that never send anything.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    // Garbage, and a request larger than any the server reads.
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.write_all(b"\x00\x01\x02 not http\r\n\r\n").unwrap();
    let mut huge = TcpStream::connect(addr).unwrap();
    let _ = huge.write_all(&[b'x'; 64 * 1024]);
    // Slow readers: ask and never read.
    let slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            s
        })
        .collect();
    // Still served, at once: the workers and the stats.
    assert_eq!(steward.get("/").unwrap().status, 200);
    let after = rss(addr);
    assert!(
        after - before < 8e6,
        "the master grew from {before} to {after} bytes"
    );
    let mut answer = String::new();
    garbage.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = garbage.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    // The idle ones are closed: by the cap as newer ones came, or by the timeout.
    let mut last = idle.into_iter().last().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(last.read(&mut [0u8; 16]).unwrap_or(0), 0);
    drop((slow, huge));
    assert!(steward.stop().success());
}

#[test]
fn steward_top_shows_the_workers_and_reloads_and_resizes_on_keys() {
    if !Terminal::available() {
        eprintln!("skipped: no tmux (.ci/run installs it)");
        return;
    }
    let dir = TestDir::new("stats-top");
    let control = dir.at("control.sock");
    let demo = demo_bin();
    let mut steward = Steward::start(&["--workers", "2", "--control-socket", &control], &[&demo]);
    steward.wait_generation_ready(1);
    let workers = steward.workers(1, 2);
    let bin = steward_testkit::steward_bin();
    let command = [
        bin.to_str().unwrap(),
        "top",
        "--interval",
        "0.2",
        "--control-socket",
        &control,
    ];
    let top = Terminal::start("top", 130, 14, &command);
    let row = |screen: &str, id: &str, generation: &str, pid: Option<String>| {
        screen.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.len() >= 8
                && words[0] == id
                && words[1] == generation
                && pid.as_ref().is_none_or(|p| words[2] == p)
                && words[3] == "ready"
        })
    };
    let screen = top.wait_for("both workers", |s| {
        workers
            .iter()
            .all(|(id, pid)| row(s, &id.to_string(), "1", Some(pid.to_string())))
    });
    assert!(
        screen.contains(&format!("pid {} — running — generation 1", steward.pid())),
        "{screen}"
    );
    assert!(
        screen.contains("listen queue: 127.0.0.1:") && screen.contains("0/1024"),
        "{screen}"
    );
    assert!(
        screen.contains("ID   GEN   PID      STATE      AGE        RSS       CPU%   RESTARTS"),
        "{screen}"
    );

    top.keys(&["+"]);
    top.wait_for("a third worker", |s| {
        s.contains("workers +1: ok workers=3") && row(s, "3", "1", None)
    });
    top.keys(&["r"]);
    let screen = top.wait_for("the reload", |s| {
        s.contains("last reload: generation 2 ok in")
    });
    steward
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    eprintln!("steward top:\n{screen}");
    top.keys(&["-"]);
    top.wait_for("one worker fewer", |s| {
        s.contains("workers -1: ok workers=2")
    });
    top.keys(&["c"]);
    top.wait_for("the chain reload", |s| {
        s.contains("last reload: generation 3 ok in")
    });
    steward
        .log
        .wait_event("reload-complete", &[("generation", "3")]);
    top.keys(&["q"]);
    top.wait_for("steward top to quit", |_| top.exited());
    assert!(steward.stop().success());
}

#[test]
fn a_uwsgi_ini_stats_line_opens_the_stats_server_and_check_refuses_a_bad_one() {
    let dir = TestDir::new("stats-ini");
    let ini = dir.at("app.ini");
    std::fs::write(
        &ini,
        "[uwsgi]\nprocesses = 2\nstats = 127.0.0.1:0\nstats-http = true\n",
    )
    .unwrap();
    let demo = demo_bin();
    let mut steward = Steward::start(&["--config", &ini], &[&demo]);
    let addr: SocketAddr = steward.stats_address().parse().unwrap();
    steward.wait_generation_ready(1);
    assert_eq!(
        sample(&metrics(addr), r#"steward_workers{state="ready"}"#),
        2.0
    );
    assert!(steward.stop().success());

    std::fs::write(&ini, "[uwsgi]\nstats = localhost:1717\n").unwrap();
    let out = steward_client(&["check", "--config", &ini, "--", &demo]);
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("app.ini:2") && said.contains("invalid stats address \"localhost:1717\""),
        "{said}"
    );
}

#[test]
fn the_stats_socket_can_come_from_systemd_by_name() {
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stats = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stats.local_addr().unwrap();
    let bin = steward_testkit::steward_bin();
    let mut cmd = steward_testkit::socket_activated(&bin, &[&web, &stats], &["web", "stats"]);
    cmd.args([
        "--listen",
        "web=127.0.0.1:0",
        "--stats",
        "fd:stats",
        "--stats-http",
        "--",
    ]);
    cmd.arg(demo_bin());
    let mut steward = Steward::spawn(cmd);
    drop((web, stats));
    assert_eq!(steward.stats_address(), addr.to_string());
    steward.wait_generation_ready(1);
    // The stats socket is not one of the workers' sockets.
    assert_eq!(steward.listening().len(), 1);
    assert_eq!(
        sample(&metrics(addr), r#"steward_workers{state="ready"}"#),
        1.0
    );
    assert!(steward.stop().success());
}

#[test]
fn a_unix_stats_socket_belongs_to_the_user_the_master_becomes() {
    if !steward_testkit::root_or_skip("switches uid and gid") {
        return;
    }
    let dir = TestDir::new("stats-uid");
    let path = dir.at("stats.sock");
    let stats = format!("unix:{path}");
    let args = ["--uid", "nobody", "--gid", "nogroup", "--stats", &stats];
    let steward = Steward::start(&args, &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (65534, 65534, 0o600)
    );
    let doc = unix_document(&path);
    assert_eq!(
        (doc["uid"].as_u64(), doc["gid"].as_u64()),
        (Some(65534), Some(65534))
    );
    drop(steward);
}

#[test]
fn a_worker_killed_after_its_mercy_is_counted_as_killed() {
    let args = [
        "--ready",
        "immediate",
        "--worker-reload-mercy",
        "300ms",
        "--stats",
        "127.0.0.1:0",
        "--stats-http",
    ];
    // A worker that ignores the stop signal, and says so once it does (with ready =
    // immediate, a reload at once could otherwise come before its trap).
    let worker = [
        "/bin/sh",
        "-c",
        "trap '' TERM; echo ignoring TERM; while :; do sleep 0.1; done",
    ];
    let mut steward = Steward::start(&args, &worker);
    let addr: SocketAddr = steward.stats_address().parse().unwrap();
    steward.wait_generation_ready(1);
    steward.log.wait_for(&["]: ignoring TERM"]);
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event("worker-killed", &[("generation", "1")]);
    steward
        .log
        .wait_event("reload-complete", &[("generation", "2")]);
    let text = metrics(addr);
    assert_eq!(
        sample(&text, r#"steward_worker_restarts_total{cause="killed"}"#),
        1.0
    );
    assert_eq!(
        sample(&text, r#"steward_worker_restarts_total{cause="crash"}"#),
        0.0
    );
    assert_eq!(sample(&text, r#"steward_reloads_total{outcome="ok"}"#), 1.0);
    // Its successor ignores SIGTERM too: the stop kills it after the mercy.
    assert!(steward.stop().success());
}

/// The one JSON document a unix stats socket gives a new connection.
fn unix_document(path: &str) -> Value {
    let mut text = String::new();
    UnixStream::connect(path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    serde_json::from_str(&text).unwrap()
}
