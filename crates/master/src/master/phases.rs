//! Where the master runs the hook phases of its loop, in exec mode (the start phases,
//! asap to master-start, are in startup.rs): pre-app before a generation's workers are
//! started, the accepting phases as each worker becomes ready, post-app once the whole
//! generation is, as-user-atexit before a reload and before exit. The master never runs
//! a hook between fork and exec.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use steward_hooks::{HookError, Hooks, Phase, TouchWatcher};
use steward_options::{Options, ReloadStrategy};
use tracing::{error, info};

use super::{Launch, Master};
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
    pub(super) fn run_phase(&self, phase: Phase) {
        if let Err(e) = self.hooks.run(phase) {
            error!(error = %e, "hook failed");
        }
    }

    /// Whether the app loads once in the master (preload mode without lazy-apps): then
    /// pre-app and post-app run around that load, in [`crate::Builder::run`], not
    /// around each generation.
    pub(super) fn app_loads_in_master(&self) -> bool {
        matches!(&self.launch, Launch::Fork(fork) if !fork.lazy)
    }

    /// pre-app or post-app around the load of the app in the master (preload mode).
    pub(crate) fn run_app_phase(&self, phase: Phase) -> Result<(), MasterError> {
        Ok(self.hooks.run(phase)?)
    }

    /// The accepting phases for worker `id`, which just became ready (exec mode; a
    /// forked worker runs them itself, before it serves).
    pub(super) fn worker_accepting(&mut self, id: usize) {
        if !matches!(self.launch, Launch::Exec(_)) {
            return;
        }
        self.run_phase(Phase::Accepting);
        if id == 1 {
            self.run_phase(Phase::Accepting1);
        }
        if self.accepted_once.insert(id) {
            self.run_phase(Phase::AcceptingOnce);
            if id == 1 {
                self.run_phase(Phase::Accepting1Once);
            }
        }
    }

    /// as-user-atexit, unless skip-atexit.
    pub(super) fn run_atexit(&self) {
        if !self.options.skip_atexit {
            self.run_phase(Phase::AsUserAtexit);
        }
    }

    /// A pre-app or post-app hook failed: the first generation ends the master with the
    /// error; a reload is abandoned, the serving generation going on.
    pub(super) fn generation_hook_failed(&mut self, failure: HookError) {
        if self.serving.is_none() {
            error!("{failure}");
            self.failure = Some(failure.into());
            self.begin_shutdown(true);
        } else {
            self.abort_reload(failure.to_string());
        }
    }

    /// Watched files changed: noted, and acted on once they have been quiet for
    /// [`TOUCH_SETTLE`] (one save is several events, maybe read apart).
    pub(super) fn on_touch(&mut self) {
        let Some(watcher) = self.touch.as_mut() else {
            return;
        };
        let changed = watcher.changed();
        if changed.is_empty() {
            return;
        }
        for path in changed {
            if !self.touched.contains(&path) {
                self.touched.push(path);
            }
        }
        self.touch_due = Some(Instant::now() + TOUCH_SETTLE);
    }

    /// The touched files, once settled: a touch-reload file reloads (once for all), a
    /// touch hook runs.
    pub(super) fn touches_settled(&mut self, now: Instant) {
        if self.touch_due.is_none_or(|due| now < due) {
            return;
        }
        self.touch_due = None;
        let mut reload = false;
        for path in std::mem::take(&mut self.touched) {
            if self.options.touch_reload.contains(&path) {
                info!(path = %path.display(), "touched: reloading");
                reload = true;
            }
            self.hooks.run_touched(&path);
        }
        if reload {
            self.begin_reload(self.options.reload_strategy == ReloadStrategy::Chain);
        }
    }
}
