//! Live settings: the one door every change goes through.
//!
//! A page, the configuration upload, the console, the button: each hands [`Live::change`]
//! the keys and values it wants, and who asks. The whole change is checked first
//! ([`Settings::change`]); what the running card needs for it and could fail (a port to
//! bind) is made ready by the parts concerned, without touching what runs; the change is
//! written in one transaction; only then is it applied, by each part between two pieces of
//! work (a Modbus exchange on the line is never cut), and logged with old and new values
//! and who made it. Nothing is ever half-applied. A change that would cut the user off
//! (both web services off, a new address) is refused until confirmed, with what will
//! happen.

use crate::accounts::Role;
use crate::event::{Event, Events, Stamped};
use crate::settings::{admin_reason, def_of, Diff, Key, Refusal, Section, Settings, DEFS};
use crate::store::Store;
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;

/// Who makes a change, for the event log and for the door's own check of who may make
/// it: a user, how they came, and their role.
#[derive(Debug, Clone)]
pub struct Who {
    /// The account, or the part of the card acting by itself ("button").
    pub user: String,
    /// How: "web 192.168.1.20", "ssh 192.168.1.20", "console", "configuration file" …
    pub via: String,
    /// What the user may do. Whoever stands at the card (the button, the command line)
    /// acts as admin.
    pub role: Role,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {}", self.user, self.via)
    }
}

/// A change made.
#[derive(Debug)]
pub struct Applied {
    /// What changed, in the order of the settings table; empty if the values were already
    /// so.
    pub diffs: Vec<Diff>,
    /// Keys among them that take effect at the next start only.
    pub next_start: Vec<Key>,
}

/// Why a change was not made. Nothing changed, in the store or in the running card.
#[derive(Debug)]
pub enum Refused {
    /// Values that are not allowed, each with the rule it breaks.
    Invalid(Vec<Refusal>),
    /// The change would cut the user off: say so, and ask again with `confirmed`.
    Confirm(Vec<String>),
    /// The card could not make it (a port already in use, the store failing).
    Failed(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = match self {
            Refused::Invalid(r) => r.iter().map(|r| r.message.clone()).collect(),
            Refused::Confirm(w) => w.clone(),
            Refused::Failed(e) => vec![e.clone()],
        };
        f.write_str(&lines.join("; "))
    }
}

/// Applies a change in the running card, once it is written.
pub type Commit = Box<dyn FnOnce() + Send>;

/// A running part's share of a change: given the settings before and after, it makes
/// ready what could fail, and returns what applies the change (or `None` if nothing of
/// its own changed).
pub type Prepare =
    Box<dyn Fn(&Settings, &Settings) -> Result<Option<Commit>, String> + Send + Sync>;

/// What a change would do to a running part's users (the open sessions it would close),
/// in words, for the user to confirm first; empty if nothing.
pub type Warn = Box<dyn Fn(&Settings, &Settings) -> Vec<String> + Send + Sync>;

pub struct Live {
    current: RwLock<Arc<Settings>>,
    /// As stored: read once, then kept in step with what each change writes.
    stored: RwLock<Arc<Settings>>,
    /// What a reset to factory settings goes back to.
    factory: Settings,
    store: Mutex<Store>,
    events: Events,
    parts: RwLock<Vec<(&'static str, Prepare)>>,
    warners: RwLock<Vec<Warn>>,
    /// One change at a time.
    gate: Mutex<()>,
}

impl Live {
    /// `factory` is [`Settings::default`], but for the demo's unprivileged Modbus port.
    pub fn new(settings: Settings, factory: Settings, store: Store, events: Events) -> Live {
        let stored = store
            .load_settings_over(factory.clone())
            .unwrap_or_else(|e| {
                log::error!("stored settings: {e}; taking those in force for them");
                settings.clone()
            });
        Live {
            current: RwLock::new(Arc::new(settings)),
            stored: RwLock::new(Arc::new(stored)),
            factory,
            store: Mutex::new(store),
            events,
            parts: RwLock::new(vec![]),
            warners: RwLock::new(vec![]),
            gate: Mutex::new(()),
        }
    }

    /// The settings in force.
    pub fn current(&self) -> Arc<Settings> {
        self.current.read().clone()
    }

    /// The settings as stored, without this run's command-line overrides (`--set`,
    /// `--baud`): what the configuration file exports, and what the pages show beside a
    /// value in force that differs.
    pub fn stored(&self) -> Arc<Settings> {
        self.stored.read().clone()
    }

    /// Adds a running part that applies changes (`name` for errors and logs).
    pub fn register(&self, name: &'static str, prepare: Prepare) {
        self.parts.write().push((name, prepare));
    }

    /// Adds a running part that says what a change would do to its users.
    pub fn warn_with(&self, warn: Warn) {
        self.warners.write().push(warn);
    }

    /// What going from `old` to `new` would do to whoever is connected.
    fn warnings(&self, old: &Settings, new: &Settings) -> Vec<String> {
        let mut warnings = cut_off(old, new);
        for warn in self.warners.read().iter() {
            warnings.extend(warn(old, new));
        }
        warnings
    }

    /// What `changes` would alter, and what they would do to whoever is connected (the
    /// warnings [`Refused::Confirm`] would give), without making them: for a preview.
    pub fn preview(
        &self,
        changes: &[(impl AsRef<str>, &str)],
    ) -> Result<(Vec<Diff>, Vec<String>), Vec<Refusal>> {
        let old = self.current();
        let (new, diffs) = old.change(changes)?;
        let warnings = self.warnings(&old, &new);
        Ok((diffs, warnings))
    }

    /// Makes `changes` (key, value), all or nothing; see the module's doc.
    pub fn change(
        &self,
        changes: &[(impl AsRef<str>, &str)],
        who: &Who,
        confirmed: bool,
    ) -> Result<Applied, Refused> {
        self.change_logged(changes, who, confirmed, None)
    }

    /// [`Live::change`], with `first` logged before the settings' own events once the
    /// change is sure to happen.
    fn change_logged(
        &self,
        changes: &[(impl AsRef<str>, &str)],
        who: &Who,
        confirmed: bool,
        first: Option<Event>,
    ) -> Result<Applied, Refused> {
        let _one_at_a_time = self.gate.lock();
        let old = self.current();
        let (new, diffs) = check(&old, changes, who.role)?;
        if diffs.is_empty() {
            if let Some(event) = first {
                self.events.emit(event);
            }
            return Ok(Applied {
                diffs,
                next_start: vec![],
            });
        }
        let warnings = self.warnings(&old, &new);
        if !warnings.is_empty() && !confirmed {
            return Err(Refused::Confirm(warnings));
        }
        let mut commits = vec![];
        for (name, prepare) in self.parts.read().iter() {
            match prepare(&old, &new) {
                Ok(commit) => commits.extend(commit),
                // What the others made ready is dropped unused (a bound port closes).
                Err(e) => return Err(Refused::Failed(format!("{name}: {e}"))),
            }
        }
        self.store
            .lock()
            .save_settings(&diffs)
            .map_err(|e| Refused::Failed(e.to_string()))?;
        let mut kept = (**self.stored.read()).clone();
        for d in &diffs {
            // Checked already, as part of the whole change.
            let _ = kept.set(d.key, &d.new);
        }
        *self.stored.write() = Arc::new(kept);
        if let Some(event) = first {
            self.events.emit(event);
        }
        *self.current.write() = Arc::new(new);
        for commit in commits {
            commit();
        }
        let mut next_start = vec![];
        for d in &diffs {
            if !def_of(d.key).live {
                next_start.push(d.key);
            }
            log::info!("setting {} = {} (was {}) by {who}", d.key, d.new, d.old);
            self.events.emit(changed(d, who.to_string()));
        }
        Ok(Applied { diffs, next_start })
    }
}

impl Live {
    /// Every setting back to its factory value, but the board's devices (they describe
    /// the hardware, not a configuration). Logged first, then as any change. Accounts and
    /// certificates are reset by their own modules.
    pub fn reset_to_factory(&self, who: &Who) -> Result<Applied, Refused> {
        let values: Vec<(Key, String)> = DEFS
            .iter()
            .filter(|d| d.section != Section::Board)
            .map(|d| (d.key, self.factory.get(d.key)))
            .collect();
        let pairs: Vec<(Key, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reset = Event::FactoryReset {
            by: who.to_string(),
        };
        self.change_logged(&pairs, who, true, Some(reset))
    }
}

/// `changes` checked as a whole against `old`, and refused if they touch what only an
/// admin may change and `role` is not admin. Checked here, whichever door the change came
/// through (a page, a configuration file, the console, the command line): who can reach
/// the card is the admin's decision alone.
fn check(
    old: &Settings,
    changes: &[(impl AsRef<str>, &str)],
    role: Role,
) -> Result<(Settings, Vec<Diff>), Refused> {
    let (new, diffs) = old.change(changes).map_err(Refused::Invalid)?;
    if role != Role::Admin {
        let locked: Vec<Refusal> = diffs
            .iter()
            .filter_map(|d| {
                let def = def_of(d.key);
                def.admin_only.then(|| Refusal {
                    key: d.key.to_string(),
                    message: format!("{}: {}", d.key, admin_reason(def)),
                })
            })
            .collect();
        if !locked.is_empty() {
            return Err(Refused::Invalid(locked));
        }
    }
    Ok((new, diffs))
}

/// The event that logs a setting's change, in the same words whichever door it came
/// through.
fn changed(d: &Diff, by: String) -> Event {
    Event::SettingChanged {
        label: def_of(d.key).label,
        old: d.old.clone(),
        new: d.new.clone(),
        by,
    }
}

/// Makes `changes` in the store of a card whose service is not running (the command
/// line's `settings` and `config import`): checked as [`Live::change`] checks them, for
/// whoever stands at the card (an admin), written in one transaction and logged in the
/// same words, by `by`. The service reads them at its next start; no running part makes
/// ready or warns.
pub fn change_stored(
    store: &mut Store,
    changes: &[(impl AsRef<str>, &str)],
    by: &str,
) -> Result<Vec<Diff>, Refused> {
    let failed = |e: crate::store::StoreError| Refused::Failed(e.to_string());
    let old = store.load_settings().map_err(failed)?;
    let (_, diffs) = check(&old, changes, Role::Admin)?;
    store.save_settings(&diffs).map_err(failed)?;
    let at = std::time::SystemTime::now();
    let events: Vec<Stamped> = diffs
        .iter()
        .map(|d| Stamped {
            at,
            event: changed(d, by.to_string()),
        })
        .collect();
    store.add_events(&events).map_err(failed)?;
    Ok(diffs)
}

/// What a change would do to whoever is connected, in words; empty if nothing.
fn cut_off(old: &Settings, new: &Settings) -> Vec<String> {
    let mut warnings = vec![];
    let web = |s: &Settings| s.http_enabled || s.https_enabled;
    let remote = |s: &Settings| web(s) || s.ssh_enabled;
    if remote(old) && !remote(new) {
        warnings.push(
            "With HTTP, HTTPS and SSH all off, the card cannot be reached over the network \
             at all, this page included. The ways back are at the card: the USB console \
             (its menu's reset of the configuration turns them on again), or the reset \
             button held over 6 s (factory settings)."
                .into(),
        );
    } else if web(old) && !web(new) {
        warnings.push(
            "With both HTTP and HTTPS off the web pages go away, this one included: turn one \
             on again from the SSH console's reset of the configuration, or with the reset \
             button."
                .into(),
        );
    }
    if old.dhcp_enabled != new.dhcp_enabled {
        warnings.push(if new.dhcp_enabled {
            "The card will take its address from a DHCP server (or fall back to 192.168.7.18): \
             look for it there and reconnect."
                .into()
        } else {
            format!(
                "The card will use the static address {}: reconnect to it.",
                new.ip_address
            )
        });
    } else if !new.dhcp_enabled && (old.ip_address != new.ip_address || old.netmask != new.netmask)
    {
        warnings.push(format!(
            "The card's address changes to {}/{}: reconnect to it.",
            new.ip_address,
            u32::from(new.netmask).leading_ones()
        ));
    }
    warnings
}
