//! The menu of docs/console.md: Card Settings (the network), the two resets, the restart, Exit.
//!
//! Every change goes where the pages send theirs, so the checks, messages and events are
//! the same: the network through the settings' one door ([`crate::live::Live`]), after a
//! summary and a "y"; the resets and the restart through the card's controls, after
//! saying what they do and a "y". Anything else typed changes nothing: a question
//! cancelled (Ctrl-C), a terminal closed or a session ended in the middle leave the card
//! as it was. Read-only users see the settings and nothing more; the resets are admin's,
//! as on the Control page.

use super::input::{Answer, Keys, Stop, Watch, MAX_LINE};
use super::{Console, Terminal};
use crate::accounts::password::{MIN_LENGTH, SPECIALS};
use crate::accounts::{AccountError, Change, Channel, Role, Session};
use crate::board::clock;
use crate::live::{Refused, Who};
use crate::settings::{label, rule, shown, summary, Key};

/// The settings of item 1, in the order they are asked.
const NETWORK: [Key; 5] = [
    Key::DhcpEnabled,
    Key::IpAddress,
    Key::Netmask,
    Key::Gateway,
    Key::Dns,
];

/// Serves the menu on a fresh terminal.
pub fn run(console: &Console, term: &mut dyn Terminal, session: Session, via: &str) {
    let watch = watch(console, &session.token);
    let mut keys = Keys::new(term, watch);
    run_on(console, &mut keys, session, via);
}

/// Serves the menu on `keys` (a host that asked its own questions first keeps what was
/// typed ahead), until Exit or the end of the session; the session ends with it.
pub fn run_on<'t>(console: &'t Console, keys: &mut Keys<'t>, session: Session, via: &str) {
    keys.set_watch(watch(console, &session.token));
    let mut menu = Menu {
        console,
        keys,
        session,
        via: via.to_owned(),
    };
    let stop = menu.serve();
    let token = menu.session.token.clone();
    match stop {
        Stop::Closed => {}
        Stop::Ended(message) => {
            let _ = menu.keys.say(&format!("\n{message}"));
        }
    }
    // A session outlives no terminal: logged out unless it already ended.
    console.accounts.logout(&token);
}

/// The session stays while it is live, and is active while keys come.
fn watch<'t>(console: &'t Console, token: &str) -> Watch<'t> {
    let token = token.to_owned();
    Box::new(move |typed| {
        console
            .accounts
            .session(&token, typed)
            .map(drop)
            .map_err(|ended| ended.message())
    })
}

struct Menu<'m, 't> {
    console: &'t Console,
    keys: &'m mut Keys<'t>,
    session: Session,
    via: String,
}

/// The session goes on (`Ok`), or stops for this reason.
type Step<T = ()> = Result<T, Stop>;

impl Menu<'_, '_> {
    fn serve(&mut self) -> Stop {
        let result = (|| {
            if let Some(why) = self.session.change {
                self.change_password(why)?;
            }
            self.choices()
        })();
        match result {
            Ok(()) => Stop::Closed,
            Err(stop) => stop,
        }
    }

    fn choices(&mut self) -> Step {
        let mut show = true;
        loop {
            if std::mem::take(&mut show) {
                self.show_menu()?;
            }
            self.keys.write("Please Enter Your Choice => ")?;
            let choice = match self.keys.line(true)? {
                Answer::Text(t) => t,
                Answer::Cancelled => continue,
                Answer::TooLong => {
                    self.too_long()?;
                    continue;
                }
            };
            show = true;
            match choice.trim() {
                "1" => self.card_settings()?,
                "2" => self.reset_accounts()?,
                "3" => self.reset_configuration()?,
                "4" => self.restart()?,
                "0" => return Err(Stop::Ended("Goodbye.".into())),
                "" => show = false,
                other => {
                    let shown: String = other.chars().take(16).collect();
                    self.say(&format!(
                        "'{shown}' is not a choice: type 1, 2, 3, 4 or 0, then Enter."
                    ))?;
                    show = false;
                }
            }
        }
    }

    fn show_menu(&mut self) -> Step {
        let now = clock::utc(clock::unix_ns(self.console.clock.now()));
        let (date, time) = now.split_once(' ').unwrap_or((&now, ""));
        self.say(&format!(
            "\nDate: {date}   Time: {time}\n\
             Modbus Interface Configuration Utility  [{}]\n\
             {}\n\
             1. Card Settings\n\
             2. Reset Accounts/Passwords to Default\n\
             3. Reset Configuration to Default\n\
             4. Restart Card\n\
             0. Exit",
            crate::firmware::version::current(),
            self.console
                .link
                .ups
                .lock()
                .clone()
                .summary(self.console.link.state())
        ))
    }

    /// A forced change of the session's own password, under the web's policy and with its
    /// messages; then a new session with the new password, as the web's login after it.
    fn change_password(&mut self, why: Change) -> Step {
        self.say(match why {
            Change::FirstLogin => {
                "This password is valid for this first login only: choose your own password now."
            }
            Change::Expired => "Your password has expired: choose a new one to go on.",
        })?;
        let specials: Vec<String> = SPECIALS.chars().map(String::from).collect();
        self.say(&format!(
            "A password has at least {MIN_LENGTH} characters; an upper-case letter (A-Z), a \
             lower-case letter (a-z) and a digit (0-9); one of the special characters {}; no \
             other characters (no spaces). Ctrl-C leaves without a change.",
            specials.join(" ")
        ))?;
        let not_changed =
            || Stop::Ended("The password was not changed: log in again to change it.".into());
        let new = loop {
            let Some(current) = self.ask("Current password: ", false)? else {
                return Err(not_changed());
            };
            let Some(new) = self.ask("New password: ", false)? else {
                return Err(not_changed());
            };
            let Some(repeat) = self.ask("New password again: ", false)? else {
                return Err(not_changed());
            };
            let errors = if new != repeat {
                vec!["The two new passwords differ.".to_string()]
            } else {
                match self
                    .console
                    .accounts
                    .change_password(&self.session.token, &current, &new)
                {
                    Ok(()) => break new,
                    Err(AccountError::Session(ended)) => return Err(Stop::Ended(ended.message())),
                    Err(AccountError::Policy(rules)) => rules,
                    Err(e) => vec![e.to_string()],
                }
            };
            self.say("The password was not changed:")?;
            for e in errors {
                self.say(&format!("  {e}"))?;
            }
        };
        self.say("Your password has been changed.")?;
        let s = &self.session;
        match self
            .console
            .accounts
            .login(&s.user, &new, s.peer, Channel::Console)
        {
            Ok(session) => {
                self.keys.set_watch(watch(self.console, &session.token));
                self.session = session;
                Ok(())
            }
            Err(e) => Err(Stop::Ended(format!("{e} Log in again."))),
        }
    }

    /// Item 1: the network settings; a change field by field, checked as typed, made
    /// after a summary and a "y".
    fn card_settings(&mut self) -> Step {
        let settings = self.console.live.current();
        let stored = self.console.live.stored();
        self.say("\nCard Settings")?;
        for key in NETWORK {
            let value = settings.get(key);
            let mut line = format!("  {:<14}{}", format!("{}:", label(key)), shown(key, &value));
            let kept = stored.get(key);
            if kept != value {
                // A command-line override holds for this run only.
                line.push_str(&format!(
                    " (this run, from the command line; stored: {})",
                    shown(key, &kept)
                ));
            }
            self.say(&line)?;
        }
        if let Some(watch) = &self.console.network {
            let n = watch();
            let none = |s: &str| {
                if s.is_empty() {
                    "none".to_string()
                } else {
                    s.to_string()
                }
            };
            self.say(&format!(
                "  In use now:   {} {}, gateway {}, DNS {}{}",
                n.mode,
                n.address,
                none(&n.gateway),
                none(&n.dns),
                if n.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", n.note)
                }
            ))?;
        }
        if settings.dhcp_enabled {
            self.say("  The static settings above apply while DHCP is off.")?;
        }
        if !self.session.role.may_change() {
            return self
                .say("Your account is Read-only: it can look at the settings but change nothing.");
        }
        if self.yes_no("Change them? (y/n) ")? != Some(true) {
            return Ok(());
        }
        self.say(
            "Enter keeps the value in brackets; for the gateway and DNS server, 'none' means \
             none. Ctrl-C leaves without a change.",
        )?;
        let mut draft: Vec<(Key, String)> = NETWORK.iter().map(|&k| (k, settings.get(k))).collect();
        loop {
            if !self.walk(&mut draft)? {
                return self.say("Cancelled: nothing was changed.");
            }
            let pairs: Vec<(Key, &str)> = draft.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match self.console.live.preview(&pairs) {
                Err(refusals) => {
                    self.say("These settings do not go together:")?;
                    for r in &refusals {
                        self.say(&format!("  {}", in_words(&r.key, &r.message)))?;
                    }
                    if self.yes_no("Correct them? (y/n) ")? != Some(true) {
                        return self.say("Nothing was changed.");
                    }
                }
                Ok((diffs, _)) if diffs.is_empty() => {
                    return self.say("Nothing to change: the values were already so.");
                }
                Ok((diffs, warnings)) => {
                    self.say("The change:")?;
                    for line in summary(&diffs) {
                        self.say(&format!("  {line}"))?;
                    }
                    for w in &warnings {
                        self.say(&format!("Note: {w}"))?;
                    }
                    if self.yes_no("Apply these settings? (y/n) ")? != Some(true) {
                        return self.say("Nothing was changed.");
                    }
                    return self.apply(&pairs, &warnings);
                }
            }
        }
    }

    /// Asks each field of `draft` (DHCP; the static ones only without it), each value
    /// checked alone at once. False when cancelled.
    fn walk(&mut self, draft: &mut [(Key, String)]) -> Step<bool> {
        let settings = self.console.live.current();
        for i in 0..draft.len() {
            let (key, current) = (draft[i].0, draft[i].1.clone());
            if key != Key::DhcpEnabled && draft[0].1 == "true" {
                continue;
            }
            loop {
                let prompt = if key == Key::DhcpEnabled {
                    let yn = if current == "true" { "y" } else { "n" };
                    format!("Use DHCP (BootP) for the address? (y/n) [{yn}]: ")
                } else {
                    format!("{} [{}]: ", label(key), shown(key, &current))
                };
                let Some(typed) = self.ask(&prompt, true)? else {
                    return Ok(false);
                };
                let typed = typed.trim();
                let value = match (key, typed.to_ascii_lowercase().as_str()) {
                    (_, "") => current.clone(),
                    (Key::DhcpEnabled, "y" | "yes") => "true".into(),
                    (Key::DhcpEnabled, "n" | "no") => "false".into(),
                    (Key::DhcpEnabled, _) => {
                        self.say("Please answer y or n.")?;
                        continue;
                    }
                    (Key::Gateway | Key::Dns, "none") => String::new(),
                    _ => typed.to_string(),
                };
                // The value alone, as the door checks it; how the values go together is
                // checked once all are typed.
                match (*settings).clone().set(key, &value) {
                    Ok(()) => {
                        draft[i].1 = value;
                        break;
                    }
                    Err(e) => self.say(&format!("{}: {}", label(key), e.why()))?,
                }
            }
        }
        Ok(true)
    }

    /// Makes the change through the door; a warning the summary did not show (the
    /// settings moved meanwhile) is asked about first.
    fn apply(&mut self, pairs: &[(Key, &str)], shown_warnings: &[String]) -> Step {
        let who = self.who();
        let live = &self.console.live;
        let mut result = live.change(pairs, &who, false);
        if let Err(Refused::Confirm(warnings)) = &result {
            if warnings != shown_warnings {
                for w in warnings {
                    self.say(&format!("Note: {w}"))?;
                }
                if self.yes_no("Go on? (y/n) ")? != Some(true) {
                    return self.say("Nothing was changed.");
                }
            }
            result = live.change(pairs, &who, true);
        }
        match result {
            Ok(applied) if applied.diffs.is_empty() => {
                self.say("Nothing to change: the values were already so.")
            }
            Ok(applied) => {
                self.say("Saved and in force:")?;
                for line in summary(&applied.diffs) {
                    self.say(&format!("  {line}"))?;
                }
                Ok(())
            }
            Err(Refused::Invalid(refusals)) => {
                self.say("Nothing was changed:")?;
                for r in &refusals {
                    self.say(&format!("  {}", in_words(&r.key, &r.message)))?;
                }
                Ok(())
            }
            Err(e) => self.say(&format!("Nothing was changed: {e}")),
        }
    }

    /// Item 2.
    fn reset_accounts(&mut self) -> Step {
        if self.session.role != Role::Admin {
            return self.say("Only admin resets the accounts and passwords.");
        }
        self.say(
            "Every user is removed, and admin's password is again the last 6 characters of \
             the card's MAC address, to be changed at the first login.\n\
             Everyone logged in has to log in again, you too.",
        )?;
        if self.yes_no("Reset accounts and passwords to default? (y/n) ")? != Some(true) {
            return self.say("Nothing was changed.");
        }
        match self.console.control.reset_accounts(&self.who()) {
            Ok(()) => Err(Stop::Ended(
                "Accounts and passwords are back to their defaults: log in as admin with the \
                 last 6 characters of the card's MAC address."
                    .into(),
            )),
            Err(e) => self.say(&e),
        }
    }

    /// Item 3: what the Control page's factory reset does.
    fn reset_configuration(&mut self) -> Step {
        if self.session.role != Role::Admin {
            return self.say("Only admin resets the card to its factory settings.");
        }
        self.say(
            "Every setting goes back to its factory value (the board's devices apart): Modbus \
             ports and timeouts, access control, the services, the network (DHCP), the NTP \
             server.\n\
             Every user is removed, and admin's password is again the last 6 characters of \
             the card's MAC address, to be changed at the first login.\n\
             The card makes new HTTPS certificates: download its new root and trust it again.\n\
             Then the card restarts. The event log is kept.",
        )?;
        if self.yes_no("Reset the configuration to factory settings? (y/n) ")? != Some(true) {
            return self.say("Nothing was changed.");
        }
        let done = "It is back in about 10 seconds, with DHCP on: its address may change. \
                    Find it in the DHCP server's leases (by its MAC address), or, with no \
                    DHCP server answering, at 192.168.7.18. Log in as admin with the last 6 \
                    characters of the card's MAC address as the password. The card has a new \
                    root certificate: download it from the Configuration page and trust it in \
                    place of the old one.";
        match self.console.control.factory_reset(&self.who()) {
            Ok(()) => Err(Stop::Ended(format!(
                "Back to factory settings; the card is restarting. {done}"
            ))),
            Err(e) => Err(Stop::Ended(format!("{e}. The card is restarting. {done}"))),
        }
    }

    /// Item 4.
    fn restart(&mut self) -> Step {
        if !self.session.role.may_change() {
            return self.say("Your account is Read-only: it cannot restart the card.");
        }
        self.say(
            "The card restarts: its Modbus TCP sessions close, and its pages and this console \
             are gone for a few seconds; masters connect again once it is back.\n\
             Everyone logged in has to log in again.",
        )?;
        if self.yes_no("Restart the card? (y/n) ")? != Some(true) {
            return self.say("Nothing was changed.");
        }
        self.console.control.restart(&self.who());
        Err(Stop::Ended(
            "The card is restarting: it is back in about 10 seconds; log in again then.".into(),
        ))
    }

    fn who(&self) -> Who {
        Who {
            user: self.session.user.clone(),
            via: self.via.clone(),
            role: self.session.role,
        }
    }

    fn say(&mut self, text: &str) -> Step {
        self.keys.say(text)
    }

    fn too_long(&mut self) -> Step {
        self.say(&format!(
            "That line is too long (at most {MAX_LINE} characters): nothing was taken."
        ))
    }

    /// A line; `None` when cancelled (Ctrl-C). A line too long is asked again.
    fn ask(&mut self, prompt: &str, echo: bool) -> Step<Option<String>> {
        loop {
            self.keys.write(prompt)?;
            match self.keys.line(echo)? {
                Answer::Text(t) => return Ok(Some(t)),
                Answer::Cancelled => return Ok(None),
                Answer::TooLong => self.too_long()?,
            }
        }
    }

    /// y or n, asked until it is one of them; `None` when cancelled.
    fn yes_no(&mut self, question: &str) -> Step<Option<bool>> {
        loop {
            let Some(answer) = self.ask(question, true)? else {
                return Ok(None);
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(Some(true)),
                "n" | "no" => return Ok(Some(false)),
                _ => self.say("Please answer y or n.")?,
            }
        }
    }
}

/// A refusal as the pages word it: the setting's label, then the rule.
fn in_words(key: &str, message: &str) -> String {
    let label: &str = match Key::named(key) {
        Some(k) => label(k),
        None => key,
    };
    format!("{}: {}", label, rule(key, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_on_the_pages() {
        assert_eq!(
            in_words(
                "ip_address",
                "ip_address: '1.2.3' is not an IPv4 address such as 192.168.1.20"
            ),
            "IP address: '1.2.3' is not an IPv4 address such as 192.168.1.20"
        );
    }
}
