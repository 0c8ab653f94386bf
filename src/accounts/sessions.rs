//! Who is logged in: one session at a time, on the web or the console alike, ended by a new
//! login on either, by inactivity, by logout or by a change to the account. The reason a
//! session ended is kept, under its token, for the last few sessions: the old browser (or
//! terminal) is told why at its next request, from this record and nothing it sends but
//! its token, and the login page shows it once.

use super::{same_secret, Channel, Peer, Role};
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

/// A logged-in user. The token is the session's secret (the web keeps it in a cookie);
/// `csrf` is a second secret that every form of the session carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token: String,
    pub csrf: String,
    pub user: String,
    pub role: Role,
    pub peer: Peer,
    pub channel: Channel,
    /// Why the password must be changed before anything else, if it must.
    pub change: Option<Change>,
    pub since: SystemTime,
}

impl Session {
    /// What the user of a new login is told of this session, which the login ended.
    pub fn ended_notice(&self) -> String {
        format!(
            "The {} session of {} from {} has been ended: one session at a time.",
            self.channel.name(),
            self.user,
            self.peer
        )
    }
}

/// Why a password must be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The default password, or one an admin reset: valid for one login only.
    FirstLogin,
    /// Older than `password_days`.
    Expired,
}

/// Why a session is no longer there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A new login from `by` on `on` (only one session at a time).
    TakenOver {
        by: Peer,
        on: Channel,
    },
    /// No activity for the login timeout.
    TimedOut,
    LoggedOut,
    /// The password was changed: log in again with the new one.
    PasswordChanged,
    /// An admin removed the account, changed its role or reset its password.
    AccountChanged,
    /// No such session (never was, or ended long ago).
    Unknown,
}

impl Ended {
    /// What the user reads.
    pub fn message(&self) -> String {
        match self {
            Ended::TakenOver { by, on } => {
                let from = match (by, on) {
                    (Peer::Serial, _) => "on the serial console".to_owned(),
                    (Peer::Net(ip), Channel::Console) => format!("from {ip} on the SSH console"),
                    (Peer::Net(ip), Channel::Web) => format!("from {ip} on the web interface"),
                };
                format!(
                    "Your session ended because someone logged in {from}: the card allows one session at a time."
                )
            }
            Ended::TimedOut => "Your session ended after a period without activity.".into(),
            Ended::LoggedOut => "You have logged out.".into(),
            Ended::PasswordChanged => {
                "Your password has been changed: log in with the new one.".into()
            }
            Ended::AccountChanged => {
                "Your session ended because an administrator changed your account.".into()
            }
            Ended::Unknown => "Please log in.".into(),
        }
    }
}

struct Live {
    session: Session,
    last_seen: Instant,
}

/// Reasons remembered for sessions that ended; the oldest are forgotten first.
const ENDED_KEPT: usize = 16;

#[derive(Default)]
pub struct Sessions {
    live: Vec<Live>,
    ended: VecDeque<(String, Ended)>,
}

impl Sessions {
    /// Opens `session`, ending the one open before on any channel, if there is one
    /// (returned).
    pub fn open(&mut self, session: Session, now: Instant) -> Option<Session> {
        let why = Ended::TakenOver {
            by: session.peer,
            on: session.channel,
        };
        let old = self.end(|_| true, why).pop();
        self.live.push(Live {
            session,
            last_seen: now,
        });
        old
    }

    /// The live session with `token`, marked active now if `touch`; or why there is none
    /// (the record stays, for [`Sessions::take_ended`]).
    pub fn get(&mut self, token: &str, touch: bool, now: Instant) -> Result<Session, Ended> {
        if let Some(live) = self
            .live
            .iter_mut()
            .find(|l| same_secret(&l.session.token, token))
        {
            if touch {
                live.last_seen = now;
            }
            return Ok(live.session.clone());
        }
        Err(self
            .ended
            .iter()
            .find(|(t, _)| same_secret(t, token))
            .map_or(Ended::Unknown, |(_, e)| *e))
    }

    /// Why the session with `token` ended, told once: the record is forgotten.
    pub fn take_ended(&mut self, token: &str) -> Ended {
        match self.ended.iter().position(|(t, _)| same_secret(t, token)) {
            Some(i) => self.ended.remove(i).map_or(Ended::Unknown, |(_, e)| e),
            None => Ended::Unknown,
        }
    }

    /// Ends the sessions that `which` selects, remembering `why`; returns them.
    pub fn end(&mut self, which: impl Fn(&Session) -> bool, why: Ended) -> Vec<Session> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.live.len() {
            if which(&self.live[i].session) {
                gone.push(self.live.remove(i).session);
            } else {
                i += 1;
            }
        }
        for s in &gone {
            self.remember(&s.token, why);
        }
        gone
    }

    /// Ends the sessions idle for `timeout` or longer; returns them.
    pub fn expire(&mut self, timeout: Duration, now: Instant) -> Vec<Session> {
        let stale: Vec<String> = self
            .live
            .iter()
            .filter(|l| now.saturating_duration_since(l.last_seen) >= timeout)
            .map(|l| l.session.token.clone())
            .collect();
        self.end(|s| stale.contains(&s.token), Ended::TimedOut)
    }

    pub fn live(&self, channel: Channel) -> Option<&Session> {
        self.live
            .iter()
            .map(|l| &l.session)
            .find(|s| s.channel == channel)
    }

    /// The one live session, if any.
    pub fn current(&self) -> Option<&Session> {
        self.live.first().map(|l| &l.session)
    }

    fn remember(&mut self, token: &str, why: Ended) {
        if self.ended.len() >= ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back((token.to_owned(), why));
    }
}
