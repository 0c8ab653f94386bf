//! The card's actions that anyone may ask for: the reset button, and the pages and the
//! console (Control page, console menu items 2 to 4). Each is logged in the event log,
//! with who asked, before it acts. The factory reset of the settings goes through the
//! settings' one door ([`Live::reset_to_factory`]).
//!
//! A restart is a request handed to whoever runs the service (`main`): on the board it
//! stops the service and asks the init system to `reboot`; in the demo it stops the
//! service and starts it again in place.

use crate::event::{Event, Events};
use crate::live::{Live, Who};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;

/// Resets accounts and passwords, or the HTTPS certificates, to their defaults; supplied
/// by the service, since each lives in its own module.
pub type Reset = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A restart someone asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Who asked, as [`Who`] shows it: "button, held 1.5 s", "admin, web 192.168.1.20" …
    pub by: String,
}

#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    events: Events,
    live: Arc<Live>,
    restart: Sender<Restart>,
    reset_accounts: Reset,
    reset_certificates: Reset,
}

impl Control {
    /// `live`: the settings' door, for the factory reset. `reset_certificates` forgets the
    /// card's certificates, made again at the next start. The receiver gets the restart
    /// requests.
    pub fn new(
        events: Events,
        live: Arc<Live>,
        reset_accounts: Reset,
        reset_certificates: Reset,
    ) -> (Control, Receiver<Restart>) {
        // One pending request is enough: a second one asks for the same thing.
        let (restart, rx) = crossbeam_channel::bounded(1);
        let inner = Inner {
            events,
            live,
            restart,
            reset_accounts,
            reset_certificates,
        };
        (
            Control {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Asks for a restart; returns at once.
    pub fn restart(&self, who: &Who) {
        let by = who.to_string();
        self.inner.events.emit(Event::Restart { by: by.clone() });
        let _ = self.inner.restart.try_send(Restart { by });
    }

    /// Accounts and passwords back to their defaults.
    pub fn reset_accounts(&self, who: &Who) -> Result<(), String> {
        self.inner.events.emit(Event::AccountsReset {
            by: who.to_string(),
        });
        (self.inner.reset_accounts)().map_err(|e| format!("accounts reset failed: {e}"))
    }

    /// Settings (the board's devices apart), accounts and HTTPS certificates back to
    /// factory defaults, then a restart so every part starts afresh with them (the card
    /// makes its certificates again as it starts). The event log is kept.
    pub fn factory_reset(&self, who: &Who) -> Result<(), String> {
        let settings = self
            .inner
            .live
            .reset_to_factory(who)
            .map_err(|e| format!("factory reset of the settings failed: {e}"));
        let accounts = (self.inner.reset_accounts)()
            .map_err(|e| format!("factory reset of the accounts failed: {e}"));
        let certificates = (self.inner.reset_certificates)()
            .map_err(|e| format!("factory reset of the certificates failed: {e}"));
        self.restart(who);
        settings.and(accounts).and(certificates).map(drop)
    }
}
