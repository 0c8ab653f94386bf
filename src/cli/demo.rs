//! `modbus-card demo`: the whole card on this machine, with a simulated UPS.

use super::simulate_ups::{sim_commands, spawn_console};
use super::{parse_addr, serve::serve, unexpected, Arg, Args, Outcome};
use crate::firmware;
use crate::pty::{NullModem, Pty};
use crate::service::{Options, Service};
use crate::settings::Key;
use crate::sim::{Sim, SimConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const HELP: &str =
    "  modbus-card demo [--data DIR] [--modbus ADDR:PORT] [--http ADDR:PORT] [--https ADDR:PORT]
                   [--ssh ADDR:PORT] [--mbtls ADDR:PORT] [--firmware ROOT]
      The whole card on this machine: a simulated UPS and an RS485 port on
      pseudo-terminals, Modbus TCP on 127.0.0.1 at the Modbus port setting (1502
      from the factory here), the web on http://127.0.0.1:8080 and
      https://127.0.0.1:8443, the SSH console on 127.0.0.1:2222, Modbus/TCP Security on
      127.0.0.1:1802 (a master's certificate with role operate in DIR/mbtls-master/),
      data in ./demo-data, with a signing key pair for
      trying firmware images (DIR/demo-secret.key; its public key is trusted).
";

/// The demo's Modbus TCP port: unprivileged.
const DEMO_MODBUS_PORT: u16 = 1502;

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut modbus, mut firmware) = (None, None, None);
    let (mut http, mut https, mut ssh, mut mbtls) = (None, None, None, None);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("modbus") => a.value_into(&mut modbus, "--modbus")?,
            Arg::Long("firmware") => a.value_into(&mut firmware, "--firmware")?,
            Arg::Long("http") => a.value_into(&mut http, "--http")?,
            Arg::Long("https") => a.value_into(&mut https, "--https")?,
            Arg::Long("ssh") => a.value_into(&mut ssh, "--ssh")?,
            Arg::Long("mbtls") => a.value_into(&mut mbtls, "--mbtls")?,
            arg => return Err(unexpected(arg)),
        }
    }
    let data = PathBuf::from(data.unwrap_or_else(|| "demo-data".into()));
    // Fixed for this run if given; otherwise loopback on the stored port, which in the
    // demo is 1502 from the factory (502 needs privileges).
    let modbus = modbus.map(|s| parse_addr(&s)).transpose()?;
    let firmware = firmware.map(PathBuf::from);
    let http = parse_addr(&http.unwrap_or_else(|| "127.0.0.1:8080".into()))?;
    let https = parse_addr(&https.unwrap_or_else(|| "127.0.0.1:8443".into()))?;
    let ssh = parse_addr(&ssh.unwrap_or_else(|| "127.0.0.1:2222".into()))?;
    let mbtls = parse_addr(&mbtls.unwrap_or_else(|| "127.0.0.1:1802".into()))?;
    let keys = firmware::keys::demo_pair(&data)?;
    // A master's key and certificate for Modbus/TCP Security, from the card's client CA.
    let master = data.join("mbtls-master");
    if !master.join("client.pem").exists() {
        crate::tcp::mbtls::pki::make_client(&data, "operate", &master)?;
    }

    let ups_pty = Pty::open().map_err(|e| format!("no pseudo-terminal for the UPS: {e}"))?;
    let ups_path = ups_pty.path.clone();
    let sim = Sim::on_pty(
        ups_pty,
        SimConfig {
            baud: 19200,
            ..SimConfig::default()
        },
    )
    .map(Arc::new)
    .map_err(|e| format!("simulated UPS: {e}"))?;
    let rs485 = NullModem::open().map_err(|e| format!("no pseudo-terminals for RS485: {e}"))?;

    let options = Options {
        data: data.clone(),
        ups: ups_path.clone(),
        rs485: Some(rs485.card_side().to_path_buf()),
        modbus,
        modbus_host: Some([127, 0, 0, 1].into()),
        factory: vec![
            (Key::ModbusPort.name().into(), DEMO_MODBUS_PORT.to_string()),
            (Key::MbtlsEnabled.name().into(), "true".into()),
        ],
        firmware,
        http: Some(http),
        https: Some(https),
        ssh: Some(ssh),
        // Announced on loopback, where the demo listens: `modbus-card find --interface lo`
        // lists it (if this system lets multicast run on lo; if not, the log says so).
        mdns_port: Some(crate::discovery::MDNS_PORT),
        mdns_interface: Some("lo".into()),
        mbtls: Some(mbtls),
        ..Options::default()
    };
    spawn_console(sim_commands(&sim));
    let mut first = true;
    serve(&options, None, |service| {
        if std::mem::take(&mut first) {
            print_demo(service, &ups_path, rs485.user_side(), &data, &keys);
        } else {
            println!("\nModbus card demo: the service restarted");
        }
    })?;
    drop(sim);
    drop(rs485);
    Ok(())
}
/// Where to point clients at the demo.
fn print_demo(
    service: &Service,
    ups_path: &Path,
    rs485: &Path,
    data: &Path,
    keys: &firmware::keys::DemoKeys,
) {
    let s = service.settings();
    let port = service.modbus_addr().port();
    let web = match (service.http_addr(), service.https_addr()) {
        (None, None) => {
            "  Web          off (http_enabled and https_enabled are false)\n".to_string()
        }
        (http, https) => format!(
            "  Web          {}{}\n\
             \x20              user admin, first password {} (the MAC's last 6 hex digits)\n\
             \x20              HTTPS uses the card's own root certificate: {}/tls/ca.pem\n",
            https.map_or(String::new(), |a| format!("https://{a}/  ")),
            http.map_or(String::new(), |a| format!("http://{a}/")),
            service.accounts.mac().default_password(),
            data.display(),
        ),
    };
    let ssh = match service.ssh_addr() {
        Some(a) => format!(
            "  SSH console  ssh -p {} admin@{}\n\
             \x20              (the same accounts; the host key is {}/{})\n",
            a.port(),
            a.ip(),
            data.display(),
            crate::console::ssh::host_key::FILE,
        ),
        None => "  SSH console  off (ssh_enabled is false)\n".to_string(),
    };
    let mbtls = match service.mbtls_addr() {
        Some(a) => format!(
            "  Modbus/TCP Security (TLS) {a}, with the master's certificate (role operate):\n\
             \x20              python3 -c 'import ssl; from pymodbus.client import ModbusTlsClient as M; \
             s = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); s.check_hostname = False; \
             s.load_verify_locations(\"{d}/mbtls/server.pem\"); \
             s.load_cert_chain(\"{d}/mbtls-master/client.pem\", \"{d}/mbtls-master/client-key.pem\"); \
             c = M(\"{ip}\", port={port}, sslctx=s); c.connect(); \
             print(c.read_holding_registers(0x1060, count=8, device_id=1).registers)'\n",
            d = data.display(),
            ip = a.ip(),
            port = a.port(),
        ),
        None => "  Modbus/TCP Security  off (mbtls_enabled is false)\n".to_string(),
    };
    println!(
        "\nModbus card demo: a simulated UPS (19200 baud, found by baud detection) on {ups}\n\
         \n  Modbus TCP   {addr}\n\
         \x20              mbpoll -m tcp -p {port} -a 1 -0 -r 4192 -c 8 -1 127.0.0.1\n\
         \x20              (reads the UPS's load and battery words, 0x1060..)\n\
         \x20 RS485 RTU    {rs485} at {baud} baud 8N1, card slave number {slave}\n\
         \x20              mbpoll -m rtu -b {baud} -P none -a {slave} -0 -r 4192 -c 8 -1 {rs485}\n\
         {web}\
         {ssh}\
         {mbtls}\
         \x20 data         {data}\n\
         \x20 firmware     signing key {secret} (no password: for trying upgrades only),\n\
         \x20              trusted as {public}\n\
         \x20              modbus-card image build --key {secret} --out new.img\n\
         \x20              {upgrades}\n\
         \nType 'help' for the simulated UPS's commands (faults, mains failure); Ctrl-C stops.\n",
        ups = ups_path.display(),
        addr = match service.tcp.listening() {
            true => service.modbus_addr().to_string(),
            false => format!(
                "{} when on (off: modbus_enabled is false)",
                service.modbus_addr()
            ),
        },
        rs485 = rs485.display(),
        baud = s.rs485_baud,
        slave = s.rs485_slave,
        data = data.display(),
        secret = keys.secret.display(),
        public = keys.public.display(),
        upgrades = if service.upgrader.is_some() {
            "upgrades install into the A/B install given with --firmware"
        } else {
            "(upgrades install only with --firmware ROOT, an A/B install: see the README)"
        },
    );
}
