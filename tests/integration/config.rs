//! Options from config files, STEWARD_* variables and flags: `steward check`, stewards
//! started from TOML and uWSGI ini files, precedence, and the re-read on SIGHUP.

use std::process::{Command, Output};

use nix::sys::signal::Signal;

use steward_testkit::{demo_bin, steward_bin, Steward, TestDir};

fn check(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(steward_bin())
        .arg("check")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The line of `check`'s output that sets `option` (its first value).
fn line_of<'a>(output: &'a str, option: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("{option} = ")))
        .unwrap_or_else(|| panic!("no {option} in:\n{output}"))
}

/// Starts `steward --config FILE ARGS` with `env`.
fn start_from(config: &str, env: &[(&str, &str)], args: &[&str]) -> Steward {
    let mut cmd = Command::new(steward_bin());
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied());
    Steward::spawn(cmd)
}

#[test]
fn check_prints_every_value_with_its_source() {
    let dir = TestDir::new("check-sources");
    let file = dir.write(
        "app.toml",
        "# the demo\nworkers = 3\nlisten = [\"127.0.0.1:8000\", \"admin=127.0.0.1:8001\"]\ncommand = [\"/usr/bin/app\", \"--port\", \"8000\"]\n",
    );
    let (code, stdout, stderr) = check(
        &[("STEWARD_READY", "notify")],
        &[
            "--print",
            "--config-only",
            "--config",
            &file,
            "--vacuum",
            "--worker-reload-mercy",
            "5s",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        line_of(&stdout, "workers").ends_with(&format!("# {file}:2")),
        "{stdout}"
    );
    let listen: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("listen = "))
        .collect();
    assert_eq!(listen.len(), 2, "{stdout}");
    assert!(listen[1].starts_with("listen = admin=127.0.0.1:8001"));
    assert!(line_of(&stdout, "command").starts_with("command = /usr/bin/app --port 8000"));
    assert!(line_of(&stdout, "ready").ends_with("# STEWARD_READY"));
    assert!(line_of(&stdout, "ready").starts_with("ready = notify"));
    assert!(line_of(&stdout, "vacuum").ends_with("# --vacuum"));
    assert!(line_of(&stdout, "worker-reload-mercy").starts_with("worker-reload-mercy = 5s"));
    assert!(line_of(&stdout, "worker-stop-signal").ends_with("# default"));
    assert!(stdout.contains("# pidfile is not set"), "{stdout}");
}

#[test]
fn check_names_the_place_of_each_error_and_exits_1() {
    let dir = TestDir::new("check-errors");
    let misspelt = dir.write(
        "misspelt.yaml",
        "command: /usr/bin/app\nworkers: 2\ntouch-relaod: /etc/app/reload\n",
    );
    let (code, stdout, stderr) = check(&[], &["--config", &misspelt]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{misspelt}:3: unknown option \"touch-relaod\" (did you mean \"touch-reload\"?)"
        )),
        "{stderr}"
    );

    let bad_value = dir.write(
        "bad.ini",
        "[steward]\ncommand = /usr/bin/app\nready = sometimes\n",
    );
    let (code, _, stderr) = check(&[], &["--config", &bad_value]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("{bad_value}:3: ready: invalid readiness mode")),
        "{stderr}"
    );

    let (code, _, stderr) = check(&[("STEWARD_WORKERS", "many")], &["--", "/usr/bin/app"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("STEWARD_WORKERS: workers: invalid number \"many\""),
        "{stderr}"
    );

    let (code, _, stderr) = check(&[], &["--config", "/nonexistent/app.toml"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("cannot read /nonexistent/app.toml"),
        "{stderr}"
    );
}

#[test]
fn check_lists_each_unsupported_uwsgi_option_as_a_warning() {
    let dir = TestDir::new("check-uwsgi");
    let file = dir.write(
        "app.ini",
        "[uwsgi]\nmodule = app.wsgi:application\nhttp-socket = 127.0.0.1:8000\nprocesses = 4\nlisten = 256\nthunder-lock = true\nvacuum\ncommand = /usr/bin/app\n",
    );
    let (code, stdout, stderr) = check(&[], &["--print", "--config-only", "--config", &file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warning: {file}:2: uWSGI option \"module\" is not supported by steward; ignored"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {file}:6: uWSGI option \"thunder-lock\" is not supported by steward; ignored"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {file}:5: uWSGI's listen = 256 is the socket backlog"
        )),
        "{stderr}"
    );
    assert!(line_of(&stdout, "workers").starts_with("workers = 4"));
    assert!(line_of(&stdout, "listen").starts_with("listen = 127.0.0.1:8000"));
    assert!(line_of(&stdout, "listen-backlog").starts_with("listen-backlog = 256"));
    // A bare flag is on, as uWSGI reads it.
    let vacuum = line_of(&stdout, "vacuum");
    assert!(
        vacuum.starts_with("vacuum = true") && vacuum.ends_with(&format!("# {file}:7")),
        "{stdout}"
    );
}

#[test]
fn a_steward_started_from_a_toml_file_serves() {
    let dir = TestDir::new("toml-serves");
    let file = dir.write(
        "app.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nworkers = 2\ncommand = [\"{}\"]\n",
            demo_bin()
        ),
    );
    let steward = start_from(&file, &[], &[]);
    steward.wait_generation_ready(1);
    assert_eq!(steward.worker_pids(1).len(), 2);
    let response = steward.get("/").unwrap();
    assert!(response.body.contains("generation 1"), "{}", response.body);
}

#[test]
fn a_steward_started_from_a_uwsgi_ini_serves() {
    let dir = TestDir::new("ini-serves");
    let file = dir.write(
        "app.ini",
        &format!(
            "[uwsgi]\nmodule = app:wsgi\nsocket = 127.0.0.1:0\nprocesses = 2\ncommand = {}\n",
            demo_bin()
        ),
    );
    let steward = start_from(&file, &[], &[]);
    steward.wait_generation_ready(1);
    steward
        .log
        .wait_for(&["uWSGI option \"module\" is not supported"]);
    assert_eq!(steward.worker_pids(1).len(), 2);
    assert!(steward.get("/").unwrap().body.contains("hello from worker"));
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_the_environment() {
    let dir = TestDir::new("precedence");
    let file = dir.write(
        "app.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nworkers = 2\ncommand = \"{}\"\n",
            demo_bin()
        ),
    );
    let steward = start_from(&file, &[("STEWARD_WORKERS", "3")], &[]);
    steward.wait_generation_ready(1);
    assert_eq!(steward.worker_pids(1).len(), 3);
    drop(steward);

    let steward = start_from(
        &file,
        &[("STEWARD_WORKERS", "3")],
        &["--workers", "1", "--listen", "127.0.0.1:0"],
    );
    steward.wait_generation_ready(1);
    assert_eq!(steward.worker_pids(1).len(), 1);
    assert!(steward
        .get("/")
        .unwrap()
        .body
        .contains("hello from worker 1"));
}

#[test]
fn sighup_reads_the_file_again_and_the_new_generation_runs_with_it() {
    let dir = TestDir::new("hup-workers");
    let text = |workers: usize, backlog: usize| {
        format!(
            "listen = \"127.0.0.1:0\"\nworkers = {workers}\nlisten-backlog = {backlog}\ncommand = [\"{}\"]\n",
            demo_bin()
        )
    };
    let file = dir.write("app.toml", &text(2, 1024));
    let steward = start_from(&file, &[], &[]);
    steward.wait_generation_ready(1);
    assert_eq!(steward.worker_pids(1).len(), 2);

    dir.write("app.toml", &text(3, 64));
    steward.signal(Signal::SIGHUP);
    steward.wait_generation_ready(2);
    assert_eq!(steward.worker_pids(2).len(), 3);
    steward.log.wait_event(
        "needs-restart",
        &[("option", "listen-backlog"), ("was", "1024"), ("now", "64")],
    );
    assert!(steward.get("/").unwrap().body.contains("generation 2"));
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_workers_serving() {
    let dir = TestDir::new("hup-broken");
    let file = dir.write(
        "app.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nworkers = 2\ncommand = [\"{}\"]\n",
            demo_bin()
        ),
    );
    let steward = start_from(&file, &[], &[]);
    steward.wait_generation_ready(1);

    dir.write("app.toml", "listen = \"127.0.0.1:0\"\nworkers = \"two\"\n");
    steward.signal(Signal::SIGHUP);
    let failed = steward.log.wait_event("reload-failed", &[]);
    assert!(
        failed.contains(&format!("{file}:2: workers: invalid number")),
        "{failed}"
    );
    assert!(steward.get("/").unwrap().body.contains("generation 1"));
    assert!(
        steward.worker_pids(2).is_empty(),
        "{:?}",
        steward.log.lines()
    );

    // Fixed, the next SIGHUP reloads.
    dir.write(
        "app.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\nworkers = 1\ncommand = [\"{}\"]\n",
            demo_bin()
        ),
    );
    steward.signal(Signal::SIGHUP);
    steward.wait_generation_ready(3);
    assert_eq!(steward.worker_pids(3).len(), 1);
}

#[test]
fn reload_strategy_chain_makes_sighup_a_chain_reload() {
    let demo = demo_bin();
    let steward = Steward::start(&["--workers", "2", "--reload-strategy", "chain"], &[&demo]);
    steward.wait_generation_ready(1);
    steward.signal(Signal::SIGHUP);
    steward
        .log
        .wait_event("reload-started", &[("strategy", "chain")]);
    steward.wait_generation_ready(2);
}

#[test]
fn a_misspelt_flag_is_a_usage_error_with_a_suggestion_not_the_worker_command() {
    let (code, stdout, stderr) = check(&[], &["--touch-relaod", "/srv/app/reload"]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stderr.contains("'--touch-relaod'"), "{stderr}");
    assert!(stderr.contains("--touch-reload"), "{stderr}");

    let output = Command::new(steward_bin())
        .args(["--workerz", "2", "--", "/bin/true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'--workerz'"), "{stderr}");

    // After `--`, or once the command has begun, words that look like flags are its own.
    let (code, stdout, stderr) = check(&[], &["--print", "--config-only", "--", "--weird", "-x"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(line_of(&stdout, "command").starts_with("command = --weird -x "));
    let (code, stdout, stderr) = check(
        &[],
        &["--print", "--config-only", "/usr/bin/app", "--port", "8000"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(line_of(&stdout, "command").starts_with("command = /usr/bin/app --port 8000 "));
}

#[test]
fn a_relative_config_path_is_read_again_after_chdir() {
    let dir = TestDir::new("relative-chdir");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let text = |workers: usize| {
        format!(
            "listen = \"127.0.0.1:0\"\nworkers = {workers}\nchdir = \"{}\"\ncommand = [\"{}\"]\n",
            elsewhere.display(),
            demo_bin()
        )
    };
    dir.write("app.toml", &text(1));
    let mut cmd = Command::new(steward_bin());
    cmd.current_dir(&dir).args(["--config", "app.toml"]);
    let steward = Steward::spawn(cmd);
    steward.wait_generation_ready(1);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", steward.pid())).unwrap(),
        elsewhere
    );

    dir.write("app.toml", &text(2));
    steward.signal(Signal::SIGHUP);
    steward.wait_generation_ready(2);
    assert_eq!(steward.worker_pids(2).len(), 2, "{:?}", steward.log.lines());
}

#[test]
fn a_uwsgi_ini_has_its_placeholders_magic_and_environment_variables_expanded() {
    let dir = TestDir::new("uwsgi-magic");
    let file = dir.write(
        "shop.ini",
        "[uwsgi]\nbase = /srv/%n\nchdir = %(base)/current\npidfile = %d%n.pid\nuid = $(SHOP_USER)\ncommand = /usr/bin/app\n",
    );
    let (code, stdout, stderr) = check(
        &[("SHOP_USER", "shop")],
        &["--print", "--config-only", "--config", &file],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(line_of(&stdout, "chdir").starts_with("chdir = /srv/shop/current "));
    assert!(
        line_of(&stdout, "pidfile").starts_with(&format!("pidfile = {}/shop.pid ", dir.display()))
    );
    assert!(line_of(&stdout, "uid").starts_with("uid = shop "));
    assert!(
        !stderr.contains("base"),
        "a placeholder is no option: {stderr}"
    );
}

/// A user, group or program missing here fails the check (ExecStartPre= is the guard of
/// the start); `--config-only` makes them warnings, for a configuration checked before
/// the packages that provide them are installed.
#[test]
fn check_refuses_an_unknown_user_or_a_missing_program_naming_where_it_was_set() {
    let dir = TestDir::new("check-names");
    let file = dir.write(
        "app.toml",
        "listen = \"127.0.0.1:0\"\ncommand = \"/bin/true\"\nuid = \"no-such-user-here\"\n",
    );
    let (code, _, stderr) = check(&[], &["--config", &file]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {file}:3: uid: no user named \"no-such-user-here\"\n"
        )),
        "{stderr}"
    );
    let (code, stdout, stderr) = check(&[], &["--config-only", "--print", "--config", &file]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(line_of(&stdout, "uid").starts_with("uid = no-such-user-here "));
    assert!(
        stderr.contains(&format!(
            "warning: {file}:3: uid: no user named \"no-such-user-here\": a start here would fail"
        )),
        "{stderr}"
    );

    let listen = ("STEWARD_LISTEN", "127.0.0.1:0");
    let (code, _, stderr) = check(
        &[
            listen,
            ("STEWARD_CHOWN_SOCKET", "nobody:no-such-group-here"),
        ],
        &["--", "/bin/true"],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: STEWARD_CHOWN_SOCKET: chown-socket: no group named \"no-such-group-here\""
        ),
        "{stderr}"
    );
    let (_, _, stderr) = check(
        &[listen, ("STEWARD_GID", "no-such-group-here")],
        &["--", "/bin/true"],
    );
    assert!(
        stderr.contains("error: STEWARD_GID: gid: no group named \"no-such-group-here\""),
        "{stderr}"
    );
    let (code, _, stderr) = check(&[listen], &["--", "no-such-program-here", "--flag"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("error: the command line (after --): worker command \"no-such-program-here\" not found in PATH"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&[listen], &["--uid", "nobody", "--", "/bin/true"]);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    // A relative program is looked up from chdir, as a start does.
    let (code, _, stderr) = check(&[listen], &["--chdir", "/usr", "--", "./bin/env"]);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
}

#[test]
fn reload_wait_says_why_a_broken_file_failed_the_reload() {
    let dir = TestDir::new("reload-wait-broken");
    let control = dir.join("control.sock");
    let text = |workers: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\ncontrol-socket = \"{}\"\nworkers = {workers}\ncommand = [\"{}\"]\n",
            control.display(),
            demo_bin()
        )
    };
    let file = dir.write("app.toml", &text("1"));
    let steward = start_from(&file, &[], &[]);
    steward.wait_generation_ready(1);

    dir.write("app.toml", &text("\"many\""));
    let reload = steward_testkit::reload_wait(&control);
    let stderr = String::from_utf8_lossy(&reload.stderr);
    assert_eq!(reload.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{file}:3: workers: invalid number \"many\"")),
        "{stderr}"
    );
    assert_eq!(steward.get("/").unwrap().generation(), 1);
}

/// A hook string is checked at a reload like any other value: a broken one fails the
/// reload with its file and line, rather than being kept aside for the next start to
/// trip over (hooks need a restart to change, but a config that cannot start is no
/// config to accept).
#[test]
fn reload_wait_fails_on_a_broken_hook_string_and_the_old_generation_serves() {
    let dir = TestDir::new("reload-wait-broken-hook");
    let control = dir.join("control.sock");
    let text = |hook: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\ncontrol-socket = \"{}\"\ncommand = [\"{}\"]\nhook-pre-app = [\"print:fine\", \"{hook}\"]\n",
            control.display(),
            demo_bin()
        )
    };
    let file = dir.write("app.toml", &text("print:also fine"));
    let steward = start_from(&file, &[], &[]);
    steward.wait_generation_ready(1);

    dir.write("app.toml", &text("mkdri:/x"));
    let reload = steward_testkit::reload_wait(&control);
    let stderr = String::from_utf8_lossy(&reload.stderr);
    assert_eq!(reload.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}:4: hook-pre-app = \"mkdri:/x\": unknown hook action \"mkdri\""
        )),
        "{stderr}"
    );
    assert_eq!(steward.get("/").unwrap().generation(), 1);
}

/// uWSGI's `env = VAR=VALUE`, repeated in an ini: the workers and the hooks have them.
#[test]
fn env_sets_variables_for_the_workers_and_the_hooks() {
    let dir = TestDir::new("env-option");
    let seen = dir.join("hook.out");
    let file = dir.write(
        "app.ini",
        &format!(
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nenv = SHOP_MODE=production\nenv = SHOP_LIST=a,b=c\nhook-as-user = exec:echo \"$SHOP_MODE\" > {}\ncommand = {}\n",
            seen.display(),
            demo_bin()
        ),
    );
    let mut command = Command::new(steward_bin());
    command.args(["--config", &file]);
    let mut steward = Steward::spawn(command);
    steward.wait_generation_ready(1);
    let (_, worker) = steward.worker_pids(1)[0];
    let env = steward_testkit::environ(worker);
    assert_eq!(env["SHOP_MODE"], "production");
    assert_eq!(env["SHOP_LIST"], "a,b=c");
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), "production\n");
    steward.signal(Signal::SIGTERM);
    assert_eq!(steward.wait_exit(steward_testkit::DEADLINE).code(), Some(0));
}

#[test]
fn an_env_value_without_an_equals_sign_is_refused_naming_the_option() {
    let dir = TestDir::new("env-bad");
    let file = dir.write(
        "app.toml",
        "command = \"/bin/true\"\nenv = [\"SHOP_MODE\"]\n",
    );
    let (code, _, stderr) = check(&[], &["--config", &file]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("env"), "{stderr}");
    assert!(stderr.contains("expected VAR=VALUE"), "{stderr}");
}
