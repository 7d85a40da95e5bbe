//! `steward reload`, `stop` and `status`: clients of a running master's control socket.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
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
    /// Act on one vassal of the emperor at the control socket: NAME is its file name
    /// in the vassal directory, as `steward status` lists it.
    #[arg(long, value_name = "NAME")]
    vassal: Option<String>,
}

impl Target {
    /// The control socket given, or the default one.
    fn given_socket(&self) -> anyhow::Result<PathBuf> {
        let runtime_directory = std::env::var_os("RUNTIME_DIRECTORY");
        control_socket_path(self.control_socket.as_deref(), runtime_directory.as_deref())
            .context("no control socket: give --control-socket PATH or set STEWARD_CONTROL_SOCKET (RUNTIME_DIRECTORY is not set either)")
    }

    /// The control socket of the master to talk to: the one given, or with `--vassal`
    /// that vassal's master's, which its emperor at the given socket knows.
    pub fn socket(&self) -> anyhow::Result<PathBuf> {
        let given = self.given_socket()?;
        let Some(name) = &self.vassal else {
            return Ok(given);
        };
        let answer = ask_line(&given, &format!("vassal-socket {name}"), None)?;
        match answer.strip_prefix("socket ") {
            Some(path) => Ok(PathBuf::from(path)),
            None => bail!(
                "the emperor at {} gave no socket: {answer}",
                given.display()
            ),
        }
    }
}

/// Sends `line` to the control socket at `path` and returns the first answer line.
fn ask_line(path: &Path, line: &str, timeout: Option<Duration>) -> anyhow::Result<String> {
    let mut session = Session::connect(path, line, timeout)?;
    session.expect("answering")
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
    #[arg(long, conflicts_with_all = ["ready", "alive"])]
    json: bool,
    /// A readiness probe: exit 0 when a generation serves and no stop was asked for
    /// (`shutdown-delay` reports not ready at once), else 1.
    #[arg(long, conflicts_with = "alive")]
    ready: bool,
    /// A liveness probe: exit 0 when the master's loop answers, else 1.
    #[arg(long)]
    alive: bool,
    /// How long a probe waits for the answer before it fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    probe_timeout: u64,
    #[command(flatten)]
    target: Target,
}

/// A connection to the master with the request sent.
struct Session {
    lines: std::io::Lines<BufReader<UnixStream>>,
}

impl Session {
    fn open(target: &Target, request: ControlRequest) -> anyhow::Result<Session> {
        Session::open_for(target, request, None)
    }

    /// Opens a session whose reads and writes fail after `timeout`, when given.
    fn open_for(
        target: &Target,
        request: ControlRequest,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Session> {
        Session::connect(&target.socket()?, &request.to_string(), timeout)
    }

    fn connect(path: &Path, line: &str, timeout: Option<Duration>) -> anyhow::Result<Session> {
        let mut stream = UnixStream::connect(path).with_context(|| {
            format!(
                "cannot reach the master at {}; is it running?",
                path.display()
            )
        })?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        writeln!(stream, "{line}").with_context(|| format!("cannot send to {}", path.display()))?;
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
    let mut session = match &args.target.vassal {
        // The emperor stops it: stopped by its own master, it would be restarted.
        Some(name) => {
            let verb = if args.brutal {
                "vassal-kill"
            } else {
                "vassal-stop"
            };
            let emperor = args.target.given_socket()?;
            Session::connect(&emperor, &format!("{verb} {name}"), None)?
        }
        None => Session::open(
            &args.target,
            ControlRequest::Stop {
                brutal: args.brutal,
            },
        )?,
    };
    crate::output::line(session.expect("accepting the stop")?);
    if args.wait {
        // The master holds the connection until it exits.
        while session.next()?.is_some() {}
        crate::output::line("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.ready || args.alive {
        return probe(&args);
    }
    let mut session = Session::open(&args.target, ControlRequest::Status { json: args.json })?;
    while let Some(line) = session.next()? {
        crate::output::line(&line);
    }
    Ok(ExitCode::SUCCESS)
}

/// `status --ready` / `--alive`: one line saying what was found, and the exit code a
/// probe (Kubernetes exec probe, podman healthcheck) reads. Every failure, an
/// unreachable master included, is exit 1 with the reason.
fn probe(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let what = if args.ready { "ready" } else { "alive" };
    let timeout = Duration::from_secs(args.probe_timeout.max(1));
    let answer = Session::open_for(
        &args.target,
        ControlRequest::Status { json: true },
        Some(timeout),
    )
    .and_then(|mut session| session.expect("the status"));
    let verdict = answer.and_then(|line| {
        let status: serde_json::Value =
            serde_json::from_str(&line).context("the master's status is not JSON")?;
        let state = status["state"].as_str().unwrap_or("unknown").to_owned();
        match status["ready"].as_bool() {
            Some(true) => Ok(Ok(state)),
            _ if !args.ready => Ok(Ok(state)),
            _ => Ok(Err(match status["shutdown_in_ms"].as_u64() {
                Some(ms) => format!("shutting down in {ms} ms"),
                None => state,
            })),
        }
    });
    match verdict {
        Ok(Ok(state)) => {
            println!("{what}: {state}");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(why)) => {
            println!("not {what}: {why}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) if timed_out(&e) => {
            println!("not {what}: no answer within {} s", timeout.as_secs());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("not {what}: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Whether `error` is a read or write that ran out of the probe's time.
fn timed_out(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )
        })
    })
}
