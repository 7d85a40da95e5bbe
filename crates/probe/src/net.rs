//! The other sign of a ready server: it holds a connection accepted from one of the
//! sockets. A server busy serving (a gunicorn sync worker or Python's `http.server`
//! under load) is rarely caught blocked in `accept`, `poll` or `select`, but the
//! connections it works on show in `/proc/PID/net/{tcp,tcp6,unix}`: a TCP socket whose
//! local address is the listening socket's (its port, for a wildcard listener), not
//! itself listening; a unix stream socket with the listening socket's path, connected.

use std::collections::HashSet;

use nix::unistd::Pid;

/// One row of /proc/PID/net/{tcp,tcp6,unix} that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    inode: u64,
    /// "0100007F:1F90" for TCP (hex address and port), the path for unix sockets.
    local: String,
    listening: bool,
}

/// Whether one of `held` (socket inodes a process holds besides the listening ones) is a
/// connection accepted from one of `listening`, as `pid`'s network namespace shows them.
pub(crate) fn holds_accepted(pid: Pid, listening: &[u64], held: &[u64]) -> bool {
    let held: HashSet<u64> = held.iter().copied().collect();
    let keep = |inode: u64| listening.contains(&inode) || held.contains(&inode);
    let rows = |table, parse| rows(pid, table, parse, &keep);
    ["tcp", "tcp6"]
        .into_iter()
        .any(|table| matches(&rows(table, tcp_row), listening, &held, tcp_same))
        || matches(&rows("unix", unix_row), listening, &held, |a, b| a == b)
}

/// The rows of one table that matter: those of the listening sockets and of the held
/// ones. Read a line at a time into one buffer: a busy host's table is megabytes, and
/// the master must not hold a copy of it.
fn rows(
    pid: Pid,
    table: &str,
    parse: fn(&str) -> Option<Row>,
    keep: &dyn Fn(u64) -> bool,
) -> Vec<Row> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/net/{table}")) else {
        return Vec::new();
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    let mut rows = Vec::new();
    let _ = reader.read_line(&mut line); // the header
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return rows,
            Ok(_) => rows.extend(parse(&line).filter(|row| keep(row.inode))),
        }
    }
}

fn matches(
    rows: &[Row],
    listening: &[u64],
    held: &HashSet<u64>,
    same: fn(&str, &str) -> bool,
) -> bool {
    let addresses: Vec<&str> = rows
        .iter()
        .filter(|row| row.listening && listening.contains(&row.inode))
        .map(|row| row.local.as_str())
        .collect();
    !addresses.is_empty()
        && rows.iter().any(|row| {
            !row.listening
                && held.contains(&row.inode)
                && addresses.iter().any(|address| same(address, &row.local))
        })
}

/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`; state 0A is LISTEN.
fn tcp_row(line: &str) -> Option<Row> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(Row {
        inode: fields.get(9)?.parse().ok()?,
        local: (*fields.get(1)?).to_owned(),
        listening: *fields.get(3)? == "0A",
    })
}

/// A connection's local address against a listener's: the same, or the same port when
/// the listener took every address (0.0.0.0, ::).
fn tcp_same(listener: &str, connection: &str) -> bool {
    let Some((address, port)) = listener.rsplit_once(':') else {
        return false;
    };
    let wildcard = address.bytes().all(|b| b == b'0');
    listener == connection
        || (wildcard && connection.rsplit_once(':').map(|(_, p)| p) == Some(port))
}

/// `Num RefCount Protocol Flags Type St Inode Path`; a listening socket has the
/// `__SO_ACCEPTCON` flag (00010000) and an accepted one the listener's path, state 03.
fn unix_row(line: &str) -> Option<Row> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
    Some(Row {
        inode: fields.get(6)?.parse().ok()?,
        local: (*fields.get(7)?).to_owned(),
        listening: flags & 0x0001_0000 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_rows_and_wildcard_listeners() {
        let listen = tcp_row("   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0").unwrap();
        let accepted = tcp_row("   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1").unwrap();
        assert_eq!((listen.inode, listen.listening), (1111, true));
        assert_eq!((accepted.inode, accepted.listening), (2222, false));
        assert!(tcp_same(&listen.local, &accepted.local));
        assert!(!tcp_same("0100007F:1F90", "0100007F:1F91"));
        assert!(!tcp_same("0200007F:1F90", "0100007F:1F90"));
        let held: HashSet<u64> = [2222].into();
        assert!(matches(
            &[listen.clone(), accepted],
            &[1111],
            &held,
            tcp_same
        ));
        assert!(!matches(&[listen], &[1111], &held, tcp_same));
    }

    #[test]
    fn unix_rows() {
        let listen =
            unix_row("0000000000000000: 00000002 00000000 00010000 0001 01 3333 /run/app.sock")
                .unwrap();
        let accepted =
            unix_row("0000000000000000: 00000003 00000000 00000000 0001 03 4444 /run/app.sock")
                .unwrap();
        assert!(listen.listening && !accepted.listening);
        let held: HashSet<u64> = [4444].into();
        assert!(matches(&[listen, accepted], &[3333], &held, |a, b| a == b));
    }
}
