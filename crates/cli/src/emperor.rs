//! `steward emperor DIR`, `steward --emperor DIR` (uWSGI's spelling) and `emperor = DIR`
//! in a configuration file: one vassal (a steward master) per configuration file of DIR.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use steward_hooks::{Callbacks, Hooks};
use steward_options::{Config, ConfigSources, Origin, Setting};

/// `steward emperor DIR [--config FILE] [--emperor-throttle MS] [--control-socket PATH]`.
#[derive(Debug, clap::Args)]
pub struct EmperorArgs {
    /// The directory of vassal configurations (*.toml, *.ini, *.yaml, *.yml, *.json),
    /// watched for files added, changed, touched and removed.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The emperor's own configuration: its hooks (emperor-start,
    /// as-emperor-before-vassal, as-emperor), emperor-throttle, control-socket.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The wait before a vassal that died unasked starts again, doubled at each death
    /// in a row (up to a minute); a bare number is milliseconds. Default 1s.
    #[arg(long, value_name = "MS")]
    emperor_throttle: Option<String>,
    /// The control socket `steward status` asks; default
    /// `$RUNTIME_DIRECTORY/control.sock`, as in a systemd unit with `RuntimeDirectory=`.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<String>,
}

/// `steward emperor DIR ...`: the flags are the options of the same names.
pub fn emperor(args: EmperorArgs) -> anyhow::Result<ExitCode> {
    let flag =
        |name: &str, value: &str| Setting::one(name, value, Origin::Cli(format!("--{name}")));
    let mut settings = vec![flag("emperor", &args.dir.to_string_lossy())];
    settings.extend(args.emperor_throttle.map(|v| flag("emperor-throttle", &v)));
    settings.extend(args.control_socket.map(|v| flag("control-socket", &v)));
    let sources = ConfigSources::from_process(args.config, settings);
    let config = sources
        .load_without_command()
        .context("cannot read the emperor's configuration")?;
    run(&config)
}

/// The configuration when it asks for an emperor (`emperor = DIR`, `--emperor DIR`,
/// STEWARD_EMPEROR), read as the master would but without needing a worker command.
pub fn requested(sources: &ConfigSources) -> Option<Config> {
    sources
        .load_without_command()
        .ok()
        .filter(|config| config.options.emperor.is_some())
}

/// Runs the emperor of `config` until SIGTERM, SIGINT or SIGQUIT and every vassal is
/// gone.
pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let options = &config.options;
    let dir = options.emperor.as_ref().context("no emperor directory")?;
    let hooks =
        Hooks::new(options, Callbacks::new()).map_err(|e| anyhow::anyhow!(e.located(config)))?;
    let settings = steward_emperor::Settings {
        dir: std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?,
        steward: std::env::current_exe().context("cannot find the steward binary")?,
        throttle: options.emperor_throttle,
        control: steward_master::control_socket_path(
            options.control_socket.as_deref(),
            std::env::var_os("RUNTIME_DIRECTORY").as_deref(),
        ),
        hooks,
        tyrant: options.emperor_tyrant.then_some(steward_emperor::Tyrant {
            nofollow: options.emperor_tyrant_nofollow,
        }),
        inherit: absolute(&options.vassals_inherit)?,
        include: absolute(&options.vassals_include)?,
    };
    crate::init_logging(true);
    for warning in &config.warnings {
        tracing::warn!(event = steward_master::events::CONFIG_WARNING, "{warning}");
    }
    steward_emperor::Emperor::new(settings)?.run()?;
    Ok(ExitCode::SUCCESS)
}

/// Template paths as the vassals must read them: from anywhere, whatever their working
/// directory (a vassal may chdir before a reload reads them again).
fn absolute(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<std::path::PathBuf>> {
    paths
        .iter()
        .map(|p| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display())))
        .collect()
}
