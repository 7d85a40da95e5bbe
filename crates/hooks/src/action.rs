//! Hook actions: `name:arg` strings, parsed once, run when their phase comes.

use std::{
    ffi::OsString,
    fmt,
    fs::{self, File, OpenOptions},
    io::Write,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::{FileTypeExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    str::FromStr,
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    mount::{MntFlags, MsFlags},
    sys::wait::{waitpid, WaitStatus},
};
use steward_sys::{spawn, ChildFds, ExecPlan};

/// One thing a hook does, as uWSGI spells it: `mkdir:/run/app`, `exec:cmd`, `exit:3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `mkdir:PATH`: create a directory (its parents too); an existing one is fine.
    Mkdir(PathBuf),
    /// `chdir:PATH`: change the working directory of the process running the hook.
    Chdir(PathBuf),
    /// `exec:COMMAND`: run COMMAND with `/bin/sh -c`; a non-zero exit is a failure.
    Exec(String),
    /// `call:NAME`: run the callback an embedding program registered under NAME.
    Call(String),
    /// `exit[:CODE]`: end the process with CODE (default 0).
    Exit(i32),
    /// `writefifo:PATH DATA`: write DATA to the FIFO at PATH; no reader is a failure.
    WriteFifo {
        /// The FIFO.
        path: PathBuf,
        /// What to write.
        data: String,
    },
    /// `create:PATH`: create PATH empty (truncated if it exists).
    Create(PathBuf),
    /// `write:PATH DATA`: write DATA to PATH, replacing its contents.
    Write {
        /// The file.
        path: PathBuf,
        /// What to write.
        data: String,
    },
    /// `mount:FSTYPE SRC DST [FLAGS]`: mount(2); FLAGS comma-separated (`ro,nosuid,bind,rec`).
    Mount {
        /// The filesystem type (`tmpfs`, `proc`, `none` for a bind mount).
        fstype: String,
        /// The source (`none`, a device, or a directory for a bind mount).
        source: String,
        /// Where to mount it.
        target: PathBuf,
        /// The mount flags.
        flags: MsFlags,
    },
    /// `umount:PATH [FLAGS]`: umount2(2); FLAGS `detach`, `force`, `expire`.
    Umount {
        /// The mount point.
        target: PathBuf,
        /// The unmount flags.
        flags: MntFlags,
    },
    /// `print:TEXT`: write TEXT and a newline on standard output.
    Print(String),
    /// `sethostname:NAME`: set the host name (of the UTS namespace the process is in).
    SetHostname(String),
    /// `unlink:PATH`: remove the file PATH.
    Unlink(PathBuf),
    /// `alarm:NAME MSG`: raise the alarm NAME (an `alarm = NAME ...` handler) with MSG.
    Alarm {
        /// The alarm's name.
        name: String,
        /// The message it carries.
        message: String,
    },
}

/// An action string that cannot be run, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionParseError {
    /// No `name:` prefix, or an unknown name.
    #[error("unknown hook action {given:?} in {text:?} (actions: {ACTION_NAMES})")]
    Unknown {
        /// The action name given.
        given: String,
        /// The whole action string.
        text: String,
    },
    /// The action needs an argument and has none.
    #[error("{action}: missing {what}")]
    Missing {
        /// The action name.
        action: &'static str,
        /// What is missing (`a path`, `DATA after the path`).
        what: &'static str,
    },
    /// `exit:CODE` with a CODE that is not a number.
    #[error("exit: {0:?} is not an exit code (0-255)")]
    ExitCode(String),
    /// A mount or umount flag steward does not know.
    #[error("{action}: unknown flag {flag:?}")]
    Flag {
        /// `mount` or `umount`.
        action: &'static str,
        /// The flag given.
        flag: String,
    },
    /// An argument with a NUL byte, which no system call accepts.
    #[error("{0}: the argument contains a NUL byte")]
    Nul(&'static str),
}

/// Why an action failed when it ran.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// mkdir failed.
    #[error("cannot create directory {}: {cause}", path.display())]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// chdir failed.
    #[error("cannot change directory to {}: {cause}", path.display())]
    Chdir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The command holds a NUL byte or the environment cannot be passed on.
    #[error("cannot prepare /bin/sh: {0}")]
    Plan(#[from] steward_sys::PlanError),
    /// The pipe for an alarm's message, or /dev/null, could not be opened.
    #[error("cannot prepare the command's stdin: {0}")]
    Stdin(std::io::Error),
    /// The shell could not be started.
    #[error("cannot run /bin/sh: {0}")]
    Shell(steward_sys::SpawnError),
    /// Waiting for the command failed.
    #[error("cannot wait for the command: {0}")]
    Wait(Errno),
    /// The command ran and failed.
    #[error("command {command:?} failed: {status}")]
    CommandFailed {
        /// The command.
        command: String,
        /// How it ended: `exit status 4`, `killed by SIGKILL`.
        status: String,
    },
    /// A registered callback returned an error.
    #[error("callback {name:?} failed: {message}")]
    Callback {
        /// The callback's name.
        name: String,
        /// What it said.
        message: String,
    },
    /// No callback under that name (only an executor built without checks meets this).
    #[error("no callback registered as {0:?}")]
    NoCallback(String),
    /// The FIFO could not be opened (ENXIO: no reader).
    #[error("cannot open FIFO {}: {cause}", path.display())]
    FifoOpen {
        /// The FIFO.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The path is not a FIFO.
    #[error("{} is not a FIFO", .0.display())]
    NotAFifo(PathBuf),
    /// Writing a file or FIFO failed.
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// mount(2) failed.
    #[error("cannot mount {fstype} {source_path} on {}: {errno}", target.display())]
    Mount {
        /// The filesystem type.
        fstype: String,
        /// The source.
        source_path: String,
        /// The mount point.
        target: PathBuf,
        /// The cause.
        errno: Errno,
    },
    /// umount2(2) failed.
    #[error("cannot unmount {}: {errno}", target.display())]
    Umount {
        /// The mount point.
        target: PathBuf,
        /// The cause.
        errno: Errno,
    },
    /// sethostname(2) failed.
    #[error("cannot set the host name to {name:?}: {errno}")]
    SetHostname {
        /// The name.
        name: String,
        /// The cause.
        errno: Errno,
    },
    /// unlink(2) failed.
    #[error("cannot remove {}: {cause}", path.display())]
    Unlink {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Writing to standard output failed.
    #[error("cannot print: {0}")]
    Print(std::io::Error),
    /// The alarm is not declared (only an executor built without checks meets this).
    #[error("no alarm named {0:?}")]
    NoAlarm(String),
    /// The alarm's command could not be run or failed.
    #[error("alarm {name:?}: {cause}")]
    AlarmCommand {
        /// The alarm's name.
        name: String,
        /// What went wrong with its command.
        cause: Box<ActionError>,
    },
}

const ACTION_NAMES: &str = "mkdir, chdir, exec, call, exit, writefifo, create, write, mount, umount, print, sethostname, unlink, alarm";

impl FromStr for Action {
    type Err = ActionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, arg) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        let arg = arg.trim();
        if arg.contains('\0') {
            return Err(ActionParseError::Nul(action_name(name)));
        }
        let required = |action: &'static str, what: &'static str| {
            if arg.is_empty() {
                Err(ActionParseError::Missing { action, what })
            } else {
                Ok(arg.to_owned())
            }
        };
        let path_and_data = |action: &'static str| {
            let (path, data) = arg
                .split_once(char::is_whitespace)
                .map(|(p, d)| (p, d.trim_start()))
                .ok_or(ActionParseError::Missing {
                    action,
                    what: "DATA after the path",
                })?;
            Ok::<_, ActionParseError>((PathBuf::from(path), data.to_owned()))
        };
        Ok(match name {
            "mkdir" => Action::Mkdir(required("mkdir", "a directory")?.into()),
            "chdir" => Action::Chdir(required("chdir", "a directory")?.into()),
            "exec" => Action::Exec(required("exec", "a command")?),
            "call" => Action::Call(required("call", "a callback name")?),
            "exit" if arg.is_empty() => Action::Exit(0),
            "exit" => Action::Exit(
                arg.parse::<u8>()
                    .map_err(|_| ActionParseError::ExitCode(arg.to_owned()))?
                    .into(),
            ),
            "writefifo" => {
                let (path, data) = path_and_data("writefifo")?;
                Action::WriteFifo { path, data }
            }
            "create" => Action::Create(required("create", "a path")?.into()),
            "write" => {
                let (path, data) = path_and_data("write")?;
                Action::Write { path, data }
            }
            "mount" => {
                let words: Vec<&str> = arg.split_whitespace().collect();
                let (fstype, source, target, flags) = match words[..] {
                    [fstype, source, target] => (fstype, source, target, None),
                    [fstype, source, target, flags] => (fstype, source, target, Some(flags)),
                    _ => {
                        return Err(ActionParseError::Missing {
                            action: "mount",
                            what: "FSTYPE SRC DST [FLAGS]",
                        })
                    }
                };
                Action::Mount {
                    fstype: fstype.to_owned(),
                    source: source.to_owned(),
                    target: target.into(),
                    flags: flags.map_or(Ok(MsFlags::empty()), mount_flags)?,
                }
            }
            "umount" => {
                let words: Vec<&str> = arg.split_whitespace().collect();
                let (target, flags) = match words[..] {
                    [target] => (target, None),
                    [target, flags] => (target, Some(flags)),
                    _ => {
                        return Err(ActionParseError::Missing {
                            action: "umount",
                            what: "PATH [FLAGS]",
                        })
                    }
                };
                Action::Umount {
                    target: target.into(),
                    flags: flags.map_or(Ok(MntFlags::empty()), umount_flags)?,
                }
            }
            "print" => Action::Print(arg.to_owned()),
            "sethostname" => Action::SetHostname(required("sethostname", "a host name")?),
            "unlink" => Action::Unlink(required("unlink", "a path")?.into()),
            "alarm" => {
                let alarm = required("alarm", "an alarm name")?;
                let (name, message) = alarm
                    .split_once(char::is_whitespace)
                    .map_or((alarm.as_str(), ""), |(n, m)| (n, m.trim_start()));
                Action::Alarm {
                    name: name.to_owned(),
                    message: message.to_owned(),
                }
            }
            _ => {
                return Err(ActionParseError::Unknown {
                    given: name.to_owned(),
                    text: text.to_owned(),
                })
            }
        })
    }
}

fn action_name(given: &str) -> &'static str {
    ACTION_NAMES
        .split(", ")
        .find(|name| *name == given)
        .unwrap_or("action")
}

fn mount_flags(text: &str) -> Result<MsFlags, ActionParseError> {
    text.split(',')
        .filter(|f| !f.is_empty())
        .try_fold(MsFlags::empty(), |flags, flag| {
            let one = match flag {
                "ro" | "rdonly" => MsFlags::MS_RDONLY,
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "sync" | "synchronous" => MsFlags::MS_SYNCHRONOUS,
                "remount" => MsFlags::MS_REMOUNT,
                "mandlock" => MsFlags::MS_MANDLOCK,
                "dirsync" => MsFlags::MS_DIRSYNC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "bind" => MsFlags::MS_BIND,
                "move" => MsFlags::MS_MOVE,
                "rec" => MsFlags::MS_REC,
                "silent" => MsFlags::MS_SILENT,
                "unbindable" => MsFlags::MS_UNBINDABLE,
                "private" => MsFlags::MS_PRIVATE,
                "slave" => MsFlags::MS_SLAVE,
                "shared" => MsFlags::MS_SHARED,
                "relatime" => MsFlags::MS_RELATIME,
                "strictatime" => MsFlags::MS_STRICTATIME,
                _ => {
                    return Err(ActionParseError::Flag {
                        action: "mount",
                        flag: flag.to_owned(),
                    })
                }
            };
            Ok(flags | one)
        })
}

fn umount_flags(text: &str) -> Result<MntFlags, ActionParseError> {
    text.split(',')
        .filter(|f| !f.is_empty())
        .try_fold(MntFlags::empty(), |flags, flag| {
            let one = match flag {
                "force" => MntFlags::MNT_FORCE,
                "detach" => MntFlags::MNT_DETACH,
                "expire" => MntFlags::MNT_EXPIRE,
                _ => {
                    return Err(ActionParseError::Flag {
                        action: "umount",
                        flag: flag.to_owned(),
                    })
                }
            };
            Ok(flags | one)
        })
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Mkdir(path) => write!(f, "mkdir:{}", path.display()),
            Action::Chdir(path) => write!(f, "chdir:{}", path.display()),
            Action::Exec(command) => write!(f, "exec:{command}"),
            Action::Call(name) => write!(f, "call:{name}"),
            Action::Exit(code) => write!(f, "exit:{code}"),
            Action::WriteFifo { path, data } => write!(f, "writefifo:{} {data}", path.display()),
            Action::Create(path) => write!(f, "create:{}", path.display()),
            Action::Write { path, data } => write!(f, "write:{} {data}", path.display()),
            Action::Mount {
                fstype,
                source,
                target,
                ..
            } => write!(f, "mount:{fstype} {source} {}", target.display()),
            Action::Umount { target, .. } => write!(f, "umount:{}", target.display()),
            Action::Print(text) => write!(f, "print:{text}"),
            Action::SetHostname(name) => write!(f, "sethostname:{name}"),
            Action::Unlink(path) => write!(f, "unlink:{}", path.display()),
            Action::Alarm { name, message } => write!(f, "alarm:{name} {message}"),
        }
    }
}

/// Runs `command` with `/bin/sh -c`, `input` (if any) and a newline on its stdin, else
/// /dev/null; non-zero is an error. The shell is started as workers are (steward-sys):
/// its own process group, killed if steward dies, and no descriptor of steward's but
/// 0, 1 and 2, so a hook never holds a listening socket or anything steward inherited.
pub(crate) fn run_shell(command: &str, input: Option<&str>) -> Result<(), ActionError> {
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let argv = ["/bin/sh", "-c", command].map(OsString::from);
    let mut plan = ExecPlan::new(Path::new("/bin/sh"), &argv, &env, false)?;
    let (stdin, writer): (OwnedFd, Option<OwnedFd>) = match input {
        Some(_) => {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|errno| ActionError::Stdin(errno.into()))?;
            (read, Some(write))
        }
        None => (
            File::open("/dev/null").map_err(ActionError::Stdin)?.into(),
            None,
        ),
    };
    let fds = ChildFds {
        stdin: Some(stdin.as_fd()),
        sockets: &[],
    };
    let pid = spawn(&mut plan, &fds).map_err(ActionError::Shell)?;
    drop(stdin);
    if let (Some(input), Some(writer)) = (input, writer) {
        let mut writer = File::from(writer);
        // A command that does not read its stdin closes the pipe: that is its business.
        let _ = writer
            .write_all(input.as_bytes())
            .and_then(|()| writer.write_all(b"\n"));
    }
    let status = loop {
        match waitpid(pid, None) {
            Err(Errno::EINTR) => continue,
            other => break other.map_err(ActionError::Wait)?,
        }
    };
    let failed = |status: String| ActionError::CommandFailed {
        command: command.to_owned(),
        status,
    };
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(failed(format!("exit status {code}"))),
        WaitStatus::Signaled(_, signal, _) => Err(failed(format!("killed by {signal}"))),
        other => Err(failed(format!("{other:?}"))),
    }
}

/// The actions that touch only the process and the file system; `call` and `alarm` need
/// the executor's registries and are run there.
pub(crate) fn run_plain(action: &Action) -> Result<(), ActionError> {
    match action {
        Action::Mkdir(path) => match fs::create_dir_all(path) {
            Ok(()) => Ok(()),
            Err(cause) => Err(ActionError::Mkdir {
                path: path.clone(),
                cause,
            }),
        },
        Action::Chdir(path) => {
            std::env::set_current_dir(path).map_err(|cause| ActionError::Chdir {
                path: path.clone(),
                cause,
            })
        }
        Action::Exec(command) => run_shell(command, None),
        Action::Exit(code) => std::process::exit(*code),
        Action::WriteFifo { path, data } => write_fifo(path, data),
        Action::Create(path) => write_file(path, ""),
        Action::Write { path, data } => write_file(path, data),
        Action::Mount {
            fstype,
            source,
            target,
            flags,
        } => {
            let fs = (fstype != "none").then_some(fstype.as_str());
            nix::mount::mount(Some(source.as_str()), target, fs, *flags, None::<&str>).map_err(
                |errno| ActionError::Mount {
                    fstype: fstype.clone(),
                    source_path: source.clone(),
                    target: target.clone(),
                    errno,
                },
            )
        }
        Action::Umount { target, flags } => {
            nix::mount::umount2(target, *flags).map_err(|errno| ActionError::Umount {
                target: target.clone(),
                errno,
            })
        }
        Action::Print(text) => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}")
                .and_then(|()| stdout.flush())
                .map_err(ActionError::Print)
        }
        Action::SetHostname(name) => {
            nix::unistd::sethostname(name).map_err(|errno| ActionError::SetHostname {
                name: name.clone(),
                errno,
            })
        }
        Action::Unlink(path) => fs::remove_file(path).map_err(|cause| ActionError::Unlink {
            path: path.clone(),
            cause,
        }),
        Action::Call(name) => Err(ActionError::NoCallback(name.clone())),
        Action::Alarm { name, .. } => Err(ActionError::NoAlarm(name.clone())),
    }
}

fn write_file(path: &Path, data: &str) -> Result<(), ActionError> {
    fs::write(path, data).map_err(|cause| ActionError::Write {
        path: path.to_owned(),
        cause,
    })
}

/// Opens without blocking, so a FIFO nobody reads is an error (ENXIO) rather than a
/// master stuck in open(2).
fn write_fifo(path: &Path, data: &str) -> Result<(), ActionError> {
    let is_fifo = fs::metadata(path)
        .map(|m| m.file_type().is_fifo())
        .map_err(|cause| ActionError::FifoOpen {
            path: path.to_owned(),
            cause,
        })?;
    if !is_fifo {
        return Err(ActionError::NotAFifo(path.to_owned()));
    }
    let mut fifo = OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|cause| ActionError::FifoOpen {
            path: path.to_owned(),
            cause,
        })?;
    fifo.write_all(data.as_bytes())
        .map_err(|cause| ActionError::Write {
            path: path.to_owned(),
            cause,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                data: "some text".into()
            }
        );
        assert_eq!(
            parse("mount:tmpfs none /mnt/t nosuid,nodev"),
            Action::Mount {
                fstype: "tmpfs".into(),
                source: "none".into(),
                target: "/mnt/t".into(),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV
            }
        );
        assert_eq!(
            parse("umount:/mnt/t detach"),
            Action::Umount {
                target: "/mnt/t".into(),
                flags: MntFlags::MNT_DETACH
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

    #[test]
    fn display_gives_back_a_parsable_string() {
        for text in [
            "mkdir:/a",
            "exec:true",
            "exit:2",
            "write:/a b c",
            "mount:tmpfs none /m",
            "alarm:a m",
        ] {
            assert_eq!(parse(&parse(text).to_string()), parse(text));
        }
    }

    #[test]
    fn bad_actions_say_what_is_wrong() {
        assert_eq!(
            parse_error("mkdri:/x"),
            "unknown hook action \"mkdri\" in \"mkdri:/x\" (actions: mkdir, chdir, exec, call, exit, writefifo, create, write, mount, umount, print, sethostname, unlink, alarm)"
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
            "mount: missing FSTYPE SRC DST [FLAGS]"
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
}
