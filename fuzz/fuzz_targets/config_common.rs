//! Shared by the config file targets: the bytes become a file with the format's
//! extension, read through the one public entry point, `ConfigSources::load`, exactly
//! as `steward --config` and a reload read it.

use std::path::PathBuf;

use steward_options::{ConfigSources, Origin, RawValue, Setting};

/// Loads `data` as a config file named `*.{extension}`: never a panic, and every error
/// says something.
pub fn load(extension: &str, data: &[u8]) {
    // In memory when there is a tmpfs: a disk write per input would be most of the time.
    let dir = ["/dev/shm", "/run"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("steward-fuzz-{}.{extension}", std::process::id()));
    std::fs::write(&path, data).expect("write the fuzz input");
    // A command from the command line, as a user would give it, lets inputs get past
    // validation to the layering and the description of every option.
    let sources = ConfigSources {
        file: Some(path.clone()),
        env: Vec::new(),
        cli: vec![Setting {
            key: "command".into(),
            value: RawValue::Many(vec!["/bin/true".into()]),
            origin: Origin::Cli("the command line (after --)".into()),
        }],
    };
    let loaded = sources.load();
    let _ = std::fs::remove_file(&path);
    match loaded {
        Ok(config) => {
            assert!(!config.describe().is_empty());
            config.options.validate().expect("a loaded config is valid");
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}
