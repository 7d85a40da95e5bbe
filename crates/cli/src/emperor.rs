//! `steward emperor DIR`: one vassal (a steward master) per configuration file of DIR.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use steward_hooks::{Callbacks, Hooks};
use steward_options::ConfigSources;

/// `steward emperor DIR [--config FILE] [--emperor-throttle MS]`.
#[derive(Debug, clap::Args)]
pub struct EmperorArgs {
    /// The directory of vassal configurations (*.toml, *.ini, *.yaml, *.yml, *.json),
    /// watched for files added, changed, touched and removed.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The emperor's own configuration: its hooks (emperor-start,
    /// as-emperor-before-vassal, as-emperor).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Milliseconds before a vassal that died unasked starts again, doubled at each
    /// death in a row (up to a minute).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    emperor_throttle: u64,
    /// The control socket `steward status` asks; default
    /// `$RUNTIME_DIRECTORY/control.sock`, as in a systemd unit with `RuntimeDirectory=`.
    #[arg(long, value_name = "PATH", env = "STEWARD_CONTROL_SOCKET")]
    control_socket: Option<PathBuf>,
}

/// Runs the emperor until SIGTERM, SIGINT or SIGQUIT and every vassal is gone.
pub fn emperor(args: EmperorArgs) -> anyhow::Result<ExitCode> {
    let sources = ConfigSources::from_process(args.config.clone(), Vec::new());
    let config = sources
        .load_without_command()
        .context("cannot read the emperor's configuration")?;
    let hooks = Hooks::new(&config.options, Callbacks::new())
        .map_err(|e| anyhow::anyhow!(e.located(&config)))?;
    let settings = steward_emperor::Settings {
        dir: std::path::absolute(&args.dir)
            .with_context(|| format!("cannot resolve {}", args.dir.display()))?,
        steward: std::env::current_exe().context("cannot find the steward binary")?,
        throttle: Duration::from_millis(args.emperor_throttle),
        control: steward_master::control_socket_path(
            args.control_socket.as_deref(),
            std::env::var_os("RUNTIME_DIRECTORY").as_deref(),
        ),
        hooks,
    };
    crate::init_logging(true);
    steward_emperor::Emperor::new(settings)?.run()?;
    Ok(ExitCode::SUCCESS)
}
