//! The Modbus protocol as pure functions over bytes: no I/O, no clocks, no threads.
//!
//! - [`pdu`]: function codes, exception codes, and what a request asks for.
//! - [`crc`]: the CRC-16 that ends every RTU frame.
//! - [`rtu`]: RTU framing and, for every public function, where a frame ends, so a reader
//!   knows the moment the last byte of an answer has arrived.
//! - [`mbap`]: the 7-byte header that Modbus TCP puts in front of a PDU.
//! - [`describe`]: frames in words, for the frame log page.
//!
//! The checks here follow the shape `check(buf) -> Result<Status, Error>`: they look at what
//! has arrived so far and say "complete, this long", "need more", or which rule it broke.

pub mod crc;
pub mod describe;
pub mod mbap;
pub mod pdu;
pub mod rtu;

/// Largest PDU (function code + data) the protocol allows.
pub const MAX_PDU: usize = 253;
/// Largest RTU frame: address + PDU + CRC.
pub const MAX_RTU: usize = 256;
