//! The vassal directory: listed at start, then watched with inotify (no polling).

use std::{
    collections::BTreeSet,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::{is_vassal_config, EmperorError};

/// The inotify watch on the vassal directory.
#[derive(Debug)]
pub(crate) struct DirWatch {
    inotify: Inotify,
    dir: PathBuf,
}

impl DirWatch {
    /// Watches `dir` for files written, touched, moved in or out, and removed. A touch
    /// is IN_ATTRIB (the times change), a save IN_CLOSE_WRITE, an editor's or
    /// deployment's rename IN_MOVED_TO.
    pub fn new(dir: &Path) -> Result<DirWatch, EmperorError> {
        let failed = |source| EmperorError::Watch {
            dir: dir.to_owned(),
            source,
        };
        let inotify =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(failed)?;
        let mask = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_ONLYDIR;
        inotify.add_watch(dir, mask).map_err(failed)?;
        Ok(DirWatch {
            inotify,
            dir: dir.to_owned(),
        })
    }

    /// The vassal files in the directory now, by name.
    pub fn list(&self) -> Result<BTreeSet<String>, EmperorError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| EmperorError::Watch {
            dir: self.dir.clone(),
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
        })?;
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file() && is_vassal_config(&e.path()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }

    /// The names of the vassal files that events were read for (every event waiting).
    pub fn changed(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                let Some(name) = event.name.and_then(|n| n.into_string().ok()) else {
                    continue;
                };
                if is_vassal_config(Path::new(&name)) {
                    names.insert(name);
                }
            }
        }
        names
    }

    /// The path of the vassal file `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}
