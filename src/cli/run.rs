//! `modbus-card run`: the service, on the board.

use super::{parse_addr, serve::serve, unexpected, Arg, Args, Outcome};
use crate::accounts::Mac;
use crate::service::Options;
use crate::settings::Key;
use std::path::PathBuf;
use std::time::Duration;

pub const HELP: &str =
    "  modbus-card run --data DIR --ups PATH [--baud N] [--rs485 PATH] [--modbus ADDR:PORT]
                  [--set KEY=VALUE]... [--network-script PATH] [--reboot COMMAND]
                  [--system-clock] [--stall-limit SECONDS] [--firmware ROOT]
                  [--http ADDR:PORT] [--https ADDR:PORT] [--ssh ADDR:PORT] [--mac MAC]
                  [--mbtls ADDR:PORT]
      The service. DIR holds the database, the certificates and the SSH host key;
      settings come from it, and the options here override them for this run.
      Defaults: --modbus 0.0.0.0:502, --http 0.0.0.0:80, --https 0.0.0.0:443,
      --ssh 0.0.0.0:22, --mbtls 0.0.0.0:802 (Modbus/TCP Security, while
      mbtls_enabled), --mac that of net_interface
      (eth0), else of the first other interface (the default admin password is its
      last 6 hex digits, upper case).
      On the board: --network-script applies the network settings with that script
      (init/modbus-card-network), --reboot is how a restart reboots the board (without
      it the service restarts in place), --system-clock lets NTP and the user set the
      system clock. --stall-limit: seconds a thread may be busy without progress before
      the watchdog is no longer fed (default 60). --firmware: the A/B install the
      service runs from (/opt/modbus-card on the card), for firmware upgrades.
";

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut ups, mut baud, mut rs485, mut modbus) = (None, None, None, None, None);
    let (mut stall_limit, mut network_script, mut firmware) = (None, None, None);
    let (mut http, mut https, mut ssh, mut mac, mut reboot) = (None, None, None, None, None);
    let mut mbtls = None;
    let mut sets = vec![];
    let mut system_clock = false;
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("ups") => a.value_into(&mut ups, "--ups")?,
            Arg::Long("baud") => a.value_into(&mut baud, "--baud")?,
            Arg::Long("set") => sets.push(a.value()?),
            Arg::Long("rs485") => a.value_into(&mut rs485, "--rs485")?,
            Arg::Long("modbus") => a.value_into(&mut modbus, "--modbus")?,
            Arg::Long("stall-limit") => a.value_into(&mut stall_limit, "--stall-limit")?,
            Arg::Long("network-script") => a.value_into(&mut network_script, "--network-script")?,
            Arg::Long("system-clock") => system_clock = true,
            Arg::Long("firmware") => a.value_into(&mut firmware, "--firmware")?,
            Arg::Long("http") => a.value_into(&mut http, "--http")?,
            Arg::Long("https") => a.value_into(&mut https, "--https")?,
            Arg::Long("ssh") => a.value_into(&mut ssh, "--ssh")?,
            Arg::Long("mbtls") => a.value_into(&mut mbtls, "--mbtls")?,
            Arg::Long("mac") => a.value_into(&mut mac, "--mac")?,
            Arg::Long("reboot") => a.value_into(&mut reboot, "--reboot")?,
            arg => return Err(unexpected(arg)),
        }
    }
    let data = data.ok_or("run needs --data DIR")?;
    let ups = ups.ok_or("run needs --ups PATH (the UPS serial port)")?;
    let mut overrides = vec![];
    if let Some(baud) = baud {
        overrides.push((Key::UpsBaud.name().to_string(), baud));
    }
    for kv in sets {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
        overrides.push((k.to_string(), v.to_string()));
    }
    let options = Options {
        data: data.into(),
        ups: ups.into(),
        rs485: rs485.map(PathBuf::from),
        modbus: modbus.map(|s| parse_addr(&s)).transpose()?,
        overrides,
        stall_limit: stall_limit
            .map(|s| match s.parse::<u64>() {
                Ok(v) if v > 0 => Ok(Duration::from_secs(v)),
                _ => Err(format!("--stall-limit {s}: not a number of seconds")),
            })
            .transpose()?,
        network_script: network_script.map(PathBuf::from),
        system_clock,
        firmware: firmware.map(PathBuf::from),
        http: Some(parse_addr(&http.unwrap_or_else(|| "0.0.0.0:80".into()))?),
        https: Some(parse_addr(&https.unwrap_or_else(|| "0.0.0.0:443".into()))?),
        ssh: Some(parse_addr(&ssh.unwrap_or_else(|| "0.0.0.0:22".into()))?),
        mbtls: Some(parse_addr(
            &mbtls.unwrap_or_else(|| crate::tcp::mbtls::DEFAULT_ADDR.into()),
        )?),
        mac: mac.map(|m| m.parse::<Mac>()).transpose()?,
        mdns_port: Some(crate::discovery::MDNS_PORT),
        ..Options::default()
    };
    crate::rt::limit_allocator_arenas();
    crate::rt::lock_memory();
    Ok(serve(&options, reboot.as_deref(), |_| {})?)
}
