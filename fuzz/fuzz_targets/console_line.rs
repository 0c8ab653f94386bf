//! The console's line editor: `Keys::line`, which every question of the SSH and serial
//! console menus calls (src/console/menu.rs), fed the bytes as typed, in reads of the
//! sizes the first input byte picks. The second byte's low bit: echo (a name) or not (a
//! password).
//! Properties: a line taken is at most MAX_LINE bytes without control characters; without
//! echo, nothing typed is written back (only line ends, ^C and the bell).
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::console::input::{Answer, Keys, MAX_LINE};
use modbus_card::console::Terminal;
use std::io::{self, Read, Write};
use std::time::Duration;

struct Typed<'a> {
    input: &'a [u8],
    chunk: usize,
    output: Vec<u8>,
}

impl Read for Typed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Typed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Terminal for Typed<'_> {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [chunk, flags, typed @ ..] = data else {
        return;
    };
    let echo = flags & 1 == 1;
    let mut term = Typed {
        input: typed,
        chunk: usize::from(*chunk).max(1),
        output: Vec::new(),
    };
    let mut answers = Vec::new();
    {
        let mut keys = Keys::new(&mut term, Box::new(|_| Ok(())));
        // Each line takes at least one byte: bounded by the input.
        for _ in 0..=typed.len() {
            match keys.line(echo) {
                Ok(a) => answers.push(a),
                Err(_) => break,
            }
        }
    }
    for a in &answers {
        if let Answer::Text(t) = a {
            assert!(t.len() <= MAX_LINE, "a line of {} bytes", t.len());
            assert!(
                !t.chars().any(char::is_control),
                "a control character kept: {t:?}"
            );
        }
    }
    if !echo {
        assert!(
            term.output.iter().all(|b| b"\r\n^C\x07".contains(b)),
            "a password echoed: {:?}",
            String::from_utf8_lossy(&term.output)
        );
    }
});
