//! `modbus-card upgrade`: a firmware upgrade from the card's own command line.

use super::{text, unexpected, Arg, Args, Outcome, Stop, DEFAULT_DATA, DEFAULT_FIRMWARE};
use crate::firmware;
use std::path::PathBuf;

pub const HELP: &str =
    "  modbus-card upgrade [--firmware ROOT] [--data DIR] [--restart COMMAND | --no-restart]
                      FILE
      Upgrades the card from FILE (- for standard input) as the /firmware page does,
      then restarts the service into it on trial with COMMAND (default
      /etc/init.d/modbus-card restart). ROOT defaults to /opt/modbus-card, DIR to
      /var/lib/modbus-card. A refused image changes nothing; the exit status is 1.
";

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut root, mut data, mut restart, mut no_restart) = (None, None, None, false);
    let mut files = vec![];
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("firmware") => a.value_into(&mut root, "--firmware")?,
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("restart") => a.value_into(&mut restart, "--restart")?,
            Arg::Long("no-restart") => no_restart = true,
            Arg::Value(file) => files.push(text(file)?),
            arg => return Err(unexpected(arg)),
        }
    }
    let root = PathBuf::from(root.unwrap_or_else(|| DEFAULT_FIRMWARE.into()));
    let data = PathBuf::from(data.unwrap_or_else(|| DEFAULT_DATA.into()));
    let restart = restart.unwrap_or_else(|| "/etc/init.d/modbus-card restart".into());
    let file = match &files[..] {
        [f] => f.clone(),
        _ => return Err(Stop::Usage("upgrade takes one FILE".into())),
    };
    let mut body: Box<dyn std::io::Read> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&file).map_err(|e| format!("{file}: {e}"))?)
    };
    let store = crate::store::Store::open(&data).map_err(|e| e.to_string())?;
    let store = parking_lot::Mutex::new(store);
    let log = Box::new(move |event: crate::event::Event| {
        log::info!("event: {}", event.message());
        let stamped = crate::event::Stamped {
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
        return Err(Stop::Failed(format!(
            "'{restart}' failed ({status}): the new version starts at the next start"
        )));
    }
    Ok(())
}
