//! Just enough HTTP/1.1 for S3 clients: keep-alive, Content-Length and chunked request
//! bodies, `Expect: 100-continue`, and one `write_all` per response.
//!
//! Hand-written over httparse rather than hyper's server: hyper 1.x is in the tree only with
//! its client features, and turning on `server` would change its feature set and so rebuild
//! the whole AWS SDK for every test and example build (minutes on 2 cores). httparse is
//! already built with the same features.

use std::borrow::Cow;
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Requests above this are refused: the benchmark's objects are small.
const MAX_BODY: usize = 64 << 20;
const MAX_HEADERS: usize = 64;

pub struct Request {
    pub method: String,
    /// The path, still percent-encoded, without the query.
    pub path: String,
    /// The raw query string (after `?`), still percent-encoded.
    pub query: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(Cow<'static, str>, String)>,
    pub body: Vec<u8>,
    /// HEAD: announce this length but send no body.
    pub head_length: Option<u64>,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Vec::new(), head_length: None }
    }

    pub fn with_body(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        let mut r = Response::new(status);
        r.headers.push((Cow::Borrowed("Content-Type"), content_type.to_string()));
        r.body = body;
        r
    }

    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        501 => "Not Implemented",
        _ => "Status",
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One connection's read side: bytes read past the last request stay in `buf` for the next.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Conn {
        Conn { stream, buf: Vec::with_capacity(16 << 10) }
    }

    /// Read more bytes; false at a clean end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(16 << 10);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// The next request, or None when the client closed the connection between requests.
    pub async fn read_request(&mut self) -> io::Result<Option<Request>> {
        let (head_len, mut req, content_length, chunked) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Request::new(&mut headers);
            match parsed.parse(&self.buf).map_err(|e| bad(&e.to_string()))? {
                httparse::Status::Complete(n) => {
                    let (path, query) = match parsed.path.unwrap_or("/").split_once('?') {
                        Some((p, q)) => (p.to_string(), q.to_string()),
                        None => (parsed.path.unwrap_or("/").to_string(), String::new()),
                    };
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    let req = Request {
                        method: parsed.method.unwrap_or("GET").to_string(),
                        path,
                        query,
                        keep_alive: parsed.version == Some(1),
                        headers,
                        body: Vec::new(),
                    };
                    let connection = req.header("connection").map(str::to_ascii_lowercase);
                    let mut r = req;
                    if connection.as_deref() == Some("close") {
                        r.keep_alive = false;
                    } else if connection.as_deref() == Some("keep-alive") {
                        r.keep_alive = true;
                    }
                    let chunked =
                        r.header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
                    let len = match r.header("content-length") {
                        Some(v) => v.trim().parse::<usize>().map_err(|_| bad("bad Content-Length"))?,
                        None => 0,
                    };
                    break (n, r, len, chunked);
                }
                httparse::Status::Partial => {
                    if !self.fill().await? {
                        return if self.buf.is_empty() { Ok(None) } else { Err(bad("truncated request head")) };
                    }
                }
            }
        };
        if content_length > MAX_BODY {
            return Err(bad("body too large"));
        }
        let wants_body = chunked || content_length > 0;
        if wants_body && req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        if chunked {
            let (body, used) = loop {
                if let Some(done) = decode_chunked(&self.buf[head_len..])? {
                    break done;
                }
                if self.buf.len() - head_len > MAX_BODY * 2 {
                    return Err(bad("body too large"));
                }
                if !self.fill().await? {
                    return Err(bad("truncated chunked body"));
                }
            };
            req.body = body;
            self.buf.drain(..head_len + used);
        } else {
            while self.buf.len() < head_len + content_length {
                if !self.fill().await? {
                    return Err(bad("truncated body"));
                }
            }
            req.body = self.buf[head_len..head_len + content_length].to_vec();
            self.buf.drain(..head_len + content_length);
        }
        Ok(Some(req))
    }

    pub async fn write_response(&mut self, r: &Response, request_id: u64, keep_alive: bool) -> io::Result<()> {
        use std::fmt::Write;
        let mut head = String::with_capacity(256);
        let _ = write!(head, "HTTP/1.1 {} {}\r\nx-amz-request-id: {request_id:016X}\r\n", r.status, reason(r.status));
        let _ = write!(head, "Content-Length: {}\r\n", r.head_length.unwrap_or(r.body.len() as u64));
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        for (n, v) in &r.headers {
            let _ = write!(head, "{n}: {v}\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if r.head_length.is_none() {
            out.extend_from_slice(&r.body);
        }
        self.stream.write_all(&out).await
    }
}

/// A complete chunked body at the start of `b` (chunk extensions and trailers ignored):
/// the decoded bytes and how many input bytes it took, or None if more input is needed.
fn decode_chunked(b: &[u8]) -> io::Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&b[at..]) else { return Ok(None) };
        let line = std::str::from_utf8(&b[at..at + eol]).map_err(|_| bad("bad chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find_crlf(&b[at..]) else { return Ok(None) };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if b.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&b[at..at + size]);
        at += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// `Content-Encoding: aws-chunked` payloads (the SDKs' streaming checksums) use the same
/// framing as chunked transfer encoding inside the body.
pub fn decode_aws_chunked(body: &[u8]) -> Option<Vec<u8>> {
    decode_chunked(body).ok().flatten().map(|(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let raw = b"5;chunk-signature=ab\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\nNEXT";
        let (body, used) = decode_chunked(raw).unwrap().unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(&raw[used..], b"NEXT");
        assert!(decode_chunked(b"5\r\nhel").unwrap().is_none());
    }
}
