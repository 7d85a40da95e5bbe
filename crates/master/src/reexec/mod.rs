//! Binary upgrades in place: when the steward binary on disk is no longer the one
//! running (a package upgrade replaced it) or `binary-path` names another, a reload
//! first re-execs the master. The pid stays, so systemd's MainPID holds; the listening
//! sockets, the notify socket, the control socket and its waiting clients cross the
//! exec as open descriptors; the running workers stay our children and are adopted
//! from a [`Handover`] passed in `STEWARD_REEXEC`; then the new binary carries out the
//! reload that asked for the upgrade.
//!
//! Before giving up its image the old master checks the new binary ([`check`]): one
//! that cannot run, cannot read the configuration, or reads no handover this master
//! can write, is never exec'd, and the old master goes on (and reloads) as it is.

mod binary;
mod check;
mod handover;
mod kept;
mod legacy;
mod report;

use std::{ffi::OsString, os::fd::RawFd, path::PathBuf, process::ExitStatus};

use nix::errno::Errno;

pub(crate) use self::{
    binary::Binary,
    check::{exit_status, CheckChild},
    handover::{take_handover, HandedListener, HandedSocket, HandedWaiter, HandedWorker, Handover},
    kept::{decode_kept, take_kept},
};
pub use self::{
    handover::HandoverError,
    report::{reexec_check_answer, CheckFinding, CheckReport},
};

/// What `steward reexec-check` prints to a master that asks for no report, and the
/// first line of the first (text) handover: every steward answers and reads it.
pub const REEXEC_PROTOCOL: &str = "steward reexec 1";

/// How `steward check` ends the warning about a user, group or program it cannot find.
/// Masters older than the [`CheckReport`] look for it in the check's stderr.
pub const UNRESOLVED_SUFFIX: &str = ": a start here would fail";

/// The variable carrying the handover to the new image.
pub(crate) const REEXEC_VARIABLE: &str = steward_options::vars::REEXEC;

/// The variable carrying, to the new image, the values the running master keeps of the
/// options a reload cannot change (see [`kept`]).
pub(crate) const KEPT_VARIABLE: &str = steward_options::vars::REEXEC_KEPT;

/// Why a re-exec did not happen; the old master keeps running in each case.
#[derive(Debug, thiserror::Error)]
pub enum ReexecError {
    /// The new binary could not be run for its check.
    #[error("cannot run {path} reexec-check: {source}")]
    CheckSpawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new binary answered the check wrongly, failed it or took too long.
    #[error("{path} reexec-check did not answer {REEXEC_PROTOCOL:?}: {answer}")]
    CheckFailed {
        /// The binary.
        path: PathBuf,
        /// What it did instead.
        answer: String,
    },
    /// The new binary could not be run to check the configuration.
    #[error("cannot run {path} check: {source}")]
    ConfigCheckSpawn {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The new binary cannot read the configuration the new image would start with.
    #[error("{path} cannot read the configuration: {reason}")]
    ConfigRefused {
        /// The binary.
        path: PathBuf,
        /// Its check's errors, or how it ended.
        reason: String,
    },
    /// The new binary's check of the configuration wrote no report: it is older than
    /// this master, and would not read the handover this master writes.
    #[error("{path} check wrote no report (is it an older steward?): {status}")]
    NoReport {
        /// The binary.
        path: PathBuf,
        /// How its check ended.
        status: ExitStatus,
    },
    /// The handover could not be written (a path that is not UTF-8).
    #[error("cannot write the handover: {0}")]
    Encode(#[source] serde_json::Error),
    /// A descriptor could not be kept open across the exec.
    #[error("cannot keep fd {fd} across the exec: {errno}")]
    KeepFd {
        /// The descriptor.
        fd: RawFd,
        /// Why.
        errno: Errno,
    },
    /// A path, argument or variable holds a NUL byte.
    #[error("cannot pass {0:?} to execve: it contains a NUL byte")]
    Nul(OsString),
    /// execve itself failed.
    #[error("execve {path} failed: {errno}")]
    Exec {
        /// The binary.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
}
