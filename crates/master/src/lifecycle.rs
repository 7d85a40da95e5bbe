//! The master's lifecycle as the library shows it, and the signals that move it.

/// Where the master is in its life. Signals move it along:
///
/// | signal | effect |
/// |---|---|
/// | SIGHUP | graceful reload: a new generation starts; once every new worker is ready, the old generation is asked to stop |
/// | SIGUSR2 | chain reload: the same, one worker at a time (new worker N ready, old worker N asked to stop, then N+1) |
/// | SIGTERM | graceful shutdown: every worker is asked to stop (worker stop signal, SIGKILL after the mercy); exit 0 once all are gone |
/// | SIGINT, SIGQUIT | brutal shutdown: every worker's process group gets SIGKILL; exit 0 once all are reaped |
/// | SIGUSR1 | a status report in the log: one line per worker |
/// | SIGTTIN / SIGTTOU | one worker more / one fewer (never fewer than one) |
/// | SIGCHLD | reap; a worker that exits unasked is started again (same id and generation), after a backoff if it keeps crashing |
///
/// A reload or a resize in [`Lifecycle::Starting`] or [`Lifecycle::Running`] is carried
/// out in that phase; in [`Lifecycle::Stopping`] only a brutal shutdown still acts.
///
/// A reload that re-execs the master (a replaced binary, or preload mode) first runs
/// the new binary's checks, and stays [`Lifecycle::Running`] while they run: the loop
/// goes on respawning, answering (`steward status` says the check is under way),
/// sending WATCHDOG=1; a further reload is folded into the pending one; a shutdown
/// kills the check. Once the check passes the master re-execs; once it fails (or
/// times out) the reload goes on with the running binary.
///
/// Inside, the supervisor keeps a finer phase (starting, serving, reloading, checking
/// an upgrade, stopping): see ARCHITECTURE.md for its state diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The first generation is starting. A worker that exits before it is ready ends
    /// the master with an error: there is nothing to keep serving.
    Starting,
    /// A generation is serving (READY=1 has been sent to systemd). Reloads, respawns and
    /// resizes happen here.
    Running,
    /// Shutting down: no worker is started again; the master exits once all are gone.
    Stopping {
        /// Workers drain (stop signal, then SIGKILL after the mercy) rather than being killed.
        graceful: bool,
    },
}

/// How the log and `steward status` say it.
impl std::fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lifecycle::Starting => "starting",
            Lifecycle::Running => "running",
            Lifecycle::Stopping { graceful: true } => "stopping",
            Lifecycle::Stopping { graceful: false } => "stopping brutally",
        })
    }
}
