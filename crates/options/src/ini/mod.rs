//! uWSGI-style ini files: `key = value` lines in a `[uwsgi]` or `[steward]` section,
//! `;` or `#` comments, and repeated keys that accumulate (uWSGI's semantics, which
//! generic ini readers lose by keeping only the last value).
//!
//! A `[steward]` section speaks steward: an unknown key is an error. A `[uwsgi]`
//! section is an existing uWSGI configuration: steward reads the options it shares,
//! translates the few whose meaning differs (`listen` is uWSGI's backlog, `socket` an
//! address) and lists every other one as a warning, so that nothing is dropped silently.

use std::path::Path;

use crate::{setting::FileSettings, table, ConfigError, Origin, Setting, Warning};

/// uWSGI options steward does not have, that would otherwise look like misspellings
/// of steward's (`threads`, `master`): they are warned about, not "corrected".
const UWSGI_ONLY: &[&str] = &[
    "buffer-size",
    "callable",
    "cheaper",
    "die-on-term",
    "enable-threads",
    "harakiri",
    "home",
    "http",
    "lazy",
    "logto",
    "master",
    "max-requests",
    "module",
    "need-app",
    "plugin",
    "plugins",
    "pythonpath",
    "stats",
    "threads",
    "venv",
    "virtualenv",
    "wsgi-file",
];

/// uWSGI's names for a socket address, read as steward's `listen`.
const UWSGI_SOCKETS: &[&str] = &["socket", "http-socket", "uwsgi-socket"];

/// Reads the `[uwsgi]` and `[steward]` sections of an ini file.
pub(crate) fn settings(path: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    settings_in(path, text, &|name| std::env::var(name).ok())
}

/// [`settings`], with `env` for the `$(VAR)` of a `[uwsgi]` section.
fn settings_in(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileSettings, ConfigError> {
    let mut expander = Expander::new(path, text, env);
    let mut out = FileSettings::default();
    let mut section: Option<String> = None;
    let mut found = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = section_header(path, line, trimmed)? {
            found |= matches!(name, "uwsgi" | "steward");
            section = Some(name.to_owned());
            continue;
        }
        let uwsgi = match section.as_deref() {
            Some("uwsgi") => true,
            Some("steward") => false,
            // Other sections belong to other programs (or other uWSGI instances).
            _ => continue,
        };
        let (key, value) = key_value(path, line, trimmed, uwsgi)?;
        let origin = Origin::File {
            path: path.to_owned(),
            line,
        };
        if uwsgi {
            let value = expander.expand(key, value, &origin, &mut out.warnings);
            if expander.is_placeholder(key) && table::lookup(key).is_none() {
                // Only there to be used as %(key) further down.
                continue;
            }
            uwsgi_setting(key, &value, origin, &mut out);
        } else {
            out.settings.push(Setting::one(key, value, origin));
        }
    }
    if !found {
        return Err(ConfigError::NoSection {
            path: path.to_owned(),
        });
    }
    Ok(out)
}

/// The name of the section a `[name]` line opens, or None for any other line.
fn section_header<'t>(
    path: &Path,
    line: usize,
    trimmed: &'t str,
) -> Result<Option<&'t str>, ConfigError> {
    let Some(name) = trimmed.strip_prefix('[') else {
        return Ok(None);
    };
    let name = name.strip_suffix(']').ok_or_else(|| ConfigError::Syntax {
        path: path.to_owned(),
        line,
        message: format!("a section header must end with ']': {trimmed}"),
    })?;
    Ok(Some(name.trim()))
}

/// The key and value of a line of the `[uwsgi]` (if `uwsgi`) or `[steward]` section.
fn key_value<'t>(
    path: &Path,
    line: usize,
    trimmed: &'t str,
    uwsgi: bool,
) -> Result<(&'t str, &'t str), ConfigError> {
    let (key, value) = match trimmed.split_once('=') {
        Some((key, value)) => (key.trim(), value.trim()),
        // uWSGI reads a bare key as an empty value, which turns a flag on.
        None if !trimmed.contains(char::is_whitespace) && (uwsgi || is_flag(trimmed)) => {
            (trimmed, "")
        }
        None => {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                line,
                message: format!("expected key = value, found {trimmed:?}"),
            })
        }
    };
    // `vacuum` and `vacuum =` are true in uWSGI (its uwsgi_opt_true).
    if value.is_empty() && is_flag(key) {
        return Ok((key, "true"));
    }
    Ok((key, value))
}

/// uWSGI's substitutions in the values of a `[uwsgi]` section, so that an existing
/// file means what it meant to uWSGI: `$(VAR)` (the environment), `%(name)` (the value
/// of `name` set earlier in the section, a placeholder or an option), and the magic
/// variables of the file's own path, `%d` (its directory, with a trailing slash), `%p`
/// (its absolute path), `%o` (as given), `%s` (its name), `%n` (without extension),
/// `%e` (the extension), `%c` (its directory's name), with `%k` (CPUs) and `%%`. Any
/// other magic variable is kept as written, with a warning.
struct Expander<'a> {
    magic: Vec<(char, String)>,
    /// Names used as `%(name)` anywhere in the file.
    referenced: Vec<String>,
    /// (key, value) of the section so far, for `%(name)`.
    earlier: Vec<(String, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Expander<'a> {
    fn new(path: &Path, text: &str, env: &'a dyn Fn(&str) -> Option<String>) -> Expander<'a> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let shown = |p: Option<&std::ffi::OsStr>| {
            p.map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let dir = absolute.parent().unwrap_or(Path::new("/"));
        let mut dir_text = dir.display().to_string();
        if !dir_text.ends_with('/') {
            dir_text.push('/');
        }
        let magic = vec![
            ('d', dir_text),
            ('p', absolute.display().to_string()),
            ('o', path.display().to_string()),
            ('s', shown(absolute.file_name())),
            ('n', shown(absolute.file_stem())),
            ('e', shown(absolute.extension())),
            ('c', shown(dir.file_name())),
            (
                'k',
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .to_string(),
            ),
            ('%', "%".to_owned()),
        ];
        let referenced = text
            .split("%(")
            .skip(1)
            .filter_map(|rest| rest.split_once(')').map(|(name, _)| name.trim().to_owned()))
            .collect();
        Expander {
            magic,
            referenced,
            earlier: Vec::new(),
            env,
        }
    }

    /// Whether `key` is used as `%(key)` somewhere in the file.
    fn is_placeholder(&self, key: &str) -> bool {
        self.referenced.iter().any(|name| name == key)
    }

    /// `value` of `key` with its substitutions made; a problem is a warning at `origin`.
    fn expand(
        &mut self,
        key: &str,
        value: &str,
        origin: &Origin,
        warnings: &mut Vec<Warning>,
    ) -> String {
        let mut warn = |message: String| {
            warnings.push(Warning {
                origin: origin.clone(),
                message,
            })
        };
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(at) = rest.find(['%', '$']) {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            rest = match tail[1..]
                .strip_prefix('(')
                .and_then(|inner| inner.split_once(')'))
            {
                Some((name, after)) => {
                    out.push_str(&self.named(tail, name, &mut warn));
                    after
                }
                None => self.magic(tail, &mut out, &mut warn),
            };
        }
        out.push_str(rest);
        self.earlier.push((key.to_owned(), out.clone()));
        out
    }

    /// What `$(name)` or `%(name)`, at the start of `tail`, stands for.
    fn named(&self, tail: &str, name: &str, warn: &mut dyn FnMut(String)) -> String {
        if tail.starts_with('$') {
            return (self.env)(name).unwrap_or_else(|| {
                warn(format!(
                    "$({name}): the environment variable {name} is not set; read as empty"
                ));
                String::new()
            });
        }
        match self.earlier.iter().rev().find(|(k, _)| k == name) {
            Some((_, earlier)) => earlier.clone(),
            None => {
                warn(format!(
                    "%({name}): nothing named {name} is set above; kept as written"
                ));
                tail[..name.len() + 3].to_owned()
            }
        }
    }

    /// Writes what the `%X` (or a lone `%` or `$`) at the start of `tail` stands for to
    /// `out`, and returns the text after it.
    fn magic<'t>(&self, tail: &'t str, out: &mut String, warn: &mut dyn FnMut(String)) -> &'t str {
        let sigil = tail.as_bytes()[0];
        match (sigil, tail[1..].chars().next()) {
            (b'%', Some(c)) => {
                match self.magic.iter().find(|(m, _)| *m == c) {
                    Some((_, text)) => out.push_str(text),
                    None => {
                        warn(format!("uWSGI magic variable %{c} is not supported by steward; kept as written"));
                        out.push('%');
                        out.push(c);
                    }
                }
                &tail[1 + c.len_utf8()..]
            }
            _ => {
                out.push(char::from(sigil));
                &tail[1..]
            }
        }
    }
}

/// Whether `key` names an on/off option (`vacuum`), under any of its names.
fn is_flag(key: &str) -> bool {
    table::lookup(key).is_some_and(|def| def.kind() == table::Kind::Flag)
}

/// A `[uwsgi]` line: steward's option, a uWSGI name translated, or a warning.
fn uwsgi_setting(key: &str, value: &str, origin: Origin, out: &mut FileSettings) {
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
    if UWSGI_SOCKETS.contains(&key) {
        // uWSGI's `:8000` means every interface, and an address without a port is a
        // unix socket's path (an abstract `@name` is left to fail: steward binds files).
        let address = match value.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None if !value.contains(':') && !value.starts_with('@') => format!("unix:{value}"),
            None => value.to_owned(),
        };
        warn(format!(
            "uWSGI's {key} = {value} is read as listen = {address}: the workers get the \
             bound socket and speak their own protocol on it"
        ));
        out.settings
            .push(Setting::one("listen", address, origin.clone()));
        return;
    }
    if table::lookup(key).is_some() || (table::suggest(key).is_some() && !UWSGI_ONLY.contains(&key))
    {
        // Steward's own option, or a near miss of one: the latter fails with a suggestion.
        out.settings.push(Setting::one(key, value, origin.clone()));
        return;
    }
    let message = match key {
        "master" => "uWSGI's master: steward is always a master".to_owned(),
        "die-on-term" => {
            "uWSGI's die-on-term: SIGTERM is always a graceful shutdown in steward".to_owned()
        }
        "after-request-hook" | "after-request-call" => format!(
            "uWSGI's {key}: a per-request hook runs in the worker: a program embedding \
             steward registers it with Builder::after_request (see Hooks in the README)"
        ),
        _ => format!("uWSGI option {key:?} is not supported by steward"),
    };
    warn(format!("{message}; ignored"));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn read(text: &str) -> Result<FileSettings, ConfigError> {
        settings(Path::new("/etc/app.ini"), text)
    }

    fn at(line: usize) -> Origin {
        Origin::File {
            path: PathBuf::from("/etc/app.ini"),
            line,
        }
    }

    fn keys(file: &FileSettings) -> Vec<(&str, &crate::RawValue, usize)> {
        file.settings
            .iter()
            .map(|s| {
                let Origin::File { line, .. } = s.origin else {
                    unreachable!()
                };
                (s.key.as_str(), &s.value, line)
            })
            .collect()
    }

    #[test]
    fn repeated_keys_accumulate_in_order() {
        let file = read(
            "; comment\n[other]\nworkers = 9\n\n[steward]\ntouch-reload = /a\n# another\ntouch-reload = /b\nworkers = 2\n",
        )
        .unwrap();
        let one = |v: &str| crate::RawValue::One(v.into());
        assert_eq!(
            keys(&file),
            [
                ("touch-reload", &one("/a"), 6),
                ("touch-reload", &one("/b"), 8),
                ("workers", &one("2"), 9),
            ]
        );
    }

    #[test]
    fn uwsgi_names_are_translated_and_unsupported_ones_warned_about() {
        let file = read(
            "[uwsgi]\nmodule = app:wsgi\nprocesses = 4\nlisten = 128\nsocket = :8000\nharakiri = 30\nmaster = true\nvacuum = true\n",
        )
        .unwrap();
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "/etc/app.ini:2: uWSGI option \"module\" is not supported by steward; ignored",
                "/etc/app.ini:4: uWSGI's listen = 128 is the socket backlog: read as listen-backlog = 128",
                "/etc/app.ini:5: uWSGI's socket = :8000 is read as listen = 0.0.0.0:8000: the workers get the bound socket and speak their own protocol on it",
                "/etc/app.ini:6: uWSGI option \"harakiri\" is not supported by steward; ignored",
                "/etc/app.ini:7: uWSGI's master: steward is always a master; ignored",
            ]
        );
        let set: Vec<&str> = file.settings.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(set, ["processes", "listen-backlog", "listen", "vacuum"]);
        assert_eq!(file.settings[2].origin, at(5));
    }

    /// uWSGI's after-request hooks are C symbols run in the worker: the warning says
    /// where steward has them instead.
    #[test]
    fn after_request_hooks_point_at_the_embedding_api() {
        let file =
            read("[uwsgi]\nafter-request-hook = log_it\nafter-request-call = count\n").unwrap();
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        let why = "a per-request hook runs in the worker: a program embedding steward registers it with Builder::after_request (see Hooks in the README); ignored";
        assert_eq!(
            warnings,
            [
                format!("/etc/app.ini:2: uWSGI's after-request-hook: {why}"),
                format!("/etc/app.ini:3: uWSGI's after-request-call: {why}"),
            ]
        );
        assert!(file.settings.is_empty());
    }

    /// A name in the uWSGI-only list is never read, so steward's own options (uWSGI's
    /// `lazy-apps` is steward's too) must not be in it.
    #[test]
    fn the_uwsgi_only_list_names_no_option_of_steward() {
        let own: Vec<&str> = UWSGI_ONLY
            .iter()
            .copied()
            .filter(|key| table::lookup(key).is_some())
            .collect();
        assert_eq!(own, [] as [&str; 0]);
        let file = read("[uwsgi]\nlazy-apps = true\nlazy = true\n").unwrap();
        let one = |v: &str| crate::RawValue::One(v.into());
        assert_eq!(keys(&file), [("lazy-apps", &one("true"), 2)]);
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            ["/etc/app.ini:3: uWSGI option \"lazy\" is not supported by steward; ignored"]
        );
    }

    #[test]
    fn a_bare_or_empty_flag_is_true_as_in_uwsgi() {
        let file = read(
            "[uwsgi]\nvacuum\nhonour-stdin =\nenable-threads\nmaster\n[steward]\nauto-procname\nno-swap =\n",
        )
        .unwrap();
        let one = |v: &str| crate::RawValue::One(v.into());
        assert_eq!(
            keys(&file),
            [
                ("vacuum", &one("true"), 2),
                ("honour-stdin", &one("true"), 3),
                ("auto-procname", &one("true"), 7),
                ("no-swap", &one("true"), 8),
            ]
        );
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "/etc/app.ini:4: uWSGI option \"enable-threads\" is not supported by steward; ignored",
                "/etc/app.ini:5: uWSGI's master: steward is always a master; ignored",
            ]
        );
        // A bare option that takes a value is still an error naming the line.
        let error = read("[steward]\npidfile\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/app.ini:2: expected key = value, found \"pidfile\""
        );
    }

    #[test]
    fn uwsgi_placeholders_magic_and_environment_variables_are_substituted() {
        let env = |name: &str| (name == "APP_USER").then(|| "shop".to_owned());
        let file = settings_in(
            Path::new("/etc/uwsgi/shop.ini"),
            "[uwsgi]\nbase = /srv/%n\nchdir = %(base)/current\npidfile = %d%n.pid\nuid = $(APP_USER)\ngid = $(NO_SUCH_VAR)x\nprocname = %c %s %e 100%% %z\nworkers = %k\n",
            &env,
        )
        .unwrap();
        let values: Vec<(&str, String)> = file
            .settings
            .iter()
            .map(|s| match &s.value {
                crate::RawValue::One(v) => (s.key.as_str(), v.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        let cpus = std::thread::available_parallelism().unwrap().to_string();
        assert_eq!(
            values,
            [
                ("chdir", "/srv/shop/current".to_owned()),
                ("pidfile", "/etc/uwsgi/shop.pid".to_owned()),
                ("uid", "shop".to_owned()),
                ("gid", "x".to_owned()),
                ("procname", "uwsgi shop.ini ini 100% %z".to_owned()),
                ("workers", cpus),
            ]
        );
        let warnings: Vec<String> = file.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "/etc/uwsgi/shop.ini:6: $(NO_SUCH_VAR): the environment variable NO_SUCH_VAR is not set; read as empty",
                "/etc/uwsgi/shop.ini:7: uWSGI magic variable %z is not supported by steward; kept as written",
            ]
        );
    }

    #[test]
    fn a_steward_section_takes_its_values_as_written() {
        let file = read("[steward]\nprocname = %n $(HOME)\n").unwrap();
        assert_eq!(
            file.settings[0].value,
            crate::RawValue::One("%n $(HOME)".into())
        );
    }

    #[test]
    fn a_uwsgi_socket_without_a_port_is_a_unix_socket() {
        let file = read(
            "[uwsgi]\nsocket = /run/app.sock\nhttp-socket = app.sock\nsocket = 127.0.0.1:3031\n",
        )
        .unwrap();
        let values: Vec<&crate::RawValue> = file.settings.iter().map(|s| &s.value).collect();
        let one = |v: &str| crate::RawValue::One(v.into());
        assert_eq!(
            values,
            [
                &one("unix:/run/app.sock"),
                &one("unix:app.sock"),
                &one("127.0.0.1:3031")
            ]
        );
        assert!(file.warnings[0]
            .to_string()
            .contains("socket = /run/app.sock is read as listen = unix:/run/app.sock"));
    }

    #[test]
    fn a_misspelt_option_is_kept_so_that_it_fails_with_a_suggestion() {
        let file = read("[uwsgi]\ntouch-relaod = /x\n").unwrap();
        assert_eq!(file.settings[0].key, "touch-relaod");
        assert!(file.warnings.is_empty());
    }

    #[test]
    fn malformed_files_name_the_line() {
        let error = read("[steward]\nworkers 2\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/app.ini:2: expected key = value, found \"workers 2\""
        );
        let error = read("[uwsgi\n").unwrap_err();
        assert!(error.to_string().starts_with("/etc/app.ini:1: "), "{error}");
        let error = read("[app]\nworkers = 2\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "/etc/app.ini: no [uwsgi] or [steward] section"
        );
    }
}
