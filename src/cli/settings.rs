//! `modbus-card settings`: the stored settings, shown or changed while the service is
//! stopped.

use super::{text, unexpected, Arg, Args, Outcome};
use crate::live;

pub const HELP: &str = "  modbus-card settings --data DIR [KEY=VALUE]...
      Shows the stored settings, or stores the given ones (checked as the service
      would check them); the service reads them at its next start.
";

/// Who the event log names for a change made from the command line.
pub const BY: &str = "command line";

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut changes) = (None, vec![]);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Value(kv) => changes.push(text(kv)?),
            arg => return Err(unexpected(arg)),
        }
    }
    let data = data.ok_or("settings needs --data DIR")?;
    let mut store = crate::store::Store::open(data.as_ref()).map_err(|e| e.to_string())?;
    let pairs = changes
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| format!("{kv}: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !pairs.is_empty() {
        live::change_stored(&mut store, &pairs, BY).map_err(|e| e.to_string())?;
    }
    let settings = store.load_settings().map_err(|e| e.to_string())?;
    for key in crate::settings::keys() {
        println!("{key}={}", settings.get(key));
    }
    println!(
        "# lowest sane serial_timeout_ms at {} baud: {}",
        settings.slowest_ups_baud(),
        settings.min_serial_timeout_ms()
    );
    Ok(())
}
