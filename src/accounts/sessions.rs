//! Who is logged in: at most one session per [`Channel`], ended by a new login, by
//! inactivity, by logout or by a change to the account. The reason a session ended is kept
//! for a while, so the old browser (or terminal) can be told why at its next request.

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
    /// A new login (only one session at a time).
    TakenOver {
        by: Peer,
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
            Ended::TakenOver { by } => format!(
                "Your session ended because someone logged in from {by}: the card allows one session at a time."
            ),
            Ended::TimedOut => "Your session ended after a period without activity.".into(),
            Ended::LoggedOut => "You have logged out.".into(),
            Ended::PasswordChanged => "Your password has been changed: log in with the new one.".into(),
            Ended::AccountChanged => "Your session ended because an administrator changed your account.".into(),
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
    /// Opens `session`, ending the one of the same channel if there is one (returned).
    pub fn open(&mut self, session: Session, now: Instant) -> Option<Session> {
        let old = self
            .live
            .iter()
            .position(|l| l.session.channel == session.channel)
            .map(|i| self.live.remove(i).session);
        if let Some(old) = &old {
            self.remember(&old.token, Ended::TakenOver { by: session.peer });
        }
        self.live.push(Live {
            session,
            last_seen: now,
        });
        old
    }

    /// The live session with `token`, marked active now if `touch`; or why there is none.
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
        match self.ended.iter().position(|(t, _)| same_secret(t, token)) {
            Some(i) => Err(self.ended.remove(i).map_or(Ended::Unknown, |(_, e)| e)),
            None => Err(Ended::Unknown),
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

    fn remember(&mut self, token: &str, why: Ended) {
        if self.ended.len() >= ENDED_KEPT {
            self.ended.pop_front();
        }
        self.ended.push_back((token.to_owned(), why));
    }
}
