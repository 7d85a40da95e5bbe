//! A worker (or anyone who can reach the notify socket) sends arbitrary bytes: the
//! parser must never panic, and what it accepts must survive being re-encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_systemd::Notification;

fuzz_target!(|data: &[u8]| {
    if let Ok(seen) = Notification::parse(data) {
        // A STATUS= value never carries a newline: it ends the assignment.
        assert!(seen.status.as_deref().is_none_or(|s| !s.contains('\n')));
    }
});
