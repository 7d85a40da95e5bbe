//! steward's lifecycle phases and the hook actions run in them, spelled as uWSGI spells
//! them (`hook-as-root = mkdir:/run/app`).
//!
//! Each [`Phase`] knows its name and whether it is fatal: a failing hook in a fatal
//! phase stops steward with exit status 1, elsewhere it is logged and the master goes on.
//! [`Hooks::new`] is the one reader of the hook options: it parses every hook string,
//! alarm and jail setting of a configuration into types up front, checking each `call:`
//! against the [`Callbacks`] a program registered, so that `steward check`, a start and
//! a reload ([`Hooks::check`]) accept the same things. Its errors carry the option and
//! the index of the value, which [`HookConfigError::located`] and [`HookError::origin`]
//! turn into the file:line, variable or flag it came from. [`Hooks::run`] runs a
//! phase's actions in order; [`Jail`] unshares namespaces and chroots; [`TouchWatcher`]
//! watches files for `touch-reload` and `hook-touch`.
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
//! assert!(hooks.jail().is_empty());
//!
//! // A reload's configuration is read by the same parser, and refused as a start would.
//! options.hooks.push(("as-root".into(), "mkdri:/run/app".into()));
//! let error = hooks.check(&options).unwrap_err();
//! assert_eq!((error.option.as_str(), error.index), ("hook-as-root", 0));
//! ```
#![deny(missing_docs)]

mod action;
mod alarm;
mod callbacks;
mod error;
pub mod events;
mod hooks;
mod jail;
mod phase;
mod touch;

pub use crate::{
    action::{Action, ActionError, ActionParseError, Owner, WaitKind},
    alarm::{Alarm, AlarmHandler, AlarmParseError},
    callbacks::{CallError, Callback, Callbacks},
    error::{HookConfigError, HookError},
    hooks::{Hooks, TouchHook},
    jail::{Jail, JailError},
    phase::{Phase, PhaseError},
    touch::{TouchError, TouchWatcher},
};
