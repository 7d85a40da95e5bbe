//! Existing uWSGI files: config logic, comments, arithmetic and `http` read as uWSGI
//! reads them, and big files checked quickly.

use std::{
    process::Command,
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
             command = {}\n",
            demo_bin()
        ),
    );
    let (code, _, stderr) = check(&["--config", &file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}:3: uWSGI's http = 127.0.0.1:0 runs uWSGI's HTTP router"
        )),
        "{stderr}"
    );
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
    let started = Instant::now();
    let (code, _, stderr) = check(&["--config", &file]);
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{}", &stderr[..stderr.len().min(2000)]);
    let warned = stderr
        .lines()
        .filter(|l| l.contains("is not supported by steward; ignored"))
        .count();
    assert_eq!(warned, keys);
    // A debug build on a loaded machine: the fixed reader takes about 3 s.
    assert!(took < Duration::from_secs(20), "check took {took:?}");
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
