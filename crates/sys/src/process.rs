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
