//! Process-wide effects the master applies to itself at start: nice value, memory
//! locking, samepage merging, credentials, detaching from the terminal.

use nix::{
    errno::Errno,
    sys::mman::{mlockall, MlockAllFlags},
    unistd::{fork, setgid, setgroups, setsid, setuid, ForkResult, Gid, Pid, Uid},
};

/// `PR_SET_MEMORY_MERGE` (Linux 6.4): opt the whole process into kernel samepage
/// merging. libc has the constant only on recent versions, hence it is spelled here.
const PR_SET_MEMORY_MERGE: libc::c_int = 67;

/// A process-wide setting that failed, with the call and its error.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// setpriority(2) refused the nice value.
    #[error("setpriority({nice}) failed: {errno}")]
    Priority {
        /// The nice value asked for.
        nice: i32,
        /// Its error (EACCES: lowering the nice value needs CAP_SYS_NICE).
        errno: Errno,
    },
    /// mlockall(2) failed.
    #[error("mlockall(MCL_CURRENT|MCL_FUTURE) failed: {0}")]
    LockMemory(Errno),
    /// prctl(PR_SET_MEMORY_MERGE) failed.
    #[error("prctl(PR_SET_MEMORY_MERGE) failed: {0}")]
    MemoryMerge(Errno),
    /// setgroups(2) failed.
    #[error("setgroups failed: {0}")]
    SetGroups(Errno),
    /// Clearing the inheritable or ambient capabilities failed.
    #[error("clearing the inheritable and ambient capabilities failed: {0}")]
    ClearCapabilities(Errno),
    /// setgid(2) failed.
    #[error("setgid({gid}) failed: {errno}")]
    SetGid {
        /// The group.
        gid: Gid,
        /// Its error.
        errno: Errno,
    },
    /// setuid(2) failed.
    #[error("setuid({uid}) failed: {errno}")]
    SetUid {
        /// The user.
        uid: Uid,
        /// Its error.
        errno: Errno,
    },
    /// fork(2) failed while detaching.
    #[error("fork failed: {0}")]
    Fork(Errno),
    /// A fork that must go on running Rust code in the child, in a process with threads.
    #[error(
        "cannot fork the master: the process has {0} threads (start the master before any thread)"
    )]
    Threads(usize),
    /// setsid(2) failed while detaching.
    #[error("setsid failed: {0}")]
    Setsid(Errno),
}

/// Sets the nice value of this process (and of what it forks afterwards).
#[allow(unsafe_code)]
pub fn set_priority(nice: i32) -> Result<(), ProcessError> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours. The
    // `which` argument's type differs between libc targets, hence the cast.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, nice) };
    if result == -1 {
        return Err(ProcessError::Priority {
            nice,
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// Locks every current and future page of this process in memory. It does not
/// survive execve.
pub fn lock_memory() -> Result<(), ProcessError> {
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        .map_err(ProcessError::LockMemory)
}

/// Opts this process and its future children into kernel samepage merging
/// (`PR_SET_MEMORY_MERGE`, Linux 6.4+; EINVAL on older kernels). The flag is inherited
/// across fork and kept across execve.
#[allow(unsafe_code)]
pub fn enable_memory_merge() -> Result<(), ProcessError> {
    // SAFETY: this prctl takes integers only and reads or writes no memory of ours.
    let result = unsafe { libc::prctl(PR_SET_MEMORY_MERGE, 1 as libc::c_ulong, 0, 0, 0) };
    if result == -1 {
        return Err(ProcessError::MemoryMerge(Errno::last()));
    }
    Ok(())
}

/// The capability header and one 32-bit half of the sets, as capget/capset take them
/// (linux/capability.h, version 3: two halves for 64 capabilities).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;

/// Empties the inheritable and ambient capability sets, which leaving root keeps
/// (systemd may have filled them): nothing this process execs may gain a capability
/// from them.
#[allow(unsafe_code)]
pub fn clear_inherited_capabilities() -> Result<(), ProcessError> {
    let fail = || ProcessError::ClearCapabilities(Errno::last());
    // SAFETY: this prctl takes integers only and reads or writes no memory of ours.
    let cleared = unsafe { libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    // EINVAL: a kernel before 4.3, which has no ambient set to clear.
    if cleared == -1 && Errno::last() != Errno::EINVAL {
        return Err(fail());
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes one header and two data structs, which are these, laid out
    // as the kernel's (repr(C), version 3), and alive for the call.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if got == -1 {
        return Err(fail());
    }
    if data.iter().all(|half| half.inheritable == 0) {
        // Nothing to clear: no capset, which a seccomp filter may refuse.
        return Ok(());
    }
    for half in &mut data {
        half.inheritable = 0;
    }
    // SAFETY: capset reads the same header and two data structs, alive for the call;
    // lowering the inheritable set needs no privilege.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if set == -1 {
        return Err(fail());
    }
    Ok(())
}

/// Becomes `uid`:`gid` with exactly `groups` as supplementary groups, in the only order
/// that works (groups and gid need the privileges that setuid gives up). Leaving root
/// this way clears every capability, permitted and effective.
pub fn drop_privileges(groups: &[Gid], gid: Gid, uid: Uid) -> Result<(), ProcessError> {
    setgroups(groups).map_err(ProcessError::SetGroups)?;
    setgid(gid).map_err(|errno| ProcessError::SetGid { gid, errno })?;
    setuid(uid).map_err(|errno| ProcessError::SetUid { uid, errno })?;
    Ok(())
}

/// Changes only the group and the supplementary groups (a `gid` without a `uid`).
pub fn change_group(groups: &[Gid], gid: Gid) -> Result<(), ProcessError> {
    setgroups(groups).map_err(ProcessError::SetGroups)?;
    setgid(gid).map_err(|errno| ProcessError::SetGid { gid, errno })
}

/// Changes only the user.
pub fn change_user(uid: Uid) -> Result<(), ProcessError> {
    setuid(uid).map_err(|errno| ProcessError::SetUid { uid, errno })
}

/// Which side of a [`detach`] this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// The original process: it should exit 0 now, its child carries on.
    Parent {
        /// The detached child.
        daemon: Pid,
    },
    /// The detached child, leader of a new session without a controlling terminal.
    Daemon,
}

/// Which side of [`fork_master`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process.
    Parent {
        /// The child, which carries on as the master.
        child: Pid,
    },
    /// The child: it goes on running the master.
    Child,
}

/// Forks the master, which goes on in the child (the first process of a new pid
/// namespace, say). Refused in a process with more than one thread: the child could
/// inherit a lock another thread held, and goes on running ordinary Rust code.
#[allow(unsafe_code)]
pub fn fork_master() -> Result<Forked, ProcessError> {
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Threads:"))?;
            line.split_whitespace().nth(1)?.parse::<usize>().ok()
        });
    if let Some(threads @ 2..) = threads {
        return Err(ProcessError::Threads(threads));
    }
    // SAFETY: this process has one thread (checked above; the master never starts one),
    // so the child's copy of the allocator and of every lock is consistent, and it may
    // go on running arbitrary code, as the parent would have.
    match unsafe { fork() }.map_err(ProcessError::Fork)? {
        ForkResult::Parent { child } => Ok(Forked::Parent { child }),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Forks; the child starts a new session. The caller must be single-threaded, as the
/// master is: the child goes on running ordinary Rust code.
#[allow(unsafe_code)]
pub fn detach() -> Result<Detached, ProcessError> {
    // SAFETY: the master calls this before it starts any thread (it never does), so the
    // child's copy of the allocator and of every lock is consistent, and it may go on
    // running arbitrary code, as the parent would have.
    match unsafe { fork() }.map_err(ProcessError::Fork)? {
        ForkResult::Parent { child } => Ok(Detached::Parent { daemon: child }),
        ForkResult::Child => {
            setsid().map_err(ProcessError::Setsid)?;
            Ok(Detached::Daemon)
        }
    }
}
