//! The option table: every option steward understands, declared once. Files, the
//! environment, the command line and `steward check` all go through it, so a name that
//! works in one source works in all of them.

use std::{collections::HashMap, path::PathBuf, sync::OnceLock};

use crate::{parse_duration, OptionError, Options};

/// How an option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// On or off: `--vacuum`, `vacuum = true`.
    Flag,
    /// One value; a later one replaces an earlier one.
    Value,
    /// Repeatable: the values of one source accumulate, in order.
    List(ListSeparator),
    /// The worker command: a list of words, or one string split at whitespace.
    Words,
}

/// How a list option's values are separated in one `STEWARD_*` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSeparator {
    /// Commas: addresses, paths, group names.
    Comma,
    /// Newlines: hook actions and commands, which may contain commas.
    Newline,
}

impl ListSeparator {
    /// The separator character.
    pub fn char(self) -> char {
        match self {
            ListSeparator::Comma => ',',
            ListSeparator::Newline => '\n',
        }
    }
}

/// The part of `steward --help` and of the README table an option belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Sockets, workers, readiness, reloads.
    Master,
    /// What the process does around the workers: privileges, pidfiles, names, daemonizing.
    Process,
    /// Lifecycle hooks, jails and auxiliary processes.
    Hooks,
}

impl Group {
    /// The heading of the group in `--help`.
    pub fn heading(self) -> &'static str {
        match self {
            Group::Master => "Master",
            Group::Process => "Process",
            Group::Hooks => "Hooks, jail and mules",
        }
    }
}

type Apply = fn(&mut Options, &str, &str) -> Result<(), OptionError>;
type Clear = fn(&mut Options, &str);
type Show = fn(&Options, &str) -> Vec<String>;

/// One option: its name in every source, how it takes values, its help, and how it
/// reads and writes [`Options`].
#[derive(Debug)]
pub struct OptionDef {
    name: String,
    key: String,
    aliases: &'static [&'static str],
    short: Option<char>,
    kind: Kind,
    value_name: &'static str,
    help: String,
    group: Group,
    restart: bool,
    hidden: bool,
    apply: Apply,
    clear: Clear,
    show: Show,
}

impl OptionDef {
    /// The option's name: `touch-reload`, the same in files, as `--touch-reload` and as
    /// `STEWARD_TOUCH_RELOAD`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The option whose value this one sets: its own name, except for `exec-<phase>`
    /// (and `mount-`, `umount-`, `call-`), which adds to `hook-<phase>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Other names accepted for it (uWSGI's, such as `processes` for `workers`).
    pub fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    /// The one-letter command-line flag, if any.
    pub fn short(&self) -> Option<char> {
        self.short
    }

    /// How it takes its value.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// What its value looks like, for help texts.
    pub fn value_name(&self) -> &'static str {
        self.value_name
    }

    /// One or two sentences on what it does.
    pub fn help(&self) -> &str {
        &self.help
    }

    /// Where it belongs in `--help`.
    pub fn group(&self) -> Group {
        self.group
    }

    /// Whether a running master cannot change it on reload (a new value needs a restart).
    pub fn needs_restart(&self) -> bool {
        self.restart
    }

    /// Whether `--help` leaves it out (`exec-<phase>`, the shorthands of `hook-<phase>`).
    pub fn hidden(&self) -> bool {
        self.hidden
    }

    /// The `STEWARD_*` variable that sets it.
    pub fn env_var(&self) -> String {
        env_var_of(&self.name)
    }

    /// Sets the option (a flag or value) or adds one value to it (a list) from text.
    /// The worker command takes one word per call.
    pub fn apply(&self, options: &mut Options, value: &str) -> Result<(), OptionError> {
        (self.apply)(options, &self.name, value)
    }

    /// Empties a list option, or resets the worker command, before a source that sets
    /// it; a flag or value is simply overwritten.
    pub fn clear(&self, options: &mut Options) {
        (self.clear)(options, &self.name)
    }

    /// The option's current value, as text: nothing when unset, one entry per value of
    /// a list.
    pub fn show(&self, options: &Options) -> Vec<String> {
        (self.show)(options, &self.name)
    }

    /// Its default, as text (empty when it has none).
    pub fn default_text(&self) -> String {
        self.show(&Options::new(Vec::new())).join(", ")
    }
}

/// `touch-reload` -> `STEWARD_TOUCH_RELOAD`.
pub fn env_var_of(name: &str) -> String {
    format!("STEWARD_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// Every hook phase steward knows, by its uWSGI name. steward-hooks owns the phases;
/// the options crate depends on nothing, so the names are repeated here, and a test of
/// the steward binary checks that both lists agree.
pub const HOOK_PHASES: &[&str] = &[
    "asap",
    "pre-jail",
    "in-jail",
    "post-jail",
    "as-root",
    "as-user",
    "master-start",
    "pre-app",
    "post-app",
    "accepting",
    "accepting1",
    "accepting-once",
    "accepting1-once",
    "as-user-atexit",
    "as-mule",
    "as-gateway",
    "emperor-start",
    "emperor-stop",
    "emperor-reload",
    "emperor-lost",
    "as-on-demand-vassal",
    "as-on-config-vassal",
    "as-emperor-before-vassal",
    "as-vassal-before-drop",
    "as-emperor-setns",
    "as-vassal",
    "as-emperor",
];

/// Parses a boolean the way uWSGI and the usual config formats write them.
pub fn parse_bool(value: &str) -> Result<bool, OptionError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(OptionError::Bool(value.to_owned())),
    }
}

fn number<T: std::str::FromStr>(value: &str, expected: &'static str) -> Result<T, OptionError> {
    value.trim().parse().map_err(|_| OptionError::Number {
        value: value.to_owned(),
        expected,
    })
}

fn text(value: &str) -> Result<String, OptionError> {
    if value.trim().is_empty() {
        Err(OptionError::Empty)
    } else {
        Ok(value.to_owned())
    }
}

fn path(value: &str) -> Result<PathBuf, OptionError> {
    text(value).map(PathBuf::from)
}

fn no_clear(_: &mut Options, _: &str) {}

fn shown_path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Declares an option on a field of [`Options`], by the shape of the field.
macro_rules! def {
    (flag $name:literal, $field:ident, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::Flag,
            value_name: "BOOL",
            apply: |o, _, v| {
                o.$field = parse_bool(v)?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![o.$field.to_string()],
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (string $name:literal, $field:ident, $value_name:literal, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: $value_name,
            apply: |o, _, v| {
                o.$field = Some(text(v)?);
                Ok(())
            },
            clear: no_clear,
            show: |o, _| o.$field.iter().cloned().collect(),
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (path $name:literal, $field:ident, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: "PATH",
            apply: |o, _, v| {
                o.$field = Some(path(v)?);
                Ok(())
            },
            clear: no_clear,
            show: |o, _| o.$field.iter().map(|p| shown_path(p)).collect(),
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (parsed $name:literal, $field:ident, $value_name:literal, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: $value_name,
            apply: |o, _, v| {
                o.$field = v.trim().parse()?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![o.$field.to_string()],
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (target $name:literal, $field:ident, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: "LOGFILE|udp:HOST:PORT",
            apply: |o, _, v| {
                o.$field = Some(v.trim().parse()?);
                Ok(())
            },
            clear: no_clear,
            show: |o, _| o.$field.iter().map(ToString::to_string).collect(),
            ..base($name, Group::Process, true, $help)
        }
    };
    (target_like $name:literal, $field:ident, $value_name:literal, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: $value_name,
            apply: |o, _, v| {
                o.$field = Some(v.trim().parse()?);
                Ok(())
            },
            clear: no_clear,
            show: |o, _| o.$field.iter().map(ToString::to_string).collect(),
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (duration $name:literal, $field:ident, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: "DURATION",
            apply: |o, _, v| {
                o.$field = parse_duration(v)?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![show_duration(o.$field)],
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (strings $name:literal, $field:ident, $value_name:literal, $sep:ident, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::List(ListSeparator::$sep),
            value_name: $value_name,
            apply: |o, _, v| {
                o.$field.push(text(v)?);
                Ok(())
            },
            clear: |o, _| o.$field.clear(),
            show: |o, _| o.$field.clone(),
            ..base($name, Group::$group, $restart, $help)
        }
    };
    (paths $name:literal, $field:ident, $group:ident, restart: $restart:expr, $help:literal) => {
        OptionDef {
            kind: Kind::List(ListSeparator::Comma),
            value_name: "PATH",
            apply: |o, _, v| {
                o.$field.push(path(v)?);
                Ok(())
            },
            clear: |o, _| o.$field.clear(),
            show: |o, _| o.$field.iter().map(|p| shown_path(p)).collect(),
            ..base($name, Group::$group, $restart, $help)
        }
    };
}

mod emperor;
mod lifecycle;
mod ondemand;

fn base(name: &str, group: Group, restart: bool, help: &str) -> OptionDef {
    OptionDef {
        name: name.to_owned(),
        key: name.to_owned(),
        aliases: &[],
        short: None,
        kind: Kind::Value,
        value_name: "VALUE",
        help: help.to_owned(),
        group,
        restart,
        hidden: false,
        apply: |_, _, _| Ok(()),
        clear: no_clear,
        show: |_, _| Vec::new(),
    }
}

/// `1500ms` for 1.5 s, `30s` for 30 s: what parse_duration reads back.
fn show_duration(duration: std::time::Duration) -> String {
    if duration.subsec_millis() == 0 && duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

fn build() -> Vec<OptionDef> {
    let mut table = vec![
        OptionDef {
            short: Some('l'),
            kind: Kind::List(ListSeparator::Comma),
            value_name: "[NAME=]ADDR",
            apply: |o, _, v| {
                o.listen.push(v.trim().parse()?);
                Ok(())
            },
            clear: |o, _| o.listen.clear(),
            show: |o, _| o.listen.iter().map(ToString::to_string).collect(),
            ..base(
                "listen",
                Group::Master,
                true,
                "A socket to bind: HOST:PORT, [V6]:PORT or unix:PATH, optionally NAME=ADDR \
                 (the name the workers see in LISTEN_FDNAMES). Repeatable; workers get them \
                 as fd 3, 4, ...",
            )
        },
        OptionDef {
            short: Some('w'),
            aliases: &["processes"],
            value_name: "N",
            apply: |o, _, v| {
                o.workers = number(v, "a number of workers, at least 1")?;
                if o.workers == 0 {
                    return Err(OptionError::NoWorkers);
                }
                Ok(())
            },
            show: |o, _| vec![o.workers.to_string()],
            ..base(
                "workers",
                Group::Master,
                false,
                "How many workers to run (uWSGI: processes).",
            )
        },
        OptionDef {
            kind: Kind::Words,
            value_name: "COMMAND",
            apply: |o, _, v| {
                o.command.push(v.to_owned());
                Ok(())
            },
            clear: |o, _| o.command.clear(),
            show: |o, _| {
                if o.command.is_empty() {
                    Vec::new()
                } else {
                    vec![o.command.join(" ")]
                }
            },
            ..base(
                "command",
                Group::Master,
                false,
                "The worker command and its arguments, split at whitespace (in a TOML, YAML \
                 or JSON file also a list of words). On the command line it usually comes \
                 after `--`.",
            )
        },
        def!(parsed "ready", ready, "MODE", Master, restart: false,
            "When a new worker counts as ready: auto[:MS] (READY=1, or seen waiting for \
             connections on its sockets; MS alive only where that cannot be seen, default \
             1000), notify (READY=1 on NOTIFY_SOCKET), listening (seen waiting for \
             connections), log:REGEX (a line of its output matches), delay:MS (MS alive) \
             or immediate."),
        def!(parsed "worker-output", worker_output, "MODE", Master, restart: false,
            "What becomes of the workers' stdout and stderr: capture (read by the master, \
             each line sent to the journal with WORKER_ID, GENERATION and WORKER_PID under \
             systemd, else to stderr after the worker's id) or inherit (left alone: the \
             master's own, for a worker that needs a tty or logs elsewhere)."),
        def!(duration "ready-timeout", ready_timeout, Master, restart: false,
            "How long a new worker may take to become ready; past that it is killed and its \
             reload fails (the serving generation serves on), or, at start, steward exits 1. \
             0 waits for ever."),
        def!(parsed "worker-stop-signal", worker_stop_signal, "SIGNAL", Master, restart: false,
            "The signal that asks a worker to stop gracefully."),
        def!(duration "worker-reload-mercy", worker_reload_mercy, Master, restart: false,
            "How long a stopping worker may drain before it is killed: seconds, or with ms/s/m/h."),
        def!(duration "shutdown-delay", shutdown_delay, Master, restart: false,
            "How long a graceful shutdown (SIGTERM, `steward stop`) keeps serving before the \
             workers drain, reported not ready meanwhile (`steward status --ready` fails), so \
             that a load balancer stops sending first. 0: drain at once."),
        def!(duration "respawn-backoff", respawn_backoff, Master, restart: false,
            "The first delay before a crashing worker is started again; it doubles per crash in a row."),
        def!(duration "respawn-backoff-max", respawn_backoff_max, Master, restart: false,
            "The longest delay between two starts of a worker that keeps crashing."),
        def!(duration "respawn-reset-after", respawn_reset_after, Master, restart: false,
            "A worker that lived this long before it exited is started again at once, its \
             backoff reset."),
        OptionDef {
            value_name: "N",
            apply: |o, _, v| {
                o.listen_backlog = number(v, "a backlog length, at least 1")?;
                if o.listen_backlog < 1 {
                    return Err(OptionError::Number {
                        value: v.to_owned(),
                        expected: "a backlog length, at least 1",
                    });
                }
                Ok(())
            },
            show: |o, _| vec![o.listen_backlog.to_string()],
            ..base(
                "listen-backlog",
                Group::Master,
                true,
                "The listen(2) backlog of the sockets steward binds (uWSGI's own `listen`).",
            )
        },
        OptionDef {
            value_name: "MODE",
            apply: |o, _, v| {
                // uWSGI's chmod-socket without a value means 666.
                let v = v.trim();
                let mode = match v {
                    "" => 0o666,
                    _ => u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|mode| *mode <= 0o7777 && v.len() <= 4)
                        .ok_or_else(|| OptionError::SocketMode(v.to_owned()))?,
                };
                o.chmod_socket = Some(mode);
                Ok(())
            },
            show: |o, _| o.chmod_socket.iter().map(|m| format!("{m:o}")).collect(),
            ..base(
                "chmod-socket",
                Group::Master,
                true,
                "The permission bits (octal) of the unix sockets steward binds, set right \
                 after bind; an empty value means 666 (uWSGI's).",
            )
        },
        def!(string "chown-socket", chown_socket, "USER[:GROUP]", Master, restart: true,
            "The owner (and group) of the unix sockets steward binds, set right after bind, \
             before privileges drop."),
        def!(flag "lazy-apps", lazy_apps, Master, restart: true,
            "Preload mode: load the app in each worker after fork, not once in the master."),
        def!(flag "strict-fork", strict_fork, Master, restart: true,
            "Preload mode: refuse to fork workers while the master has more than one thread."),
        def!(duration "preload-check-timeout", preload_check_timeout, Master, restart: false,
            "Preload mode: how long the new binary may take to load the app in the check \
             before a reload re-execs into it; past that the reload goes on with the running app."),
        def!(parsed "reload-strategy", reload_strategy, "STRATEGY", Master, restart: false,
            "What SIGHUP does: graceful (a whole new generation) or chain (one worker at a time)."),
        def!(path "control-socket", control_socket, Master, restart: true,
            "The control socket for `steward reload/stop/status`; default \
             $RUNTIME_DIRECTORY/control.sock under systemd, else none."),
        def!(paths "master-fifo", master_fifo, Master, restart: true,
            "A uWSGI-style master FIFO (`echo r > FIFO` reloads); repeatable."),
        def!(path "emperor", emperor, Master, restart: true,
            "Run as an emperor: one steward master (a vassal) per config file of this \
             directory, as `steward emperor DIR`."),
        OptionDef {
            value_name: "MS",
            // A bare number is milliseconds, uWSGI's unit for this option.
            apply: |o, _, v| {
                o.emperor_throttle = match v.trim().parse::<u64>() {
                    Ok(ms) => std::time::Duration::from_millis(ms),
                    Err(_) => parse_duration(v)?,
                };
                Ok(())
            },
            show: |o, _| vec![show_duration(o.emperor_throttle)],
            ..base(
                "emperor-throttle",
                Group::Master,
                true,
                "Emperor: the wait before a vassal that died starts again, doubled at each \
                 death in a row, up to a minute; a bare number is milliseconds (uWSGI's unit).",
            )
        },
        def!(target_like "stats", stats, "ADDR", Master, restart: true,
            "The stats server, as uWSGI's: each connection gets one JSON document of the \
             master and its workers (uwsgitop reads it). HOST:PORT (:PORT is 127.0.0.1), \
             unix:PATH (mode 0600) or fd:NAME (a socket systemd hands over)."),
        def!(flag "stats-http", stats_http, Master, restart: true,
            "The stats address answers HTTP: GET / the JSON document, GET /metrics the \
             Prometheus text format."),
        def!(paths "touch-reload", touch_reload, Process, restart: true,
            "Reload gracefully when this file or directory is modified or touched; repeatable."),
        OptionDef {
            value_name: "NICE",
            apply: |o, _, v| {
                let nice: i32 = number(v, "a nice value from -20 to 19")?;
                if !(-20..=19).contains(&nice) {
                    return Err(OptionError::Number {
                        value: v.to_owned(),
                        expected: "a nice value from -20 to 19",
                    });
                }
                o.priority = Some(nice);
                Ok(())
            },
            show: |o, _| o.priority.iter().map(ToString::to_string).collect(),
            ..base(
                "priority",
                Group::Process,
                true,
                "The nice value of the master and the workers.",
            )
        },
        def!(flag "vacuum", vacuum, Process, restart: true,
            "Remove pidfiles, unix sockets, the control socket and FIFOs at exit."),
        def!(path "binary-path", binary_path, Process, restart: true,
            "The steward binary the master re-execs itself with; default: its own."),
        def!(flag "honour-stdin", honour_stdin, Process, restart: true,
            "Workers keep the master's stdin instead of /dev/null."),
        OptionDef {
            kind: Kind::Flag,
            value_name: "BOOL",
            apply: |o, _, v| {
                // uWSGI's ksm takes a scan interval: any positive one turns it on.
                o.ksm = match v.trim().parse::<u64>() {
                    Ok(interval) => interval > 0,
                    Err(_) => parse_bool(v)?,
                };
                Ok(())
            },
            show: |o, _| vec![o.ksm.to_string()],
            ..base(
                "ksm",
                Group::Process,
                true,
                "Kernel samepage merging for the master and the workers (PR_SET_MEMORY_MERGE, Linux 6.4+; a uWSGI interval counts as true).",
            )
        },
        def!(flag "no-swap", no_swap, Process, restart: true,
            "Lock the master's memory (mlockall); exec'd workers do not inherit it: see Process effects."),
        def!(target "daemonize", daemonize,
            "Detach (the started process exits 0) and log to LOGFILE (appended) or udp:HOST:PORT, first of all."),
        def!(target "daemonize2", daemonize2,
            "Like daemonize, once the sockets are bound and privileges dropped, right before the first workers."),
        def!(path "chdir", chdir, Process, restart: true,
            "The working directory of the master and the workers, first of all."),
        def!(path "chdir2", chdir2, Process, restart: true,
            "The working directory once the first generation is ready; later workers start there."),
        def!(string "uid", uid, "USER", Process, restart: true,
            "The user to run as, a name or a number."),
        def!(string "gid", gid, "GROUP", Process, restart: true,
            "The group to run as, a name or a number."),
        def!(strings "add-gid", add_gid, "GROUP", Comma, Process, restart: true,
            "A supplementary group; repeatable. They replace all others."),
        OptionDef {
            kind: Kind::List(ListSeparator::Newline),
            value_name: "VAR=VALUE",
            apply: |o, _, v| {
                let invalid = |reason| OptionError::Env {
                    value: v.to_owned(),
                    reason,
                };
                let (name, _) = v.split_once('=').ok_or(invalid("expected VAR=VALUE"))?;
                if name.is_empty() {
                    return Err(invalid("the variable name is empty"));
                }
                if v.contains('\0') {
                    return Err(invalid("a NUL byte cannot be in the environment"));
                }
                o.env.push(v.to_owned());
                Ok(())
            },
            clear: |o, _| o.env.clear(),
            show: |o, _| o.env.clone(),
            ..base(
                "env",
                Group::Process,
                true,
                "A variable set in the master's environment before the first hook, so the \
                 hooks and the workers inherit it; repeatable (uWSGI's `env`).",
            )
        },
        def!(string "immediate-uid", immediate_uid, "USER", Process, restart: true,
            "The user to switch to as soon as possible, before any hook."),
        def!(string "immediate-gid", immediate_gid, "GROUP", Process, restart: true,
            "The group to switch to as soon as possible, before any hook."),
        def!(path "pidfile", pidfile, Process, restart: true,
            "Write the master's pid there, before privileges drop."),
        def!(path "pidfile2", pidfile2, Process, restart: true,
            "Write the master's pid there, after privileges drop."),
        def!(path "safe-pidfile", safe_pidfile, Process, restart: true,
            "Write the master's pid there once the first generation is ready, so a failed \
             start leaves it alone."),
        def!(path "safe-pidfile2", safe_pidfile2, Process, restart: true,
            "The same as safe-pidfile (uWSGI's after-the-drop variant; steward writes both \
             then)."),
        def!(flag "auto-procname", auto_procname, Process, restart: true,
            "Name the processes meaningfully: \"steward master\", \"steward worker 3\"."),
        def!(string "procname-prefix", procname_prefix, "TEXT", Process, restart: true,
            "A prefix of every process name."),
        def!(string "procname-prefix-spaced", procname_prefix_spaced, "TEXT", Process, restart: true,
            "A prefix of every process name, followed by a space."),
        def!(string "procname-append", procname_append, "TEXT", Process, restart: true,
            "A suffix of every process name."),
        def!(string "procname", procname, "NAME", Process, restart: true,
            "The name of the workers."),
        def!(string "procname-master", procname_master, "NAME", Process, restart: true,
            "The name of the master."),
        def!(flag "skip-atexit", skip_atexit, Process, restart: true,
            "Skip the as-user-atexit hooks."),
        def!(flag "skip-atexit-teardown", skip_atexit_teardown, Process, restart: true,
            "Exit without teardown: no vacuum, nothing removed."),
        def!(strings "hook-touch", hook_touch, "PATH ACTION", Newline, Hooks, restart: true,
            "Run ACTION when PATH is modified or touched; repeatable."),
        OptionDef {
            // uWSGI's own name for it (what uwsgiconf's run_command_on_touch writes).
            aliases: &["touch-exec"],
            ..def!(strings "run-command-on-touch", run_command_on_touch, "PATH COMMAND", Newline, Hooks, restart: true,
                "Run COMMAND (with /bin/sh) when PATH is modified or touched; repeatable.")
        },
        def!(strings "run-command-on-event", run_command_on_event, "[PHASE ]COMMAND", Newline, Hooks, restart: true,
            "Run COMMAND (with /bin/sh) in PHASE (default asap); repeatable."),
        def!(duration "wait-for-fs-timeout", wait_for_fs_timeout, Hooks, restart: true,
            "How long the wait_for_fs, wait_for_file and wait_for_dir hook actions, and \
             spinningfifo, wait before they fail."),
        def!(duration "wait-for-socket-timeout", wait_for_socket_timeout, Hooks, restart: true,
            "How long the wait_for_socket hook action waits for a connection before it fails."),
        def!(strings "alarm", alarm, "NAME ACTION", Newline, Hooks, restart: true,
            "A named alarm handler: NAME cmd:COMMAND or NAME log:; repeatable."),
        def!(path "chroot", chroot, Hooks, restart: true,
            "The directory to chroot into, after the in-jail hooks (see Hooks in the README)."),
        OptionDef {
            kind: Kind::List(ListSeparator::Comma),
            value_name: "NAMESPACES",
            apply: |o, _, v| {
                // uWSGI writes several in one value: unshare = mount,uts
                for namespace in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    o.unshare.push(namespace.to_owned());
                }
                Ok(())
            },
            clear: |o, _| o.unshare.clear(),
            show: |o, _| o.unshare.clone(),
            ..base(
                "unshare",
                Group::Hooks,
                true,
                "Namespaces to unshare, comma-separated: mount, uts, ipc, pid, net, user, cgroup.",
            )
        },
        def!(strings "mule", mule, "COMMAND", Newline, Hooks, restart: true,
            "An auxiliary process run beside the workers, without the sockets; repeatable."),
    ];
    table.extend(lifecycle::options());
    table.extend(emperor::options());
    table.extend(ondemand::options());
    for phase in HOOK_PHASES {
        table.push(OptionDef {
            kind: Kind::List(ListSeparator::Newline),
            value_name: "ACTION",
            apply: |o, name, v| {
                o.hooks.push((hook_phase(name).to_owned(), text(v)?));
                Ok(())
            },
            clear: |o, name| o.hooks.retain(|(phase, _)| phase != hook_phase(name)),
            show: |o, name| {
                o.hooks
                    .iter()
                    .filter(|(phase, _)| phase == hook_phase(name))
                    .map(|(_, action)| action.clone())
                    .collect()
            },
            ..base(
                &format!("hook-{phase}"),
                Group::Hooks,
                true,
                &format!("An action to run in the {phase} phase; repeatable, run in order."),
            )
        });
    }
    // uWSGI's shorthands of `hook-<phase> = ACTION:VALUE`, for the actions it has them.
    for (action, value_name) in [
        ("exec", "COMMAND"),
        ("mount", "FSTYPE SRC DST [FLAGS [DATA]]"),
        ("umount", "PATH [FLAGS]"),
        ("call", "NAME"),
    ] {
        for phase in HOOK_PHASES {
            table.push(OptionDef {
                key: format!("hook-{phase}"),
                kind: Kind::List(ListSeparator::Newline),
                value_name,
                hidden: true,
                apply: |o, name, v| {
                    let (action, phase) = name.split_once('-').unwrap_or((name, name));
                    o.hooks
                        .push((phase.to_owned(), format!("{action}:{}", text(v)?)));
                    Ok(())
                },
                clear: |o, name| o.hooks.retain(|(phase, _)| phase != hook_phase(name)),
                // Shown as the hook-<phase> = ACTION:VALUE it is.
                show: |_, _| Vec::new(),
                ..base(
                    &format!("{action}-{phase}"),
                    Group::Hooks,
                    true,
                    &format!(
                        "Run {action}:{value_name} in the {phase} phase: hook-{phase} = {action}:{value_name}."
                    ),
                )
            });
        }
    }
    table
}

/// The option table of the README, in Markdown: name, default and meaning of each
/// option, with one row for all the `hook-<phase>` options and one for `exec-<phase>`.
pub fn markdown_table() -> String {
    let mut out = String::from("| option | default | meaning |\n|---|---|---|\n");
    for def in table() {
        if def.hidden() || hook_phase_of(def.name()).is_some() {
            continue;
        }
        let mut name = format!("`{}`", def.name());
        if let Some(short) = def.short() {
            name = format!("`-{short}`, {name}");
        }
        for alias in def.aliases() {
            name.push_str(&format!(" (`{alias}`)"));
        }
        let value = match def.kind() {
            Kind::Flag => String::new(),
            _ => format!(" {}", def.value_name()),
        };
        let repeatable = match def.kind() {
            Kind::List(ListSeparator::Comma) => " (list; comma-separated in STEWARD_*)",
            Kind::List(ListSeparator::Newline) => " (list; one per line in STEWARD_*)",
            _ => "",
        };
        let default = def.default_text();
        let default = if default.is_empty() {
            "none".to_owned()
        } else {
            format!("`{default}`")
        };
        out.push_str(&format!(
            "| {name}{value} | {default} | {}{repeatable} |\n",
            def.help().replace('|', "\\|")
        ));
    }
    let phases = HOOK_PHASES.join("`, `");
    out.push_str(&format!(
        "| `hook-<phase>` ACTION | none | an action to run in that phase, for every phase: `{phases}` (list; one per line in STEWARD_*) |\n"
    ));
    out.push_str(
        "| `exec-<phase>` COMMAND | none | uWSGI's shorthand for `hook-<phase> = exec:COMMAND`, for the same phases; `mount-<phase>`, `umount-<phase>` and `call-<phase>` likewise |\n",
    );
    out
}

/// The phase of a `hook-<phase>` option.
fn hook_phase_of(name: &str) -> Option<&str> {
    name.strip_prefix("hook-")
        .filter(|phase| HOOK_PHASES.contains(phase))
}

/// `hook-as-root`, `exec-as-root`, `umount-as-root` -> `as-root`.
fn hook_phase(name: &str) -> &str {
    name.split_once('-').map_or(name, |(_, phase)| phase)
}

/// Every option, in the order `--help` and `steward check` list them.
pub fn table() -> &'static [OptionDef] {
    static TABLE: OnceLock<Vec<OptionDef>> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The option called `name` (or with that alias).
pub fn lookup(name: &str) -> Option<&'static OptionDef> {
    // An index rather than a scan: a uWSGI file may hold a hundred thousand keys.
    static INDEX: OnceLock<HashMap<&'static str, usize>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index = HashMap::new();
        for (at, def) in table().iter().enumerate() {
            for name in std::iter::once(def.name.as_str()).chain(def.aliases.iter().copied()) {
                index.entry(name).or_insert(at);
            }
        }
        index
    });
    index.get(name).map(|&at| &table()[at])
}

/// The option name closest to a misspelt one, if one is close enough to be meant.
pub fn suggest(name: &str) -> Option<&'static str> {
    static NAMES: OnceLock<Vec<(&'static str, Letters)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        table()
            .iter()
            .filter(|def| !def.hidden)
            .flat_map(|def| std::iter::once(def.name.as_str()).chain(def.aliases.iter().copied()))
            .map(|name| (name, Letters::of(name)))
            .collect()
    });
    let given: Vec<char> = name.chars().collect();
    let letters = Letters::of(name);
    let mut rows = Rows::default();
    names
        .iter()
        .filter_map(|(candidate, candidate_letters)| {
            let bound = (candidate.len() / 3).clamp(1, 3);
            if given.len().abs_diff(candidate.len()) > bound {
                return None;
            }
            // An edit changes the letter counts by at most two: most names are ruled
            // out here, without the quadratic comparison.
            if letters.difference(candidate_letters) > 2 * bound {
                return None;
            }
            rows.distance_within(&given, candidate, bound)
                .map(|distance| (distance, *candidate))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// How many times each byte value (folded to 32 buckets: `-`, digits and letters stay apart) occurs in a name.
struct Letters([u8; 32]);

impl Letters {
    fn of(name: &str) -> Letters {
        let mut counts = [0u8; 32];
        for byte in name.bytes() {
            let bucket = &mut counts[usize::from(byte % 32)];
            *bucket = bucket.saturating_add(1);
        }
        Letters(counts)
    }

    /// The sum of the differences of the counts.
    fn difference(&self, other: &Letters) -> usize {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| usize::from(a.abs_diff(*b)))
            .sum()
    }
}

/// The three rows of an edit distance computation, kept from one candidate to the next
/// so that suggesting a name for each of many unknown keys allocates nothing per pair.
#[derive(Default)]
struct Rows {
    before: Vec<usize>,
    previous: Vec<usize>,
    current: Vec<usize>,
    candidate: Vec<char>,
}

impl Rows {
    /// The Levenshtein distance of `a` and `b`, with a transposition counting as one
    /// edit (`relaod`), if it is at most `bound`. Every unknown key of a file is
    /// compared with every option name, so what cannot be within the bound stops early:
    /// lengths too far apart, or a row whose every cell is already past it.
    fn distance_within(&mut self, a: &[char], b: &str, bound: usize) -> Option<usize> {
        self.candidate.clear();
        self.candidate.extend(b.chars());
        let b = &self.candidate;
        if a.len().abs_diff(b.len()) > bound {
            return None;
        }
        for row in [&mut self.before, &mut self.previous, &mut self.current] {
            row.clear();
            row.resize(b.len() + 1, 0);
        }
        for (j, cell) in self.previous.iter_mut().enumerate() {
            *cell = j;
        }
        for i in 1..=a.len() {
            self.current[0] = i;
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (self.previous[j] + 1)
                    .min(self.current[j - 1] + 1)
                    .min(self.previous[j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(self.before[j - 2] + 1);
                }
                self.current[j] = best;
            }
            if self.current.iter().all(|&cell| cell > bound) {
                return None;
            }
            std::mem::swap(&mut self.before, &mut self.previous);
            std::mem::swap(&mut self.previous, &mut self.current);
        }
        let distance = self.previous[b.len()];
        (distance <= bound).then_some(distance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_env_names_follow_them() {
        let mut seen = std::collections::HashSet::new();
        for def in table() {
            for name in std::iter::once(def.name()).chain(def.aliases().iter().copied()) {
                assert!(seen.insert(name.to_owned()), "{name} is declared twice");
            }
        }
        assert_eq!(
            lookup("touch-reload").unwrap().env_var(),
            "STEWARD_TOUCH_RELOAD"
        );
        assert_eq!(lookup("processes").unwrap().name(), "workers");
    }

    #[test]
    fn every_option_shows_what_it_was_given() {
        for def in table().iter().filter(|def| !def.hidden()) {
            let mut options = Options::new(Vec::new());
            let value = match (def.name(), def.kind()) {
                ("listen", _) => "127.0.0.1:8000",
                ("workers" | "listen-backlog" | "priority", _) => "7",
                ("ready", _) => "delay:250",
                ("worker-stop-signal", _) => "SIGQUIT",
                ("reload-strategy", _) => "chain",
                ("worker-output", _) => "inherit",
                ("env", _) => "SHOP_MODE=a=b",
                ("chmod-socket", _) => "660",
                _ if def.value_name() == "MB" => "512",
                _ if def.value_name() == "N" && def.name().starts_with("cheaper") => "2",
                ("emperor-throttle" | "idle", _) => "3s",
                ("stats", _) => "127.0.0.1:1717",
                (name, _)
                    if name.starts_with("respawn")
                        || name.starts_with("max-worker-lifetime")
                        || name.ends_with("interval")
                        || name.ends_with("watchdog")
                        || name == "cheaper-overload"
                        || name == "cheaper-idle"
                        || name.ends_with("mercy")
                        || name.ends_with("delay")
                        || name.ends_with("timeout") =>
                {
                    "3s"
                }
                (_, Kind::Flag) => "true",
                _ => "/some/value",
            };
            def.clear(&mut options);
            def.apply(&mut options, value)
                .unwrap_or_else(|e| panic!("{}: {e}", def.name()));
            assert_eq!(def.show(&options), [value], "{}", def.name());
        }
    }

    #[test]
    fn chmod_socket_is_octal_and_empty_means_666() {
        let chmod = lookup("chmod-socket").unwrap();
        let mut options = Options::new(Vec::new());
        chmod.apply(&mut options, "").unwrap();
        assert_eq!(options.chmod_socket, Some(0o666));
        chmod.apply(&mut options, "0770").unwrap();
        assert_eq!(options.chmod_socket, Some(0o770));
        for bad in ["rw-rw-rw-", "999", "17777", "-1"] {
            let error = chmod.apply(&mut options, bad).unwrap_err();
            assert_eq!(error, OptionError::SocketMode(bad.to_owned()));
        }
    }

    #[test]
    fn an_env_value_must_be_var_equals_value() {
        let env = lookup("env").unwrap();
        let mut options = Options::new(Vec::new());
        for (value, reason) in [
            ("SHOP_MODE", "expected VAR=VALUE"),
            ("=x", "the variable name is empty"),
            ("A=\0", "a NUL byte cannot be in the environment"),
        ] {
            let error = env.apply(&mut options, value).unwrap_err();
            assert!(error.to_string().contains(reason), "{value:?}: {error}");
        }
        assert!(options.env.is_empty());
    }

    /// uWSGI's other shorthands: `mount-<phase>`, `umount-<phase>`, `call-<phase>`.
    #[test]
    fn mount_umount_and_call_phase_add_their_action_to_the_phase() {
        let mut options = Options::new(Vec::new());
        for (name, value) in [
            ("mount-in-jail", "tmpfs none /srv/jail/tmp nosuid"),
            ("umount-as-root", "/srv/jail/tmp"),
            ("call-asap", "warm_cache"),
        ] {
            lookup(name)
                .unwrap_or_else(|| panic!("no option {name}"))
                .apply(&mut options, value)
                .unwrap();
        }
        assert_eq!(
            options.hooks,
            [
                (
                    "in-jail".into(),
                    "mount:tmpfs none /srv/jail/tmp nosuid".into()
                ),
                ("as-root".into(), "umount:/srv/jail/tmp".into()),
                ("asap".into(), "call:warm_cache".into()),
            ]
        );
        assert_eq!(lookup("mount-in-jail").unwrap().key(), "hook-in-jail");
    }

    #[test]
    fn exec_phase_adds_an_exec_hook_to_its_phase() {
        let mut options = Options::new(Vec::new());
        lookup("hook-as-root")
            .unwrap()
            .apply(&mut options, "mkdir:/run/x")
            .unwrap();
        lookup("exec-as-root")
            .unwrap()
            .apply(&mut options, "touch /run/x/y")
            .unwrap();
        lookup("hook-asap")
            .unwrap()
            .apply(&mut options, "print:hi")
            .unwrap();
        assert_eq!(
            lookup("hook-as-root").unwrap().show(&options),
            ["mkdir:/run/x", "exec:touch /run/x/y"]
        );
        lookup("hook-as-root").unwrap().clear(&mut options);
        assert_eq!(options.hooks, [("asap".into(), "print:hi".into())]);
    }

    #[test]
    fn values_are_checked() {
        let mut options = Options::new(Vec::new());
        let workers = lookup("workers").unwrap();
        assert_eq!(
            workers.apply(&mut options, "0"),
            Err(OptionError::NoWorkers)
        );
        assert!(workers.apply(&mut options, "many").is_err());
        assert!(lookup("priority")
            .unwrap()
            .apply(&mut options, "40")
            .is_err());
        assert!(lookup("vacuum")
            .unwrap()
            .apply(&mut options, "maybe")
            .is_err());
        let ksm = lookup("ksm").unwrap();
        ksm.apply(&mut options, "10").unwrap();
        assert!(options.ksm);
    }

    #[test]
    fn the_readme_lists_every_option() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .unwrap();
        assert!(
            readme.contains(&markdown_table()),
            "README.md's option table is out of date; it should read:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("touch-relaod"), Some("touch-reload"));
        assert_eq!(suggest("worker"), Some("workers"));
        assert_eq!(suggest("harakiri"), None);
        assert_eq!(suggest("module"), None);
    }
}
