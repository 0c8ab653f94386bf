//! The card's actions that anyone may ask for: the reset button, and the pages and the
//! console (Control page, console menu items 2 to 4). Each is logged in the event log,
//! with who asked, before it acts.
//!
//! A restart is a request handed to whoever runs the service (`main`): on the board it
//! stops the service and asks the init system to `reboot`; in the demo it stops the
//! service and starts it again in place.

use crate::event::{Event, Events};
use crate::store::Store;
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::sync::Arc;

/// Resets accounts and passwords to their defaults; supplied by the service, since
/// accounts live in their own module.
pub type AccountsReset = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A restart someone asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Who asked: "reset button", "web admin", …
    pub by: String,
}

#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    events: Events,
    data: PathBuf,
    restart: Sender<Restart>,
    reset_accounts: AccountsReset,
}

impl Control {
    /// `data`: the data folder (its database holds the settings a factory reset clears).
    /// The receiver gets the restart requests.
    pub fn new(
        events: Events,
        data: PathBuf,
        reset_accounts: AccountsReset,
    ) -> (Control, Receiver<Restart>) {
        // One pending request is enough: a second one asks for the same thing.
        let (restart, rx) = crossbeam_channel::bounded(1);
        let inner = Inner {
            events,
            data,
            restart,
            reset_accounts,
        };
        (
            Control {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Asks for a restart; returns at once.
    pub fn restart(&self, by: &str) {
        self.inner.events.emit(Event::Restart { by: by.to_owned() });
        let _ = self.inner.restart.try_send(Restart { by: by.to_owned() });
    }

    /// Accounts and passwords back to their defaults.
    pub fn reset_accounts(&self, by: &str) -> Result<(), String> {
        self.inner
            .events
            .emit(Event::AccountsReset { by: by.to_owned() });
        (self.inner.reset_accounts)().map_err(|e| {
            log::error!("accounts reset failed: {e}");
            e
        })
    }

    /// Every setting and account back to factory defaults, then a restart so every part
    /// runs with them. The event log is kept.
    pub fn factory_reset(&self, by: &str) -> Result<(), String> {
        self.inner
            .events
            .emit(Event::FactoryReset { by: by.to_owned() });
        let settings = Store::open(&self.inner.data)
            .and_then(|store| store.reset_settings())
            .map_err(|e| format!("factory reset of the settings failed: {e}"));
        let accounts = (self.inner.reset_accounts)();
        self.restart(by);
        settings?;
        accounts.map_err(|e| format!("factory reset of the accounts failed: {e}"))
    }
}
