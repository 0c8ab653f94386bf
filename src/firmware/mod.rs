//! Firmware upgrades: signed images, an A/B install, a trial and an automatic rollback.
//!
//! - [`image`]: the file format (header, manifest, payload, minisign signature), its
//!   checks, and making one (`modbus-card image build`).
//! - [`keys`]: the public keys the card trusts (`DATA/trusted-keys`), and the maker's
//!   side (signing, the demo's key pair).
//! - [`upgrade`]: one upgrade from a stream (the `/firmware` upload, `modbus-card
//!   upgrade FILE`): to disk within a size limit, verified whole, written into the
//!   inactive slot, `current` switched. Nothing changes before the image is verified.
//! - [`slots`]: the A/B folders and links, and the trial's states.
//! - [`trial`]: the new version confirms itself once healthy; a start logs a rollback.
//!
//! The trial's life, with `current` and `good` the two links of the install:
//!
//! ```text
//!   installed         current=new, good=old         (the old version restarts the card)
//!     │ start: the good slot's init script runs `firmware boot`
//!   on trial          + trial marker; the new slot's init script starts it, the good
//!     │               one watches for TRIAL_TIME
//!     ├─ healthy for SETTLE ─▶ confirmed: good=new, marker gone
//!     ├─ exits, or not healthy in TRIAL_TIME ─▶ the watch stops it: rolled back,
//!     │                                        current=old, the old version starts
//!     └─ the board resets or loses power first ─▶ the next start finds the marker:
//!                                                 rolled back, the old version starts
//! ```
//!
//! The decisions are made by the good (proven) version's binary and init script, never
//! by the one on trial, so a new version that cannot start at all, or whose init script
//! is broken, still ends with the old one running.

pub mod image;
pub mod keys;
pub mod slots;
pub mod trial;
pub mod upgrade;
pub mod version;

pub use image::Refusal;
pub use slots::{Slots, Step};
pub use upgrade::{Installed, Upgrader};
