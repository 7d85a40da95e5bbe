use std::{
    ffi::{c_char, CString, OsString},
    fmt,
    os::{
        fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::{
        prctl,
        signal::{
            sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
        },
    },
    unistd::{fork, getpid, getppid, pipe2, read, setpgid, write, ForkResult, Pid},
};

/// The step in the child, between fork and exec, that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ChildStage {
    /// Moving into a process group of its own.
    ProcessGroup = 1,
    /// Asking for SIGKILL when the master dies.
    DeathSignal = 2,
    /// The master was already gone when the child looked.
    Orphaned = 3,
    /// Putting /dev/null on stdin.
    Stdin = 4,
    /// Placing the listening sockets at fd 3 and up.
    Sockets = 5,
    /// Marking every other descriptor close-on-exec.
    CloseFds = 6,
    /// Clearing the signal mask inherited from the master.
    SignalMask = 7,
    /// execve itself.
    Exec = 8,
    /// Catching the stop signal of a forked worker (preload mode).
    StopSignal = 9,
    /// Putting the master's output pipe on stdout and stderr.
    Output = 10,
    /// Becoming the plan's user (no supplementary groups, then its gid, then its uid).
    Credentials = 11,
}

impl ChildStage {
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        use ChildStage::*;
        [
            ProcessGroup,
            DeathSignal,
            Orphaned,
            Stdin,
            Sockets,
            CloseFds,
            SignalMask,
            Exec,
            StopSignal,
            Output,
            Credentials,
        ]
        .into_iter()
        .find(|stage| *stage as u8 == byte)
    }
}

impl fmt::Display for ChildStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChildStage::ProcessGroup => "setpgid",
            ChildStage::DeathSignal => "prctl(PR_SET_PDEATHSIG)",
            ChildStage::Orphaned => "parent check",
            ChildStage::Stdin => "dup2 of /dev/null to stdin",
            ChildStage::Sockets => "placing the sockets at fd 3",
            ChildStage::CloseFds => "close_range",
            ChildStage::SignalMask => "sigprocmask",
            ChildStage::Exec => "execve",
            ChildStage::StopSignal => "catching the stop signal",
            ChildStage::Output => "dup2 of the output pipe to stdout and stderr",
            ChildStage::Credentials => "setgroups, setgid and setuid to the plan's user",
        })
    }
}

/// An argument or environment string that cannot be passed to execve.
#[derive(Debug, thiserror::Error)]
#[error("{what} contains a NUL byte: {value:?}")]
pub struct PlanError {
    what: &'static str,
    value: OsString,
}

/// A failed worker start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The pipe that reports child failures could not be created.
    #[error("pipe2 failed: {0}")]
    Pipe(Errno),
    /// fork itself failed (EAGAIN: process limit, ENOMEM).
    #[error("fork failed: {0}")]
    Fork(Errno),
    /// A step in the child failed; the child has exited and been reaped.
    #[error("{stage} failed in the worker: {errno}")]
    Child {
        /// The failing step.
        stage: ChildStage,
        /// Its error.
        errno: Errno,
    },
}

/// The descriptors a child receives.
#[derive(Debug)]
pub struct ChildFds<'a> {
    /// Put on fd 0; `None` keeps the master's stdin.
    pub stdin: Option<BorrowedFd<'a>>,
    /// Put on fd 1 and 2 (the master reads the worker's output from it); `None` keeps
    /// the master's stdout and stderr.
    pub output: Option<BorrowedFd<'a>>,
    /// Placed at fd 3, 4, ... in this order.
    pub sockets: &'a [BorrowedFd<'a>],
}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

/// Everything a child needs between fork and exec, allocated before fork.
///
/// A plan is reusable: spawn the same command any number of times.
#[derive(Debug)]
pub struct ExecPlan {
    program: CString,
    // The pointer arrays below point into these; they must live as long as the plan.
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    /// `LISTEN_PID=` followed by room for the digits and a NUL; the child writes its own
    /// pid here, because only the child knows it and it may not allocate.
    listen_pid: Option<Box<[u8; 32]>>,
    /// Another `NAME=` slot for the child's pid (`WATCHDOG_PID=`), the same way.
    other_pid: Option<(usize, Box<[u8; 64]>)>,
    /// Room for the temporary duplicates of the sockets in the child.
    scratch_fds: Vec<RawFd>,
    /// The user the child becomes before its exec, if not the parent's.
    credentials: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
}

impl ExecPlan {
    /// Prepares `program` with `argv` (argv\[0\] included) and exactly the environment
    /// `env`, plus `LISTEN_PID=<the child's pid>` when `with_listen_pid` is set.
    pub fn new(
        program: &Path,
        argv: &[OsString],
        env: &[(OsString, OsString)],
        with_listen_pid: bool,
    ) -> Result<Self, PlanError> {
        let cstring = |what, bytes: Vec<u8>| {
            CString::new(bytes).map_err(|e| PlanError {
                what,
                value: OsString::from(std::ffi::OsStr::from_bytes(&e.into_vec())),
            })
        };
        let program = cstring("the program path", program.as_os_str().as_bytes().to_vec())?;
        let argv = argv
            .iter()
            .map(|arg| cstring("an argument", arg.as_bytes().to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let env = env
            .iter()
            .map(|(key, value)| {
                let mut entry = key.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                cstring("an environment variable", entry)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listen_pid = with_listen_pid.then(|| {
            let mut slot = Box::new([0u8; 32]);
            slot[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
            slot
        });
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const c_char> = env.iter().map(|e| e.as_ptr()).collect();
        if let Some(slot) = &listen_pid {
            envp_ptrs.push(slot.as_ptr().cast());
        }
        envp_ptrs.push(std::ptr::null());
        Ok(ExecPlan {
            program,
            _argv: argv,
            _env: env,
            argv_ptrs,
            envp_ptrs,
            listen_pid,
            other_pid: None,
            scratch_fds: Vec::new(),
            credentials: None,
        })
    }

    /// Adds `name=<the child's pid>` to the environment (systemd's `WATCHDOG_PID`),
    /// written by the child as LISTEN_PID is. `name` is at most 40 bytes.
    pub fn with_pid_var(mut self, name: &str) -> Self {
        let mut slot = Box::new([0u8; 64]);
        let prefix = name.len().min(40);
        slot[..prefix].copy_from_slice(&name.as_bytes()[..prefix]);
        slot[prefix] = b'=';
        // Before the terminating null pointer; the slot's bytes stay where they are
        // when the box moves into the plan.
        let end = self.envp_ptrs.len() - 1;
        self.envp_ptrs.insert(end, slot.as_ptr().cast());
        self.other_pid = Some((prefix + 1, slot));
        self
    }

    /// Makes the child drop to `uid`/`gid` (and no supplementary groups) before its
    /// exec, as std's `Command::uid`/`gid` do: what it runs never holds the parent's
    /// privileges, not even for its first instruction.
    pub fn with_credentials(mut self, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> Self {
        self.credentials = Some((uid, gid));
        self
    }
}

/// Forks and execs `plan` with `fds`; returns the child's pid once execve succeeded.
///
/// The child gets its own process group, SIGKILL when the master dies, default signal
/// dispositions and an empty signal mask, stdin and the sockets from `fds`, and no
/// other descriptor (everything from fd 3 + the number of sockets up is close-on-exec).
/// This call waits until the child has exec'd or failed, so a worker whose command
/// cannot run is reported here, with the step that failed. To start many workers
/// without waiting for each exec in turn, use [`spawn_unconfirmed`].
pub fn spawn(plan: &mut ExecPlan, fds: &ChildFds<'_>) -> Result<Pid, SpawnError> {
    spawn_unconfirmed(plan, fds)?.confirm()
}

/// A forked child whose exec is not confirmed yet: [`Unconfirmed::confirm`] waits for
/// it and returns its pid, or the step that failed (and reaps the child).
///
/// Each one holds the read end of its report pipe (close-on-exec, so later children do
/// not keep it past their own exec): confirm a batch before forking the next one, so
/// that the master stays below its descriptor limit.
#[derive(Debug)]
#[must_use = "an unconfirmed child must be confirmed, or its failure is never seen"]
pub struct Unconfirmed {
    child: Pid,
    report: OwnedFd,
}

impl Unconfirmed {
    /// The child's pid (it may still fail before its exec).
    pub fn pid(&self) -> Pid {
        self.child
    }

    /// Waits until the child has exec'd (its pid) or failed (the step and its errno; the
    /// child has exited and is reaped).
    pub fn confirm(self) -> Result<Pid, SpawnError> {
        await_setup_report(&self.report, self.child)
    }
}

/// Forks and starts exec'ing `plan` with `fds` like [`spawn`], but returns as soon as
/// the child is forked: the master forks the next worker while this one execs.
pub fn spawn_unconfirmed(
    plan: &mut ExecPlan,
    fds: &ChildFds<'_>,
) -> Result<Unconfirmed, SpawnError> {
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    plan.scratch_fds.clear();
    plan.scratch_fds.resize(fds.sockets.len(), -1);
    let parent = getpid();

    match fork_child(plan, fds, parent, report_write.as_raw_fd()) {
        Err(errno) => Err(SpawnError::Fork(errno)),
        // The write end is dropped here, so end of file on the pipe means the child's
        // execve closed it: the command is running.
        Ok(child) => Ok(Unconfirmed {
            child,
            report: report_read,
        }),
    }
}

/// Reads the child's setup report from the pipe's read end, once the parent dropped
/// its write end: end of file means the setup succeeded; five bytes (stage, errno,
/// as [`encode_failure`] wrote them) mean it failed and the child exits with 127,
/// so it is reaped here and is no zombie.
pub(crate) fn await_setup_report(report_read: &OwnedFd, child: Pid) -> Result<Pid, SpawnError> {
    let mut report = [0u8; 5];
    let mut filled = 0;
    while filled < report.len() {
        match read(report_read, &mut report[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if filled < report.len() {
        return Ok(child);
    }
    let _ = nix::sys::wait::waitpid(child, None);
    let stage = ChildStage::from_byte(report[0]).unwrap_or(ChildStage::Exec);
    let errno = Errno::from_raw(i32::from_ne_bytes([
        report[1], report[2], report[3], report[4],
    ]));
    Err(SpawnError::Child { stage, errno })
}

/// The child's failure report for [`await_setup_report`], built without allocating.
pub(crate) fn encode_failure(stage: ChildStage, errno: Errno) -> [u8; 5] {
    let errno = (errno as i32).to_ne_bytes();
    [stage as u8, errno[0], errno[1], errno[2], errno[3]]
}

/// `_exit`: no atexit handler and no flush of stdio buffers that belong to the master.
#[allow(unsafe_code)]
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and only ends the process.
    unsafe { libc::_exit(code) }
}

/// The setup a worker gets after fork whether it execs a command or runs a closure:
/// default signal dispositions (SIGPIPE ignored if `ignore_sigpipe`), its own process
/// group, SIGKILL when the master dies, stdin from `fds`, and every socket copied
/// (close-on-exec) above the range 3.. into `scratch`, ready to be placed at 3, 4, ...
/// Only async-signal-safe calls, no allocation; Err names the failing step.
#[allow(unsafe_code)]
pub(crate) fn prepare_child(
    fds: &ChildFds<'_>,
    parent: Pid,
    scratch: &mut [RawFd],
    ignore_sigpipe: bool,
) -> Result<(), (ChildStage, Errno)> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        let action = if ignore_sigpipe && signal == Signal::SIGPIPE {
            &ignore
        } else {
            &default
        };
        // SAFETY: installing SIG_DFL or SIG_IGN runs no handler code; sigaction is
        // async-signal-safe.
        let _ = unsafe { sigaction(signal, action) };
    }

    // Its own process group, so that a stop or kill reaches the worker's children too.
    setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(|e| (ChildStage::ProcessGroup, e))?;
    prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| (ChildStage::DeathSignal, e))?;
    // The master may have died before the death signal was armed.
    if getppid() != parent {
        return Err((ChildStage::Orphaned, Errno::ESRCH));
    }

    if let Some(stdin) = fds.stdin {
        // SAFETY: dup2 onto fd 0 replaces stdin; the OwnedFd is forgotten so that nothing
        // closes it again, and this process owns its fd table after fork.
        let fd = unsafe { nix::unistd::dup2_raw(stdin, 0) }.map_err(|e| (ChildStage::Stdin, e))?;
        std::mem::forget(fd);
    }
    if let Some(output) = fds.output {
        for target in [1, 2] {
            // SAFETY: as for stdin: dup2 onto fd 1 and 2 replaces stdout and stderr in
            // this process's own fd table, and the new descriptors are never closed here.
            let fd = unsafe { nix::unistd::dup2_raw(output, target) }
                .map_err(|e| (ChildStage::Output, e))?;
            std::mem::forget(fd);
        }
    }

    // Copied above the target range first, because a socket may already sit where
    // another one must go.
    let first_free = 3 + fds.sockets.len() as RawFd;
    for (slot, socket) in scratch.iter_mut().zip(fds.sockets) {
        *slot = fcntl(socket, FcntlArg::F_DUPFD_CLOEXEC(first_free))
            .map_err(|e| (ChildStage::Sockets, e))?;
    }
    Ok(())
}

/// Forks; in the child, runs [`child_after_fork`], which never returns.
#[allow(unsafe_code)]
fn fork_child(
    plan: &mut ExecPlan,
    fds: &ChildFds<'_>,
    parent: Pid,
    report: RawFd,
) -> Result<Pid, Errno> {
    // SAFETY: the master is single-threaded, so no lock can be held by another thread
    // at fork time; and the child runs only `child_after_fork`, which makes
    // async-signal-safe system calls on memory prepared before fork and ends in execve
    // or _exit, so it never touches the allocator, stdio or any lock.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => child_after_fork(plan, fds, parent, report),
    }
}

/// The child's side: only async-signal-safe calls, no allocation, ends in exec or exit.
#[allow(unsafe_code)]
fn child_after_fork(plan: &mut ExecPlan, fds: &ChildFds<'_>, parent: Pid, report: RawFd) -> ! {
    let (stage, errno) = match set_up_exec_child(plan, fds, parent) {
        Ok(()) => {
            // nix's execve builds its pointer arrays with a Vec, which may not allocate
            // here; the arrays were built before fork.
            // SAFETY: program, argv and envp are NUL-terminated strings in
            // NULL-terminated arrays that live in `plan`, which outlives this call.
            unsafe {
                libc::execve(
                    plan.program.as_ptr(),
                    plan.argv_ptrs.as_ptr(),
                    plan.envp_ptrs.as_ptr(),
                )
            };
            (ChildStage::Exec, Errno::last())
        }
        Err(failure) => failure,
    };
    // SAFETY: `report` is the pipe's write end, open in this process until exec.
    let _ = write(
        unsafe { BorrowedFd::borrow_raw(report) },
        &encode_failure(stage, errno),
    );
    exit_now(127)
}

/// The child's setup before execve, async-signal-safe; Err names the failing step.
#[allow(unsafe_code)]
fn set_up_exec_child(
    plan: &mut ExecPlan,
    fds: &ChildFds<'_>,
    parent: Pid,
) -> Result<(), (ChildStage, Errno)> {
    // Dispositions survive exec only as "ignored"; the Rust runtime ignores SIGPIPE,
    // and a command must start with every signal at its default.
    prepare_child(fds, parent, &mut plan.scratch_fds, false)?;
    let first_free = 3 + fds.sockets.len() as RawFd;
    for (target, &copy) in (3..).zip(plan.scratch_fds.iter()) {
        // SAFETY: `copy` was opened just above in this process; dup2 clears
        // close-on-exec on the target, which is what hands the socket over.
        let placed = unsafe { nix::unistd::dup2_raw(BorrowedFd::borrow_raw(copy), target) }
            .map_err(|errno| (ChildStage::Sockets, errno))?;
        std::mem::forget(placed);
    }

    // Whatever else is open (inherited by the master from its own parent, or opened
    // without close-on-exec) must not reach the worker. CLOSE_RANGE_CLOEXEC keeps the
    // report pipe usable until exec. nix has no close_range.
    // SAFETY: close_range only changes flags in this process's fd table.
    let marked = unsafe {
        libc::close_range(
            first_free as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as i32,
        )
    };
    if marked != 0 {
        return Err((ChildStage::CloseFds, Errno::last()));
    }

    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|errno| (ChildStage::SignalMask, errno))?;

    if let Some(slot) = plan.listen_pid.as_deref_mut() {
        write_decimal(
            &mut slot[LISTEN_PID_PREFIX.len()..],
            getpid().as_raw() as u32,
        );
    }
    if let Some((prefix, slot)) = plan.other_pid.as_mut() {
        write_decimal(&mut slot[*prefix..], getpid().as_raw() as u32);
    }
    if let Some((uid, gid)) = plan.credentials {
        // The group first: once the uid is dropped, the gid can no longer change.
        // nix's setgroups passes the slice to the system call; nothing is allocated.
        let dropped = nix::unistd::setgroups(&[])
            .and_then(|()| nix::unistd::setgid(gid))
            .and_then(|()| nix::unistd::setuid(uid));
        dropped.map_err(|errno| (ChildStage::Credentials, errno))?;
    }
    Ok(())
}

/// Writes `value` in decimal followed by a NUL into `out` without allocating.
fn write_decimal(out: &mut [u8], value: u32) {
    let mut digits = [0u8; 10];
    let mut n = value;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        out[i] = *digit;
    }
    out[len] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_written_with_a_terminator() {
        let mut out = [0xffu8; 12];
        write_decimal(&mut out, 4_194_304);
        assert_eq!(&out[..8], b"4194304\0");
        write_decimal(&mut out, 0);
        assert_eq!(&out[..2], b"0\0");
    }

    /// WATCHDOG_PID= joins the environment before its terminating null, beside
    /// LISTEN_PID=, waiting for the child's pid.
    #[test]
    fn a_pid_variable_is_one_more_entry_of_the_environment() {
        let env = [("A".into(), "1".into())];
        let plan = ExecPlan::new("/bin/true".as_ref(), &["true".into()], &env, true)
            .unwrap()
            .with_pid_var("WATCHDOG_PID");
        assert_eq!(plan.envp_ptrs.len(), 4);
        assert!(plan.envp_ptrs[3].is_null());
        let (prefix, slot) = plan.other_pid.as_ref().unwrap();
        assert_eq!(&slot[..*prefix], b"WATCHDOG_PID=");
        assert_eq!(plan.envp_ptrs[2], slot.as_ptr().cast());
    }

    /// The child's failure travels through the report pipe: the step and its errno
    /// come back to the caller, and the child is reaped. (The child makes only
    /// async-signal-safe calls, so forking from the threaded test harness is sound.)
    #[test]
    fn a_command_that_cannot_be_executed_is_reported_with_its_step() {
        let mut plan = ExecPlan::new(
            "/nonexistent/steward-test".as_ref(),
            &["x".into()],
            &[],
            false,
        )
        .unwrap();
        let fds = ChildFds {
            stdin: None,
            output: None,
            sockets: &[],
        };
        match spawn(&mut plan, &fds) {
            Err(SpawnError::Child { stage, errno }) => {
                assert_eq!((stage, errno), (ChildStage::Exec, Errno::ENOENT));
            }
            other => panic!("expected an exec failure, got {other:?}"),
        }
    }

    /// Children forked side by side before any is confirmed: each confirmation returns
    /// its own child's outcome, so the one that cannot exec is still reported with its
    /// step while the others run.
    #[test]
    fn a_batch_confirmed_after_forking_reports_each_child() {
        let fds = ChildFds {
            stdin: None,
            output: None,
            sockets: &[],
        };
        let mut runs = ExecPlan::new(
            "/bin/sh".as_ref(),
            &["sh".into(), "-c".into(), "exit 7".into()],
            &[],
            false,
        )
        .unwrap();
        let mut missing = ExecPlan::new(
            "/nonexistent/steward-test".as_ref(),
            &["x".into()],
            &[],
            false,
        )
        .unwrap();
        let forked = [
            spawn_unconfirmed(&mut runs, &fds).unwrap(),
            spawn_unconfirmed(&mut missing, &fds).unwrap(),
            spawn_unconfirmed(&mut runs, &fds).unwrap(),
        ];
        let pids: Vec<Pid> = forked.iter().map(Unconfirmed::pid).collect();
        let outcomes: Vec<_> = forked.into_iter().map(Unconfirmed::confirm).collect();
        match &outcomes[1] {
            Err(SpawnError::Child { stage, errno }) => {
                assert_eq!((*stage, *errno), (ChildStage::Exec, Errno::ENOENT));
            }
            other => panic!("expected an exec failure, got {other:?}"),
        }
        for index in [0, 2] {
            assert_eq!(outcomes[index].as_ref().unwrap(), &pids[index]);
            // The exec'd shell ran the command: its exit status says so.
            let status = nix::sys::wait::waitpid(pids[index], None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pids[index], 7));
        }
    }

    #[test]
    fn nul_bytes_are_refused() {
        let err = ExecPlan::new("/bin/true".as_ref(), &["a\0b".into()], &[], false).unwrap_err();
        assert!(err.to_string().contains("an argument contains a NUL byte"));
    }
}
