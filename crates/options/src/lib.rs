//! The option model of steward: every knob the master understands, its default and its
//! validation. This crate is pure: parsing a value never binds, opens or forks anything.
//!
//! ```
//! use steward_options::{ListenSpec, Options, ReadyMode};
//!
//! let listen: ListenSpec = "api=127.0.0.1:8000".parse().unwrap();
//! assert_eq!(listen.name.as_deref(), Some("api"));
//!
//! let mut options = Options::new(vec!["/usr/bin/myserver".into()]);
//! options.listen.push(listen);
//! options.ready = "delay:500".parse::<ReadyMode>().unwrap();
//! options.validate().unwrap();
//! ```
#![deny(missing_docs)]

mod config;
mod error;
mod files;
mod ini;
mod listen;
mod model;
mod setting;
mod stats;
pub mod table;
mod values;
pub mod vars;

pub use crate::{
    config::{Checked, Config, ConfigSources},
    error::{ConfigError, OptionError},
    listen::{ListenAddr, ListenSpec},
    model::{Cheaper, MemoryLimits, Options},
    setting::{Origin, RawValue, Setting, Warning},
    stats::StatsAddr,
    values::{
        parse_duration, LogPattern, LogTarget, ReadyMode, ReloadStrategy, StopSignal, WorkerOutput,
    },
};
