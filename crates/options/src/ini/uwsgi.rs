//! One line of a `[uwsgi]` section, its values expanded, as steward reads it: one of
//! steward's options, a uWSGI name translated, a placeholder, or a warning.

use std::collections::HashSet;

use crate::{setting::FileSettings, table, Options, Origin, Setting, Warning};

/// uWSGI options steward does not have. A key read only through `%(key)` is a
/// placeholder unless it is one of these (uWSGI acts on it too, steward does not, and
/// says so); and they are warned about rather than "corrected" to a steward option
/// they happen to resemble (`threads`, `master`).
pub(super) const UWSGI_ONLY: &[&str] = &[
    "buffer-size",
    "callable",
    "die-on-term",
    "disable-logging",
    "enable-threads",
    "home",
    "http",
    "http-timeout",
    "http-websockets",
    "https",
    "lazy",
    "log-format",
    "logto",
    "logto2",
    "manage-script-name",
    "master",
    "max-requests",
    "module",
    "mount",
    "need-app",
    "offload-threads",
    "plugin",
    "plugins",
    "post-buffering",
    "py-autoreload",
    "pyhome",
    "pythonpath",
    "route",
    "single-interpreter",
    "socket-timeout",
    "static-map",
    "strict",
    "threads",
    "thunder-lock",
    "venv",
    "virtualenv",
    "wsgi",
    "wsgi-file",
];

/// uWSGI's names for a socket address, read as steward's `listen`.
const UWSGI_SOCKETS: &[&str] = &["socket", "http-socket", "uwsgi-socket"];

/// Reads `key = value` (expanded) of a `[uwsgi]` section into `out`. `referenced`
/// holds every name a `%(...)` of the section reads.
pub(super) fn setting(
    key: &str,
    value: &str,
    referenced: &HashSet<String>,
    origin: Origin,
    out: &mut FileSettings,
) {
    let mut warn = |message: String| {
        out.warnings.push(Warning {
            origin: origin.clone(),
            message,
        })
    };
    if key == "listen" && value.parse::<u32>().is_ok() {
        warn(format!(
            "uWSGI's listen = {value} is the socket backlog: read as listen-backlog = {value}"
        ));
        out.settings
            .push(Setting::one("listen-backlog", value, origin.clone()));
        return;
    }
    if key == "harakiri" {
        warn(format!(
            "uWSGI's harakiri = {value} kills a worker stuck in one request for {value} s; \
             steward cannot see requests: read as worker-watchdog = {value}, which aborts a \
             ready worker that sends no WATCHDOG=1 heartbeat on NOTIFY_SOCKET for {value} s \
             (per heartbeat, not per request), from its first heartbeat on: a worker \
             that never sends one is not watched"
        ));
        out.settings
            .push(Setting::one("worker-watchdog", value, origin.clone()));
        return;
    }
    if key == "log-master" {
        // uWSGI's master reading the workers' output is steward's worker-output.
        let mode = match value.trim() {
            "" | "true" | "1" | "yes" | "on" => "capture",
            _ => "inherit",
        };
        out.settings
            .push(Setting::one("worker-output", mode, origin.clone()));
        return;
    }
    if UWSGI_SOCKETS.contains(&key) || key == "http" {
        let value = socket_without_comment(key, value, &mut warn);
        let address = socket_address(&value);
        warn(socket_warning(key, &value, &address));
        out.settings
            .push(Setting::one("listen", address, origin.clone()));
        return;
    }
    if let Some(def) = table::lookup(key) {
        if def.key().starts_with("hook-") {
            if let Some(why) = unix_signal_already_done(value) {
                warn(format!("{key} = {value}: {why}; ignored"));
                return;
            }
        }
        let value = without_comment(def, key, value, &mut warn);
        out.settings.push(Setting::one(key, value, origin.clone()));
        return;
    }
    if UWSGI_ONLY.contains(&key) {
        let used = if referenced.contains(key) {
            format!("; its value is only used where %({key}) refers to it")
        } else {
            "; ignored".to_owned()
        };
        warn(format!("{}{used}", unsupported(key)));
        return;
    }
    if referenced.contains(key) {
        // A placeholder: a name only there to be read as %(key), as in uWSGI.
        return;
    }
    if table::suggest(key).is_some() {
        // A near miss of steward's own option: it fails with a suggestion.
        out.settings.push(Setting::one(key, value, origin.clone()));
        return;
    }
    warn(format!("{}; ignored", unsupported(key)));
}

/// What steward says of a uWSGI option it does not have.
fn unsupported(key: &str) -> String {
    match key {
        "master" => "uWSGI's master: steward is always a master".to_owned(),
        "die-on-term" => {
            "uWSGI's die-on-term: SIGTERM is always a graceful shutdown in steward".to_owned()
        }
        "after-request-hook" | "after-request-call" => format!(
            "uWSGI's {key}: a per-request hook runs in the worker: a program embedding \
             steward registers it with Builder::after_request (see Hooks in the README)"
        ),
        "max-requests" => "uWSGI's max-requests: steward does not see requests; a worker \
            asks for its own replacement with X_STEWARD_RECYCLE= on NOTIFY_SOCKET (README, \
            worker contract), and max-worker-lifetime replaces by age"
            .to_owned(),
        _ => format!("uWSGI option {key:?} is not supported by steward"),
    }
}

/// uWSGI's `:8000` means every interface, and an address without a port is a unix
/// socket's path (an abstract `@name` is left to fail: steward binds files).
fn socket_address(value: &str) -> String {
    match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None if !value.contains(':') && !value.starts_with('@') => format!("unix:{value}"),
        None => value.to_owned(),
    }
}

fn socket_warning(key: &str, value: &str, address: &str) -> String {
    if key == "http" {
        return format!(
            "uWSGI's http = {value} runs uWSGI's HTTP router on that address, in front of \
             workers that speak the uwsgi protocol; steward has no router: it binds \
             listen = {address} itself and hands it to the workers, which must speak HTTP \
             on it (as with http-socket)"
        );
    }
    format!(
        "uWSGI's {key} = {value} is read as listen = {address}: the workers get the \
         bound socket and speak their own protocol on it"
    )
}

/// Why a hook `unix_signal:SIGNUM FUNCTION` (uWSGI's: run FUNCTION of the master on
/// SIGNUM) needs nothing here: it asks for what steward's signal already does. None
/// for any other hook, which the hook parser reads (and refuses with its reason).
fn unix_signal_already_done(value: &str) -> Option<String> {
    let (name, arg) = value.split_once(':')?;
    if name.trim() != "unix_signal" {
        return None;
    }
    let (signum, function) = arg.trim().split_once(char::is_whitespace)?;
    let asked = match function.trim() {
        "gracefully_kill_them_all" => "graceful shutdown",
        "kill_them_all" => "brutal shutdown",
        "grace_them_all" => "graceful reload",
        "stats" => "status report",
        _ => return None,
    };
    let (signal, does) = match signum.trim().parse::<i32>().ok()? {
        1 => ("SIGHUP", "graceful reload"),
        2 => ("SIGINT", "brutal shutdown"),
        3 => ("SIGQUIT", "brutal shutdown"),
        10 => ("SIGUSR1", "status report"),
        15 => ("SIGTERM", "graceful shutdown"),
        _ => return None,
    };
    (asked == does).then(|| {
        format!(
            "uWSGI's unix_signal asks that {signal} be a {asked}: steward's {signal} already is"
        )
    })
}

/// A value with what looks like a trailing comment (`60  # seconds`), read as uWSGI
/// reads it. uWSGI strips no comment from a value (only whole `;` or `#` lines): the
/// text stays in the value, a number is read up to where it ends (atoi), and an on/off
/// option is on unless the whole value is false, off, no or 0.
fn without_comment(
    def: &table::OptionDef,
    key: &str,
    value: &str,
    warn: &mut dyn FnMut(String),
) -> String {
    let Some(at) = comment_start(value) else {
        return value.to_owned();
    };
    let accepts = |text: &str| def.apply(&mut Options::new(Vec::new()), text).is_ok();
    if def.kind() == table::Kind::Flag {
        let on = !["false", "off", "no", "0"]
            .iter()
            .any(|off| value.eq_ignore_ascii_case(off));
        let read = if on { "true" } else { "false" };
        warn(format!(
            "{key} = {value}: uWSGI keeps the comment in the value and reads any value but \
             false, off, no or 0 as on: read as {read}, as uWSGI does"
        ));
        return read.to_owned();
    }
    if accepts(value) {
        warn(format!(
            "{key} = {value}: uWSGI strips no comment after a value: {:?} is part of it, \
             as in uWSGI",
            &value[at..].trim_start()
        ));
        return value.to_owned();
    }
    let head = value[..at].trim_end();
    if accepts(head) {
        warn(format!(
            "{key} = {value}: read as {head}, as uWSGI reads the number and ignores what \
             follows it"
        ));
        return head.to_owned();
    }
    value.to_owned()
}

/// A socket address with what looks like a trailing comment, read as uWSGI reads it:
/// a TCP port is a number read up to where it ends (atoi), so what follows it is
/// ignored; a unix socket's path keeps it (a file of that name).
fn socket_without_comment(key: &str, value: &str, warn: &mut dyn FnMut(String)) -> String {
    let Some(at) = comment_start(value) else {
        return value.to_owned();
    };
    let head = value[..at].trim_end();
    let port = head.rsplit_once(':').map(|(_, port)| port);
    if port.is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())) {
        warn(format!(
            "{key} = {value}: read as {head}, as uWSGI reads the port number and ignores what follows it"
        ));
        return head.to_owned();
    }
    value.to_owned()
}

/// Where a `;` or `#` that follows whitespace begins a comment-like tail of `value`.
fn comment_start(value: &str) -> Option<usize> {
    let bytes = value.as_bytes();
    (1..bytes.len())
        .find(|&i| matches!(bytes[i], b';' | b'#') && matches!(bytes[i - 1], b' ' | b'\t'))
        .map(|i| i - 1)
}
