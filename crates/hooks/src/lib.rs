//! steward's lifecycle phases and the hook actions run in them, spelled as uWSGI spells
//! them (`hook-as-root = mkdir:/run/app`).
//!
//! Each [`Phase`] knows its name and whether it is fatal: a failing hook in a fatal
//! phase stops steward with exit status 1, elsewhere it is logged and the master goes on.
//! [`Hooks`] parses every hook of a configuration up front (so `steward check` reports a
//! bad one with its source) and runs a phase's actions in order. [`Jail`] unshares
//! namespaces and chroots; [`TouchWatcher`] watches files for `touch-reload` and
//! `hook-touch`.
//!
//! ```
//! use steward_hooks::{Action, Callbacks, Hooks, Phase};
//! use steward_options::Options;
//!
//! let phase: Phase = "as-root".parse().unwrap();
//! assert!(phase.is_fatal());
//! assert!(!Phase::MasterStart.is_fatal());
//!
//! let action: Action = "mkdir:/run/app".parse().unwrap();
//! assert_eq!(action, Action::Mkdir("/run/app".into()));
//!
//! let mut options = Options::new(vec!["/usr/bin/myserver".into()]);
//! options.hooks.push(("master-start".into(), "call:warm".into()));
//! let mut callbacks = Callbacks::new();
//! callbacks.register("warm", || Ok(()));
//! let hooks = Hooks::new(&options, callbacks).unwrap();
//! hooks.run(Phase::MasterStart).unwrap();
//! ```
#![deny(missing_docs)]

mod action;
mod alarm;
mod hooks;
mod jail;
mod phase;
mod touch;

pub use crate::{
    action::{Action, ActionError, ActionParseError},
    alarm::{Alarm, AlarmHandler, AlarmParseError},
    hooks::{Callback, Callbacks, HookConfigError, HookError, Hooks, TouchHook},
    jail::{Jail, JailError},
    phase::{Phase, PhaseError},
    touch::{TouchError, TouchWatcher},
};
