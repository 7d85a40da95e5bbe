//! `name:arg` strings into actions. [`SPELLINGS`] is the whole vocabulary: every name
//! steward reads (uWSGI's other spellings are rows of their own) and how its argument
//! is read; the error for an unknown name lists the table.

use std::{path::PathBuf, str::FromStr};

use nix::mount::{MntFlags, MsFlags};

use super::{
    flags::{mount_flags, umount_flags},
    Action, Owner, WaitKind,
};

/// An action string that cannot be run, with the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionParseError {
    /// No `name:` prefix, or an unknown name.
    #[error(
        "unknown hook action {given:?} in {text:?} (actions: {})",
        action_names()
    )]
    Unknown {
        /// The action name given.
        given: String,
        /// The whole action string.
        text: String,
    },
    /// One of uWSGI's actions that steward has no meaning for, with the reason.
    #[error("uWSGI's hook action {action:?} is not supported by steward: {reason}")]
    Refused {
        /// The action name given.
        action: String,
        /// Why steward has no such action.
        reason: &'static str,
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

type Parsed = Result<Action, ActionParseError>;

/// How one action name reads its argument.
type ReadArg = fn(Arg) -> Parsed;

/// Every action name and how it reads its argument, in the order the error for an
/// unknown name lists them. uWSGI's names (core/hooks.c; uwsgiconf writes `cd:`,
/// `hostname:`, `writen:`, `append:`, `callret:`) parse as the same actions, and an
/// error names the spelling that was written.
const SPELLINGS: &[(&str, ReadArg)] = &[
    ("mkdir", |a| {
        Ok(Action::Mkdir(a.required("a directory")?.into()))
    }),
    ("chdir", |a| {
        Ok(Action::Chdir(a.required("a directory")?.into()))
    }),
    ("cd", |a| {
        Ok(Action::Chdir(a.required("a directory")?.into()))
    }),
    ("exec", |a| Ok(Action::Exec(a.required("a command")?))),
    ("safeexec", |a| {
        Ok(Action::SafeExec(a.required("a command")?))
    }),
    ("call", |a| Ok(Action::Call(a.required("a callback name")?))),
    // uWSGI's callret fails on a non-zero return; a callback's error always fails here.
    ("callret", |a| {
        Ok(Action::Call(a.required("a callback name")?))
    }),
    ("exit", exit),
    ("writefifo", |a| {
        let (path, data) = a.path_and_data()?;
        Ok(Action::WriteFifo { path, data })
    }),
    ("create", |a| {
        Ok(Action::Create(a.required("a path")?.into()))
    }),
    ("creat", |a| {
        Ok(Action::Create(a.required("a path")?.into()))
    }),
    ("write", |a| a.write(false, false)),
    ("writen", |a| a.write(false, true)),
    ("append", |a| a.write(true, false)),
    ("appendn", |a| a.write(true, true)),
    ("mount", mount),
    ("umount", umount),
    ("print", |a| Ok(Action::Print(a.text.to_owned()))),
    ("log", |a| Ok(Action::Print(a.text.to_owned()))),
    ("sethostname", |a| {
        Ok(Action::SetHostname(a.required("a host name")?))
    }),
    ("hostname", |a| {
        Ok(Action::SetHostname(a.required("a host name")?))
    }),
    ("unlink", |a| {
        Ok(Action::Unlink(a.required("a path")?.into()))
    }),
    ("alarm", alarm),
    ("putenv", putenv),
    ("chmod", chmod),
    ("chown", |a| {
        a.chown(|word| Ok(Owner::Name(word.to_owned())))
    }),
    ("chown2", |a| {
        a.chown(|word| {
            word.parse()
                .map(Owner::Id)
                .map_err(|_| ActionParseError::Id(word.to_owned()))
        })
    }),
    ("sticky", |a| {
        Ok(Action::Sticky(a.required("a path")?.into()))
    }),
    ("wait_for_fs", |a| a.wait_for(WaitKind::Fs)),
    ("wait_for_file", |a| a.wait_for(WaitKind::File)),
    ("wait_for_dir", |a| a.wait_for(WaitKind::Dir)),
    ("wait_for_socket", |a| a.wait_for(WaitKind::Socket)),
    ("spinningfifo", |a| {
        let (path, data) = a.path_and_data()?;
        Ok(Action::SpinningFifo { path, data })
    }),
];

/// uWSGI's actions (core/hooks.c) that steward refuses, each with its reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "callint",
        "there is no registry of integer-returning plugin callbacks: use call:",
    ),
    (
        "callintret",
        "there is no registry of integer-returning plugin callbacks: use call:",
    ),
    ("rpc", "steward has no RPC subsystem"),
    ("retryrpc", "steward has no RPC subsystem"),
    (
        "unix_signal",
        "steward's signals are fixed (SIGHUP graceful reload, SIGTERM graceful shutdown, \
         SIGINT and SIGQUIT brutal shutdown, SIGUSR1 status report, SIGUSR2 chain reload, \
         SIGTTIN and SIGTTOU one worker more or fewer) and there are no master functions \
         to route a signal to; in a [uwsgi] file, a unix_signal asking for what steward's \
         signal already does is read as a warning",
    ),
];

/// The names of [`SPELLINGS`], as the error for an unknown one lists them.
fn action_names() -> String {
    let names: Vec<&str> = SPELLINGS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

impl FromStr for Action {
    type Err = ActionParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, arg) = text.split_once(':').unwrap_or((text, ""));
        let (name, arg) = (name.trim(), arg.trim());
        let spelling = SPELLINGS.iter().find(|(known, _)| *known == name);
        // Before the name is known good: a NUL byte is wrong whatever the action.
        if arg.contains('\0') {
            return Err(ActionParseError::Nul(spelling.map_or("action", |s| s.0)));
        }
        let (action, parse) =
            spelling.ok_or_else(
                || match REFUSED.iter().find(|(refused, _)| *refused == name) {
                    Some((action, reason)) => ActionParseError::Refused {
                        action: (*action).to_owned(),
                        reason,
                    },
                    None => ActionParseError::Unknown {
                        given: name.to_owned(),
                        text: text.to_owned(),
                    },
                },
            )?;
        parse(Arg { action, text: arg })
    }
}

/// The argument of an action (after `name:`, trimmed), with the name it was written
/// under, which its errors carry.
#[derive(Clone, Copy)]
struct Arg<'a> {
    action: &'static str,
    text: &'a str,
}

impl Arg<'_> {
    fn missing(self, what: &'static str) -> ActionParseError {
        ActionParseError::Missing {
            action: self.action,
            what,
        }
    }

    /// The whole argument, which must not be empty.
    fn required(self, what: &'static str) -> Result<String, ActionParseError> {
        if self.text.is_empty() {
            Err(self.missing(what))
        } else {
            Ok(self.text.to_owned())
        }
    }

    /// `PATH DATA`: the first word, and the rest of the line (which keeps its spaces).
    fn path_and_data(self) -> Result<(PathBuf, String), ActionParseError> {
        let (path, data) = self
            .text
            .split_once(char::is_whitespace)
            .ok_or_else(|| self.missing("DATA after the path"))?;
        Ok((PathBuf::from(path), data.trim_start().to_owned()))
    }

    fn write(self, append: bool, newline: bool) -> Parsed {
        let (path, data) = self.path_and_data()?;
        Ok(Action::Write {
            path,
            data,
            append,
            newline,
        })
    }

    /// `PATH USER GROUP`, each owner read by `owner` (a name or a number).
    fn chown(self, owner: fn(&str) -> Result<Owner, ActionParseError>) -> Parsed {
        let words: Vec<&str> = self.text.split_whitespace().collect();
        let [path, user, group] = words[..] else {
            return Err(self.missing(if self.action == "chown" {
                "PATH USER GROUP"
            } else {
                "PATH UID GID"
            }));
        };
        Ok(Action::Chown {
            path: path.into(),
            user: owner(user)?,
            group: owner(group)?,
        })
    }

    fn wait_for(self, kind: WaitKind) -> Parsed {
        let what = if kind == WaitKind::Socket {
            "an address"
        } else {
            "a path"
        };
        Ok(Action::WaitFor {
            kind,
            target: self.required(what)?,
        })
    }
}

/// `exit[:CODE]`: 0 unless a code is given.
fn exit(arg: Arg) -> Parsed {
    if arg.text.is_empty() {
        return Ok(Action::Exit(0));
    }
    let code = arg
        .text
        .parse::<u8>()
        .map_err(|_| ActionParseError::ExitCode(arg.text.to_owned()))?;
    Ok(Action::Exit(code.into()))
}

/// `FSTYPE SRC DST [FLAGS [DATA]]`, split as uWSGI splits it: four words, then DATA is
/// the rest of the line.
fn mount(arg: Arg) -> Parsed {
    let mut words: Vec<&str> = Vec::new();
    let mut rest = arg.text;
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
        _ => return Err(arg.missing("FSTYPE SRC DST [FLAGS [DATA]]")),
    };
    Ok(Action::Mount {
        fstype: fstype.to_owned(),
        source: source.to_owned(),
        target: target.into(),
        flags: flags.map_or(Ok(MsFlags::empty()), mount_flags)?,
        data,
    })
}

/// `PATH [FLAGS]`.
fn umount(arg: Arg) -> Parsed {
    let words: Vec<&str> = arg.text.split_whitespace().collect();
    let (target, flags) = match words[..] {
        [target] => (target, None),
        [target, flags] => (target, Some(flags)),
        _ => return Err(arg.missing("PATH [FLAGS]")),
    };
    let (flags, recursive) = flags.map_or(Ok((MntFlags::empty(), false)), umount_flags)?;
    Ok(Action::Umount {
        target: target.into(),
        flags,
        recursive,
    })
}

/// `NAME [MSG]`: the alarm's name, and the rest of the line as its message.
fn alarm(arg: Arg) -> Parsed {
    let alarm = arg.required("an alarm name")?;
    let (name, message) = alarm
        .split_once(char::is_whitespace)
        .map_or((alarm.as_str(), ""), |(n, m)| (n, m.trim_start()));
    Ok(Action::Alarm {
        name: name.to_owned(),
        message: message.to_owned(),
    })
}

/// `VAR=VALUE`, VAR one non-empty word; VALUE may be empty or hold `=`.
fn putenv(arg: Arg) -> Parsed {
    let (var, value) = arg
        .text
        .split_once('=')
        .filter(|(var, _)| !var.is_empty() && !var.contains(char::is_whitespace))
        .ok_or_else(|| ActionParseError::PutEnv(arg.text.to_owned()))?;
    Ok(Action::PutEnv {
        name: var.to_owned(),
        value: value.to_owned(),
    })
}

/// `PATH MODE`, MODE octal up to 7777.
fn chmod(arg: Arg) -> Parsed {
    let (path, mode) = arg.path_and_data()?;
    let mode = u32::from_str_radix(&mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or(ActionParseError::Mode(mode))?;
    Ok(Action::Chmod { path, mode })
}

#[cfg(test)]
mod tests;
