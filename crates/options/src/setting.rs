//! Options as a source wrote them (`key = value`, and where). The readers of each
//! source (TOML, YAML, JSON, ini) and the layering of sources all speak in these
//! types: they live here so that those modules depend on this one, not on each other.

use std::{fmt, path::PathBuf};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nobody set it.
    Default,
    /// A line of a config file.
    File {
        /// The file as given.
        path: PathBuf,
        /// The 1-based line of the value.
        line: usize,
    },
    /// A `STEWARD_*` variable.
    Env(String),
    /// A command-line flag (`--workers`), or the command after `--`.
    Cli(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env(var) => f.write_str(var),
            Origin::Cli(flag) => f.write_str(flag),
        }
    }
}

/// A value as a source wrote it, before the table reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    /// One value: a string, or a number or boolean written as text.
    One(String),
    /// Several: a TOML, YAML or JSON list.
    Many(Vec<String>),
}

/// One `key = value` of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The option name as written (an alias is allowed).
    pub key: String,
    /// The value.
    pub value: RawValue,
    /// Where it was written.
    pub origin: Origin,
}

impl Setting {
    /// A setting with one value.
    pub fn one(key: impl Into<String>, value: impl Into<String>, origin: Origin) -> Setting {
        Setting {
            key: key.into(),
            value: RawValue::One(value.into()),
            origin,
        }
    }
}

/// Something a source said that steward does not act on, but that a user should know:
/// an unsupported uWSGI option, a uWSGI name read with steward's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where it was written.
    pub origin: Origin,
    /// What steward does about it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// What a file says: its settings in order, and what it says that steward ignores.
#[derive(Debug, Default)]
pub(crate) struct FileSettings {
    pub(crate) settings: Vec<Setting>,
    pub(crate) warnings: Vec<Warning>,
}
