//! `modbus-card find`: the cards that announce themselves on the local network (DNS-SD).

use super::{unexpected, Arg, Args, Outcome, Stop};
use crate::discovery::{find, MDNS_PORT};
use std::time::Duration;

pub const HELP: &str =
    "  modbus-card find [--json] [--wait S] [--interface NAME] [--mdns-port PORT]
      Lists the cards on the local network (instance, IP, MAC, firmware, services on,
      the UPS model once the card has read it),
      listening S seconds for their DNS-SD announcements (default 3); --json prints
      them as JSON. A card at its fallback address 192.168.7.18 that this computer's
      subnets cannot reach is flagged. --interface listens on that interface only.
";

/// The default wait, as the issue of discovery tools does.
const WAIT: Duration = Duration::from_secs(3);
/// Longest wait taken: a bounded command.
const MAX_WAIT_S: f64 = 600.0;

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut json, mut wait, mut interface, mut port) = (false, None, None, None);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("json") => json = true,
            Arg::Long("wait") => a.value_into(&mut wait, "--wait")?,
            Arg::Long("interface") => a.value_into(&mut interface, "--interface")?,
            Arg::Long("mdns-port") => a.value_into(&mut port, "--mdns-port")?,
            arg => return Err(unexpected(arg)),
        }
    }
    let wait = match wait {
        None => WAIT,
        Some(s) => match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v <= MAX_WAIT_S => Duration::from_secs_f64(v),
            _ => {
                return Err(Stop::Usage(format!(
                    "--wait {s}: not a number of seconds from 0 to {MAX_WAIT_S}"
                )))
            }
        },
    };
    let port = match port {
        None => MDNS_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Stop::Usage(format!("--mdns-port {p}: not a port")))?,
    };
    let cards = find::find(wait, port, interface.as_deref())?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&cards).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", find::table(&cards));
    }
    Ok(())
}
