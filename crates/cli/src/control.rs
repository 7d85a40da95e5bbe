//! `steward reload`, `stop` and `status`: clients of a running master's control socket.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{bail, Context};
use clap::Args;
use steward_master::{control_socket_path, ControlRequest};

/// How a client finds the master.
#[derive(Debug, Args)]
pub struct Target {
    /// The master's control socket; default `$RUNTIME_DIRECTORY/control.sock`, as in a
    /// systemd unit with `RuntimeDirectory=`.
    #[arg(long, value_name = "PATH", env = "STEWARD_CONTROL_SOCKET")]
    control_socket: Option<PathBuf>,
}

/// `steward reload`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// Return only when the reload has finished: exit 0 when the new generation serves,
    /// 1 when it failed and the old one still serves (what `ExecReload=` needs).
    #[arg(long)]
    wait: bool,
    /// Replace one worker at a time (a chain reload) instead of a whole generation.
    #[arg(long)]
    chain: bool,
    #[command(flatten)]
    target: Target,
}

/// `steward stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Return only when the master has exited.
    #[arg(long)]
    wait: bool,
    /// Kill the workers instead of letting them drain.
    #[arg(long)]
    brutal: bool,
    #[command(flatten)]
    target: Target,
}

/// `steward status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

/// A connection to the master with the request sent.
struct Session {
    lines: std::io::Lines<BufReader<UnixStream>>,
}

impl Session {
    fn open(target: &Target, request: ControlRequest) -> anyhow::Result<Session> {
        let runtime_directory = std::env::var_os("RUNTIME_DIRECTORY");
        let Some(path) = control_socket_path(
            target.control_socket.as_deref(),
            runtime_directory.as_deref(),
        ) else {
            bail!("no control socket: give --control-socket PATH or set STEWARD_CONTROL_SOCKET (RUNTIME_DIRECTORY is not set either)");
        };
        let mut stream = UnixStream::connect(&path).with_context(|| {
            format!(
                "cannot reach the master at {}; is it running?",
                path.display()
            )
        })?;
        writeln!(stream, "{request}")
            .with_context(|| format!("cannot send to {}", path.display()))?;
        Ok(Session {
            lines: BufReader::new(stream).lines(),
        })
    }

    /// The next answer line; `None` once the master closed the connection.
    fn next(&mut self) -> anyhow::Result<Option<String>> {
        let line = self
            .lines
            .next()
            .transpose()
            .context("reading the master's answer")?;
        match line {
            Some(line) if line.starts_with("error ") => {
                bail!("the master refused: {}", &line["error ".len()..])
            }
            other => Ok(other),
        }
    }

    fn expect(&mut self, what: &str) -> anyhow::Result<String> {
        self.next()?
            .with_context(|| format!("the master closed the connection before {what}"))
    }
}

pub fn reload(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let mut session = Session::open(&args.target, ControlRequest::Reload { chain: args.chain })?;
    let accepted = session.expect("accepting the reload")?;
    if let Some(reason) = accepted.strip_prefix("failed") {
        crate::output::err_line(format!("steward: reload refused{reason}"));
        return Ok(ExitCode::FAILURE);
    }
    crate::output::line(&accepted);
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = session.expect("the reload finished")?;
    if outcome.starts_with("ok") {
        crate::output::line(&outcome);
        Ok(ExitCode::SUCCESS)
    } else {
        crate::output::err_line(format!("steward: reload {outcome}"));
        Ok(ExitCode::FAILURE)
    }
}

pub fn stop(args: StopArgs) -> anyhow::Result<ExitCode> {
    let mut session = Session::open(
        &args.target,
        ControlRequest::Stop {
            brutal: args.brutal,
        },
    )?;
    crate::output::line(session.expect("accepting the stop")?);
    if args.wait {
        // The master holds the connection until it exits.
        while session.next()?.is_some() {}
        crate::output::line("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut session = Session::open(&args.target, ControlRequest::Status { json: args.json })?;
    while let Some(line) = session.next()? {
        crate::output::line(&line);
    }
    Ok(ExitCode::SUCCESS)
}
