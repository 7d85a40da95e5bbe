//! The vassal table: what the emperor knows of each vassal, and the pure decisions
//! about it (which files are vassals, how long to wait before a restart).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::unistd::Pid;

/// Where a vassal is in its life, as the emperor sees it (from its own actions and the
/// vassal's notify messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VassalState {
    /// Started, no READY=1 yet.
    Starting,
    /// Said READY=1.
    Ready,
    /// Asked to reload, or said RELOADING=1; READY=1 ends it.
    Reloading,
    /// Asked to stop (its file is gone, or the emperor stops), or said STOPPING=1.
    Stopping,
    /// Dead; waiting for its restart (throttled).
    Waiting,
    /// Its configuration was refused; not running, started when the file changes.
    Refused,
    /// Stopped by `steward stop --vassal`; started when its file changes.
    Stopped,
    /// An on-demand vassal: not running, its sockets held by the emperor until a
    /// connection comes.
    OnDemand,
}

impl VassalState {
    /// The name used in logs and STATUS=.
    pub fn name(self) -> &'static str {
        match self {
            VassalState::Starting => "starting",
            VassalState::Ready => "ready",
            VassalState::Reloading => "reloading",
            VassalState::Stopping => "stopping",
            VassalState::Waiting => "waiting",
            VassalState::Refused => "refused",
            VassalState::Stopped => "stopped",
            VassalState::OnDemand => "on-demand",
        }
    }
}

/// One vassal: a configuration file and the steward master started with it.
#[derive(Debug)]
pub(crate) struct Vassal {
    /// The file name in the vassal directory: the vassal's name.
    pub name: String,
    pub config: PathBuf,
    pub pid: Option<Pid>,
    pub state: VassalState,
    /// Whether the emperor asked it to stop (its exit is then no death).
    pub stop_asked: bool,
    /// Deaths since it last said READY=1.
    pub deaths: u32,
    /// Starts after the first.
    pub restarts: u32,
    pub since: Instant,
    pub status: Option<String>,
    /// Where its master's control socket is, as it told (`X_STEWARD_CONTROL_SOCKET=`).
    pub control: Option<PathBuf>,
    /// Stopped by `steward stop --vassal`: not started again until its file changes.
    pub held: bool,
    /// Tyrant mode: the file's owner it was started as.
    pub owner: Option<crate::tyrant::Owner>,
}

impl Vassal {
    pub fn new(name: String, config: PathBuf, now: Instant) -> Vassal {
        Vassal {
            name,
            config,
            pid: None,
            state: VassalState::Starting,
            stop_asked: false,
            deaths: 0,
            restarts: 0,
            since: now,
            status: None,
            control: None,
            held: false,
            owner: None,
        }
    }

    pub fn set_state(&mut self, state: VassalState, now: Instant) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    /// Whether the emperor waits for this vassal before it says READY=1.
    pub fn is_settling(&self) -> bool {
        matches!(self.state, VassalState::Starting | VassalState::Reloading)
    }
}

/// The wait before the restart that follows death number `deaths` (1-based):
/// `throttle`, doubled at each death in a row, at most [`crate::MAX_THROTTLE`].
pub(crate) fn restart_delay(throttle: Duration, deaths: u32) -> Duration {
    let doublings = deaths.saturating_sub(1).min(16);
    throttle
        .saturating_mul(1u32 << doublings)
        .min(crate::MAX_THROTTLE.max(throttle))
}

/// Whether `path` names a vassal configuration: a format steward reads, and not a
/// hidden or editor's backup file.
pub fn is_vassal_config(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("toml" | "ini" | "yaml" | "yml" | "json")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_wait_doubles_up_to_the_cap() {
        let t = Duration::from_millis(500);
        assert_eq!(restart_delay(t, 1), t);
        assert_eq!(restart_delay(t, 2), 2 * t);
        assert_eq!(restart_delay(t, 3), 4 * t);
        assert_eq!(restart_delay(t, 40), crate::MAX_THROTTLE);
    }

    #[test]
    fn only_config_files_are_vassals() {
        for yes in ["a.toml", "b.ini", "c.yaml", "d.yml", "e.json"] {
            assert!(is_vassal_config(Path::new(yes)), "{yes}");
        }
        for no in [".a.toml", "a.toml~", "a.swp", "README", "a.toml.bak"] {
            assert!(!is_vassal_config(Path::new(no)), "{no}");
        }
    }
}
