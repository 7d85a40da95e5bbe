//! The options of an on-demand vassal and of an idle master (README, "Emperor mode"):
//! the emperor holds the sockets of an `on-demand` vassal until a first connection,
//! and a master with `idle` retires its workers (or with `die-on-idle` exits, giving
//! its sockets back to the emperor) once nothing has been served for that long.

use super::{base, no_clear, parse_bool, parse_duration, show_duration, Group, Kind, OptionDef};

pub(super) fn options() -> Vec<OptionDef> {
    vec![
        OptionDef {
            kind: Kind::Flag,
            value_name: "BOOL",
            apply: |o, _, v| {
                o.on_demand = parse_bool(v)?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![o.on_demand.to_string()],
            ..base(
                "on-demand",
                Group::Master,
                true,
                "As a vassal: the emperor binds this vassal's `listen` sockets itself and \
                 starts the vassal at the first connection, handing them over by socket \
                 activation; with die-on-idle it goes back to waiting when idle.",
            )
        },
        OptionDef {
            kind: Kind::Value,
            value_name: "DURATION",
            apply: |o, _, v| {
                o.idle = parse_duration(v)?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![show_duration(o.idle)],
            ..base(
                "idle",
                Group::Master,
                true,
                "After this long with nothing waiting in the listen queues and no \
                 connection held by a worker (sampled, README \"On-demand vassals and \
                 idle\"), every worker retires until the next connection (uWSGI's cheap \
                 mode), or with die-on-idle the master stops gracefully and exits 0. A \
                 bare number is seconds (uWSGI's unit); 0: never.",
            )
        },
        OptionDef {
            kind: Kind::Flag,
            value_name: "BOOL",
            apply: |o, _, v| {
                o.die_on_idle = parse_bool(v)?;
                Ok(())
            },
            clear: no_clear,
            show: |o, _| vec![o.die_on_idle.to_string()],
            ..base(
                "die-on-idle",
                Group::Master,
                true,
                "Exit (gracefully, status 0) once idle for `idle`; an on-demand vassal then \
                 waits for its next connection in the emperor.",
            )
        },
    ]
}
