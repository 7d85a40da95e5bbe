//! Paths of one test's own.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

/// A path for a unix socket that no other test uses: the test process's pid, `name`, and
/// a counter (so that two calls with one name get two paths).
pub fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "steward-test-{}-{n}-{name}.sock",
        std::process::id()
    ))
}

/// A directory of one test's own, readable and searchable by everyone (the master may
/// run as nobody), removed when dropped: also when the test fails. A directory a mount
/// leaked into (a bind of /usr, say) is left alone rather than recursed into.
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl TestDir {
    /// A fresh, empty directory named after the test process and `name`.
    pub fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("steward-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    /// `name` in this directory, as a string (for arguments and config text).
    pub fn at(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }

    /// Writes `text` to `name` in this directory; its path, as [`TestDir::at`].
    pub fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.0.join(name), text).unwrap();
        self.at(name)
    }
}

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if !mounts.contains(self.0.to_str().unwrap()) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
