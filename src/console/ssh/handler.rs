//! One connection's answers to its client: logins against the card's accounts, one session
//! channel with a pty and a shell (the menu), and a refusal for everything else.

use super::term::{self, SshTerm};
use super::{methods, Conn, Shared};
use crate::accounts::{Channel as On, Ended, LoginError, Peer, Session};
use russh::server::{Auth, ChannelOpenHandle, Msg, Response, Session as SshSession};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf};
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub struct Handler {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// The end of the login grace time: a throttled try waits no longer than this.
    deadline: tokio::time::Instant,
    session: Option<Session>,
    /// Said first in the menu: whose session (web or console) this login ended.
    took_over: Option<String>,
    channel: Option<Open>,
}

/// The session channel, until the shell starts.
struct Open {
    id: ChannelId,
    pty: bool,
    input: Option<crossbeam_channel::Receiver<Vec<u8>>>,
    output: Option<ChannelWriteHalf<Msg>>,
}

const PROMPT: &[(Cow<'static, str>, bool)] = &[(Cow::Borrowed("Password: "), false)];

impl Handler {
    pub fn new(shared: Arc<Shared>, conn: Arc<Conn>, deadline: tokio::time::Instant) -> Handler {
        Handler {
            shared,
            conn,
            deadline,
            session: None,
            took_over: None,
            channel: None,
        }
    }

    fn reject() -> Auth {
        // The methods stay on offer: a mistyped password may be typed again.
        Auth::Reject {
            proceed_with_methods: Some(methods()),
            partial_success: false,
        }
    }

    /// Checks the password on the blocking pool (Argon2 is slow). A try made while the
    /// address is throttled waits its turn, within the grace time, then is checked: the
    /// client is slowed down, never told "later".
    async fn login(&mut self, user: &str, password: &str) -> Auth {
        let accounts = self.shared.console.accounts.clone();
        let peer = Peer::Net(self.conn.ip);
        let before = accounts.current();
        for _ in 0..2 {
            let (a, u, p) = (accounts.clone(), user.to_owned(), password.to_owned());
            let tried = tokio::task::spawn_blocking(move || a.login(&u, &p, peer, On::Console));
            match tried.await {
                Ok(Ok(session)) => {
                    self.logged_in(session, before);
                    return Auth::Accept;
                }
                Ok(Err(LoginError::Throttled { wait, .. })) => {
                    let left = self
                        .deadline
                        .saturating_duration_since(tokio::time::Instant::now());
                    if wait >= left {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                }
                Ok(Err(LoginError::Refused { .. })) => break,
                Ok(Err(e)) => {
                    log::error!("ssh login: {e}");
                    break;
                }
                Err(e) => {
                    log::error!("ssh login: {e}");
                    break;
                }
            }
        }
        Self::reject()
    }

    fn logged_in(&mut self, session: Session, before: Option<Session>) {
        *self.conn.token.lock() = Some(session.token.clone());
        self.conn.logged_in.store(true, Relaxed);
        if let Some(old) = before.filter(|old| old.token != session.token) {
            self.took_over = Some(old.ended_notice());
        }
        let why = Ended::TakenOver {
            by: session.peer,
            on: On::Console,
        }
        .message();
        self.shared.taken_over(self.conn.id, &why);
        self.session = Some(session);
    }

    fn ours(&self, channel: ChannelId) -> bool {
        self.channel.as_ref().is_some_and(|c| c.id == channel)
    }

    /// Refuses a request on the channel; the client says so ("exec request failed"), and
    /// the service's log says why.
    fn refuse(&self, channel: ChannelId, why: &str, session: &mut SshSession) {
        log::info!("ssh: refused for {}: {why}", self.conn.ip);
        let _ = session.channel_failure(channel);
    }

    /// The menu, on a thread of its own, with this channel as its terminal.
    fn start_menu(&mut self, id: ChannelId, session: &mut SshSession) -> Result<(), String> {
        let (Some(open), Some(login)) = (self.channel.as_mut(), self.session.clone()) else {
            return Err("no session".into());
        };
        let (Some(input), Some(write)) = (open.input.take(), open.output.take()) else {
            return Err("the console already runs on this connection".into());
        };
        let (hangup, hung_up) = crossbeam_channel::bounded(0);
        if !self.conn.start_menu(hangup) {
            return Err("this connection is ending".into());
        }
        let _ = session.channel_success(id);
        let (out, out_rx) = tokio::sync::mpsc::channel(term::OUTPUT_QUEUE);
        tokio::spawn(term::write_output(write, out_rx));
        let mut terminal = SshTerm::new(input, hung_up, out);
        let (console, conn) = (self.shared.console.clone(), self.conn.clone());
        let took_over = self.took_over.take();
        let via = format!("ssh {}", self.conn.ip);
        let thread = std::thread::Builder::new()
            .name("ssh console".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                use std::io::Write;
                if let Some(line) = took_over {
                    let _ = write!(terminal, "{line}\r\n");
                }
                crate::console::menu::run(&console, &mut terminal, login, &via);
                if let Some(why) = conn.farewell() {
                    let _ = write!(terminal, "\r\n{why}\r\n");
                }
                // The channel closes, and the connection with it: it had one console.
                drop(terminal);
                conn.end("The console session has ended.");
            })
            .map_err(|e| e.to_string())?;
        self.shared.add_menu(thread);
        Ok(())
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.login(user, password).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(mut response) = response else {
            return Ok(Auth::Partial {
                name: Cow::Borrowed(""),
                instructions: Cow::Borrowed(""),
                prompts: Cow::Borrowed(PROMPT),
            });
        };
        let password = response
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(self.login(user, &password).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if self.session.is_none() || self.channel.is_some() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        reply.accept().await;
        let id = channel.id();
        let (read, write) = channel.split();
        // Read at once, so the connection never waits on a channel nobody reads.
        let (input, input_rx) = crossbeam_channel::bounded(term::INPUT_QUEUE);
        tokio::spawn(term::read_input(read, input));
        self.channel = Some(Open {
            id,
            pty: false,
            input: Some(input_rx),
            output: Some(write),
        });
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        match self.channel.as_mut().filter(|c| c.id == channel) {
            Some(open) => {
                open.pty = true;
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if !self.ours(channel) {
            session.channel_failure(channel)?;
            return Ok(());
        }
        if !self.channel.as_ref().is_some_and(|c| c.pty) {
            self.refuse(
                channel,
                "The console is a menu for a terminal: connect with ssh -t.",
                session,
            );
            return Ok(());
        }
        if let Err(e) = self.start_menu(channel, session) {
            self.refuse(channel, &format!("The console cannot start: {e}."), session);
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.refuse(
            channel,
            "Commands are not run here: the console is its menu only.",
            session,
        );
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let why = format!("No {name} here: the console is its menu only.");
        self.refuse(channel, &why, session);
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    // Agent forwarding, TCP/IP and Unix socket forwarding: the trait's defaults refuse
    // them (false; a channel open not accepted is refused as administratively
    // prohibited).
}
