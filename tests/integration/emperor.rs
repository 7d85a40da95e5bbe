//! `steward emperor DIR`: vassals (steward masters over the demo worker) started,
//! reloaded, refused, stopped and restarted as their files come, change and go.

use std::process::Command;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use steward_testkit::{
    demo_bin, field, listening, steward_bin, steward_client, wait_gone, Steward, TestDir,
};

use crate::Load;

/// A vassal's configuration: the demo worker on a port of its own.
pub(crate) fn vassal(workers: usize) -> String {
    format!(
        "listen = [\"127.0.0.1:0\"]\nworkers = {workers}\ncommand = [\"{}\"]\n",
        demo_bin()
    )
}

/// `steward emperor DIR` with a short restart throttle.
pub(crate) fn emperor(dir: &TestDir, extra: &[&str]) -> Steward {
    let mut cmd = Command::new(steward_bin());
    cmd.args(["emperor", &dir.at(""), "--emperor-throttle", "100"])
        .args(extra);
    Steward::spawn(cmd)
}

/// The `master-started` record of vassal `name`'s master started at or after log line
/// `from`, once the vassal is ready.
pub(crate) fn vassal_master(emperor: &Steward, from: usize, name: &str) -> String {
    let (_, started) = emperor
        .log
        .wait_event_from(from, "vassal-started", &[("vassal", name)]);
    let pid = field(&started, "pid");
    let (_, master) = emperor
        .log
        .wait_event_from(from, "master-started", &[("pid", &pid)]);
    emperor
        .log
        .wait_event_from(from, "vassal-ready", &[("vassal", name), ("pid", &pid)]);
    master
}

/// The pid and port of vassal `name`'s master started at or after log line `from`,
/// once it is ready.
pub(crate) fn vassal_ready(emperor: &Steward, from: usize, name: &str) -> (Pid, u16) {
    let master = vassal_master(emperor, from, name);
    let pid = field(&master, "pid");
    let port = listening(&master)[0]
        .1
        .strip_prefix("127.0.0.1:")
        .unwrap()
        .parse()
        .unwrap();
    (Pid::from_raw(pid.parse().unwrap()), port)
}

/// Waits for vassal `name` to be ready again after a reload asked at log line `from`.
fn reloaded(emperor: &Steward, from: usize, name: &str) {
    let (at, _) = emperor
        .log
        .wait_event_from(from, "vassal-reloading", &[("vassal", name)]);
    emperor
        .log
        .wait_event_from(at, "vassal-ready", &[("vassal", name)]);
}

#[test]
fn vassals_follow_their_files_under_load_without_a_failed_request() {
    let dir = TestDir::new("emperor-files");
    dir.write("a.toml", &vassal(2));
    dir.write("b.toml", &vassal(1));
    let mut emperor = emperor(&dir, &[]);
    let (a_pid, a_port) = vassal_ready(&emperor, 0, "a.toml");
    let (b_pid, b_port) = vassal_ready(&emperor, 0, "b.toml");
    emperor.log.wait_event("emperor-ready", &[]);
    let (load_a, load_b) = (Load::start(a_port), Load::start(b_port));

    // Touched: a graceful reload of the same master.
    let from = emperor.log.len();
    let file = std::fs::File::options()
        .append(true)
        .open(dir.at("a.toml"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    drop(file);
    reloaded(&emperor, from, "a.toml");

    // Edited: reloaded with the new text (three workers).
    let from = emperor.log.len();
    dir.write("b.toml", &vassal(3));
    reloaded(&emperor, from, "b.toml");
    emperor
        .log
        .wait_event_from(from, "generation-ready", &[("workers", "3")]);

    // Broken: refused with file:line, and b serves on.
    let from = emperor.log.len();
    dir.write("b.toml", &format!("{}workers = \"many\"\n", vassal(3)));
    let (_, refused) = emperor
        .log
        .wait_event_from(from, "vassal-refused", &[("vassal", "b.toml")]);
    assert!(refused.contains("b.toml:4"), "{refused}");

    // Added and removed while the others serve.
    let from = emperor.log.len();
    dir.write(
        "c.yaml",
        &format!(
            "listen: [\"127.0.0.1:0\"]\nworkers: 1\ncommand: [\"{}\"]\n",
            demo_bin()
        ),
    );
    let (c_pid, c_port) = vassal_ready(&emperor, from, "c.yaml");
    assert_eq!(
        steward_testkit::get((std::net::Ipv4Addr::LOCALHOST, c_port).into(), "/")
            .unwrap()
            .status,
        200
    );
    std::fs::remove_file(dir.at("c.yaml")).unwrap();
    emperor
        .log
        .wait_event_from(from, "vassal-exited", &[("vassal", "c.yaml")]);
    wait_gone(c_pid);

    let (sent_a, failed_a) = load_a.finish();
    let (sent_b, failed_b) = load_b.finish();
    assert!(
        failed_a.is_empty(),
        "{} of {sent_a} to a failed: {failed_a:?}",
        failed_a.len()
    );
    assert!(
        failed_b.is_empty(),
        "{} of {sent_b} to b failed: {failed_b:?}",
        failed_b.len()
    );
    assert!(
        sent_a > 50 && sent_b > 50,
        "too little load: {sent_a}, {sent_b}"
    );
    // Neither master was replaced: reloads are in place.
    assert_eq!(
        emperor
            .log
            .events("vassal-started", &[("vassal", "a.toml")])
            .len(),
        1
    );
    assert_eq!(
        emperor
            .log
            .events("vassal-started", &[("vassal", "b.toml")])
            .len(),
        1
    );

    assert!(emperor.stop().success());
    emperor.log.wait_event("emperor-stopped", &[]);
    wait_gone(a_pid);
    wait_gone(b_pid);
}

#[test]
fn a_dying_vassal_is_restarted_with_backoff_and_reported() {
    let dir = TestDir::new("emperor-deaths");
    dir.write("a.toml", &vassal(1));
    let mut emperor = emperor(&dir, &[]);
    let (pid, _) = vassal_ready(&emperor, 0, "a.toml");
    kill(pid, Signal::SIGKILL).unwrap();
    let (from, died) = emperor
        .log
        .wait_event_from(0, "vassal-died", &[("vassal", "a.toml")]);
    assert_eq!(field(&died, "restart_in_ms"), "100");
    let (pid, _) = vassal_ready(&emperor, from, "a.toml");

    // A configuration whose worker exits at once: the reload it causes fails and the
    // vassal serves on; killed, it starts with it, and dies again and again.
    let from = emperor.log.len();
    std::fs::write(
        dir.at("a.toml"),
        "listen = [\"127.0.0.1:0\"]\ncommand = [\"/bin/false\"]\n",
    )
    .unwrap();
    emperor.log.wait_event_from(from, "reload-failed", &[]);
    kill(pid, Signal::SIGKILL).unwrap();
    let (_, keeps) =
        emperor
            .log
            .wait_event_from(from, "vassal-keeps-dying", &[("vassal", "a.toml")]);
    assert_eq!(field(&keeps, "deaths"), "3");
    let waits: Vec<String> = emperor
        .log
        .events("vassal-died", &[("vassal", "a.toml")])
        .iter()
        .map(|l| field(l, "restart_in_ms"))
        .collect();
    assert_eq!(waits[..4], ["100", "100", "200", "400"], "{waits:?}");
    wait_gone(pid);
    assert!(emperor.stop().success());
}

/// `hook-PHASE = exec:...` lines that append "PHASE PID-OF-THE-HOOK'S-RUNNER EXTRA" to
/// `record` (the shell's parent is the process that runs the hook).
pub(crate) fn recording_hooks(record: &str, phases: &[(&str, &str)]) -> String {
    phases
        .iter()
        .map(|(phase, extra)| {
            format!("hook-{phase} = ['exec:echo {phase} $PPID {extra} >> {record}']\n")
        })
        .collect()
}

/// The lines recorded for `phase`: each the runner's pid and the extra words.
pub(crate) fn recorded(record: &str, phase: &str) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{phase} ")))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn emperor_and_vassal_phases_run_in_the_right_process() {
    let dir = TestDir::new("emperor-phases");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let record = dir.at("record");
    let emperor_config = dir.write(
        "emperor.toml",
        &recording_hooks(
            &record,
            &[
                ("emperor-start", ""),
                ("as-emperor-before-vassal", "$UWSGI_VASSAL_CONFIG"),
                (
                    "as-emperor",
                    "$UWSGI_VASSAL_PID $UWSGI_VASSAL_CONFIG $UWSGI_VASSAL_UID",
                ),
            ],
        ),
    );
    let config = format!(
        "{}{}",
        vassal(1),
        recording_hooks(
            &record,
            &[
                ("as-vassal", "$STEWARD_VASSAL"),
                ("as-vassal-before-drop", ""),
                ("emperor-reload", ""),
                ("emperor-stop", ""),
            ],
        )
    );
    std::fs::write(vassals.join("a.toml"), &config).unwrap();
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor")
        .arg(&vassals)
        .args(["--config", &emperor_config]);
    let mut emperor = Steward::spawn(cmd);
    let (pid, _) = vassal_ready(&emperor, 0, "a.toml");
    let (emperor_pid, pid) = (emperor.pid().to_string(), pid.to_string());
    let a = vassals.join("a.toml").to_str().unwrap().to_owned();
    let uid = nix::unistd::geteuid().to_string();

    assert_eq!(recorded(&record, "emperor-start"), [emperor_pid.as_str()]);
    assert_eq!(
        recorded(&record, "as-emperor-before-vassal"),
        [format!("{emperor_pid} {a}")]
    );
    assert_eq!(
        recorded(&record, "as-emperor"),
        [format!("{emperor_pid} {pid} {a} {uid}")]
    );
    assert_eq!(recorded(&record, "as-vassal"), [format!("{pid} a.toml")]);
    assert_eq!(recorded(&record, "as-vassal-before-drop"), [pid.as_str()]);

    // The emperor's SIGHUP (a touched file), then its SIGTERM, reach the vassal's hooks.
    let from = emperor.log.len();
    std::fs::write(vassals.join("a.toml"), &config).unwrap();
    reloaded(&emperor, from, "a.toml");
    assert_eq!(recorded(&record, "emperor-reload"), [pid.as_str()]);
    assert!(emperor.stop().success());
    assert_eq!(recorded(&record, "emperor-stop"), [pid.as_str()]);
}

#[test]
fn a_vassal_notices_its_emperors_death_at_once_and_stops() {
    let dir = TestDir::new("emperor-lost");
    let record = dir.at("record");
    dir.write(
        "a.toml",
        &format!(
            "{}{}",
            vassal(1),
            recording_hooks(&record, &[("emperor-lost", "")])
        ),
    );
    let emperor = emperor(&dir, &[]);
    let (pid, port) = vassal_ready(&emperor, 0, "a.toml");
    let from = emperor.log.len();
    emperor.signal(Signal::SIGKILL);
    // The vassal still writes to the same stderr: its records reach the log.
    emperor.log.wait_event_from(
        from,
        "emperor-lost",
        &[("emperor", &emperor.pid().to_string())],
    );
    emperor.log.wait_event_from(from, "shutdown-complete", &[]);
    wait_gone(pid);
    assert_eq!(recorded(&record, "emperor-lost"), [pid.to_string()]);
    assert!(steward_testkit::get((std::net::Ipv4Addr::LOCALHOST, port).into(), "/").is_err());
}

#[test]
fn status_of_an_emperor_lists_its_vassals_each_with_a_control_socket_of_its_own() {
    let dir = TestDir::new("emperor-status");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    std::fs::write(vassals.join("a.toml"), vassal(2)).unwrap();
    std::fs::write(
        vassals.join("b.ini"),
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = many\n",
    )
    .unwrap();
    // Under systemd: RuntimeDirectory= gives the emperor's control socket, and each
    // vassal one of its own inside it.
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor")
        .arg(&vassals)
        .env("RUNTIME_DIRECTORY", &*dir);
    let mut emperor = Steward::spawn(cmd);
    let (pid, _) = vassal_ready(&emperor, 0, "a.toml");
    let (_, refused) = emperor
        .log
        .wait_event_from(0, "vassal-refused", &[("vassal", "b.ini")]);
    assert!(refused.contains("b.ini:3"), "{refused}");
    emperor.log.wait_event("emperor-ready", &[]);

    let status = steward_client(&["status", "--control-socket", &dir.at("control.sock")]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(text.contains("2 vassals: 1 ready, 1 refused"), "{text}");
    assert!(
        text.contains(&format!("vassal a.toml pid {pid} ready")),
        "{text}"
    );
    assert!(text.contains("vassal b.ini pid - refused"), "{text}");
    let json = steward_client(&[
        "status",
        "--json",
        "--control-socket",
        &dir.at("control.sock"),
    ]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["vassals"][0]["pid"], pid.as_raw());
    assert_eq!(json["ready"], true);
    let ready = steward_client(&[
        "status",
        "--ready",
        "--control-socket",
        &dir.at("control.sock"),
    ]);
    assert!(ready.status.success(), "{ready:?}");

    // `steward reload --wait` (the pre-253 unit's ExecReload=) returns once every
    // vassal is ready again.
    let from = emperor.log.len();
    let reload = steward_client(&[
        "reload",
        "--wait",
        "--control-socket",
        &dir.at("control.sock"),
    ]);
    assert!(reload.status.success(), "{reload:?}");
    assert!(
        String::from_utf8_lossy(&reload.stdout).contains("ok 2 vassals: 1 ready, 1 refused"),
        "{reload:?}"
    );
    let (at, _) = emperor
        .log
        .wait_event_from(from, "vassal-reloading", &[("vassal", "a.toml")]);
    // Ready once before the reload, and again after its vassal reloaded (the log is
    // read behind the answer, so the second is waited for, not counted at once).
    let first = emperor.log.event_position("emperor-ready", &[]);
    assert!(first < Some(at), "{first:?} {at}");
    emperor.log.wait_event_from(at, "emperor-ready", &[]);

    let own = dir.join("vassal.a.toml").join("control.sock");
    let status = steward_client(&["status", "--control-socket", own.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("running, generation 2"), "{text}");
    assert!(emperor.stop().success());
}

#[test]
fn emperor_in_a_uwsgi_ini_starts_an_emperor() {
    let dir = TestDir::new("emperor-ini");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    std::fs::write(vassals.join("a.toml"), vassal(1)).unwrap();
    let ini = dir.write(
        "emperor.ini",
        &format!(
            "[uwsgi]\nemperor = {}\nemperor-throttle = 150\n",
            vassals.display()
        ),
    );
    let mut cmd = Command::new(steward_bin());
    cmd.args(["--config", &ini])
        .env("STEWARD_EMPEROR_THROTTLE", "150");
    let mut emperor = Steward::spawn(cmd);
    let (pid, _) = vassal_ready(&emperor, 0, "a.toml");
    kill(pid, Signal::SIGKILL).unwrap();
    let (from, died) = emperor
        .log
        .wait_event_from(0, "vassal-died", &[("vassal", "a.toml")]);
    assert_eq!(field(&died, "restart_in_ms"), "150");
    // Not passed down: the vassal is a master, not an emperor of its own.
    vassal_ready(&emperor, from, "a.toml");
    assert_eq!(emperor.log.events("emperor-started", &[]).len(), 1);
    assert!(emperor.stop().success());
}

#[test]
fn a_vassal_in_a_pid_namespace_of_its_own_is_seen_ready() {
    if !steward_testkit::root_or_skip("unshares a pid namespace") {
        return;
    }
    let dir = TestDir::new("emperor-pidns");
    dir.write("a.toml", &format!("{}unshare = \"pid,mount\"\n", vassal(1)));
    let mut emperor = emperor(&dir, &[]);
    let (_, started) = emperor
        .log
        .wait_event_from(0, "vassal-started", &[("vassal", "a.toml")]);
    // Its master is pid 1 in there; its READY=1 comes from a child of the vassal's pid.
    emperor.log.wait_event("master-started", &[("pid", "1")]);
    emperor.log.wait_event(
        "vassal-ready",
        &[("vassal", "a.toml"), ("pid", &field(&started, "pid"))],
    );
    emperor.log.wait_event("emperor-ready", &[]);
    assert!(emperor.stop().success());
}

#[test]
fn a_failing_as_vassal_hook_is_fatal_to_the_vassal_only() {
    let dir = TestDir::new("emperor-as-vassal-fatal");
    dir.write("a.toml", &vassal(1));
    dir.write(
        "b.toml",
        &format!("{}hook-as-vassal = ['exec:exit 3']\n", vassal(1)),
    );
    let mut emperor = emperor(&dir, &[]);
    let (_, died) = emperor
        .log
        .wait_event_from(0, "vassal-died", &[("vassal", "b.toml")]);
    assert!(died.contains("status=exit status 1"), "{died}");
    emperor
        .log
        .wait_for(&["b.toml:4: hook-as-vassal", "exit status 3"]);
    // The other vassal is not disturbed.
    let (_, a_port) = vassal_ready(&emperor, 0, "a.toml");
    let addr = (std::net::Ipv4Addr::LOCALHOST, a_port).into();
    assert_eq!(steward_testkit::get(addr, "/").unwrap().status, 200);
    assert!(emperor.stop().success());
}

#[test]
fn one_vassal_is_reloaded_stopped_and_asked_by_name_through_its_emperor() {
    let dir = TestDir::new("emperor-one");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    std::fs::write(vassals.join("a.toml"), vassal(2)).unwrap();
    std::fs::write(vassals.join("b.toml"), vassal(1)).unwrap();
    // Outside systemd: the vassals' control sockets go beside the emperor's.
    let control = dir.at("emperor.sock");
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor").arg(&vassals).args([
        "--emperor-throttle",
        "100",
        "--control-socket",
        &control,
    ]);
    let mut emperor = Steward::spawn(cmd);
    let (_, a_port) = vassal_ready(&emperor, 0, "a.toml");
    let (b_pid, b_port) = vassal_ready(&emperor, 0, "b.toml");
    emperor.log.wait_event("emperor-ready", &[]);
    let to = |name: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--control-socket", &control, "--vassal", name]);
        steward_client(&all)
    };

    // The vassal's own master answers: its workers, its generation.
    let status = to("a.toml", &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(text.contains("running, generation 1"), "{text}");

    // Reloaded alone, and waited for: a serves generation 2, b still its first.
    let load = Load::start(a_port);
    let reload = to("a.toml", &["reload", "--wait"]);
    assert!(reload.status.success(), "{reload:?}");
    let (sent, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} of {sent} failed: {failed:?}",
        failed.len()
    );
    let a = steward_testkit::get((std::net::Ipv4Addr::LOCALHOST, a_port).into(), "/").unwrap();
    assert_eq!(a.generation(), 2, "{}", a.body);
    let b = steward_testkit::get((std::net::Ipv4Addr::LOCALHOST, b_port).into(), "/").unwrap();
    assert_eq!(b.generation(), 1, "{}", b.body);

    // Stopped by name: gone when `--wait` returns, and not restarted until its file
    // changes, which starts it once.
    let from = emperor.log.len();
    let stop = to("b.toml", &["stop", "--wait"]);
    assert!(stop.status.success(), "{stop:?}");
    wait_gone(b_pid);
    let listed = steward_client(&["status", "--control-socket", &control]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("vassal b.toml pid - stopped"), "{text}");
    let asked = to("b.toml", &["status"]);
    assert!(!asked.status.success());
    assert!(
        String::from_utf8_lossy(&asked.stderr).contains("vassal b.toml is not running (stopped)"),
        "{asked:?}"
    );
    std::fs::write(vassals.join("b.toml"), vassal(1)).unwrap();
    vassal_ready(&emperor, from, "b.toml");
    let starts = emperor.log.lines()[from..]
        .iter()
        .filter(|l| l.contains("event=\"vassal-started\"") && field(l, "vassal") == "b.toml")
        .count();
    assert_eq!(starts, 1, "restarted before its file changed");

    // A name the emperor does not know is said so.
    let unknown = to("c.toml", &["reload"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no vassal named \"c.toml\""),
        "{unknown:?}"
    );
    assert!(emperor.stop().success());
    assert!(
        !dir.join("vassal.a.toml").exists(),
        "runtime directories are left behind"
    );
}
