//! The master's side of mules: starting one when the supervisor asks.

use std::os::fd::AsFd;

use steward_hooks::Phase;
use tracing::info;

use super::Master;
use crate::{events, supervisor::Event};

impl Master {
    /// Runs the as-mule hooks and starts mule `id`.
    pub(super) fn start_mule(&mut self, id: usize) -> Event {
        self.run_phase(Phase::AsMule);
        let mule = &mut self.mules[id - 1];
        match mule.start(self.dev_null.as_fd()) {
            Ok(pid) => {
                info!(event = events::MULE_STARTED, mule = id, pid = %pid, command = %mule.command, "mule started");
                Event::MuleStarted { id, pid }
            }
            Err(e) => Event::MuleStartFailed {
                id,
                how: format!("{}: {e}", mule.command),
            },
        }
    }
}
