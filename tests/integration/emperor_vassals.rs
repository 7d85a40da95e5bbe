//! What an emperor gives every vassal: tyrant mode (each vassal runs as its file's
//! owner), the templates of `vassals-inherit`/`vassals-include`, and the
//! `as-emperor-setns` hooks run inside a vassal's namespaces.

use std::{os::unix::fs::PermissionsExt, process::Command};

use nix::unistd::{chown, Pid, User};
use steward_testkit::{field, root_or_skip, steward_bin, Steward, TestDir};

use crate::emperor::{vassal, vassal_master, vassal_ready};

/// The real, effective, saved and filesystem uids of `pid`, from /proc.
fn uids(pid: Pid) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line["Uid:".len()..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pid of the worker that answered `GET /` on `port` ("hello from worker 1
/// generation 1 pid 123").
fn worker_pid(port: u16) -> Pid {
    let response = steward_testkit::get((std::net::Ipv4Addr::LOCALHOST, port).into(), "/").unwrap();
    assert_eq!(response.status, 200);
    let pid = response.body.split_whitespace().last().unwrap();
    Pid::from_raw(pid.parse().unwrap())
}

fn owned_by(path: &str, user: &User) {
    chown(path, Some(user.uid), Some(user.gid)).unwrap();
}

#[test]
fn a_tyrants_vassals_run_as_their_files_owners_and_no_one_else() {
    if !root_or_skip("chowns vassal files to other users and drops to them") {
        return;
    }
    let nobody = User::from_name("nobody").unwrap().unwrap();
    let daemon = User::from_name("daemon").unwrap().unwrap();
    let dir = TestDir::new("emperor-tyrant");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let at = |name: &str| vassals.join(name).to_str().unwrap().to_owned();
    std::fs::write(at("a.toml"), vassal(1)).unwrap();
    owned_by(&at("a.toml"), &nobody);
    std::fs::write(at("b.toml"), format!("{}uid = \"root\"\n", vassal(1))).unwrap();
    owned_by(&at("b.toml"), &nobody);
    // Root's own file: no vassal runs as root in tyrant mode.
    std::fs::write(at("c.toml"), vassal(1)).unwrap();
    let record = dir.at("record");
    let config = dir.write(
        "emperor.toml",
        &format!(
            "emperor-tyrant = true\nemperor-throttle = 100\n\
             hook-as-emperor = ['exec:echo $UWSGI_VASSAL_UID $UWSGI_VASSAL_GID >> {record}']\n"
        ),
    );
    // The emperor's usual place for its notify socket is private to root here: the
    // vassals, dropped to their owners, could not reach it.
    let private = dir.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor")
        .arg(&vassals)
        .args(["--config", &config])
        .env("XDG_RUNTIME_DIR", &private);
    let mut emperor = Steward::spawn(cmd);

    let (pid, port) = vassal_ready(&emperor, 0, "a.toml");
    let n = nobody.uid.to_string();
    assert_eq!(uids(pid), [n.as_str(); 4].join(" "));
    assert_eq!(uids(worker_pid(port)), [n.as_str(); 4].join(" "));
    let started = emperor.log.wait_event("emperor-started", &[]);
    assert!(!field(&started, "notify").starts_with(private.to_str().unwrap()));
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        format!("{} {}", nobody.uid, nobody.gid)
    );

    let (_, refused) = emperor
        .log
        .wait_event_from(0, "vassal-refused", &[("vassal", "b.toml")]);
    assert!(refused.contains("b.toml:4"), "{refused}");
    assert!(refused.contains("uid 0"), "{refused}");
    let (_, refused) = emperor
        .log
        .wait_event_from(0, "vassal-refused", &[("vassal", "c.toml")]);
    assert!(refused.contains("owned by uid 0"), "{refused}");

    // Given to another user, the vassal starts again as that user.
    let from = emperor.log.len();
    owned_by(&at("a.toml"), &daemon);
    emperor
        .log
        .wait_event_from(from, "vassal-owner-changed", &[("vassal", "a.toml")]);
    let (new_pid, port) = vassal_ready(&emperor, from, "a.toml");
    steward_testkit::wait_gone(pid);
    let d = daemon.uid.to_string();
    assert_eq!(uids(new_pid), [d.as_str(); 4].join(" "));
    assert_eq!(uids(worker_pid(port)), [d.as_str(); 4].join(" "));
    assert!(emperor.stop().success());
}

#[test]
fn a_tyrants_vassal_under_systemd_has_its_own_control_socket_and_sees_the_emperor_die() {
    if !root_or_skip("chowns a vassal file to nobody and drops to it") {
        return;
    }
    let nobody = User::from_name("nobody").unwrap().unwrap();
    let dir = TestDir::new("emperor-tyrant-runtime");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let a = vassals.join("a.toml");
    std::fs::write(&a, vassal(1)).unwrap();
    owned_by(a.to_str().unwrap(), &nobody);
    // Under systemd: RuntimeDirectory= is the emperor's; vassal.a.toml inside it is the
    // vassal's own, where it binds its control socket as nobody.
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor")
        .arg(&vassals)
        .env("STEWARD_EMPEROR_TYRANT", "true")
        .env("RUNTIME_DIRECTORY", &*dir);
    let emperor = Steward::spawn(cmd);
    let (pid, port) = vassal_ready(&emperor, 0, "a.toml");
    let socket = dir.join("vassal.a.toml").join("control.sock");
    let status =
        steward_testkit::steward_client(&["status", "--control-socket", socket.to_str().unwrap()]);
    assert!(status.status.success(), "{status:?}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().uid(),
        nobody.uid.as_raw()
    );

    // Dropped to nobody, it still hears of its emperor's death at once, and stops.
    let from = emperor.log.len();
    emperor.signal(nix::sys::signal::Signal::SIGKILL);
    emperor.log.wait_event_from(from, "emperor-lost", &[]);
    steward_testkit::wait_gone(pid);
    assert!(steward_testkit::get((std::net::Ipv4Addr::LOCALHOST, port).into(), "/").is_err());
}

#[test]
fn every_vassal_reads_the_emperors_templates_around_its_own_file() {
    let dir = TestDir::new("emperor-templates");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let record = dir.at("record");
    let base = dir.write("base.toml", "workers = 2\n");
    let extra = dir.write(
        "extra.ini",
        &format!("[uwsgi]\nhook-as-vassal = exec:echo included $STEWARD_VASSAL >> {record}\n"),
    );
    // a.toml says nothing of workers: the template's; b.toml overrides it.
    std::fs::write(
        vassals.join("a.toml"),
        format!(
            "listen = [\"127.0.0.1:0\"]\ncommand = [\"{}\"]\n",
            steward_testkit::demo_bin()
        ),
    )
    .unwrap();
    std::fs::write(vassals.join("b.toml"), vassal(1)).unwrap();
    // uWSGI's spelling, in the emperor's ini.
    let ini = dir.write(
        "emperor.ini",
        &format!(
            "[uwsgi]\nemperor = {}\nvassals-inherit = {base}\nvassals-include = {extra}\n",
            vassals.display()
        ),
    );
    let mut cmd = Command::new(steward_bin());
    cmd.args(["--config", &ini]);
    let mut emperor = Steward::spawn(cmd);
    assert_eq!(field(&vassal_master(&emperor, 0, "a.toml"), "workers"), "2");
    assert_eq!(field(&vassal_master(&emperor, 0, "b.toml"), "workers"), "1");
    let mut included: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    included.sort();
    assert_eq!(included, ["included a.toml", "included b.toml"]);

    // A template is read again at the vassal's reload (it is not watched itself).
    std::fs::write(&base, "workers = 3\n").unwrap();
    let from = emperor.log.len();
    let file = std::fs::File::options()
        .append(true)
        .open(vassals.join("a.toml"))
        .unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    drop(file);
    emperor
        .log
        .wait_event_from(from, "vassal-reloading", &[("vassal", "a.toml")]);
    emperor
        .log
        .wait_event_from(from, "generation-ready", &[("workers", "3")]);
    assert!(emperor.stop().success());
}

#[test]
fn as_emperor_setns_hooks_run_inside_a_vassals_own_namespaces_only() {
    if !root_or_skip("unshares namespaces") {
        return;
    }
    let dir = TestDir::new("emperor-setns");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    std::fs::write(
        vassals.join("a.toml"),
        format!(
            "{}unshare = \"uts\"\nhook-in-jail = ['hostname:steward-vassal-a']\n",
            vassal(1)
        ),
    )
    .unwrap();
    // No namespace of its own: nothing to enter, the hooks do not run for it.
    std::fs::write(vassals.join("b.toml"), vassal(1)).unwrap();
    // Its master is pid 1 of its own pid namespace.
    std::fs::write(
        vassals.join("c.toml"),
        format!("{}unshare = \"pid,mount\"\n", vassal(1)),
    )
    .unwrap();
    // Each vassal's hooks write to a record of its own (uWSGI's UWSGI_VASSAL_CONFIG).
    let record = dir.at("record");
    let to = format!(">> {record}.$(basename $UWSGI_VASSAL_CONFIG)");
    let config = dir.write(
        "emperor.toml",
        &format!(
            "hook-as-emperor-setns = [\
             'uts exec:echo $UWSGI_VASSAL_PID $(hostname) $(readlink /proc/self/ns/uts) {to}', \
             'exec:echo all $(hostname) $(readlink /proc/self/ns/pid) {to}']\n"
        ),
    );
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor").arg(&vassals).args(["--config", &config]);
    let mut emperor = Steward::spawn(cmd);
    let (a, _) = vassal_ready(&emperor, 0, "a.toml");
    let (at, ran) = emperor
        .log
        .wait_event_from(0, "vassal-setns", &[("vassal", "a.toml")]);
    assert_eq!(field(&ran, "namespaces"), "uts");
    emperor
        .log
        .wait_event_from(at + 1, "vassal-setns", &[("vassal", "a.toml")]);
    let (_, ran) = emperor
        .log
        .wait_event_from(0, "vassal-setns", &[("vassal", "c.toml")]);
    assert_eq!(field(&ran, "namespaces"), "pid,mnt");
    let c = field(&ran, "pid");
    // Every vassal's READY=1 handled, setns hooks included.
    emperor.log.wait_event("emperor-ready", &[]);

    let ns = |pid: &str, kind: &str| {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
        link.display().to_string()
    };
    assert_ne!(ns(&a.to_string(), "uts"), ns("self", "uts"));
    assert_ne!(ns(&c, "pid"), ns("self", "pid"));
    let host = nix::unistd::gethostname().unwrap();
    let host = host.to_str().unwrap();
    assert_ne!(host, "steward-vassal-a");
    let read = |name: &str| std::fs::read_to_string(format!("{record}.{name}")).unwrap();
    assert_eq!(
        read("a.toml"),
        format!(
            "{a} steward-vassal-a {}\nall steward-vassal-a {}\n",
            ns(&a.to_string(), "uts"),
            ns("self", "pid")
        )
    );
    assert_eq!(read("c.toml"), format!("all {host} {}\n", ns(&c, "pid")));
    assert!(!std::path::Path::new(&format!("{record}.b.toml")).exists());
    assert!(emperor.stop().success());
}

#[test]
fn a_tyrants_on_demand_vassal_runs_as_its_files_owner_too() {
    if !root_or_skip("chowns a vassal file to another user and drops to it") {
        return;
    }
    let nobody = User::from_name("nobody").unwrap().unwrap();
    let dir = TestDir::new("emperor-tyrant-on-demand");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let file = vassals.join("lazy.toml");
    std::fs::write(&file, format!("{}on-demand = true\n", vassal(1))).unwrap();
    owned_by(file.to_str().unwrap(), &nobody);
    let config = dir.write("emperor.toml", "emperor-tyrant = true\n");
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor").arg(&vassals).args(["--config", &config]);
    let mut emperor = Steward::spawn(cmd);
    let waiting = emperor
        .log
        .wait_event("vassal-on-demand", &[("vassal", "lazy.toml")]);
    let address: std::net::SocketAddr = field(&waiting, "sockets").parse().unwrap();

    // Started by socket activation, not by std's Command: the owner must still apply.
    let port = address.port();
    let worker = worker_pid(port);
    let started = emperor
        .log
        .wait_event("vassal-started", &[("vassal", "lazy.toml")]);
    let master = Pid::from_raw(field(&started, "pid").parse().unwrap());
    let n = nobody.uid.to_string();
    assert_eq!(uids(master), [n.as_str(); 4].join(" "));
    assert_eq!(uids(worker), [n.as_str(); 4].join(" "));
    assert!(emperor.stop().success());
}

#[test]
fn a_tyrants_on_demand_sockets_are_bound_with_the_owners_rights_only() {
    use std::os::unix::fs::MetadataExt;
    if !root_or_skip("chowns vassal files to another user") {
        return;
    }
    let nobody = User::from_name("nobody").unwrap().unwrap();
    let dir = TestDir::new("emperor-tyrant-binds");
    let vassals = dir.join("vassals");
    std::fs::create_dir(&vassals).unwrap();
    let private = dir.join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let own = dir.join("nobodys");
    std::fs::create_dir(&own).unwrap();
    owned_by(own.to_str().unwrap(), &nobody);
    let on_demand = |listen: &str| {
        format!(
            "listen = [\"{listen}\"]\nworkers = 1\ncommand = [\"{}\"]\non-demand = true\n",
            steward_testkit::demo_bin()
        )
    };
    let files = [
        (
            "root-dir.toml",
            format!("unix:{}/a.sock", private.display()),
        ),
        ("low-port.toml", "127.0.0.1:81".to_owned()),
        ("own-dir.toml", format!("unix:{}/c.sock", own.display())),
    ];
    for (name, listen) in &files {
        let path = vassals.join(name);
        std::fs::write(&path, on_demand(listen)).unwrap();
        owned_by(path.to_str().unwrap(), &nobody);
    }
    let config = dir.write("emperor.toml", "emperor-tyrant = true\n");
    let mut cmd = Command::new(steward_bin());
    cmd.arg("emperor").arg(&vassals).args(["--config", &config]);
    let mut emperor = Steward::spawn(cmd);

    // Where nobody could not bind, root does not bind for nobody's file.
    let refused = emperor
        .log
        .wait_event("vassal-bind-failed", &[("vassal", "root-dir.toml")]);
    assert!(refused.contains("Permission denied"), "{refused}");
    assert!(!private.join("a.sock").exists());
    let refused = emperor
        .log
        .wait_event("vassal-bind-failed", &[("vassal", "low-port.toml")]);
    assert!(refused.contains("port 81 is privileged"), "{refused}");
    // Where it could, the socket is bound, and it is nobody's.
    emperor
        .log
        .wait_event("vassal-on-demand", &[("vassal", "own-dir.toml")]);
    let socket = std::fs::metadata(own.join("c.sock")).unwrap();
    assert_eq!(socket.uid(), nobody.uid.as_raw());
    assert!(emperor.stop().success());
}
