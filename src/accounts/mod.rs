//! Accounts: users and their roles, password hashes and policy, sessions, and the
//! throttling of failed logins. The web pages and the console both log in here, so the
//! rules of docs/accounts.md hold the same wherever a user comes from; nothing here knows HTTP or
//! SSH: callers pass a user name, a password, where the user comes from ([`Peer`]) and on
//! which [`Channel`].
//!
//! - `admin` always exists. Its default password is the last 6 hex digits of the card's
//!   MAC address, upper case ([`Mac::default_password`]), valid for one login: the session
//!   it opens must change it ([`Change::FirstLogin`]) and nothing else.
//! - Read/Write and Read-only users are added by admin. A password older than
//!   `password_days` must be changed at the next login ([`Change::Expired`]).
//! - One session at a time, web and console alike: a new login on either ends the previous
//!   one, whose holder is told why and by whom at its next request ([`Ended`]). A session
//!   ends after `login_timeout_s` without activity.
//! - Hashes are Argon2id, one at a time ([`password::Hasher`]). Failed logins slow the
//!   address they come from for that account, and the account from everywhere but the
//!   addresses it logged in from ([`throttle`]), never locking anyone out; a wrong user
//!   name costs the same time as a wrong password.
//!
//! Users live in the `users` table of the card's database (sql/002_accounts.sql); sessions
//! live in memory only, so a restart logs everyone out.

pub mod password;
mod sessions;
pub mod throttle;

pub use sessions::{Change, Ended, Session};

use crate::event::{Event, Events};
use crate::settings::Settings;
use crate::store::{Store, StoreError};
use parking_lot::{Mutex, RwLock};
use password::Hasher;
use rusqlite::{params, OptionalExtension};
use sessions::Sessions;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use throttle::{By, Throttle};

/// The one administrator account.
pub const ADMIN: &str = "admin";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    ReadWrite,
    ReadOnly,
}

impl Role {
    /// The name stored and used in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadWrite => "read-write",
            Role::ReadOnly => "read-only",
        }
    }

    /// What a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Administrator",
            Role::ReadWrite => "Read/Write",
            Role::ReadOnly => "Read-only",
        }
    }

    /// May change configuration and use controls.
    pub fn may_change(self) -> bool {
        self != Role::ReadOnly
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "read-write" => Ok(Role::ReadWrite),
            "read-only" => Ok(Role::ReadOnly),
            _ => Err(format!("'{s}' is not a role: read-write or read-only")),
        }
    }
}

/// Where a login comes from: what failures are throttled by, and what the log names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    Net(IpAddr),
    /// The console on the card's serial (USB) port.
    Serial,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Net(ip) => write!(f, "{ip}"),
            Peer::Serial => f.write_str("the serial console"),
        }
    }
}

/// Where a session lives; each has at most one session at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Web,
    Console,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Console => "console",
        }
    }
}

/// The card's MAC address: its identity, and the source of the default admin password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The last 6 hex digits, upper case.
    pub fn default_password(&self) -> String {
        format!("{:02X}{:02X}{:02X}", self.0[3], self.0[4], self.0[5])
    }

    /// The MAC of interface `preferred` (the card's Ethernet, `net_interface`) if it has
    /// one, else of the first interface that is not loopback and has one.
    pub fn of_interfaces(preferred: &str) -> Option<Mac> {
        let found: Vec<(String, Mac)> = nix::ifaddrs::getifaddrs()
            .ok()?
            .filter(|a| a.interface_name != "lo")
            .filter_map(|a| {
                let mac = a.address?.as_link_addr()?.addr()?;
                (mac != [0; 6]).then(|| (a.interface_name.clone(), Mac(mac)))
            })
            .collect();
        found
            .iter()
            .find(|(name, _)| name == preferred)
            .or(found.first())
            .map(|(_, m)| *m)
    }
}

impl FromStr for Mac {
    type Err = String;
    /// `aa:bb:cc:dd:ee:ff`, with `-` or nothing between the bytes.
    fn from_str(s: &str) -> Result<Mac, String> {
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        let bad = || format!("'{s}' is not a MAC address such as 00:1a:2b:3c:4d:5e");
        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The settings the accounts follow; the service updates them when the settings change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub login_timeout: Duration,
    /// Zero: passwords never expire.
    pub password_days: u32,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Limits {
        Limits {
            login_timeout: Duration::from_secs(u64::from(s.login_timeout_s)),
            password_days: s.password_days,
        }
    }
}

/// An account as listed to admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The password must be changed at the next login (default or reset).
    pub must_change: bool,
    pub changed_at: SystemTime,
}

#[derive(Debug)]
pub enum LoginError {
    /// Too many failures from this address, or against this account: try again after the
    /// wait; the password was not checked.
    Throttled {
        wait: Duration,
        by: By,
    },
    /// Wrong user name or password (never told apart); `wait` is the throttle the failure
    /// started, if any.
    Refused {
        wait: Duration,
        by: By,
    },
    Store(StoreError),
}

impl LoginError {
    fn throttled(w: throttle::Wait) -> LoginError {
        LoginError::Throttled {
            wait: w.left,
            by: w.by,
        }
    }

    fn refused(w: throttle::Wait) -> LoginError {
        LoginError::Refused {
            wait: w.left,
            by: w.by,
        }
    }
}

/// Whose failures a wait comes from, as the user reads it.
fn too_many(by: By) -> &'static str {
    match by {
        By::Address => "Too many failed logins from your address",
        By::Account => "Too many failed logins for this user",
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A wait is shown in whole seconds, rounded up: trying at the time said works.
        let secs = |w: &Duration| w.as_secs() + u64::from(w.subsec_nanos() > 0);
        match self {
            LoginError::Throttled { wait, by } => {
                write!(f, "{}: try again in {} s.", too_many(*by), secs(wait))
            }
            LoginError::Refused { wait, .. } if wait.is_zero() => {
                f.write_str("Wrong user name or password.")
            }
            LoginError::Refused { wait, by } => write!(
                f,
                "Wrong user name or password. {}: the next try is possible in {} s.",
                too_many(*by),
                secs(wait)
            ),
            LoginError::Store(e) => write!(f, "The account database cannot be read: {e}"),
        }
    }
}

/// Why an account change was refused; the text is for the user.
#[derive(Debug)]
pub enum AccountError {
    /// The current password given was wrong (and counted as a failed login).
    WrongPassword(LoginError),
    /// The new password breaks these rules of the policy.
    Policy(Vec<String>),
    /// The user may not do this.
    NotAllowed(String),
    /// Bad input: unknown user, bad name, ...
    Invalid(String),
    /// The session is gone.
    Session(Ended),
    Store(StoreError),
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::WrongPassword(e) => match e {
                LoginError::Refused { .. } => f.write_str("The current password is wrong."),
                e => e.fmt(f),
            },
            AccountError::Policy(rules) => f.write_str(&rules.join(" ")),
            AccountError::NotAllowed(s) | AccountError::Invalid(s) => f.write_str(s),
            AccountError::Session(e) => f.write_str(&e.message()),
            AccountError::Store(e) => write!(f, "The account database cannot be written: {e}"),
        }
    }
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> AccountError {
        AccountError::Store(e)
    }
}

struct Row {
    role: Role,
    hash: String,
    must_change: bool,
    changed_at_ms: i64,
}

pub struct Accounts {
    store: Mutex<Store>,
    hasher: Hasher,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    limits: RwLock<Limits>,
    events: Events,
    mac: Mac,
}

impl Accounts {
    /// Opens the accounts in the data folder's database, creating `admin` with the default
    /// password if it is missing.
    pub fn open(
        data: &Path,
        mac: Mac,
        limits: Limits,
        events: Events,
    ) -> Result<Accounts, StoreError> {
        let accounts = Accounts {
            store: Mutex::new(Store::open(data)?),
            hasher: Hasher::new(),
            sessions: Mutex::new(Sessions::default()),
            throttle: Mutex::new(Throttle::default()),
            limits: RwLock::new(limits),
            events,
            mac,
        };
        if accounts.row(ADMIN)?.is_none() {
            accounts.insert_default_admin()?;
        }
        Ok(accounts)
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn limits(&self) -> Limits {
        *self.limits.read()
    }

    /// New limits apply at once, to open sessions too.
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.write() = limits;
    }

    /// Checks `password` and opens a session for `name` on `channel`, ending the one
    /// already there. A session whose password must change first says so in
    /// [`Session::change`]; the caller then allows nothing but [`Accounts::change_password`].
    pub fn login(
        &self,
        name: &str,
        password: &str,
        peer: Peer,
        channel: Channel,
    ) -> Result<Session, LoginError> {
        // The try takes its place before the hash, so tries made at once cannot overrun
        // the allowance.
        let tried = self
            .throttle
            .lock()
            .begin(peer, name, Instant::now())
            .map_err(LoginError::throttled)?;
        let row = match self.row(name) {
            Ok(row) => row,
            Err(e) => {
                self.throttle.lock().release(tried);
                return Err(LoginError::Store(e));
            }
        };
        if !self
            .hasher
            .verify(password, row.as_ref().map(|r| r.hash.as_str()))
        {
            let wait = self.throttle.lock().failed(tried, Instant::now());
            self.events.emit(Event::LoginFailed {
                user: shown_name(name),
                peer: peer.to_string(),
                channel: channel.name(),
            });
            return Err(LoginError::refused(wait));
        }
        let row = row.expect("verified against a stored hash");
        self.throttle.lock().succeeded(tried, Instant::now());
        let change = if row.must_change {
            Some(Change::FirstLogin)
        } else if self.expired(row.changed_at_ms) {
            self.events.emit(Event::PasswordExpired {
                user: name.to_owned(),
                days: self.limits().password_days,
            });
            Some(Change::Expired)
        } else {
            None
        };
        let session = Session {
            token: hex(&random_bytes::<32>()),
            csrf: hex(&random_bytes::<32>()),
            user: name.to_owned(),
            role: row.role,
            peer,
            channel,
            change,
            since: SystemTime::now(),
        };
        self.expire_idle();
        let old = self.sessions.lock().open(session.clone(), Instant::now());
        if let Some(old) = old {
            self.events.emit(Event::SessionTakenOver {
                user: old.user,
                channel: old.channel.name(),
                by: format!("{peer} ({})", channel.name()),
            });
        }
        self.events.emit(Event::LoginSucceeded {
            user: name.to_owned(),
            admin: row.role == Role::Admin,
            channel: channel.name(),
            peer: peer.to_string(),
        });
        Ok(session)
    }

    /// The live session with `token`, or why there is none. `touch` counts the request as
    /// activity; an automatic refresh passes false, so a page left open still times out.
    pub fn session(&self, token: &str, touch: bool) -> Result<Session, Ended> {
        self.expire_idle();
        self.sessions.lock().get(token, touch, Instant::now())
    }

    /// Why the session with `token` ended, told once (the login page's notice); nothing
    /// ([`Ended::Unknown`]) for a token that never was or whose reason was already told.
    pub fn ended(&self, token: &str) -> Ended {
        self.expire_idle();
        self.sessions.lock().take_ended(token)
    }

    /// Who is logged in on `channel`.
    pub fn logged_in(&self, channel: Channel) -> Option<Session> {
        self.expire_idle();
        self.sessions.lock().live(channel).cloned()
    }

    /// Who is logged in, on whichever channel: the session a new login would end.
    pub fn current(&self) -> Option<Session> {
        self.expire_idle();
        self.sessions.lock().current().cloned()
    }

    /// Ends sessions idle for the login timeout, logging each. Cheap; call it often.
    pub fn expire_idle(&self) {
        let timeout = self.limits().login_timeout;
        let gone = self.sessions.lock().expire(timeout, Instant::now());
        for s in gone {
            self.events.emit(Event::SessionTimedOut {
                user: s.user,
                channel: s.channel.name(),
                after_s: timeout.as_secs(),
            });
        }
    }

    pub fn logout(&self, token: &str) {
        let gone = self
            .sessions
            .lock()
            .end(|s| same_secret(&s.token, token), Ended::LoggedOut);
        for s in gone {
            self.events.emit(Event::Logout {
                user: s.user,
                channel: s.channel.name(),
            });
        }
    }

    /// Changes the session's own password after checking the current one (a wrong one
    /// counts as a failed login). The session ends: the user logs in again with the new
    /// password.
    pub fn change_password(
        &self,
        token: &str,
        current: &str,
        new: &str,
    ) -> Result<(), AccountError> {
        let session = self.session(token, true).map_err(AccountError::Session)?;
        let tried = self
            .throttle
            .lock()
            .begin(session.peer, &session.user, Instant::now())
            .map_err(|w| AccountError::WrongPassword(LoginError::throttled(w)))?;
        let row = match self.row(&session.user) {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.throttle.lock().release(tried);
                return Err(AccountError::Session(Ended::AccountChanged));
            }
            Err(e) => {
                self.throttle.lock().release(tried);
                return Err(e.into());
            }
        };
        if !self.hasher.verify(current, Some(&row.hash)) {
            let wait = self.throttle.lock().failed(tried, Instant::now());
            self.events.emit(Event::LoginFailed {
                user: session.user.clone(),
                peer: session.peer.to_string(),
                channel: session.channel.name(),
            });
            return Err(AccountError::WrongPassword(LoginError::refused(wait)));
        }
        self.throttle.lock().succeeded(tried, Instant::now());
        let mut rules = password::check(new);
        if rules.is_empty() && new == current {
            rules.push("The new password must differ from the current one.".into());
        }
        if !rules.is_empty() {
            return Err(AccountError::Policy(rules));
        }
        let hash = self.hasher.hash(new);
        self.write(
            "UPDATE users SET hash = ?2, must_change = 0, changed_at_ms = ?3 WHERE name = ?1",
            params![session.user, hash, now_ms()],
        )?;
        self.sessions
            .lock()
            .end(|s| s.user == session.user, Ended::PasswordChanged);
        self.events.emit(Event::PasswordChanged {
            user: session.user.clone(),
            by: session.user,
        });
        Ok(())
    }

    /// Every account, admin first, then by name.
    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        let store = self.store.lock();
        let mut stmt = store
            .connection()
            .prepare_cached(
                "SELECT name, role, must_change, changed_at_ms FROM users \
                 ORDER BY name != 'admin', name",
            )
            .map_err(|e| store.error(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| store.error(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, role, must_change, ms)| {
                Some(User {
                    role: role.parse().ok()?,
                    name,
                    must_change,
                    changed_at: from_ms(ms),
                })
            })
            .collect())
    }

    /// Adds a Read/Write or Read-only user with a first password, to be changed at the first
    /// login. Admin only.
    pub fn add_user(
        &self,
        by: &Session,
        name: &str,
        role: Role,
        first_password: &str,
    ) -> Result<(), AccountError> {
        admin_only(by)?;
        check_name(name)?;
        if role == Role::Admin {
            return Err(AccountError::Invalid(
                "There is one administrator, admin; a new user is Read/Write or Read-only.".into(),
            ));
        }
        if self.row(name)?.is_some() {
            return Err(AccountError::Invalid(format!(
                "A user named {name} already exists."
            )));
        }
        let rules = password::check(first_password);
        if !rules.is_empty() {
            return Err(AccountError::Policy(rules));
        }
        let hash = self.hasher.hash(first_password);
        self.write(
            "INSERT INTO users (name, role, hash, must_change, changed_at_ms) VALUES (?1, ?2, ?3, 1, ?4)",
            params![name, role.as_str(), hash, now_ms()],
        )?;
        self.events.emit(Event::UserAdded {
            user: name.to_owned(),
            role: role.label(),
            by: by.user.clone(),
        });
        Ok(())
    }

    /// Removes a user (never admin), ending its session. Admin only.
    pub fn remove_user(&self, by: &Session, name: &str) -> Result<(), AccountError> {
        admin_only(by)?;
        self.existing_user(name)?;
        self.write("DELETE FROM users WHERE name = ?1", params![name])?;
        self.sessions
            .lock()
            .end(|s| s.user == name, Ended::AccountChanged);
        self.events.emit(Event::UserRemoved {
            user: name.to_owned(),
            by: by.user.clone(),
        });
        Ok(())
    }

    /// Makes a user Read/Write or Read-only, ending its session. Admin only.
    pub fn set_role(&self, by: &Session, name: &str, role: Role) -> Result<(), AccountError> {
        admin_only(by)?;
        self.existing_user(name)?;
        if role == Role::Admin {
            return Err(AccountError::Invalid(
                "There is one administrator, admin.".into(),
            ));
        }
        self.write(
            "UPDATE users SET role = ?2 WHERE name = ?1",
            params![name, role.as_str()],
        )?;
        self.sessions
            .lock()
            .end(|s| s.user == name, Ended::AccountChanged);
        self.events.emit(Event::UserRoleChanged {
            user: name.to_owned(),
            role: role.label(),
            by: by.user.clone(),
        });
        Ok(())
    }

    /// Gives a user a new password valid for one login (it must be changed then), ending its
    /// session. Admin only; admin changes its own with [`Accounts::change_password`].
    pub fn reset_password(
        &self,
        by: &Session,
        name: &str,
        temporary: &str,
    ) -> Result<(), AccountError> {
        admin_only(by)?;
        self.existing_user(name)?;
        let rules = password::check(temporary);
        if !rules.is_empty() {
            return Err(AccountError::Policy(rules));
        }
        let hash = self.hasher.hash(temporary);
        self.write(
            "UPDATE users SET hash = ?2, must_change = 1, changed_at_ms = ?3 WHERE name = ?1",
            params![name, hash, now_ms()],
        )?;
        self.sessions
            .lock()
            .end(|s| s.user == name, Ended::AccountChanged);
        self.events.emit(Event::PasswordReset {
            user: name.to_owned(),
            by: by.user.clone(),
        });
        Ok(())
    }

    /// Back to the factory accounts: only admin, with the default password; every session
    /// ends. Called through [`crate::board::control::Control`] (the console's menu, the
    /// reset button, a factory reset), which logs who asked.
    pub fn reset_to_default(&self) -> Result<(), StoreError> {
        self.write_store("DELETE FROM users", params![])?;
        self.insert_default_admin()?;
        self.sessions.lock().end(|_| true, Ended::AccountChanged);
        Ok(())
    }

    fn insert_default_admin(&self) -> Result<(), StoreError> {
        let hash = self.hasher.hash(&self.mac.default_password());
        self.write_store(
            "INSERT OR REPLACE INTO users (name, role, hash, must_change, changed_at_ms) \
             VALUES (?1, 'admin', ?2, 1, ?3)",
            params![ADMIN, hash, now_ms()],
        )
    }

    fn existing_user(&self, name: &str) -> Result<(), AccountError> {
        if name == ADMIN {
            return Err(AccountError::Invalid(
                "admin cannot be removed or changed here; admin changes its own password on the password page.".into(),
            ));
        }
        match self.row(name)? {
            Some(_) => Ok(()),
            None => Err(AccountError::Invalid(format!(
                "There is no user named {}.",
                shown_name(name)
            ))),
        }
    }

    fn expired(&self, changed_at_ms: i64) -> bool {
        let days = self.limits().password_days;
        days > 0 && now_ms().saturating_sub(changed_at_ms) >= i64::from(days) * 86_400_000
    }

    fn row(&self, name: &str) -> Result<Option<Row>, StoreError> {
        let store = self.store.lock();
        store
            .connection()
            .query_row(
                "SELECT role, hash, must_change, changed_at_ms FROM users WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                },
            )
            .optional()
            .map(|found| {
                found.and_then(|(role, hash, must_change, changed_at_ms)| {
                    Some(Row {
                        role: role.parse().ok()?,
                        hash,
                        must_change,
                        changed_at_ms,
                    })
                })
            })
            .map_err(|e| store.error(e))
    }

    fn write_store(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<(), StoreError> {
        let store = self.store.lock();
        store
            .connection()
            .execute(sql, params)
            .map(drop)
            .map_err(|e| store.error(e))
    }

    fn write(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<(), AccountError> {
        Ok(self.write_store(sql, params)?)
    }
}

fn admin_only(by: &Session) -> Result<(), AccountError> {
    if by.role == Role::Admin && by.change.is_none() {
        Ok(())
    } else {
        Err(AccountError::NotAllowed(
            "Only admin manages accounts.".into(),
        ))
    }
}

/// User names: 1 to 32 letters, digits, `.`, `_` or `-`.
fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(
            "A user name is 1 to 32 letters, digits, '.', '_' or '-'.".into(),
        ))
    }
}

/// A user name as typed at a login, fit for the log: control characters replaced and at
/// most 32 characters, since anyone can type anything there.
fn shown_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(32)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().count() > 32 {
        s.push('…');
    }
    s
}

/// `N` bytes from the system's secure random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source works");
    b
}

/// Compares secrets (tokens) in a time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let diff = a
        .bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_password_is_the_macs_last_six_hex_digits() {
        let mac: Mac = "00:1a:2b:3c:4d:5e".parse().unwrap();
        assert_eq!(mac.default_password(), "3C4D5E");
        assert_eq!(mac.to_string(), "00:1A:2B:3C:4D:5E");
        assert_eq!("001A2B3C4D5E".parse::<Mac>().unwrap(), mac);
        assert_eq!("00-1a-2b-3c-4d-5e".parse::<Mac>().unwrap(), mac);
        assert!("00:1a:2b:3c:4d".parse::<Mac>().is_err());
        assert!("00:1a:2b:3c:4d:5g".parse::<Mac>().is_err());
    }

    #[test]
    fn names_typed_at_the_login_are_made_safe_for_the_log() {
        assert_eq!(shown_name("bob"), "bob");
        assert_eq!(shown_name("a\nb\x1b"), "a?b?");
        assert_eq!(shown_name(&"x".repeat(40)).chars().count(), 33);
    }
}
