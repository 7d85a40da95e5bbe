//! Where the master runs the hook phases of its loop, in exec mode (the start phases,
//! asap to master-start, are in startup.rs): pre-app before a generation's workers are
//! started, the accepting phases as each worker becomes ready, post-app once the whole
//! generation is, as-user-atexit before a reload and before exit. The master never runs
//! a hook between fork and exec.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use steward_hooks::{Hooks, Phase, TouchWatcher};
use steward_options::{Options, ReloadStrategy};
use tracing::{error, info};

use super::{Master, TimerKey};
use crate::MasterError;

/// How long watched files must be quiet before steward acts on a change.
pub(super) const TOUCH_SETTLE: Duration = Duration::from_millis(100);

/// A watcher over the files of touch-reload and the touch hooks, if there are any.
pub(super) fn touch_watcher(
    options: &Options,
    hooks: &Hooks,
) -> Result<Option<TouchWatcher>, MasterError> {
    let mut paths: Vec<PathBuf> = options.touch_reload.clone();
    for hook in hooks.touch_hooks() {
        if !paths.contains(&hook.path) {
            paths.push(hook.path.clone());
        }
    }
    if paths.is_empty() {
        return Ok(None);
    }
    Ok(Some(TouchWatcher::new(&paths)?))
}

impl Master {
    /// Runs a phase that is not fatal: its failures are logged by the executor.
    pub(super) fn run_phase(&mut self, phase: Phase) {
        let since = self.hooks_start(phase);
        if let Err(e) = self.hooks.run(phase) {
            error!(error = %e, "hook failed");
        }
        self.keep_orphans(since);
    }

    /// pre-app or post-app around the load of the app in the master (preload mode).
    pub(crate) fn run_app_phase(&self, phase: Phase) -> Result<(), MasterError> {
        Ok(self.hooks.run(phase)?)
    }

    /// The accepting phases for worker `id`, which just became ready (exec mode; a
    /// forked worker runs them itself, before it serves).
    pub(super) fn run_accepting(&mut self, id: usize, first_time: bool) {
        for phase in super::spawn::accepting_phases(id, first_time) {
            self.run_phase(phase);
        }
    }

    /// as-user-atexit, unless skip-atexit.
    pub(super) fn run_atexit(&mut self) {
        if !self.options.skip_atexit {
            self.run_phase(Phase::AsUserAtexit);
        }
    }

    /// Watched files changed: noted, and acted on once they have been quiet for
    /// [`TOUCH_SETTLE`] (one save is several events, maybe read apart).
    pub(super) fn on_touch(&mut self) {
        let Some(watcher) = self.touches.watcher.as_mut() else {
            return;
        };
        let changed = watcher.changed();
        if changed.is_empty() {
            return;
        }
        for path in changed {
            if !self.touches.changed.contains(&path) {
                self.touches.changed.push(path);
            }
        }
        self.timers
            .arm(TimerKey::TouchSettled, Instant::now() + TOUCH_SETTLE);
    }

    /// The touched files, once settled: a touch-reload file reloads (once for all), a
    /// touch hook runs.
    pub(super) fn touches_settled(&mut self) {
        let mut reload = false;
        let since = self.touch_hooks_start();
        for path in std::mem::take(&mut self.touches.changed) {
            if self.options.touch_reload.contains(&path) {
                info!(path = %path.display(), "touched: reloading");
                reload = true;
            }
            self.hooks.run_touched(&path);
        }
        self.keep_orphans(since);
        if reload {
            self.begin_reload(self.options.reload_strategy == ReloadStrategy::Chain);
        }
    }
}

impl Master {
    /// In a vassal: `emperor-stop` or `emperor-reload` when the emperor sent SIGTERM or
    /// SIGHUP (before the shutdown or reload runs), and the emperor's death.
    pub(super) fn on_emperor_signal(
        &mut self,
        signal: nix::sys::signal::Signal,
        sender: nix::unistd::Pid,
    ) {
        match crate::vassal::phase_for(signal, sender) {
            Some(Phase::EmperorLost) => self.emperor_lost(),
            Some(phase) => self.run_phase(phase),
            None => {}
        }
    }

    /// The emperor is gone: emperor-lost, then a graceful shutdown (crate::vassal says
    /// why this rule).
    pub(super) fn emperor_lost(&mut self) {
        let emperor = crate::vassal::emperor().map(|p| p.as_raw()).unwrap_or(0);
        tracing::warn!(
            event = crate::events::EMPEROR_LOST,
            emperor,
            "lost the emperor; stopping gracefully"
        );
        self.run_phase(Phase::EmperorLost);
        self.dispatch(crate::supervisor::Event::Shutdown { graceful: true });
    }
}
