//! The options of a worker's lifecycle: replaced by age, on its own request or past a
//! memory limit, always with its replacement ready first (README, "Worker lifecycle").

use super::{base, no_clear, number, parse_duration, show_duration, Group, Kind, OptionDef};

/// A memory limit in megabytes (uWSGI's unit); 0 is none.
macro_rules! megabytes {
    ($name:literal, $limits:ident . $field:ident, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: "MB",
            apply: |o, _, v| {
                o.$limits.$field = number(v, "a size in megabytes")?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![o.$limits.$field.to_string()],
            ..base($name, Group::Master, false, $help)
        }
    };
}

/// A count of workers; 0 where it means "off" or "the default".
macro_rules! count {
    ($name:literal, $field:ident, $help:literal) => {
        OptionDef {
            kind: Kind::Value,
            value_name: "N",
            apply: |o, _, v| {
                o.cheaper.$field = number(v, "a number of workers")?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![o.cheaper.$field.to_string()],
            ..base($name, Group::Master, false, $help)
        }
    };
}

pub(super) fn options() -> Vec<OptionDef> {
    vec![
        count!(
            "cheaper",
            min,
            "Adaptive worker count (uWSGI's cheaper): never fewer than this many workers, \
             never more than `workers`; more are started while connections wait in the \
             listen queue, idle ones retired. 0: off, `workers` always run."
        ),
        count!(
            "cheaper-initial",
            initial,
            "With cheaper: how many workers to start with (default: the cheaper minimum)."
        ),
        count!(
            "cheaper-step",
            step,
            "With cheaper: how many workers to add at a time (default 1)."
        ),
        def!(duration "cheaper-overload", cheaper_overload, Master, restart: false,
            "With cheaper: how long connections must keep waiting in the listen queue \
             before more workers start."),
        def!(duration "cheaper-idle", cheaper_idle, Master, restart: false,
            "With cheaper: how long the listen queue must stay empty before one worker \
             above the minimum is retired (one per such period)."),
        def!(duration "max-worker-lifetime", max_worker_lifetime, Master, restart: false,
            "Replace a worker once it has lived this long (seconds, or with ms/s/m/h; 0: \
             never). The replacement is started and ready before the old one is asked to stop."),
        def!(duration "max-worker-lifetime-delta", max_worker_lifetime_delta, Master, restart: false,
            "Worker N lives N times this longer than max-worker-lifetime (uWSGI's meaning), \
             so that workers started together are not replaced together."),
        megabytes!(
            "reload-on-rss",
            reload_on.rss,
            "Replace a worker whose resident memory, with its descendants', passes this many \
             megabytes; the replacement is ready before the old one stops. 0: no limit."
        ),
        megabytes!(
            "reload-on-as",
            reload_on.vsz,
            "Replace a worker whose address space (virtual size), with its descendants', \
             passes this many megabytes. 0: no limit."
        ),
        megabytes!(
            "reload-on-uss",
            reload_on.uss,
            "Replace a worker whose unique memory (private pages, from smaps_rollup), with \
             its descendants', passes this many megabytes. 0: no limit."
        ),
        megabytes!(
            "reload-on-pss",
            reload_on.pss,
            "Replace a worker whose proportional memory (from smaps_rollup), with its \
             descendants', passes this many megabytes. 0: no limit."
        ),
        megabytes!(
            "evil-reload-on-rss",
            evil_reload_on.rss,
            "Kill a worker at once (SIGKILL, no replacement first) whose resident memory, \
             with its descendants', passes this many megabytes. 0: no limit."
        ),
        megabytes!(
            "evil-reload-on-as",
            evil_reload_on.vsz,
            "Kill a worker at once whose address space, with its descendants', passes this \
             many megabytes. 0: no limit."
        ),
        def!(duration "memory-check-interval", memory_check_interval, Master, restart: false,
            "How often the workers' memory is measured when a reload-on limit is set."),
        def!(duration "worker-watchdog", worker_watchdog, Master, restart: false,
            "Each worker gets WATCHDOG_USEC and WATCHDOG_PID as systemd gives them; a ready \
             worker silent this long after a first WATCHDOG=1, or one sending \
             WATCHDOG=trigger, gets SIGABRT, SIGKILL after a short mercy, and is replaced. \
             0: no watchdog."),
    ]
}
