//! Named alarm handlers: `alarm = NAME cmd:COMMAND` or `alarm = NAME log:`.

use std::str::FromStr;

use crate::action::{run_shell, ActionError};

/// What raising an alarm does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlarmHandler {
    /// `cmd:COMMAND`: run COMMAND with `/bin/sh -c`, the message on its stdin.
    Command(String),
    /// `log:`: an error-level log record carrying the alarm's name and message.
    Log,
}

/// A declared alarm: its name and handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The name `alarm:NAME MSG` actions raise.
    pub name: String,
    /// What raising it does.
    pub handler: AlarmHandler,
}

/// An `alarm = ...` value that is not `NAME cmd:COMMAND` or `NAME log:`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlarmParseError {
    /// Nothing after the name.
    #[error("alarm {0:?}: missing its handler (cmd:COMMAND or log:)")]
    NoHandler(String),
    /// A handler kind other than cmd or log.
    #[error("alarm {name:?}: unknown handler {given:?} (cmd:COMMAND or log:)")]
    UnknownHandler {
        /// The alarm's name.
        name: String,
        /// The handler given.
        given: String,
    },
    /// `cmd:` with no command.
    #[error("alarm {0:?}: cmd: needs a command")]
    NoCommand(String),
    /// An empty value.
    #[error("alarm: missing NAME and handler")]
    Empty,
}

impl FromStr for Alarm {
    type Err = AlarmParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AlarmParseError::Empty);
        }
        let (name, handler) = text
            .split_once(char::is_whitespace)
            .map(|(n, h)| (n.to_owned(), h.trim()))
            .ok_or_else(|| AlarmParseError::NoHandler(text.to_owned()))?;
        let (kind, arg) = handler.split_once(':').unwrap_or((handler, ""));
        let handler = match kind {
            "cmd" if arg.trim().is_empty() => return Err(AlarmParseError::NoCommand(name)),
            "cmd" => AlarmHandler::Command(arg.trim().to_owned()),
            "log" => AlarmHandler::Log,
            _ => {
                return Err(AlarmParseError::UnknownHandler {
                    name,
                    given: kind.to_owned(),
                })
            }
        };
        Ok(Alarm { name, handler })
    }
}

impl Alarm {
    /// Raises the alarm with `message`.
    pub fn raise(&self, message: &str) -> Result<(), ActionError> {
        match &self.handler {
            AlarmHandler::Log => {
                tracing::error!(event = crate::events::ALARM_RAISED, alarm = %self.name, message, "alarm");
                Ok(())
            }
            AlarmHandler::Command(command) => {
                run_shell(command, Some(message)).map_err(|e| ActionError::AlarmCommand {
                    name: self.name.clone(),
                    cause: Box::new(e),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_parse() {
        assert_eq!(
            "disk cmd:logger -t app".parse(),
            Ok(Alarm {
                name: "disk".into(),
                handler: AlarmHandler::Command("logger -t app".into())
            })
        );
        assert_eq!(
            "disk log:".parse(),
            Ok(Alarm {
                name: "disk".into(),
                handler: AlarmHandler::Log
            })
        );
        let err = |t: &str| t.parse::<Alarm>().unwrap_err().to_string();
        assert_eq!(
            err("disk"),
            "alarm \"disk\": missing its handler (cmd:COMMAND or log:)"
        );
        assert_eq!(
            err("disk mail:root"),
            "alarm \"disk\": unknown handler \"mail\" (cmd:COMMAND or log:)"
        );
        assert_eq!(err("disk cmd:"), "alarm \"disk\": cmd: needs a command");
    }

    #[test]
    fn a_command_alarm_gets_the_message_on_stdin() {
        let out = std::env::temp_dir().join(format!("steward-alarm-{}", std::process::id()));
        let alarm: Alarm = format!("disk cmd:cat > {}", out.display()).parse().unwrap();
        alarm.raise("disk is full").unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "disk is full\n");
        let _ = std::fs::remove_file(out);
        let failing: Alarm = "x cmd:exit 2".parse().unwrap();
        assert!(failing
            .raise("m")
            .unwrap_err()
            .to_string()
            .starts_with("alarm \"x\": command \"exit 2\" failed"));
    }
}
