//! The `steward` command: runs a master over a worker command.

use std::{io::IsTerminal, process::ExitCode};

use anyhow::Context;

mod check;
mod control;
mod emperor;
mod generate;
mod output;
mod run_args;
mod top;
use clap::{CommandFactory, Parser, Subcommand};
use run_args::RunArgs;
use steward_master::Master;

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
    /// Validate the configuration (file, STEWARD_* environment and flags) and what a
    /// start needs from this machine, reporting every problem at once; `--print` shows
    /// every option with its value and where that came from.
    Check(check::CheckArgs),
    /// Ask a running master for a graceful (or chain) reload.
    Reload(control::ReloadArgs),
    /// Ask a running master to shut down.
    Stop(control::StopArgs),
    /// Run an emperor: one steward master (a vassal) per configuration file of a
    /// directory, started, reloaded and stopped as the files are added, changed and
    /// removed.
    Emperor(emperor::EmperorArgs),
    /// Show a running master's workers and its last reload.
    Status(control::StatusArgs),
    /// A live view of a running master: its workers (state, age, RSS, CPU, restarts),
    /// listen queues and last reload; keys reload, chain-reload, add or remove a worker.
    Top(top::TopArgs),
    /// Print the re-exec handover protocol this binary reads: a running master asks
    /// before it re-execs into a new binary.
    #[command(hide = true)]
    ReexecCheck,
    /// Write the man pages or a shell's completion script (for packagers).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut sources = args.sources();
    if let Some(config) = emperor::requested(&sources) {
        return emperor::run(&config).map(drop);
    }
    let config = sources.load()?;
    // `chdir` moves the master: a reload must still find the file it started with.
    if let Some(file) = &mut sources.file {
        *file = std::path::absolute(&*file)
            .with_context(|| format!("cannot resolve {}", file.display()))?;
    }
    // A daemon's stderr becomes its log file: no terminal colours in it.
    let detaches = config.options.daemonize.is_some() || config.options.daemonize2.is_some();
    init_logging(!detaches);
    // Vassals share their emperor's stderr: each line says whose it is. (The journal
    // gets VASSAL= instead.)
    let _vassal = std::env::var(steward_options::vars::VASSAL)
        .ok()
        .map(|name| tracing::info_span!("vassal", name = %name).entered());
    for warning in &config.warnings {
        tracing::warn!(event = steward_master::events::CONFIG_WARNING, "{warning}");
    }
    let located = check::HookOrigins::new(&config);
    let mut master = Master::new(config.options)
        .map_err(|e| located.locate(e))
        .context("cannot start")?;
    master.reread_config_on_reload(sources);
    master.run().map_err(|e| located.locate(e))?;
    Ok(())
}

/// Logs to the journal with structured fields when stderr is the journal (systemd
/// says so in JOURNAL_STREAM), else readable lines on stderr.
fn init_logging(colours_on_a_terminal: bool) {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};

    let filter = tracing_subscriber::EnvFilter::try_from_env(steward_options::vars::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let vassal = std::env::var(steward_options::vars::VASSAL).ok();
    let journal = steward_systemd::stderr_is_journal()
        .then(|| {
            steward_systemd::JournalLayer::connect(
                std::path::Path::new(steward_systemd::JOURNAL_SOCKET),
                "steward",
            )
            .ok()
        })
        .flatten()
        .map(|layer| match &vassal {
            Some(name) => layer.with_field("VASSAL", name),
            None => layer,
        });
    let _ = LOGS_TO_JOURNAL.set(journal.is_some());
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colours_on_a_terminal && std::io::stderr().is_terminal())
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
        Some(Command::Top(args)) => top::top(args),
        Some(Command::ReexecCheck) => {
            output::line(steward_master::reexec_check_answer());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Generate(args)) => generate::generate(args, Cli::command()),
        Some(Command::Check(args)) if steward_master::CheckReport::requested() => {
            Ok(check::report(&args.run))
        }
        Some(Command::Check(args)) => Ok(check::check(&args)),
        Some(Command::Run(args)) => run_master(args),
        Some(Command::Emperor(args)) => emperor::emperor(args),
        None => run_master(cli.run),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            output::err_line(format!("steward: error: {}", describe(&e)));
            ExitCode::FAILURE
        }
    }
}

/// A master's error is said once: as a structured record when it logs to the journal
/// (where stderr goes too), else on stderr by `main`.
fn run_master(args: RunArgs) -> anyhow::Result<ExitCode> {
    match run(args) {
        Err(e) if LOGS_TO_JOURNAL.get() == Some(&true) => {
            tracing::error!("{}", describe(&e));
            Ok(ExitCode::FAILURE)
        }
        outcome => outcome.map(|()| ExitCode::SUCCESS),
    }
}

/// Set once logging is set up: whether records go to the journal.
static LOGS_TO_JOURNAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// The error and its causes, joined by ": ", each said once: the libraries' messages
/// already end with the text of their cause, which the chain would repeat.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}
