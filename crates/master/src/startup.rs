//! The master's start, one function per step, in phase order:
//!
//! 1. [`asap`]: `chdir`, the process names ([`name_master`], while /proc/self/mem is
//!    still writable), `daemonize`, `immediate-gid` / `immediate-uid`
//! 2. [`jail`]: pre-jail, the jail itself (chroot / unshare), in-jail, post-jail
//! 3. (the sockets are bound or adopted: Master::new, as root, so ports < 1024 work)
//! 4. [`as_root`]: `priority`, `ksm`, `no-swap`, `pidfile`, then the as-root hooks
//! 5. [`drop_privileges`]: `add-gid` -> `gid` -> `uid`; the control socket, FIFOs and
//!    notify socket are given to the final user first
//! 6. [`as_user`]: `pidfile2`, then the as-user hooks
//! 7. [`master_start`]: right before the first generation is forked (`daemonize2`)
//! 8. [`first_generation_ready`]: `chdir2`, `safe-pidfile`, `safe-pidfile2`
//!
//! Each place where a phase's hooks run is marked `HOOKS(phase)`.
//!
//! A master that re-executed itself for a binary upgrade (`resumed`) runs the steps
//! again where that is harmless, and skips what happened once already (detaching,
//! pidfiles), or may no longer be possible after the drop (a failure there is a warning).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use steward_options::Options;
use tracing::{info, warn};

use crate::{daemon, pidfile::write_pidfile, privileges::Credentials, procname, MasterError};

/// Step 1: what must happen before anything else. Returns the credentials of step 5,
/// resolved now, while the user and group databases are reachable (before any jail).
pub(crate) fn asap(
    options: &Options,
    resumed: bool,
    original_argv: &[OsString],
) -> Result<Credentials, MasterError> {
    // HOOKS(asap): the asap hooks run here, first of all.
    if let Some(dir) = &options.chdir {
        change_directory("chdir", dir)?;
    }
    name_master(options, original_argv);
    if let Some(target) = options.daemonize.as_ref().filter(|_| !resumed) {
        daemon::daemonize("daemonize", target)?;
    }
    let immediate = Credentials::resolve(
        ("immediate-uid", options.immediate_uid.as_deref()),
        ("immediate-gid", options.immediate_gid.as_deref()),
        &options.add_gid,
    )?;
    let final_credentials = Credentials::resolve(
        ("uid", options.uid.as_deref()),
        ("gid", options.gid.as_deref()),
        &options.add_gid,
    )?;
    immediate.apply("immediate-uid/immediate-gid")?;
    Ok(final_credentials)
}

/// Step 2: the jail. Nothing is done here yet besides the hook points.
pub(crate) fn jail(_options: &Options) -> Result<(), MasterError> {
    // HOOKS(pre-jail)
    // The jail itself (chroot, unshare) goes here.
    // HOOKS(in-jail)
    // HOOKS(post-jail)
    Ok(())
}

/// Step 4: settings that need root, then the pidfile written as root.
pub(crate) fn as_root(options: &Options, resumed: bool) -> Result<(), MasterError> {
    // A re-exec'd master may have dropped the privileges these need; the settings of the
    // first image hold for the workers already running, so a failure is only a warning.
    let tolerate = |result: Result<(), MasterError>| match result {
        Err(e) if resumed => {
            warn!(error = %e, "after re-exec");
            Ok(())
        }
        other => other,
    };
    if let Some(nice) = options.priority {
        tolerate(steward_sys::set_priority(nice).map_err(MasterError::Priority))?;
    }
    if options.ksm {
        tolerate(
            steward_sys::enable_memory_merge().map_err(|source| MasterError::Ksm {
                kernel: kernel_release(),
                source,
            }),
        )?;
    }
    if options.no_swap {
        tolerate(steward_sys::lock_memory().map_err(MasterError::NoSwap))?;
    }
    if let Some(path) = options.pidfile.as_deref().filter(|_| !resumed) {
        write_pidfile("pidfile", path, std::process::id())?;
    }
    // HOOKS(as-root)
    Ok(())
}

/// The master's name (`procname-master`, `auto-procname`...), set before any change of
/// user: a process that left root is not dumpable, and its /proc/self/mem is then
/// root's. Failing is a warning.
pub(crate) fn name_master(options: &Options, original_argv: &[OsString]) {
    let argv: Vec<String> = original_argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(title) = procname::master_title(options, &argv) {
        if let Err(e) = procname::set_own_title(&title) {
            warn!(error = %e, title, "cannot set the master's process name");
        }
    }
}

/// Step 5: the drop. `owned` are the paths the master created as root and must still
/// be able to remove (and, for the control socket and FIFOs, be the only one to use).
pub(crate) fn drop_privileges(
    credentials: &Credentials,
    owned: &[&Path],
) -> Result<(), MasterError> {
    if credentials.is_empty() {
        return Ok(());
    }
    for path in owned {
        credentials.give(path)?;
    }
    credentials.apply("uid/gid")
}

/// Step 6: what runs as the final user.
pub(crate) fn as_user(options: &Options, resumed: bool) -> Result<(), MasterError> {
    if let Some(path) = options.pidfile2.as_deref().filter(|_| !resumed) {
        write_pidfile("pidfile2", path, std::process::id())?;
    }
    // HOOKS(as-user)
    Ok(())
}

/// Step 7: right before the first generation is forked (not after a re-exec).
pub(crate) fn master_start(options: &Options) -> Result<(), MasterError> {
    // HOOKS(master-start)
    // daemonize2 detaches here, once everything that can fail at start has passed, and
    // not later: the workers must be the children of the process that stays.
    if let Some(target) = &options.daemonize2 {
        daemon::daemonize("daemonize2", target)?;
        let pid = std::process::id();
        info!(pid, "daemonized (daemonize2)");
        // The pidfiles name the process that stays. `pidfile` may be root's while the
        // master no longer is: then it keeps the old pid, and says so.
        for (option, path) in [
            ("pidfile", &options.pidfile),
            ("pidfile2", &options.pidfile2),
        ] {
            if let Some(path) = path {
                if let Err(e) = write_pidfile(option, path, pid) {
                    warn!(error = %e, "the pidfile still holds the pid of the process that detached");
                }
            }
        }
    }
    Ok(())
}

/// Step 8: once the first generation is ready. Errors here are logged: the master is
/// serving, and stopping it would do more harm than a missing pidfile.
pub(crate) fn first_generation_ready(options: &Options) {
    if let Some(dir) = &options.chdir2 {
        if let Err(e) = change_directory("chdir2", dir) {
            warn!(error = %e, "workers started from now on keep the old directory");
        }
    }
    let pid = std::process::id();
    for (option, path) in [
        ("safe-pidfile", &options.safe_pidfile),
        ("safe-pidfile2", &options.safe_pidfile2),
    ] {
        if let Some(path) = path {
            if let Err(e) = write_pidfile(option, path, pid) {
                warn!(error = %e, "pidfile not written");
            }
        }
    }
}

/// The files the master removes at exit under `vacuum`: its pidfiles.
pub(crate) fn pidfiles(options: &Options) -> Vec<PathBuf> {
    [
        &options.pidfile,
        &options.pidfile2,
        &options.safe_pidfile,
        &options.safe_pidfile2,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

fn change_directory(option: &'static str, dir: &Path) -> Result<(), MasterError> {
    nix::unistd::chdir(dir).map_err(|errno| MasterError::Chdir {
        option,
        path: dir.to_owned(),
        errno,
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
