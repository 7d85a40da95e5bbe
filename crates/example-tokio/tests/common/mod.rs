//! What the example tests share beyond steward-testkit: the example's master started as
//! a subprocess (its master forks, and signals reach it, outside the multi-threaded test
//! process) on `127.0.0.1:0` unless a test sets STEWARD_LISTEN, and the fields of an answer.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, ExitStatus},
};

pub use steward_testkit::{Steward, TestDir, DEADLINE};

/// An example's master, running; killed with its workers if a test ends without
/// stopping it.
pub struct Example(Steward);

impl Example {
    /// Starts `binary` with `env` (and STEWARD_LISTEN=127.0.0.1:0 unless `env` sets it).
    pub fn start(binary: &Path, env: &[(&str, &str)]) -> Example {
        let mut command = Command::new(binary);
        command.env_remove("LISTEN_FDS").env_remove("LISTEN_PID");
        Example::spawn(command, env)
    }

    /// Starts a prepared command (one that hands sockets over, say) with `env`, as
    /// [`Example::start`] does.
    pub fn spawn(mut command: Command, env: &[(&str, &str)]) -> Example {
        command
            .env("STEWARD_LISTEN", "127.0.0.1:0")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("STEWARD_REEXEC")
            .env_remove("RUST_BACKTRACE")
            .envs(env.iter().copied());
        Example(Steward::spawn(command))
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.0.log.text()
    }

    /// Waits until the log holds a line with `needle` `count` times (for lines that carry
    /// no event: the example's own, and warnings).
    pub fn wait_log(&self, needle: &str, count: usize) {
        let mut from = 0;
        for _ in 0..count {
            from = self.0.log.wait_from(from, &[needle]).0 + 1;
        }
    }

    /// Waits for the master to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.0.wait_exit(DEADLINE)
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.0.stop()
    }
}

impl std::ops::Deref for Example {
    type Target = Steward;

    fn deref(&self) -> &Steward {
        &self.0
    }
}

/// The fields (`key=value ...`) of an answer's body.
pub fn fields(body: &str) -> BTreeMap<String, String> {
    body.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
