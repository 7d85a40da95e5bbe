//! Config files: TOML, YAML, JSON and uWSGI-style ini, each read into settings that
//! carry their file:line. The top level of a TOML, YAML or JSON file is a flat table
//! of options; a value is a string, number or boolean, or a list of them.

use std::{collections::BTreeMap, path::Path};

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::{Marker, TScalarStyle},
};

use crate::{ini, setting::FileSettings, ConfigError, Origin, RawValue, Setting};

/// Reads the config file, in the format its extension names.
pub(crate) fn read(path: &Path) -> Result<FileSettings, ConfigError> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => toml_settings,
        Some("yaml" | "yml") => yaml_settings,
        Some("json") => json_settings,
        Some("ini") => ini::settings,
        _ => {
            return Err(ConfigError::Format {
                path: path.to_owned(),
            })
        }
    };
    format(path, &read_capped(path)?)
}

/// The most a config file may hold. Generous (a big uWSGI file is a few MB), but a
/// config symlinked to /dev/zero or a log by mistake must not be read for ever.
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The text of `path`, refused beyond [`MAX_CONFIG_BYTES`].
fn read_capped(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let failed = |error| ConfigError::Read {
        path: path.to_owned(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|error| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {})",
                error.utf8_error().valid_up_to()
            ),
        ))
    })
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn origin(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_owned(),
        line,
    }
}

fn nested(path: &Path, line: usize, key: &str) -> ConfigError {
    let (origin, key) = (origin(path, line), key.to_owned());
    match key.as_str() {
        "uwsgi" | "steward" => ConfigError::Section { origin, key },
        _ => ConfigError::Nested { origin, key },
    }
}

fn toml_settings(path: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    type Spanned<T> = toml::Spanned<T>;
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |span| line_of(text, span.start)),
            message: e.message().trim().to_owned(),
        })?;
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    };
    let mut settings = Vec::new();
    for (key, value) in table {
        let line = line_of(text, key.span().start);
        let key = key.into_inner();
        let value = match value.get_ref() {
            toml::Value::Array(items) => RawValue::Many(
                items
                    .iter()
                    .map(|item| scalar(item).ok_or_else(|| nested(path, line, &key)))
                    .collect::<Result<_, _>>()?,
            ),
            other => RawValue::One(scalar(other).ok_or_else(|| nested(path, line, &key))?),
        };
        settings.push(Setting {
            key,
            value,
            origin: origin(path, line),
        });
    }
    settings.sort_by_key(setting_line);
    Ok(FileSettings {
        settings,
        warnings: Vec::new(),
    })
}

fn setting_line(setting: &Setting) -> usize {
    match setting.origin {
        Origin::File { line, .. } => line,
        _ => 0,
    }
}

fn json_settings(path: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        line: e.line(),
        message: e.to_string(),
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(ConfigError::NotATable {
            path: path.to_owned(),
        });
    };
    // serde_json keeps no positions: the lines of the top-level keys are found by
    // scanning the (now known to be valid) text.
    let lines = json_key_lines(text);
    let scalar = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null | serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            None
        }
    };
    let mut settings = Vec::new();
    for (key, value) in object {
        let line = lines.get(&key).copied().unwrap_or(1);
        let value = match &value {
            serde_json::Value::Array(items) => RawValue::Many(
                items
                    .iter()
                    .map(|item| scalar(item).ok_or_else(|| nested(path, line, &key)))
                    .collect::<Result<_, _>>()?,
            ),
            other => RawValue::One(scalar(other).ok_or_else(|| nested(path, line, &key))?),
        };
        settings.push(Setting {
            key,
            value,
            origin: origin(path, line),
        });
    }
    settings.sort_by_key(setting_line);
    Ok(FileSettings {
        settings,
        warnings: Vec::new(),
    })
}

/// The line of each key of the top-level object of a valid JSON text (the last one
/// when a key repeats, as serde_json keeps the last value).
fn json_key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut lines = BTreeMap::new();
    let mut depth = 0usize;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            '"' => {
                let start_line = line;
                let mut raw = String::from('"');
                while let Some(c) = chars.next() {
                    raw.push(c);
                    match c {
                        '\\' => raw.extend(chars.next()),
                        '"' => break,
                        '\n' => line += 1,
                        _ => {}
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    if chars.next() == Some('\n') {
                        line += 1;
                    }
                }
                if depth == 1 && chars.peek() == Some(&':') {
                    if let Ok(key) = serde_json::from_str::<String>(&raw) {
                        lines.insert(key, start_line);
                    }
                }
            }
            _ => {}
        }
    }
    lines
}

#[derive(Default)]
struct YamlEvents(Vec<(Event, Marker)>);

impl MarkedEventReceiver for YamlEvents {
    fn on_event(&mut self, event: Event, mark: Marker) {
        self.0.push((event, mark));
    }
}

/// A YAML null (`~`, `null`, nothing) is an empty value, which options refuse, rather
/// than the text "null".
fn yaml_scalar(value: String, style: TScalarStyle) -> String {
    match (style, value.as_str()) {
        (TScalarStyle::Plain, "~" | "null" | "Null" | "NULL") => String::new(),
        _ => value,
    }
}

fn yaml_settings(path: &Path, text: &str) -> Result<FileSettings, ConfigError> {
    let mut events = yaml_events(path, text)?.into_iter();
    let mut settings = Vec::new();
    match events.next() {
        None => {}
        Some((Event::MappingStart(..), _)) => loop {
            let (key, line) = match events.next() {
                Some((Event::Scalar(key, ..), mark)) => (key, mark.line()),
                Some((Event::MappingEnd, _)) | None => break,
                Some((_, mark)) => {
                    return Err(ConfigError::Syntax {
                        path: path.to_owned(),
                        line: mark.line(),
                        message: "an option name must be a plain string".into(),
                    })
                }
            };
            let value = yaml_value(&mut events).ok_or_else(|| nested(path, line, &key))?;
            settings.push(Setting {
                key,
                value,
                origin: origin(path, line),
            });
        },
        Some(_) => {
            return Err(ConfigError::NotATable {
                path: path.to_owned(),
            })
        }
    }
    Ok(FileSettings {
        settings,
        warnings: Vec::new(),
    })
}

/// The events of a YAML text that say something about its content (not the stream's
/// or document's start and end).
fn yaml_events(path: &Path, text: &str) -> Result<Vec<(Event, Marker)>, ConfigError> {
    let mut events = YamlEvents::default();
    Parser::new_from_str(text)
        .load(&mut events, false)
        .map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            line: e.marker().line(),
            message: e.info().to_owned(),
        })?;
    events.0.retain(|(event, _)| {
        !matches!(
            event,
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd
        )
    });
    Ok(events.0)
}

/// The value that follows a key: a scalar or a list of scalars; None for anything
/// nested deeper.
fn yaml_value(events: &mut impl Iterator<Item = (Event, Marker)>) -> Option<RawValue> {
    match events.next()? {
        (Event::Scalar(value, style, ..), _) => Some(RawValue::One(yaml_scalar(value, style))),
        (Event::SequenceStart(..), _) => {
            let mut items = Vec::new();
            loop {
                match events.next()? {
                    (Event::Scalar(item, style, ..), _) => items.push(yaml_scalar(item, style)),
                    (Event::SequenceEnd, _) => return Some(RawValue::Many(items)),
                    _ => return None,
                }
            }
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ConfigSources;

    /// A config file in a directory of its own, removed when dropped.
    pub(crate) struct TempFile {
        pub(crate) path: std::path::PathBuf,
    }

    impl TempFile {
        pub(crate) fn new(name: &str, text: &str) -> TempFile {
            let dir =
                std::env::temp_dir().join(format!("steward-options-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            TempFile { path }
        }

        pub(crate) fn load(&self) -> Result<crate::Config, ConfigError> {
            ConfigSources {
                file: Some(self.path.clone()),
                ..ConfigSources::default()
            }
            .load()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.path.parent().unwrap());
        }
    }

    fn at(file: &TempFile, line: usize) -> Origin {
        origin(&file.path, line)
    }

    #[test]
    fn toml_typed_values_lists_and_lines() {
        let file = TempFile::new(
            "a.toml",
            "# the app\nworkers = 3\nvacuum = true\nlisten = [\"127.0.0.1:1\", \"b=127.0.0.1:2\"]\n\ncommand = [\"/bin/app\", \"--x y\"]\nworker-reload-mercy = \"2s\"\n",
        );
        let config = file.load().unwrap();
        assert_eq!(config.options.workers, 3);
        assert!(config.options.vacuum);
        assert_eq!(config.options.listen.len(), 2);
        assert_eq!(config.options.command, ["/bin/app", "--x y"]);
        assert_eq!(config.origins("workers"), [at(&file, 2)]);
        assert_eq!(config.origins("command"), [at(&file, 6)]);
    }

    #[test]
    fn toml_errors_name_the_line() {
        let file = TempFile::new("b.toml", "command = \"/bin/app\"\nworkers = \"many\"\n");
        let error = file.load().unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "{}:2: workers: invalid number \"many\": expected a number of workers, at least 1",
                file.path.display()
            )
        );

        let file = TempFile::new("c.toml", "command = \"/bin/app\"\nworkers = \n");
        let error = file.load().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:2: ", file.path.display())),
            "{error}"
        );

        let file = TempFile::new("d.toml", "command = \"/bin/app\"\n[uwsgi]\nworkers = 2\n");
        let error = file.load().unwrap_err().to_string();
        assert!(
            error.contains(":2: a \"uwsgi\" section: in a TOML, YAML or JSON file the options go at the top level"),
            "{error}"
        );
        let file = TempFile::new("d.toml", "command = \"/bin/app\"\n[app]\nworkers = 2\n");
        let error = file.load().unwrap_err().to_string();
        assert!(
            error.contains(":2: option \"app\": expected a string"),
            "{error}"
        );
    }

    #[test]
    fn uwsgi_yaml_and_json_forms_are_named_as_such() {
        for (name, text) in [
            ("u.yaml", "uwsgi:\n  processes: 2\n"),
            ("u.json", "{\"uwsgi\": {\"processes\": 2}}"),
        ] {
            let file = TempFile::new(name, text);
            assert_eq!(
                file.load().unwrap_err().to_string(),
                format!(
                    "{}:1: a \"uwsgi\" section: in a TOML, YAML or JSON file the options go at the top level (a [uwsgi] section is read from an .ini file)",
                    file.path.display()
                )
            );
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion() {
        let file = TempFile::new("e.toml", "command = \"/bin/app\"\ntouch-relaod = \"/x\"\n");
        assert_eq!(
            file.load().unwrap_err().to_string(),
            format!(
                "{}:2: unknown option \"touch-relaod\" (did you mean \"touch-reload\"?)",
                file.path.display()
            )
        );
    }

    #[test]
    fn yaml_values_lists_and_lines() {
        let file = TempFile::new(
            "a.yaml",
            "---\ncommand: /bin/app --flag\nworkers: 4\ntouch-reload:\n  - /a\n  - /b\nhook-asap: [\"print:hi\"]\n",
        );
        let config = file.load().unwrap();
        assert_eq!(config.options.command, ["/bin/app", "--flag"]);
        assert_eq!(config.options.workers, 4);
        assert_eq!(config.options.touch_reload.len(), 2);
        assert_eq!(config.options.hooks, [("asap".into(), "print:hi".into())]);
        assert_eq!(config.origins("touch-reload"), [at(&file, 4), at(&file, 4)]);

        let file = TempFile::new("n.yml", "command: /bin/app\npidfile: ~\n");
        assert_eq!(
            file.load().unwrap_err().to_string(),
            format!("{}:2: pidfile: the value is empty", file.path.display())
        );

        let file = TempFile::new("b.yml", "command: /bin/app\nworkers: [1, 2]\n");
        assert_eq!(
            file.load().unwrap_err().to_string(),
            format!(
                "{}:2: option \"workers\" takes one value, not a list",
                file.path.display()
            )
        );

        let file = TempFile::new("c.yml", "command: /bin/app\n  workers: 2\n");
        let error = file.load().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:2: ", file.path.display())),
            "{error}"
        );
    }

    #[test]
    fn json_values_and_lines() {
        let file = TempFile::new(
            "a.json",
            "{\n  \"command\": [\"/bin/app\"],\n  \"workers\": 2,\n  \"ready\": \"notify\",\n  \"no-swap\": true\n}\n",
        );
        let config = file.load().unwrap();
        assert_eq!(config.options.workers, 2);
        assert!(config.options.no_swap);
        assert_eq!(config.origins("ready"), [at(&file, 4)]);

        let file = TempFile::new(
            "b.json",
            "{\"command\": \"/bin/app\",\n \"ready\": \"notify\",\n \"workers\": 0}",
        );
        assert_eq!(
            file.load().unwrap_err().to_string(),
            format!(
                "{}:3: workers: workers must be at least 1",
                file.path.display()
            )
        );

        let file = TempFile::new("c.json", "{\n\"workers\": 2,\n}\n");
        let error = file.load().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("{}:3: ", file.path.display())),
            "{error}"
        );
    }

    #[test]
    fn unknown_extensions_are_refused() {
        let file = TempFile::new("a.conf", "workers = 2\n");
        assert!(matches!(file.load(), Err(ConfigError::Format { .. })));
    }
}
