//! steward's systemd adapter: socket activation in, the sd_notify protocol both ways.
//!
//! [`take_listen_fds`] takes the sockets systemd hands over (LISTEN_FDS, with a strict
//! LISTEN_PID check, and their LISTEN_FDNAMES). The notify protocol the master speaks
//! twice. Upwards it tells systemd (or whoever set NOTIFY_SOCKET) that the service is
//! ready, reloading or stopping, with a [`Notifier`]. Downwards it
//! runs a notify socket of its own for its workers, and reads what they send with
//! [`Notification::parse`], so a worker written for systemd works under steward as is.
//!
//! ```
//! use steward_systemd::{Notification, State};
//!
//! let datagram = State::encode(&[State::Ready, State::Status("2/2 workers ready".into())]);
//! assert_eq!(datagram, b"READY=1\nSTATUS=2/2 workers ready\n");
//!
//! let seen = Notification::parse(&datagram).unwrap();
//! assert!(seen.ready);
//! assert_eq!(seen.status.as_deref(), Some("2/2 workers ready"));
//! ```
#![deny(missing_docs)]

mod activation;
mod journal;
mod notify;
mod service;

pub use crate::{
    activation::{parse_activation, take_listen_fds, Activation, ActivationError, InheritedSocket},
    journal::{JournalLayer, JournalSender, JOURNAL_SOCKET},
    notify::{Notification, Notifier, NotifyError, State, CONTROL_SOCKET_FIELD},
    service::{
        fd_store_capacity, is_journal_stream, parse_watchdog, stderr_is_journal, watchdog_interval,
    },
};
