//! Any local client can write a line to the control socket: parsing must never panic,
//! and every accepted request must print back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_master::ControlRequest;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(request) = line.parse::<ControlRequest>() {
        assert_eq!(request.to_string().parse::<ControlRequest>(), Ok(request));
    }
});
