//! What `steward check` can see of a start's failures before the start: the
//! directories the master enters or writes in, the paths it binds, the names it looks
//! up. Each check follows what the start step does (startup.rs, control.rs, listen.rs);
//! a file the master writes after it dropped privileges is checked against the user it
//! drops to, as the start would meet it.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nix::unistd::{Gid, Uid};
use steward_options::{ListenAddr, Options};

use crate::privileges::Credentials;

/// One thing a start would refuse (or fail at): the option that asks for it, which of
/// its values (for a list), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The option (`chdir`, `pidfile2`, `listen`).
    pub option: &'static str,
    /// The value's position among the option's values (0 for a single value).
    pub index: usize,
    /// What is wrong, naming the option and the path or name.
    pub message: String,
}

/// The longest path a unix socket address holds (sun_path, with its NUL).
const SUN_PATH: usize = 108;

/// Everything [`preflight`] finds for `options`, the users and programs of
/// [`crate::unresolved_names`] included.
pub fn preflight(options: &Options) -> Vec<Finding> {
    let mut findings: Vec<Finding> = crate::unresolved_names(options)
        .into_iter()
        .map(|(option, error)| Finding {
            option,
            index: 0,
            message: error.to_string(),
        })
        .collect();
    let base = options.chdir.clone().unwrap_or_default();
    if let Some(dir) = &options.chdir {
        if !dir.is_dir() {
            findings.push(finding(
                "chdir",
                0,
                format!("no such directory {}", dir.display()),
            ));
        }
    }
    // After the drop the master is this user: what it writes then must be writable so,
    // and the workers exec the program so.
    let dropped = Credentials::resolve(
        ("uid", options.uid.as_deref()),
        ("gid", options.gid.as_deref()),
        &options.add_gid,
    )
    .ok()
    .filter(|c| !c.is_empty() && Uid::effective().is_root());
    findings.extend(pidfile_findings(options, &base, dropped.as_ref()));
    findings.extend(
        dropped
            .as_ref()
            .and_then(|user| program_finding(options, &base, user)),
    );
    for (index, path) in options.touch_reload.iter().enumerate() {
        // The watch is on the parent directory (an editor replaces the file).
        findings.extend(
            directory_problem(&base.join(path), None).map(|m| finding("touch-reload", index, m)),
        );
    }
    for (index, path) in options.master_fifo.iter().enumerate() {
        findings.extend(
            directory_problem(&base.join(path), None).map(|m| finding("master-fifo", index, m)),
        );
    }
    for (index, spec) in options.listen.iter().enumerate() {
        if let ListenAddr::Unix(path) = &spec.addr {
            findings.extend(
                directory_problem(&base.join(path), None).map(|m| finding("listen", index, m)),
            );
        }
    }
    findings.extend(control_socket_finding(options, &base));
    findings
}

/// The pidfiles' directories; those written after the drop, as the user dropped to.
fn pidfile_findings(options: &Options, base: &Path, dropped: Option<&Credentials>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let safe_base = options
        .chdir2
        .as_deref()
        .map_or_else(|| base.to_owned(), |dir| base.join(dir));
    for (option, path, base, after_drop) in [
        ("pidfile", &options.pidfile, base, false),
        ("pidfile2", &options.pidfile2, base, true),
        (
            "safe-pidfile",
            &options.safe_pidfile,
            safe_base.as_path(),
            true,
        ),
        (
            "safe-pidfile2",
            &options.safe_pidfile2,
            safe_base.as_path(),
            true,
        ),
    ] {
        let Some(path) = path else { continue };
        let user = dropped.filter(|_| after_drop);
        findings.extend(directory_problem(&base.join(path), user).map(|m| finding(option, 0, m)));
    }
    findings
}

/// The control socket's path: short enough for a unix socket address, in a directory.
fn control_socket_finding(options: &Options, base: &Path) -> Option<Finding> {
    let runtime = std::env::var_os("RUNTIME_DIRECTORY");
    let path = crate::control_socket_path(options.control_socket.as_deref(), runtime.as_deref())
        .map(|path| base.join(path))?;
    if path.as_os_str().len() >= SUN_PATH {
        return Some(finding(
            "control-socket",
            0,
            format!(
                "{}: a unix socket path must be shorter than {SUN_PATH} bytes (this one has {})",
                path.display(),
                path.as_os_str().len()
            ),
        ));
    }
    directory_problem(&path, None).map(|m| finding("control-socket", 0, m))
}

fn finding(option: &'static str, index: usize, message: String) -> Finding {
    Finding {
        option,
        index,
        message: format!("{option}: {message}"),
    }
}

/// Why a file cannot be created at `path`: its directory is missing, is not a
/// directory, or (for `user`) is not writable by that user.
fn directory_problem(path: &Path, user: Option<&Credentials>) -> Option<String> {
    let dir: PathBuf = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let metadata = match std::fs::metadata(&dir) {
        Ok(metadata) => metadata,
        Err(_) => {
            return Some(format!(
                "{}: the directory {} does not exist",
                path.display(),
                dir.display()
            ))
        }
    };
    if !metadata.is_dir() {
        return Some(format!(
            "{}: {} is not a directory",
            path.display(),
            dir.display()
        ));
    }
    let user = user?;
    (!permits(&metadata, user, 0o2)).then(|| {
        format!(
            "{}: the master writes it after it drops privileges, and {} cannot write in {}",
            path.display(),
            who(user),
            dir.display()
        )
    })
}

/// Whether `user` has `bit` (0o2 write, 0o1 execute) on a file with `metadata`, by its
/// mode bits (ACLs aside).
fn permits(metadata: &std::fs::Metadata, user: &Credentials, bit: u32) -> bool {
    let uid = user.uid.unwrap_or_else(Uid::effective);
    let gid = user.gid.unwrap_or_else(Gid::effective);
    let in_group =
        metadata.gid() == gid.as_raw() || user.groups.iter().any(|g| g.as_raw() == metadata.gid());
    let bits = if uid.is_root() {
        // Root may write anything, and execute what anyone may execute.
        if bit == 0o2 {
            return true;
        }
        metadata.mode() | metadata.mode() >> 3 | metadata.mode() >> 6
    } else if metadata.uid() == uid.as_raw() {
        metadata.mode() >> 6
    } else if in_group {
        metadata.mode() >> 3
    } else {
        metadata.mode()
    };
    bits & bit != 0
}

/// `uid U (gid G)` of the user dropped to.
fn who(user: &Credentials) -> String {
    let uid = user.uid.unwrap_or_else(Uid::effective);
    let gid = user.gid.unwrap_or_else(Gid::effective);
    format!("uid {uid} (gid {gid})")
}

/// The worker program, which the workers exec as the user the master drops to.
fn program_finding(options: &Options, base: &Path, user: &Credentials) -> Option<Finding> {
    let program = options.command.first()?;
    let path = match program.contains('/') {
        true => base.join(program),
        false => crate::command::resolve(program).ok()?,
    };
    let metadata = std::fs::metadata(&path).ok()?;
    (!permits(&metadata, user, 0o1)).then(|| {
        finding(
            "command",
            0,
            format!(
                "{}: the workers run it as {}, who may not execute it",
                path.display(),
                who(user)
            ),
        )
    })
}
