//! Doing what an action says, for the actions that touch only the process and the file
//! system; `call` and `alarm` need the executor's registries and are run there.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

use nix::mount::{MntFlags, MsFlags};

use super::{
    shell::run_shell,
    wait::{spinning_fifo, wait_for, WaitTimeouts},
    Action, ActionError, Owner,
};

/// Runs `action`, the waiting ones with uWSGI's default timeouts.
#[cfg(test)]
pub(crate) fn run_plain(action: &Action) -> Result<(), ActionError> {
    run_plain_waiting(action, WaitTimeouts::default())
}

/// Runs `action`, the waiting ones waiting at most `timeouts`. `call:` and `alarm:`
/// fail here (no callback, no alarm): the executor runs those itself.
pub(crate) fn run_plain_waiting(
    action: &Action,
    timeouts: WaitTimeouts,
) -> Result<(), ActionError> {
    match action {
        Action::Mkdir(path) => fs::create_dir_all(path).map_err(|cause| ActionError::Mkdir {
            path: path.clone(),
            cause,
        }),
        Action::Chdir(path) => chdir(path),
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
        } => write_file(path, &with_newline(data, *newline), *append),
        Action::Mount {
            fstype,
            source,
            target,
            flags,
            data,
        } => mount(fstype, source, target, *flags, data.as_deref()),
        Action::Umount {
            target,
            flags,
            recursive,
        } => umount(target, *flags, *recursive),
        Action::Print(text) => print(text),
        Action::SetHostname(name) => set_hostname(name),
        Action::Unlink(path) => fs::remove_file(path).map_err(|cause| ActionError::Unlink {
            path: path.clone(),
            cause,
        }),
        Action::Call(name) => Err(ActionError::NoCallback(name.clone())),
        Action::Alarm { name, .. } => Err(ActionError::NoAlarm(name.clone())),
        Action::PutEnv { name, value } => {
            put_env(name, value);
            Ok(())
        }
        Action::Chmod { path, mode } => chmod(path, *mode),
        Action::Sticky(path) => sticky(path),
        Action::Chown { path, user, group } => chown(path, user, group),
        Action::WaitFor { kind, target } => wait_for(*kind, target, timeouts),
        Action::SpinningFifo { path, data } => spinning_fifo(path, data, timeouts.fs),
    }
}

fn chdir(path: &Path) -> Result<(), ActionError> {
    std::env::set_current_dir(path).map_err(|cause| ActionError::Chdir {
        path: path.to_owned(),
        cause,
    })
}

fn with_newline(data: &str, newline: bool) -> String {
    if newline {
        format!("{data}\n")
    } else {
        data.to_owned()
    }
}

fn put_env(name: &str, value: &str) {
    // SAFETY (of set_var's contract): the master is one thread by design (no thread or
    // runtime is ever started in it), and hooks run in the master or in a
    // single-threaded child, so no other thread reads the environment now.
    std::env::set_var(name, value);
}

fn set_hostname(name: &str) -> Result<(), ActionError> {
    nix::unistd::sethostname(name).map_err(|errno| ActionError::SetHostname {
        name: name.to_owned(),
        errno,
    })
}

fn print(text: &str) -> Result<(), ActionError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(ActionError::Print)
}

/// mount(2); the filesystem type `none` (a bind mount, a move) is passed as none.
fn mount(
    fstype: &str,
    source: &str,
    target: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), ActionError> {
    let fs = (fstype != "none").then_some(fstype);
    nix::mount::mount(Some(source), target, fs, flags, data).map_err(|errno| ActionError::Mount {
        fstype: fstype.to_owned(),
        source_path: source.to_owned(),
        target: target.to_owned(),
        errno,
    })
}

fn umount(target: &Path, flags: MntFlags, recursive: bool) -> Result<(), ActionError> {
    if recursive {
        umount_below(target, flags);
    }
    nix::mount::umount2(target, flags).map_err(|errno| ActionError::Umount {
        target: target.to_owned(),
        errno,
    })
}

fn chmod(path: &Path, mode: u32) -> Result<(), ActionError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|cause| {
        ActionError::Chmod {
            path: path.to_owned(),
            cause,
        }
    })
}

/// Adds the sticky bit, the file keeping the rest of its mode; a failed stat(2) is a
/// chmod error too.
fn sticky(path: &Path) -> Result<(), ActionError> {
    let mode = fs::metadata(path)
        .map_err(|cause| ActionError::Chmod {
            path: path.to_owned(),
            cause,
        })?
        .permissions()
        .mode();
    chmod(path, (mode & 0o7777) | 0o1000)
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
pub(super) fn write_fifo(path: &Path, data: &str) -> Result<(), ActionError> {
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
mod tests;
