//! A uWSGI-style config file is written by whoever deploys the app, and read again on every
//! reload by a running master: no input may panic the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "config_common.rs"]
mod config_common;

fuzz_target!(|data: &[u8]| config_common::load("ini", data));
