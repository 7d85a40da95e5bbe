//! What a vassal's command gets besides `--config FILE`, for the vassal and for its
//! `steward check` alike (so the check sees what the vassal will): the templates of
//! `vassals-inherit`/`vassals-include`, and in tyrant mode the file owner's
//! credentials, which the check of the owner's own configuration must also pass.

use std::{os::unix::process::CommandExt, path::PathBuf, process::Command};

use nix::unistd::{getegid, geteuid, Gid, Uid};
use steward_options::{vars, ConfigSources};

use super::Emperor;
use crate::tyrant::Owner;

impl Emperor {
    /// The owner vassal `name` runs as in tyrant mode (`None` out of it), once its file
    /// and configuration say nothing it may not have; else why it is refused.
    pub(super) fn vassal_owner(&self, name: &str) -> Result<Option<Owner>, String> {
        let Some(tyrant) = self.settings.tyrant else {
            return Ok(None);
        };
        let config = self.watch.path(name);
        let owner = tyrant.owner(&config)?;
        let sources = ConfigSources {
            file: Some(config),
            env: self.vassal_env(),
            cli: Vec::new(),
        };
        owner.allows(&sources)?;
        Ok(Some(owner))
    }

    /// The steward binary for a vassal or its check, as `owner` when there is one: the
    /// process drops to it (no supplementary groups, then gid, then uid) before the
    /// exec, so nothing of the vassal ever runs as root.
    pub(super) fn vassal_command(&self, owner: Option<Owner>) -> Command {
        let mut command = self.steward();
        for (var, value) in self.template_vars() {
            command.env(var, value);
        }
        if let Some(owner) = owner {
            command.uid(owner.uid.as_raw()).gid(owner.gid.as_raw());
            // The emperor's user's, private to it: the vassal's master would fail to
            // bind its notify socket there. It falls back to the temporary directory.
            command.env_remove("XDG_RUNTIME_DIR");
        }
        command
    }

    /// The STEWARD_* variables a vassal sees: the emperor's own but its settings, and
    /// the templates.
    fn vassal_env(&self) -> Vec<(String, String)> {
        let own = ConfigSources::from_process(None, Vec::new()).env;
        let removed = super::ops::NOT_PASSED.map(|name| format!("STEWARD_{name}"));
        let mut env: Vec<(String, String)> = own
            .into_iter()
            .filter(|(name, _)| !removed.contains(name))
            .collect();
        env.extend(self.template_vars());
        env
    }

    fn template_vars(&self) -> Vec<(String, String)> {
        let join = |files: &[PathBuf]| {
            let lines: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            lines.join("\n")
        };
        [
            (vars::VASSAL_INHERIT, &self.settings.inherit),
            (vars::VASSAL_INCLUDE, &self.settings.include),
        ]
        .into_iter()
        .filter(|(_, files)| !files.is_empty())
        .map(|(var, files)| (var.to_owned(), join(files)))
        .collect()
    }
}

/// The uid and gid a vassal runs as, for `as-emperor`'s `UWSGI_VASSAL_UID`/`GID`.
pub(super) fn ids(owner: Option<Owner>) -> (Uid, Gid) {
    owner.map_or((geteuid(), getegid()), |o| (o.uid, o.gid))
}
