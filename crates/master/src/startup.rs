//! The master's start, one function per step, in phase order:
//!
//! 1. [`asap`]: the asap hooks, `chdir`, the process names ([`name_master`], while
//!    /proc/self/mem is still writable), `daemonize`, `immediate-gid` / `immediate-uid`;
//!    `uid`, `gid`, `add-gid` resolved (with the host's user database, before a chroot
//!    hides it)
//! 2. (the sockets are bound or adopted: Master::new, as root, so ports < 1024 work,
//!    and before the jail, so they are the host's: its network, its paths; so are the
//!    notify socket, the control socket and the FIFOs)
//! 3. [`give_to_final_user`]: the control socket, FIFOs and notify socket are given to
//!    the final user, while their paths are the host's
//! 4. [`jail`]: pre-jail hooks, unshare, in-jail hooks, chroot, post-jail hooks
//! 5. [`as_root`]: `priority`, `ksm`, `no-swap`, `pidfile`, then the as-root hooks
//! 6. [`drop_privileges`]: `add-gid` -> `gid` -> `uid`
//! 7. [`as_user`]: `pidfile2`, then the as-user hooks
//! 8. [`master_start`]: the master-start hooks, right before the first generation is
//!    forked (`daemonize2`)
//! 9. [`first_generation_ready`]: `chdir2`, `safe-pidfile`, `safe-pidfile2`
//!
//! The other phases (pre-app, post-app, accepting*, as-user-atexit, as-mule) run in the
//! loop: see master/phases.rs. A re-exec'd master runs no start hook again.
//!
//! A master that re-executed itself for a binary upgrade (`resumed`) runs the steps
//! again where that is harmless, and skips what happened once already (detaching,
//! pidfiles), or may no longer be possible after the drop (a failure there is a warning).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use nix::{
    sys::{
        signal::{kill, sigprocmask, SigmaskHow, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};
use steward_hooks::{Hooks, Jail, Phase};
use steward_options::Options;
use steward_sys::{fork_master, Forked};
use steward_systemd::{Notifier, State};
use tracing::{info, warn};

use crate::{
    command, daemon,
    event::handled_signals,
    pidfile::{write_pidfile, HeldPidfile},
    privileges::{self, Credentials},
    procname, MasterError,
};

/// Step 1: what must happen before anything else. Returns the credentials of step 6,
/// resolved now, while the user and group databases are reachable (before any jail).
pub(crate) fn asap(
    options: &Options,
    hooks: &Hooks,
    resumed: bool,
    original_argv: &[OsString],
) -> Result<Credentials, MasterError> {
    if !resumed {
        if crate::vassal::emperor().is_some() {
            hooks.run(Phase::AsVassal)?;
        }
        hooks.run(Phase::Asap)?;
    }
    if let Some(dir) = &options.chdir {
        match change_directory("chdir", dir) {
            // The old image is serving from there: a directory gone since is no reason
            // to end it at an upgrade.
            Err(e) if resumed => {
                warn!(error = %e, "after re-exec; workers start in the directory steward was started in")
            }
            other => other?,
        }
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
    if !resumed {
        immediate.apply("immediate-uid/immediate-gid")?;
    }
    Ok(final_credentials)
}

/// In a re-exec'd image: the old one applied the credentials already, and a master that
/// left root cannot take others. Ones the file now names differently need a restart.
fn keep_running_credentials(credentials: &Credentials, options: &'static str) {
    if !credentials.already_applied() {
        warn!(
            event = crate::events::NEEDS_RESTART,
            option = options,
            uid = %nix::unistd::getuid(),
            gid = %nix::unistd::getgid(),
            "needs a restart: {options} differ from those the master runs with; the running ones are kept"
        );
    }
}

/// In a re-exec'd image, once its files are known: a re-exec happens only after the
/// first generation served, so the new image goes back to where chdir2 had taken the
/// old one (the exec started it where steward was first started, so that relative
/// paths meant what they meant then).
pub(crate) fn resume_chdir2(options: &Options) {
    if let Some(dir) = &options.chdir2 {
        if let Err(e) = change_directory("chdir2", dir) {
            warn!(error = %e, "workers started from now on keep the chdir directory");
        }
    }
}

/// What `steward check` can find out before a start: the users, groups and worker
/// program the options name, each looked up as a start would. Each failure comes with
/// the option that named it.
pub fn unresolved_names(options: &Options) -> Vec<(&'static str, MasterError)> {
    let mut failures = Vec::new();
    for (option, user) in [
        ("immediate-uid", &options.immediate_uid),
        ("uid", &options.uid),
    ] {
        if let Some(Err(e)) = user.as_deref().map(|v| privileges::resolve_user(option, v)) {
            failures.push((option, e));
        }
    }
    let groups = [
        ("immediate-gid", &options.immediate_gid),
        ("gid", &options.gid),
    ]
    .into_iter()
    .filter_map(|(option, group)| Some((option, group.as_deref()?)))
    .chain(options.add_gid.iter().map(|v| ("add-gid", v.as_str())));
    for (option, group) in groups {
        if let Err(e) = privileges::resolve_group(option, group) {
            failures.push((option, e));
        }
    }
    if let Err(e) = crate::listen::SocketAccess::new(options) {
        failures.push(("chown-socket", e));
    }
    // A relative path to the program starts from `chdir`, entered before it is looked up.
    let program = options
        .command
        .first()
        .map(|program| match options.chdir.as_deref() {
            Some(dir) if program.contains('/') && Path::new(program).is_relative() => {
                dir.join(program).to_string_lossy().into_owned()
            }
            _ => program.clone(),
        });
    if let Some(Err(e)) = program.map(|p| command::resolve(&p)) {
        failures.push(("command", e));
    }
    failures
}

/// Step 4: the jail, entered once (a re-exec'd master is in it already). With a new
/// pid namespace the master forks: the child, pid 1 there, unshares the other
/// namespaces, runs in-jail, chroots and carries on as the master; the parent, in none
/// of the new namespaces, runs post-jail and stays, forwarding signals, until the child
/// exits, then exits as it did.
pub(crate) fn jail(hooks: &Hooks, jail: &Jail, resumed: bool) -> Result<(), MasterError> {
    if resumed {
        return Ok(());
    }
    hooks.run(Phase::PreJail)?;
    if jail.forks() {
        // Blocked before the fork, so that no signal meant for the child is lost.
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None)
            .map_err(MasterError::Signals)?;
        let original = Jail::pid_namespace()?;
        jail.unshare_pid()?;
        if let Forked::Parent { child } = fork_master().map_err(MasterError::JailFork)? {
            // The parent stays in every namespace it was in: its post-jail hooks run
            // outside, and so do the processes they start.
            Jail::restore_pid_namespace(&original)?;
            return outside_the_pid_namespace(hooks, child);
        }
        remember_outer_pid();
    }
    // The other namespaces: the master's own (the child's, when it forked).
    jail.unshare()?;
    // Inside the new namespaces, before the chroot: what is mounted here can furnish
    // the new root without ever showing on the host.
    hooks.run(Phase::InJail)?;
    jail.chroot()?;
    if !jail.is_empty() {
        info!("jailed");
    }
    if !jail.forks() {
        hooks.run(Phase::PostJail)?;
    }
    Ok(())
}

/// The master's pid as seen where steward was started, when it differs from getpid():
/// in a new pid namespace the master is pid 1, which a pidfile must never say.
static OUTER_PID: OnceLock<u32> = OnceLock::new();

/// The pid the pidfiles hold.
fn outer_pid() -> u32 {
    OUTER_PID.get().copied().unwrap_or_else(std::process::id)
}

/// Right after the fork into a pid namespace, /proc is still the one of the namespace
/// steward started in: /proc/self names this process as seen from there.
fn remember_outer_pid() {
    let pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|link| link.to_str()?.parse::<u32>().ok());
    match pid {
        Some(pid) => {
            let _ = OUTER_PID.set(pid);
        }
        None => warn!("cannot read /proc/self: pidfiles will hold the pid in the new namespace"),
    }
}

/// The parent of a master in a new pid namespace: post-jail, then systemd is told the
/// child is the main process (its notifications come from there), and the signals the
/// parent gets go to the child, until it exits. Returns only an error of post-jail.
fn outside_the_pid_namespace(hooks: &Hooks, child: Pid) -> Result<(), MasterError> {
    info!(master = %child, "forked into a new pid namespace; forwarding signals to the master");
    if let Err(e) = hooks.run(Phase::PostJail) {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err(e.into());
    }
    if let Ok(systemd) = Notifier::from_env() {
        let _ = systemd.send(&[State::MainPid(child.as_raw() as u32)]);
    }
    // The signals a master handles are forwarded; SIGCHLD says the master exited.
    let signals = handled_signals();
    loop {
        let Ok(signal) = signals.wait() else { continue };
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        // This process is a fork of the caller's: returning would run the embedding
        // program's code a second time, so it ends here with the master's status.
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => std::process::exit(128 + signal as i32),
            _ => {}
        }
    }
}

/// Step 5: settings that need root, then the pidfile written as root. With
/// `daemonize2`, the pidfile is returned held open, for the daemon's pid.
pub(crate) fn as_root(
    options: &Options,
    hooks: &Hooks,
    resumed: bool,
) -> Result<Option<HeldPidfile>, MasterError> {
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
    let mut held = None;
    if let Some(path) = options.pidfile.as_deref().filter(|_| !resumed) {
        write_pidfile("pidfile", path, outer_pid())?;
        if options.daemonize2.is_some() {
            held = Some(HeldPidfile::open("pidfile", path)?);
        }
    }
    if !resumed {
        hooks.run(Phase::AsRoot)?;
        if crate::vassal::emperor().is_some() {
            hooks.run(Phase::AsVassalBeforeDrop)?;
        }
    }
    Ok(held)
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

/// Step 3: `owned` are the paths the master created as root and must still be able to
/// remove (and, for the control socket and FIFOs, be the only one to use): they are
/// given to the final user now, while their paths are the host's.
pub(crate) fn give_to_final_user(
    credentials: &Credentials,
    owned: &[&Path],
    resumed: bool,
) -> Result<(), MasterError> {
    if credentials.is_empty() {
        return Ok(());
    }
    if resumed {
        keep_running_credentials(credentials, "uid/gid/add-gid");
        return Ok(());
    }
    for path in owned {
        credentials.give(path)?;
    }
    Ok(())
}

/// Step 6: the drop. A re-exec'd image runs as the old one left it (see step 3).
pub(crate) fn drop_privileges(credentials: &Credentials, resumed: bool) -> Result<(), MasterError> {
    if credentials.is_empty() || resumed {
        return Ok(());
    }
    credentials.apply("uid/gid")
}

/// Step 7: what runs as the final user.
pub(crate) fn as_user(options: &Options, hooks: &Hooks, resumed: bool) -> Result<(), MasterError> {
    if let Some(path) = options.pidfile2.as_deref().filter(|_| !resumed) {
        write_pidfile("pidfile2", path, outer_pid())?;
    }
    if !resumed {
        hooks.run(Phase::AsUser)?;
    }
    Ok(())
}

/// Step 8: right before the first generation is forked (not after a re-exec).
pub(crate) fn master_start(
    options: &Options,
    hooks: &Hooks,
    held_pidfile: Option<HeldPidfile>,
) -> Result<(), MasterError> {
    hooks.run(Phase::MasterStart)?;
    // daemonize2 detaches here, once everything that can fail at start has passed, and
    // not later: the workers must be the children of the process that stays.
    if let Some(target) = &options.daemonize2 {
        daemon::daemonize("daemonize2", target)?;
        let pid = outer_pid();
        info!(pid, "daemonized (daemonize2)");
        // The pidfiles name the process that stays. `pidfile` was written as root, in a
        // directory the master may no longer write: it goes through the file held open.
        let pidfile = match (&held_pidfile, options.pidfile.as_deref()) {
            (Some(held), _) => Some(held.rewrite(pid)),
            (None, Some(path)) => Some(write_pidfile("pidfile", path, pid)),
            (None, None) => None,
        };
        let pidfile2 =
            (options.pidfile2.as_deref()).map(|path| write_pidfile("pidfile2", path, pid));
        for result in [pidfile, pidfile2].into_iter().flatten() {
            if let Err(e) = result {
                warn!(error = %e, "the pidfile still holds the pid of the process that detached");
            }
        }
    }
    Ok(())
}

/// Step 9: once the first generation is ready. Errors here are logged: the master is
/// serving, and stopping it would do more harm than a missing pidfile.
pub(crate) fn first_generation_ready(options: &Options) {
    if let Some(dir) = &options.chdir2 {
        if let Err(e) = change_directory("chdir2", dir) {
            warn!(error = %e, "workers started from now on keep the old directory");
        }
    }
    let pid = outer_pid();
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

/// The files the master removes at exit under `vacuum`: its pidfiles. A relative path
/// starts from where the file was written: `files_dir` (the directory after `chdir`),
/// or `chdir2` for the safe pidfiles, written once the first generation is ready.
pub(crate) fn pidfiles(options: &Options, files_dir: &Path) -> Vec<PathBuf> {
    let safe_dir = options
        .chdir2
        .as_deref()
        .map_or_else(|| files_dir.to_owned(), |dir| files_dir.join(dir));
    [
        (&options.pidfile, files_dir),
        (&options.pidfile2, files_dir),
        (&options.safe_pidfile, &safe_dir),
        (&options.safe_pidfile2, &safe_dir),
    ]
    .into_iter()
    .filter_map(|(path, dir)| path.as_ref().map(|path| dir.join(path)))
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
