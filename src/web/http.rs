//! HTTP/1.1 as the front speaks it: request heads parsed by httparse, with the card's
//! limits, and responses written out with their length.
//!
//! Only what a browser or a script needs: GET, HEAD and POST, bodies with a
//! `Content-Length` (no chunked uploads), keep-alive. Anything else gets a clear status.

use std::fmt::Write as _;

/// Largest request head (request line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// Largest body of an ordinary request (form posts, certificate uploads).
pub const MAX_BODY: usize = 1024 * 1024;
/// The one path whose body streams to its handler: firmware images.
pub const STREAMED: &str = "/firmware/upload";
/// Largest streamed body: the largest image, and the form's framing around it.
pub const MAX_STREAM: usize = crate::firmware::image::MAX_IMAGE as usize + 64 * 1024;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// HTTP/1.0 (0) or HTTP/1.1 (1).
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    /// Bytes the head took in the buffer.
    pub len: usize,
    pub content_length: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the answer, as the client asked.
    pub fn keep_alive(&self) -> bool {
        let tokens = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.minor == 0 {
            tokens.contains("keep-alive")
        } else {
            !tokens.contains("close")
        }
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What can be wrong with a head, each with the status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// More bytes are needed.
    Partial,
    /// 400: not HTTP, or a header that makes no sense.
    Bad(&'static str),
    /// 431: head over [`MAX_HEAD`] or too many headers.
    HeadTooLarge,
    /// 413: body over the limit for its path.
    BodyTooLarge,
    /// 413: an upload over [`MAX_STREAM`].
    UploadTooLarge,
    /// 411: a body without a length (chunked).
    LengthRequired,
    /// 505
    Version,
}

impl Refusal {
    /// The status line's code and a sentence for the body.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::Partial => (400, "Incomplete request."),
            Refusal::Bad(why) => (400, why),
            Refusal::HeadTooLarge => (431, "Request headers too large (16 KiB at most)."),
            Refusal::BodyTooLarge => (413, "Request body too large (1 MiB at most)."),
            Refusal::UploadTooLarge => (413, "Upload too large: an image is 16 MiB at most."),
            Refusal::LengthRequired => (
                411,
                "Send the body with a Content-Length; chunked uploads are not accepted.",
            ),
            Refusal::Version => (505, "Only HTTP/1.0 and HTTP/1.1 are spoken here."),
        }
    }
}

/// How a request's body is taken in. Ordinary requests are read whole into memory, up to
/// a limit, before a handler sees them; a firmware upload goes to its handler at once,
/// and its body follows as it arrives ([`super::front`]), never whole in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPolicy {
    InMemory { limit: usize },
    Stream { limit: usize },
}

/// The body policy of a request, by its head.
pub fn body_policy(head: &Head) -> BodyPolicy {
    if head.method == "POST" && head.path() == STREAMED {
        BodyPolicy::Stream { limit: MAX_STREAM }
    } else {
        BodyPolicy::InMemory { limit: MAX_BODY }
    }
}

/// Parses the head at the start of `buf`.
pub fn parse_head(buf: &[u8]) -> Result<Head, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Refusal::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Err(Refusal::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(Refusal::Version),
        Err(_) => return Err(Refusal::Bad("Malformed request.")),
    };
    if len > MAX_HEAD {
        return Err(Refusal::HeadTooLarge);
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("").to_owned();
    if !target.starts_with('/') {
        return Err(Refusal::Bad(
            "The request target must be a path starting with /.",
        ));
    }
    let minor = req.version.unwrap_or(1);
    let mut list = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| Refusal::Bad("A header value is not text."))?;
        list.push((h.name.to_owned(), value.trim().to_owned()));
    }
    let mut head = Head {
        method,
        target,
        minor,
        headers: list,
        len,
        content_length: 0,
    };
    if head.header("transfer-encoding").is_some() {
        return Err(Refusal::LengthRequired);
    }
    let mut lengths = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>());
    if let Some(first) = lengths.next() {
        let first = first.map_err(|_| Refusal::Bad("Content-Length is not a number."))?;
        if lengths.any(|other| other != Ok(first)) {
            return Err(Refusal::Bad("Conflicting Content-Length headers."));
        }
        head.content_length = first;
    }
    if minor == 1 && head.header("host").is_none() {
        return Err(Refusal::Bad("HTTP/1.1 requests need a Host header."));
    }
    match body_policy(&head) {
        BodyPolicy::InMemory { limit } if head.content_length > limit => {
            return Err(Refusal::BodyTooLarge)
        }
        BodyPolicy::Stream { limit } if head.content_length > limit => {
            return Err(Refusal::UploadTooLarge)
        }
        _ => {}
    }
    Ok(head)
}

/// The reason phrase of the statuses the card sends.
fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The bytes of a whole response. Headers that the front owns (length, connection) are
/// set here and dropped from `headers`; a header with a line break is dropped, so a value
/// can never smuggle in another header. A HEAD request gets the length but no body.
pub fn write_response(
    code: u16,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = String::with_capacity(256 + headers.len() * 48);
    let _ = write!(out, "HTTP/1.1 {code} {}\r\n", reason(code));
    for (name, value) in headers {
        let owned = [
            "content-length",
            "connection",
            "transfer-encoding",
            "keep-alive",
        ];
        if owned.iter().any(|o| name.eq_ignore_ascii_case(o))
            || name.contains(['\r', '\n', ':'])
            || value.contains(['\r', '\n'])
        {
            continue;
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(
        out,
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// A short plain-text answer the front gives by itself (refusals, busy).
pub fn plain(code: u16, text: &str, keep_alive: bool) -> Vec<u8> {
    let headers = [
        (
            "Content-Type".to_string(),
            "text/plain; charset=utf-8".to_string(),
        ),
        ("X-Content-Type-Options".to_string(), "nosniff".to_string()),
        ("Cache-Control".to_string(), "no-store".to_string()),
    ];
    let mut body = text.as_bytes().to_vec();
    body.push(b'\n');
    write_response(code, &headers, &body, false, keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_their_limits() {
        let h = parse_head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nrest").unwrap();
        assert_eq!((h.method.as_str(), h.path(), h.len), ("GET", "/a", 32));
        assert!(h.keep_alive());
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHo"), Err(Refusal::Partial));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\n\r\n"),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            parse_head(b"\x16\x03\x01\x00"),
            Err(Refusal::Bad(_))
        ));
        assert!(matches!(
            parse_head(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(Refusal::Bad(_))
        ));
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(parse_head(big.as_bytes()), Err(Refusal::HeadTooLarge));
        let many: String = (0..70).map(|i| format!("X{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(parse_head(many.as_bytes()), Err(Refusal::HeadTooLarge));
        let chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked), Err(Refusal::LengthRequired));
        let huge = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n";
        assert_eq!(parse_head(huge), Err(Refusal::BodyTooLarge));
        let two = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(parse_head(two), Err(Refusal::Bad(_))));
        let old = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!old.keep_alive());
    }

    #[test]
    fn responses_carry_their_length_and_no_smuggled_header() {
        let headers = vec![
            ("X-A".to_string(), "1".to_string()),
            ("X-B".to_string(), "2\r\nSet-Cookie: x=1".to_string()),
            ("Content-Length".to_string(), "99".to_string()),
        ];
        let r = String::from_utf8(write_response(200, &headers, b"hello", false, true)).unwrap();
        assert_eq!(
            r,
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
        );
        let r = write_response(200, &[], b"hello", true, false);
        assert!(r.ends_with(b"Connection: close\r\n\r\n"));
    }
}
