//! A request body that streams to its handler (firmware images, up to 16 MiB): the front
//! hands the handler the request as soon as its head is in, and the body follows through
//! a small bounded channel as it arrives. The front stops reading the socket while the
//! channel is full, so a fast client waits for the disk, and memory stays at a few chunks
//! whatever the size.
//!
//! [`Upload`] is the handler's side, a `Read`; [`FilePart`] reads the file out of a
//! browser's `multipart/form-data` around it, as a stream too.

use super::form::find;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::io::{self, Read};
use std::time::Duration;

/// Chunks in flight between the front and the handler.
pub const CHUNKS: usize = 4;
/// How long the handler waits for the next piece before the upload counts as stalled.
pub const IDLE: Duration = Duration::from_secs(30);

/// The body of a streamed request, as its handler reads it.
pub struct Upload {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    received: u64,
    length: u64,
    /// Tells the front there is room in the channel again.
    room: Box<dyn Fn() + Send>,
}

impl Upload {
    /// `length`: the request's Content-Length.
    pub fn new(rx: Receiver<Vec<u8>>, length: u64, room: Box<dyn Fn() + Send>) -> Upload {
        Upload {
            rx,
            chunk: Vec::new(),
            pos: 0,
            received: 0,
            length,
            room,
        }
    }

    /// The request's Content-Length.
    pub fn length(&self) -> u64 {
        self.length
    }
}

impl Read for Upload {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.chunk.len() {
            if self.received >= self.length {
                return Ok(0);
            }
            match self.rx.recv_timeout(IDLE) {
                Ok(chunk) => {
                    self.received += chunk.len() as u64;
                    self.chunk = chunk;
                    self.pos = 0;
                    (self.room)();
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "nothing came for {} s after {} of {} bytes",
                            IDLE.as_secs(),
                            self.received,
                            self.length
                        ),
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the connection closed after {} of {} bytes",
                            self.received, self.length
                        ),
                    ))
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Most bytes of preamble and part headers before the file.
const MAX_PART_HEAD: usize = 16 * 1024;

/// The content of the part named `name` of a `multipart/form-data` body, read as it
/// streams: the parts before it are skipped, the closing delimiter ends it, and a body
/// that ends before it is an error (the upload did not arrive whole).
pub struct FilePart<R> {
    inner: R,
    /// `\r\n--boundary`: what ends a part.
    delimiter: Vec<u8>,
    name: String,
    buf: Vec<u8>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the file: preamble, other parts, the file part's headers.
    Looking,
    Content,
    Done,
}

impl<R: Read> FilePart<R> {
    /// `content_type`: the request's, with its boundary.
    pub fn new(inner: R, content_type: &str, name: &str) -> io::Result<FilePart<R>> {
        let boundary = super::form::boundary(content_type).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not a form upload (no multipart boundary)",
            )
        })?;
        // The body starts with the delimiter without its CRLF: put one in front.
        Ok(FilePart {
            inner,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            name: name.to_owned(),
            buf: b"\r\n".to_vec(),
            state: State::Looking,
        })
    }

    /// Reads more into `buf`; false at the end of the body.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.inner.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn ended_early() -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the upload ended before the end of its file",
        )
    }

    /// Moves past the parts before the one named `name`, and past its headers.
    fn find_file(&mut self) -> io::Result<()> {
        loop {
            // A delimiter, then the part's headers up to an empty line.
            let at = loop {
                if let Some(i) = find(&self.buf, &self.delimiter) {
                    break i;
                }
                if self.buf.len() > MAX_PART_HEAD + self.delimiter.len() {
                    // Inside a part skipped: keep only what may start a delimiter.
                    let keep = self.buf.len() - self.delimiter.len();
                    self.buf.drain(..keep);
                }
                if !self.fill()? {
                    return Err(Self::ended_early());
                }
            };
            self.buf.drain(..at + self.delimiter.len());
            // "--" after a delimiter ends the body.
            while self.buf.len() < 2 {
                if !self.fill()? {
                    return Err(Self::ended_early());
                }
            }
            if self.buf.starts_with(b"--") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the form has no file '{}'", self.name),
                ));
            }
            let head_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                    break i;
                }
                if self.buf.len() > MAX_PART_HEAD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a form part's headers are too long",
                    ));
                }
                if !self.fill()? {
                    return Err(Self::ended_early());
                }
            };
            let headers = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            self.buf.drain(..head_end + 4);
            if super::form::field_name(&headers).as_deref() == Some(self.name.as_str()) {
                return Ok(());
            }
        }
    }
}

impl<R: Read> Read for FilePart<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.state == State::Looking {
            self.find_file()?;
            self.state = State::Content;
        }
        loop {
            if self.state == State::Done {
                return Ok(0);
            }
            // What is surely content: up to the delimiter, or all but a possible start
            // of one.
            let (ready, end) = match find(&self.buf, &self.delimiter) {
                Some(i) => (i, true),
                None => (
                    self.buf
                        .len()
                        .saturating_sub(self.delimiter.len().saturating_sub(1)),
                    false,
                ),
            };
            if ready > 0 {
                let n = ready.min(out.len());
                out[..n].copy_from_slice(&self.buf[..n]);
                self.buf.drain(..n);
                return Ok(n);
            }
            if end {
                self.state = State::Done;
                continue;
            }
            if !self.fill()? {
                return Err(Self::ended_early());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives `step` bytes at a time, as a socket would.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn body(file: &[u8]) -> Vec<u8> {
        let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"v.img\"\r\n\
Content-Type: application/octet-stream\r\n\r\n"
            .to_vec();
        b.extend_from_slice(file);
        b.extend_from_slice(b"\r\n--XyZ--\r\n");
        b
    }

    #[test]
    fn the_file_comes_out_whole_however_the_body_is_cut() {
        // Bytes that look like the start of a delimiter inside the file.
        let file: Vec<u8> = (0..70_000u32)
            .map(|i| match i % 997 {
                0 => b'\r',
                1 => b'\n',
                2 | 3 => b'-',
                _ => (i % 251) as u8,
            })
            .collect();
        let b = body(&file);
        for step in [1, 3, 7, 100, 4096, 70_000] {
            let mut part = FilePart::new(
                Trickle(&b, step),
                "multipart/form-data; boundary=XyZ",
                "image",
            )
            .unwrap();
            let mut got = vec![];
            part.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), file.len(), "step {step}");
            assert!(got == file, "step {step}");
        }
    }

    #[test]
    fn a_body_cut_short_or_without_the_file_is_an_error() {
        let b = body(b"0123456789");
        for cut in [10, 60, b.len() - 12] {
            let mut part = FilePart::new(
                Trickle(&b[..cut], 5),
                "multipart/form-data; boundary=XyZ",
                "image",
            )
            .unwrap();
            let mut got = vec![];
            let e = part.read_to_end(&mut got).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}");
        }
        let mut other = FilePart::new(
            Trickle(&b, 50),
            "multipart/form-data; boundary=XyZ",
            "firmware",
        )
        .unwrap();
        let e = other.read_to_end(&mut vec![]).unwrap_err();
        assert!(e.to_string().contains("no file 'firmware'"), "{e}");
        assert!(FilePart::new(&b[..], "application/octet-stream", "image").is_err());
    }

    #[test]
    fn an_upload_ends_at_its_length_or_says_why_it_stopped() {
        let (tx, rx) = crossbeam_channel::bounded(CHUNKS);
        let mut up = Upload::new(rx, 6, Box::new(|| {}));
        tx.send(b"abc".to_vec()).unwrap();
        tx.send(b"def".to_vec()).unwrap();
        let mut got = vec![];
        up.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"abcdef");

        let (tx, rx) = crossbeam_channel::bounded(CHUNKS);
        let mut up = Upload::new(rx, 6, Box::new(|| {}));
        tx.send(b"abc".to_vec()).unwrap();
        drop(tx);
        let e = up.read_to_end(&mut vec![]).unwrap_err();
        assert_eq!(e.to_string(), "the connection closed after 3 of 6 bytes");
    }
}
