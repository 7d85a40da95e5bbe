//! The `stats` address: where the stats server (uWSGI's `--stats`) listens.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
};

use crate::OptionError;

/// Where the stats server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsAddr {
    /// A TCP address. `:PORT` alone means 127.0.0.1 (uWSGI binds every interface):
    /// the stats say what runs, so they stay local unless a host is written.
    Tcp(SocketAddr),
    /// A unix stream socket, made mode 0600 (the master's user only).
    Unix(PathBuf),
    /// The socket of that name handed over by systemd (LISTEN_FDNAMES, the `.socket`
    /// unit's FileDescriptorName=).
    Named(String),
}

impl fmt::Display for StatsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsAddr::Tcp(addr) => write!(f, "{addr}"),
            StatsAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            StatsAddr::Named(name) => write!(f, "fd:{name}"),
        }
    }
}

impl FromStr for StatsAddr {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let invalid = |reason: &str| OptionError::Stats {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(name) = value.strip_prefix("fd:") {
            crate::listen::validate_fd_name(name)?;
            return Ok(StatsAddr::Named(name.to_owned()));
        }
        if let Some(path) = value.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("the unix socket path is empty"));
            }
            return Ok(StatsAddr::Unix(PathBuf::from(path)));
        }
        // uWSGI reads an address with a '/' (and no ':') as a unix socket path.
        if value.contains('/') && !value.contains(':') {
            return Ok(StatsAddr::Unix(PathBuf::from(value)));
        }
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected HOST:PORT, :PORT, unix:PATH or fd:NAME"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
        let ip = match host {
            "" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host => match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                Some(v6) => v6
                    .parse::<std::net::Ipv6Addr>()
                    .map(IpAddr::V6)
                    .map_err(|_| invalid("the IPv6 address does not parse"))?,
                None => host
                    .parse::<Ipv4Addr>()
                    .map(IpAddr::V4)
                    .map_err(|_| invalid("the host is not an IPv4 address (write IPv6 as [ADDR]:PORT; host names are not resolved)"))?,
            },
        };
        Ok(StatsAddr::Tcp(SocketAddr::new(ip, port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_addresses_read_as_uwsgi_writes_them() {
        let tcp = |s: &str| StatsAddr::Tcp(s.parse().unwrap());
        assert_eq!("127.0.0.1:1717".parse(), Ok(tcp("127.0.0.1:1717")));
        assert_eq!(":1717".parse(), Ok(tcp("127.0.0.1:1717")));
        assert_eq!("*:1717".parse(), Ok(tcp("0.0.0.0:1717")));
        assert_eq!("[::1]:9".parse(), Ok(tcp("[::1]:9")));
        let unix = StatsAddr::Unix("/run/app/stats.sock".into());
        assert_eq!("unix:/run/app/stats.sock".parse(), Ok(unix.clone()));
        assert_eq!("/run/app/stats.sock".parse(), Ok(unix));
        assert_eq!("fd:stats".parse(), Ok(StatsAddr::Named("stats".into())));
        assert!("localhost:1717".parse::<StatsAddr>().is_err());
        assert!("1717".parse::<StatsAddr>().is_err());
        assert!("unix:".parse::<StatsAddr>().is_err());
    }
}
