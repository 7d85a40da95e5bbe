use std::time::Duration;

use crate::{listen::ListenAddr, ListenSpec, OptionError, ReadyMode, StopSignal};

/// Everything the master needs to run: the sockets, the workers and how they are
/// started, replaced and stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The listening sockets, in the order the workers receive them (fd 3, 4, ...).
    pub listen: Vec<ListenSpec>,
    /// How many workers to keep running.
    pub workers: usize,
    /// The worker command: a program and its arguments. A program without a `/` is
    /// looked up in PATH when the master starts.
    pub command: Vec<String>,
    /// When a new worker counts as ready.
    pub ready: ReadyMode,
    /// The signal that asks a worker to stop gracefully.
    pub worker_stop_signal: StopSignal,
    /// How long a stopping worker may take before it is killed with SIGKILL.
    pub worker_reload_mercy: Duration,
    /// The first delay before a crashed worker is started again; it doubles with each
    /// crash in a row, up to [`Options::respawn_backoff_max`].
    pub respawn_backoff: Duration,
    /// The longest delay between two starts of a worker that keeps crashing.
    pub respawn_backoff_max: Duration,
    /// A worker that lived this long before it exited is not part of a crash loop:
    /// it is started again at once and its backoff starts over.
    pub respawn_reset_after: Duration,
    /// The listen(2) backlog of the sockets steward binds.
    pub listen_backlog: i32,
}

impl Options {
    /// Options with every default and the given worker command.
    pub fn new(command: Vec<String>) -> Self {
        Options {
            listen: Vec::new(),
            workers: 1,
            command,
            ready: ReadyMode::default(),
            worker_stop_signal: StopSignal::default(),
            worker_reload_mercy: Duration::from_secs(30),
            respawn_backoff: Duration::from_millis(100),
            respawn_backoff_max: Duration::from_secs(10),
            respawn_reset_after: Duration::from_secs(10),
            listen_backlog: 1024,
        }
    }

    /// Checks what each value alone cannot: that there is a command, a worker, and no
    /// socket name or address twice.
    pub fn validate(&self) -> Result<(), OptionError> {
        if self.command.is_empty() || self.command[0].is_empty() {
            return Err(OptionError::NoCommand);
        }
        if self.workers == 0 {
            return Err(OptionError::NoWorkers);
        }
        let names: Vec<String> = self.fd_names();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(OptionError::DuplicateSocketName(name.clone()));
            }
        }
        for (i, spec) in self.listen.iter().enumerate() {
            if self.listen[..i].iter().any(|other| other.addr == spec.addr) {
                return Err(OptionError::Listen {
                    value: spec.to_string(),
                    reason: "this address is listed twice".into(),
                });
            }
            if let ListenAddr::Unix(path) = &spec.addr {
                if path.as_os_str().len() >= 108 {
                    return Err(OptionError::Listen {
                        value: spec.to_string(),
                        reason: "a unix socket path must be shorter than 108 bytes".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The LISTEN_FDNAMES entry of each socket, in order.
    pub fn fd_names(&self) -> Vec<String> {
        self.listen
            .iter()
            .enumerate()
            .map(|(i, spec)| spec.fd_name(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        let mut options = Options::new(vec!["/bin/true".into()]);
        options.listen = vec![
            "127.0.0.1:1".parse().unwrap(),
            "b=127.0.0.1:2".parse().unwrap(),
        ];
        options
    }

    #[test]
    fn defaults_validate() {
        options().validate().unwrap();
        assert_eq!(options().fd_names(), ["listen0", "b"]);
    }

    #[test]
    fn inconsistent_sets_are_refused() {
        let mut o = options();
        o.command.clear();
        assert_eq!(o.validate(), Err(OptionError::NoCommand));

        let mut o = options();
        o.workers = 0;
        assert_eq!(o.validate(), Err(OptionError::NoWorkers));

        let mut o = options();
        o.listen.push("b=127.0.0.1:3".parse().unwrap());
        assert_eq!(
            o.validate(),
            Err(OptionError::DuplicateSocketName("b".into()))
        );

        let mut o = options();
        o.listen.push("c=127.0.0.1:1".parse().unwrap());
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("listed twice"));
    }
}
