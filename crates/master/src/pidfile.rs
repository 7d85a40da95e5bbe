//! Pidfiles, always replaced whole: the pid goes to a new temporary file in the same
//! directory, which is then renamed over the path. A reader never sees a half-written
//! file, and a symlink planted at the path is replaced, never written through.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use nix::fcntl::OFlag;

use crate::MasterError;

/// Writes `pid` and a newline to `path` atomically. `option` names the setting for the
/// error message.
pub(crate) fn write_pidfile(
    option: &'static str,
    path: &Path,
    pid: u32,
) -> Result<(), MasterError> {
    let failed = |source| MasterError::Pidfile {
        option,
        path: path.to_owned(),
        source,
    };
    let staged = staging_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&staged)
        .map_err(failed)?;
    let written = file
        .write_all(format!("{pid}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&staged, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(failed(e));
    }
    Ok(())
}

/// `.NAME.PID.tmp` beside `path`: unique to this process, hidden from globs.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "pidfile".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pidfile_replaces_a_planted_symlink_instead_of_writing_through_it() {
        let dir = std::env::temp_dir().join(format!("steward-pidfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let pidfile = dir.join("app.pid");
        std::os::unix::fs::symlink(&victim, &pidfile).unwrap();

        write_pidfile("pidfile", &pidfile, 1234).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "1234\n");
        assert!(!std::fs::symlink_metadata(&pidfile)
            .unwrap()
            .file_type()
            .is_symlink());

        let e = write_pidfile("pidfile2", &dir.join("missing/app.pid"), 1).unwrap_err();
        assert!(e.to_string().starts_with("pidfile2: cannot write"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
