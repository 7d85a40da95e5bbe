//! mount(2) and umount2(2) flags by name, read from an action and written back.

use nix::mount::{MntFlags, MsFlags};

use super::ActionParseError;

/// mount(2) flags by name, uWSGI's spellings among them; the first name of a flag is
/// the one an action displays.
const MOUNT_FLAGS: &[(&str, MsFlags)] = &[
    ("ro", MsFlags::MS_RDONLY),
    ("rdonly", MsFlags::MS_RDONLY),
    ("readonly", MsFlags::MS_RDONLY),
    ("nosuid", MsFlags::MS_NOSUID),
    ("nodev", MsFlags::MS_NODEV),
    ("noexec", MsFlags::MS_NOEXEC),
    ("sync", MsFlags::MS_SYNCHRONOUS),
    ("synchronous", MsFlags::MS_SYNCHRONOUS),
    ("remount", MsFlags::MS_REMOUNT),
    ("mandlock", MsFlags::MS_MANDLOCK),
    ("dirsync", MsFlags::MS_DIRSYNC),
    ("noatime", MsFlags::MS_NOATIME),
    ("nodiratime", MsFlags::MS_NODIRATIME),
    ("bind", MsFlags::MS_BIND),
    ("move", MsFlags::MS_MOVE),
    ("rec", MsFlags::MS_REC),
    ("recursive", MsFlags::MS_REC),
    ("silent", MsFlags::MS_SILENT),
    ("unbindable", MsFlags::MS_UNBINDABLE),
    ("private", MsFlags::MS_PRIVATE),
    ("slave", MsFlags::MS_SLAVE),
    ("shared", MsFlags::MS_SHARED),
    ("relatime", MsFlags::MS_RELATIME),
    ("strictatime", MsFlags::MS_STRICTATIME),
];

pub(super) fn mount_flags(text: &str) -> Result<MsFlags, ActionParseError> {
    text.split(',')
        .filter(|f| !f.is_empty())
        .try_fold(MsFlags::empty(), |flags, flag| {
            Ok(flags | lookup(MOUNT_FLAGS, "mount", flag)?)
        })
}

/// `flags` as `mount:` writes them; `,` for none (a place holder before DATA).
pub(super) fn mount_flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = MOUNT_FLAGS
        .iter()
        .enumerate()
        .filter(|(i, (_, flag))| {
            flags.contains(*flag) && !MOUNT_FLAGS[..*i].iter().any(|(_, f)| f == flag)
        })
        .map(|(_, (name, _))| *name)
        .collect();
    if names.is_empty() {
        ",".to_owned()
    } else {
        names.join(",")
    }
}

/// The umount2(2) flags, and whether `rec` (`recursive`) asks for the mounts below
/// first.
pub(super) fn umount_flags(text: &str) -> Result<(MntFlags, bool), ActionParseError> {
    text.split(',').filter(|f| !f.is_empty()).try_fold(
        (MntFlags::empty(), false),
        |(flags, recursive), flag| {
            if matches!(flag, "rec" | "recursive") {
                return Ok((flags, true));
            }
            Ok((flags | lookup(UMOUNT_FLAGS, "umount", flag)?, recursive))
        },
    )
}

/// The umount flags by name, in the order an action writes them; `rec` is not a flag of
/// umount2(2) but steward's own pass over the mounts below.
const UMOUNT_FLAGS: &[(&str, MntFlags)] = &[
    ("force", MntFlags::MNT_FORCE),
    ("detach", MntFlags::MNT_DETACH),
    ("expire", MntFlags::MNT_EXPIRE),
];

/// `flags` and `recursive` as `umount:` writes them: empty for none.
pub(super) fn umount_flag_names(flags: MntFlags, recursive: bool) -> Vec<&'static str> {
    UMOUNT_FLAGS
        .iter()
        .filter(|(_, flag)| flags.contains(*flag))
        .map(|(name, _)| *name)
        .chain(recursive.then_some("rec"))
        .collect()
}

/// The flag named `flag` in `table`, or an error naming it and the action.
fn lookup<F: Copy>(
    table: &[(&str, F)],
    action: &'static str,
    flag: &str,
) -> Result<F, ActionParseError> {
    table
        .iter()
        .find(|(name, _)| *name == flag)
        .map(|(_, one)| *one)
        .ok_or_else(|| ActionParseError::Flag {
            action,
            flag: flag.to_owned(),
        })
}
