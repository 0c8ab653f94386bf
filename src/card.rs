//! The card as its two user-facing fronts, the web and the console, act on it: the
//! accounts, the settings' one door, the card's actions, its clock, the network, the
//! event log and the UPS link. One bag, cheap to clone, handed to each front, so that a change, a login or a
//! restart goes through the same parts with the same checks and events wherever a user
//! comes from.

use crate::accounts::Accounts;
use crate::board::clock::Clock;
use crate::board::control::Control;
use crate::board::network::NetWatch;
use crate::event::Events;
use crate::link::LinkStatus;
use crate::live::Live;
use std::sync::Arc;

#[derive(Clone)]
pub struct Card {
    pub accounts: Arc<Accounts>,
    pub live: Arc<Live>,
    /// Restart, accounts reset, factory reset.
    pub control: Control,
    pub clock: Clock,
    /// What the network script did (the address DHCP gave); None when the network is left
    /// to the system.
    pub network: Option<NetWatch>,
    pub events: Events,
    /// The UPS link: its state, counters and the UPS's latest readings.
    pub link: Arc<LinkStatus>,
}
