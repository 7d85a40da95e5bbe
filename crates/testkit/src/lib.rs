//! The harness of steward's own tests: the one place that knows how to start the real
//! binaries (steward, the demo worker, the preload examples), read their log as it comes,
//! wait on the master's structured events, talk HTTP and the systemd protocols to them,
//! and make sure nothing a test started outlives it.
//!
//! Ports are never guessed: steward binds `127.0.0.1:0` and [`Steward::port`] reads the
//! real port back from the `listen` field of its `master-started` record; a test that
//! must know an address first binds the socket itself and hands it in
//! ([`socket_activated`]).
//!
//! ```no_run
//! use steward_testkit::{demo_bin, Steward};
//!
//! let steward = Steward::start(&["--workers", "2"], &[&demo_bin()]);
//! steward.wait_generation_ready(1);
//! let workers = steward.workers(1, 2);
//! steward.log.wait_event("worker-ready", &[("worker", "2")]);
//! assert_eq!(steward.get("/").unwrap().status, 200);
//! # drop(workers);
//! ```
//!
//! Tests that need root say so with [`root_or_skip`].

#![deny(missing_docs)]

mod bins;
mod dir;
mod http;
mod log;
mod process;
mod steward;
mod systemd;
mod terminal;

pub use crate::{
    bins::{built, demo_bin, reload_wait, steward_bin, steward_client, steward_with_a_leaked_fd},
    dir::{socket_path, TestDir},
    http::{get, Client, Response},
    log::{field, is_event, record_fields, Log},
    process::{children_of, environ, is_gone, is_root, root_or_skip, rss_kb, wait_gone},
    steward::{listening, Steward, DEADLINE},
    systemd::{hand_over, socket_activated, Notification, SystemdSocket},
    terminal::Terminal,
};
