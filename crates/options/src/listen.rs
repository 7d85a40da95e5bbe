use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr};

use crate::OptionError;

/// Where a listening socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP socket on an IPv4 or IPv6 address.
    Tcp(SocketAddr),
    /// A UNIX stream socket at a path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One `--listen` value: an address and the name it carries in LISTEN_FDNAMES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The name given as `NAME=ADDR`, if any.
    pub name: Option<String>,
    /// The address.
    pub addr: ListenAddr,
}

impl ListenSpec {
    /// The name this socket carries in LISTEN_FDNAMES: the given one, else `listenN`
    /// after its position (0-based) among the configured sockets.
    pub fn fd_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("listen{index}"))
    }
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name}={}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Checks a name against what LISTEN_FDNAMES can carry (as sd_listen_fds_with_names
/// and systemd's FileDescriptorName= require).
pub(crate) fn validate_fd_name(name: &str) -> Result<(), OptionError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else if !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        "only printable ASCII without ':' or spaces is allowed"
    } else {
        return Ok(());
    };
    Err(OptionError::SocketName {
        name: name.to_owned(),
        reason,
    })
}

impl FromStr for ListenSpec {
    type Err = OptionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| OptionError::Listen {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        // A name never contains ':', so an '=' before the first ':' separates it.
        let (name, addr) = match value.split_once('=') {
            Some((name, addr)) if !name.contains(':') && !name.contains('[') => {
                validate_fd_name(name)?;
                (Some(name.to_owned()), addr)
            }
            _ => (None, value),
        };
        let addr = if let Some(path) = addr.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(invalid("the unix socket path is empty"));
            }
            ListenAddr::Unix(PathBuf::from(path))
        } else {
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected HOST:PORT, [V6]:PORT or unix:PATH"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
            let host = match host {
                "" | "*" => "0.0.0.0",
                host => host,
            };
            let ip = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                v6.parse::<std::net::Ipv6Addr>()
                    .map(std::net::IpAddr::V6)
                    .map_err(|_| invalid("the IPv6 address does not parse"))?
            } else {
                host.parse::<std::net::Ipv4Addr>().map(std::net::IpAddr::V4).map_err(|_| {
                    invalid("the host is not an IPv4 address (write IPv6 as [ADDR]:PORT; host names are not resolved)")
                })?
            };
            ListenAddr::Tcp(SocketAddr::new(ip, port))
        };
        Ok(ListenSpec { name, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let spec: ListenSpec = "127.0.0.1:8000".parse().unwrap();
        assert_eq!(
            spec.addr,
            ListenAddr::Tcp("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(spec.name, None);
        assert_eq!(spec.fd_name(2), "listen2");

        let spec: ListenSpec = "web=[::1]:80".parse().unwrap();
        assert_eq!(spec.addr, ListenAddr::Tcp("[::1]:80".parse().unwrap()));
        assert_eq!(spec.fd_name(0), "web");

        let spec: ListenSpec = "admin=unix:/run/app.sock".parse().unwrap();
        assert_eq!(spec.addr, ListenAddr::Unix("/run/app.sock".into()));
        assert_eq!(spec.to_string(), "admin=unix:/run/app.sock");

        let spec: ListenSpec = ":9000".parse().unwrap();
        assert_eq!(spec.addr, ListenAddr::Tcp("0.0.0.0:9000".parse().unwrap()));
    }

    #[test]
    fn rejects_bad_values_with_a_reason() {
        for (value, fragment) in [
            ("127.0.0.1", "expected HOST:PORT"),
            ("127.0.0.1:http", "port"),
            ("localhost:80", "host names are not resolved"),
            ("[::g]:80", "IPv6"),
            ("unix:", "empty"),
            ("a b=127.0.0.1:1", "printable ASCII"),
            ("=127.0.0.1:1", "empty"),
        ] {
            let err = value.parse::<ListenSpec>().unwrap_err().to_string();
            assert!(err.contains(fragment), "{value}: {err}");
        }
    }
}
