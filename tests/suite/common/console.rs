//! The console as a person at a terminal meets it: a screen that collects what the card
//! writes, and keys to type. Over the service's console socket (as the serial relay
//! connects) or a pseudo-terminal's master side (as the USB host's terminal program).

use super::web::{DEFAULT_PASSWORD, GOOD, MAC};
use super::{start_with, Card, Setup, PATIENCE};
use modbus_card::accounts::Mac;
use modbus_card::service::Options;
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The menu's prompt: the menu is shown and waits for a choice.
pub const PROMPT: &str = "Please Enter Your Choice =>";

/// The menu's items, as docs/console.md lists them.
pub const ITEMS: [&str; 5] = [
    "1. Card Settings",
    "2. Reset Accounts/Passwords to Default",
    "3. Reset Configuration to Default",
    "4. Restart Card",
    "0. Exit",
];

/// A card with the console (and the test MAC, so the default password is known).
pub fn card(setup: Setup) -> Card {
    start_with(
        setup,
        Options {
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        },
    )
}

pub struct Screen {
    chunks: Receiver<Vec<u8>>,
    /// What came and was not yet matched by [`Screen::expect`].
    pending: String,
    /// Everything that came, for failure messages.
    pub transcript: String,
    keys: Box<dyn Write + Send>,
    closed: bool,
    /// The start of a character split between two reads (the summary's arrow is three
    /// bytes), kept for the next.
    partial: Vec<u8>,
    /// Hangs up, when dropping the keys alone does not (a socket the reader shares).
    hang_up: Option<Box<dyn FnOnce() + Send>>,
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Some(hang_up) = self.hang_up.take() {
            hang_up();
        }
    }
}

impl Screen {
    pub fn new(
        mut output: impl Read + Send + 'static,
        keys: impl Write + Send + 'static,
    ) -> Screen {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match output.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Screen {
            chunks: rx,
            pending: String::new(),
            transcript: String::new(),
            keys: Box::new(keys),
            closed: false,
            partial: vec![],
            hang_up: None,
        }
    }

    /// Connected to `card`'s console socket, as the serial relay is.
    pub fn console(card: &Card) -> Screen {
        Screen::console_at(&card.data)
    }

    /// Connected to the console socket of the service whose data folder is `data`.
    pub fn console_at(data: &std::path::Path) -> Screen {
        let stream = std::os::unix::net::UnixStream::connect(data.join("console.sock")).unwrap();
        let handle = stream.try_clone().unwrap();
        let mut screen = Screen::new(stream.try_clone().unwrap(), stream);
        screen.hang_up = Some(Box::new(move || {
            let _ = handle.shutdown(std::net::Shutdown::Both);
        }));
        screen
    }

    /// Waits for `text`; returns what came up to and including it.
    pub fn expect(&mut self, text: &str) -> String {
        self.expect_within(text, PATIENCE)
    }

    pub fn expect_within(&mut self, text: &str, patience: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(i) = self.pending.find(text) {
                let end = i + text.len();
                let got = self.pending[..end].to_string();
                self.pending.drain(..end);
                return got;
            }
            let left = patience.saturating_sub(start.elapsed());
            assert!(
                !self.closed && !left.is_zero(),
                "no {text:?} on the screen ({}); it shows:\n{}",
                if self.closed { "closed" } else { "timed out" },
                self.transcript
            );
            self.take(left);
        }
    }

    fn take(&mut self, wait: Duration) {
        match self.chunks.recv_timeout(wait) {
            Ok(bytes) => {
                let mut bytes = [std::mem::take(&mut self.partial), bytes].concat();
                if let Err(e) = std::str::from_utf8(&bytes) {
                    if e.error_len().is_none() {
                        self.partial = bytes.split_off(e.valid_up_to());
                    }
                }
                let text = String::from_utf8_lossy(&bytes);
                self.pending.push_str(&text);
                self.transcript.push_str(&text);
            }
            Err(RecvTimeoutError::Disconnected) => self.closed = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }

    /// Waits until the other side closes; returns what came meanwhile.
    pub fn expect_closed(&mut self, patience: Duration) -> String {
        let start = Instant::now();
        while !self.closed {
            let left = patience.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "the terminal stayed open; it shows:\n{}",
                self.transcript
            );
            self.take(left);
        }
        std::mem::take(&mut self.pending)
    }

    /// Everything that came within `d`, waiting the whole time.
    pub fn collect(&mut self, d: Duration) -> String {
        let start = Instant::now();
        while !self.closed && start.elapsed() < d {
            self.take(d.saturating_sub(start.elapsed()));
        }
        std::mem::take(&mut self.pending)
    }

    pub fn send(&mut self, keys: &str) {
        self.send_bytes(keys.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.keys.write_all(bytes).unwrap();
        self.keys.flush().unwrap();
    }

    /// Answers the login prompts.
    pub fn login(&mut self, user: &str, password: &str) {
        self.expect("Please Enter User Name :");
        self.send(&format!("{user}\r"));
        self.expect("Please Enter Password:");
        self.send(&format!("{password}\r"));
    }

    /// Logs in as admin with the default password and changes it to [`GOOD`]; returns at
    /// the menu's prompt.
    pub fn first_admin_login(&mut self) {
        self.login("admin", DEFAULT_PASSWORD);
        self.change_password(DEFAULT_PASSWORD, GOOD);
        self.expect(PROMPT);
    }

    /// Answers the forced change of the password.
    pub fn change_password(&mut self, current: &str, new: &str) {
        self.expect("Current password: ");
        self.send(&format!("{current}\r"));
        self.expect("New password: ");
        self.send(&format!("{new}\r"));
        self.expect("New password again: ");
        self.send(&format!("{new}\r"));
        self.expect("Your password has been changed.");
    }

    /// Types `line` and Enter once `prompt` shows.
    pub fn answer(&mut self, prompt: &str, line: &str) -> String {
        let got = self.expect(prompt);
        self.send(&format!("{line}\r"));
        got
    }
}
