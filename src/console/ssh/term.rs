//! The menu's terminal over an SSH channel. The menu runs on a thread of its own and
//! blocks on reads; the channel lives in the SSH runtime. Between them: a bounded queue of
//! input bytes (read with the menu's timeout) and a bounded queue of output, which a task
//! writes to the channel. When the menu returns, the output queue closes and the task ends
//! the channel (exit status 0, EOF, close), so the client's `ssh` exits.

use crate::console::Terminal;
use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use std::io::{self, Read, Write};
use std::time::Duration;

/// Chunks of input waiting for the menu; past this the channel is read no further until
/// the menu catches up (SSH's window then holds the client back).
pub const INPUT_QUEUE: usize = 64;
/// Chunks of output waiting for the channel; past this the menu's writes wait.
pub const OUTPUT_QUEUE: usize = 64;
/// The largest write handed to the channel at once.
const CHUNK: usize = 16 * 1024;

pub struct SshTerm {
    input: Receiver<Vec<u8>>,
    /// Never sent on: disconnected when the connection must end (taken over, SSH off),
    /// which a blocked read sees at once.
    hangup: Receiver<()>,
    output: tokio::sync::mpsc::Sender<Vec<u8>>,
    pending: Vec<u8>,
    at: usize,
    timeout: Option<Duration>,
    gone: bool,
}

impl SshTerm {
    pub fn new(
        input: Receiver<Vec<u8>>,
        hangup: Receiver<()>,
        output: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> SshTerm {
        SshTerm {
            input,
            hangup,
            output,
            pending: Vec::new(),
            at: 0,
            timeout: None,
            gone: false,
        }
    }

    /// The next chunk of input; None once the terminal is gone.
    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        let got = match self.timeout {
            Some(t) => select! {
                recv(self.input) -> m => m.ok(),
                recv(self.hangup) -> _ => None,
                default(t) => return Err(io::ErrorKind::TimedOut.into()),
            },
            None => select! {
                recv(self.input) -> m => m.ok(),
                recv(self.hangup) -> _ => None,
            },
        };
        Ok(got)
    }
}

impl Read for SshTerm {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.at >= self.pending.len() {
            if self.gone {
                return Ok(0);
            }
            match self.next()? {
                Some(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                None => {
                    self.gone = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for SshTerm {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK);
        if n == 0 {
            return Ok(0);
        }
        self.output
            .blocking_send(buf[..n].to_vec())
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Terminal for SshTerm {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout = timeout;
        Ok(())
    }
}

/// Moves what the client types into the menu's queue, until the client sends EOF or
/// closes the channel, or the menu is gone.
pub async fn read_input(mut channel: ChannelReadHalf, input: Sender<Vec<u8>>) {
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                let mut chunk = data.to_vec();
                loop {
                    match input.try_send(chunk) {
                        Ok(()) => break,
                        Err(TrySendError::Full(c)) => {
                            chunk = c;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(TrySendError::Disconnected(_)) => return,
                    }
                }
            }
            ChannelMsg::Eof | ChannelMsg::Close => return,
            _ => {}
        }
    }
}

/// Writes the menu's output to the channel; once the menu is done, ends the channel.
pub async fn write_output(
    channel: ChannelWriteHalf<Msg>,
    mut output: tokio::sync::mpsc::Receiver<Vec<u8>>,
) {
    while let Some(chunk) = output.recv().await {
        if channel.data_bytes(chunk).await.is_err() {
            return;
        }
    }
    let _ = channel.exit_status(0).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}
