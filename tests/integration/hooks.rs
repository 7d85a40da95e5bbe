//! Hooks, the jail, touch files and alarms: each effect observed from outside.

use std::{
    fs,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use steward_testkit::{demo_bin, root_or_skip, Steward, TestDir};

/// Polls until `path` holds `expected`, at most the deadline.
fn wait_contents(path: &Path, expected: &str) {
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    loop {
        let got = fs::read_to_string(path).unwrap_or_default();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {got:?}, not {expected:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const PHASES: &[&str] = &[
    "asap",
    "pre-jail",
    "in-jail",
    "post-jail",
    "as-root",
    "as-user",
    "master-start",
    "pre-app",
    "post-app",
    "accepting",
    "accepting1",
    "accepting-once",
    "accepting1-once",
    "as-user-atexit",
];

fn every_phase_args(file: &str) -> Vec<String> {
    PHASES
        .iter()
        .flat_map(|phase| {
            [
                format!("--hook-{phase}"),
                format!("exec:echo {phase} >> {file}"),
            ]
        })
        .collect()
}

#[test]
fn hooks_run_in_the_documented_order_at_start_reload_and_shutdown() {
    let scratch = TestDir::new("order");
    let file = scratch.at("phases");
    let args = every_phase_args(&file);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let demo = demo_bin();
    let mut steward = Steward::start(&args, &[&demo]);
    steward.wait_generation_ready(1);
    let start = [
        "asap",
        "pre-jail",
        "in-jail",
        "post-jail",
        "as-root",
        "as-user",
        "master-start",
        "pre-app",
        "accepting",
        "accepting1",
        "accepting-once",
        "accepting1-once",
        "post-app",
    ];
    let mut expected = start.join("\n") + "\n";
    wait_contents(&scratch.join("phases"), &expected);

    let from = steward.log.len();
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event_from(from, "reload-complete", &[("generation", "2")]);
    expected += "as-user-atexit\npre-app\naccepting\naccepting1\npost-app\n";
    wait_contents(&scratch.join("phases"), &expected);

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    expected += "as-user-atexit\n";
    assert_eq!(
        fs::read_to_string(scratch.join("phases")).unwrap(),
        expected
    );
}

#[test]
fn skip_atexit_skips_the_as_user_atexit_hooks() {
    let scratch = TestDir::new("skip-atexit");
    let file = scratch.at("phases");
    let hook = format!("exec:echo as-user-atexit >> {file}");
    let start = format!("exec:echo master-start >> {file}");
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--skip-atexit",
            "--hook-as-user-atexit",
            &hook,
            "--hook-master-start",
            &start,
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let from = steward.log.len();
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event_from(from, "reload-complete", &[("generation", "2")]);
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    assert_eq!(fs::read_to_string(&file).unwrap(), "master-start\n");
}

#[test]
fn a_failing_fatal_hook_ends_steward_before_any_worker_starts() {
    let demo = demo_bin();
    for (phase, action) in [
        ("as-root", "exec:exit 3"),
        ("pre-app", "mkdir:/proc/steward-cannot"),
    ] {
        let flag = format!("--hook-{phase}");
        let mut steward = Steward::start(&[&flag, action], &[&demo]);
        assert_eq!(
            steward.wait_exit(steward_testkit::DEADLINE).code(),
            Some(1),
            "{phase}"
        );
        steward.log.wait_for(&[
            "steward: error:",
            &format!("hook-{phase} = {action} failed:"),
        ]);
        assert_eq!(
            steward.log.event_position("worker-started", &[]),
            None,
            "{phase}: a worker was started"
        );
    }
}

/// The failure names where the hook was written, as a check-time error does: the
/// file and line (of the hook, not of a neighbour of the same phase), or the flag.
#[test]
fn a_failing_fatal_hook_names_its_file_and_line() {
    let scratch = TestDir::new("fatal-origin");
    let config = scratch.join("app.ini");
    fs::write(
        &config,
        "[uwsgi]\nhook-as-root = exec:true\nrun-command-on-event = as-root true\nhook-pre-app = print:fine\nexec-pre-app = exit 4\n",
    )
    .unwrap();
    let demo = demo_bin();
    let mut steward = Steward::start(&["--config", config.to_str().unwrap()], &[&demo]);
    steward.expect_start_failure(&[
        "steward: error:",
        &format!(
            "{}:5: hook-pre-app = exec:exit 4 failed: command \"exit 4\" failed: exit status 4",
            config.display()
        ),
    ]);

    let mut steward = Steward::start(&["--run-command-on-event", "as-user exit 5"], &[&demo]);
    steward.expect_start_failure(&[
        "steward: error: cannot start: --run-command-on-event: hook-as-user = exec:exit 5 failed",
    ]);
}

/// pre-app is fatal at start; at a reload its failure abandons the reload, and the
/// generation that serves goes on serving.
#[test]
fn a_pre_app_hook_failing_at_a_reload_fails_the_reload_and_the_old_generation_serves() {
    let scratch = TestDir::new("pre-app-reload");
    let flag = scratch.at("refuse");
    let control = scratch.at("control.sock");
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--control-socket",
            &control,
            "--hook-pre-app",
            &format!("exec:test ! -e {flag}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    fs::write(&flag, "").unwrap();
    let reload = steward_testkit::reload_wait(&control);
    let stderr = String::from_utf8_lossy(&reload.stderr);
    assert_eq!(reload.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("hook-pre-app = exec:test ! -e {flag} failed")),
        "{stderr}"
    );
    assert_eq!(steward.get("/").unwrap().generation(), 1);

    fs::remove_file(&flag).unwrap();
    let reload = steward_testkit::reload_wait(&control);
    assert!(reload.status.success(), "{reload:?}");
    assert_eq!(steward.get("/").unwrap().generation(), 3);
}

#[test]
fn a_failing_hook_of_a_non_fatal_phase_is_logged_and_steward_goes_on() {
    let demo = demo_bin();
    let steward = Steward::start(&["--hook-master-start", "exec:exit 5"], &[&demo]);
    steward.wait_generation_ready(1);
    steward
        .log
        .wait_event("hook-failed", &[("phase", "master-start")]);
    assert_eq!(steward.get("/").unwrap().status, 200);
}

#[test]
fn bad_hooks_are_reported_by_check_with_their_source() {
    let scratch = TestDir::new("check");
    let config = scratch.join("steward.ini");
    fs::write(
        &config,
        "[uwsgi]\nhook-asap = exec:true\nhook-asap = mkdri:/run/x\n",
    )
    .unwrap();
    let check = |args: &[&str]| {
        let output = Command::new(steward_testkit::steward_bin())
            .arg("check")
            .args(args)
            .args(["--", "/bin/true"])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = check(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!(
            "{}:3: hook-asap = \"mkdri:/run/x\": unknown hook action \"mkdri\"",
            config.display()
        )),
        "{stderr}"
    );
    let (code, stderr) = check(&["--hook-as-root", "call:warm_cache"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--hook-as-root: hook-as-root = \"call:warm_cache\": call: no callback registered as \"warm_cache\""),
        "{stderr}"
    );
    // Run by the emperor for its on-demand vassals: accepted.
    let (code, stderr) = check(&["--hook-as-on-demand-vassal", "exec:true"]);
    assert!(
        !stderr.contains("hook-as-on-demand-vassal"),
        "{code:?} {stderr}"
    );
    let (code, stderr) = check(&["--hook-as-gateway", "exec:true"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not applicable"), "{stderr}");
    let (code, stderr) = check(&["--unshare", "mount,pidgin"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown namespace"), "{stderr}");
}

fn mountinfo(pid: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap()
}

#[test]
fn a_tmpfs_mounted_in_a_mount_namespace_is_seen_by_the_master_not_by_the_host() {
    if !root_or_skip("unshares a mount namespace and mounts") {
        return;
    }
    let scratch = TestDir::new("tmpfs");
    let target = scratch.at("tmp");
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--unshare",
            "mount",
            "--hook-in-jail",
            &format!("mkdir:{target}"),
            "--hook-in-jail",
            // uWSGI's fifth word: the filesystem's own options.
            &format!("mount:tmpfs none {target} nosuid,nodev size=1m,mode=0710"),
            "--hook-as-user",
            &format!("write:{target}/inside hidden"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let (_, worker) = steward.worker_pids(1)[0];
    let worker_mounts = mountinfo(&worker.to_string());
    let line = worker_mounts
        .lines()
        .find(|l| l.contains(&format!(" {target} ")))
        .unwrap_or_else(|| panic!("no {target} in the worker's mounts:\n{worker_mounts}"));
    assert!(line.contains(" - tmpfs "), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    assert!(
        line.contains("size=1024k") && line.contains("mode=710"),
        "{line}"
    );
    assert!(
        !mountinfo("self").contains(&format!(" {target} ")),
        "the tmpfs shows on the host"
    );
    assert!(
        !scratch.join("tmp/inside").exists(),
        "the file written in the tmpfs is on the host's disk"
    );
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

/// uWSGI's `umount:PATH rec` takes the mounts below PATH down first (a plain umount
/// of a busy PATH fails, and as-root is fatal).
#[test]
fn a_recursive_umount_takes_down_the_mounts_below() {
    if !root_or_skip("unshares a mount namespace and mounts") {
        return;
    }
    let scratch = TestDir::new("umount-rec");
    let target = scratch.at("tmp");
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--unshare",
            "mount",
            "--hook-in-jail",
            &format!("mkdir:{target}"),
            "--hook-in-jail",
            &format!("mount:tmpfs none {target}"),
            "--hook-in-jail",
            &format!("mkdir:{target}/sub"),
            "--hook-in-jail",
            &format!("mount:tmpfs none {target}/sub"),
            "--hook-as-root",
            &format!("umount:{target} rec"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let (_, worker) = steward.worker_pids(1)[0];
    let mounts = mountinfo(&worker.to_string());
    assert!(!mounts.contains(&format!(" {target}")), "{mounts}");
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

/// uWSGI's `mount-<phase>` and `umount-<phase>` shorthands, from an ini.
#[test]
fn mount_and_umount_phase_options_from_a_uwsgi_ini() {
    if !root_or_skip("unshares a mount namespace and mounts") {
        return;
    }
    let scratch = TestDir::new("mount-phase");
    let (kept, undone) = (scratch.at("kept"), scratch.at("undone"));
    let config = scratch.join("app.ini");
    fs::write(
        &config,
        format!(
            "[uwsgi]\nunshare = mount\nhook-in-jail = mkdir:{kept}\nhook-in-jail = mkdir:{undone}\n\
             mount-in-jail = tmpfs none {kept} nodev\nmount-in-jail = tmpfs none {undone}\n\
             umount-as-root = {undone}\n"
        ),
    )
    .unwrap();
    let demo = demo_bin();
    let mut steward = Steward::start(&["--config", config.to_str().unwrap()], &[&demo]);
    steward.wait_generation_ready(1);
    let (_, worker) = steward.worker_pids(1)[0];
    let mounts = mountinfo(&worker.to_string());
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&format!(" {kept} ")) && l.contains(" - tmpfs ")),
        "{mounts}"
    );
    assert!(!mounts.contains(&format!(" {undone} ")), "{mounts}");
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn a_hostname_set_in_a_uts_namespace_leaves_the_host_alone() {
    if !root_or_skip("unshares a UTS namespace") {
        return;
    }
    let scratch = TestDir::new("uts");
    let seen = scratch.at("hostname");
    let host_before = nix::unistd::gethostname().unwrap();
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--unshare",
            "uts",
            "--hook-as-root",
            "sethostname:steward-jailed",
            "--hook-as-user",
            &format!("exec:hostname > {seen}"),
        ],
        &["/bin/sh", "-c", &format!("hostname >> {seen}; exec {demo}")],
    );
    steward.wait_generation_ready(1);
    wait_contents(
        &scratch.join("hostname"),
        "steward-jailed\nsteward-jailed\n",
    );
    assert_eq!(nix::unistd::gethostname().unwrap(), host_before);
}

#[test]
fn writefifo_reaches_a_reader() {
    let scratch = TestDir::new("fifo");
    let fifo = scratch.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .unwrap();
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-master-start",
            &format!("writefifo:{} hello through the fifo", fifo.display()),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let mut got = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut got).unwrap_or_default();
    assert_eq!(got, "hello through the fifo");
}

#[test]
fn an_alarm_reaches_its_command_and_the_log() {
    let scratch = TestDir::new("alarm");
    let out = scratch.at("alarm");
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--alarm",
            &format!("disk cmd:cat >> {out}"),
            "--alarm",
            "note log:",
            "--hook-master-start",
            "alarm:disk the disk is full",
            "--hook-post-app",
            "alarm:note workers are up",
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(&out).unwrap(), "the disk is full\n");
    let line = steward.log.wait_event("alarm-raised", &[("alarm", "note")]);
    assert!(
        line.contains("ERROR") && line.contains("workers are up"),
        "{line}"
    );
}

#[test]
fn file_actions_and_chdir_take_effect() {
    let scratch = TestDir::new("files");
    let dir = scratch.at("made/deep");
    let gone = scratch.join("gone");
    fs::write(&gone, "x").unwrap();
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-asap",
            &format!("mkdir:{dir}"),
            "--hook-pre-jail",
            &format!("create:{dir}/created"),
            "--hook-as-root",
            &format!("write:{dir}/written two words"),
            "--hook-as-root",
            &format!("unlink:{}", gone.display()),
            // A fatal phase, and a command that fails: safeexec only logs it.
            "--hook-as-root",
            &format!("safeexec:echo safe > {dir}/safe; exit 3"),
            "--hook-as-user",
            &format!("chdir:{dir}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(format!("{dir}/created")).unwrap(), "");
    assert_eq!(
        fs::read_to_string(format!("{dir}/written")).unwrap(),
        "two words"
    );
    assert!(!gone.exists());
    assert_eq!(fs::read_to_string(format!("{dir}/safe")).unwrap(), "safe\n");
    let (_, worker) = steward.worker_pids(1)[0];
    assert_eq!(
        fs::read_link(format!("/proc/{worker}/cwd")).unwrap(),
        PathBuf::from(&dir)
    );
}

#[test]
fn print_writes_to_stdout_and_exit_ends_steward_with_its_code() {
    let output = Command::new(steward_testkit::steward_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--hook-asap",
            "print:hello from a hook",
            "--hook-master-start",
            "exit:7",
            "--",
            "/bin/true",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello from a hook\n"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("worker started"));
}

#[test]
fn touch_reload_reloads_on_a_touch_and_on_an_editor_style_replace() {
    let scratch = TestDir::new("touch-reload");
    let flag = scratch.join("reload.flag");
    fs::write(&flag, "1").unwrap();
    let demo = demo_bin();
    let steward = Steward::start(&["--touch-reload", flag.to_str().unwrap()], &[&demo]);
    steward.wait_generation_ready(1);

    let from = steward.log.len();
    let file = fs::File::options().write(true).open(&flag).unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    drop(file);
    steward
        .log
        .wait_event_from(from, "reload-complete", &[("generation", "2")]);
    assert_eq!(steward.get("/").unwrap().generation(), 2);

    let from = steward.log.len();
    let swap = scratch.join(".reload.flag.swp");
    fs::write(&swap, "2").unwrap();
    fs::rename(&swap, &flag).unwrap();
    steward
        .log
        .wait_event_from(from, "reload-complete", &[("generation", "3")]);
    assert_eq!(steward.get("/").unwrap().generation(), 3);
}

#[test]
fn hook_touch_and_run_command_on_touch_run_when_their_file_is_touched() {
    let scratch = TestDir::new("hook-touch");
    let flag = scratch.at("flag");
    let other = scratch.at("other");
    let out = scratch.at("out");
    let out2 = scratch.at("out2");
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-touch",
            &format!("{flag} write:{out} touched"),
            "--run-command-on-touch",
            &format!("{other} echo ran >> {out2}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    fs::write(&flag, "x").unwrap();
    wait_contents(Path::new(&out), "touched");
    assert!(!Path::new(&out2).exists());
    fs::write(&other, "x").unwrap();
    wait_contents(Path::new(&out2), "ran\n");
    assert_eq!(
        steward.log.event_position("reload-started", &[]),
        None,
        "a touch hook is not a reload"
    );
}

/// An empty root in `scratch` for a chroot, holding the host's /bin, /lib, /lib64 and
/// /sbin where they are symlinks (into /usr), and the in-jail hook arguments that make
/// `dirs` and the demo's directory in it and bind-mount the host's there.
fn jail_root(scratch: &TestDir, dirs: &[&str]) -> (PathBuf, Vec<String>) {
    let root = scratch.join("root");
    fs::create_dir_all(&root).unwrap();
    for link in ["bin", "lib", "lib64", "sbin"] {
        if fs::symlink_metadata(format!("/{link}")).is_ok_and(|m| m.is_symlink()) {
            std::os::unix::fs::symlink(fs::read_link(format!("/{link}")).unwrap(), root.join(link))
                .unwrap();
        }
    }
    let demo = demo_bin();
    let demo_dir = Path::new(&demo).parent().unwrap().to_str().unwrap();
    let r = root.to_str().unwrap();
    let mut hooks = Vec::new();
    for dir in dirs.iter().copied().chain([demo_dir]) {
        hooks.push("--hook-in-jail".to_owned());
        hooks.push(format!("mkdir:{r}{dir}"));
        hooks.push("--hook-in-jail".to_owned());
        hooks.push(format!("mount:none {dir} {r}{dir} bind,rec"));
    }
    (root, hooks)
}

/// A root with the host's /usr, /dev, /proc and /tmp bound in (mounted by in-jail hooks inside
/// the master's mount namespace), and the demo's directory, so the worker runs there.
#[test]
fn a_chroot_in_a_mount_namespace_with_in_jail_hooks() {
    if !root_or_skip("unshares a mount namespace and chroots") {
        return;
    }
    let scratch = TestDir::new("chroot");
    let (root, bind_mounts) = jail_root(&scratch, &["/usr", "/dev", "/proc", "/tmp"]);
    let demo = demo_bin();
    let r = root.to_str().unwrap();
    let mut args = vec![
        "--unshare".to_owned(),
        "mount".into(),
        "--chroot".into(),
        r.into(),
    ];
    args.extend(bind_mounts);
    args.extend([
        "--hook-in-jail".into(),
        format!("mkdir:{r}/scratch"),
        "--hook-in-jail".into(),
        format!("mount:tmpfs none {r}/scratch"),
        // After the chroot, paths are the jail's.
        "--hook-post-jail".into(),
        "write:/scratch/jailed yes".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steward = Steward::start(&args, &[&demo]);
    steward.wait_generation_ready(1);
    assert_eq!(steward.get("/").unwrap().status, 200);

    let (_, worker) = steward.worker_pids(1)[0];
    assert_eq!(fs::read_link(format!("/proc/{worker}/root")).unwrap(), root);
    assert_eq!(
        fs::read_link(format!("/proc/{}/root", steward.pid())).unwrap(),
        root
    );
    assert_eq!(
        fs::read_to_string(format!("/proc/{worker}/root/scratch/jailed")).unwrap(),
        "yes"
    );
    assert!(
        !mountinfo("self").contains(&format!("{r}/")),
        "the jail's mounts show on the host"
    );
    assert!(fs::read_dir(root.join("usr")).unwrap().next().is_none());
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

/// The sockets, control socket and FIFOs are made on the host's paths before the
/// chroot: vacuum removes those, not whatever sits at the same path in the jail.
#[test]
fn vacuum_after_a_chroot_removes_the_host_files_not_the_jails() {
    if !root_or_skip("unshares a mount namespace and chroots") {
        return;
    }
    let scratch = TestDir::new("chroot-vacuum");
    let (root, bind_mounts) = jail_root(&scratch, &["/usr", "/dev", "/proc"]);
    let demo = demo_bin();
    let r = root.to_str().unwrap();
    let (socket, control, fifo) = (
        scratch.at("app.sock"),
        scratch.at("control.sock"),
        scratch.at("fifo"),
    );
    // What a jail may hold at the same paths: not steward's to remove.
    let jailed = |path: &str| root.join(path.trim_start_matches('/'));
    for path in [&socket, &control, &fifo] {
        fs::create_dir_all(jailed(path).parent().unwrap()).unwrap();
        fs::write(jailed(path), "the jail's own").unwrap();
    }
    let mut args = vec![
        "--listen".to_owned(),
        format!("unix:{socket}"),
        "--control-socket".into(),
        control.clone(),
        "--master-fifo".into(),
        fifo.clone(),
        "--vacuum".into(),
        "--ready".into(),
        "delay:100".into(),
        "--unshare".into(),
        "mount".into(),
        "--chroot".into(),
        r.into(),
    ];
    args.extend(bind_mounts);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut steward = Steward::start(&args, &[&demo]);
    steward.wait_generation_ready(1);
    for path in [&socket, &control, &fifo] {
        assert!(Path::new(path).exists(), "{path} was not made");
    }
    // The master holds the host's root for this; a worker must not (a way out).
    let (_, worker) = steward.worker_pids(1)[0];
    for fd in fs::read_dir(format!("/proc/{worker}/fd")).unwrap() {
        let target = fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert_ne!(target, Path::new("/"), "a worker holds the host's root");
    }
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    for path in [&socket, &control, &fifo] {
        assert!(!Path::new(path).exists(), "{path} was left on the host");
        assert_eq!(
            fs::read_to_string(jailed(path)).unwrap(),
            "the jail's own",
            "{path} in the jail"
        );
    }
}

#[test]
fn a_mule_runs_without_the_sockets_is_started_again_and_stopped_at_shutdown() {
    let scratch = TestDir::new("mule");
    let hooks = scratch.at("as-mule");
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--mule",
            "sleep 600",
            "--hook-as-mule",
            &format!("exec:echo as-mule >> {hooks}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let pid_of = |line: &str| {
        nix::unistd::Pid::from_raw(steward_testkit::field(line, "pid").parse().unwrap())
    };
    let (started, line) = steward
        .log
        .wait_event_from(0, "mule-started", &[("mule", "1")]);
    let mule = pid_of(&line);
    assert_eq!(fs::read_to_string(&hooks).unwrap(), "as-mule\n");
    let env = steward_testkit::environ(mule);
    assert_eq!(env.get("STEWARD_MULE_ID").map(String::as_str), Some("1"));
    for variable in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "NOTIFY_SOCKET",
        "STEWARD_WORKER_ID",
    ] {
        assert!(!env.contains_key(variable), "the mule has {variable}");
    }
    // The shell execs the command: look at the command's descriptors, not the shell's.
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    while !fs::read_link(format!("/proc/{mule}/exe")).is_ok_and(|exe| exe.ends_with("sleep")) {
        assert!(Instant::now() < deadline, "the mule never became sleep");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Right after the exec the dynamic loader briefly holds fd 3 (ld.so.cache, libc):
    // what must never be there is a socket (a listening one, or the notify socket).
    let sockets: Vec<PathBuf> = fs::read_dir(format!("/proc/{mule}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.unwrap().path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .collect();
    assert!(sockets.is_empty(), "the mule got sockets: {sockets:?}");

    nix::sys::signal::kill(mule, Signal::SIGKILL).unwrap();
    let (_, exited) =
        steward
            .log
            .wait_event_from(started, "mule-exited", &[("pid", &mule.to_string())]);
    // Unasked: it is started again.
    steward_testkit::field(&exited, "respawn_in_ms");
    let (_, line) = steward
        .log
        .wait_event_from(started + 1, "mule-started", &[("mule", "1")]);
    let again = pid_of(&line);
    assert_ne!(again, mule);
    assert_eq!(fs::read_to_string(&hooks).unwrap(), "as-mule\nas-mule\n");

    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    steward
        .log
        .wait_event("mule-exited", &[("pid", &again.to_string())]);
    steward_testkit::wait_gone(again);
}

#[test]
fn a_crashing_mule_is_started_again_after_a_growing_backoff() {
    let demo = demo_bin();
    let steward = Steward::start(&["--mule", "false"], &[&demo]);
    // The seconds of the day a log line was written at (`2026-01-01T10:00:01.5Z ...`).
    let seconds = |line: &str| -> f64 {
        let time = line.split(['T', 'Z']).nth(1).unwrap();
        time.split(':')
            .map(|part| part.parse::<f64>().unwrap())
            .fold(0.0, |total, part| total * 60.0 + part)
    };
    let mut delays = Vec::new();
    let mut from = 0;
    for _ in 0..3 {
        let (at, exited) = steward
            .log
            .wait_event_from(from, "mule-exited", &[("mule", "1")]);
        let (next, started) = steward
            .log
            .wait_event_from(at, "mule-started", &[("mule", "1")]);
        let delay = steward_testkit::field(&exited, "respawn_in_ms");
        // Each start comes no sooner than the backoff the exit announced.
        let waited_ms = (seconds(&started) - seconds(&exited)) * 1000.0;
        assert!(
            waited_ms >= delay.parse::<f64>().unwrap() - 1.0,
            "{exited}\n{started}"
        );
        delays.push(delay);
        from = next + 1;
    }
    assert_eq!(delays, ["100", "200", "400"]);
}

#[test]
fn a_hook_command_gets_stdio_and_nothing_else_of_steward() {
    let scratch = TestDir::new("hook-fds");
    let out = scratch.at("fds");
    let mut cmd = steward_testkit::steward_with_a_leaked_fd();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--hook-master-start",
        // The shell's descriptors, expanded before the redirection opens OUT; the
        // glob itself holds the lowest free one on /proc/$$/fd while it reads.
        &format!("exec:echo /proc/$$/fd/* > {out}"),
        "--",
        &demo_bin(),
    ]);
    let steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    assert!(
        fs::read_link(format!("/proc/{}/fd/7", steward.pid())).is_ok(),
        "steward itself has fd 7"
    );
    let mut fds: Vec<u32> = fs::read_to_string(&out)
        .unwrap()
        .split_whitespace()
        .map(|path| path.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2, 3], "stdio, and 3 for the glob's directory");
}

/// The pids of `pid` in each pid namespace it is in, outermost first.
fn nspids(pid: nix::unistd::Pid) -> Vec<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn a_pid_namespace_forks_the_master_which_is_pid_1_there() {
    if !root_or_skip("unshares a pid namespace") {
        return;
    }
    let scratch = TestDir::new("pidns");
    let inside = scratch.at("in-jail");
    let outside = scratch.at("post-jail");
    let pidfile = scratch.at("pid");
    let demo = demo_bin();
    let mut steward = Steward::start(
        &[
            "--unshare",
            "pid,mount",
            "--pidfile",
            &pidfile,
            "--hook-in-jail",
            &format!("exec:grep NSpid /proc/self/status > {inside}"),
            "--hook-post-jail",
            &format!("exec:grep NSpid /proc/self/status > {outside}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    steward.log.wait_event("master-started", &[("pid", "1")]);
    // The parent's post-jail hook may still run beside the master: wait for it to end.
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    let masters = loop {
        let children = steward_testkit::children_of(steward.pid());
        if children.len() == 1 {
            break children;
        }
        assert!(
            Instant::now() < deadline,
            "children of steward: {children:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let master = masters[0];
    assert_eq!(nspids(master), [master.as_raw(), 1]);
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        format!("{master}\n"),
        "the pidfile names the master as the host sees it"
    );
    let workers = steward_testkit::children_of(master);
    assert_eq!(workers.len(), 1);
    assert_eq!(
        nspids(workers[0]).len(),
        2,
        "the worker is in the namespace"
    );
    assert_eq!(steward.get("/").unwrap().status, 200);

    // The master is in the new mount namespace, the parent in none of the new ones.
    let mount_namespace = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    assert_eq!(
        mount_namespace(&steward.pid().to_string()),
        mount_namespace("self")
    );
    assert_ne!(
        mount_namespace(&master.to_string()),
        mount_namespace("self")
    );

    // in-jail ran in the namespace, post-jail outside it, in the parent.
    let levels = |path: &str| {
        let text = fs::read_to_string(path).unwrap();
        text.split_whitespace().count() - 1
    };
    assert_eq!(levels(&inside), 2);
    assert_eq!(levels(&outside), 1);

    // Signals to the parent reach the master.
    let from = steward.log.len();
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event_from(from, "reload-complete", &[("generation", "2")]);
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
    steward_testkit::wait_gone(master);
}

#[test]
fn as_root_hooks_run_as_root_and_as_user_hooks_as_the_final_user() {
    if !root_or_skip("switches uid") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let scratch = TestDir::new("as-user");
    fs::set_permissions(&*scratch, fs::Permissions::from_mode(0o777)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (root, user) = (scratch.at("root"), scratch.at("user"));
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--uid",
            "nobody",
            "--hook-as-root",
            &format!("exec:id -u > {root}"),
            "--hook-as-user",
            &format!("exec:id -u > {user}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(&root).unwrap(), "0\n");
    assert_eq!(
        fs::read_to_string(&user).unwrap(),
        format!("{}\n", nobody.uid)
    );
}

#[test]
fn hooks_from_a_uwsgi_ini_run_in_the_order_written() {
    let scratch = TestDir::new("ini");
    let out = scratch.at("out");
    let alarm = scratch.at("alarm");
    let config = scratch.join("app.ini");
    fs::write(
        &config,
        format!(
            "[uwsgi]\n\
             hook-asap = write:{out}.first first\n\
             exec-asap = echo one >> {out}\n\
             hook-asap = exec:echo two >> {out}\n\
             run-command-on-event = master-start echo three >> {out}\n\
             alarm = started cmd:cat > {alarm}\n\
             hook-post-app = alarm:started workers are up\n"
        ),
    )
    .unwrap();
    let demo = demo_bin();
    let steward = Steward::start(&["--config", config.to_str().unwrap()], &[&demo]);
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(format!("{out}.first")).unwrap(), "first");
    assert_eq!(fs::read_to_string(&out).unwrap(), "one\ntwo\nthree\n");
    assert_eq!(fs::read_to_string(&alarm).unwrap(), "workers are up\n");
}

/// The names uWSGI gives the same actions (and uwsgiconf writes): `cd`, `creat`,
/// `writen`, `append`, `appendn`, `log`, `hostname`, `callret`.
#[test]
fn uwsgi_action_names_from_an_ini_take_effect() {
    let scratch = TestDir::new("uwsgi-names");
    let dir = scratch.at("");
    let config = scratch.join("app.ini");
    fs::write(
        &config,
        format!(
            "[uwsgi]\n\
             hook-asap = creat:{dir}/created\n\
             hook-asap = writen:{dir}/lines first\n\
             hook-asap = appendn:{dir}/lines second\n\
             hook-asap = append:{dir}/lines third\n\
             hook-pre-jail = log:logged by a uWSGI name\n\
             hook-as-user = cd:{dir}\n"
        ),
    )
    .unwrap();
    let demo = demo_bin();
    let steward = Steward::start(&["--config", config.to_str().unwrap()], &[&demo]);
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(format!("{dir}/created")).unwrap(), "");
    assert_eq!(
        fs::read_to_string(format!("{dir}/lines")).unwrap(),
        "first\nsecond\nthird"
    );
    let (_, worker) = steward.worker_pids(1)[0];
    assert_eq!(
        fs::read_link(format!("/proc/{worker}/cwd")).unwrap(),
        scratch.join("")
    );
    // `log:` is uWSGI's print, which the print test follows to stdout.
    let run = steward.log.wait_event("hook-run", &[("phase", "pre-jail")]);
    assert!(run.contains("action=print:logged by a uWSGI name"), "{run}");
}

#[test]
fn a_binary_upgrade_runs_the_reload_phases_once_and_no_start_phase_again() {
    let scratch = TestDir::new("reexec");
    let file = scratch.at("phases");
    let (_home, binary) = crate::upgrade::installed_copy("hooks-reexec");
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(every_phase_args(&file))
        .args(["--mule", "sleep 600"])
        .args(["--", &demo_bin()]);
    let steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    let started = fs::read_to_string(&file).unwrap();
    let (first, line) = steward.log.wait_event_from(0, "mule-started", &[]);
    let old_mule =
        nix::unistd::Pid::from_raw(steward_testkit::field(&line, "pid").parse().unwrap());

    crate::upgrade::replace(&binary, &fs::read(steward_testkit::steward_bin()).unwrap());
    let from = steward.log.len();
    steward.signal(Signal::SIGHUP);
    steward.log.wait_event_from(from, "upgrade-resumed", &[]);
    steward
        .log
        .wait_event_from(from, "reload-complete", &[("generation", "2")]);
    wait_contents(
        Path::new(&file),
        &(started + "as-user-atexit\npre-app\naccepting\naccepting1\npost-app\n"),
    );
    // Mules are not handed over: the old image stopped its own, the new one started one.
    steward_testkit::wait_gone(old_mule);
    steward.log.wait_event_from(first + 1, "mule-started", &[]);
}

#[test]
fn putenv_reaches_the_later_hooks_and_the_workers() {
    let scratch = TestDir::new("putenv");
    let out = scratch.at("seen");
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-asap",
            "putenv:STEWARD_PUTENV_TEST=hello from putenv",
            "--hook-as-root",
            &format!("exec:echo \"$STEWARD_PUTENV_TEST\" > {out}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(&out).unwrap(), "hello from putenv\n");
    let (_, worker) = steward.worker_pids(1)[0];
    assert_eq!(
        steward_testkit::environ(worker)
            .get("STEWARD_PUTENV_TEST")
            .map(String::as_str),
        Some("hello from putenv")
    );
}

#[test]
fn chmod_chown_and_sticky_change_what_stat_shows() {
    if !root_or_skip("chowns files to nobody") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let scratch = TestDir::new("modes");
    let file = scratch.at("file");
    let by_id = scratch.at("by-id");
    let dir = scratch.at("dir");
    fs::write(&file, "").unwrap();
    fs::write(&by_id, "").unwrap();
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-as-root",
            &format!("chmod:{file} 640"),
            "--hook-as-root",
            &format!("chown:{file} nobody nogroup"),
            "--hook-as-root",
            &format!("chown2:{by_id} 1234 5678"),
            "--hook-as-root",
            &format!("sticky:{dir}"),
        ],
        &[&demo],
    );
    steward.wait_generation_ready(1);
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    let meta = fs::metadata(&by_id).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o1755);
}

#[test]
fn wait_for_file_holds_the_phase_until_the_file_appears() {
    let scratch = TestDir::new("wait-file");
    let awaited = scratch.at("awaited");
    let copy = scratch.at("copy");
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-as-root",
            &format!("wait_for_file:{awaited}"),
            // Fails (a fatal phase) unless the wait held it until the file was there.
            "--hook-as-root",
            &format!("exec:cat {awaited} > {copy}"),
        ],
        &[&demo],
    );
    let action = format!("wait_for_file:{awaited}");
    steward.log.wait_event("hook-run", &[("action", &action)]);
    // Written whole, then renamed: the hook never sees a half-written file.
    let partial = scratch.at("partial");
    fs::write(&partial, "made by the test").unwrap();
    fs::rename(&partial, &awaited).unwrap();
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(&copy).unwrap(), "made by the test");
    let lines = steward.log.lines();
    let at = |fragment: &str| lines.iter().position(|l| l.contains(fragment)).unwrap();
    assert!(at("wait_for_file:") < at(&format!("exec:cat {awaited}")));
}

#[test]
fn wait_for_socket_holds_the_phase_until_the_port_accepts() {
    use std::os::fd::AsRawFd;

    let scratch = TestDir::new("wait-socket");
    let after = scratch.at("after");
    // Bound and kept, but not listening yet: the port is this test's own, and a connection
    // to it is refused until the test listens.
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let loopback = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 0);
    nix::sys::socket::bind(socket.as_raw_fd(), &loopback).unwrap();
    let port = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrIn>(socket.as_raw_fd())
        .unwrap()
        .port();
    let demo = demo_bin();
    let steward = Steward::start(
        &[
            "--hook-as-root",
            &format!("wait_for_socket:127.0.0.1:{port}"),
            "--hook-as-root",
            &format!("write:{after} went on"),
        ],
        &[&demo],
    );
    let action = format!("wait_for_socket:127.0.0.1:{port}");
    steward.log.wait_event("hook-run", &[("action", &action)]);
    assert!(
        !Path::new(&after).exists(),
        "the phase went on before the port was up"
    );
    nix::sys::socket::listen(&socket, nix::sys::socket::Backlog::new(8).unwrap()).unwrap();
    steward.wait_generation_ready(1);
    assert_eq!(fs::read_to_string(&after).unwrap(), "went on");
    drop(socket);
}

#[test]
fn a_wait_that_times_out_fails_a_fatal_phase() {
    let scratch = TestDir::new("wait-timeout");
    let never = scratch.at("never");
    let demo = demo_bin();
    let action = format!("wait_for_dir:{never}");
    let mut steward = Steward::start(
        &["--wait-for-fs-timeout", "300ms", "--hook-pre-app", &action],
        &[&demo],
    );
    steward.expect_start_failure(&[
        "steward: error:",
        &format!("hook-pre-app = {action} failed: wait_for_dir: {never} still not a directory after 0.3s"),
    ]);
    assert_eq!(steward.log.event_position("worker-started", &[]), None);
}

#[test]
fn spinningfifo_reaches_a_reader_that_comes_later() {
    let scratch = TestDir::new("spinningfifo");
    let fifo = scratch.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let demo = demo_bin();
    let action = format!("spinningfifo:{} hello late reader", fifo.display());
    let steward = Steward::start(&["--hook-as-root", &action], &[&demo]);
    let phase = [("phase", "as-root")];
    let run = steward.log.wait_event("hook-run", &phase);
    assert!(run.contains(&action), "{run}");
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .unwrap();
    let deadline = Instant::now() + steward_testkit::DEADLINE;
    let mut got = Vec::new();
    while got != b"hello late reader" {
        assert!(Instant::now() < deadline, "read only {got:?}");
        let mut buf = [0u8; 64];
        match std::io::Read::read(&mut &reader, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading the fifo: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    steward.wait_generation_ready(1);
}
