//! Lines typed on a raw terminal, for the console's questions.
//!
//! The terminal neither echoes nor edits (SSH channels and the serial relay pass every
//! byte as typed), so this does both: it echoes what it keeps (or nothing, for a
//! password), lets Backspace/DEL erase a character and Ctrl-U the line, ends a line at CR
//! or LF (CR LF counts once), and drops what a person cannot mean: other control
//! characters, escape sequences (arrow and function keys), invalid UTF-8. Ctrl-C drops the
//! question. A line is at most [`MAX_LINE`] bytes; a longer one is refused whole, however
//! long it grows, without keeping more than that.
//!
//! While it waits, a watch is asked every [`TICK`] whether to go on (the session still
//! live, the login timeout not reached), and told when keys arrive, so a user typing is
//! active and one away is logged out on time.

use super::Terminal;
use std::io::{self, ErrorKind};
use std::time::Duration;

/// The longest line taken, in bytes: more than any answer the console asks for.
pub const MAX_LINE: usize = 128;

/// The columns a line of output fits in: a terminal's 80, with room for the cursor.
pub const WIDTH: usize = 79;

/// How often the watch is asked while nothing is typed.
pub const TICK: Duration = Duration::from_secs(1);

/// What a question got.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Text(String),
    /// Ctrl-C: the question is dropped.
    Cancelled,
    /// Longer than [`MAX_LINE`]: nothing was taken.
    TooLong,
}

/// Why the conversation stops.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The terminal closed or failed.
    Closed,
    /// The watch ended it, saying why.
    Ended(String),
}

/// Told whether keys arrived (`true`) or a tick passed without any; `Err` ends the
/// conversation with the message for the user.
pub type Watch<'a> = Box<dyn FnMut(bool) -> Result<(), String> + 'a>;

/// Where an escape sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// ESC seen.
    Start,
    /// ESC [ …: parameters until a final byte.
    Csi,
    /// ESC O: one more byte.
    Ss3,
}

/// The keyboard and screen of one terminal.
pub struct Keys<'t> {
    term: &'t mut dyn Terminal,
    watch: Watch<'t>,
    /// Bytes read but not yet used: what was typed ahead stays for the next question.
    buf: [u8; 256],
    start: usize,
    end: usize,
    after_cr: bool,
    esc: Esc,
    /// A UTF-8 character being put together.
    utf8: Vec<u8>,
    utf8_len: usize,
}

impl<'t> Keys<'t> {
    pub fn new(term: &'t mut dyn Terminal, watch: Watch<'t>) -> Keys<'t> {
        Keys {
            term,
            watch,
            buf: [0; 256],
            start: 0,
            end: 0,
            after_cr: false,
            esc: Esc::None,
            utf8: Vec::with_capacity(4),
            utf8_len: 0,
        }
    }

    /// Watches with `watch` from now on (a new session after a password change).
    pub fn set_watch(&mut self, watch: Watch<'t>) {
        self.watch = watch;
    }

    /// Writes `text` as it is.
    pub fn write(&mut self, text: &str) -> Result<(), Stop> {
        self.send(text.as_bytes())
    }

    /// Writes `text` and a new line, its lines broken to fit [`WIDTH`] and `\n` made
    /// `\r\n` for a raw terminal.
    pub fn say(&mut self, text: &str) -> Result<(), Stop> {
        let mut out = wrap(text, WIDTH).replace('\n', "\r\n");
        out.push_str("\r\n");
        self.send(out.as_bytes())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.term
            .write_all(bytes)
            .and_then(|()| self.term.flush())
            .map_err(|_| Stop::Closed)
    }

    /// Reads one line, echoed if `echo`.
    pub fn line(&mut self, echo: bool) -> Result<Answer, Stop> {
        let mut line = String::new();
        let mut too_long = false;
        loop {
            let b = self.next_byte()?;
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            // A control character ends a sequence and counts (Esc then Enter).
            match self.esc {
                Esc::None => {}
                _ if b < 0x20 => self.esc = Esc::None,
                Esc::Start => {
                    self.esc = match b {
                        b'[' => Esc::Csi,
                        b'O' => Esc::Ss3,
                        _ => Esc::None,
                    };
                    continue;
                }
                Esc::Csi => {
                    if !(0x20..=0x3f).contains(&b) {
                        self.esc = Esc::None;
                    }
                    continue;
                }
                Esc::Ss3 => {
                    self.esc = Esc::None;
                    continue;
                }
            }
            if b >= 0x80 {
                // C1 controls (U+0080..U+009F) too: a terminal may act on them (U+009B is
                // CSI), and echoed they would.
                if let Some(c) = self.utf8_byte(b).filter(|c| !c.is_control()) {
                    if too_long || line.len() + c.len_utf8() > MAX_LINE {
                        too_long = true;
                    } else {
                        line.push(c);
                        if echo {
                            let mut tmp = [0u8; 4];
                            self.send(c.encode_utf8(&mut tmp).as_bytes())?;
                        }
                    }
                }
                continue;
            }
            self.utf8_len = 0;
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    self.send(b"\r\n")?;
                    return Ok(if too_long {
                        Answer::TooLong
                    } else {
                        Answer::Text(line)
                    });
                }
                0x03 => {
                    // What was typed after Ctrl-C was meant for the dropped question.
                    self.start = self.end;
                    self.send(b"^C\r\n")?;
                    return Ok(Answer::Cancelled);
                }
                0x08 | 0x7f if !too_long && line.pop().is_some() && echo => {
                    self.send(b"\x08 \x08")?;
                }
                0x15 => {
                    if !too_long && echo {
                        let n = line.chars().count();
                        self.send("\x08 \x08".repeat(n).as_bytes())?;
                    }
                    line.clear();
                }
                0x1b => self.esc = Esc::Start,
                0x20..=0x7e => {
                    if too_long || line.len() >= MAX_LINE {
                        if !too_long {
                            self.send(b"\x07")?;
                        }
                        too_long = true;
                    } else {
                        line.push(b as char);
                        if echo {
                            self.send(&[b])?;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Puts a UTF-8 character together; `Some` once it is whole and valid.
    fn utf8_byte(&mut self, b: u8) -> Option<char> {
        let lead_len = match b {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        if lead_len > 0 {
            self.utf8.clear();
            self.utf8.push(b);
            self.utf8_len = lead_len;
            return None;
        }
        if !(0x80..=0xbf).contains(&b) || self.utf8_len == 0 {
            self.utf8_len = 0;
            return None;
        }
        self.utf8.push(b);
        if self.utf8.len() < self.utf8_len {
            return None;
        }
        self.utf8_len = 0;
        std::str::from_utf8(&self.utf8).ok()?.chars().next()
    }

    /// The next byte typed, waiting as long as the watch allows.
    fn next_byte(&mut self) -> Result<u8, Stop> {
        if self.start == self.end {
            self.fill()?;
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(b)
    }

    fn fill(&mut self) -> Result<(), Stop> {
        self.term
            .set_read_timeout(Some(TICK))
            .map_err(|_| Stop::Closed)?;
        loop {
            match self.term.read(&mut self.buf) {
                Ok(0) => return Err(Stop::Closed),
                Ok(n) => {
                    (self.watch)(true).map_err(Stop::Ended)?;
                    self.start = 0;
                    self.end = n;
                    return Ok(());
                }
                Err(e) if is_timeout(&e) => (self.watch)(false).map_err(Stop::Ended)?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Stop::Closed),
            }
        }
    }
}

/// `text` with its lines longer than `width` columns broken at spaces, the breaks
/// indented as the line.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        out.push_str(indent);
        let mut col = indent.len();
        for (n, word) in body.split(' ').filter(|w| !w.is_empty()).enumerate() {
            let len = word.chars().count();
            if n > 0 && col + 1 + len > width {
                out.push('\n');
                out.push_str(indent);
                col = indent.len();
            } else if n > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += len;
        }
    }
    out
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::{Read, Write};

    /// A terminal fed from a script: chunks to read, then timeouts or the end.
    struct Script {
        input: VecDeque<Vec<u8>>,
        output: Vec<u8>,
        /// After the input: time out (true) or close (false).
        idle: bool,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.input.pop_front() {
                Some(mut chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.input.push_front(chunk.split_off(n));
                    }
                    Ok(n)
                }
                None if self.idle => Err(ErrorKind::WouldBlock.into()),
                None => Ok(0),
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Terminal for Script {
        fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn script(chunks: &[&[u8]]) -> Script {
        Script {
            input: chunks.iter().map(|c| c.to_vec()).collect(),
            output: vec![],
            idle: false,
        }
    }

    fn lines(chunks: &[&[u8]], echo: bool) -> (Vec<Answer>, String) {
        let mut term = script(chunks);
        let mut got = vec![];
        {
            let mut keys = Keys::new(&mut term, Box::new(|_| Ok(())));
            while let Ok(a) = keys.line(echo) {
                got.push(a);
            }
        }
        (got, String::from_utf8_lossy(&term.output).into_owned())
    }

    fn text(s: &str) -> Answer {
        Answer::Text(s.into())
    }

    #[test]
    fn cr_lf_and_crlf_each_end_one_line() {
        let (got, _) = lines(&[b"a\r\nb\rc\n\r\n"], true);
        assert_eq!(got, [text("a"), text("b"), text("c"), text("")]);
        // CR and LF in separate reads still count once.
        let (got, _) = lines(&[b"a\r", b"\nb\n"], true);
        assert_eq!(got, [text("a"), text("b")]);
    }

    #[test]
    fn editing_and_echo() {
        let (got, out) = lines(&[b"ab\x7fc\x08d\r", b"xyz\x15ok\r"], true);
        assert_eq!(got, [text("ad"), text("ok")]);
        assert!(out.starts_with("ab\x08 \x08c\x08 \x08d\r\n"), "{out:?}");
        let (got, out) = lines(&[b"secret\r"], false);
        assert_eq!(got, [text("secret")]);
        assert_eq!(out, "\r\n");
    }

    #[test]
    fn control_characters_escapes_and_bad_utf8_are_dropped() {
        let (got, _) = lines(
            &[b"\x01a\x1b[A\x1b[1;5Cb\x1bOPc\t\x00\xff\xc3(d\xc3\xa9\r\x1b\r"],
            true,
        );
        assert_eq!(got, [text("abc(dé"), text("")]);
    }

    #[test]
    fn c1_control_characters_are_dropped_and_not_echoed() {
        // Found by fuzz/console_line: U+0082 was kept in the line and echoed.
        let (got, out) = lines(&[b"h\xc3T\x1d\x98\xff\r\x83", b"W}\x9f\xc2\x82\r"], true);
        assert_eq!(got, [text("hT"), text("W}")]);
        assert!(!out.contains('\u{82}'), "{out:?}");
        let (got, out) = lines(&[b"a\xc2\x9b2Jb\xc2\x85c\xc2\xa0\r"], true);
        assert_eq!(got, [text("a2Jbc\u{a0}")]);
        assert!(
            !out.contains('\u{9b}') && !out.contains('\u{85}'),
            "{out:?}"
        );
    }

    #[test]
    fn ctrl_c_cancels_and_drops_what_follows_in_the_same_read() {
        let (got, out) = lines(&[b"12\x03ignored\r", b"3\r"], true);
        assert_eq!(got, [Answer::Cancelled, text("3")]);
        assert!(out.contains("^C"));
    }

    #[test]
    fn a_long_line_is_refused_whole_and_the_next_one_is_fine() {
        let long = vec![b'x'; 10_000];
        let (got, out) = lines(&[&long, &long, b"\r1\r"], true);
        assert_eq!(got, [Answer::TooLong, text("1")]);
        assert!(out.len() < MAX_LINE + 16, "echo stops at the cap");
        let (got, _) = lines(&[&[b'y'; MAX_LINE], b"\r"], true);
        assert_eq!(got, [text(&"y".repeat(MAX_LINE))]);
    }

    #[test]
    fn long_lines_break_at_spaces() {
        let text = format!("{} end\n  short", "word ".repeat(30).trim_end());
        let wrapped = wrap(&text, 20);
        assert!(
            wrapped.lines().all(|l| l.chars().count() <= 20),
            "{wrapped}"
        );
        assert_eq!(wrapped.replace('\n', " ").split_whitespace().count(), 32);
        assert!(wrapped.ends_with("\n  short"));
        assert_eq!(wrap("a b", 79), "a b");
    }

    #[test]
    fn the_watch_ends_a_wait() {
        let mut term = script(&[b"a"]);
        term.idle = true;
        let mut ticks = 0;
        let mut keys = Keys::new(
            &mut term,
            Box::new(|typed| {
                if !typed {
                    ticks += 1;
                }
                if ticks == 3 {
                    Err("gone".into())
                } else {
                    Ok(())
                }
            }),
        );
        assert_eq!(keys.line(true), Err(Stop::Ended("gone".into())));
    }
}
