//! Existing uWSGI files: config logic, comments, arithmetic and `http` read as uWSGI
//! reads them, and big files checked quickly.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use steward_testkit::{demo_bin, steward_bin, Steward, TestDir};

/// `steward check ARGS`: exit code, stdout, stderr.
pub(crate) fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(steward_bin())
        .arg("check")
        .args(args)
        .env_remove("STEWARD_CONFIG")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn start(config: &str, env: &[(&str, &str)]) -> Steward {
    let mut cmd = Command::new(steward_bin());
    cmd.arg("--config").arg(config).envs(env.iter().copied());
    Steward::spawn(cmd)
}

/// A file as published uWSGI images write them: a false condition's body is not
/// applied, a true one's is, comments follow values, the worker count is arithmetic on
/// `%k`, and `http =` is the socket the workers serve on.
#[test]
fn a_uwsgi_file_with_logic_comments_and_arithmetic_runs_as_uwsgi_reads_it() {
    let dir = TestDir::new("uwsgi-logic");
    let file = dir.write(
        "app.ini",
        &format!(
            "[uwsgi]\nmaster = true ; always\nhttp = 127.0.0.1:0\nprocesses = %(%k * 0 + 2)\n\
             if-env = STEWARD_TEST_NOT_SET\nprocesses = 7\nendif =\n\
             if-env = STEWARD_TEST_APP_ENV\nenv = APP_ENV=%(_)\nendif\n\
             for = A B\nenv = LOOP_%(_)=1\nendfor\n\
             worker-reload-mercy = 5  # seconds\nvacuum = true   ; remove sockets\n\
             hook-master-start = unix_signal:15 gracefully_kill_them_all\n\
             virtualenv = /srv/venv\nprocname-prefix = %(virtualenv) \n\
             command = {}\n",
            demo_bin()
        ),
    );
    let (code, _, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(0), "{stderr}");
    for expected in [
        format!("{file}:2: uWSGI's master: steward is always a master; ignored"),
        format!("{file}:3: uWSGI's http = 127.0.0.1:0 runs uWSGI's HTTP router"),
        format!("{file}:14: worker-reload-mercy = 5  # seconds: read as 5"),
        format!("{file}:15: vacuum = true   ; remove sockets: uWSGI keeps the comment"),
        format!("{file}:16: hook-master-start = unix_signal:15 gracefully_kill_them_all: uWSGI's unix_signal asks that SIGTERM be a graceful shutdown"),
        format!("{file}:17: uWSGI option \"virtualenv\" is not supported by steward; its value is only used where %(virtualenv) refers to it"),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} missing from:\n{stderr}");
    }
    let mut steward = start(&file, &[("STEWARD_TEST_APP_ENV", "prod")]);
    steward.wait_generation_ready(1);
    let workers = steward.workers(1, 2);
    let environ = steward_testkit::environ(workers[0].1);
    assert_eq!(environ.get("APP_ENV").map(String::as_str), Some("prod"));
    assert_eq!(environ.get("LOOP_B").map(String::as_str), Some("1"));
    assert!(steward.get("/").unwrap().body.contains("hello from worker"));
    assert!(steward.stop().success());
}

/// 5 MB of unsupported keys: each is one warning, and checking takes time in
/// proportion to the file (it took 40 s when every key was compared with every option
/// name by a full edit distance).
#[test]
fn a_5_mb_file_of_unsupported_keys_is_checked_quickly() {
    let dir = TestDir::new("uwsgi-big");
    let mut text = String::from("[uwsgi]\nhttp-socket = 127.0.0.1:0\ncommand = /bin/true\n");
    let mut keys = 0;
    while text.len() < 5 << 20 {
        text.push_str(&format!(
            "unsupported-key-{keys} = some value number {keys}\n"
        ));
        keys += 1;
    }
    let file = dir.write("big.ini", &text);
    let (code, stderr, cpu) = check_with_cpu_time(&["--config", &file]);
    assert_eq!(code, Some(0), "{}", &stderr[..stderr.len().min(2000)]);
    let warned = stderr
        .lines()
        .filter(|l| l.contains("is not supported by steward; ignored"))
        .count();
    assert_eq!(warned, keys);
    // CPU time, not wall time, so that other tests running beside it do not count: a
    // debug build takes about 2 s here, the quadratic reader took minutes.
    assert!(cpu < Duration::from_secs(15), "check took {cpu:?} of CPU");
}

/// `steward check ARGS`: exit code, stderr, and the CPU time it used, read from
/// /proc/PID/stat once it has exited (a zombie still has its times) and before it is
/// reaped.
fn check_with_cpu_time(args: &[&str]) -> (Option<i32>, String, Duration) {
    let mut child = Command::new(steward_bin())
        .arg("check")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let stat_path = format!("/proc/{}/stat", child.id());
    let deadline = Instant::now() + Duration::from_secs(600);
    let ticks = loop {
        let stat = std::fs::read_to_string(&stat_path).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        if fields[0] == "Z" {
            let tick = |i: usize| fields[i].parse::<u64>().unwrap();
            break tick(11) + tick(12);
        }
        assert!(Instant::now() < deadline, "steward check still runs");
        std::thread::sleep(Duration::from_millis(20));
    };
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    let status = child.wait().unwrap();
    let cpu = Duration::from_millis(ticks * 1000 / per_second);
    (status.code(), reader.join().unwrap(), cpu)
}

/// A config symlinked to /dev/zero is refused at once, not read for ever.
#[test]
fn a_config_file_larger_than_any_configuration_is_refused() {
    let dir = TestDir::new("config-zero");
    let file = dir.at("app.ini");
    std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
    let started = Instant::now();
    let (code, _, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "steward: error: {file}: larger than 16 MiB: not a configuration"
        )),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
