//! The service of a Modbus TCP card for UPS and STS units.

pub mod access;
pub mod accounts;
pub mod board;
pub mod calendar;
pub mod card;
pub mod cli;
pub mod clock;
pub mod config_file;
pub mod console;
pub mod discovery;
pub mod event;
pub mod files;
pub mod firmware;
pub mod health;
pub mod history;
pub mod link;
pub mod live;
pub mod logging;
pub mod modbus;
pub mod poll;
pub mod pty;
pub mod rs485;
pub mod rt;
pub mod serial;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod sim;
pub mod store;
pub mod syslog;
pub mod tcp;
pub mod ups;
pub mod ups_watch;
pub mod web;

// The time code's tests past 2038 across the modules (clock, events, certificates, NTP).
#[cfg(test)]
mod y2038;
