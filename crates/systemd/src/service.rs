//! What the service manager tells a service about itself through its environment:
//! the watchdog interval, whether it may store fds, whether stderr is the journal.

use std::time::Duration;

/// How often systemd expects `WATCHDOG=1`: WATCHDOG_USEC when WATCHDOG_PID is unset or
/// names `own_pid` (otherwise the watchdog belongs to another process), else none.
pub fn parse_watchdog(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = watchdog_pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec = watchdog_usec?.trim().parse::<u64>().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The watchdog interval systemd set for this process (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let var = |name| std::env::var(name).ok();
    parse_watchdog(
        var("WATCHDOG_USEC").as_deref(),
        var("WATCHDOG_PID").as_deref(),
        std::process::id(),
    )
}

/// How many fds systemd keeps for this service (`FileDescriptorStoreMax=`, told in
/// `$FDSTORE` by systemd 254 and later; 0 when it says nothing, since FDSTORE=1 to a
/// service without a store only earns a warning in the journal).
pub fn fd_store_capacity() -> usize {
    std::env::var("FDSTORE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether `journal_stream` (JOURNAL_STREAM's `DEVICE:INODE`) names the file with this
/// device and inode, as systemd documents for deciding to log natively to the journal.
pub fn is_journal_stream(journal_stream: Option<&str>, dev: u64, ino: u64) -> bool {
    let Some((stream_dev, stream_ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    stream_dev.parse::<u64>().ok() == Some(dev) && stream_ino.parse::<u64>().ok() == Some(ino)
}

/// Whether this process's stderr is connected to the journal.
pub fn stderr_is_journal() -> bool {
    let stderr = std::io::stderr();
    nix::sys::stat::fstat(std::os::fd::AsFd::as_fd(&stderr)).is_ok_and(|stat| {
        let stream = std::env::var("JOURNAL_STREAM").ok();
        is_journal_stream(stream.as_deref(), stat.st_dev, stat.st_ino)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_watchdog_is_ours_only_when_the_pid_says_so() {
        let half_second = Some(Duration::from_millis(500));
        assert_eq!(parse_watchdog(Some("500000"), None, 7), half_second);
        assert_eq!(parse_watchdog(Some("500000"), Some("7"), 7), half_second);
        assert_eq!(parse_watchdog(Some("500000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
    }

    #[test]
    fn journal_stream_must_name_the_very_file() {
        let file = std::env::temp_dir().join(format!("steward-journal-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let (dev, ino) = (meta.dev(), meta.ino());
        assert!(is_journal_stream(Some(&format!("{dev}:{ino}")), dev, ino));
        assert!(!is_journal_stream(
            Some(&format!("{dev}:{}", ino + 1)),
            dev,
            ino
        ));
        assert!(!is_journal_stream(Some("garbage"), dev, ino));
        assert!(!is_journal_stream(None, dev, ino));
        std::fs::remove_file(&file).unwrap();
    }
}
