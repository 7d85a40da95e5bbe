//! Hook action and alarm strings come from config files, the environment and the
//! command line: parsing must never panic, and what an accepted action prints (as logs
//! and `steward check` show it) must parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_hooks::{Action, Alarm};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(action) = text.parse::<Action>() {
        let shown = action.to_string();
        assert!(
            shown.parse::<Action>().is_ok(),
            "{text:?} parsed, but its display {shown:?} does not"
        );
    }
    let _ = text.parse::<Alarm>();
});
