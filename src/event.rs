//! Events for the event log. Real-time threads hand them to the store thread through a
//! bounded channel and never wait: if the store falls behind, the event is counted as
//! dropped and a line is logged, but the sender goes on. Events are stamped with the
//! card's clock ([`CardClock`]), which follows NTP and the user without touching the
//! system's.

use crate::clock::CardClock;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// Whom a Modbus/TCP Security client's certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub subject: String,
    /// The role, or "none (why)".
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ColdBoot,
    WarmBoot,
    UpsDetected {
        baud: u32,
    },
    /// A whole round of baud detection got no answer (logged once per start).
    UpsNotFound {
        bauds: Vec<u32>,
        slave: u8,
    },
    UpsLost,
    UpsRestored,
    RtuLost,
    RtuRestored,
    TcpOpened {
        session: u8,
        peer: SocketAddr,
    },
    TcpClosed {
        session: u8,
        reason: String,
    },
    TcpRefused {
        peer: SocketAddr,
    },
    /// A master outside the allow-list.
    TcpNotAllowed {
        peer: SocketAddr,
    },
    /// A write from a master that may only read.
    WriteRefused {
        session: u8,
        peer: SocketAddr,
        function: u8,
        /// On Modbus/TCP Security: whom the certificate names, and whether its role (not
        /// `modbus_write`) refused it.
        holder: Option<Holder>,
        by_role: bool,
    },
    /// A Modbus/TCP Security session, after its handshake: who the certificate names.
    MbtlsOpened {
        session: u8,
        peer: SocketAddr,
        subject: String,
        role: String,
    },
    MbtlsClosed {
        session: u8,
        reason: String,
    },
    /// A Modbus/TCP Security connection turned away: handshake refused, not allowed, no
    /// session free.
    MbtlsRefused {
        peer: SocketAddr,
        /// The certificate's subject, when it was shown before the refusal.
        subject: Option<String>,
        reason: String,
    },
    /// A Modbus/TCP Security client whose certificate grants no rights: every request
    /// gets exception 01 (logged once per connection).
    MbtlsNoRights {
        session: u8,
        subject: String,
        why: String,
    },
    /// Session events not logged because connections came too fast.
    TcpEventsSkipped {
        count: u64,
    },
    /// The card's clock was stepped to the NTP server's time.
    TimeChangedByServer {
        step_ms: i64,
    },
    TimeChangedByUser {
        step_ms: i64,
        by: String,
    },
    /// A restart was asked for (the service in place, or the board by `reboot`).
    Restart {
        by: String,
    },
    AccountsReset {
        by: String,
    },
    /// Logged at start: the previous run stopped feeding the watchdog, and why.
    WatchdogReset {
        reason: String,
    },
    /// What the network apply script did (lease, fallback, static) or why it failed.
    Network {
        message: String,
    },
    /// A setting changed through [`crate::live::Live::change`].
    SettingChanged {
        label: &'static str,
        old: String,
        new: String,
        /// Who, and how.
        by: String,
    },
    /// Settings back to their factory values (logged before it happens).
    FactoryReset {
        by: String,
    },
    /// The event log was emptied; this is then its first event.
    LogCleared {
        by: String,
    },
    /// A configuration file was taken.
    ConfigurationLoaded {
        changed: usize,
        by: String,
    },
    /// A firmware upload or `modbus-card upgrade` began.
    FirmwareStarted {
        by: String,
    },
    /// An image was not taken; nothing was changed.
    FirmwareRefused {
        reason: String,
        by: String,
    },
    /// A new version was written to the inactive slot; it starts on trial next.
    FirmwareInstalled {
        version: String,
        previous: String,
        slot: String,
        by: String,
    },
    /// The version on trial reported healthy: it is the good one now.
    FirmwareConfirmed {
        version: String,
    },
    /// The version on trial never reported healthy: the previous one runs again.
    FirmwareRolledBack {
        from: String,
        to: String,
        reason: String,
    },
    Stopped,
    /// A login to the web or the console; `admin` tells "admin login success" apart.
    LoginSucceeded {
        user: String,
        admin: bool,
        channel: &'static str,
        peer: String,
    },
    LoginFailed {
        user: String,
        peer: String,
        channel: &'static str,
    },
    Logout {
        user: String,
        channel: &'static str,
    },
    SessionTakenOver {
        user: String,
        channel: &'static str,
        by: String,
    },
    SessionTimedOut {
        user: String,
        channel: &'static str,
        after_s: u64,
    },
    PasswordChanged {
        user: String,
        by: String,
    },
    PasswordExpired {
        user: String,
        days: u32,
    },
    PasswordReset {
        user: String,
        by: String,
    },
    UserAdded {
        user: String,
        role: &'static str,
        by: String,
    },
    UserRemoved {
        user: String,
        by: String,
    },
    UserRoleChanged {
        user: String,
        role: &'static str,
        by: String,
    },
    /// The card made its own server certificate (first start, new addresses, near expiry).
    CertificateMade {
        names: String,
    },
    CertificateInstalled {
        subject: String,
        by: String,
    },
    CertificateReverted {
        by: String,
    },
    /// An administrator had the card make a new root; the old one's key is gone.
    RootMade {
        scope: String,
        by: String,
    },
    /// An administrator changed whom Modbus/TCP Security trusts or what a role may do.
    MbtlsChanged {
        what: String,
        by: String,
    },
    /// A trusted client CA or revocation list of Modbus/TCP Security is within 30 days of
    /// its end (or past it): told once per item.
    MbtlsExpiring {
        what: String,
    },
    /// The UPS's load moved (on battery, back on line, on bypass, eco, off), with its
    /// figures at that moment.
    UpsMode {
        /// [`crate::ups::Mode::key`] of the new state, and of the old one ("" at start).
        to: &'static str,
        from: &'static str,
        figures: String,
    },
    /// The UPS's battery is near the end of its backup time.
    UpsBatteryLow {
        figures: String,
    },
    UpsAlarm {
        /// What a user reads for the alarm.
        alarm: &'static str,
        raised: bool,
        figures: String,
    },
}

impl Event {
    /// A stable name, for filtering and for tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ColdBoot => "cold_boot",
            Event::WarmBoot => "warm_boot",
            Event::UpsDetected { .. } => "ups_detected",
            Event::UpsNotFound { .. } => "ups_not_found",
            Event::UpsLost => "ups_lost",
            Event::UpsRestored => "ups_restored",
            Event::RtuLost => "rtu_lost",
            Event::RtuRestored => "rtu_restored",
            Event::TcpOpened { .. } => "tcp_opened",
            Event::TcpClosed { .. } => "tcp_closed",
            Event::TcpRefused { .. } => "tcp_refused",
            Event::TcpNotAllowed { .. } => "tcp_not_allowed",
            Event::WriteRefused { .. } => "write_refused",
            Event::TcpEventsSkipped { .. } => "tcp_events_skipped",
            Event::MbtlsOpened { .. } => "mbtls_opened",
            Event::MbtlsClosed { .. } => "mbtls_closed",
            Event::MbtlsRefused { .. } => "mbtls_refused",
            Event::MbtlsNoRights { .. } => "mbtls_no_rights",
            Event::TimeChangedByServer { .. } => "time_changed_by_server",
            Event::TimeChangedByUser { .. } => "time_changed_by_user",
            Event::Restart { .. } => "restart",
            Event::AccountsReset { .. } => "accounts_reset",
            Event::WatchdogReset { .. } => "watchdog_reset",
            Event::Network { .. } => "network",
            Event::SettingChanged { .. } => "setting_changed",
            Event::ConfigurationLoaded { .. } => "configuration_loaded",
            Event::LogCleared { .. } => "log_cleared",
            Event::FactoryReset { .. } => "factory_reset",
            Event::FirmwareStarted { .. } => "firmware_started",
            Event::FirmwareRefused { .. } => "firmware_refused",
            Event::FirmwareInstalled { .. } => "firmware_installed",
            Event::FirmwareConfirmed { .. } => "firmware_confirmed",
            Event::FirmwareRolledBack { .. } => "firmware_rolled_back",
            Event::Stopped => "stopped",
            Event::LoginSucceeded { admin: true, .. } => "admin_login",
            Event::LoginSucceeded { admin: false, .. } => "user_login",
            Event::LoginFailed { .. } => "login_failed",
            Event::Logout { .. } => "logout",
            Event::SessionTakenOver { .. } => "session_taken_over",
            Event::SessionTimedOut { .. } => "session_timeout",
            Event::PasswordChanged { .. } => "password_changed",
            Event::PasswordExpired { .. } => "password_expired",
            Event::PasswordReset { .. } => "password_reset",
            Event::UserAdded { .. } => "user_added",
            Event::UserRemoved { .. } => "user_removed",
            Event::UserRoleChanged { .. } => "user_role_changed",
            Event::CertificateMade { .. } => "certificate_made",
            Event::CertificateInstalled { .. } => "certificate_installed",
            Event::CertificateReverted { .. } => "certificate_reverted",
            Event::RootMade { .. } => "root_made",
            Event::MbtlsChanged { .. } => "mbtls_changed",
            Event::MbtlsExpiring { .. } => "mbtls_expiring",
            Event::UpsMode { to: "battery", .. } => "ups_on_battery",
            Event::UpsMode { to: "online", .. } => "ups_on_line",
            Event::UpsMode { to: "bypass", .. } => "ups_on_bypass",
            Event::UpsMode { to: "eco", .. } => "ups_eco",
            Event::UpsMode { .. } => "ups_off",
            Event::UpsBatteryLow { .. } => "ups_battery_low",
            Event::UpsAlarm { raised: true, .. } => "ups_alarm_raised",
            Event::UpsAlarm { raised: false, .. } => "ups_alarm_cleared",
        }
    }

    /// The line an operator reads in the log.
    pub fn message(&self) -> String {
        match self {
            Event::ColdBoot => "Cold boot".into(),
            Event::WarmBoot => "Warm boot".into(),
            Event::UpsDetected { baud } => format!("UPS detected at {baud} baud"),
            Event::UpsNotFound { bauds, slave } => format!(
                "UPS not found: check that its COM-slot port is enabled ({}, slave {slave})",
                bauds
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            Event::UpsLost => "UPS communication lost".into(),
            Event::UpsRestored => "UPS communication restored".into(),
            Event::RtuLost => "RTU communication lost".into(),
            Event::RtuRestored => "RTU communication restored".into(),
            Event::TcpOpened { session, peer } => format!("TCP session {session} opened ({peer})"),
            Event::TcpClosed { session, reason } => {
                format!("TCP session {session} closed ({reason})")
            }
            Event::TcpNotAllowed { peer } => {
                format!("TCP connection from {peer} refused: not in the masters allowed")
            }
            Event::WriteRefused {
                session,
                peer,
                function,
                holder: None,
                ..
            } => format!(
                "TCP session {session} ({peer}): write refused ({}, function {function:02X}h): this master may only read",
                crate::modbus::pdu::function_name(*function)
            ),
            Event::WriteRefused {
                session,
                peer,
                function,
                holder: Some(Holder { subject, role }),
                by_role,
            } => format!(
                "Modbus/TCP Security session {session} ({peer}, {subject}, role {role}): write refused ({}, function {function:02X}h): {}",
                crate::modbus::pdu::function_name(*function),
                if *by_role {
                    format!("role {role} may only read")
                } else {
                    "this master may only read".into()
                }
            ),
            Event::TcpRefused { peer } => {
                format!("TCP connection from {peer} refused: all sessions in use")
            }
            Event::MbtlsOpened {
                session,
                peer,
                subject,
                role,
            } => format!("Modbus/TCP Security session {session} opened ({peer}, {subject}, role {role})"),
            Event::MbtlsClosed { session, reason } => {
                format!("Modbus/TCP Security session {session} closed ({reason})")
            }
            Event::MbtlsRefused {
                peer,
                subject: None,
                reason,
            } => format!("Modbus/TCP Security connection from {peer} refused: {reason}"),
            Event::MbtlsRefused {
                peer,
                subject: Some(subject),
                reason,
            } => format!("Modbus/TCP Security connection from {peer} ({subject}) refused: {reason}"),
            Event::MbtlsNoRights {
                session,
                subject,
                why,
            } => format!(
                "Modbus/TCP Security session {session} ({subject}): every request refused (exception 01): {why}"
            ),
            Event::TcpEventsSkipped { count } => {
                format!("{count} TCP session events not logged: connections came too fast")
            }
            Event::TimeChangedByServer { step_ms } => {
                format!("Time changed by server (NTP): {}", step(*step_ms))
            }
            Event::TimeChangedByUser { step_ms, by } => {
                format!("Time changed by user ({by}): {}", step(*step_ms))
            }
            Event::Restart { by } => format!("Restart ({by})"),
            Event::AccountsReset { by } => {
                format!("Accounts and passwords reset to default ({by})")
            }
            Event::WatchdogReset { reason } => format!("Restart by watchdog: {reason}"),
            Event::Network { message } => format!("Network: {message}"),
            Event::SettingChanged {
                label,
                old,
                new,
                by,
            } => {
                let shown = |v: &str| {
                    if v.is_empty() {
                        "(none)".to_string()
                    } else {
                        v.to_string()
                    }
                };
                format!(
                    "{label} changed from {} to {} ({by})",
                    shown(old),
                    shown(new)
                )
            }
            Event::LogCleared { by } => format!("Event log cleared ({by})"),
            Event::FactoryReset { by } => format!("Configuration reset to factory settings ({by})"),
            Event::ConfigurationLoaded { changed, by } => {
                format!("Configuration file loaded: {changed} settings changed ({by})")
            }
            Event::FirmwareStarted { by } => format!("Firmware upgrade started ({by})"),
            Event::FirmwareRefused { reason, by } => {
                format!("Firmware upgrade refused, nothing changed: {reason} ({by})")
            }
            Event::FirmwareInstalled {
                version,
                previous,
                slot,
                by,
            } => format!(
                "Firmware {version} installed in slot {slot} ({by}); it replaces {previous} \
                 after a trial start"
            ),
            Event::FirmwareConfirmed { version } => {
                format!("Firmware {version} confirmed: healthy on trial, it is the version kept")
            }
            Event::FirmwareRolledBack { from, to, reason } => {
                format!("Firmware rolled back from {from} to {to}: {reason}")
            }
            Event::Stopped => "Service stopped".into(),
            Event::LoginSucceeded {
                user,
                admin: true,
                channel,
                peer,
            } => format!("Admin login success ({user}, {channel}, from {peer})"),
            Event::LoginSucceeded {
                user,
                admin: false,
                channel,
                peer,
            } => format!("User login success ({user}, {channel}, from {peer})"),
            Event::LoginFailed {
                user,
                peer,
                channel,
            } => format!("Login failed for '{user}' ({channel}, from {peer})"),
            Event::Logout { user, channel } => format!("Logout ({user}, {channel})"),
            Event::SessionTakenOver { user, channel, by } => {
                format!("Session of {user} ({channel}) ended: a new login from {by} took over")
            }
            Event::SessionTimedOut {
                user,
                channel,
                after_s,
            } => format!(
                "Session of {user} ({channel}) timed out after {after_s} s without activity"
            ),
            Event::PasswordChanged { user, by } if user == by => {
                format!("Password of {user} changed")
            }
            Event::PasswordChanged { user, by } => format!("Password of {user} changed by {by}"),
            Event::PasswordExpired { user, days } => {
                format!("Password of {user} expired (older than {days} days): it must be changed")
            }
            Event::PasswordReset { user, by } => {
                format!("Password of {user} reset by {by}: to be changed at the next login")
            }
            Event::UserAdded { user, role, by } => format!("User {user} added ({role}) by {by}"),
            Event::UserRemoved { user, by } => format!("User {user} removed by {by}"),
            Event::UserRoleChanged { user, role, by } => {
                format!("User {user} made {role} by {by}")
            }
            Event::CertificateMade { names } => {
                format!("The card made its HTTPS certificate for {names}")
            }
            Event::CertificateInstalled { subject, by } => {
                format!("Uploaded HTTPS certificate installed ({subject}) by {by}")
            }
            Event::CertificateReverted { by } => {
                format!("HTTPS certificate reverted to the card's own by {by}")
            }
            Event::RootMade { scope, by } => {
                format!("New root certificate made by {by}, signing only for {scope}")
            }
            Event::MbtlsChanged { what, by } => format!("Modbus/TCP Security: {what} by {by}"),
            Event::MbtlsExpiring { what } => format!("Modbus/TCP Security: {what}"),
            Event::UpsMode { to, from, figures } => {
                let what = match (*to, *from) {
                    ("battery", _) => "UPS on battery",
                    ("online", "") => "UPS on line",
                    ("online", _) => "UPS back on line",
                    ("bypass", _) => "UPS on bypass",
                    ("eco", _) => "UPS in eco mode (load on bypass)",
                    _ => "UPS off: the load is not supplied",
                };
                format!("{what} ({figures})")
            }
            Event::UpsBatteryLow { figures } => {
                format!("UPS battery low: near the end of its backup time ({figures})")
            }
            Event::UpsAlarm {
                alarm,
                raised: true,
                figures,
            } => format!("UPS alarm raised: {alarm} ({figures})"),
            Event::UpsAlarm {
                alarm,
                raised: false,
                figures,
            } => format!("UPS alarm cleared: {alarm} ({figures})"),
        }
    }
}

/// A clock step as an operator reads it: "+3600.0 s", "-0.8 s".
fn step(ms: i64) -> String {
    format!("{:+.1} s", ms as f64 / 1000.0)
}

/// An event with the wall-clock time it happened.
#[derive(Debug, Clone)]
pub struct Stamped {
    pub at: SystemTime,
    pub event: Event,
}

/// The sending side, cloned into every thread.
#[derive(Clone)]
pub struct Events {
    tx: Sender<Stamped>,
    dropped: Arc<AtomicU64>,
    clock: Arc<CardClock>,
}

/// Events waiting in memory before the store thread writes them.
pub const QUEUE: usize = 1024;

impl Events {
    pub fn channel() -> (Events, Receiver<Stamped>) {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        (
            Events {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
                clock: Arc::new(CardClock::default()),
            },
            rx,
        )
    }

    pub fn emit(&self, event: Event) {
        log::info!("event: {}", event.message());
        let stamped = Stamped {
            at: self.clock.now(),
            event,
        };
        match self.tx.try_send(stamped) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(s)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                log::warn!(
                    "event log queue full, event not stored ({n} so far): {}",
                    s.event.message()
                );
            }
        }
    }

    /// The clock that stamps the events.
    pub fn clock(&self) -> &Arc<CardClock> {
        &self.clock
    }

    /// Events lost because the store could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
