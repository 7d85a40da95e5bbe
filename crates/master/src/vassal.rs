//! A master started by `steward emperor` (a *vassal*): the emperor's pid comes in
//! `STEWARD_EMPEROR_PID`. What differs from any master is small and all here:
//!
//! - `as-vassal` runs first of all (before asap), `as-vassal-before-drop` after as-root,
//!   right before the privilege drop (both in startup.rs);
//! - a SIGTERM or SIGHUP *sent by the emperor's pid* runs `emperor-stop` or
//!   `emperor-reload` before the shutdown or reload it asks for;
//! - the emperor's death is noticed at once, not by polling: PR_SET_PDEATHSIG makes the
//!   kernel send [`EMPEROR_LOST`] when the emperor exits; the vassal then runs
//!   `emperor-lost` and stops gracefully (uWSGI's vassals stop too: with no emperor
//!   nothing would ever stop or reload them).

use std::sync::OnceLock;

use nix::{
    sys::{prctl, signal::Signal},
    unistd::{getppid, Pid},
};
use steward_hooks::Phase;
use steward_options::vars;

/// The parent-death signal: SIGURG, whose default action is to be ignored, so having it
/// among the master's handled signals changes nothing for a master that is no vassal.
/// It is believed only if the parent really changed.
pub(crate) const EMPEROR_LOST: Signal = Signal::SIGURG;

/// The emperor's pid, if this master is a vassal.
pub(crate) fn emperor() -> Option<Pid> {
    static EMPEROR: OnceLock<Option<Pid>> = OnceLock::new();
    *EMPEROR.get_or_init(|| {
        let pid: i32 = std::env::var(vars::EMPEROR_PID).ok()?.parse().ok()?;
        (pid > 1).then(|| Pid::from_raw(pid))
    })
}

/// Asks the kernel for [`EMPEROR_LOST`] when the emperor dies. Called when the loop
/// starts: a change of credentials (the privilege drop) clears the request. Returns
/// whether the emperor is gone already (it died before the request was made).
pub(crate) fn watch_emperor() -> bool {
    let Some(emperor) = emperor() else {
        return false;
    };
    // 0: the master runs in a pid namespace of its own (`unshare = pid`); its parent is
    // steward's outer process, not the emperor, whose death it cannot see from here.
    if getppid().as_raw() == 0 {
        tracing::warn!(
            "in a pid namespace of its own, the vassal cannot watch for its emperor's death"
        );
        return false;
    }
    if let Err(e) = prctl::set_pdeathsig(EMPEROR_LOST) {
        tracing::warn!(error = %e, "cannot ask for the emperor's death signal");
    }
    getppid() != emperor
}

/// The hook phase a handled signal from `sender` calls for in a vassal, if any.
pub(crate) fn phase_for(signal: Signal, sender: Pid) -> Option<Phase> {
    let emperor = emperor()?;
    match signal {
        Signal::SIGTERM if sender == emperor => Some(Phase::EmperorStop),
        Signal::SIGHUP if sender == emperor => Some(Phase::EmperorReload),
        s if s == EMPEROR_LOST && ![emperor.as_raw(), 0].contains(&getppid().as_raw()) => {
            Some(Phase::EmperorLost)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_without_an_emperor_runs_no_emperor_phase() {
        // The test process has no STEWARD_EMPEROR_PID.
        assert_eq!(emperor(), None);
        assert_eq!(phase_for(Signal::SIGTERM, getppid()), None);
        assert!(!watch_emperor());
    }
}
