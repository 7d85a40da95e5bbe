//! LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES come from whoever started steward: the
//! reader must never panic, and never hand out fds below 3 or more names than fds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_systemd::{parse_activation, Activation};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (pid, fds, names) = (parts.next(), parts.next(), parts.next());
    if let Ok(Activation::Sockets(sockets)) = parse_activation(4242, pid, fds, names) {
        assert!(sockets.iter().all(|(fd, _)| *fd >= 3));
    }
});
