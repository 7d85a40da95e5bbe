//! Just enough HTTP/1.1 for the demo: keep-alive, Content-Length bodies,
//! and closing connections during a drain without racing the client.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{shutdown, Shutdown};

use crate::shared::{notify, ConnGuard, Shared, DRAIN_WINDOW};

/// Limit for a stalled peer in the middle of a request or response.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A keep-alive connection idle for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often an idle connection thread looks at the stop flag.
const IDLE_TICK: Duration = Duration::from_millis(100);
const MAX_HEAD: usize = 16 * 1024;
const MAX_SLOW_MS: u64 = 600_000;

/// An accepted connection: TCP or UNIX stream.
pub(crate) trait Stream: Read + Write + AsFd + Send + 'static {}
impl<T: Read + Write + AsFd + Send + 'static> Stream for T {}

#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    keep_alive: bool,
}

/// Why a request could not be read.
enum Failed {
    /// Answer with this status, then close.
    Reject(u16),
    /// The peer went away or stalled: just close.
    Gone,
}

/// Serves `stream` on a thread of its own, counted until the thread ends.
pub(crate) fn spawn_connection<S: Stream>(stream: S, shared: &Arc<Shared>) -> io::Result<()> {
    // Counted before the thread exists, so a SIGTERM handled right after this
    // accept already waits for it.
    let guard = ConnGuard::new(shared);
    thread::Builder::new()
        .name("conn".into())
        .spawn(move || serve(stream, &guard.0))?;
    Ok(())
}

/// Serves one connection until either side closes it.
pub(crate) fn serve<S: Stream>(mut stream: S, shared: &Shared) {
    // Bytes read past the current request (a pipelined next request).
    let mut buf = Vec::new();
    loop {
        if buf.is_empty() && !wait_for_request(&stream, shared) {
            break;
        }
        let req = match read_request(&mut stream, &mut buf) {
            Ok(Some(req)) => req,
            Ok(None) | Err(Failed::Gone) => break,
            Err(Failed::Reject(status)) => {
                let body = format!("{}\n", reason(status).to_lowercase());
                if respond(&mut stream, status, &body, true).is_ok() {
                    lingering_close(&mut stream);
                }
                break;
            }
        };
        if shared.log_requests {
            log!(
                "steward-demo: pid {} request {} {}",
                shared.pid,
                req.method,
                req.target
            );
        }
        let (status, body) = route(&req, shared);
        // Checked after the handler ran: a request that was in flight when
        // SIGTERM came is answered in full, and told this is the last one.
        let close = !req.keep_alive || shared.stopping();
        if respond(&mut stream, status, &body, close).is_err() {
            break;
        }
        if close {
            lingering_close(&mut stream);
            break;
        }
    }
}

/// Waits, without reading, until the client starts its next request.
/// `false` means close: idle too long, or the drain window is over.
fn wait_for_request(stream: &impl AsFd, shared: &Shared) -> bool {
    let idle_since = Instant::now();
    loop {
        let deadline = match shared.stop_at() {
            // A client may be reusing this connection right now, so it stays
            // open a little while after the stop; a request that arrives in
            // that window is answered (with `Connection: close`).
            Some(stop) => stop + DRAIN_WINDOW,
            None => idle_since + IDLE_TIMEOUT,
        };
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return false;
        };
        // Short ticks so a SIGTERM is noticed quickly; no busy loop.
        let timeout = PollTimeout::try_from(left.min(IDLE_TICK)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => {}
            // Data, EOF or an error: the read that follows tells which.
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
}

/// Reads one request head and discards its body. `Ok(None)`: clean EOF.
fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<Request>, Failed> {
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err(Failed::Reject(431));
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(Failed::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Failed::Gone),
        }
    };
    let head: Vec<u8> = buf.drain(..head_len).collect();
    let (req, body_len) = parse_head(&head).ok_or(Failed::Reject(400))?;

    let buffered = body_len.min(buf.len() as u64) as usize;
    buf.drain(..buffered);
    let rest = body_len - buffered as u64;
    match io::copy(&mut stream.take(rest), &mut io::sink()) {
        Ok(n) if n == rest => Ok(Some(req)),
        _ => Err(Failed::Gone),
    }
}

/// Parses the request line and headers; `None` for anything malformed.
fn parse_head(head: &[u8]) -> Option<(Request, u64)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if parts.next().is_some() || !is_token(method) || !target.starts_with('/') {
        return None;
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return None,
    };
    let (mut close, mut keep_alive, mut body_len) = (false, false, None::<u64>);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if !is_token(name) {
            return None;
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let len = value.parse().ok()?;
            if body_len.is_some_and(|l| l != len) {
                return None;
            }
            body_len = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not supported; refusing beats misparsing.
            return None;
        }
    }
    let keep_alive = !close && (!http10 || keep_alive);
    let req = Request {
        method: method.into(),
        target: target.into(),
        keep_alive,
    };
    Some((req, body_len.unwrap_or(0)))
}

fn route(req: &Request, shared: &Shared) -> (u16, String) {
    let answer = answer(req, shared);
    shared.count_request();
    answer
}

fn answer(req: &Request, shared: &Shared) -> (u16, String) {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let param = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    match (req.method.as_str(), path) {
        ("GET", "/") => (200, shared.hello()),
        ("GET", "/slow") => match param("ms").and_then(|ms| ms.parse::<u64>().ok()) {
            Some(ms) => {
                thread::sleep(Duration::from_millis(ms.min(MAX_SLOW_MS)));
                (200, shared.hello())
            }
            None => (400, "bad request: /slow?ms=N\n".into()),
        },
        ("GET", "/fds") => {
            let fds: Vec<String> = shared.startup_fds.iter().map(i32::to_string).collect();
            (200, format!("{}\n", fds.join(" ")))
        }
        ("GET", "/notify") => match param("state").and_then(percent_decode) {
            Some(state) => match notify(&state) {
                Ok(()) => (200, "sent\n".into()),
                Err(e) => (502, format!("notify failed: {e}\n")),
            },
            None => (400, "bad request: /notify?state=TEXT\n".into()),
        },
        ("GET", "/wedge") => {
            shared
                .wedged
                .store(true, std::sync::atomic::Ordering::Relaxed);
            (200, "heartbeats stopped\n".into())
        }
        ("GET", "/leak") => match param("mb").and_then(|mb| mb.parse::<usize>().ok()) {
            Some(mb) => {
                let held = shared.leak(mb);
                (200, format!("holding {held} MB\n"))
            }
            None => (400, "bad request: /leak?mb=N\n".into()),
        },
        _ => (404, "not found\n".into()),
    }
}

/// Decodes `%XX` escapes (a `+` stays a `+`).
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Error",
    }
}

fn respond(stream: &mut impl Write, status: u16, body: &str, close: bool) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{body}",
        reason(status),
        body.len(),
        if close { "close" } else { "keep-alive" },
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

/// Closing a socket that still has unread input makes the kernel send a
/// reset, which can destroy the response before the client has read it.
/// So: half-close (this is the connection, never the shared listener), then
/// swallow what the client still sends until it closes, for a bounded time.
fn lingering_close<S: Stream>(stream: &mut S) {
    if shutdown(stream.as_fd().as_raw_fd(), Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut sink = [0u8; 4096];
    while let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        if !matches!(stream.read(&mut sink), Ok(n) if n > 0) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Option<(Request, u64)> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(head("GET / HTTP/1.1\r\n\r\n").unwrap().0.keep_alive);
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .0
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().0.keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .0
                .keep_alive
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert_eq!(
            head("POST /x HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
                .unwrap()
                .1,
            12
        );
        for bad in [
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET x HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(head(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("READY%3D1%0aa+b").unwrap(), b"READY=1\na+b");
        assert!(percent_decode("%4").is_none());
        assert!(percent_decode("%zz").is_none());
    }
}
