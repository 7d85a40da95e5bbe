//! The ini reader, from text to settings and warnings.

use std::path::PathBuf;

use super::{uwsgi::UWSGI_ONLY, *};

fn read(text: &str) -> Result<FileSettings, ConfigError> {
    settings(Path::new("/etc/app.ini"), text)
}

fn at(line: usize) -> Origin {
    Origin::File {
        path: PathBuf::from("/etc/app.ini"),
        line,
    }
}

fn keys(file: &FileSettings) -> Vec<(&str, &crate::RawValue, usize)> {
    file.settings
        .iter()
        .map(|s| {
            let Origin::File { line, .. } = s.origin else {
                unreachable!()
            };
            (s.key.as_str(), &s.value, line)
        })
        .collect()
}

#[test]
fn repeated_keys_accumulate_in_order() {
    let file = read(
        "; comment\n[other]\nworkers = 9\n\n[steward]\ntouch-reload = /a\n# another\ntouch-reload = /b\nworkers = 2\n",
    )
    .unwrap();
    let one = |v: &str| crate::RawValue::One(v.into());
    assert_eq!(
        keys(&file),
        [
            ("touch-reload", &one("/a"), 6),
            ("touch-reload", &one("/b"), 8),
            ("workers", &one("2"), 9),
        ]
    );
}

#[test]
fn uwsgi_names_are_translated_and_unsupported_ones_warned_about() {
    let file = read(
        "[uwsgi]\nmodule = app:wsgi\nprocesses = 4\nlisten = 128\nsocket = :8000\nthunder-lock = true\nmaster = true\nvacuum = true\n",
    )
    .unwrap();
    let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "/etc/app.ini:2: uWSGI option \"module\" is not supported by steward; ignored",
            "/etc/app.ini:4: uWSGI's listen = 128 is the socket backlog: read as listen-backlog = 128",
            "/etc/app.ini:5: uWSGI's socket = :8000 is read as listen = 0.0.0.0:8000: the workers get the bound socket and speak their own protocol on it",
            "/etc/app.ini:6: uWSGI option \"thunder-lock\" is not supported by steward; ignored",
            "/etc/app.ini:7: uWSGI's master: steward is always a master; ignored",
        ]
    );
    let set: Vec<&str> = file.settings.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(set, ["processes", "listen-backlog", "listen", "vacuum"]);
    assert_eq!(file.settings[2].origin, at(5));
}

/// harakiri is per request in uWSGI; steward's nearest is the per-heartbeat watchdog,
/// and the warning says how they differ.
#[test]
fn harakiri_is_read_as_the_worker_watchdog_with_a_warning() {
    let file = read("[uwsgi]\nharakiri = 30\n").unwrap();
    let warning = file.warnings[0].to_string();
    assert!(
        warning.contains("read as worker-watchdog = 30"),
        "{warning}"
    );
    assert!(
        warning.contains("per heartbeat, not per request"),
        "{warning}"
    );
    assert_eq!(file.settings[0].key, "worker-watchdog");
}

/// uWSGI's after-request hooks are C symbols run in the worker: the warning says
/// where steward has them instead.
#[test]
fn after_request_hooks_point_at_the_embedding_api() {
    let file = read("[uwsgi]\nafter-request-hook = log_it\nafter-request-call = count\n").unwrap();
    let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    let why = "a per-request hook runs in the worker: a program embedding steward registers it with Builder::after_request (see Hooks in the README); ignored";
    assert_eq!(
        warnings,
        [
            format!("/etc/app.ini:2: uWSGI's after-request-hook: {why}"),
            format!("/etc/app.ini:3: uWSGI's after-request-call: {why}"),
        ]
    );
    assert!(file.settings.is_empty());
}

/// A name in the uWSGI-only list is never read, so steward's own options (uWSGI's
/// `lazy-apps` is steward's too) must not be in it.
#[test]
fn the_uwsgi_only_list_names_no_option_of_steward() {
    let own: Vec<&str> = UWSGI_ONLY
        .iter()
        .copied()
        .filter(|key| table::lookup(key).is_some())
        .collect();
    assert_eq!(own, [] as [&str; 0]);
    let file = read("[uwsgi]\nlazy-apps = true\nlazy = true\n").unwrap();
    let one = |v: &str| crate::RawValue::One(v.into());
    assert_eq!(keys(&file), [("lazy-apps", &one("true"), 2)]);
    let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        ["/etc/app.ini:3: uWSGI option \"lazy\" is not supported by steward; ignored"]
    );
}

#[test]
fn a_bare_or_empty_flag_is_true_as_in_uwsgi() {
    let file = read(
        "[uwsgi]\nvacuum\nhonour-stdin =\nenable-threads\nmaster\n[steward]\nauto-procname\nno-swap =\n",
    )
    .unwrap();
    let one = |v: &str| crate::RawValue::One(v.into());
    assert_eq!(
        keys(&file),
        [
            ("vacuum", &one("true"), 2),
            ("honour-stdin", &one("true"), 3),
            ("auto-procname", &one("true"), 7),
            ("no-swap", &one("true"), 8),
        ]
    );
    let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "/etc/app.ini:4: uWSGI option \"enable-threads\" is not supported by steward; ignored",
            "/etc/app.ini:5: uWSGI's master: steward is always a master; ignored",
        ]
    );
    // A bare option that takes a value is still an error naming the line.
    let error = read("[steward]\npidfile\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "/etc/app.ini:2: expected key = value, found \"pidfile\""
    );
}

#[test]
fn uwsgi_placeholders_magic_and_environment_variables_are_substituted() {
    let env = |name: &str| (name == "APP_USER").then(|| "shop".to_owned());
    let file = settings_in(
        Path::new("/etc/uwsgi/shop.ini"),
        "[uwsgi]\nbase = /srv/%n\nchdir = %(base)/current\npidfile = %d%n.pid\nuid = $(APP_USER)\ngid = $(NO_SUCH_VAR)x\nprocname = %c %s %e 100%% %z\nworkers = %k\n",
        &env,
    )
    .unwrap();
    let values: Vec<(&str, String)> = file
        .settings
        .iter()
        .map(|s| match &s.value {
            crate::RawValue::One(v) => (s.key.as_str(), v.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let cpus = std::thread::available_parallelism().unwrap().to_string();
    assert_eq!(
        values,
        [
            ("chdir", "/srv/shop/current".to_owned()),
            ("pidfile", "/etc/uwsgi/shop.pid".to_owned()),
            ("uid", "shop".to_owned()),
            ("gid", "$(NO_SUCH_VAR)x".to_owned()),
            ("procname", "uwsgi shop.ini ini 100% %z".to_owned()),
            ("workers", cpus),
        ]
    );
    let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "/etc/uwsgi/shop.ini:6: $(NO_SUCH_VAR): the environment variable NO_SUCH_VAR is not set; kept as written, as uWSGI keeps it",
            "/etc/uwsgi/shop.ini:7: uWSGI magic variable %z is not supported by steward; kept as written",
        ]
    );
}

#[test]
fn a_steward_section_takes_its_values_as_written() {
    let file = read("[steward]\nprocname = %n $(HOME)\n").unwrap();
    assert_eq!(
        file.settings[0].value,
        crate::RawValue::One("%n $(HOME)".into())
    );
}

#[test]
fn a_uwsgi_socket_without_a_port_is_a_unix_socket() {
    let file =
        read("[uwsgi]\nsocket = /run/app.sock\nhttp-socket = app.sock\nsocket = 127.0.0.1:3031\n")
            .unwrap();
    let values: Vec<&crate::RawValue> = file.settings.iter().map(|s| &s.value).collect();
    let one = |v: &str| crate::RawValue::One(v.into());
    assert_eq!(
        values,
        [
            &one("unix:/run/app.sock"),
            &one("unix:app.sock"),
            &one("127.0.0.1:3031")
        ]
    );
    assert!(file.warnings[0]
        .to_string()
        .contains("socket = /run/app.sock is read as listen = unix:/run/app.sock"));
}

#[test]
fn a_misspelt_option_is_kept_so_that_it_fails_with_a_suggestion() {
    let file = read("[uwsgi]\ntouch-relaod = /x\n").unwrap();
    assert_eq!(file.settings[0].key, "touch-relaod");
    assert!(file.warnings.is_empty());
}

#[test]
fn malformed_files_name_the_line() {
    let error = read("[steward]\nworkers 2\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "/etc/app.ini:2: expected key = value, found \"workers 2\""
    );
    let error = read("[uwsgi\n").unwrap_err();
    assert!(error.to_string().starts_with("/etc/app.ini:1: "), "{error}");
    let error = read("[app]\nworkers = 2\n").unwrap_err();
    assert_eq!(
        error.to_string(),
        "/etc/app.ini: no [uwsgi] or [steward] section"
    );
}

/// The (key, value) settings of `text` read as /etc/app.ini with `env`.
fn values_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    settings_in(Path::new("/etc/app.ini"), text, env)
        .unwrap()
        .settings
        .iter()
        .map(|s| match &s.value {
            crate::RawValue::One(v) => (s.key.clone(), v.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn warnings_of(text: &str) -> Vec<String> {
    read(text)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// The body of a false condition is never applied; a true one's is, with `%(_)`.
#[test]
fn conditions_apply_their_body_only_when_they_hold() {
    let env = |name: &str| match name {
        "APP_ENV" => Some("prod".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let text = "[uwsgi]\nif-env = NOT_SET\nprocesses = 7\nendif =\n\
                if-env = APP_ENV\nprocname = app-%(_)\nendif\n\
                if-env = APP_ENV=dev\nworkers = 9\nelse =\nworkers = 3\nendif\n\
                if-not-env = NOT_SET\nchdir = /srv\nend-if\n\
                if-not-env = APP_ENV\npidfile = /x\nendif\n\
                if-env = EMPTY\nvacuum = true\nendif\n";
    assert_eq!(
        values_with(text, &env),
        pairs(&[
            ("procname", "app-prod"),
            ("workers", "3"),
            ("chdir", "/srv"),
            ("vacuum", "true")
        ])
    );
}

#[test]
fn file_and_option_conditions_read_the_machine_and_the_section() {
    let dir = std::env::temp_dir().join(format!("steward-ini-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("present");
    std::fs::write(&file, "a\nb\n").unwrap();
    let (d, f) = (dir.display(), file.display());
    let text = format!(
        "[uwsgi]\nchdir = /srv\n\
         if-exists = {f}\ntouch-reload = %(_)\nendif\n\
         if-file = {d}\npidfile = /wrong\nendif\n\
         if-dir = {d}\nsafe-pidfile = %(_)/pid\nendif\n\
         if-not-exists = {d}/missing\nprocname = fresh\nendif\n\
         if-opt = chdir=/srv\nworkers = 2\nendif\n\
         if-not-opt = uid\nprocname-master = m\nendif\n\
         for-readline = {f}\nenv = LINE_%(_)=1\nendfor\n"
    );
    assert_eq!(
        values_with(&text, &|_| None),
        pairs(&[
            ("chdir", "/srv"),
            ("touch-reload", &f.to_string()),
            ("safe-pidfile", &format!("{d}/pid")),
            ("procname", "fresh"),
            ("workers", "2"),
            ("procname-master", "m"),
            ("env", "LINE_a=1"),
            ("env", "LINE_b=1"),
        ])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// uWSGI repeats each line of a loop's body for every item, line by line.
#[test]
fn loops_repeat_each_body_line_with_the_item() {
    let text = "[uwsgi]\nfor = a b  c\ntouch-reload = /srv/%(_)\nendfor =\n\
                for-times = 2\nenv = N%(_)=%(_)\nend\n";
    assert_eq!(
        values_with(text, &|_| None),
        pairs(&[
            ("touch-reload", "/srv/a"),
            ("touch-reload", "/srv/b"),
            ("touch-reload", "/srv/c"),
            ("env", "N1=1"),
            ("env", "N2=2"),
        ])
    );
}

#[test]
fn logic_steward_cannot_evaluate_is_refused_naming_the_line() {
    for (text, says) in [
        ("[uwsgi]\nif-env = A\nif-env = B\nendif\n", "/etc/app.ini:3: if-env inside the if block of line 2: uWSGI's config logic does not nest"),
        ("[uwsgi]\n\nif-reload =\nworkers = 2\n", "/etc/app.ini:3: if-reload: not supported: steward reads the file again"),
        ("[uwsgi]\nfor-glob = /etc/*.ini\n", "/etc/app.ini:2: for-glob: not supported: steward does not expand globs"),
    ] {
        let error = read(text).unwrap_err().to_string();
        assert!(error.starts_with(says), "{error}");
    }
    assert_eq!(
        warnings_of("[uwsgi]\nif-env = HOME\nworkers = 2\n"),
        ["/etc/app.ini:2: this if block has no end (endif, endfor or end): as in uWSGI it covers the rest of the section"]
    );
}

/// `%(...)` as uWSGI's placeholder pass: arithmetic, `%k`, a name set further down,
/// the first value of a repeated name, and a reference that never ends refused.
#[test]
fn references_and_arithmetic_evaluate_as_in_uwsgi() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let text = "[uwsgi]\nprocesses = %(%k * 2)\nbase = 10\nlisten = %(base + 5 - 3)\n\
                procname = %(name)-%(base ++)\nname = first\nname = second\n\
                procname-master = %(base / 0)x%(base base)\nchdir = $(NO_VAR:-/srv)/$(HOME_X-h)\n";
    assert_eq!(
        values_with(text, &|_| None),
        pairs(&[
            ("processes", &(cpus * 2).to_string()),
            ("listen-backlog", "12"),
            ("procname", "first-11"),
            ("procname-master", "0x1010"),
            ("chdir", "/srv/h"),
        ])
    );
    let error = read("[uwsgi]\na = %(b)\nb = %(a)\nchdir = %(a)\n")
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("/etc/app.ini:2: "), "{error}");
    assert!(error.contains("refers to itself"), "{error}");
}

/// uWSGI strips only whole comment lines: what follows a value stays in it, a number
/// is read up to its end, and a flag is on unless the value is exactly off.
#[test]
fn trailing_comments_are_read_as_uwsgi_reads_them() {
    let text = "[uwsgi]\nvacuum = true   ; remove sockets\nworker-reload-mercy = 60  # how long\n\
                processes = 4 ; four\nhonour-stdin = false # off?\nprocname = app ; name\n\
                socket = :8000 ; public\n";
    assert_eq!(
        values_with(text, &|_| None),
        pairs(&[
            ("vacuum", "true"),
            ("worker-reload-mercy", "60"),
            ("processes", "4"),
            ("honour-stdin", "true"),
            ("procname", "app ; name"),
            ("listen", "0.0.0.0:8000"),
        ])
    );
    let warnings = warnings_of(text);
    assert_eq!(warnings.len(), 7, "{warnings:?}");
    assert!(
        warnings[5].ends_with("socket = :8000 ; public: read as :8000, as uWSGI reads the port number and ignores what follows it"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("/etc/app.ini:3: worker-reload-mercy = 60  # how long: read as 60"),
        "{warnings:?}"
    );
    assert!(
        warnings[3].contains("read as true, as uWSGI does"),
        "{warnings:?}"
    );
}

/// `http = :PORT` is a listening socket, with a warning that says what differs.
#[test]
fn http_is_a_listening_socket_with_a_warning() {
    let file = read("[uwsgi]\nhttp = :8080\n").unwrap();
    assert_eq!(file.settings[0].key, "listen");
    assert_eq!(
        file.settings[0].value,
        crate::RawValue::One("0.0.0.0:8080".into())
    );
    assert!(file.warnings[0]
        .to_string()
        .starts_with("/etc/app.ini:2: uWSGI's http = :8080 runs uWSGI's HTTP router"));
}

/// A uWSGI option read through `%(name)` still says that steward does not act on it;
/// a name that is only a placeholder says nothing.
#[test]
fn options_read_as_references_are_not_dropped_silently() {
    let text = "[uwsgi]\nvirtualenv = /srv/venv\nlogto = /var/log/app.log\nbase = /srv\n\
                command = %(virtualenv)/bin/gunicorn --log-file %(logto) --chdir %(base)\n";
    assert_eq!(
        values_with(text, &|_| None),
        pairs(&[(
            "command",
            "/srv/venv/bin/gunicorn --log-file /var/log/app.log --chdir /srv"
        )])
    );
    assert_eq!(
        warnings_of(text),
        [
            "/etc/app.ini:2: uWSGI option \"virtualenv\" is not supported by steward; its value is only used where %(virtualenv) refers to it",
            "/etc/app.ini:3: uWSGI option \"logto\" is not supported by steward; its value is only used where %(logto) refers to it",
        ]
    );
}

/// uWSGI's `unix_signal` hook asking for what steward's signal already does.
#[test]
fn a_unix_signal_steward_already_honours_is_a_warning() {
    let file = read(
        "[uwsgi]\nhook-master-start = unix_signal:15 gracefully_kill_them_all\nhook-master-start = unix_signal:15 reap_them_all\n",
    )
    .unwrap();
    assert_eq!(file.settings.len(), 1);
    assert_eq!(
        file.settings[0].value,
        crate::RawValue::One("unix_signal:15 reap_them_all".into())
    );
    assert_eq!(
        file.warnings[0].to_string(),
        "/etc/app.ini:2: hook-master-start = unix_signal:15 gracefully_kill_them_all: uWSGI's unix_signal asks that SIGTERM be a graceful shutdown: steward's SIGTERM already is; ignored"
    );
}

/// uWSGI's other magic variables: the directory's components, the process's user and
/// group, the file's inode and path hash.
#[test]
fn magic_variables_of_the_process_and_the_file() {
    let file = settings_in(
        Path::new("/etc/uwsgi/shop.ini"),
        "[uwsgi]\nprocname = %0 %1 %2 %x %U\nprocname-master = %u:%g %G\nchdir = %j\n",
        &|_| None,
    )
    .unwrap();
    let value = |i: usize| match &file.settings[i].value {
        crate::RawValue::One(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    let user = value(0);
    assert!(user.starts_with("etc uwsgi   "), "{user}");
    assert!(user.len() > "etc uwsgi   ".len(), "{user}");
    let ids = value(1);
    let (numbers, group) = ids.split_once(' ').unwrap();
    assert!(
        numbers.split(':').all(|id| id.parse::<u32>().is_ok()),
        "{ids}"
    );
    assert!(!group.is_empty(), "{ids}");
    // djb33x of "/etc/uwsgi/shop.ini", its bytes in memory as uWSGI prints them.
    assert_eq!(value(2).len(), 8);
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
}

#[test]
fn log_master_is_the_workers_output_read_by_the_master() {
    let file = read("[uwsgi]\nlog-master = true\nlog-master = false\n").unwrap();
    assert!(file.warnings.is_empty());
    let one = |v: &str| crate::RawValue::One(v.into());
    assert_eq!(
        keys(&file),
        [
            ("worker-output", &one("capture"), 2),
            ("worker-output", &one("inherit"), 3),
        ]
    );
}
