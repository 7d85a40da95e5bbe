//! What `steward status` shows: the master's state, its reloads and every worker.

use std::{fmt::Write as _, time::Duration};

use crate::{supervisor::Worker, Lifecycle};

/// Why a worker is to be replaced, for the text status: "; replaced (rss ...)".
fn recycle_text(worker: &Worker) -> String {
    match &worker.recycle {
        Some(r) if r.begun => format!("; its replacement starts ({})", r.reason),
        Some(r) => format!("; to be replaced ({})", r.reason),
        None => String::new(),
    }
}

/// How the last reload ended.
#[derive(Debug, Clone)]
pub(crate) struct ReloadOutcome {
    pub generation: u64,
    /// How long it took, or why it failed.
    pub result: Result<Duration, String>,
}

/// A snapshot of the master for one status answer.
pub(crate) struct StatusReport<'a> {
    pub lifecycle: Lifecycle,
    pub current: u64,
    pub serving: Option<u64>,
    pub desired: usize,
    /// A shutdown waits out `shutdown-delay`: how long is left of it.
    pub shutdown_in: Option<Duration>,
    /// The reload under way: its generation and how long it has run.
    pub reloading: Option<(u64, Duration)>,
    pub last_reload: Option<&'a ReloadOutcome>,
    /// A reload waiting for the new binary's check: how long it has run.
    pub checking: Option<Duration>,
    /// Sorted by id, then generation.
    pub workers: Vec<&'a Worker>,
    /// For each of `workers` that starts: what it waits for to count as ready.
    pub waiting_for: Vec<Option<String>>,
    /// Ready workers of the serving generation.
    pub serving_workers: usize,
    /// Slots in a crash loop: id, crashes in a row, last exit, time to the next start.
    pub respawning: Vec<(usize, u32, String, Duration)>,
    /// With `cheaper`: the bounds, and the connections waiting in the TCP sockets'
    /// queues (None when none can be read).
    pub cheaper: Option<((usize, usize), Option<u32>)>,
}

impl StatusReport<'_> {
    /// With `cheaper`: its bounds, and the queue it follows.
    fn cheaper_line(&self, text: &mut String) {
        let Some(((fewest, most), queued)) = self.cheaper else {
            return;
        };
        let queue = queued.map_or("no TCP queue to read".to_owned(), |q| {
            format!("{q} connections waiting")
        });
        let _ = write!(
            text,
            "\ncheaper: between {fewest} and {most} workers, following the listen queue ({queue})"
        );
    }
}

/// How `steward status` calls the master's lifecycle.
pub(crate) fn lifecycle_name(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Starting => "starting",
        Lifecycle::Running => "running",
        Lifecycle::Stopping { graceful: true } => "stopping",
        Lifecycle::Stopping { graceful: false } => "stopping brutally",
    }
}

impl StatusReport<'_> {
    /// Lines for a human.
    pub fn text(&self) -> String {
        let mut text = format!(
            "master pid {} {}, generation {}, serving {}, {} workers wanted",
            std::process::id(),
            self.lifecycle,
            self.current,
            self.serving.map_or("none".into(), |g| g.to_string()),
            self.desired
        );
        self.cheaper_line(&mut text);
        if self.serving.is_some() && self.serving_workers == 0 {
            text.push_str("\nnot serving: no worker is ready; connections wait in the backlog");
        }
        for (id, crashes, exit, next) in &self.respawning {
            let _ = write!(
                text,
                "\nworker {id} crashed {crashes} times in a row (last: {exit}), started again in {} ms",
                next.as_millis()
            );
        }
        if let Some(left) = self.shutdown_in {
            let _ = write!(
                text,
                "\nnot ready: shutting down in {} ms (shutdown-delay), still serving",
                left.as_millis()
            );
        }
        if let Some((generation, elapsed)) = self.reloading {
            let _ = write!(
                text,
                "\nreloading to generation {generation} for {} ms",
                elapsed.as_millis()
            );
        }
        if let Some(elapsed) = self.checking {
            let _ = write!(
                text,
                "\nreload in progress: checking the new binary for {} ms",
                elapsed.as_millis()
            );
        }
        if let Some(last) = self.last_reload {
            let _ = match &last.result {
                Ok(took) => write!(
                    text,
                    "\nlast reload: generation {} ok in {} ms",
                    last.generation,
                    took.as_millis()
                ),
                Err(reason) => write!(
                    text,
                    "\nlast reload: generation {} failed: {reason}",
                    last.generation
                ),
            };
        }
        for (w, waiting) in self.workers.iter().zip(&self.waiting_for) {
            let _ = write!(
                text,
                "\nworker {} generation {} pid {} {} for {} ms{}{}{}",
                w.id,
                w.generation,
                w.pid,
                w.state.name(),
                w.started.elapsed().as_millis(),
                waiting
                    .as_deref()
                    .map_or(String::new(), |s| format!(", waiting for {s}")),
                w.status
                    .as_deref()
                    .map_or(String::new(), |s| format!(": {s}")),
                recycle_text(w)
            );
        }
        text
    }
}
