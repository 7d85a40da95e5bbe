//! Observability: the stats server (uWSGI's `stats`, with `stats-http` the JSON and
//! Prometheus over HTTP) and the status document that it, `steward status --json` and
//! `steward top` share.
//!
//! - schema.rs: the status document, versioned;
//! - uwsgi.rs, prometheus.rs: that document as uWSGI's stats JSON and as metrics;
//! - server.rs, http.rs: the socket and its connections, served from the loop;
//! - procfs.rs: what /proc says of the workers and the master, read only when asked;
//! - counters.rs: restarts and reloads, counted as they happen.
//!
//! The master's side (building the document, the loop's hooks) is master/stats.rs.

pub(crate) mod counters;
mod http;
pub(crate) mod procfs;
pub(crate) mod prometheus;
pub mod schema;
pub(crate) mod server;
pub(crate) mod uwsgi;

pub use schema::Status;

/// The master's stats: its server, when `stats` is set, and its counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub server: Option<server::StatsServer>,
    pub counters: counters::Counters,
}
