//! The functions `call:NAME` hooks run: registered by a program that embeds steward
//! (directly, or through steward-master's `Builder::call`), checked by name when the
//! configuration loads, run by the executor.

use std::{collections::BTreeMap, fmt};

use crate::ActionError;

/// A callback an embedding program registers for `call:NAME`.
pub type Callback = Box<dyn Fn() -> Result<(), String>>;

/// The callbacks `call:NAME` actions may name. Empty from the plain command line, so
/// there every `call:` is a configuration error.
#[derive(Default)]
pub struct Callbacks {
    by_name: BTreeMap<String, Callback>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

/// A `call:NAME` hook that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No function is registered under that name.
    #[error(
        "call:{0}: no function registered under this name (Builder::call, Callbacks::register)"
    )]
    Unknown(String),
    /// The function returned an error.
    #[error("call:{name} failed: {reason}")]
    Failed {
        /// The hook's name.
        name: String,
        /// Its error.
        reason: String,
    },
}

impl Callbacks {
    /// No callbacks.
    pub fn new() -> Callbacks {
        Callbacks::default()
    }

    /// Registers `callback` as `call:NAME`, replacing one of the same name.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        callback: impl Fn() -> Result<(), String> + 'static,
    ) {
        self.by_name.insert(name.into(), Box::new(callback));
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Runs the function registered as `name`.
    pub fn call(&self, name: &str) -> Result<(), CallError> {
        let callback = self
            .by_name
            .get(name)
            .ok_or_else(|| CallError::Unknown(name.to_owned()))?;
        callback().map_err(|reason| CallError::Failed {
            name: name.to_owned(),
            reason,
        })
    }
}

/// A `call:` hook's failure, as the executor reports a failed action.
impl From<CallError> for ActionError {
    fn from(error: CallError) -> ActionError {
        match error {
            CallError::Unknown(name) => ActionError::NoCallback(name),
            CallError::Failed { name, reason } => ActionError::Callback {
                name,
                message: reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_run_by_name_and_fail_as_actions_do() {
        let mut callbacks = Callbacks::new();
        callbacks.register("ok", || Ok(()));
        callbacks.register("fails", || Err("no database".into()));
        assert_eq!(callbacks.names().collect::<Vec<_>>(), ["fails", "ok"]);
        assert!(callbacks.contains("ok") && !callbacks.contains("nope"));
        callbacks.call("ok").unwrap();
        let failed = callbacks.call("fails").unwrap_err();
        assert_eq!(failed.to_string(), "call:fails failed: no database");
        assert_eq!(
            ActionError::from(failed).to_string(),
            "callback \"fails\" failed: no database"
        );
        let unknown = callbacks.call("nope").unwrap_err();
        assert!(unknown
            .to_string()
            .starts_with("call:nope: no function registered"));
        assert_eq!(
            ActionError::from(unknown).to_string(),
            "no callback registered as \"nope\""
        );
    }
}
