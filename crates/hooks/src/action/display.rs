//! An action written back as a hook string: what it prints is what parses into the
//! same action, in steward's own spellings (`chdir`, not uWSGI's `cd`).

use std::{fmt, path::Path};

use nix::mount::{MntFlags, MsFlags};

use super::{
    flags::{mount_flag_names, umount_flag_names},
    Action, Owner,
};

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
            } => write_action(f, path, data, *append, *newline),
            Action::Mount {
                fstype,
                source,
                target,
                flags,
                data,
            } => mount(f, fstype, source, target, *flags, data.as_deref()),
            Action::Umount {
                target,
                flags,
                recursive,
            } => umount(f, target, *flags, *recursive),
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

/// `write`, `writen`, `append` or `appendn`, as the flags say.
fn write_action(
    f: &mut fmt::Formatter<'_>,
    path: &Path,
    data: &str,
    append: bool,
    newline: bool,
) -> fmt::Result {
    let name = if append { "append" } else { "write" };
    let n = if newline { "n" } else { "" };
    write!(f, "{name}{n}:{} {data}", path.display())
}

/// FLAGS is written when DATA is, even empty (`,`): DATA is the fifth word.
fn mount(
    f: &mut fmt::Formatter<'_>,
    fstype: &str,
    source: &str,
    target: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> fmt::Result {
    write!(f, "mount:{fstype} {source} {}", target.display())?;
    if !flags.is_empty() || data.is_some() {
        write!(f, " {}", mount_flag_names(flags))?;
    }
    match data {
        Some(data) => write!(f, " {data}"),
        None => Ok(()),
    }
}

fn umount(
    f: &mut fmt::Formatter<'_>,
    target: &Path,
    flags: MntFlags,
    recursive: bool,
) -> fmt::Result {
    write!(f, "umount:{}", target.display())?;
    let names = umount_flag_names(flags, recursive);
    if names.is_empty() {
        Ok(())
    } else {
        write!(f, " {}", names.join(","))
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
