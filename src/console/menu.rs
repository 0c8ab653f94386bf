//! The menu of SPEC §9.

use super::{Console, Terminal};
use crate::accounts::Session;

pub fn run(console: &Console, term: &mut dyn Terminal, session: Session, via: &str) {
    let _ = (console, via);
    let _ = write!(
        term,
        "Modbus Interface Configuration Utility  [{}]\r\nHello {}.\r\n",
        crate::firmware::version::current(),
        session.user
    );
}
