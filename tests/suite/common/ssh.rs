//! An SSH client for the tests: libssh2 (the `ssh2` crate), an implementation the card's
//! server (russh) shares nothing with.

use super::console::Screen;
use super::PATIENCE;
use ssh2::Session;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A client connection with the key exchange done, not logged in.
pub fn connect(addr: SocketAddr) -> Session {
    on(TcpStream::connect(addr).unwrap())
}

/// The key exchange on a connection made by the caller (from another address, say).
pub fn on(tcp: TcpStream) -> Session {
    let mut s = Session::new().unwrap();
    s.set_timeout(PATIENCE.as_millis() as u32);
    s.set_tcp_stream(tcp);
    s.handshake().unwrap();
    s
}

pub fn logged_in(addr: SocketAddr, user: &str, password: &str) -> Session {
    let s = connect(addr);
    s.userauth_password(user, password).unwrap();
    assert!(s.authenticated());
    s
}

/// A shell channel with a pty: the menu.
pub fn shell(s: &Session) -> ssh2::Channel {
    let mut ch = s.channel_session().unwrap();
    ch.request_pty("xterm", None, Some((80, 24, 0, 0))).unwrap();
    ch.shell().unwrap();
    ch
}

/// The menu's terminal as a person at `ssh` sees it.
pub fn screen(s: Session) -> Screen {
    let ch = shell(&s);
    s.set_timeout(100);
    let (output, keys) = (Output(ch.stream(0)), ch.stream(0));
    // The session and channel live as long as their streams.
    drop((ch, s));
    Screen::new(output, keys)
}

/// Logs in as admin with `password` and opens the menu's terminal.
pub fn terminal(addr: SocketAddr, password: &str) -> Screen {
    screen(logged_in(addr, "admin", password))
}

/// The channel's output, waiting through libssh2's timeouts (short, so that keys can be
/// typed between two reads of the one session).
struct Output(ssh2::Stream);

impl Read for Output {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => return other,
            }
        }
    }
}
