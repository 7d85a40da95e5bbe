//! Process names, as `ps` shows them (the whole command line, /proc/PID/cmdline, and
//! the 15-byte comm name where it can be set).
//!
//! | options | master | worker N |
//! |---|---|---|
//! | none | its command line, untouched | its command, untouched |
//! | `auto-procname` | `steward master` | `steward worker N` (as argv[0], the arguments follow) |
//! | `procname-master NAME` / `procname NAME` | NAME | NAME (as argv[0]) |
//! | `procname-prefix P`, `procname-prefix-spaced P`, `procname-append A` | `P` + name + `A` (spaced: `P ` + name) | the same around argv[0] |
//!
//! The master rewrites its own argv memory (found through /proc/self/stat, written
//! through /proc/self/mem), so a longer name is cut to the length of the original
//! command line. A worker gets its name as argv[0] of its execve; the program run is
//! still the configured one, and its comm name stays the program's file name.

use std::{
    fs::OpenOptions,
    io::{Seek, SeekFrom, Write},
};

use steward_options::Options;

/// Whether any naming option is set.
fn naming(options: &Options) -> bool {
    options.auto_procname
        || options.procname_prefix.is_some()
        || options.procname_prefix_spaced.is_some()
        || options.procname_append.is_some()
        || options.procname.is_some()
        || options.procname_master.is_some()
}

/// Applies the prefixes and the suffix to `base`.
fn decorate(options: &Options, base: &str) -> String {
    let mut name = String::new();
    if let Some(prefix) = &options.procname_prefix {
        name.push_str(prefix);
    }
    if let Some(prefix) = &options.procname_prefix_spaced {
        name.push_str(prefix);
        name.push(' ');
    }
    name.push_str(base);
    if let Some(suffix) = &options.procname_append {
        name.push_str(suffix);
    }
    name
}

/// The master's name, or `None` to leave its command line as it is.
pub(crate) fn master_title(options: &Options, original_argv: &[String]) -> Option<String> {
    if !naming(options) {
        return None;
    }
    let base = match (&options.procname_master, options.auto_procname) {
        (Some(name), _) => name.clone(),
        (None, true) => "steward master".to_owned(),
        (None, false) => original_argv.join(" "),
    };
    Some(decorate(options, &base))
}

/// Worker `id`'s argv[0], or `None` to keep the command's own.
pub(crate) fn worker_title(options: &Options, id: usize) -> Option<String> {
    if !naming(options) {
        return None;
    }
    let base = match (&options.procname, options.auto_procname) {
        (Some(name), _) => name.clone(),
        (None, true) => format!("steward worker {id}"),
        (None, false) => options.command.first()?.clone(),
    };
    Some(decorate(options, &base))
}

/// Why the master's own name could not be set.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TitleError {
    #[error("cannot read the argv location in /proc/self/stat: {0}")]
    Stat(String),
    #[error("cannot write the argv memory through /proc/self/mem: {0}")]
    Mem(std::io::Error),
}

/// Rewrites this process's command line to `title` (cut to the original length, padded
/// with NULs), and its comm name to the title's first 15 bytes. The caller must have
/// read everything it needs from argv before (std reads it lazily from this memory).
pub(crate) fn set_own_title(title: &str) -> Result<(), TitleError> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").map_err(|e| TitleError::Stat(e.to_string()))?;
    // Fields after the parenthesised comm (which may hold spaces) start at field 3.
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| TitleError::Stat("no comm field".into()))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, TitleError> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| TitleError::Stat(format!("no field {n}")))
    };
    let (arg_start, arg_end) = (field(48)?, field(49)?);
    let room = arg_end.saturating_sub(arg_start) as usize;
    if room == 0 {
        return Err(TitleError::Stat("empty argv area".into()));
    }
    let mut bytes = vec![0u8; room];
    let text = title.as_bytes();
    // The last byte stays NUL: the kernel then reads the area as NUL-separated arguments.
    let kept = text.len().min(room - 1);
    bytes[..kept].copy_from_slice(&text[..kept]);
    let mut mem = OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .map_err(TitleError::Mem)?;
    mem.seek(SeekFrom::Start(arg_start))
        .map_err(TitleError::Mem)?;
    mem.write_all(&bytes).map_err(TitleError::Mem)?;

    let comm: Vec<u8> = text.iter().copied().filter(|b| *b != 0).take(15).collect();
    if let Ok(comm) = std::ffi::CString::new(comm) {
        let _ = nix::sys::prctl::set_name(&comm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_the_uwsgi_options() {
        let mut o = Options::new(vec!["/usr/bin/app".into(), "--flag".into()]);
        let argv = ["steward".to_owned(), "--workers".to_owned()];
        assert_eq!(master_title(&o, &argv), None);
        assert_eq!(worker_title(&o, 1), None);

        o.auto_procname = true;
        assert_eq!(master_title(&o, &argv).unwrap(), "steward master");
        assert_eq!(worker_title(&o, 3).unwrap(), "steward worker 3");

        o.procname_prefix_spaced = Some("[app]".into());
        o.procname_append = Some(" (blue)".into());
        assert_eq!(
            master_title(&o, &argv).unwrap(),
            "[app] steward master (blue)"
        );
        assert_eq!(
            worker_title(&o, 2).unwrap(),
            "[app] steward worker 2 (blue)"
        );

        let mut o = Options::new(vec!["/usr/bin/app".into()]);
        o.procname_prefix = Some("app-".into());
        assert_eq!(master_title(&o, &argv).unwrap(), "app-steward --workers");
        assert_eq!(worker_title(&o, 1).unwrap(), "app-/usr/bin/app");
        o.procname = Some("web".into());
        o.procname_master = Some("boss".into());
        assert_eq!(master_title(&o, &argv).unwrap(), "app-boss");
        assert_eq!(worker_title(&o, 1).unwrap(), "app-web");
    }
}
