use nix::mount::{MntFlags, MsFlags};

use crate::action::{Action, Owner, WaitKind};

fn parse(text: &str) -> Action {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn parse_error(text: &str) -> String {
    text.parse::<Action>().unwrap_err().to_string()
}

#[test]
fn every_action_parses() {
    assert_eq!(parse("mkdir:/run/app"), Action::Mkdir("/run/app".into()));
    assert_eq!(parse("chdir:/srv"), Action::Chdir("/srv".into()));
    assert_eq!(
        parse("exec:echo a:b >> /tmp/x"),
        Action::Exec("echo a:b >> /tmp/x".into())
    );
    assert_eq!(parse("call:warm_cache"), Action::Call("warm_cache".into()));
    assert_eq!(parse("exit"), Action::Exit(0));
    assert_eq!(parse("exit:"), Action::Exit(0));
    assert_eq!(parse("exit:3"), Action::Exit(3));
    assert_eq!(
        parse("writefifo:/run/fifo  r hello"),
        Action::WriteFifo {
            path: "/run/fifo".into(),
            data: "r hello".into()
        }
    );
    assert_eq!(parse("create:/run/x"), Action::Create("/run/x".into()));
    assert_eq!(
        parse("write:/run/x some text"),
        Action::Write {
            path: "/run/x".into(),
            data: "some text".into(),
            append: false,
            newline: false
        }
    );
    assert_eq!(
        parse("mount:tmpfs none /mnt/t nosuid,nodev"),
        Action::Mount {
            fstype: "tmpfs".into(),
            source: "none".into(),
            target: "/mnt/t".into(),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: None
        }
    );
    // uWSGI's fifth word: the filesystem's options, the rest of the line.
    assert_eq!(
        parse("mount:tmpfs  none /mnt/t\treadonly,recursive   size=1m,mode=0755"),
        Action::Mount {
            fstype: "tmpfs".into(),
            source: "none".into(),
            target: "/mnt/t".into(),
            flags: MsFlags::MS_RDONLY | MsFlags::MS_REC,
            data: Some("size=1m,mode=0755".into())
        }
    );
    assert_eq!(
        parse("umount:/mnt/t detach"),
        Action::Umount {
            target: "/mnt/t".into(),
            flags: MntFlags::MNT_DETACH,
            recursive: false
        }
    );
    assert_eq!(
        parse("umount:/mnt/t recursive,force"),
        Action::Umount {
            target: "/mnt/t".into(),
            flags: MntFlags::MNT_FORCE,
            recursive: true
        }
    );
    assert_eq!(
        parse("print:hello world"),
        Action::Print("hello world".into())
    );
    assert_eq!(parse("print:"), Action::Print(String::new()));
    assert_eq!(parse("sethostname:box"), Action::SetHostname("box".into()));
    assert_eq!(parse("unlink:/run/x"), Action::Unlink("/run/x".into()));
    assert_eq!(
        parse("alarm:disk full on /var"),
        Action::Alarm {
            name: "disk".into(),
            message: "full on /var".into()
        }
    );
}

/// uWSGI's own names (core/hooks.c; uwsgiconf writes `cd:`, `hostname:`, `writen:`,
/// `append:`, `callret:`) are the same actions.
#[test]
fn uwsgi_spellings_parse_as_the_same_actions() {
    assert_eq!(parse("cd:/srv"), parse("chdir:/srv"));
    assert_eq!(parse("hostname:box"), parse("sethostname:box"));
    assert_eq!(parse("creat:/run/x"), parse("create:/run/x"));
    assert_eq!(parse("log:hello"), parse("print:hello"));
    assert_eq!(parse("callret:warm"), parse("call:warm"));
    for (text, append, newline) in [
        ("write:/f a b", false, false),
        ("writen:/f a b", false, true),
        ("append:/f a b", true, false),
        ("appendn:/f a b", true, true),
    ] {
        let action = parse(text);
        assert_eq!(
            action,
            Action::Write {
                path: "/f".into(),
                data: "a b".into(),
                append,
                newline
            },
            "{text}"
        );
        assert_eq!(action.to_string(), text);
    }
    assert_eq!(parse_error("cd:"), "cd: missing a directory");
    assert_eq!(parse_error("hostname:"), "hostname: missing a host name");
    assert_eq!(
        parse_error("appendn:/f"),
        "appendn: missing DATA after the path"
    );
}

#[test]
fn display_gives_back_a_parsable_string() {
    for text in [
        "mkdir:/a",
        "exec:true",
        "exit:2",
        "write:/a b c",
        "mount:tmpfs none /m",
        "mount:none /a /b bind,recursive,ro",
        "mount:tmpfs none /m , size=1m",
        "umount:/m detach,rec",
        "alarm:a m",
    ] {
        assert_eq!(parse(&parse(text).to_string()), parse(text));
    }
}

#[test]
fn bad_actions_say_what_is_wrong() {
    assert_eq!(
        parse_error("mkdri:/x"),
        "unknown hook action \"mkdri\" in \"mkdri:/x\" (actions: mkdir, chdir, cd, exec, safeexec, call, callret, exit, writefifo, create, creat, write, writen, append, appendn, mount, umount, print, log, sethostname, hostname, unlink, alarm, putenv, chmod, chown, chown2, sticky, wait_for_fs, wait_for_file, wait_for_dir, wait_for_socket, spinningfifo)"
    );
    assert!(parse_error("/usr/bin/thing").contains("unknown hook action"));
    assert_eq!(parse_error("mkdir:"), "mkdir: missing a directory");
    assert_eq!(parse_error("exec"), "exec: missing a command");
    assert_eq!(
        parse_error("write:/only/path"),
        "write: missing DATA after the path"
    );
    assert_eq!(
        parse_error("writefifo:/f"),
        "writefifo: missing DATA after the path"
    );
    assert_eq!(
        parse_error("exit:soon"),
        "exit: \"soon\" is not an exit code (0-255)"
    );
    assert_eq!(
        parse_error("exit:256"),
        "exit: \"256\" is not an exit code (0-255)"
    );
    assert_eq!(
        parse_error("mount:tmpfs none"),
        "mount: missing FSTYPE SRC DST [FLAGS [DATA]]"
    );
    assert_eq!(
        parse_error("mount:tmpfs none /m ro,wobbly"),
        "mount: unknown flag \"wobbly\""
    );
    assert_eq!(
        parse_error("umount:/m later"),
        "umount: unknown flag \"later\""
    );
    assert_eq!(
        parse_error("unlink:a\0b"),
        "unlink: the argument contains a NUL byte"
    );
    assert_eq!(parse_error("alarm:"), "alarm: missing an alarm name");
}

#[test]
fn uwsgi_file_and_wait_actions_parse() {
    assert_eq!(
        parse("putenv:GREETING=hello world"),
        Action::PutEnv {
            name: "GREETING".into(),
            value: "hello world".into()
        }
    );
    assert_eq!(
        parse("putenv:EMPTY="),
        Action::PutEnv {
            name: "EMPTY".into(),
            value: String::new()
        }
    );
    assert_eq!(
        parse("chmod:/run/app.sock 660"),
        Action::Chmod {
            path: "/run/app.sock".into(),
            mode: 0o660
        }
    );
    assert_eq!(
        parse("chmod:/run/d 1777"),
        Action::Chmod {
            path: "/run/d".into(),
            mode: 0o1777
        }
    );
    assert_eq!(
        parse("chown:/run/app www-data  adm"),
        Action::Chown {
            path: "/run/app".into(),
            user: Owner::Name("www-data".into()),
            group: Owner::Name("adm".into())
        }
    );
    assert_eq!(
        parse("chown2:/run/app 33 4"),
        Action::Chown {
            path: "/run/app".into(),
            user: Owner::Id(33),
            group: Owner::Id(4)
        }
    );
    assert_eq!(parse("sticky:/run/d"), Action::Sticky("/run/d".into()));
    for (name, kind) in [
        ("wait_for_fs", WaitKind::Fs),
        ("wait_for_file", WaitKind::File),
        ("wait_for_dir", WaitKind::Dir),
        ("wait_for_socket", WaitKind::Socket),
    ] {
        let text = format!("{name}:/run/x");
        assert_eq!(
            parse(&text),
            Action::WaitFor {
                kind,
                target: "/run/x".into()
            }
        );
        assert_eq!(parse(&text).to_string(), text);
    }
    assert_eq!(
        parse("spinningfifo:/run/fifo r hello"),
        Action::SpinningFifo {
            path: "/run/fifo".into(),
            data: "r hello".into()
        }
    );
}

#[test]
fn uwsgi_file_and_wait_actions_read_back_as_written() {
    for text in [
        "putenv:A=b=c",
        "chmod:/a 755",
        "chmod:/a 4755",
        "chown:/a root root",
        "chown2:/a 0 0",
        "sticky:/a",
        "wait_for_socket:127.0.0.1:8000",
        "spinningfifo:/f q",
    ] {
        assert_eq!(parse(&parse(text).to_string()), parse(text), "{text}");
    }
}

#[test]
fn uwsgi_file_and_wait_actions_refuse_what_they_cannot_run() {
    assert_eq!(
        parse_error("putenv:NOEQUALS"),
        "putenv: \"NOEQUALS\" is not VAR=VALUE"
    );
    assert_eq!(parse_error("putenv:=x"), "putenv: \"=x\" is not VAR=VALUE");
    assert_eq!(
        parse_error("chmod:/a"),
        "chmod: missing DATA after the path"
    );
    assert_eq!(
        parse_error("chmod:/a 789"),
        "chmod: \"789\" is not an octal mode (0-7777)"
    );
    assert_eq!(
        parse_error("chmod:/a 17777"),
        "chmod: \"17777\" is not an octal mode (0-7777)"
    );
    assert_eq!(
        parse_error("chown:/a root"),
        "chown: missing PATH USER GROUP"
    );
    assert_eq!(parse_error("chown2:/a 0"), "chown2: missing PATH UID GID");
    assert_eq!(
        parse_error("chown2:/a root 0"),
        "chown2: \"root\" is not a numeric id"
    );
    assert_eq!(parse_error("sticky:"), "sticky: missing a path");
    assert_eq!(
        parse_error("wait_for_file:"),
        "wait_for_file: missing a path"
    );
    assert_eq!(
        parse_error("wait_for_socket:"),
        "wait_for_socket: missing an address"
    );
    assert_eq!(
        parse_error("spinningfifo:/f"),
        "spinningfifo: missing DATA after the path"
    );
}

/// uWSGI's actions steward has no meaning for are refused with the reason, not as
/// unknown names.
#[test]
fn uwsgi_actions_steward_refuses_say_why() {
    assert!(parse_error("unix_signal:15 reap_them_all").starts_with(
        "uWSGI's hook action \"unix_signal\" is not supported by steward: steward's signals are fixed (SIGHUP graceful reload, SIGTERM graceful shutdown"
    ));
    assert_eq!(
        parse_error("rpc:hello"),
        "uWSGI's hook action \"rpc\" is not supported by steward: steward has no RPC subsystem"
    );
    assert!(parse_error("callint:f 3").contains("use call:"));
}
