//! modbus-card: the service of a Modbus TCP card for UPS and STS units.

use modbus_card::accounts::Mac;
use modbus_card::firmware::{self, Slots};
use modbus_card::pty::{NullModem, Pty};
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Sim, SimConfig};
use std::io::{BufRead, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
usage:
  modbus-card run --data DIR --ups PATH [--baud N] [--rs485 PATH] [--modbus ADDR:PORT]
                  [--set KEY=VALUE]... [--network-script PATH] [--reboot COMMAND]
                  [--system-clock] [--stall-limit SECONDS] [--firmware ROOT]
                  [--http ADDR:PORT] [--https ADDR:PORT] [--ssh ADDR:PORT] [--mac MAC]
      The service. DIR holds the database, the certificates and the SSH host key;
      settings come from it, and the options here override them for this run.
      Defaults: --modbus 0.0.0.0:502, --http 0.0.0.0:80, --https 0.0.0.0:443,
      --ssh 0.0.0.0:22, --mac that of net_interface
      (eth0), else of the first other interface (the default admin password is its
      last 6 hex digits, upper case).
      On the board: --network-script applies the network settings with that script
      (init/modbus-card-network), --reboot is how a restart reboots the board (without
      it the service restarts in place), --system-clock lets NTP and the user set the
      system clock. --stall-limit: seconds a thread may be busy without progress before
      the watchdog is no longer fed (default 60). --firmware: the A/B install the
      service runs from (/opt/modbus-card on the card), for firmware upgrades.
  modbus-card demo [--data DIR] [--modbus ADDR:PORT] [--http ADDR:PORT] [--https ADDR:PORT]
                   [--ssh ADDR:PORT] [--firmware ROOT]
      The whole card on this machine: a simulated UPS and an RS485 port on
      pseudo-terminals, Modbus TCP on 127.0.0.1 at the Modbus port setting (1502
      from the factory here), the web on http://127.0.0.1:8080 and
      https://127.0.0.1:8443, the SSH console on 127.0.0.1:2222, data in ./demo-data, with a signing key pair for
      trying firmware images (DIR/demo-secret.key; its public key is trusted).
  modbus-card simulate-ups [PATH] [--baud N] [--paced]
      A simulated Socomec UPS (slave 1) on a serial device, or on a new
      pseudo-terminal whose path it prints. Type 'help' for its fault commands.
  modbus-card settings --data DIR [KEY=VALUE]...
      Shows the stored settings, or stores the given ones (checked as the service
      would check them); the service reads them at its next start.
  modbus-card config export --data DIR
      Writes the configuration file (every setting, commented) to standard output.
  modbus-card config import --data DIR [--dry-run] FILE
      Checks FILE whole (as the web page does) and stores its settings, or, with
      --dry-run, only shows what would change. A refused file changes nothing and
      the exit status is 1. The service reads them at its next start.
  modbus-card image build --out FILE (--key SECRET_KEY | --unsigned) [--binary PATH]
                          [--init PATH] [--replaces VERSION]
      Makes a firmware image: the binary (default: this program; its version is the
      image's), the init script (default: init/modbus-card as built in), signed with a
      minisign secret key (its password is asked if it has one). --replaces: the
      oldest version it may replace (default 0.0.0: any). --unsigned writes the part
      to sign: `minisign -Sm FILE`, then `cat FILE FILE.minisig > IMAGE`.
  modbus-card image verify FILE [--data DIR] [--key PUBLIC_KEY]...
      Checks an image as the card does (signature with DIR's trusted keys, default
      /var/lib/modbus-card, or the keys given; manifest; contents) and shows it.
  modbus-card image install --firmware ROOT [--data DIR] [--key PUBLIC_KEY]... FILE
      A card's first install (the factory's): the image into slot a of ROOT.
  modbus-card upgrade [--firmware ROOT] [--data DIR] [--restart COMMAND | --no-restart]
                      FILE
      Upgrades the card from FILE (- for standard input) as the /firmware page does,
      then restarts the service into it on trial with COMMAND (default
      /etc/init.d/modbus-card restart). ROOT defaults to /opt/modbus-card, DIR to
      /var/lib/modbus-card. A refused image changes nothing; the exit status is 1.
  modbus-card firmware boot --firmware ROOT
  modbus-card firmware rollback --firmware ROOT --reason TEXT
      For the init script: which slot starts (prints SLOT, and 'trial' for a new
      version's first start; a trial that never confirmed is rolled back first);
      and back to the good slot when a trial fails.
  modbus-card console [--data DIR] [--tty PATH]
      The serial console (init/inittab runs it on the USB gadget's tty): the terminal
      in raw mode, relayed to the running service's menu (DIR/console.sock; DIR
      defaults to /var/lib/modbus-card). With --tty it serves that terminal for ever:
      the Enter prompt, a login, the menu, and again; without, one login on standard
      input and output (under BusyBox's askfirst, which asks for Enter itself).
  modbus-card --version

settings (KEY for --set): see 'modbus-card settings --data DIR' for every key
log detail: RUST_LOG=debug (default info)";

/// The log's queue, to empty before the process ends or runs another program.
static LOGGING: std::sync::OnceLock<modbus_card::logging::Logging> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    let logging = LOGGING.get_or_init(modbus_card::logging::init);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("simulate-ups") => simulate_ups(&args[1..]),
        Some("settings") => settings(&args[1..]),
        Some("config") => config(&args[1..]),
        Some("image") => image(&args[1..]),
        Some("upgrade") => upgrade(&args[1..]),
        Some("firmware") => firmware(&args[1..]),
        Some("console") => console(&args[1..]),
        Some("--version" | "-V") => {
            println!("modbus-card {}", firmware::version::current());
            Ok(())
        }
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    };
    logging.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Options as `--name value` pairs (and bare flags), plus positional arguments.
struct Args {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    fn parse(args: &[String], flags: &[&str]) -> Result<Args, String> {
        let mut parsed = Args {
            pairs: vec![],
            flags: vec![],
            positional: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if flags.contains(&a.as_str()) {
                parsed.flags.push(a.clone());
            } else if a.starts_with("--") {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                parsed.pairs.push((a.clone(), v.clone()));
            } else {
                parsed.positional.push(a.clone());
            }
        }
        Ok(parsed)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.remove(i).1)
    }

    fn take_all(&mut self, name: &str) -> Vec<String> {
        let mut out = vec![];
        while let Some(v) = self.take(name) {
            out.push(v);
        }
        out
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn finish(self) -> Result<(), String> {
        match self.pairs.first() {
            Some((k, _)) => Err(format!("unknown option {k}\n\n{USAGE}")),
            None => Ok(()),
        }
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an ADDRESS:PORT such as 0.0.0.0:502"))
}

fn run(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &["--system-clock"])?;
    let data = a.take("--data").ok_or("run needs --data DIR")?;
    let ups = a
        .take("--ups")
        .ok_or("run needs --ups PATH (the UPS serial port)")?;
    let mut overrides = vec![];
    if let Some(baud) = a.take("--baud") {
        overrides.push(("ups_baud".to_string(), baud));
    }
    for kv in a.take_all("--set") {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv}: expected KEY=VALUE"))?;
        overrides.push((k.to_string(), v.to_string()));
    }
    let options = Options {
        data: data.into(),
        ups: ups.into(),
        rs485: a.take("--rs485").map(PathBuf::from),
        modbus: a.take("--modbus").map(|s| parse_addr(&s)).transpose()?,
        overrides,
        stall_limit: a
            .take("--stall-limit")
            .map(|s| match s.parse::<u64>() {
                Ok(v) if v > 0 => Ok(Duration::from_secs(v)),
                _ => Err(format!("--stall-limit {s}: not a number of seconds")),
            })
            .transpose()?,
        network_script: a.take("--network-script").map(PathBuf::from),
        system_clock: a.flag("--system-clock"),
        firmware: a.take("--firmware").map(PathBuf::from),
        http: Some(parse_addr(
            &a.take("--http").unwrap_or_else(|| "0.0.0.0:80".into()),
        )?),
        https: Some(parse_addr(
            &a.take("--https").unwrap_or_else(|| "0.0.0.0:443".into()),
        )?),
        ssh: Some(parse_addr(
            &a.take("--ssh").unwrap_or_else(|| "0.0.0.0:22".into()),
        )?),
        mac: a.take("--mac").map(|m| m.parse::<Mac>()).transpose()?,
        ..Options::default()
    };
    let reboot = a.take("--reboot");
    a.finish()?;
    modbus_card::rt::limit_allocator_arenas();
    modbus_card::rt::lock_memory();
    serve(&options, reboot.as_deref(), |_| {})
}

/// Runs the service until SIGTERM or SIGINT. A restart request (reset button, pages,
/// console) stops it, then reboots the board with `reboot` if given, else starts it again
/// in place.
fn serve(
    options: &Options,
    reboot: Option<&str>,
    mut started: impl FnMut(&Service),
) -> Result<(), String> {
    let signals = signal_channel()?;
    loop {
        log::info!("modbus-card {} starting", firmware::version::current());
        let service = Service::start(options.clone()).map_err(|e| e.to_string())?;
        started(&service);
        let restarts = service.restarts().clone();
        crossbeam_channel::select! {
            recv(signals) -> sig => {
                log::info!("signal {}: stopping", sig.unwrap_or_default());
                service.stop();
                return Ok(());
            }
            recv(restarts) -> restart => {
                let by = restart.map(|r| r.by).unwrap_or_default();
                service.stop();
                let Some(command) = reboot else {
                    log::warn!("restart asked by {by}: starting the service again");
                    if let Some(root) = &options.firmware {
                        exec_current_slot(root);
                    }
                    continue;
                };
                log::warn!("restart asked by {by}: rebooting the board ({command})");
                match std::process::Command::new("sh").arg("-c").arg(command).status() {
                    // The init system now stops every process, this one with a signal.
                    Ok(status) if status.success() => {
                        let _ = signals.recv();
                        return Ok(());
                    }
                    Ok(status) => log::error!("'{command}' failed ({status}); restarting the service instead"),
                    Err(e) => log::error!("cannot run '{command}': {e}; restarting the service instead"),
                }
            }
        }
    }
}

/// After a restart in place from an A/B install: when `current` is another slot than
/// this program's (a new version was installed), runs it in this process, marking its
/// trial as started. Returns only when there is nothing to run instead, or it cannot be
/// run (then the trial is rolled back).
fn exec_current_slot(root: &Path) {
    use std::os::unix::process::CommandExt;
    let Ok(slots) = Slots::open(root) else {
        return;
    };
    let (Ok(current), Ok(good)) = (slots.current(), slots.good()) else {
        return;
    };
    if slots.running_slot().as_deref() == Some(current.as_str()) {
        return;
    }
    if current != good {
        if let Err(e) = slots.begin_trial() {
            log::error!("cannot start the trial of slot {current}: {e}");
            return;
        }
    }
    let program = slots.dir(&current).join(firmware::image::BINARY);
    log::warn!("restarting into slot {current} ({})", program.display());
    if let Some(logging) = LOGGING.get() {
        logging.flush();
    }
    let error = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    log::error!("cannot run {}: {error}", program.display());
    if let Err(e) = slots.rollback(&format!("it could not be started: {error}")) {
        log::error!("rollback failed: {e}");
    }
}

fn settings(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &[])?;
    let data = a.take("--data").ok_or("settings needs --data DIR")?;
    let changes = std::mem::take(&mut a.positional);
    a.finish()?;
    let mut store = modbus_card::store::Store::open(data.as_ref()).map_err(|e| e.to_string())?;
    let pairs = changes
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| format!("{kv}: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let diffs = store.change_settings(&pairs).map_err(|e| e.to_string())?;
    log_command_line_changes(&mut store, &diffs, None)?;
    let settings = store.load_settings().map_err(|e| e.to_string())?;
    for key in modbus_card::settings::keys() {
        println!("{key}={}", settings.get(key).unwrap_or_default());
    }
    println!(
        "# lowest sane serial_timeout_ms at {} baud: {}",
        settings.slowest_ups_baud(),
        settings.min_serial_timeout_ms()
    );
    Ok(())
}

/// Stored settings changed from the command line, with their events in the log.
fn log_command_line_changes(
    store: &mut modbus_card::store::Store,
    diffs: &[modbus_card::settings::Diff],
    file: Option<&str>,
) -> Result<(), String> {
    use modbus_card::event::{Event, Stamped};
    let by = "command line".to_string();
    let at = std::time::SystemTime::now();
    let mut events: Vec<Stamped> = diffs
        .iter()
        .map(|d| Stamped {
            at,
            event: Event::SettingChanged {
                label: modbus_card::settings::def_of(d.key).map_or(d.key, |def| def.label),
                old: d.old.clone(),
                new: d.new.clone(),
                by: by.clone(),
            },
        })
        .collect();
    if let Some(file) = file {
        events.push(Stamped {
            at,
            event: Event::ConfigurationLoaded {
                changed: diffs.len(),
                by: format!("{by}, {file}"),
            },
        });
    }
    store.add_events(&events).map_err(|e| e.to_string())
}

fn config(args: &[String]) -> Result<(), String> {
    use modbus_card::config_file;
    let mut a = Args::parse(args, &["--dry-run"])?;
    let data = a.take("--data").ok_or("config needs --data DIR")?;
    let dry_run = a.flag("--dry-run");
    let words = std::mem::take(&mut a.positional);
    a.finish()?;
    let mut store = modbus_card::store::Store::open(data.as_ref()).map_err(|e| e.to_string())?;
    let current = store.load_settings().map_err(|e| e.to_string())?;
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["export"] => {
            let origin = format!(
                "modbus-card {}, exported from {data}",
                firmware::version::current()
            );
            print!("{}", config_file::export(&current, &origin));
            Ok(())
        }
        ["import", file] => {
            let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
            let report = |errors: Vec<config_file::LineError>| {
                let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
                format!("{file} refused, nothing changed:\n{}", lines.join("\n"))
            };
            let entries = config_file::parse(&bytes).map_err(report)?;
            let diffs = config_file::changes(&current, &entries).map_err(report)?;
            for d in &diffs {
                println!("{}: {} -> {}", d.key, d.old, d.new);
            }
            if diffs.is_empty() {
                println!("nothing to change");
            } else if dry_run {
                println!("(dry run: nothing stored)");
            } else {
                let pairs: Vec<(&str, &str)> =
                    entries.iter().map(|e| (e.key, e.value.as_str())).collect();
                let diffs = store.change_settings(&pairs).map_err(|e| e.to_string())?;
                log_command_line_changes(&mut store, &diffs, Some(file))?;
                println!(
                    "{} settings stored; the service reads them at its next start",
                    diffs.len()
                );
            }
            Ok(())
        }
        _ => Err(format!("config takes export or import FILE\n\n{USAGE}")),
    }
}

fn demo(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &[])?;
    let data = PathBuf::from(a.take("--data").unwrap_or_else(|| "demo-data".into()));
    // Fixed for this run if given; otherwise loopback on the stored port, which in the
    // demo is 1502 from the factory (502 needs privileges).
    let modbus = a.take("--modbus").map(|s| parse_addr(&s)).transpose()?;
    let firmware = a.take("--firmware").map(PathBuf::from);
    let http = parse_addr(&a.take("--http").unwrap_or_else(|| "127.0.0.1:8080".into()))?;
    let https = parse_addr(&a.take("--https").unwrap_or_else(|| "127.0.0.1:8443".into()))?;
    let ssh = parse_addr(&a.take("--ssh").unwrap_or_else(|| "127.0.0.1:2222".into()))?;
    a.finish()?;
    let keys = firmware::keys::demo_pair(&data)?;

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
        factory: vec![("modbus_port".into(), DEMO_MODBUS_PORT.to_string())],
        firmware,
        http: Some(http),
        https: Some(https),
        ssh: Some(ssh),
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
            modbus_card::console::ssh::host_key::FILE,
        ),
        None => "  SSH console  off (ssh_enabled is false)\n".to_string(),
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
         \x20 data         {data}\n\
         \x20 firmware     signing key {secret} (no password: for trying upgrades only),\n\
         \x20              trusted as {public}\n\
         \x20              modbus-card image build --key {secret} --out new.img\n\
         \x20              {upgrades}\n\
         \nType 'help' for the simulated UPS's commands (faults, mains failure); Ctrl-C stops.\n",
        ups = ups_path.display(),
        addr = service.modbus_addr(),
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

fn console(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &[])?;
    let data = PathBuf::from(a.take("--data").unwrap_or_else(|| DEFAULT_DATA.into()));
    let tty = a.take("--tty").map(PathBuf::from);
    a.finish()?;
    modbus_card::console::relay::run(&data, tty.as_deref())
}

fn simulate_ups(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &["--paced"])?;
    let baud: u32 = match a.take("--baud") {
        Some(b) => b.parse().map_err(|_| format!("--baud {b}: not a number"))?,
        None => 19200,
    };
    let config = SimConfig {
        baud,
        paced: a.flag("--paced"),
        ..SimConfig::default()
    };
    let path = a.positional.first().cloned();
    a.finish()?;
    let sim = match path {
        Some(p) => Sim::on_device(p.as_ref(), config).map_err(|e| format!("{p}: {e}"))?,
        None => {
            let pty = Pty::open().map_err(|e| format!("no pseudo-terminal: {e}"))?;
            let sim = Sim::on_pty(pty, config).map_err(|e| e.to_string())?;
            println!(
                "simulated UPS on {}",
                sim.path().expect("pty path").display()
            );
            sim
        }
    };
    let sim = Arc::new(sim);
    println!("slave 1 at {baud} baud; type 'help' for commands, Ctrl-C stops");
    spawn_console(sim_commands(&sim));
    let _ = signal_channel()?.recv();
    drop(sim);
    Ok(())
}

/// A function that runs one console line against the simulator.
fn sim_commands(sim: &Arc<Sim>) -> impl Fn(&str) -> String + Send + 'static {
    let sim = sim.clone();
    move |line| match sim.command(line) {
        Ok(reply) | Err(reply) => reply,
    }
}

/// Reads lines from standard input on a thread of its own and prints the replies. A line
/// is at most [`MAX_LINE`] bytes, so input without newlines cannot grow memory.
fn spawn_console(run: impl Fn(&str) -> String + Send + 'static) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = Vec::with_capacity(MAX_LINE);
        // Inside a line that was too long: skip to its end.
        let mut skipping = false;
        loop {
            line.clear();
            match (&mut stdin)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(_) if !line.ends_with(b"\n") && line.len() == MAX_LINE => {
                    if !skipping {
                        println!("line longer than {MAX_LINE} bytes ignored");
                    }
                    skipping = true;
                }
                Ok(_) if skipping => skipping = false,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    if !text.trim().is_empty() {
                        println!("{}", run(text.trim()));
                    }
                }
            }
        }
    });
}

const MAX_LINE: usize = 1024;
/// The demo's Modbus TCP port: unprivileged.
const DEMO_MODBUS_PORT: u16 = 1502;

/// SIGINT and SIGTERM, as a channel to wait on beside others.
fn signal_channel() -> Result<crossbeam_channel::Receiver<i32>, String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let (tx, rx) = crossbeam_channel::bounded(4);
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(sig).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    Ok(rx)
}

const DEFAULT_DATA: &str = "/var/lib/modbus-card";
const DEFAULT_FIRMWARE: &str = "/opt/modbus-card";
/// The init script as built in: the default of `image build --init`.
const INIT_SCRIPT: &str = include_str!("../init/modbus-card");

fn image(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &["--unsigned"])?;
    let words = std::mem::take(&mut a.positional);
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["build"] => image_build(a),
        ["verify", file] => {
            let keys = keys_for(&mut a)?;
            a.finish()?;
            let (_, verified) = verify_file(Path::new(file), &keys)?;
            show_image(&verified);
            Ok(())
        }
        ["install", file] => {
            let root = a
                .take("--firmware")
                .ok_or("image install needs --firmware ROOT")?;
            let keys = keys_for(&mut a)?;
            a.finish()?;
            let (mut f, verified) = verify_file(Path::new(file), &keys)?;
            Slots::first_install(root.as_ref(), &mut f, &verified)?;
            println!(
                "{} installed in {root}/a; current and good point at it",
                verified.manifest.version
            );
            Ok(())
        }
        _ => Err(format!(
            "image takes build, verify FILE or install FILE\n\n{USAGE}"
        )),
    }
}

/// The public keys to check an image with: those given, else the data folder's.
fn keys_for(a: &mut Args) -> Result<Vec<firmware::keys::TrustedKey>, String> {
    let given = a.take_all("--key");
    let data = a.take("--data").unwrap_or_else(|| DEFAULT_DATA.into());
    if given.is_empty() {
        return firmware::keys::trusted(data.as_ref());
    }
    given
        .iter()
        .map(|k| firmware::keys::read_public(k.as_ref()))
        .collect()
}

fn verify_file(
    path: &Path,
    keys: &[firmware::keys::TrustedKey],
) -> Result<(std::fs::File, firmware::image::Verified), String> {
    let refused = |e: firmware::Refusal| format!("{} refused: {e}", path.display());
    let verified = firmware::image::verify(path, keys).map_err(refused)?;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, verified))
}

fn show_image(v: &firmware::image::Verified) {
    let m = &v.manifest;
    println!(
        "modbus-card firmware image, format {}",
        firmware::image::FORMAT
    );
    println!("  version        {}", m.version);
    println!("  replaces       {} and later", m.replaces);
    println!("  for            {}", v.machine);
    for (name, len) in &m.files {
        println!("  file           {name} ({len} bytes)");
    }
    println!("  signed by      {}", v.signed_by);
    println!("  signed comment {}", v.signed_comment);
    println!("signature, manifest and contents are good");
}

fn image_build(mut a: Args) -> Result<(), String> {
    use firmware::image;
    let out = PathBuf::from(a.take("--out").ok_or("image build needs --out FILE")?);
    let key = a.take("--key");
    let unsigned = a.flag("--unsigned");
    if key.is_some() == unsigned {
        return Err("image build needs --key SECRET_KEY or --unsigned".into());
    }
    let binary = match a.take("--binary") {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    let replaces = a.take("--replaces").unwrap_or_else(|| "0.0.0".into());
    let replaces = firmware::version::Version::parse(&replaces)
        .ok_or_else(|| format!("--replaces {replaces}: not a version such as 0.1.0"))?;
    let init_given = a.take("--init");
    a.finish()?;
    // The built-in init script goes through a file like a given one.
    let tmp_init = out.with_extension("init.tmp");
    let init = match &init_given {
        Some(p) => PathBuf::from(p),
        None => {
            std::fs::write(&tmp_init, INIT_SCRIPT)
                .map_err(|e| format!("{}: {e}", tmp_init.display()))?;
            tmp_init.clone()
        }
    };
    let body = if unsigned {
        out.clone()
    } else {
        out.with_extension("body.tmp")
    };
    let built = (|| {
        let mut file =
            std::fs::File::create(&body).map_err(|e| format!("{}: {e}", body.display()))?;
        let manifest = image::write_body(
            &image::Build {
                binary: &binary,
                init_script: &init,
                replaces,
            },
            &mut file,
        )?;
        if let Some(key) = &key {
            let name = out.file_name().unwrap_or_default().to_string_lossy();
            let comment = format!(
                "modbus-card {} image {name}, signed at {}",
                manifest.version,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            );
            let signature = firmware::keys::sign(key.as_ref(), &body, &comment)?;
            std::io::Write::write_all(&mut file, signature.as_bytes())
                .map_err(|e| format!("{}: {e}", body.display()))?;
            file.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&body, &out).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        Ok::<_, String>(manifest)
    })();
    let _ = std::fs::remove_file(&tmp_init);
    if built.is_err() {
        let _ = std::fs::remove_file(&body);
    }
    let manifest = built?;
    println!(
        "{}: modbus-card {} (replaces {} and later){}",
        out.display(),
        manifest.version,
        manifest.replaces,
        if unsigned {
            "; unsigned: sign it with `minisign -Sm FILE`, then append FILE.minisig to it"
        } else {
            ", signed"
        }
    );
    Ok(())
}

fn upgrade(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &["--no-restart"])?;
    let root = PathBuf::from(
        a.take("--firmware")
            .unwrap_or_else(|| DEFAULT_FIRMWARE.into()),
    );
    let data = PathBuf::from(a.take("--data").unwrap_or_else(|| DEFAULT_DATA.into()));
    let restart = a
        .take("--restart")
        .unwrap_or_else(|| "/etc/init.d/modbus-card restart".into());
    let no_restart = a.flag("--no-restart");
    let file = match &a.positional[..] {
        [f] => f.clone(),
        _ => return Err(format!("upgrade takes one FILE\n\n{USAGE}")),
    };
    a.positional.clear();
    a.finish()?;
    let mut body: Box<dyn std::io::Read> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&file).map_err(|e| format!("{file}: {e}"))?)
    };
    let store = modbus_card::store::Store::open(&data).map_err(|e| e.to_string())?;
    let store = parking_lot::Mutex::new(store);
    let log = Box::new(move |event: modbus_card::event::Event| {
        log::info!("event: {}", event.message());
        let stamped = modbus_card::event::Stamped {
            at: std::time::SystemTime::now(),
            event,
        };
        if let Err(e) = store.lock().add_events(&[stamped]) {
            log::error!("cannot log the event: {e}");
        }
    });
    let upgrader = firmware::Upgrader::new(&root, &data, log);
    let by = format!(
        "{}, command line",
        std::env::var("USER").unwrap_or_else(|_| "root".into())
    );
    let mut last = None;
    let installed = upgrader
        .upgrade(&mut body, None, &by, &mut |step| {
            let name = match step {
                firmware::Step::Receiving { .. } => "receiving",
                firmware::Step::Verifying => "verifying signature, manifest and contents",
                firmware::Step::Writing { .. } => "writing the inactive slot",
                firmware::Step::Replacing => "putting the slot in place",
                firmware::Step::Switching => "switching to it",
            };
            if last != Some(name) {
                println!("{name}");
                last = Some(name);
            }
        })
        .map_err(|e| format!("{file} refused, nothing changed: {e}"))?;
    println!(
        "{} installed in slot {} (replacing {}); it starts on trial",
        installed.version, installed.slot, installed.previous
    );
    if no_restart {
        println!("not restarted: the next start runs it");
        return Ok(());
    }
    println!("restarting: {restart}");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&restart)
        .status()
        .map_err(|e| format!("cannot run '{restart}': {e}"))?;
    if !status.success() {
        return Err(format!(
            "'{restart}' failed ({status}): the new version starts at the next start"
        ));
    }
    Ok(())
}

fn firmware(args: &[String]) -> Result<(), String> {
    let mut a = Args::parse(args, &[])?;
    let root = PathBuf::from(
        a.take("--firmware")
            .ok_or("firmware needs --firmware ROOT")?,
    );
    let words = std::mem::take(&mut a.positional);
    let reason = a.take("--reason");
    a.finish()?;
    let slots = Slots::open(&root)?;
    let fail = |e: std::io::Error| format!("{}: {e}", root.display());
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match (&words[..], reason) {
        (["boot"], None) => {
            match slots.boot().map_err(fail)? {
                firmware::slots::Boot::Normal(slot) => println!("{slot}"),
                firmware::slots::Boot::Trial(slot) => println!("{slot} trial"),
                firmware::slots::Boot::RolledBack(slot) => {
                    eprintln!("trial failed: back to slot {slot}");
                    println!("{slot}");
                }
            }
            Ok(())
        }
        (["rollback"], Some(reason)) => {
            match slots.rollback(&reason).map_err(fail)? {
                Some(r) => println!("rolled back from {} to {}", r.from, r.to),
                None => println!("no trial to roll back"),
            }
            Ok(())
        }
        _ => Err(format!(
            "firmware takes boot, or rollback --reason TEXT\n\n{USAGE}"
        )),
    }
}
