//! One Modbus TCP session: read frames, relay each to the UPS, answer in order. The same
//! session serves plain Modbus TCP and Modbus/TCP Security: only the [`Transport`] and the
//! [`Rights`] its credentials give differ.

use super::{Refused, SessionLog, Sessions, TcpConfig, PARTIAL_FRAME_DEADLINE};
use crate::access::{self, Writers};
use crate::event::{Event, Holder};
use crate::link::Caller;
use crate::modbus::mbap;
use crate::modbus::pdu::{self, Exception, PduBuf};
use crate::modbus::rtu::BROADCAST;
use crate::poll::{wait_readable, Ready};
use crate::settings::Routing;
use crate::shutdown::Shutdown;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The byte stream a session reads frames from and writes answers to.
pub(crate) trait Transport: Read + Write + AsFd {
    /// Bytes already received (and decrypted) but not yet read: the socket need not be
    /// waited for.
    fn buffered(&self) -> bool {
        false
    }
}

impl Transport for TcpStream {}

/// What a master may do by its credentials; the allow-lists (`modbus_allow`,
/// `modbus_write`) apply on top, and the stricter rule wins.
pub(crate) enum Rights {
    /// Whatever the allow-lists let it (plain Modbus TCP has no credentials).
    All,
    /// Only requests that read ([`access::reads`]).
    Read,
    /// Nothing: every request gets exception 01; the event is logged at the first one.
    Nothing(Option<Event>),
}

pub(super) struct Session<S: Transport = TcpStream> {
    pub number: u8,
    pub stream: S,
    pub rights: Rights,
    /// Whom the certificate names, on Modbus/TCP Security.
    pub holder: Option<Holder>,
    /// Shared with the acceptor: a new configuration applies from the next turn.
    pub config: Arc<parking_lot::Mutex<TcpConfig>>,
    pub caller: Caller,
    pub shutdown: Shutdown,
    pub sessions: Arc<Sessions>,
    pub peer: SocketAddr,
    pub refused: Arc<Refused>,
    pub log: Arc<SessionLog>,
}

/// Room for a few pipelined frames; a whole frame always fits.
const BUFFER: usize = 4 * mbap::MAX_FRAME;

impl<S: Transport> Session<S> {
    /// Serves until the session ends; returns why, for the event log.
    pub fn run(mut self) -> String {
        let mut buf = vec![0u8; BUFFER];
        let mut len = 0usize;
        let mut out = Vec::with_capacity(mbap::MAX_FRAME);
        let mut last_activity = Instant::now();
        // When the first bytes of a frame not yet whole came.
        let mut partial_since: Option<Instant> = None;
        loop {
            // Answer every whole frame already here, in order.
            let mut used = 0;
            loop {
                if let Some(reason) = self.not_allowed() {
                    return reason;
                }
                match mbap::check(&buf[used..len]) {
                    Ok(Some(n)) => {
                        // Idle means neither asking nor being answered.
                        self.sessions.activity(self.number, true);
                        let (header, pdu) = mbap::split(&buf[used..used + n]);
                        if let Some(answer) = self.relay(header.unit, pdu) {
                            out.clear();
                            mbap::encode(header, &answer, &mut out);
                            if let Err(e) = self
                                .stream
                                .write_all(&out)
                                .and_then(|()| self.stream.flush())
                            {
                                return format!("write failed: {e}");
                            }
                        }
                        last_activity = Instant::now();
                        self.sessions.activity(self.number, false);
                        used += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("modbus tcp session {}: {e}; closing", self.number);
                        return format!("invalid header: {e}");
                    }
                }
            }
            buf.copy_within(used..len, 0);
            len -= used;
            if len == 0 {
                partial_since = None;
            } else if used > 0 || partial_since.is_none() {
                partial_since = Some(Instant::now());
            }

            let idle_timeout = self.config.lock().idle_timeout;
            let mut wait: Option<Duration> = None;
            if !idle_timeout.is_zero() {
                let idle = last_activity.elapsed();
                if idle >= idle_timeout {
                    return "idle timeout".into();
                }
                wait = Some(idle_timeout - idle);
            }
            if let Some(since) = partial_since {
                let waited = since.elapsed();
                if waited >= PARTIAL_FRAME_DEADLINE {
                    return format!(
                        "a frame not completed within {} s",
                        PARTIAL_FRAME_DEADLINE.as_secs()
                    );
                }
                let left = PARTIAL_FRAME_DEADLINE - waited;
                wait = Some(wait.map_or(left, |w| w.min(left)));
            }
            let ready = if self.stream.buffered() {
                Ok(Ready::Readable)
            } else {
                wait_readable(self.stream.as_fd(), &self.shutdown, wait)
            };
            if let Some(reason) = self.not_allowed() {
                return reason;
            }
            match ready {
                Ok(Ready::Readable) => {}
                Ok(Ready::Timeout) => continue,
                Ok(Ready::Shutdown) => return "service stopping".into(),
                Err(e) => return format!("poll failed: {e}"),
            }
            match self.stream.read(&mut buf[len..]) {
                Ok(0) => return "closed by client".into(),
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return format!("read failed: {e}"),
            }
        }
    }

    /// The answer PDU for a request, or None when none is due (a broadcast).
    fn relay(&mut self, unit: u8, pdu: &[u8]) -> Option<PduBuf> {
        let refused = match &mut self.rights {
            Rights::All => false,
            Rights::Read => !access::reads(pdu),
            Rights::Nothing(event) => {
                // Logged once per connection: a master that polls must not fill the log.
                if let Some(event) = event.take() {
                    self.log.emit(event);
                }
                true
            }
        };
        if refused {
            if matches!(self.rights, Rights::Read) {
                self.refused.writes.fetch_add(1, Relaxed);
                self.log.emit(self.write_refused(pdu[0], true));
            }
            return Some(PduBuf::exception(pdu[0], Exception::IllegalFunction));
        }
        let slave = {
            let config = self.config.lock();
            if !access::reads(pdu) && !self.may_write(&config) {
                drop(config);
                self.refused.writes.fetch_add(1, Relaxed);
                self.log.emit(self.write_refused(pdu[0], false));
                return Some(PduBuf::exception(pdu[0], Exception::IllegalFunction));
            }
            let ups = config.ups_slave;
            match config.routing {
                Routing::Ups if unit == 0 || unit == 255 || unit == ups => ups,
                Routing::Ups => {
                    return Some(PduBuf::exception(pdu[0], Exception::GatewayPathUnavailable));
                }
                Routing::Transparent if unit == 255 => ups,
                // A broadcast gets no answer, so only a write may be one; a read with unit
                // 0 would leave the master waiting for nothing.
                Routing::Transparent if unit == BROADCAST && !pdu::may_broadcast(pdu[0]) => {
                    return Some(PduBuf::exception(pdu[0], Exception::GatewayPathUnavailable));
                }
                Routing::Transparent => unit,
            }
        };
        let answer = self.caller.call(slave, pdu);
        (slave != BROADCAST).then_some(answer)
    }

    /// Why the session must end if its master was taken off the allow-list (checked
    /// between requests: an exchange with the UPS is never cut).
    fn not_allowed(&self) -> Option<String> {
        let allowed = access::allowed(&self.config.lock().allow, self.peer.ip());
        (!allowed).then(|| "its master is no longer among the masters allowed".into())
    }

    fn write_refused(&self, function: u8, by_role: bool) -> Event {
        Event::WriteRefused {
            session: self.number,
            peer: self.peer,
            function,
            holder: self.holder.clone(),
            by_role,
        }
    }

    fn may_write(&self, config: &TcpConfig) -> bool {
        match config.writers {
            Writers::Everyone => true,
            Writers::Listed => config
                .writer_list
                .iter()
                .any(|c| c.contains(self.peer.ip())),
            Writers::Nobody => false,
        }
    }
}
