//! A minimal HTTP/1.1 client for the demo worker and the examples.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, as sent.
    pub headers: Vec<(String, String)>,
    /// The body (as much as Content-Length said).
    pub body: String,
    /// The server said `Connection: close`.
    pub closes: bool,
}

impl Response {
    /// The value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The generation in a demo hello body.
    pub fn generation(&self) -> u64 {
        let words: Vec<&str> = self.body.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| *w == "generation")
            .expect("a hello body");
        words[at + 1].parse().unwrap()
    }
}

/// A minimal HTTP/1.1 client over one connection, reusable for keep-alive.
#[derive(Debug)]
pub struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connects (within 5 s); reads time out after 30 s.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream: BufReader::new(stream),
        })
    }

    /// Sends a GET with `Connection: close` or `keep-alive` and reads the whole response.
    pub fn get(&mut self, path: &str, close: bool) -> std::io::Result<Response> {
        let connection = if close { "close" } else { "keep-alive" };
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: {connection}\r\n\r\n"
        ))?;
        self.response()
    }

    /// Sends raw bytes: a request written by hand.
    pub fn send(&mut self, raw: &str) -> std::io::Result<()> {
        self.stream.get_mut().write_all(raw.as_bytes())
    }

    /// Reads one whole response.
    pub fn response(&mut self) -> std::io::Result<Response> {
        let broken =
            |what: &str| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned());
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line)? == 0 {
            return Err(broken("connection closed before a response"));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| broken("bad status line"))?;
        let (mut length, mut closes, mut headers) = (0usize, false, Vec::new());
        loop {
            let mut header = String::new();
            if self.stream.read_line(&mut header)? == 0 {
                return Err(broken("connection closed in the headers"));
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().map_err(|_| broken("bad length"))?,
                    "connection" => closes = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
                headers.push((name.trim().to_owned(), value.to_owned()));
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            closes,
        })
    }

    /// Asserts that the server closed the connection (EOF, not a hang, no more bytes).
    pub fn assert_eof(&mut self) {
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes after close: {rest:?}"),
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

/// One GET on a new connection, closed after the response.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    Client::connect(addr)?.get(path, true)
}
