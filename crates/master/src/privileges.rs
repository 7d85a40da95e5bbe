//! Who the master becomes: `uid`, `gid` and `add-gid` (or `immediate-uid` /
//! `immediate-gid`), resolved from names or numbers while /etc/passwd is still
//! reachable, and the drop itself, checked afterwards in /proc/self/status.

use std::path::Path;

use nix::unistd::{getgid, getgroups, getuid, Gid, Group, Uid, User};
use tracing::info;

use crate::MasterError;

/// The credentials to switch to. `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
    /// Replaces the supplementary groups, exactly (empty: none), whenever the group changes.
    pub groups: Vec<Gid>,
}

impl Credentials {
    /// `uid`, `gid`, `add-gid` as configured. A user without a group gets its primary
    /// group from the password database: staying in root's group would keep root's files
    /// writable.
    pub fn resolve(
        option_uid: (&str, Option<&str>),
        option_gid: (&str, Option<&str>),
        add_gid: &[String],
    ) -> Result<Credentials, MasterError> {
        let user = option_uid
            .1
            .map(|v| resolve_user(option_uid.0, v))
            .transpose()?;
        let mut gid = option_gid
            .1
            .map(|v| resolve_group(option_gid.0, v))
            .transpose()?;
        if gid.is_none() {
            gid = user.as_ref().and_then(|(_, primary)| *primary);
        }
        let groups = add_gid
            .iter()
            .map(|v| resolve_group("add-gid", v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Credentials {
            uid: user.map(|(uid, _)| uid),
            gid,
            groups,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.uid.is_none() && self.gid.is_none()
    }

    /// Whether this process already runs as these credentials (a re-exec'd master, or
    /// `immediate-uid` naming the same user as `uid`).
    pub fn already_applied(&self) -> bool {
        let uid_ok = self.uid.is_none_or(|uid| getuid() == uid);
        let gid_ok = self.gid.is_none_or(|gid| {
            let mut current = getgroups().unwrap_or_default();
            let mut wanted = self.groups.clone();
            current.sort_by_key(|g| g.as_raw());
            current.dedup();
            wanted.sort_by_key(|g| g.as_raw());
            wanted.dedup();
            getgid() == gid && current == wanted
        });
        uid_ok && gid_ok
    }

    /// Switches to these credentials (groups, then gid, then uid) and checks the
    /// outcome: exact ids, and no capability left once root is left.
    pub fn apply(&self, what: &'static str) -> Result<(), MasterError> {
        if self.is_empty() || self.already_applied() {
            return Ok(());
        }
        let failed = |source| MasterError::Privileges { what, source };
        match (self.uid, self.gid) {
            (Some(uid), Some(gid)) => {
                steward_sys::drop_privileges(&self.groups, gid, uid).map_err(failed)?
            }
            (None, Some(gid)) => steward_sys::change_group(&self.groups, gid).map_err(failed)?,
            (Some(uid), None) => steward_sys::change_user(uid).map_err(failed)?,
            (None, None) => {}
        }
        // A refusal (a seccomp filter) is not fatal by itself: verify says whether a
        // capability is left.
        if let Err(e) = steward_sys::clear_inherited_capabilities() {
            tracing::debug!(error = %e, "cannot clear the inheritable and ambient capabilities");
        }
        self.verify(what)?;
        info!(
            event = crate::events::PRIVILEGES_DROPPED,
            by = what,
            uid = %getuid(),
            gid = %getgid(),
            groups = %getgroups().unwrap_or_default().iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","),
            "{what}: privileges dropped"
        );
        Ok(())
    }

    /// Reads /proc/self/status back: the kernel's word on what this process now is.
    fn verify(&self, what: &'static str) -> Result<(), MasterError> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|source| {
            MasterError::PrivilegesUnverified {
                what,
                problem: format!("cannot read /proc/self/status: {source}"),
            }
        })?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let wrong = |problem: String| MasterError::PrivilegesUnverified { what, problem };
        if let Some(uid) = self.uid {
            let uids = field("Uid:");
            if uids.len() != 4 || uids.iter().any(|u| *u != uid.to_string()) {
                return Err(wrong(format!("Uid is {uids:?}, expected {uid} four times")));
            }
            if !uid.is_root() {
                for cap in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
                    let value = field(cap);
                    if value
                        .first()
                        .is_none_or(|v| !v.trim_start_matches('0').is_empty())
                    {
                        return Err(wrong(format!("{cap} is {value:?} after leaving root")));
                    }
                }
            }
        }
        if let Some(gid) = self.gid {
            let gids = field("Gid:");
            if gids.len() != 4 || gids.iter().any(|g| *g != gid.to_string()) {
                return Err(wrong(format!("Gid is {gids:?}, expected {gid} four times")));
            }
        }
        Ok(())
    }

    /// Gives `path` (a socket or FIFO the master created as root) to the user it is
    /// about to become, so that it can still remove it at exit.
    pub fn give(&self, path: &Path) -> Result<(), MasterError> {
        if self.is_empty() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, self.uid.map(Uid::as_raw), self.gid.map(Gid::as_raw))
            .map_err(|source| MasterError::Chown {
                path: path.to_owned(),
                source,
            })
    }
}

/// A user name or number, and the primary group the password database gives it.
pub(crate) fn resolve_user(option: &str, value: &str) -> Result<(Uid, Option<Gid>), MasterError> {
    let unknown = || MasterError::UnknownUser {
        option: option.to_owned(),
        value: value.to_owned(),
    };
    if let Ok(number) = value.parse::<u32>() {
        let uid = Uid::from_raw(number);
        let primary = User::from_uid(uid).ok().flatten().map(|u| u.gid);
        return Ok((uid, primary));
    }
    let user = User::from_name(value).ok().flatten().ok_or_else(unknown)?;
    Ok((user.uid, Some(user.gid)))
}

/// A group name or number.
pub(crate) fn resolve_group(option: &str, value: &str) -> Result<Gid, MasterError> {
    if let Ok(number) = value.parse::<u32>() {
        return Ok(Gid::from_raw(number));
    }
    Group::from_name(value)
        .ok()
        .flatten()
        .map(|g| g.gid)
        .ok_or_else(|| MasterError::UnknownGroup {
            option: option.to_owned(),
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let c = Credentials::resolve(("uid", Some("root")), ("gid", None), &["0".into()]).unwrap();
        assert_eq!(c.uid, Some(Uid::from_raw(0)));
        assert_eq!(c.gid, Some(Gid::from_raw(0)), "the user's primary group");
        assert_eq!(c.groups, [Gid::from_raw(0)]);
        let c = Credentials::resolve(("uid", Some("65534")), ("gid", Some("123")), &[]).unwrap();
        assert_eq!(c.uid, Some(Uid::from_raw(65534)));
        assert_eq!(c.gid, Some(Gid::from_raw(123)));
    }

    #[test]
    fn unknown_names_are_errors_naming_the_option() {
        let e = Credentials::resolve(
            ("immediate-uid", Some("no-such-user-x")),
            ("gid", None),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "immediate-uid: no user named \"no-such-user-x\""
        );
        let e = Credentials::resolve(("uid", None), ("gid", None), &["no-such-group-x".into()])
            .unwrap_err();
        assert_eq!(e.to_string(), "add-gid: no group named \"no-such-group-x\"");
    }
}
