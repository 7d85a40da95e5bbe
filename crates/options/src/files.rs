//! Config files: TOML, YAML, JSON and uWSGI-style ini, each read into settings that
//! carry their file:line.

use std::path::Path;

use crate::{ConfigError, Setting, Warning};

/// What a file says: its settings in order, and what it says that steward ignores.
#[derive(Debug, Default)]
pub(crate) struct FileSettings {
    pub(crate) settings: Vec<Setting>,
    pub(crate) warnings: Vec<Warning>,
}

/// Reads the config file, in the format its extension names.
pub(crate) fn read(path: &Path) -> Result<FileSettings, ConfigError> {
    let _text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    Err(ConfigError::Format {
        path: path.to_owned(),
    })
}
