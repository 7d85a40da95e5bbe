//! Watching files for `touch-reload`, `hook-touch` and `run-command-on-touch`.

use std::{
    ffi::OsString,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor},
};

/// A watch on a directory: events on `name` in it (the parent of a watched path), or on
/// anything in it (a watched directory itself).
#[derive(Debug)]
struct Watch {
    descriptor: WatchDescriptor,
    name: Option<OsString>,
    path: usize,
}

/// Watches paths with inotify on their parent directory, so that a file an editor
/// replaces (write a new file, rename it over the old one) is still caught; a watched
/// directory is also watched itself, so a change inside it counts.
#[derive(Debug)]
pub struct TouchWatcher {
    inotify: Inotify,
    watches: Vec<Watch>,
    paths: Vec<PathBuf>,
}

/// A path cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum TouchError {
    /// inotify_init failed.
    #[error("cannot start inotify: {0}")]
    Init(Errno),
    /// inotify_add_watch failed (a missing parent directory, say).
    #[error("cannot watch {} for changes: {errno}", path.display())]
    Watch {
        /// The watched path.
        path: PathBuf,
        /// The cause.
        errno: Errno,
    },
}

/// What counts as touching: writing and closing, a metadata change (touch(1)), a file
/// created, or renamed into place; inside a watched directory, also a removal.
const EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_DELETE);

impl TouchWatcher {
    /// Watches `paths` (files or directories; a file may not exist yet, but its
    /// directory must).
    pub fn new(paths: &[PathBuf]) -> Result<TouchWatcher, TouchError> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(TouchError::Init)?;
        let mut watches = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            let watch = |dir: &Path| {
                inotify
                    .add_watch(dir, EVENTS)
                    .map_err(|errno| TouchError::Watch {
                        path: path.clone(),
                        errno,
                    })
            };
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            if let Some(name) = path.file_name() {
                watches.push(Watch {
                    descriptor: watch(parent)?,
                    name: Some(name.to_owned()),
                    path: index,
                });
            }
            if path.is_dir() {
                watches.push(Watch {
                    descriptor: watch(path)?,
                    name: None,
                    path: index,
                });
            }
        }
        Ok(TouchWatcher {
            inotify,
            watches,
            paths: paths.to_vec(),
        })
    }

    /// The descriptor to poll for reading.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    /// The watched paths that changed since the last call, each once, in watch order.
    pub fn changed(&mut self) -> Vec<PathBuf> {
        let mut touched = vec![false; self.paths.len()];
        while let Ok(events) = self.inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for event in events {
                // A removal of the watched file itself is not a touch; inside a
                // watched directory it is a change.
                let removal = event
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM);
                for watch in self.watches.iter().filter(|w| w.descriptor == event.wd) {
                    let hit = match &watch.name {
                        Some(name) => !removal && event.name.as_ref() == Some(name),
                        None => true,
                    };
                    touched[watch.path] |= hit;
                }
            }
        }
        self.paths
            .iter()
            .zip(touched)
            .filter(|(_, hit)| *hit)
            .map(|(path, _)| path.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("steward-touch-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn touches_writes_and_replacements_are_seen() {
        let dir = scratch("file");
        let file = dir.join("reload.flag");
        let other = dir.join("other");
        let mut watcher = TouchWatcher::new(std::slice::from_ref(&file)).unwrap();
        assert!(watcher.changed().is_empty());

        fs::write(&other, "x").unwrap();
        assert!(
            watcher.changed().is_empty(),
            "another file in the directory"
        );
        fs::write(&file, "1").unwrap();
        assert_eq!(watcher.changed(), vec![file.clone()]);
        fs::write(dir.join(".reload.flag.swp"), "2").unwrap();
        fs::rename(dir.join(".reload.flag.swp"), &file).unwrap();
        assert_eq!(
            watcher.changed(),
            vec![file.clone()],
            "an editor-style replace"
        );
        let f = fs::File::options().write(true).open(&file).unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        drop(f);
        assert_eq!(watcher.changed(), vec![file.clone()], "a touch");
        fs::remove_file(&file).unwrap();
        assert!(watcher.changed().is_empty(), "a removal is not a touch");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_change_inside_a_watched_directory_counts() {
        let dir = scratch("dir");
        let watched = dir.join("conf.d");
        fs::create_dir(&watched).unwrap();
        let mut watcher = TouchWatcher::new(std::slice::from_ref(&watched)).unwrap();
        fs::write(watched.join("a.conf"), "x").unwrap();
        assert_eq!(watcher.changed(), vec![watched.clone()]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let err = TouchWatcher::new(&["/no/such/dir/flag".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot watch /no/such/dir/flag"),
            "{err}"
        );
    }
}
