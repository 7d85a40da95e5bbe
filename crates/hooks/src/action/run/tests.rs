use std::{
    fs::{self, OpenOptions},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::PathBuf,
    time::Duration,
};

use super::{run_plain, run_plain_waiting};
use crate::action::{Action, WaitTimeouts};

fn parse(text: &str) -> Action {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn mode_actions_change_the_mode() {
    let dir = scratch("modes");
    let file = dir.join("f");
    fs::write(&file, "").unwrap();
    run_plain(&parse(&format!("chmod:{} 640", file.display()))).unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    run_plain(&parse(&format!("sticky:{}", file.display()))).unwrap();
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
        0o1640
    );
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    run_plain(&parse(&format!("chown2:{} {uid} {gid}", file.display()))).unwrap();
    let err = run_plain(&parse(&format!(
        "chown:{} no-such-user-steward root",
        file.display()
    )))
    .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("no user named \"no-such-user-steward\""),
        "{err}"
    );
    let err = run_plain(&parse("chmod:/no/such/file 600")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot change the mode of /no/such/file"),
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn a_wait_that_times_out_says_what_it_waited_for() {
    let dir = scratch("waits");
    let short = WaitTimeouts {
        fs: Duration::from_millis(200),
        socket: Duration::from_millis(200),
    };
    let file = dir.join("f");
    let wait_file = parse(&format!("wait_for_file:{}", file.display()));
    let err = run_plain_waiting(&wait_file, short).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "wait_for_file: {} still not a file after 0.2s",
            file.display()
        )
    );
    fs::write(&file, "").unwrap();
    run_plain_waiting(&wait_file, short).unwrap();
    run_plain_waiting(&parse(&format!("wait_for_fs:{}", file.display())), short).unwrap();
    let err =
        run_plain_waiting(&parse(&format!("wait_for_dir:{}", file.display())), short).unwrap_err();
    assert!(err.to_string().contains("still not a directory"), "{err}");
    run_plain_waiting(&parse(&format!("wait_for_dir:{}", dir.display())), short).unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    run_plain_waiting(&parse(&format!("wait_for_socket:{addr}")), short).unwrap();
    drop(listener);
    let err = run_plain_waiting(&parse(&format!("wait_for_socket:{addr}")), short).unwrap_err();
    assert!(
        err.to_string().contains("still not accepting connections"),
        "{err}"
    );

    // An address with a `/` is a unix socket's path.
    let unix = dir.join("sock");
    let wait_unix = parse(&format!("wait_for_socket:{}", unix.display()));
    let err = run_plain_waiting(&wait_unix, short).unwrap_err();
    assert!(
        err.to_string().contains("still not accepting connections"),
        "{err}"
    );
    let unix_listener = std::os::unix::net::UnixListener::bind(&unix).unwrap();
    run_plain_waiting(&wait_unix, short).unwrap();
    drop(unix_listener);

    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = run_plain_waiting(&parse(&format!("spinningfifo:{} x", fifo.display())), short)
        .unwrap_err();
    assert!(
        err.to_string().contains("still not read after 0.2s"),
        "{err}"
    );
    let _ = fs::remove_dir_all(dir);
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steward-hooks-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn file_actions_do_what_they_say() {
    let dir = scratch("files");
    let sub = dir.join("a/b");
    run_plain(&parse(&format!("mkdir:{}", sub.display()))).unwrap();
    assert!(sub.is_dir());
    run_plain(&parse(&format!("mkdir:{}", sub.display()))).unwrap();

    let file = dir.join("f");
    run_plain(&parse(&format!("write:{} two words", file.display()))).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "two words");
    run_plain(&parse(&format!("appendn:{} and more", file.display()))).unwrap();
    run_plain(&parse(&format!("append:{} end", file.display()))).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "two wordsand more\nend");
    run_plain(&parse(&format!("writen:{} line", file.display()))).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "line\n");
    let appended = dir.join("appended");
    run_plain(&parse(&format!("append:{} new", appended.display()))).unwrap();
    assert_eq!(fs::read_to_string(&appended).unwrap(), "new");
    run_plain(&parse(&format!("create:{}", file.display()))).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "");
    run_plain(&parse(&format!("unlink:{}", file.display()))).unwrap();
    assert!(!file.exists());
    let err = run_plain(&parse(&format!("unlink:{}", file.display()))).unwrap_err();
    assert!(err.to_string().starts_with("cannot remove"), "{err}");

    run_plain(&parse(&format!("exec:echo ran > {}/exec", dir.display()))).unwrap();
    assert_eq!(fs::read_to_string(dir.join("exec")).unwrap(), "ran\n");
    let err = run_plain(&parse("exec:exit 4")).unwrap_err();
    assert_eq!(err.to_string(), "command \"exit 4\" failed: exit status 4");
    // uWSGI's safeexec: the command runs, and how it ends is only logged.
    run_plain(&parse(&format!(
        "safeexec:echo safe > {}/safe; exit 4",
        dir.display()
    )))
    .unwrap();
    assert_eq!(fs::read_to_string(dir.join("safe")).unwrap(), "safe\n");
    assert_eq!(parse("safeexec:exit 4").to_string(), "safeexec:exit 4");
    let err = run_plain(&parse("chdir:/no/such/dir")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("cannot change directory to /no/such/dir"));
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn writefifo_needs_a_reader_and_reaches_it() {
    let dir = scratch("fifo");
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let action = parse(&format!("writefifo:{} hello fifo", fifo.display()));
    let err = run_plain(&action).unwrap_err();
    assert!(
        err.to_string().contains("No such device or address"),
        "{err}"
    );

    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .unwrap();
    run_plain(&action).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut &reader, &mut got).unwrap();
    assert_eq!(got, "hello fifo");

    let plain = dir.join("plain");
    fs::write(&plain, "").unwrap();
    let err = run_plain(&parse(&format!("writefifo:{} x", plain.display()))).unwrap_err();
    assert!(err.to_string().ends_with("is not a FIFO"), "{err}");
    let _ = fs::remove_dir_all(dir);
}
