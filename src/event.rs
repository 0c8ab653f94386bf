//! Events for the event log. Real-time threads hand them to the store thread through a
//! bounded channel and never wait: if the store falls behind, the event is counted as
//! dropped and a line is logged, but the sender goes on.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ColdBoot,
    WarmBoot,
    UpsDetected {
        baud: u32,
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
    /// Session events not logged because connections came too fast.
    TcpEventsSkipped {
        count: u64,
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
    AccountsReset,
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
}

impl Event {
    /// A stable name, for filtering and for tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ColdBoot => "cold_boot",
            Event::WarmBoot => "warm_boot",
            Event::UpsDetected { .. } => "ups_detected",
            Event::UpsLost => "ups_lost",
            Event::UpsRestored => "ups_restored",
            Event::RtuLost => "rtu_lost",
            Event::RtuRestored => "rtu_restored",
            Event::TcpOpened { .. } => "tcp_opened",
            Event::TcpClosed { .. } => "tcp_closed",
            Event::TcpRefused { .. } => "tcp_refused",
            Event::TcpEventsSkipped { .. } => "tcp_events_skipped",
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
            Event::AccountsReset => "accounts_reset",
            Event::CertificateMade { .. } => "certificate_made",
            Event::CertificateInstalled { .. } => "certificate_installed",
            Event::CertificateReverted { .. } => "certificate_reverted",
        }
    }

    /// The line an operator reads in the log.
    pub fn message(&self) -> String {
        match self {
            Event::ColdBoot => "Cold boot".into(),
            Event::WarmBoot => "Warm boot".into(),
            Event::UpsDetected { baud } => format!("UPS detected at {baud} baud"),
            Event::UpsLost => "UPS communication lost".into(),
            Event::UpsRestored => "UPS communication restored".into(),
            Event::RtuLost => "RTU communication lost".into(),
            Event::RtuRestored => "RTU communication restored".into(),
            Event::TcpOpened { session, peer } => format!("TCP session {session} opened ({peer})"),
            Event::TcpClosed { session, reason } => {
                format!("TCP session {session} closed ({reason})")
            }
            Event::TcpRefused { peer } => {
                format!("TCP connection from {peer} refused: all sessions in use")
            }
            Event::TcpEventsSkipped { count } => {
                format!("{count} TCP session events not logged: connections came too fast")
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
            Event::AccountsReset => {
                "Accounts reset to default: admin only, with the default password".into()
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
        }
    }
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
            },
            rx,
        )
    }

    pub fn emit(&self, event: Event) {
        log::info!("event: {}", event.message());
        let stamped = Stamped {
            at: SystemTime::now(),
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

    /// Events lost because the store could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
