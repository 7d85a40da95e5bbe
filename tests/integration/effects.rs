//! The process effects of the options, observed from outside as a user would: ids,
//! groups and capabilities in /proc, nice values, working directories, file ownership,
//! pidfiles, what `ps` shows, files left or removed at exit, a detached daemon's log.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use nix::unistd::Pid;

use steward_testkit::{
    demo_bin, field, root_or_skip, steward_bin, steward_client, Steward, TestDir, DEADLINE,
};

/// The values of a `Name:` line of /proc/PID/status.
fn status_field(pid: Pid, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn assert_credentials(who: &str, pid: Pid, uid: &str, gid: &str, groups: &[&str]) {
    assert_eq!(status_field(pid, "Uid"), [uid; 4], "{who} Uid");
    assert_eq!(status_field(pid, "Gid"), [gid; 4], "{who} Gid");
    assert_eq!(
        status_field(pid, "Groups"),
        groups,
        "{who} supplementary groups"
    );
    for cap in ["CapEff", "CapPrm"] {
        assert_eq!(status_field(pid, cap), ["0000000000000000"], "{who} {cap}");
    }
}

#[test]
fn uid_gid_and_add_gid_drop_the_master_and_its_workers_after_binding() {
    if !root_or_skip("switches uid, gid and groups") {
        return;
    }
    let dir = TestDir::new("uid");
    let control = dir.join("control.sock");
    let fifo = dir.join("master.fifo");
    let steward = Steward::start(
        &[
            "--uid",
            "nobody",
            "--gid",
            "nogroup",
            "--add-gid",
            "4",
            "--add-gid",
            "27",
            "--workers",
            "2",
            "--control-socket",
            control.to_str().unwrap(),
            "--master-fifo",
            fifo.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    steward
        .log
        .wait_event("privileges-dropped", &[("by", "uid/gid")]);
    assert_credentials("master", steward.pid(), "65534", "65534", &["4", "27"]);
    for (_, worker) in steward.workers(1, 2) {
        assert_credentials("worker", worker, "65534", "65534", &["4", "27"]);
    }
    // The sockets were bound before the drop, and are served.
    assert_eq!(steward.get("/").unwrap().generation(), 1);
    // The control socket and FIFO belong to the user the master became, and only to it.
    for path in [&control, &fifo] {
        let meta = std::fs::symlink_metadata(path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{}",
            path.display()
        );
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", path.display());
    }
    // ... and still work: a reload asked through the socket happens.
    let reload = steward_testkit::reload_wait(&control);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    for (_, worker) in steward.workers(2, 2) {
        assert_credentials(
            "worker of generation 2",
            worker,
            "65534",
            "65534",
            &["4", "27"],
        );
    }
}

#[test]
fn a_uid_alone_takes_the_users_primary_group_and_no_supplementary_group() {
    if !root_or_skip("switches uid and gid") {
        return;
    }
    let steward = Steward::start(&["--uid", "65534"], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    assert_credentials("master", steward.pid(), "65534", "65534", &[]);
    let (_, worker) = steward.worker_pids(1)[0];
    assert_credentials("worker", worker, "65534", "65534", &[]);
}

#[test]
fn immediate_uid_drops_before_binding_so_a_privileged_port_fails() {
    if !root_or_skip("switches uid and gid at once") {
        return;
    }
    let mut command = Command::new(steward_bin());
    command.args([
        "--immediate-uid",
        "nobody",
        "--immediate-gid",
        "nogroup",
        "--listen",
        "127.0.0.1:81",
        "--",
        &demo_bin(),
    ]);
    let mut steward = Steward::spawn(command);
    let unprivileged_from: u32 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .map_or(1024, |v| v.trim().parse().unwrap_or(1024));
    if unprivileged_from <= 81 {
        // Any user may bind port 81 here: then the drop shows in /proc instead.
        steward.wait_generation_ready(1);
        assert_credentials("master", steward.pid(), "65534", "65534", &[]);
        return;
    }
    let status = steward.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1));
    steward.log.wait_event(
        "privileges-dropped",
        &[("by", "immediate-uid/immediate-gid")],
    );
    steward
        .log
        .wait_for(&["cannot listen on 127.0.0.1:81", "EACCES"]);
}

#[test]
fn an_unknown_user_is_a_clear_error_at_start() {
    let mut steward = Steward::start(&["--uid", "no-such-user-here"], &[&demo_bin()]);
    steward.expect_start_failure(&["uid: no user named \"no-such-user-here\""]);
}

/// Polls `read` until it returns `Some`, at most [`DEADLINE`].
pub(crate) fn eventually<T>(what: &str, mut read: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = read() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Field `n` (1-based, as in proc(5)) of /proc/PID/stat.
fn stat_field(pid: Pid, n: usize) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(n - 3).unwrap().to_owned()
}

/// The arguments of /proc/PID/cmdline, empty ones (padding) left out.
fn cmdline(pid: Pid) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn read_pid(path: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.strip_suffix('\n')?;
    Some(Pid::from_raw(text.parse().ok()?))
}

#[test]
fn priority_sets_the_nice_value_of_the_master_and_its_workers() {
    let steward = Steward::start(&["--priority", "7", "--workers", "2"], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    assert_eq!(stat_field(steward.pid(), 19), "7", "master");
    for (_, worker) in steward.workers(1, 2) {
        assert_eq!(stat_field(worker, 19), "7", "worker");
    }
}

/// The files a master creates: a unix listening socket, pidfiles, control socket, FIFO.
pub(crate) fn start_with_files(dir: &Path, extra: &[&str]) -> (Steward, Vec<PathBuf>) {
    let files: Vec<PathBuf> = [
        "app.sock",
        "app.pid",
        "app2.pid",
        "control.sock",
        "master.fifo",
    ]
    .iter()
    .map(|name| dir.join(name))
    .collect();
    let path = |i: usize| files[i].to_str().unwrap().to_owned();
    let unix = format!("unix:{}", path(0));
    let mut args = vec![
        "--listen",
        &unix,
        "--pidfile",
        &files[1].to_str().unwrap(),
        "--pidfile2",
        files[2].to_str().unwrap(),
        "--control-socket",
        files[3].to_str().unwrap(),
        "--master-fifo",
        files[4].to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let steward = Steward::start(&args, &[&demo_bin()]);
    steward.wait_generation_ready(1);
    for file in &files {
        assert!(
            file.exists(),
            "{} exists while the master runs",
            file.display()
        );
    }
    (steward, files)
}

#[test]
fn vacuum_removes_pidfiles_sockets_control_socket_and_fifo_at_exit() {
    let dir = TestDir::new("vacuum");
    let (mut steward, files) = start_with_files(&dir, &["--vacuum"]);
    steward.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    for file in &files {
        assert!(!file.exists(), "{} removed by vacuum", file.display());
    }
}

#[test]
fn skip_atexit_teardown_exits_without_removing_anything() {
    let dir = TestDir::new("skip-teardown");
    let (mut steward, files) = start_with_files(&dir, &["--vacuum", "--skip-atexit-teardown"]);
    steward.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    steward.log.wait_event("shutdown-complete", &[]);
    for file in &files {
        assert!(file.exists(), "{} left in place", file.display());
    }
    assert!(steward.log.position(&["vacuum: removed"]).is_none());
}

/// Starts steward through a shell that gives it `stdin`.
fn start_with_stdin(stdin: &Path, extra: &str) -> Steward {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(format!(
        "exec {} --listen 127.0.0.1:0 {extra} -- {} < {}",
        steward_bin().display(),
        demo_bin(),
        stdin.display()
    ));
    let steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    steward
}

#[test]
fn workers_get_dev_null_on_stdin_unless_honour_stdin() {
    let dir = TestDir::new("stdin");
    let input = dir.join("input");
    std::fs::write(&input, "typed").unwrap();
    let stdin_of = |steward: &Steward| {
        let (_, worker) = steward.worker_pids(1)[0];
        std::fs::read_link(format!("/proc/{worker}/fd/0")).unwrap()
    };
    let steward = start_with_stdin(&input, "");
    assert_eq!(stdin_of(&steward), Path::new("/dev/null"));
    drop(steward);
    let steward = start_with_stdin(&input, "--honour-stdin");
    assert_eq!(stdin_of(&steward), input);
    drop(steward);
}

#[test]
fn ksm_marks_the_master_and_the_exec_d_workers_mergeable() {
    let mut steward = Steward::start(&["--ksm"], &[&demo_bin()]);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) < (6, 4) {
        // A kernel without PR_SET_MEMORY_MERGE: refused at start, saying why.
        steward.expect_start_failure(&["ksm: prctl(PR_SET_MEMORY_MERGE) failed", "kernel"]);
        return;
    }
    steward.wait_generation_ready(1);
    let merge_any = |pid: Pid| {
        std::fs::read_to_string(format!("/proc/{pid}/ksm_stat"))
            .unwrap()
            .lines()
            .any(|l| l == "ksm_merge_any: yes")
    };
    assert!(merge_any(steward.pid()), "master");
    let (_, worker) = steward.worker_pids(1)[0];
    assert!(merge_any(worker), "worker: the flag survives execve");
    let plain = Steward::start(&[], &[&demo_bin()]);
    plain.wait_generation_ready(1);
    assert!(!merge_any(plain.pid()), "not without ksm");
}

#[test]
fn no_swap_locks_the_masters_memory() {
    let steward = Steward::start(&["--no-swap"], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let locked: u64 = status_field(steward.pid(), "VmLck")[0].parse().unwrap();
    assert!(locked > 0, "VmLck {locked} kB");
}

#[test]
fn no_swap_over_the_memlock_limit_is_a_clear_error() {
    if !root_or_skip("switches uid at once") {
        return;
    }
    // As nobody, mlockall needs RLIMIT_MEMLOCK to cover the whole process; 64 KiB does not.
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(format!(
        "ulimit -l 64 && exec {} --listen 127.0.0.1:0 --immediate-uid nobody --no-swap -- {}",
        steward_bin().display(),
        demo_bin(),
    ));
    let mut steward = Steward::spawn(command);
    steward.expect_start_failure(&["no-swap: mlockall", "RLIMIT_MEMLOCK"]);
}

#[test]
fn chdir_moves_the_master_and_its_workers() {
    let dir = TestDir::new("chdir");
    let steward = Steward::start(&["--chdir", dir.to_str().unwrap()], &[&demo_bin()]);
    steward.wait_generation_ready(1);
    let cwd = |pid: Pid| std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd(steward.pid()), *dir);
    assert_eq!(cwd(steward.worker_pids(1)[0].1), *dir);
    drop(steward);
}

#[test]
fn chdir2_applies_once_the_first_generation_is_up() {
    let first = TestDir::new("chdir2-first");
    let second = TestDir::new("chdir2-second");
    let steward = Steward::start(
        &[
            "--chdir",
            first.to_str().unwrap(),
            "--chdir2",
            second.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    let cwd = |pid: Pid| std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(
        cwd(steward.worker_pids(1)[0].1),
        *first,
        "generation 1 started in chdir"
    );
    eventually("the master in chdir2", || {
        (cwd(steward.pid()) == *second).then_some(())
    });
    steward.signal(nix::sys::signal::Signal::SIGHUP);
    steward.wait_generation_ready(2);
    assert_eq!(
        cwd(steward.worker_pids(2)[0].1),
        *second,
        "later workers inherit chdir2"
    );
}

#[test]
fn a_bad_chdir_is_a_clear_error_at_start() {
    let mut steward = Steward::start(&["--chdir", "/no/such/dir"], &[&demo_bin()]);
    steward.expect_start_failure(&["chdir: cannot change directory to /no/such/dir"]);
}

#[test]
fn auto_procname_names_the_master_and_the_workers_in_ps() {
    let steward = Steward::start(
        &[
            "--auto-procname",
            "--procname-prefix-spaced",
            "[shop]",
            "--procname-append",
            " (blue)",
            "--workers",
            "2",
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    assert_eq!(cmdline(steward.pid()), ["[shop] steward master (blue)"]);
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", steward.pid())).unwrap();
    assert_eq!(comm, "[shop] steward \n", "comm: the first 15 bytes");
    let mut names: Vec<(usize, Vec<String>)> = steward
        .worker_pids(1)
        .into_iter()
        .map(|(id, pid)| (id, cmdline(pid)))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            (1, vec!["[shop] steward worker 1 (blue)".to_owned()]),
            (2, vec!["[shop] steward worker 2 (blue)".to_owned()])
        ]
    );
    // What ps prints, as an operator sees it.
    let ps = Command::new("ps")
        .args(["-o", "args=", "-p", &steward.pid().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "[shop] steward master (blue)"
    );
}

#[test]
fn procname_and_procname_master_name_workers_and_master_keeping_worker_arguments() {
    let steward = Steward::start(
        &[
            "--procname",
            "shop-web",
            "--procname-master",
            "shop-boss",
            "--procname-prefix",
            "x-",
        ],
        &[&demo_bin(), "--boot-ms", "0"],
    );
    steward.wait_generation_ready(1);
    assert_eq!(cmdline(steward.pid()), ["x-shop-boss"]);
    let (_, worker) = steward.worker_pids(1)[0];
    assert_eq!(cmdline(worker), ["x-shop-web", "--boot-ms", "0"]);
    assert!(std::fs::read_link(format!("/proc/{worker}/exe"))
        .unwrap()
        .ends_with("steward-demo"));
}

#[test]
fn pidfiles_hold_the_master_pid_written_before_and_after_the_drop() {
    if !root_or_skip("chowns a directory and switches uid and gid") {
        return;
    }
    let dir = TestDir::new("pidfiles");
    let private = dir.join("private");
    std::fs::create_dir(&private).unwrap();
    std::os::unix::fs::chown(&private, Some(65534), Some(65534)).unwrap();
    let (pidfile, pidfile2) = (dir.join("root.pid"), private.join("user.pid"));
    // A symlink planted where the pidfile goes must be replaced, never written through.
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, &pidfile).unwrap();
    let steward = Steward::start(
        &[
            "--uid",
            "nobody",
            "--gid",
            "nogroup",
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--pidfile2",
            pidfile2.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    assert_eq!(read_pid(&pidfile), Some(steward.pid()));
    assert_eq!(read_pid(&pidfile2), Some(steward.pid()));
    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.file_type().is_file(), m.uid())
    };
    assert_eq!(owner(&pidfile), (true, 0), "pidfile: written as root");
    assert_eq!(
        owner(&pidfile2),
        (true, 65534),
        "pidfile2: written after the drop"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    drop(steward);
}

#[test]
fn an_unwritable_pidfile_is_a_clear_error_at_start() {
    let mut steward = Steward::start(&["--pidfile", "/no/such/dir/app.pid"], &[&demo_bin()]);
    steward.expect_start_failure(&["pidfile: cannot write /no/such/dir/app.pid"]);
}

#[test]
fn a_safe_pidfile_is_written_once_ready_and_never_by_a_failed_start() {
    let dir = TestDir::new("safe-pidfile");
    let safe = dir.join("safe.pid");
    let safe2 = dir.join("safe2.pid");
    // A running instance's pidfile; a start that fails must leave it alone.
    std::fs::write(&safe, "4242\n").unwrap();
    let mut failing = Steward::start(
        &[
            "--safe-pidfile",
            safe.to_str().unwrap(),
            "--safe-pidfile2",
            safe2.to_str().unwrap(),
        ],
        &["/bin/false"],
    );
    assert_eq!(failing.wait_exit(DEADLINE).code(), Some(1));
    assert_eq!(std::fs::read_to_string(&safe).unwrap(), "4242\n");
    assert!(!safe2.exists());

    let steward = Steward::start(
        &[
            "--safe-pidfile",
            safe.to_str().unwrap(),
            "--safe-pidfile2",
            safe2.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    eventually("the safe pidfiles", || {
        (read_pid(&safe) == Some(steward.pid()) && read_pid(&safe2) == Some(steward.pid()))
            .then_some(())
    });
    drop(steward);
}

/// A daemonized master, found through its pidfile; stopped (SIGTERM, then SIGKILL) when
/// dropped. Its workers die with it (they have the master's death signal).
struct Daemon(Pid);

impl Daemon {
    fn from_pidfile(path: &Path) -> Daemon {
        Daemon(eventually("the daemon's pidfile", || read_pid(path)))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(self.0, Signal::SIGTERM);
        let deadline = Instant::now() + DEADLINE;
        while !steward_testkit::is_gone(self.0) {
            if Instant::now() > deadline {
                let _ = kill(self.0, Signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The address of the first socket in the `master-started` record of a log file's text.
fn addr_in(text: &str) -> std::net::SocketAddr {
    let record = text
        .lines()
        .find(|l| steward_testkit::is_event(l, "master-started", &[]))
        .unwrap_or_else(|| panic!("no master-started record in {text}"));
    steward_testkit::listening(record)[0].1.parse().unwrap()
}

fn wait_file_contains(path: &Path, fragment: &str) -> String {
    eventually(&format!("{fragment:?} in {}", path.display()), || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|text| text.contains(fragment))
    })
}

#[test]
fn daemonize_detaches_appends_to_its_log_and_tells_systemd_the_new_main_pid() {
    let dir = TestDir::new("daemonize");
    let (log, pidfile) = (dir.join("steward.log"), dir.join("app.pid"));
    std::fs::write(&log, "an earlier line\n").unwrap();
    let systemd = steward_testkit::SystemdSocket::bind("daemonize-notify");
    let mut steward = Steward::start_env(
        &[("NOTIFY_SOCKET", &systemd.address())],
        &[
            "--daemonize",
            log.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    assert_eq!(
        steward.wait_exit(DEADLINE).code(),
        Some(0),
        "the started process exits 0"
    );
    let daemon = Daemon::from_pidfile(&pidfile);
    assert_ne!(daemon.0, steward.pid());
    let parent = stat_field(daemon.0, 4);
    assert_ne!(
        parent,
        std::process::id().to_string(),
        "the daemon is not the test's child"
    );
    assert_eq!(
        stat_field(daemon.0, 6),
        daemon.0.to_string(),
        "it leads its own session"
    );

    let main_pid = systemd.receive_until("MAINPID=").pop().unwrap().text;
    assert_eq!(main_pid.trim(), format!("MAINPID={}", daemon.0));
    systemd.receive_until("READY=1");

    let text = wait_file_contains(&log, r#"event="generation-ready""#);
    assert!(text.starts_with("an earlier line\n"), "appended: {text}");
    assert!(text.contains(&format!("pid={}", daemon.0)), "{text}");
    let addr = addr_in(&text);
    assert_eq!(steward_testkit::get(addr, "/").unwrap().generation(), 1);
    drop(daemon);
}

#[test]
fn daemonize_to_udp_sends_one_log_line_per_datagram() {
    let dir = TestDir::new("daemonize-udp");
    let pidfile = dir.join("app.pid");
    let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    listener.set_read_timeout(Some(DEADLINE)).unwrap();
    let target = format!("udp:{}", listener.local_addr().unwrap());
    let mut steward = Steward::start(
        &[
            "--daemonize",
            &target,
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    let daemon = Daemon::from_pidfile(&pidfile);
    let mut buffer = [0u8; 65536];
    loop {
        let n = listener
            .recv(&mut buffer)
            .expect("a log datagram within the deadline");
        let line = String::from_utf8_lossy(&buffer[..n]).into_owned();
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "one line: {line:?}"
        );
        if steward_testkit::is_event(&line, "generation-ready", &[]) {
            break;
        }
    }
    drop(daemon);
}

#[test]
fn daemonize2_detaches_after_binding_and_the_pidfile_follows_the_daemon() {
    let dir = TestDir::new("daemonize2");
    let (log, pidfile) = (dir.join("steward.log"), dir.join("app.pid"));
    let mut steward = Steward::start(
        &[
            "--daemonize2",
            log.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    // The start-up was logged where it began; what follows the detach, in the file.
    steward.log.wait_event("master-started", &[]);
    let text = wait_file_contains(&log, r#"event="generation-ready""#);
    let daemon = Daemon(eventually("the pidfile naming the daemon", || {
        read_pid(&pidfile).filter(|pid| *pid != steward.pid())
    }));
    assert!(
        text.contains(&format!("daemonized (daemonize2) pid={}", daemon.0)),
        "{text}"
    );
    assert_eq!(steward.get("/").unwrap().generation(), 1);
    drop(daemon);
}

#[test]
fn daemonize2_after_the_drop_still_rewrites_a_pidfile_only_root_may_write() {
    if !root_or_skip("chowns a directory and switches uid and gid") {
        return;
    }
    let dir = TestDir::new("daemonize2-root-pidfile");
    let (private, shared) = (dir.join("private"), dir.join("shared"));
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).unwrap();
    let (log, pidfile) = (shared.join("steward.log"), private.join("app.pid"));
    let mut steward = Steward::start(
        &[
            "--uid",
            "nobody",
            "--gid",
            "nogroup",
            "--daemonize2",
            log.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
        ],
        &[&demo_bin()],
    );
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    let text = wait_file_contains(&log, r#"event="generation-ready""#);
    let daemon = Daemon(Pid::from_raw(
        field(
            text.lines()
                .find(|l| l.contains("daemonized (daemonize2)"))
                .unwrap(),
            "pid",
        )
        .parse()
        .unwrap(),
    ));
    assert_eq!(read_pid(&pidfile), Some(daemon.0), "{text}");
    assert_eq!(steward.get("/").unwrap().generation(), 1);
    drop(daemon);
}

#[test]
fn a_daemon_is_reloaded_and_stopped_through_its_control_socket() {
    let dir = TestDir::new("daemonize-control");
    let (log, pidfile, control) = (
        dir.join("steward.log"),
        dir.join("app.pid"),
        dir.join("control.sock"),
    );
    let control = control.to_str().unwrap();
    let mut steward = Steward::start(
        &[
            "--daemonize",
            log.to_str().unwrap(),
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--control-socket",
            control,
            "--workers",
            "2",
        ],
        &[&demo_bin()],
    );
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    let daemon = Daemon::from_pidfile(&pidfile);
    let text = wait_file_contains(&log, r#"event="generation-ready""#);
    let addr = addr_in(&text);

    let reload = steward_testkit::reload_wait(control);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    assert_eq!(steward_testkit::get(addr, "/").unwrap().generation(), 2);

    let stop = steward_client(&["stop", "--wait", "--control-socket", control]);
    assert!(stop.status.success());
    steward_testkit::wait_gone(daemon.0);
    drop(daemon);
}

#[test]
fn an_unusable_daemon_log_is_a_clear_error_before_detaching() {
    let mut steward = Steward::start(&["--daemonize", "/no/such/dir/log"], &[&demo_bin()]);
    steward.expect_start_failure(&["daemonize: cannot log to /no/such/dir/log"]);
}

#[test]
fn a_master_dropped_at_once_by_immediate_uid_still_gets_its_name() {
    if !root_or_skip("switches uid and gid at once") {
        return;
    }
    let steward = Steward::start(
        &[
            "--immediate-uid",
            "nobody",
            "--immediate-gid",
            "nogroup",
            "--auto-procname",
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    assert_credentials("master", steward.pid(), "65534", "65534", &[]);
    assert_eq!(cmdline(steward.pid()), ["steward master"]);
    assert!(steward
        .log
        .position(&["cannot set the master's process name"])
        .is_none());
}

#[test]
fn vacuum_after_the_drop_removes_what_the_final_user_may_remove() {
    if !root_or_skip("chowns a directory and switches uid and gid") {
        return;
    }
    let dir = TestDir::new("vacuum-uid");
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let (mut steward, files) =
        start_with_files(&dir, &["--vacuum", "--uid", "nobody", "--gid", "nogroup"]);
    steward.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    for file in &files {
        assert!(
            !file.exists(),
            "{} removed by vacuum as nobody",
            file.display()
        );
    }
    assert!(steward.log.position(&["vacuum: cannot remove"]).is_none());
}

/// Connects to the unix socket `path` as `uid` with curl (a client that is not the
/// test process, so that its user can differ): whether an HTTP answer came back.
fn curl_as(uid: u32, path: &Path) -> bool {
    use std::os::unix::process::CommandExt;
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "5", "--unix-socket"])
        .arg(path)
        .arg("http://localhost/")
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run curl");
    output.status.success()
}

/// nginx in front of a unix socket: `chmod-socket` and `chown-socket` decide who may
/// connect; a TCP socket beside it is left alone with a warning.
#[test]
fn chmod_socket_and_chown_socket_decide_who_may_connect_to_a_unix_socket() {
    if !root_or_skip("chowns a socket and connects as another user") {
        return;
    }
    let path = steward_testkit::socket_path("chmod-chown");
    let unix = format!("unix:{}", path.display());
    let mut steward = Steward::start(
        &[
            "--listen",
            &unix,
            "--chmod-socket",
            "600",
            "--chown-socket",
            "nobody",
        ],
        &[&demo_bin()],
    );
    steward.wait_generation_ready(1);
    steward.log.wait_for(&[
        "chmod-socket and chown-socket apply to unix sockets only",
        "127.0.0.1:",
    ]);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), 65534);
    assert_eq!(
        meta.gid(),
        0,
        "without a group, the socket's group is left as it is"
    );
    assert!(curl_as(65534, &path), "the owner connects");
    assert!(!curl_as(1, &path), "another user may not");

    steward.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn chmod_socket_without_a_value_lets_everyone_connect() {
    if !root_or_skip("chowns a socket and connects as another user") {
        return;
    }
    let dir = TestDir::new("chmod-666");
    let path = dir.join("app.sock");
    let file = dir.write(
        "app.ini",
        &format!(
            "[uwsgi]\nsocket = 127.0.0.1:0\nsocket = unix:{}\nchmod-socket =\nchown-socket = nobody:65534\ncommand = {}\n",
            path.display(),
            demo_bin()
        ),
    );
    let mut command = Command::new(steward_bin());
    command.args(["--config", &file]);
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o666);
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert!(curl_as(1, &path), "anyone connects");

    steward.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(steward.wait_exit(DEADLINE).code(), Some(0));
}

#[test]
fn a_bad_socket_mode_or_owner_is_an_error_naming_the_option() {
    let path = steward_testkit::socket_path("chmod-bad");
    let unix = format!("unix:{}", path.display());
    for (option, value, expected) in [
        ("--chmod-socket", "999", "invalid socket mode \"999\""),
        (
            "--chown-socket",
            "no-such-user-here",
            "chown-socket: no user named",
        ),
        (
            "--chown-socket",
            "nobody:no-such-group-here",
            "chown-socket: no group named",
        ),
    ] {
        let output = Command::new(steward_bin())
            .args(["--listen", &unix, option, value, "--", &demo_bin()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // clap refuses a bad flag value with 2, a start that fails exits 1.
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{option} {value}: {stderr}"
        );
        assert!(!path.exists(), "nothing is left bound");
        assert!(stderr.contains(expected), "{option} {value}: {stderr}");
        if option == "--chmod-socket" {
            assert!(stderr.contains("chmod-socket"), "{stderr}");
        }
    }
    let _ = std::fs::remove_file(&path);
}
