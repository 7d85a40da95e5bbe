//! Hook actions: `name:arg` strings, parsed once, run when their phase comes.

use std::{
    ffi::OsString,
    fmt,
    fs::{self, File, OpenOptions},
    io::Write,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    str::FromStr,
    time::{Duration, Instant},
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
    ///
    /// uWSGI's other names parse too: `cd` (chdir), `hostname` (sethostname), `creat`
    /// (create), `log` (print), `callret` (call: a callback's error is always a failure),
    /// and `writen`, `append`, `appendn` (write with a newline, appending, or both).
    Mkdir(PathBuf),
    /// `chdir:PATH`: change the working directory of the process running the hook.
    Chdir(PathBuf),
    /// `exec:COMMAND`: run COMMAND with `/bin/sh -c`; a non-zero exit is a failure.
    Exec(String),
    /// `safeexec:COMMAND`: as exec, but how the command ends is only logged, never a
    /// failure (uWSGI's safeexec).
    SafeExec(String),
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
    /// `write:PATH DATA`: write DATA to PATH, replacing its contents; `writen` adds a
    /// newline, `append` appends, `appendn` both.
    Write {
        /// The file.
        path: PathBuf,
        /// What to write.
        data: String,
        /// Added at the end of the file rather than replacing it (`append`, `appendn`).
        append: bool,
        /// Followed by a newline (`writen`, `appendn`).
        newline: bool,
    },
    /// `mount:FSTYPE SRC DST [FLAGS [DATA]]`: mount(2); FLAGS comma-separated
    /// (`ro,nosuid,bind,rec`), DATA the filesystem's options (`size=64m,mode=0755`).
    Mount {
        /// The filesystem type (`tmpfs`, `proc`, `none` for a bind mount).
        fstype: String,
        /// The source (`none`, a device, or a directory for a bind mount).
        source: String,
        /// Where to mount it.
        target: PathBuf,
        /// The mount flags.
        flags: MsFlags,
        /// The filesystem-specific options, mount(2)'s data.
        data: Option<String>,
    },
    /// `umount:PATH [FLAGS]`: umount2(2); FLAGS `detach`, `force`, `expire`, and
    /// uWSGI's `rec` (`recursive`): every mount below PATH first.
    Umount {
        /// The mount point.
        target: PathBuf,
        /// The unmount flags.
        flags: MntFlags,
        /// The mounts below `target` are unmounted first (`rec`).
        recursive: bool,
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
    /// `putenv:VAR=VALUE`: set VAR in the master's environment, so the workers and the
    /// hooks started after it inherit it.
    PutEnv {
        /// The variable.
        name: String,
        /// Its value (may be empty).
        value: String,
    },
    /// `chmod:PATH MODE`: set PATH's permission bits to the octal MODE.
    Chmod {
        /// The file.
        path: PathBuf,
        /// The mode, up to 0o7777.
        mode: u32,
    },
    /// `chown:PATH USER GROUP` (names, looked up when it runs) or `chown2:PATH UID GID`
    /// (numbers).
    Chown {
        /// The file.
        path: PathBuf,
        /// The owner.
        user: Owner,
        /// The group.
        group: Owner,
    },
    /// `sticky:PATH`: add the sticky bit to PATH's mode.
    Sticky(PathBuf),
    /// `wait_for_fs:PATH`, `wait_for_file:PATH`, `wait_for_dir:PATH`: wait until PATH
    /// exists (as a file, a directory) or the `wait-for-fs-timeout` passes;
    /// `wait_for_socket:ADDR`: until ADDR (`HOST:PORT` or a unix socket path) accepts a
    /// connection or the `wait-for-socket-timeout` passes.
    WaitFor {
        /// What is waited for.
        kind: WaitKind,
        /// The path or address.
        target: String,
    },
    /// `spinningfifo:PATH DATA`: as writefifo, but retries until a reader opens the FIFO
    /// or the `wait-for-fs-timeout` passes.
    SpinningFifo {
        /// The FIFO.
        path: PathBuf,
        /// What to write.
        data: String,
    },
}

/// A user or group of `chown:` (a name) or `chown2:` (a number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A name from the user or group database.
    Name(String),
    /// A numeric id.
    Id(u32),
}

/// What a `wait_for_*` action waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// `wait_for_fs`: anything at the path.
    Fs,
    /// `wait_for_file`: a regular file.
    File,
    /// `wait_for_dir`: a directory.
    Dir,
    /// `wait_for_socket`: a socket that accepts a connection.
    Socket,
}

impl WaitKind {
    fn action_name(self) -> &'static str {
        match self {
            WaitKind::Fs => "wait_for_fs",
            WaitKind::File => "wait_for_file",
            WaitKind::Dir => "wait_for_dir",
            WaitKind::Socket => "wait_for_socket",
        }
    }
}

/// How long the waiting actions wait: the `wait-for-fs-timeout` and
/// `wait-for-socket-timeout` options, 60 s each by default as in uWSGI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitTimeouts {
    /// For `wait_for_fs`, `wait_for_file`, `wait_for_dir` and `spinningfifo`.
    pub(crate) fs: Duration,
    /// For `wait_for_socket`.
    pub(crate) socket: Duration,
}

impl Default for WaitTimeouts {
    fn default() -> Self {
        WaitTimeouts {
            fs: Duration::from_secs(60),
            socket: Duration::from_secs(60),
        }
    }
}

/// How often a waiting action looks again.
const WAIT_POLL: Duration = Duration::from_millis(100);

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
    /// `chmod:` with a MODE that is not octal up to 7777.
    #[error("chmod: {0:?} is not an octal mode (0-7777)")]
    Mode(String),
    /// `chown2:` with a UID or GID that is not a number.
    #[error("chown2: {0:?} is not a numeric id")]
    Id(String),
    /// `putenv:` without `=`, or with an empty name.
    #[error("putenv: {0:?} is not VAR=VALUE")]
    PutEnv(String),
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
    /// chmod(2) failed, or stat(2) before a sticky bit.
    #[error("cannot change the mode of {}: {cause}", path.display())]
    Chmod {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The user or group of a `chown:` is not in the database.
    #[error("chown {}: no {kind} named {name:?}", path.display())]
    UnknownOwner {
        /// The file.
        path: PathBuf,
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// chown(2) failed.
    #[error("cannot change the owner of {}: {cause}", path.display())]
    Chown {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// A `wait_for_*` or `spinningfifo` action waited its whole timeout.
    #[error("{action}: {target} still not {what} after {}s", timeout.as_secs_f64())]
    WaitTimedOut {
        /// The action name.
        action: &'static str,
        /// The path or address.
        target: String,
        /// What it waited for: `there`, `a file`, `accepting connections`, `read`.
        what: &'static str,
        /// How long it waited.
        timeout: Duration,
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

const ACTION_NAMES: &str = "mkdir, chdir, cd, exec, safeexec, call, callret, exit, writefifo, create, creat, write, writen, append, appendn, mount, umount, print, log, sethostname, hostname, unlink, alarm, putenv, chmod, chown, chown2, sticky, wait_for_fs, wait_for_file, wait_for_dir, wait_for_socket, spinningfifo";

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
            "chdir" | "cd" => Action::Chdir(required(action_name(name), "a directory")?.into()),
            "exec" => Action::Exec(required("exec", "a command")?),
            "safeexec" => Action::SafeExec(required("safeexec", "a command")?),
            "call" | "callret" => Action::Call(required(action_name(name), "a callback name")?),
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
            "create" | "creat" => Action::Create(required(action_name(name), "a path")?.into()),
            "write" | "writen" | "append" | "appendn" => {
                let (path, data) = path_and_data(action_name(name))?;
                Action::Write {
                    path,
                    data,
                    append: name.starts_with("append"),
                    newline: name.ends_with('n'),
                }
            }
            "mount" => {
                // As uWSGI splits it: four words, then DATA is the rest of the line.
                let mut words: Vec<&str> = Vec::new();
                let mut rest = arg;
                while words.len() < 4 && !rest.is_empty() {
                    let (word, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    words.push(word);
                    rest = after.trim_start();
                }
                if !rest.is_empty() {
                    words.push(rest);
                }
                let (fstype, source, target, flags, data) = match words[..] {
                    [fstype, source, target] => (fstype, source, target, None, None),
                    [fstype, source, target, flags] => (fstype, source, target, Some(flags), None),
                    [fstype, source, target, flags, data] => {
                        (fstype, source, target, Some(flags), Some(data.to_owned()))
                    }
                    _ => {
                        return Err(ActionParseError::Missing {
                            action: "mount",
                            what: "FSTYPE SRC DST [FLAGS [DATA]]",
                        })
                    }
                };
                Action::Mount {
                    fstype: fstype.to_owned(),
                    source: source.to_owned(),
                    target: target.into(),
                    flags: flags.map_or(Ok(MsFlags::empty()), mount_flags)?,
                    data,
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
                let (flags, recursive) =
                    flags.map_or(Ok((MntFlags::empty(), false)), umount_flags)?;
                Action::Umount {
                    target: target.into(),
                    flags,
                    recursive,
                }
            }
            "print" | "log" => Action::Print(arg.to_owned()),
            "sethostname" | "hostname" => {
                Action::SetHostname(required(action_name(name), "a host name")?)
            }
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
            "putenv" => {
                let (var, value) = arg
                    .split_once('=')
                    .filter(|(var, _)| !var.is_empty() && !var.contains(char::is_whitespace))
                    .ok_or_else(|| ActionParseError::PutEnv(arg.to_owned()))?;
                Action::PutEnv {
                    name: var.to_owned(),
                    value: value.to_owned(),
                }
            }
            "chmod" => {
                let (path, mode) = path_and_data("chmod")?;
                let mode = u32::from_str_radix(&mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or(ActionParseError::Mode(mode))?;
                Action::Chmod { path, mode }
            }
            "chown" | "chown2" => {
                let words: Vec<&str> = arg.split_whitespace().collect();
                let [path, user, group] = words[..] else {
                    return Err(ActionParseError::Missing {
                        action: action_name(name),
                        what: if name == "chown" {
                            "PATH USER GROUP"
                        } else {
                            "PATH UID GID"
                        },
                    });
                };
                let owner = |word: &str| {
                    if name == "chown" {
                        Ok(Owner::Name(word.to_owned()))
                    } else {
                        word.parse()
                            .map(Owner::Id)
                            .map_err(|_| ActionParseError::Id(word.to_owned()))
                    }
                };
                Action::Chown {
                    path: path.into(),
                    user: owner(user)?,
                    group: owner(group)?,
                }
            }
            "sticky" => Action::Sticky(required("sticky", "a path")?.into()),
            "wait_for_fs" | "wait_for_file" | "wait_for_dir" | "wait_for_socket" => {
                let kind = match name {
                    "wait_for_fs" => WaitKind::Fs,
                    "wait_for_file" => WaitKind::File,
                    "wait_for_dir" => WaitKind::Dir,
                    _ => WaitKind::Socket,
                };
                let what = if kind == WaitKind::Socket {
                    "an address"
                } else {
                    "a path"
                };
                Action::WaitFor {
                    kind,
                    target: required(kind.action_name(), what)?,
                }
            }
            "spinningfifo" => {
                let (path, data) = path_and_data("spinningfifo")?;
                Action::SpinningFifo { path, data }
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

/// mount(2) flags by name, uWSGI's spellings among them; the first name of a flag is
/// the one an action displays.
const MOUNT_FLAGS: &[(&str, MsFlags)] = &[
    ("ro", MsFlags::MS_RDONLY),
    ("rdonly", MsFlags::MS_RDONLY),
    ("readonly", MsFlags::MS_RDONLY),
    ("nosuid", MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC),
    ("sync", MsFlags::MS_SYNCHRONOUS),
    ("synchronous", MsFlags::MS_SYNCHRONOUS),
    ("remount", MsFlags::MS_REMOUNT),
    ("mandlock", MsFlags::MS_MANDLOCK),
    ("dirsync", MsFlags::MS_DIRSYNC),
    ("noatime", MsFlags::MS_NOATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME),
    ("bind", MsFlags::MS_BIND),
    ("move", MsFlags::MS_MOVE),
    ("rec", MsFlags::MS_REC),
    ("recursive", MsFlags::MS_REC),
    ("silent", MsFlags::MS_SILENT),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("private", MsFlags::MS_PRIVATE),
    ("slave", MsFlags::MS_SLAVE),
    ("shared", MsFlags::MS_SHARED),
    ("relatime", MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME),
];

fn mount_flags(text: &str) -> Result<MsFlags, ActionParseError> {
    text.split(',')
        .filter(|f| !f.is_empty())
        .try_fold(MsFlags::empty(), |flags, flag| {
            let (_, one) = MOUNT_FLAGS
                .iter()
                .find(|(name, _)| *name == flag)
                .ok_or_else(|| ActionParseError::Flag {
                    action: "mount",
                    flag: flag.to_owned(),
                })?;
            Ok(flags | *one)
        })
}

/// `flags` as `mount:` writes them; `,` for none (a place holder before DATA).
fn mount_flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = MOUNT_FLAGS
        .iter()
        .enumerate()
        .filter(|(i, (_, flag))| {
            flags.contains(*flag) && !MOUNT_FLAGS[..*i].iter().any(|(_, f)| f == flag)
        })
        .map(|(_, (name, _))| *name)
        .collect();
    if names.is_empty() {
        ",".to_owned()
    } else {
        names.join(",")
    }
}

/// The umount2(2) flags, and whether `rec` asks for the mounts below first.
fn umount_flags(text: &str) -> Result<(MntFlags, bool), ActionParseError> {
    text.split(',').filter(|f| !f.is_empty()).try_fold(
        (MntFlags::empty(), false),
        |(flags, recursive), flag| {
            let one = match flag {
                "force" => MntFlags::MNT_FORCE,
                "detach" => MntFlags::MNT_DETACH,
                "expire" => MntFlags::MNT_EXPIRE,
                "rec" | "recursive" => return Ok((flags, true)),
                _ => {
                    return Err(ActionParseError::Flag {
                        action: "umount",
                        flag: flag.to_owned(),
                    })
                }
            };
            Ok((flags | one, recursive))
        },
    )
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Mkdir(path) => write!(f, "mkdir:{}", path.display()),
            Action::Chdir(path) => write!(f, "chdir:{}", path.display()),
            Action::Exec(command) => write!(f, "exec:{command}"),
            Action::SafeExec(command) => write!(f, "safeexec:{command}"),
            Action::Call(name) => write!(f, "call:{name}"),
            Action::Exit(code) => write!(f, "exit:{code}"),
            Action::WriteFifo { path, data } => write!(f, "writefifo:{} {data}", path.display()),
            Action::Create(path) => write!(f, "create:{}", path.display()),
            Action::Write {
                path,
                data,
                append,
                newline,
            } => {
                let name = if *append { "append" } else { "write" };
                let n = if *newline { "n" } else { "" };
                write!(f, "{name}{n}:{} {data}", path.display())
            }
            Action::Mount {
                fstype,
                source,
                target,
                flags,
                data,
            } => {
                write!(f, "mount:{fstype} {source} {}", target.display())?;
                if !flags.is_empty() || data.is_some() {
                    write!(f, " {}", mount_flag_names(*flags))?;
                }
                match data {
                    Some(data) => write!(f, " {data}"),
                    None => Ok(()),
                }
            }
            Action::Umount {
                target,
                flags,
                recursive,
            } => {
                write!(f, "umount:{}", target.display())?;
                let names: Vec<&str> = [
                    (flags.contains(MntFlags::MNT_FORCE), "force"),
                    (flags.contains(MntFlags::MNT_DETACH), "detach"),
                    (flags.contains(MntFlags::MNT_EXPIRE), "expire"),
                    (*recursive, "rec"),
                ]
                .into_iter()
                .filter_map(|(set, name)| set.then_some(name))
                .collect();
                if names.is_empty() {
                    Ok(())
                } else {
                    write!(f, " {}", names.join(","))
                }
            }
            Action::Print(text) => write!(f, "print:{text}"),
            Action::SetHostname(name) => write!(f, "sethostname:{name}"),
            Action::Unlink(path) => write!(f, "unlink:{}", path.display()),
            Action::Alarm { name, message } => write!(f, "alarm:{name} {message}"),
            Action::PutEnv { name, value } => write!(f, "putenv:{name}={value}"),
            Action::Chmod { path, mode } => write!(f, "chmod:{} {mode:o}", path.display()),
            Action::Chown { path, user, group } => match (user, group) {
                (Owner::Id(uid), Owner::Id(gid)) => {
                    write!(f, "chown2:{} {uid} {gid}", path.display())
                }
                (user, group) => write!(f, "chown:{} {user} {group}", path.display()),
            },
            Action::Sticky(path) => write!(f, "sticky:{}", path.display()),
            Action::WaitFor { kind, target } => write!(f, "{}:{target}", kind.action_name()),
            Action::SpinningFifo { path, data } => {
                write!(f, "spinningfifo:{} {data}", path.display())
            }
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Name(name) => f.write_str(name),
            Owner::Id(id) => write!(f, "{id}"),
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

/// The actions that touch only the process and the file system, the waiting ones with
/// uWSGI's default timeouts; `call` and `alarm` need the executor's registries and are
/// run there.
#[cfg(test)]
pub(crate) fn run_plain(action: &Action) -> Result<(), ActionError> {
    run_plain_waiting(action, WaitTimeouts::default())
}

/// As [`run_plain`], the waiting actions waiting at most `timeouts`.
pub(crate) fn run_plain_waiting(
    action: &Action,
    timeouts: WaitTimeouts,
) -> Result<(), ActionError> {
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
        Action::SafeExec(command) => {
            if let Err(e) = run_shell(command, None) {
                tracing::warn!(error = %e, "safeexec: the command's failure is not a hook failure");
            }
            Ok(())
        }
        Action::Exit(code) => std::process::exit(*code),
        Action::WriteFifo { path, data } => write_fifo(path, data),
        Action::Create(path) => write_file(path, "", false),
        Action::Write {
            path,
            data,
            append,
            newline,
        } => {
            let data = if *newline {
                format!("{data}\n")
            } else {
                data.clone()
            };
            write_file(path, &data, *append)
        }
        Action::Mount {
            fstype,
            source,
            target,
            flags,
            data,
        } => {
            let fs = (fstype != "none").then_some(fstype.as_str());
            nix::mount::mount(Some(source.as_str()), target, fs, *flags, data.as_deref()).map_err(
                |errno| ActionError::Mount {
                    fstype: fstype.clone(),
                    source_path: source.clone(),
                    target: target.clone(),
                    errno,
                },
            )
        }
        Action::Umount {
            target,
            flags,
            recursive,
        } => {
            if *recursive {
                umount_below(target, *flags);
            }
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
        Action::PutEnv { name, value } => {
            // SAFETY (of set_var's contract): the master is one thread by design (no
            // thread or runtime is ever started in it), and hooks run in the master or
            // in a single-threaded child, so no other thread reads the environment now.
            std::env::set_var(name, value);
            Ok(())
        }
        Action::Chmod { path, mode } => {
            fs::set_permissions(path, fs::Permissions::from_mode(*mode)).map_err(|cause| {
                ActionError::Chmod {
                    path: path.clone(),
                    cause,
                }
            })
        }
        Action::Sticky(path) => {
            let chmod_error = |cause| ActionError::Chmod {
                path: path.clone(),
                cause,
            };
            let mode = fs::metadata(path)
                .map_err(chmod_error)?
                .permissions()
                .mode();
            fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o7777) | 0o1000))
                .map_err(chmod_error)
        }
        Action::Chown { path, user, group } => chown(path, user, group),
        Action::WaitFor { kind, target } => wait_for(*kind, target, timeouts),
        Action::SpinningFifo { path, data } => spinning_fifo(path, data, timeouts.fs),
    }
}

fn chown(path: &Path, user: &Owner, group: &Owner) -> Result<(), ActionError> {
    let unknown = |kind, name: &str| ActionError::UnknownOwner {
        path: path.to_owned(),
        kind,
        name: name.to_owned(),
    };
    let uid = match user {
        Owner::Id(uid) => *uid,
        Owner::Name(name) => nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| unknown("user", name))?
            .uid
            .as_raw(),
    };
    let gid = match group {
        Owner::Id(gid) => *gid,
        Owner::Name(name) => nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| unknown("group", name))?
            .gid
            .as_raw(),
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|cause| ActionError::Chown {
        path: path.to_owned(),
        cause,
    })
}

/// Polls until the condition of `kind` holds for `target`. The master runs hooks in its
/// start phases, before its loop serves anything, so blocking here only delays the
/// phase, as uWSGI's own wait does.
fn wait_for(kind: WaitKind, target: &str, timeouts: WaitTimeouts) -> Result<(), ActionError> {
    let (timeout, what) = match kind {
        WaitKind::Fs => (timeouts.fs, "there"),
        WaitKind::File => (timeouts.fs, "a file"),
        WaitKind::Dir => (timeouts.fs, "a directory"),
        WaitKind::Socket => (timeouts.socket, "accepting connections"),
    };
    let ready = || match kind {
        WaitKind::Fs => fs::symlink_metadata(target).is_ok(),
        WaitKind::File => fs::metadata(target).is_ok_and(|m| m.is_file()),
        WaitKind::Dir => fs::metadata(target).is_ok_and(|m| m.is_dir()),
        WaitKind::Socket if target.contains('/') => {
            std::os::unix::net::UnixStream::connect(target).is_ok()
        }
        WaitKind::Socket => std::net::TcpStream::connect(target).is_ok(),
    };
    poll_until(timeout, ready).map_err(|()| ActionError::WaitTimedOut {
        action: kind.action_name(),
        target: target.to_owned(),
        what,
        timeout,
    })
}

/// Calls `ready` every [`WAIT_POLL`] until it says yes, or `timeout` has passed.
fn poll_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(());
        }
        std::thread::sleep(WAIT_POLL.min(deadline - now));
    }
}

/// writefifo, retried while nobody reads the FIFO (ENXIO) or it does not exist yet.
fn spinning_fifo(path: &Path, data: &str, timeout: Duration) -> Result<(), ActionError> {
    let mut last = None;
    let waited = poll_until(timeout, || match write_fifo(path, data) {
        Err(ActionError::FifoOpen { ref cause, .. })
            if matches!(
                cause.raw_os_error().map(Errno::from_raw),
                Some(Errno::ENXIO | Errno::ENOENT)
            ) =>
        {
            false
        }
        other => {
            last = Some(other);
            true
        }
    });
    match (waited, last) {
        (Ok(()), Some(result)) => result,
        _ => Err(ActionError::WaitTimedOut {
            action: "spinningfifo",
            target: path.display().to_string(),
            what: "read",
            timeout,
        }),
    }
}

/// Unmounts every mount below `target` (deepest first: a pass unmounts what has
/// nothing mounted on it, until a pass unmounts nothing), as uWSGI's `rec` does. What
/// cannot be unmounted is left for the unmount of `target` to report.
fn umount_below(target: &Path, flags: MntFlags) {
    let prefix = format!("{}/", target.display().to_string().trim_end_matches('/'));
    loop {
        let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
            return;
        };
        let below: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split(' ').nth(1))
            .filter(|point| point.starts_with(&prefix))
            .collect();
        let unmounted = below
            .iter()
            .rev()
            .filter(|point| nix::mount::umount2(**point, flags).is_ok())
            .count();
        if unmounted == 0 {
            return;
        }
    }
}

fn write_file(path: &Path, data: &str, append: bool) -> Result<(), ActionError> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .and_then(|mut file| file.write_all(data.as_bytes()))
        .map_err(|cause| ActionError::Write {
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
        let err = run_plain_waiting(&parse(&format!("wait_for_dir:{}", file.display())), short)
            .unwrap_err();
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
}
