//! The little HTTP the stats address speaks with `stats-http`: `GET /` and
//! `GET /metrics`, one request per connection, `Connection: close`.

use super::server::Asked;

/// A whole request, as far as the stats server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    Get(Asked),
    /// Answered with this status and no document.
    Refused(u16),
}

/// The request in `bytes`, once its head has fully arrived (a blank line ends it).
pub(crate) fn parse(bytes: &[u8]) -> Option<Request> {
    let end = find(bytes, b"\r\n\r\n").or_else(|| find(bytes, b"\n\n"))?;
    let head = std::str::from_utf8(&bytes[..end]).ok();
    let line = head.and_then(|h| h.lines().next()).unwrap_or("");
    let mut words = line.split_whitespace();
    let (method, target, version) = (words.next(), words.next(), words.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Some(Request::Refused(400));
    }
    if method != Some("GET") {
        return Some(Request::Refused(405));
    }
    let path = target.unwrap_or("").split('?').next().unwrap_or("");
    Some(match path {
        "/" => Request::Get(Asked::Json),
        "/metrics" => Request::Get(Asked::Metrics),
        "/ready" => Request::Get(Asked::Ready),
        "/alive" => Request::Get(Asked::Alive),
        _ => Request::Refused(404),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The whole response: `status` and `body` (none for an error: its reason instead).
pub(crate) fn response(status: u16, body: Vec<u8>) -> Vec<u8> {
    let content_type = match body.first() {
        Some(b'{') => "application/json",
        // The metrics start with their first HELP line.
        Some(b'#') => "text/plain; version=0.0.4; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    let body = if body.is_empty() {
        format!("{}\n", reason(status)).into_bytes()
    } else {
        body
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_once_their_head_is_whole() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Request::Get(Asked::Json))
        );
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.0\n\n"),
            Some(Request::Get(Asked::Metrics))
        );
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\n\r\n"),
            Some(Request::Refused(405))
        );
        assert_eq!(
            parse(b"GET /env HTTP/1.1\r\n\r\n"),
            Some(Request::Refused(404))
        );
        assert_eq!(
            parse(b"\x00\xff garbage\r\n\r\n"),
            Some(Request::Refused(400))
        );
    }

    #[test]
    fn a_response_says_its_length_and_closes() {
        let text = String::from_utf8(response(200, b"{}".to_vec())).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
        assert!(text.contains("Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
        let text = String::from_utf8(response(404, Vec::new())).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found"));
    }
}
