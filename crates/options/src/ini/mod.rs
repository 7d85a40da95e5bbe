//! uWSGI-style ini files: `key = value` lines in a `[uwsgi]` or `[steward]` section,
//! `;` or `#` comment lines, and repeated keys that accumulate (uWSGI's semantics,
//! which generic ini readers lose by keeping only the last value).
//!
//! A `[steward]` section speaks steward: an unknown key is an error. A `[uwsgi]`
//! section is an existing uWSGI configuration, read in uWSGI's order: magic variables
//! as each line is read, the config logic (`if-*`, `for`, [`logic`]), then `$(VAR)`
//! and `%(name)` in every value ([`expand`]); then steward reads the options it shares,
//! translates the few whose meaning differs and lists every other one as a warning
//! ([`uwsgi`]), so that nothing is dropped silently.

use std::{collections::HashSet, path::Path};

use crate::{setting::FileSettings, table, ConfigError, Origin, Setting, Warning};

mod expand;
mod logic;
mod uwsgi;

use logic::{Collected, Context, Entry, Logic};

/// Reads the `[uwsgi]` and `[steward]` sections of an ini file.
pub(crate) fn settings(path: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    settings_in(path, text, &|name| std::env::var(name).ok())
}

/// [`settings`], with `env` for what a `[uwsgi]` section reads from the environment.
fn settings_in(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileSettings, ConfigError> {
    let magic = expand::Magic::new(path);
    let mut out = FileSettings::default();
    let mut uwsgi_lines = Collected::default();
    let mut logic = Logic::default();
    let mut section: Option<String> = None;
    let mut found = false;
    let syntax = |line, message| ConfigError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
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
        match section.as_deref() {
            Some("uwsgi") => {
                let mut warn = |message| out.warnings.push(warning(path, line, message));
                let expanded = magic.apply(trimmed, &mut warn);
                let (key, value) = key_value(path, line, &expanded, true)?;
                let entry = Entry {
                    key: key.to_owned(),
                    value: value.to_owned(),
                    line,
                };
                let mut warn = |line, message| out.warnings.push(warning(path, line, message));
                let mut cx = Context {
                    env,
                    warn: &mut warn,
                };
                logic
                    .feed(entry, &mut uwsgi_lines, &mut cx)
                    .map_err(|message| syntax(line, message))?;
            }
            Some("steward") => {
                let (key, value) = key_value(path, line, trimmed, false)?;
                out.settings
                    .push(Setting::one(key, value, file_origin(path, line)));
            }
            // Other sections belong to other programs (or other uWSGI instances).
            _ => {}
        }
    }
    if !found {
        return Err(ConfigError::NoSection {
            path: path.to_owned(),
        });
    }
    logic.finish(&mut |line, message| out.warnings.push(warning(path, line, message)));
    let referenced = referenced_names(&uwsgi_lines.entries);
    let entries = expand_values(path, uwsgi_lines, env, &mut out.warnings)?;
    for entry in entries.entries {
        let origin = file_origin(path, entry.line);
        uwsgi::setting(&entry.key, &entry.value, &referenced, origin, &mut out);
    }
    // The [uwsgi] section was read last: back in file order, as a later line wins.
    let line_of = |origin: &Origin| match origin {
        Origin::File { line, .. } => *line,
        _ => 0,
    };
    out.settings.sort_by_key(|s| line_of(&s.origin));
    out.warnings.sort_by_key(|w| line_of(&w.origin));
    Ok(out)
}

/// The `$(VAR)` then the `%(name)` pass over every value of the section, as uWSGI makes
/// them once the section is read.
fn expand_values(
    path: &Path,
    mut lines: Collected,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Warning>,
) -> Result<Collected, ConfigError> {
    let failed = |line, message| ConfigError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    for entry in &mut lines.entries {
        if !entry.value.contains("$(") {
            continue;
        }
        let mut resolve = |inner: &str| {
            let value = expand::environment(inner, env);
            if value.is_none() {
                warnings.push(warning(path, entry.line, format!(
                    "$({inner}): the environment variable {inner} is not set; kept as written, as uWSGI keeps it"
                )));
            }
            value
        };
        entry.value = expand::substitute(&entry.value, '$', &mut resolve)
            .map_err(|message| failed(entry.line, message))?;
    }
    let mut expanded = Vec::with_capacity(lines.entries.len());
    for entry in &lines.entries {
        if !entry.value.contains("%(") {
            expanded.push(None);
            continue;
        }
        let option = |name: &str| lines.first(name).map(str::to_owned);
        let mut resolve = |inner: &str| {
            let value = expand::placeholder(inner, &option);
            if value.is_none() {
                warnings.push(warning(
                    path,
                    entry.line,
                    format!(
                        "%({inner}): nothing named {inner} is set in the section; kept as written"
                    ),
                ));
            }
            value
        };
        let value = expand::substitute(&entry.value, '%', &mut resolve)
            .map_err(|message| failed(entry.line, message))?;
        expanded.push(Some(value));
    }
    for (entry, value) in lines.entries.iter_mut().zip(expanded) {
        if let Some(value) = value {
            entry.value = value;
        }
    }
    Ok(lines)
}

/// Every name a `%(...)` of the section reads (math words included).
fn referenced_names(entries: &[Entry]) -> HashSet<String> {
    let mut names = HashSet::new();
    for entry in entries {
        for rest in entry.value.split("%(").skip(1) {
            let inner = rest.split_once(')').map_or(rest, |(inner, _)| inner);
            for word in inner.split(' ').filter(|w| !w.is_empty()) {
                names.insert(word.to_owned());
            }
        }
    }
    names
}

fn file_origin(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_owned(),
        line,
    }
}

fn warning(path: &Path, line: usize, message: String) -> Warning {
    Warning {
        origin: file_origin(path, line),
        message,
    }
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

/// Whether `key` names an on/off option (`vacuum`), under any of its names.
fn is_flag(key: &str) -> bool {
    table::lookup(key).is_some_and(|def| def.kind() == table::Kind::Flag)
}

#[cfg(test)]
mod tests;
