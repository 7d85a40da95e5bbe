use std::time::Duration;

use std::path::PathBuf;

use crate::{
    listen::ListenAddr, ListenSpec, LogTarget, OptionError, ReadyMode, ReloadStrategy, StopSignal,
    WorkerOutput,
};

/// Everything the master needs to run: the sockets, the workers and how they are
/// started, replaced and stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The listening sockets, in the order the workers receive them (fd 3, 4, ...).
    pub listen: Vec<ListenSpec>,
    /// How many workers to keep running.
    pub workers: usize,
    /// The worker command: a program and its arguments. A program without a `/` is
    /// looked up in PATH when the master starts.
    pub command: Vec<String>,
    /// When a new worker counts as ready.
    pub ready: ReadyMode,
    /// The signal that asks a worker to stop gracefully.
    pub worker_stop_signal: StopSignal,
    /// How long a new worker may take to become ready before it is killed and its
    /// start or reload fails (`ready-timeout`; zero: no limit).
    pub ready_timeout: Duration,
    /// How long a stopping worker may take before it is killed with SIGKILL.
    pub worker_reload_mercy: Duration,
    /// How long a graceful shutdown keeps serving, reported not ready, before the
    /// workers are asked to stop: the time a load balancer needs to stop sending.
    pub shutdown_delay: Duration,
    /// The first delay before a crashed worker is started again; it doubles with each
    /// crash in a row, up to [`Options::respawn_backoff_max`].
    pub respawn_backoff: Duration,
    /// The longest delay between two starts of a worker that keeps crashing.
    pub respawn_backoff_max: Duration,
    /// A worker that lived this long before it exited is not part of a crash loop:
    /// it is started again at once and its backoff starts over.
    pub respawn_reset_after: Duration,
    /// The listen(2) backlog of the sockets steward binds.
    pub listen_backlog: i32,
    /// The permission bits given to each unix socket steward binds (`chmod-socket`).
    pub chmod_socket: Option<u32>,
    /// `USER[:GROUP]` given each unix socket steward binds, before privileges drop
    /// (`chown-socket`).
    pub chown_socket: Option<String>,
    /// Preload mode only: load the app in each worker after fork instead of once in
    /// the master (`lazy-apps`).
    pub lazy_apps: bool,
    /// Preload mode only: refuse to fork while the master has more than one thread,
    /// instead of warning (`strict-fork`).
    pub strict_fork: bool,
    /// Preload mode only: how long the new binary's check (which loads the app) may
    /// take before a reload re-execs into it (`preload-check-timeout`).
    pub preload_check_timeout: Duration,
    /// What SIGHUP does: start a whole new generation, or replace one worker at a time.
    pub reload_strategy: ReloadStrategy,
    /// Whether the master reads its workers' output (`worker-output`).
    pub worker_output: WorkerOutput,

    /// How long `wait_for_fs`, `wait_for_file`, `wait_for_dir` and `spinningfifo` hook
    /// actions wait (`wait-for-fs-timeout`, uWSGI's default 60 s).
    pub wait_for_fs_timeout: Duration,
    /// How long a `wait_for_socket` hook action waits (`wait-for-socket-timeout`).
    pub wait_for_socket_timeout: Duration,

    /// Files or directories whose modification triggers a graceful reload (`touch-reload`).
    pub touch_reload: Vec<PathBuf>,
    /// The nice value of the master and the workers (`priority`).
    pub priority: Option<i32>,
    /// Remove pidfiles, unix sockets, the control socket and FIFOs at exit (`vacuum`).
    pub vacuum: bool,
    /// The steward binary the master re-execs itself with (`binary-path`); default: its own.
    pub binary_path: Option<PathBuf>,
    /// Workers keep the master's stdin instead of /dev/null (`honour-stdin`).
    pub honour_stdin: bool,
    /// Kernel samepage merging for the workers' memory (`ksm`).
    pub ksm: bool,
    /// Lock all memory pages of the master and forked workers (`no-swap`).
    pub no_swap: bool,
    /// Detach and log there, before the app loads (`daemonize`).
    pub daemonize: Option<LogTarget>,
    /// Detach and log there, after the app loads (`daemonize2`).
    pub daemonize2: Option<LogTarget>,
    /// Working directory before the app loads (`chdir`).
    pub chdir: Option<PathBuf>,
    /// Working directory after the app loads (`chdir2`).
    pub chdir2: Option<PathBuf>,
    /// The user to run as, a name or a number (`uid`).
    pub uid: Option<String>,
    /// The group to run as, a name or a number (`gid`).
    pub gid: Option<String>,
    /// Supplementary groups, replacing all others (`add-gid`, repeatable).
    pub add_gid: Vec<String>,
    /// `VAR=VALUE` set in the master's environment before the first hook, so that the
    /// hooks and the workers inherit it (`env`, repeatable; uWSGI's `env`).
    pub env: Vec<String>,
    /// The user to switch to as soon as possible, before any hook (`immediate-uid`).
    pub immediate_uid: Option<String>,
    /// The group to switch to as soon as possible, before any hook (`immediate-gid`).
    pub immediate_gid: Option<String>,
    /// Pidfile written before privileges drop (`pidfile`).
    pub pidfile: Option<PathBuf>,
    /// Pidfile written after privileges drop (`pidfile2`).
    pub pidfile2: Option<PathBuf>,
    /// Pidfile written atomically once the app has loaded, before privileges drop
    /// (`safe-pidfile`).
    pub safe_pidfile: Option<PathBuf>,
    /// Pidfile written atomically once the app has loaded, after privileges drop
    /// (`safe-pidfile2`).
    pub safe_pidfile2: Option<PathBuf>,
    /// Name processes meaningfully: "steward master", "steward worker 3" (`auto-procname`).
    pub auto_procname: bool,
    /// Prefix of every process name (`procname-prefix`).
    pub procname_prefix: Option<String>,
    /// Prefix of every process name, followed by a space (`procname-prefix-spaced`).
    pub procname_prefix_spaced: Option<String>,
    /// Suffix of every process name (`procname-append`).
    pub procname_append: Option<String>,
    /// The name of the workers (`procname`).
    pub procname: Option<String>,
    /// The name of the master (`procname-master`).
    pub procname_master: Option<String>,
    /// Skip the as-user-atexit hooks (`skip-atexit`).
    pub skip_atexit: bool,
    /// Skip teardown at exit (`skip-atexit-teardown`).
    pub skip_atexit_teardown: bool,

    /// The control socket path (`control-socket`); default `$RUNTIME_DIRECTORY/control.sock`
    /// when RUNTIME_DIRECTORY is set.
    pub control_socket: Option<PathBuf>,
    /// uWSGI-compatible master FIFOs (`master-fifo`, repeatable).
    pub master_fifo: Vec<PathBuf>,
    /// Run as an emperor over this directory of vassal configurations (`emperor`).
    pub emperor: Option<PathBuf>,
    /// The wait before a dead vassal starts again, doubled per death in a row
    /// (`emperor-throttle`).
    pub emperor_throttle: Duration,
    /// Emperor: each vassal runs as its file's owner (`emperor-tyrant`).
    pub emperor_tyrant: bool,
    /// Emperor, tyrant mode: a symlinked vassal runs as the link's owner
    /// (`emperor-tyrant-nofollow`).
    pub emperor_tyrant_nofollow: bool,
    /// Emperor: files every vassal reads before its own (`vassals-inherit`).
    pub vassals_inherit: Vec<PathBuf>,
    /// Emperor: files every vassal reads after its own (`vassals-include`).
    pub vassals_include: Vec<PathBuf>,
    /// The stats server's address (`stats`, uWSGI's), if any.
    pub stats: Option<crate::StatsAddr>,
    /// The stats address answers HTTP: `/` the JSON, `/metrics` Prometheus (`stats-http`).
    pub stats_http: bool,

    /// Hooks in the order given: `hook-<phase> = ACTION` as (phase name, action text).
    /// Parsed and checked by steward-hooks.
    pub hooks: Vec<(String, String)>,
    /// `hook-touch = PATH ACTION`, raw.
    pub hook_touch: Vec<String>,
    /// `run-command-on-touch = PATH COMMAND`, raw.
    pub run_command_on_touch: Vec<String>,
    /// `run-command-on-event = [PHASE ]COMMAND`, raw.
    pub run_command_on_event: Vec<String>,
    /// Named alarm handlers: `alarm = NAME cmd:COMMAND | NAME log:`, raw.
    pub alarm: Vec<String>,
    /// The directory to chroot into (`chroot`).
    pub chroot: Option<PathBuf>,
    /// Namespaces to unshare (`unshare`: mount, uts, ipc, pid, net, user, cgroup).
    pub unshare: Vec<String>,
    /// Auxiliary processes run beside the workers, without the sockets (`mule`, repeatable).
    pub mule: Vec<String>,
    /// A worker is replaced once it has lived this long (`max-worker-lifetime`; zero:
    /// never).
    pub max_worker_lifetime: Duration,
    /// Worker N lives N times this longer (`max-worker-lifetime-delta`, uWSGI's
    /// meaning), so that workers started together are not replaced together.
    pub max_worker_lifetime_delta: Duration,
    /// A worker past one of these is replaced, a new one ready first (`reload-on-*`).
    pub reload_on: MemoryLimits,
    /// A worker past one of these is killed at once (`evil-reload-on-*`).
    pub evil_reload_on: MemoryLimits,
    /// How often the workers' memory is measured, when a limit is set.
    pub memory_check_interval: Duration,
    /// The adaptive worker count (`cheaper`, `cheaper-initial`, `cheaper-step`).
    pub cheaper: Cheaper,
    /// With cheaper: how long connections must wait before more workers start.
    pub cheaper_overload: Duration,
    /// With cheaper: how long the queue must stay empty before a worker is retired.
    pub cheaper_idle: Duration,
    /// A worker silent this long (no WATCHDOG=1) is aborted and replaced
    /// (`worker-watchdog`; zero: no watchdog).
    pub worker_watchdog: Duration,
    /// As a vassal: the emperor holds the sockets and starts it at the first connection
    /// (`on-demand`).
    pub on_demand: bool,
    /// How long without a connection before the master counts as idle (`idle`; zero:
    /// never).
    pub idle: Duration,
    /// Exit 0 once idle (`die-on-idle`).
    pub die_on_idle: bool,
}

/// Memory limits of a worker with its descendants, in megabytes (zero: no limit), as
/// uWSGI counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Resident set size.
    pub rss: u64,
    /// Address space (virtual size): uWSGI's `as`.
    pub vsz: u64,
    /// Unique set size: private pages only (smaps_rollup).
    pub uss: u64,
    /// Proportional set size: shared pages divided among their users (smaps_rollup).
    pub pss: u64,
}

impl MemoryLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rss > 0 || self.vsz > 0 || self.uss > 0 || self.pss > 0
    }

    /// Whether USS or PSS is limited: those need smaps_rollup, dearer to read.
    pub fn needs_smaps(&self) -> bool {
        self.uss > 0 || self.pss > 0
    }
}

impl Options {
    /// Options with every default and the given worker command.
    pub fn new(command: Vec<String>) -> Self {
        Options {
            listen: Vec::new(),
            workers: 1,
            command,
            ready: ReadyMode::default(),
            worker_stop_signal: StopSignal::default(),
            ready_timeout: Duration::from_secs(60),
            worker_reload_mercy: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            respawn_backoff: Duration::from_millis(100),
            respawn_backoff_max: Duration::from_secs(10),
            respawn_reset_after: Duration::from_secs(10),
            listen_backlog: 1024,
            chmod_socket: None,
            chown_socket: None,
            lazy_apps: false,
            strict_fork: false,
            preload_check_timeout: Duration::from_secs(30),
            reload_strategy: ReloadStrategy::default(),
            worker_output: WorkerOutput::default(),
            wait_for_fs_timeout: Duration::from_secs(60),
            wait_for_socket_timeout: Duration::from_secs(60),
            touch_reload: Vec::new(),
            priority: None,
            vacuum: false,
            binary_path: None,
            honour_stdin: false,
            ksm: false,
            no_swap: false,
            daemonize: None,
            daemonize2: None,
            chdir: None,
            chdir2: None,
            uid: None,
            gid: None,
            add_gid: Vec::new(),
            env: Vec::new(),
            immediate_uid: None,
            immediate_gid: None,
            pidfile: None,
            pidfile2: None,
            safe_pidfile: None,
            safe_pidfile2: None,
            auto_procname: false,
            procname_prefix: None,
            procname_prefix_spaced: None,
            procname_append: None,
            procname: None,
            procname_master: None,
            skip_atexit: false,
            skip_atexit_teardown: false,
            control_socket: None,
            master_fifo: Vec::new(),
            emperor: None,
            emperor_throttle: Duration::from_secs(1),
            emperor_tyrant: false,
            emperor_tyrant_nofollow: false,
            vassals_inherit: Vec::new(),
            vassals_include: Vec::new(),
            stats: None,
            stats_http: false,
            hooks: Vec::new(),
            hook_touch: Vec::new(),
            run_command_on_touch: Vec::new(),
            run_command_on_event: Vec::new(),
            alarm: Vec::new(),
            chroot: None,
            unshare: Vec::new(),
            mule: Vec::new(),
            max_worker_lifetime: Duration::ZERO,
            max_worker_lifetime_delta: Duration::ZERO,
            reload_on: MemoryLimits::default(),
            evil_reload_on: MemoryLimits::default(),
            memory_check_interval: Duration::from_secs(1),
            cheaper: Cheaper::default(),
            cheaper_overload: Duration::from_secs(1),
            cheaper_idle: Duration::from_secs(10),
            worker_watchdog: Duration::ZERO,
            on_demand: false,
            idle: Duration::ZERO,
            die_on_idle: false,
        }
    }

    /// Checks what each value alone cannot: that there is a command, a worker, and no
    /// socket name or address twice.
    pub fn validate(&self) -> Result<(), OptionError> {
        match self.problems().into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Everything [`Options::validate`] would refuse, not only the first.
    pub fn problems(&self) -> Vec<OptionError> {
        let mut problems = Vec::new();
        if self.command.is_empty() || self.command[0].is_empty() {
            problems.push(OptionError::NoCommand);
        }
        problems.extend(self.validate_without_command().err());
        problems
    }

    /// [`Options::validate`] for a master that forks a closure (preload mode) and so
    /// runs no command.
    pub fn validate_without_command(&self) -> Result<(), OptionError> {
        if self.workers == 0 {
            return Err(OptionError::NoWorkers);
        }
        if self.cheaper.min > self.workers {
            return Err(OptionError::CheaperAboveWorkers {
                cheaper: self.cheaper.min,
                workers: self.workers,
            });
        }
        if let Some(error) = self.idle_problem() {
            return Err(error);
        }
        if self.ready.log_pattern().is_some() && self.worker_output == WorkerOutput::Inherit {
            return Err(OptionError::ReadyLogWithoutOutput);
        }
        let names: Vec<String> = self.fd_names();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(OptionError::DuplicateSocketName(name.clone()));
            }
        }
        for (i, spec) in self.listen.iter().enumerate() {
            // Port 0 asks the kernel for a free port: two of them are two sockets.
            let any_port = matches!(spec.addr, crate::ListenAddr::Tcp(addr) if addr.port() == 0);
            if !any_port && self.listen[..i].iter().any(|other| other.addr == spec.addr) {
                return Err(OptionError::Listen {
                    value: spec.to_string(),
                    reason: "this address is listed twice".into(),
                });
            }
            if let ListenAddr::Unix(path) = &spec.addr {
                if path.as_os_str().len() >= 108 {
                    return Err(OptionError::Listen {
                        value: spec.to_string(),
                        reason: "a unix socket path must be shorter than 108 bytes".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `die-on-idle` needs `idle`; `on-demand` needs sockets for the emperor to hold.
    fn idle_problem(&self) -> Option<OptionError> {
        if self.die_on_idle && self.idle.is_zero() {
            return Some(OptionError::DieOnIdleWithoutIdle);
        }
        if self.on_demand && self.listen.is_empty() {
            return Some(OptionError::OnDemandWithoutListen);
        }
        None
    }

    /// The LISTEN_FDNAMES entry of each socket, in order.
    pub fn fd_names(&self) -> Vec<String> {
        self.listen
            .iter()
            .enumerate()
            .map(|(i, spec)| spec.fd_name(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        let mut options = Options::new(vec!["/bin/true".into()]);
        options.listen = vec![
            "127.0.0.1:1".parse().unwrap(),
            "b=127.0.0.1:2".parse().unwrap(),
        ];
        options
    }

    #[test]
    fn die_on_idle_needs_idle_and_on_demand_needs_a_socket() {
        let mut o = options();
        o.idle = Duration::from_secs(30);
        // Cheap mode.
        o.validate().unwrap();
        o.die_on_idle = true;
        o.on_demand = true;
        o.validate().unwrap();
        o.idle = Duration::ZERO;
        assert_eq!(o.validate(), Err(OptionError::DieOnIdleWithoutIdle));
        o.die_on_idle = false;
        o.listen.clear();
        assert_eq!(o.validate(), Err(OptionError::OnDemandWithoutListen));
    }

    #[test]
    fn defaults_validate() {
        options().validate().unwrap();
        assert_eq!(options().fd_names(), ["listen0", "b"]);
    }

    #[test]
    fn inconsistent_sets_are_refused() {
        let mut o = options();
        o.command.clear();
        assert_eq!(o.validate(), Err(OptionError::NoCommand));

        let mut o = options();
        o.workers = 0;
        assert_eq!(o.validate(), Err(OptionError::NoWorkers));

        let mut o = options();
        o.listen.push("b=127.0.0.1:3".parse().unwrap());
        assert_eq!(
            o.validate(),
            Err(OptionError::DuplicateSocketName("b".into()))
        );

        let mut o = options();
        o.listen.push("c=127.0.0.1:1".parse().unwrap());
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
    }

    #[test]
    fn two_sockets_on_any_free_port_are_two_sockets() {
        let mut o = options();
        o.listen = vec![
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ];
        assert_eq!(o.validate(), Ok(()));
    }
}

/// uWSGI's `cheaper` family: how many workers run follows the listen queue, between
/// `min` and `workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cheaper {
    /// The fewest workers (`cheaper`); 0: the count is fixed at `workers`.
    pub min: usize,
    /// How many run at start (`cheaper-initial`); 0: `min`.
    pub initial: usize,
    /// How many are added at a time (`cheaper-step`); 0: one.
    pub step: usize,
}

impl Cheaper {
    /// Whether the worker count adapts.
    pub fn enabled(&self) -> bool {
        self.min > 0
    }
}
