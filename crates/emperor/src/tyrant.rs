//! Tyrant mode (`emperor-tyrant`, uWSGI's): each vassal runs as the owner of its file,
//! so whoever may write a file in the vassal directory gets a vassal with their own
//! rights and no more. The emperor drops the vassal's process to that uid and gid
//! (without supplementary groups, as uWSGI does) before it execs steward, so the
//! vassal's master never holds root; a file owned by root, or one asking for another
//! user or group, is refused before anything starts.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use nix::unistd::{Gid, Group, Uid, User};
use steward_options::{Config, ConfigSources};

/// Tyrant mode as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tyrant {
    /// A symlinked vassal file runs as the link's owner (`emperor-tyrant-nofollow`).
    pub nofollow: bool,
}

/// Who a vassal runs as in tyrant mode: its file's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub uid: Uid,
    pub gid: Gid,
}

impl Tyrant {
    /// The owner of `config` (of the link itself with nofollow), refused when it is
    /// root: a tyrant's vassal never runs with root's rights, as in uWSGI.
    pub(crate) fn owner(self, config: &Path) -> Result<Owner, String> {
        let meta = match self.nofollow {
            true => std::fs::symlink_metadata(config),
            false => std::fs::metadata(config),
        }
        .map_err(|e| format!("emperor-tyrant: cannot stat {}: {e}", config.display()))?;
        let owner = Owner {
            uid: Uid::from_raw(meta.uid()),
            gid: Gid::from_raw(meta.gid()),
        };
        if owner.uid.is_root() || owner.gid.as_raw() == 0 {
            return Err(format!(
                "emperor-tyrant: {} is owned by uid {} gid {}: a vassal does not run as root \
                 or root's group; chown the file to the user it should run as",
                config.display(),
                owner.uid,
                owner.gid
            ));
        }
        Ok(owner)
    }
}

impl Owner {
    /// Refuses a configuration that asks its master to become anyone but the owner: it
    /// would not be able to (it starts without root), and it says more than it may.
    pub(crate) fn allows(self, sources: &ConfigSources) -> Result<(), String> {
        let config = sources.check().config;
        let options = &config.options;
        for (option, user) in [
            ("uid", &options.uid),
            ("immediate-uid", &options.immediate_uid),
        ] {
            let Some(user) = user else { continue };
            let (uid, primary) = resolve_user(user)
                .ok_or_else(|| refusal(&config, self, option, &format!("no user {user}")))?;
            if uid != self.uid {
                return Err(refusal(&config, self, option, &format!("uid {uid}")));
            }
            // The master takes the user's group when no gid is given.
            let gid_given = options.gid.is_some() || options.immediate_gid.is_some();
            if !gid_given && primary != Some(self.gid) {
                let primary = primary.map_or("none".to_owned(), |g| g.to_string());
                let why = format!("{user}'s primary group {primary}, not the file's group");
                return Err(refusal(&config, self, option, &why));
            }
        }
        for (option, group) in [
            ("gid", &options.gid),
            ("immediate-gid", &options.immediate_gid),
        ] {
            let Some(group) = group else { continue };
            let gid = resolve_group(group)
                .ok_or_else(|| refusal(&config, self, option, &format!("no group {group}")))?;
            if gid != self.gid {
                return Err(refusal(&config, self, option, &format!("gid {gid}")));
            }
        }
        if !options.add_gid.is_empty() {
            let why = "supplementary groups, which a tyrant's vassal does not get";
            return Err(refusal(&config, self, "add-gid", why));
        }
        Ok(())
    }
}

fn refusal(config: &Config, owner: Owner, option: &str, what: &str) -> String {
    format!(
        "emperor-tyrant: the vassal runs as its file's owner (uid {} gid {}); {option} = {} \
         at {} asks for {what}",
        owner.uid,
        owner.gid,
        steward_options::table::lookup(option)
            .map(|def| def.show(&config.options).join(","))
            .unwrap_or_default(),
        config.origin(option, 0)
    )
}

fn resolve_user(text: &str) -> Option<(Uid, Option<Gid>)> {
    match text.trim().parse::<u32>() {
        Ok(n) => {
            let uid = Uid::from_raw(n);
            let primary = User::from_uid(uid).ok().flatten().map(|u| u.gid);
            Some((uid, primary))
        }
        Err(_) => User::from_name(text.trim())
            .ok()
            .flatten()
            .map(|u| (u.uid, Some(u.gid))),
    }
}

fn resolve_group(text: &str) -> Option<Gid> {
    match text.trim().parse::<u32>() {
        Ok(n) => Some(Gid::from_raw(n)),
        Err(_) => Group::from_name(text.trim()).ok().flatten().map(|g| g.gid),
    }
}

/// Whether any user can reach a socket in `dir`: it and every directory above it
/// searchable by others. A vassal dropped to its file's owner must reach the emperor's
/// notify socket.
pub(crate) fn reachable_by_anyone(dir: &Path) -> bool {
    dir.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_owned_file_is_refused() {
        let error = Tyrant { nofollow: false }
            .owner(Path::new("/etc/passwd"))
            .unwrap_err();
        assert!(error.contains("owned by uid 0"), "{error}");
    }

    #[test]
    fn nofollow_takes_the_owner_of_the_link_itself() {
        if !nix::unistd::geteuid().is_root() {
            return eprintln!("skipped: needs root to give a file away");
        }
        let dir = std::env::temp_dir().join(format!("steward-nofollow-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let (target, link) = (dir.join("app.toml"), dir.join("link.toml"));
        std::fs::write(&target, "").unwrap();
        let (uid, gid) = (Uid::from_raw(65534), Gid::from_raw(65534));
        nix::unistd::chown(&target, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let follow = Tyrant { nofollow: false }.owner(&link).unwrap();
        assert_eq!(follow, Owner { uid, gid });
        let error = Tyrant { nofollow: true }.owner(&link).unwrap_err();
        assert!(error.contains("owned by uid 0"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_directory_is_not_reachable() {
        assert!(reachable_by_anyone(Path::new("/")));
        let dir = std::env::temp_dir().join(format!("steward-tyrant-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!reachable_by_anyone(&dir));
        std::fs::remove_dir(&dir).unwrap();
    }
}
