//! The service of a Modbus TCP card for UPS and STS units.

pub mod event;
pub mod modbus;
pub mod pty;
pub mod settings;
pub mod sim;
pub mod store;
