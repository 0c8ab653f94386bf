//! `modbus-card console`: a terminal relayed to the running service's menu.

use super::{unexpected, Arg, Args, Outcome, DEFAULT_DATA};
use std::path::PathBuf;

pub const HELP: &str = "  modbus-card console [--data DIR] [--tty PATH]
      The serial console (init/inittab runs it on the USB gadget's tty): the terminal
      in raw mode, relayed to the running service's menu (DIR/console.sock; DIR
      defaults to /var/lib/modbus-card). With --tty it serves that terminal for ever:
      the Enter prompt, a login, the menu, and again; without, one login on standard
      input and output (under BusyBox's askfirst, which asks for Enter itself).
";

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut tty) = (None, None);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("tty") => a.value_into(&mut tty, "--tty")?,
            arg => return Err(unexpected(arg)),
        }
    }
    let data = PathBuf::from(data.unwrap_or_else(|| DEFAULT_DATA.into()));
    let tty = tty.map(PathBuf::from);
    Ok(crate::console::relay::run(&data, tty.as_deref())?)
}
