//! `steward top`: a live view of a running master over its control socket, one line
//! per worker, with keys for the master's own operations (reload, chain reload, one
//! worker more or fewer). It reads the versioned status document
//! (`steward_master::stats::Status`) that `steward status --json` prints.

mod view;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use steward_master::{stats::Status, ControlRequest};

/// `steward top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// How often the view is refreshed.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    #[command(flatten)]
    target: crate::control::Target,
}

/// What the view shows: the last document, what the last key did, CPU use between the
/// last two documents.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub status: Option<Status>,
    /// Why the last refresh failed (the master gone, say).
    pub error: Option<String>,
    /// The answer to the last key.
    pub message: Option<String>,
    /// Per worker pid: CPU percent over the last interval.
    pub cpu_percent: HashMap<i32, f64>,
    /// Per pid: CPU seconds and when they were read.
    last_cpu: HashMap<i32, (f64, Instant)>,
}

impl Model {
    fn update(&mut self, status: anyhow::Result<Status>) {
        let status = match status {
            Ok(status) => status,
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        };
        let now = Instant::now();
        let mut seen = HashMap::new();
        for w in &status.workers {
            if let Some((before, at)) = self.last_cpu.get(&w.pid) {
                let elapsed = now.duration_since(*at).as_secs_f64();
                if elapsed > 0.0 {
                    let percent = (w.process.cpu_seconds - before) / elapsed * 100.0;
                    self.cpu_percent.insert(w.pid, percent.max(0.0));
                }
            }
            seen.insert(w.pid, (w.process.cpu_seconds, now));
        }
        self.cpu_percent.retain(|pid, _| seen.contains_key(pid));
        self.last_cpu = seen;
        self.error = None;
        self.status = Some(status);
    }
}

pub fn top(args: TopArgs) -> anyhow::Result<ExitCode> {
    let socket = args.target.socket()?;
    // Fail before taking the terminal when there is no master to watch.
    let first = fetch(&socket).context("steward top")?;
    let interval = Duration::from_secs_f64(args.interval.clamp(0.1, 3600.0));
    let mut terminal = ratatui::try_init().context("cannot use the terminal")?;
    let mut model = Model::default();
    model.update(Ok(first));
    let outcome = run(&mut terminal, &socket, interval, &mut model);
    ratatui::restore();
    outcome.map(|()| ExitCode::SUCCESS)
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    socket: &PathBuf,
    interval: Duration,
    model: &mut Model,
) -> anyhow::Result<()> {
    let mut next_refresh = Instant::now() + interval;
    loop {
        terminal.draw(|frame| view::draw(frame, model))?;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            let Event::Key(key) = event::read()? else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            let request = match key.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                    return Ok(())
                }
                KeyCode::Char('r') => ControlRequest::Reload { chain: false },
                KeyCode::Char('c') => ControlRequest::Reload { chain: true },
                KeyCode::Char('+') => ControlRequest::Resize { more: true },
                KeyCode::Char('-') => ControlRequest::Resize { more: false },
                _ => continue,
            };
            model.message = Some(match ask(socket, request) {
                Ok(answer) => format!("{request}: {answer}"),
                Err(e) => format!("{request}: {e:#}"),
            });
            // What the key did shows at once.
            next_refresh = Instant::now();
            continue;
        }
        model.update(fetch(socket));
        next_refresh = Instant::now() + interval;
    }
}

/// One request; the master's first answer line.
fn ask(socket: &PathBuf, request: ControlRequest) -> anyhow::Result<String> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the master at {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "{request}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        bail!("the master closed the connection");
    }
    Ok(line.trim_end().to_owned())
}

fn fetch(socket: &PathBuf) -> anyhow::Result<Status> {
    let answer = ask(socket, ControlRequest::Status { json: true })?;
    let status: Status = serde_json::from_str(&answer).context("reading the master's status")?;
    Ok(status)
}
