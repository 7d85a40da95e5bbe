//! The configuration re-read at each reload: the file is read again under the
//! environment and command line the master started with. What a running master can
//! change (the workers, their command, readiness, stop signal, mercy, backoff, reload
//! strategy, recycling) applies to the new generation; what it cannot (its uid, its sockets, its
//! jail...) is logged as needing a restart and keeps its value. An invalid
//! configuration (a broken hook string too) fails the reload, and the serving generation goes on serving.

use steward_options::{table, ConfigSources, Options};
use tracing::{info, warn};

use super::{Launch, Master};
use crate::{command::WorkerCommand, supervisor::Settings};

/// The options a reload runs with: `reread`'s for what may change, `running`'s for the
/// rest, and a note on each option that changed but needs a restart.
pub(crate) fn merge_reloaded(running: &Options, reread: Options) -> (Options, Vec<NeedsRestart>) {
    let notes = table::table()
        .iter()
        .filter(|def| def.key() == def.name() && def.needs_restart())
        .filter_map(|def| {
            let (was, now) = (def.show(running), def.show(&reread));
            (was != now).then(|| {
                let text = |values: Vec<String>| {
                    if values.is_empty() {
                        "unset".to_owned()
                    } else {
                        values.join(", ")
                    }
                };
                NeedsRestart {
                    option: def.name(),
                    was: text(was),
                    now: text(now),
                }
            })
        })
        .collect();
    let merged = Options {
        workers: reread.workers,
        command: reread.command,
        ready: reread.ready,
        ready_timeout: reread.ready_timeout,
        worker_stop_signal: reread.worker_stop_signal,
        worker_reload_mercy: reread.worker_reload_mercy,
        shutdown_delay: reread.shutdown_delay,
        respawn_backoff: reread.respawn_backoff,
        respawn_backoff_max: reread.respawn_backoff_max,
        respawn_reset_after: reread.respawn_reset_after,
        reload_strategy: reread.reload_strategy,
        worker_output: reread.worker_output,
        preload_check_timeout: reread.preload_check_timeout,
        max_worker_lifetime: reread.max_worker_lifetime,
        max_worker_lifetime_delta: reread.max_worker_lifetime_delta,
        reload_on: reread.reload_on,
        evil_reload_on: reread.evil_reload_on,
        memory_check_interval: reread.memory_check_interval,
        worker_watchdog: reread.worker_watchdog,
        cheaper: reread.cheaper,
        cheaper_overload: reread.cheaper_overload,
        cheaper_idle: reread.cheaper_idle,
        ..running.clone()
    };
    (merged, notes)
}

/// An option a reload cannot change that the configuration changed.
#[derive(Debug)]
pub(crate) struct NeedsRestart {
    option: &'static str,
    was: String,
    now: String,
}

impl NeedsRestart {
    pub fn log(&self) {
        let NeedsRestart { option, was, now } = self;
        warn!(
            event = crate::events::NEEDS_RESTART,
            option, was, now, "needs a restart: {self}; the running value is kept"
        );
    }
}

impl std::fmt::Display for NeedsRestart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NeedsRestart { option, was, now } = self;
        write!(f, "{option} (was {was}, now {now})")
    }
}

impl Master {
    /// Re-reads the configuration from `sources` at each reload (SIGHUP, SIGUSR2, a
    /// control request): pass the sources the options were first loaded from.
    pub fn reread_config_on_reload(&mut self, sources: ConfigSources) {
        self.config_sources = Some(sources);
    }

    /// Reads the configuration again and applies what may change to the coming
    /// generation; returns the supervisor's settings for it. Err: why the
    /// configuration is unusable; nothing was changed.
    pub(super) fn reread_config(&mut self) -> Result<Settings, String> {
        let mut settings = self.supervisor.settings().clone();
        let Some(sources) = &self.config_sources else {
            return Ok(settings);
        };
        let config = match self.launch {
            Launch::Exec(_) => sources.load(),
            Launch::Fork(_) => sources.load_without_command(),
        }
        .map_err(|e| format!("invalid configuration: {e}"))?;
        // Hooks, alarms and the jail keep their running values, but a file whose hooks
        // could not start steward is refused now, not at the next restart.
        self.hooks
            .check(&config.options)
            .map_err(|error| format!("invalid configuration: {}", error.located(&config)))?;
        for warning in &config.warnings {
            warn!(event = crate::events::CONFIG_WARNING, "{warning}");
        }
        let (options, needs_restart) = merge_reloaded(&self.options, config.options);
        for note in needs_restart {
            note.log();
        }
        // A forked worker (preload mode) runs no command.
        let changed = options.command != self.options.command
            || options.worker_watchdog != self.options.worker_watchdog;
        if changed && matches!(self.launch, Launch::Exec(_)) {
            let fd_names: Vec<String> = self.listeners.iter().map(|l| l.name.clone()).collect();
            self.launch = Launch::Exec(
                WorkerCommand::new(&options.command, &fd_names, self.notify.path())
                    .map(|command| command.with_watchdog(super::recycle::watchdog_of(&options)))
                    .map_err(|e| format!("invalid configuration: {e}"))?,
            );
        }
        let reread = Settings::new(
            &options,
            matches!(self.launch, Launch::Fork(_)),
            self.launch.reexecs_on_reload(),
            !self.listeners.is_empty(),
        );
        let workers = workers_after_reload(&settings, &reread, self.options.workers, &options);
        settings = Settings { workers, ..reread };
        info!(
            workers,
            command = %self.launch.display(),
            ready = %options.ready,
            "configuration read again"
        );
        self.options = options;
        // Switched on by this reload: the queue readings start (a tick finding cheaper
        // off again stops them).
        if settings.bounds.is_some() {
            self.arm_cheaper_at(std::time::Instant::now());
        }
        Ok(settings)
    }
}

/// How many workers a reload keeps: `workers` when it changed, or when cheaper was
/// switched off (cheaper's count was its own); else the running count (SIGTTIN/SIGTTOU
/// and cheaper moved it), within cheaper's new bounds when it is on.
fn workers_after_reload(
    running: &Settings,
    reread: &Settings,
    workers_before: usize,
    options: &Options,
) -> usize {
    let cheaper_switched_off = running.bounds.is_some() && reread.bounds.is_none();
    let count = if options.workers != workers_before || cheaper_switched_off {
        options.workers
    } else {
        running.workers
    };
    match reread.bounds {
        Some((min, max)) => count.clamp(min, max),
        None => count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_count_within_what_cheaper_allows_now() {
        let mut options = Options::new(vec!["/bin/app".into()]);
        options.workers = 4;
        let fixed = Settings::new(&options, false, false, true);
        let mut running = fixed.clone();
        running.workers = 5; // a SIGTTIN
        assert_eq!(workers_after_reload(&running, &fixed, 4, &options), 5);

        let mut cheap = options.clone();
        cheap.cheaper.min = 1;
        let bounded = Settings::new(&cheap, false, false, true);
        assert_eq!(bounded.bounds, Some((1, 4)));
        // Switched on: the running 5 comes within the bounds; cheaper then decides.
        assert_eq!(workers_after_reload(&running, &bounded, 4, &cheap), 4);
        // Switched off while cheaper ran 1: back to `workers`.
        let mut cheaper_ran = bounded.clone();
        cheaper_ran.workers = 1;
        assert_eq!(workers_after_reload(&cheaper_ran, &fixed, 4, &options), 4);
    }

    #[test]
    fn what_may_change_changes_and_the_rest_is_kept_and_named() {
        let mut running = Options::new(vec!["/bin/old".into()]);
        running.uid = Some("app".into());
        running.listen = vec!["127.0.0.1:1".parse().unwrap()];
        let mut reread = running.clone();
        reread.uid = Some("root".into());
        reread.listen = vec!["127.0.0.1:2".parse().unwrap()];
        reread.pidfile = Some("/run/app.pid".into());
        reread.workers = 3;
        reread.command = vec!["/bin/new".into()];
        reread.ready = steward_options::ReadyMode::Notify;

        let (merged, notes) = merge_reloaded(&running, reread);
        assert_eq!(merged.workers, 3);
        assert_eq!(merged.command, ["/bin/new"]);
        assert_eq!(merged.ready, steward_options::ReadyMode::Notify);
        assert_eq!(merged.uid.as_deref(), Some("app"));
        assert_eq!(merged.listen, running.listen);
        assert_eq!(merged.pidfile, None);
        let notes: Vec<String> = notes.iter().map(ToString::to_string).collect();
        assert_eq!(
            notes,
            [
                "listen (was 127.0.0.1:1, now 127.0.0.1:2)",
                "uid (was app, now root)",
                "pidfile (was unset, now /run/app.pid)"
            ]
        );
    }

    /// Every option the table says a reload can change is taken from the re-read set.
    #[test]
    fn every_option_that_needs_no_restart_is_applied() {
        let running = Options::new(vec!["/bin/old".into()]);
        for def in table::table().iter().filter(|def| !def.needs_restart()) {
            let mut reread = running.clone();
            let value = match def.name() {
                "workers" => "5",
                "command" => "/bin/new",
                "ready" => "notify",
                "worker-stop-signal" => "SIGQUIT",
                "reload-strategy" => "chain",
                "worker-output" => "inherit",
                _ if def.value_name() == "MB" => "7",
                _ if def.value_name() == "N" => "2",
                _ => "7s",
            };
            def.clear(&mut reread);
            def.apply(&mut reread, value).unwrap();
            let (merged, notes) = merge_reloaded(&running, reread);
            assert_eq!(def.show(&merged), [value], "{}", def.name());
            assert!(notes.is_empty(), "{}: {notes:?}", def.name());
        }
    }
}
