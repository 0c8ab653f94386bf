//! The UPS itself, as the card understands it: its register map ([`map`], citing the
//! vendor's table) and the decoding of its words into what a user reads ([`decode`]).
//! Pure: no I/O. The link reads the tables; the simulator is built from the same map.

pub mod changes;
pub mod decode;
pub mod map;

pub use decode::{decode, Alarm, Mode, Reading, Tables};
