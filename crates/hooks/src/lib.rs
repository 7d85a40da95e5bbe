//! steward's lifecycle phases, spelled as uWSGI spells them (`hook-as-root = ...`).
//!
//! Each [`Phase`] knows its name and whether it is fatal: a failing hook in a fatal
//! phase stops steward with exit status 1, elsewhere it is logged and the master goes on.
//!
//! ```
//! use steward_hooks::Phase;
//!
//! let phase: Phase = "as-root".parse().unwrap();
//! assert!(phase.is_fatal());
//! assert_eq!(phase.name(), "as-root");
//! assert!(!Phase::MasterStart.is_fatal());
//! ```
#![deny(missing_docs)]

mod phase;

pub use crate::phase::{Phase, PhaseError};
