//! `modbus-card simulate-ups`: a simulated UPS on a serial device or a pseudo-terminal,
//! driven from standard input.

use super::{signal_channel, text, unexpected, Arg, Args, Outcome};
use crate::pty::Pty;
use crate::sim::{Sim, SimConfig};
use std::io::{BufRead, Read};
use std::sync::Arc;

pub const HELP: &str = "  modbus-card simulate-ups [PATH] [--baud N] [--paced]
      A simulated Socomec UPS (slave 1) on a serial device, or on a new
      pseudo-terminal whose path it prints. Type 'help' for its fault commands.
";

const MAX_LINE: usize = 1024;

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut baud, mut path, mut paced) = (None, None, false);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("baud") => a.value_into(&mut baud, "--baud")?,
            Arg::Long("paced") => paced = true,
            Arg::Value(p) if path.is_none() => path = Some(text(p)?),
            arg => return Err(unexpected(arg)),
        }
    }
    let baud: u32 = match baud {
        Some(b) => b.parse().map_err(|_| format!("--baud {b}: not a number"))?,
        None => 19200,
    };
    let config = SimConfig {
        baud,
        paced,
        ..SimConfig::default()
    };
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
pub fn sim_commands(sim: &Arc<Sim>) -> impl Fn(&str) -> String + Send + 'static {
    let sim = sim.clone();
    move |line| match sim.command(line) {
        Ok(reply) | Err(reply) => reply,
    }
}

/// Reads lines from standard input on a thread of its own and prints the replies. A line
/// is at most [`MAX_LINE`] bytes, so input without newlines cannot grow memory.
pub fn spawn_console(run: impl Fn(&str) -> String + Send + 'static) {
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
