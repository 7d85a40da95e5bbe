//! What /proc says of a process (the master's children run as its user): memory, CPU
//! time, start time; and the open descriptors of the master itself.

use nix::unistd::{sysconf, SysconfVar};

/// One process's resource use, read when a client asks and never otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    pub rss_bytes: u64,
    pub vsz_bytes: u64,
    /// User and system time.
    pub cpu_seconds: f64,
    /// Since the epoch.
    pub started_at: f64,
}

/// The usage of process `pid` (`"self"` for the master); None when it is gone.
pub(crate) fn usage(pid: &str) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat, clock_ticks(), page_size(), boot_time()?)
}

/// Fields of /proc/PID/stat after the command (which may hold spaces and parentheses,
/// hence the last ')'): state is field 3, utime 14, stime 15, starttime 22, vsize 23,
/// rss 24 (proc(5)).
fn parse_stat(stat: &str, ticks: f64, page: u64, boot: f64) -> Option<Usage> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Usage {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        started_at: boot + field(22)? as f64 / ticks,
        vsz_bytes: field(23)?,
        rss_bytes: field(24)? * page,
    })
}

fn clock_ticks() -> f64 {
    sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64
}

fn page_size() -> u64 {
    sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64
}

/// When the machine booted, since the epoch (`btime` in /proc/stat).
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|t| t.trim().parse::<f64>().ok())
}

/// The master's open descriptors.
pub(crate) fn open_fds() -> Option<usize> {
    Some(
        std::fs::read_dir("/proc/self/fd")
            .ok()?
            .count()
            .saturating_sub(1),
    )
}

/// Connections dropped because an accept queue was full, in the master's network
/// namespace (TcpExt ListenOverflows in /proc/net/netstat: the kernel counts them per
/// namespace, not per socket).
pub(crate) fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/self/net/netstat").ok()?;
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 \
                    1000 123456789 300 18446744073709551615";
        let usage = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(usage.cpu_seconds, 3.0);
        assert_eq!(usage.started_at, 1_700_000_010.0);
        assert_eq!(usage.vsz_bytes, 123456789);
        assert_eq!(usage.rss_bytes, 300 * 4096);
    }

    #[test]
    fn the_master_reads_its_own_usage() {
        let me = usage("self").unwrap();
        assert!(me.rss_bytes > 0 && me.vsz_bytes >= me.rss_bytes);
        assert!(open_fds().unwrap() >= 3);
    }
}
