//! The `steward` command: runs a master over a worker command.

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::Context;

mod control;
use clap::{Args, Parser, Subcommand};
use steward_master::Master;
use steward_options::{parse_duration, ListenSpec, Options, ReadyMode, StopSignal};

/// A uWSGI-style master for any server program, native to systemd.
///
/// steward binds the listening sockets, forks the workers that serve on them (each
/// receives the sockets as fd 3.. with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES, as
/// from systemd), starts them again when they crash, and reloads or stops them on
/// signals: SIGHUP graceful reload, SIGUSR2 chain reload, SIGTERM graceful shutdown,
/// SIGINT/SIGQUIT brutal shutdown, SIGUSR1 status report, SIGTTIN/SIGTTOU one worker
/// more/fewer.
#[derive(Debug, Parser)]
#[command(name = "steward", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    subcommand: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the master (the default when no subcommand is given).
    Run(RunArgs),
    /// Ask a running master for a graceful (or chain) reload.
    Reload(control::ReloadArgs),
    /// Ask a running master to shut down.
    Stop(control::StopArgs),
    /// Show a running master's workers and its last reload.
    Status(control::StatusArgs),
    /// Print the re-exec handover protocol this binary reads: a running master asks
    /// before it re-execs into a new binary.
    #[command(hide = true)]
    ReexecCheck,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A socket to bind: HOST:PORT, [V6]:PORT or unix:PATH, optionally NAME=ADDR (the
    /// name the workers see in LISTEN_FDNAMES). Repeatable; workers get them as fd 3, 4, ...
    #[arg(short, long = "listen", value_name = "[NAME=]ADDR", value_parser = parse_listen)]
    listen: Vec<ListenSpec>,

    /// How many workers to run.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    workers: usize,

    /// When a new worker counts as ready: notify (READY=1 on NOTIFY_SOCKET), auto[:MS]
    /// (READY=1 or MS alive, default 1000), delay:MS (MS alive) or immediate.
    #[arg(long, value_name = "MODE", default_value = "auto:1000", value_parser = parse_ready)]
    ready: ReadyMode,

    /// The signal that asks a worker to stop gracefully.
    #[arg(long, value_name = "SIGNAL", default_value = "SIGTERM", value_parser = parse_signal)]
    worker_stop_signal: StopSignal,

    /// How long a stopping worker may drain before it is killed: seconds, or with ms/s/m/h.
    #[arg(long, value_name = "DURATION", default_value = "30", value_parser = parse_duration_arg)]
    worker_reload_mercy: Duration,

    /// The first delay before a crashing worker is started again; it doubles per crash in a row.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration_arg)]
    respawn_backoff: Duration,

    /// The longest delay between two starts of a worker that keeps crashing.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_arg)]
    respawn_backoff_max: Duration,

    /// The listen(2) backlog of the sockets steward binds.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    listen_backlog: i32,

    /// The control socket for `steward reload/stop/status`; default
    /// `$RUNTIME_DIRECTORY/control.sock` under systemd, else none.
    #[arg(long, value_name = "PATH", env = "STEWARD_CONTROL_SOCKET")]
    control_socket: Option<std::path::PathBuf>,

    /// A uWSGI-style master FIFO (`echo r > FIFO` reloads); repeatable.
    #[arg(long, value_name = "PATH")]
    master_fifo: Vec<std::path::PathBuf>,

    /// Remove the control socket and FIFOs at exit.
    #[arg(long)]
    vacuum: bool,

    /// The worker command and its arguments, after `--`.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

fn parse_listen(value: &str) -> Result<ListenSpec, String> {
    value
        .parse()
        .map_err(|e: steward_options::OptionError| e.to_string())
}

fn parse_ready(value: &str) -> Result<ReadyMode, String> {
    value
        .parse()
        .map_err(|e: steward_options::OptionError| e.to_string())
}

fn parse_signal(value: &str) -> Result<StopSignal, String> {
    value
        .parse()
        .map_err(|e: steward_options::OptionError| e.to_string())
}

fn parse_duration_arg(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|e| e.to_string())
}

impl RunArgs {
    fn into_options(self) -> Options {
        let mut options = Options::new(self.command);
        options.listen = self.listen;
        options.workers = self.workers;
        options.ready = self.ready;
        options.worker_stop_signal = self.worker_stop_signal;
        options.worker_reload_mercy = self.worker_reload_mercy;
        options.respawn_backoff = self.respawn_backoff;
        options.respawn_backoff_max = self.respawn_backoff_max;
        options.listen_backlog = self.listen_backlog;
        options.control_socket = self.control_socket;
        options.master_fifo = self.master_fifo;
        options.vacuum = self.vacuum;
        options
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let options = args.into_options();
    let master = Master::new(options).context("cannot start")?;
    master.run()?;
    Ok(())
}

/// Logs to the journal with structured fields when stderr is the journal (systemd
/// says so in JOURNAL_STREAM), else readable lines on stderr.
fn init_logging() {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = steward_systemd::stderr_is_journal()
        .then(|| {
            steward_systemd::JournalLayer::connect(
                std::path::Path::new(steward_systemd::JOURNAL_SOCKET),
                "steward",
            )
            .ok()
        })
        .flatten();
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(journal.map(|j| j.with_filter(filter.clone())))
        .with(stderr.map(|s| s.with_filter(filter)))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.subcommand {
        Some(Command::Reload(args)) => control::reload(args),
        Some(Command::Stop(args)) => control::stop(args),
        Some(Command::Status(args)) => control::status(args),
        Some(Command::ReexecCheck) => {
            println!("{}", steward_master::REEXEC_PROTOCOL);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Run(args)) => run_master(args),
        None => run_master(cli.run),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("steward: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_master(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    run(args).inspect_err(|e| tracing::error!("{e:#}"))?;
    Ok(ExitCode::SUCCESS)
}
