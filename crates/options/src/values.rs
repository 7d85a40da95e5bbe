use std::{fmt, str::FromStr, time::Duration};

use crate::OptionError;

/// When a freshly started worker counts as ready, which decides when the worker it
/// replaces may be asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyMode {
    /// Ready when the worker sends `READY=1` on NOTIFY_SOCKET, and not before.
    Notify,
    /// Ready when the worker sends `READY=1`, or is seen waiting for connections on
    /// one of its sockets (blocked in accept, or its epoll/poll/select set holding the
    /// socket), whichever comes first. The duration stands in only where neither can
    /// be seen (no sockets, or /proc refused): ready once alive that long.
    Auto(Duration),
    /// Ready when the worker is seen waiting for connections on one of its sockets;
    /// `READY=1` is not needed and not awaited.
    Listening,
    /// Ready when a line of the worker's output (stdout or stderr, which the master
    /// reads) matches the pattern; `READY=1` is not awaited.
    Log(LogPattern),
    /// Ready once the worker has stayed alive this long.
    Delay(Duration),
    /// Ready as soon as it has been started.
    Immediate,
}

impl ReadyMode {
    /// How long a worker must stay alive to count as ready (`delay`), if that is how.
    pub fn ready_after_alive(&self) -> Option<Duration> {
        match *self {
            ReadyMode::Delay(after) => Some(after),
            _ => None,
        }
    }

    /// What stands in for watching a worker wait for connections where that cannot be
    /// seen (a worker with no sockets, or /proc refused): ready once alive this long.
    pub fn unobservable_fallback(&self) -> Option<Duration> {
        match *self {
            ReadyMode::Auto(after) => Some(after),
            ReadyMode::Listening => Some(AUTO_FALLBACK),
            _ => None,
        }
    }

    /// Whether `READY=1` from a worker makes it ready.
    pub fn believes_ready_message(&self) -> bool {
        matches!(self, ReadyMode::Notify | ReadyMode::Auto(_))
    }

    /// Whether a worker seen waiting for connections on its sockets is ready.
    pub fn observes_listening(&self) -> bool {
        matches!(self, ReadyMode::Auto(_) | ReadyMode::Listening)
    }

    /// The pattern a line of output must match, if that is how.
    pub fn log_pattern(&self) -> Option<&LogPattern> {
        match self {
            ReadyMode::Log(pattern) => Some(pattern),
            _ => None,
        }
    }
}

/// The regex of `ready = log:REGEX`, compiled once when the option is read.
#[derive(Debug, Clone)]
pub struct LogPattern(regex::Regex);

impl LogPattern {
    /// Whether `line` (one line of a worker's output, without its newline) matches.
    pub fn is_match(&self, line: &str) -> bool {
        self.0.is_match(line)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for LogPattern {
    fn eq(&self, other: &LogPattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for LogPattern {}

/// `auto`'s stand-in when listening cannot be seen.
const AUTO_FALLBACK: Duration = Duration::from_secs(1);

impl Default for ReadyMode {
    fn default() -> Self {
        ReadyMode::Auto(AUTO_FALLBACK)
    }
}

impl fmt::Display for ReadyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyMode::Notify => f.write_str("notify"),
            ReadyMode::Auto(d) => write!(f, "auto:{}", d.as_millis()),
            ReadyMode::Delay(d) => write!(f, "delay:{}", d.as_millis()),
            ReadyMode::Immediate => f.write_str("immediate"),
            ReadyMode::Listening => f.write_str("listening"),
            ReadyMode::Log(pattern) => write!(f, "log:{}", pattern.as_str()),
        }
    }
}

impl FromStr for ReadyMode {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let millis = |ms: &str| {
            ms.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| OptionError::Ready(value.to_owned()))
        };
        match value.split_once(':') {
            None if value == "notify" => Ok(ReadyMode::Notify),
            None if value == "immediate" => Ok(ReadyMode::Immediate),
            None if value == "listening" => Ok(ReadyMode::Listening),
            None if value == "auto" => Ok(ReadyMode::default()),
            Some(("auto", ms)) => Ok(ReadyMode::Auto(millis(ms)?)),
            Some(("delay", ms)) => Ok(ReadyMode::Delay(millis(ms)?)),
            Some(("log", pattern)) if !pattern.is_empty() => regex::Regex::new(pattern)
                .map(|regex| ReadyMode::Log(LogPattern(regex)))
                .map_err(|e| OptionError::ReadyPattern {
                    pattern: pattern.to_owned(),
                    reason: e.to_string(),
                }),
            _ => Err(OptionError::Ready(value.to_owned())),
        }
    }
}

/// The signal that asks a worker to stop gracefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal(i32);

/// Signal names and numbers on Linux (x86, arm and the other architectures that share
/// the generic numbering), limited to those a worker can sensibly be asked to stop with.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("TERM", 15),
    ("WINCH", 28),
];

impl StopSignal {
    /// SIGTERM, the default.
    pub const TERM: StopSignal = StopSignal(15);

    /// The signal number.
    pub fn number(self) -> i32 {
        self.0
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal::TERM
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match SIGNALS.iter().find(|(_, n)| *n == self.0) {
            Some((name, _)) => write!(f, "SIG{name}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl FromStr for StopSignal {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let upper = value.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        SIGNALS
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|(_, n)| *n)
            .or_else(|| {
                bare.parse()
                    .ok()
                    .filter(|n| SIGNALS.iter().any(|(_, s)| s == n))
            })
            .map(StopSignal)
            .ok_or_else(|| OptionError::Signal(value.to_owned()))
    }
}

/// Parses `30` (seconds), `1.5s`, `250ms`, `2m` or `1h`.
pub fn parse_duration(value: &str) -> Result<Duration, OptionError> {
    let err = || OptionError::Duration(value.to_owned());
    let trimmed = value.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| err())?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_modes() {
        assert_eq!("notify".parse(), Ok(ReadyMode::Notify));
        assert_eq!("immediate".parse(), Ok(ReadyMode::Immediate));
        assert_eq!("auto".parse(), Ok(ReadyMode::Auto(Duration::from_secs(1))));
        assert_eq!(
            "delay:250".parse(),
            Ok(ReadyMode::Delay(Duration::from_millis(250)))
        );
        assert_eq!(
            ReadyMode::Delay(Duration::from_millis(250)).to_string(),
            "delay:250"
        );
        assert!("delay".parse::<ReadyMode>().is_err());
        assert!("delay:x".parse::<ReadyMode>().is_err());
        assert!("notify:3".parse::<ReadyMode>().is_err());
    }

    #[test]
    fn signals() {
        assert_eq!("SIGTERM".parse(), Ok(StopSignal::TERM));
        assert_eq!("term".parse(), Ok(StopSignal::TERM));
        assert_eq!("3".parse::<StopSignal>().unwrap().to_string(), "SIGQUIT");
        assert!("SIGFOO".parse::<StopSignal>().is_err());
        assert!("64".parse::<StopSignal>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
    }
}

/// What the master does with its workers' stdout and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerOutput {
    /// Read through a pipe per worker, each line sent on with the worker's id,
    /// generation and pid (to the journal under systemd, else to the master's stderr).
    #[default]
    Capture,
    /// Left alone: workers write where the master does (a tty, a file of their own).
    Inherit,
}

impl fmt::Display for WorkerOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerOutput::Capture => "capture",
            WorkerOutput::Inherit => "inherit",
        })
    }
}

impl FromStr for WorkerOutput {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "capture" => Ok(WorkerOutput::Capture),
            "inherit" => Ok(WorkerOutput::Inherit),
            _ => Err(OptionError::WorkerOutput(value.to_owned())),
        }
    }
}

/// What SIGHUP does to the running workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReloadStrategy {
    /// Start a whole new generation; stop the old one once every new worker is ready.
    #[default]
    Graceful,
    /// Replace one worker at a time, each old one stopped once its successor is ready.
    Chain,
}

impl fmt::Display for ReloadStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReloadStrategy::Graceful => "graceful",
            ReloadStrategy::Chain => "chain",
        })
    }
}

impl FromStr for ReloadStrategy {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "graceful" => Ok(ReloadStrategy::Graceful),
            "chain" => Ok(ReloadStrategy::Chain),
            _ => Err(OptionError::ReloadStrategy(value.to_owned())),
        }
    }
}

/// Where a daemonized master sends its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Appended to this file.
    File(std::path::PathBuf),
    /// Sent as datagrams to this `HOST:PORT`.
    Udp(String),
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogTarget::File(path) => write!(f, "{}", path.display()),
            LogTarget::Udp(addr) => write!(f, "udp:{addr}"),
        }
    }
}

impl FromStr for LogTarget {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.strip_prefix("udp:") {
            Some(addr)
                if addr.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok()
                }) =>
            {
                Ok(LogTarget::Udp(addr.to_owned()))
            }
            Some(_) => Err(OptionError::LogTarget(value.to_owned())),
            None if value.is_empty() => Err(OptionError::LogTarget(value.to_owned())),
            None => Ok(LogTarget::File(value.into())),
        }
    }
}

#[cfg(test)]
mod target_tests {
    use super::*;

    #[test]
    fn log_targets_and_strategies_parse() {
        assert_eq!(
            "udp:127.0.0.1:5140".parse::<LogTarget>(),
            Ok(LogTarget::Udp("127.0.0.1:5140".into()))
        );
        assert_eq!(
            "/var/log/app.log".parse::<LogTarget>(),
            Ok(LogTarget::File("/var/log/app.log".into()))
        );
        assert!("udp:nohost".parse::<LogTarget>().is_err());
        assert!("".parse::<LogTarget>().is_err());
        assert_eq!("chain".parse(), Ok(ReloadStrategy::Chain));
        assert!("brutal".parse::<ReloadStrategy>().is_err());
    }
}
