//! The names of the hooks' log events (the `event` field), stable where the messages may
//! be reworded; the master lists them with its own in `steward_master::events`.

/// A hook is about to run (`phase` or `path` for a touch hook, `action`).
pub const HOOK_RUN: &str = "hook-run";
/// A hook failed in a phase that is not fatal, or a touch hook failed (`error`).
pub const HOOK_FAILED: &str = "hook-failed";
/// An alarm with the log handler was raised (`alarm`, `message`).
pub const ALARM_RAISED: &str = "alarm-raised";
