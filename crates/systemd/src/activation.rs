use std::os::fd::{OwnedFd, RawFd};

use steward_sys::{adopt_inherited_socket, AdoptError};

/// The first descriptor of the socket-activation protocol.
const LISTEN_FDS_START: RawFd = 3;

/// Socket-activation variables that do not hold together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    /// LISTEN_FDS is not a count.
    #[error("LISTEN_FDS={0:?} is not a number of descriptors")]
    Count(String),
    /// LISTEN_PID is not a pid.
    #[error("LISTEN_PID={0:?} is not a process id")]
    Pid(String),
    /// LISTEN_FDNAMES names a different number of descriptors than LISTEN_FDS.
    #[error("LISTEN_FDNAMES has {names} names for LISTEN_FDS={fds} descriptors")]
    Names {
        /// How many descriptors.
        fds: usize,
        /// How many names.
        names: usize,
    },
    /// A descriptor that is not an open socket.
    #[error("socket activation: {0}")]
    Adopt(#[from] AdoptError),
}

/// What the socket-activation variables say.
#[derive(Debug, PartialEq, Eq)]
pub enum Activation<T> {
    /// No LISTEN_FDS: steward binds its sockets itself.
    Absent,
    /// LISTEN_FDS is set but LISTEN_PID is missing or names another process: the
    /// descriptors belong to someone else (a parent that did not clean up), and are
    /// left alone.
    NotForThisProcess {
        /// LISTEN_PID as set, if at all.
        listen_pid: Option<String>,
    },
    /// The sockets, from fd 3 on, each with its name.
    Sockets(Vec<T>),
}

/// One socket a service manager handed over.
#[derive(Debug)]
pub struct InheritedSocket {
    /// The descriptor, now owned and close-on-exec.
    pub fd: OwnedFd,
    /// Its LISTEN_FDNAMES entry; `None` when there is none or it is systemd's
    /// placeholder `unknown`.
    pub name: Option<String>,
}

/// Reads the protocol from the values of LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES as
/// this process (`pid`) received them. Pure: adopts nothing.
pub fn parse_activation(
    pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
) -> Result<Activation<(RawFd, Option<String>)>, ActivationError> {
    let Some(count) = listen_fds else {
        return Ok(Activation::Absent);
    };
    match listen_pid {
        None => return Ok(Activation::NotForThisProcess { listen_pid: None }),
        Some(listen_pid) => {
            let target: u32 = listen_pid
                .parse()
                .map_err(|_| ActivationError::Pid(listen_pid.to_owned()))?;
            if target != pid {
                return Ok(Activation::NotForThisProcess {
                    listen_pid: Some(listen_pid.to_owned()),
                });
            }
        }
    }
    let count: usize = count
        .parse()
        .ok()
        .filter(|n| *n <= 4096)
        .ok_or_else(|| ActivationError::Count(count.to_owned()))?;
    let names: Vec<Option<String>> = match listen_fdnames {
        None => vec![None; count],
        Some(names) => {
            let names: Vec<&str> = if count == 0 && names.is_empty() {
                Vec::new()
            } else {
                names.split(':').collect()
            };
            if names.len() != count {
                return Err(ActivationError::Names {
                    fds: count,
                    names: names.len(),
                });
            }
            names
                .into_iter()
                .map(|name| (!name.is_empty() && name != "unknown").then(|| name.to_owned()))
                .collect()
        }
    };
    Ok(Activation::Sockets(
        (LISTEN_FDS_START..).zip(names).collect(),
    ))
}

/// Takes the sockets systemd (or systemd-socket-activate) handed to this process, and
/// removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment so that no
/// child mistakes them for its own. Call it before any thread is started.
pub fn take_listen_fds() -> Result<Activation<InheritedSocket>, ActivationError> {
    let var = |name| std::env::var(name).ok();
    let parsed = parse_activation(
        std::process::id(),
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
    );
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    Ok(match parsed? {
        Activation::Absent => Activation::Absent,
        Activation::NotForThisProcess { listen_pid } => {
            Activation::NotForThisProcess { listen_pid }
        }
        Activation::Sockets(fds) => Activation::Sockets(
            fds.into_iter()
                .map(|(fd, name)| {
                    Ok(InheritedSocket {
                        fd: adopt_inherited_socket(fd)?,
                        name,
                    })
                })
                .collect::<Result<_, ActivationError>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_with_names_in_order() {
        let parsed =
            parse_activation(42, Some("42"), Some("3"), Some("web:unknown:admin")).unwrap();
        assert_eq!(
            parsed,
            Activation::Sockets(vec![
                (3, Some("web".into())),
                (4, None),
                (5, Some("admin".into()))
            ])
        );
        let parsed = parse_activation(42, Some("42"), Some("2"), None).unwrap();
        assert_eq!(parsed, Activation::Sockets(vec![(3, None), (4, None)]));
    }

    #[test]
    fn the_pid_must_be_ours() {
        assert_eq!(
            parse_activation(42, None, None, None).unwrap(),
            Activation::Absent
        );
        assert_eq!(
            parse_activation(42, Some("41"), Some("1"), None).unwrap(),
            Activation::NotForThisProcess {
                listen_pid: Some("41".into())
            }
        );
        assert_eq!(
            parse_activation(42, None, Some("1"), None).unwrap(),
            Activation::NotForThisProcess { listen_pid: None }
        );
    }

    #[test]
    fn inconsistent_variables_are_errors() {
        assert_eq!(
            parse_activation(42, Some("x"), Some("1"), None),
            Err(ActivationError::Pid("x".into()))
        );
        assert_eq!(
            parse_activation(42, Some("42"), Some("-1"), None),
            Err(ActivationError::Count("-1".into()))
        );
        assert_eq!(
            parse_activation(42, Some("42"), Some("2"), Some("web")),
            Err(ActivationError::Names { fds: 2, names: 1 })
        );
    }
}
