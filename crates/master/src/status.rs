//! What `steward status` shows: the master's state, its reloads and every worker.

use std::{fmt::Write as _, time::Duration};

use crate::{control::json_string, supervisor::Worker, Lifecycle};

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
    /// Whether a probe should send traffic here (a generation serves, no stop asked).
    pub ready: bool,
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

    /// One JSON object for a program.
    pub fn json(&self) -> String {
        let workers: Vec<String> = self
            .workers
            .iter()
            .zip(&self.waiting_for)
            .map(|(w, waiting)| {
                format!(
                    r#"{{"id":{},"generation":{},"pid":{},"state":"{}","age_ms":{},"waiting_for":{},"status":{},"recycle":{}}}"#,
                    w.id,
                    w.generation,
                    w.pid,
                    w.state.name(),
                    w.started.elapsed().as_millis(),
                    waiting.as_deref().map_or("null".into(), json_string),
                    w.status.as_deref().map_or("null".into(), json_string),
                    w.recycle.as_ref().map_or("null".into(), |r| format!(
                        r#"{{"reason":{},"replacement_started":{}}}"#,
                        json_string(&r.reason),
                        r.begun
                    ))
                )
            })
            .collect();
        let reloading = self
            .reloading
            .map_or("null".into(), |(generation, elapsed)| {
                format!(
                    r#"{{"generation":{generation},"elapsed_ms":{}}}"#,
                    elapsed.as_millis()
                )
            });
        let last_reload = self
            .last_reload
            .map_or("null".into(), |last| match &last.result {
                Ok(took) => format!(
                    r#"{{"generation":{},"ok":true,"elapsed_ms":{}}}"#,
                    last.generation,
                    took.as_millis()
                ),
                Err(reason) => format!(
                    r#"{{"generation":{},"ok":false,"error":{}}}"#,
                    last.generation,
                    json_string(reason)
                ),
            });
        let respawning: Vec<String> = self
            .respawning
            .iter()
            .map(|(id, crashes, exit, next)| {
                format!(
                    r#"{{"id":{id},"crashes_in_a_row":{crashes},"last_exit":{},"starts_in_ms":{}}}"#,
                    json_string(exit),
                    next.as_millis()
                )
            })
            .collect();
        let checking = self.checking.map_or("null".into(), |elapsed| {
            format!(r#"{{"elapsed_ms":{}}}"#, elapsed.as_millis())
        });
        format!(
            r#"{{"pid":{},"state":"{}","ready":{},"shutdown_in_ms":{},"generation":{},"serving":{},"serving_workers":{},"workers_wanted":{},"reloading":{reloading},"checking_binary":{checking},"last_reload":{last_reload},"respawning":[{}],"workers":[{}]}}"#,
            std::process::id(),
            self.lifecycle,
            self.ready,
            self.shutdown_in
                .map_or("null".into(), |left| left.as_millis().to_string()),
            self.current,
            self.serving.map_or("null".into(), |g| g.to_string()),
            self.serving_workers,
            self.desired,
            respawning.join(","),
            workers.join(",")
        )
    }
}
