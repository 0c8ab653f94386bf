//! `modbus-card firmware`: the A/B install's slots, for the init script.

use super::{only, text, unexpected, Arg, Args, Outcome, Stop};
use crate::firmware::{self, Slots};
use std::path::PathBuf;

pub const HELP: &str = "  modbus-card firmware boot --firmware ROOT
  modbus-card firmware rollback --firmware ROOT --reason TEXT
      For the init script: which slot starts (prints SLOT, and 'trial' for a new
      version's first start; a trial that never confirmed is rolled back first);
      and back to the good slot when a trial fails.
";

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut root, mut reason, mut words, mut given) = (None, None, vec![], vec![]);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("firmware") => a.value_into(&mut root, "--firmware")?,
            Arg::Long("reason") => {
                a.value_into(&mut reason, "--reason")?;
                given.push("--reason");
            }
            Arg::Value(word) => words.push(text(word)?),
            arg => return Err(unexpected(arg)),
        }
    }
    let root = PathBuf::from(root.ok_or("firmware needs --firmware ROOT")?);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words[..] {
        ["boot"] => only(&given, &[], "firmware boot")?,
        ["rollback"] if reason.is_none() => {
            return Err(Stop::Usage("firmware rollback needs --reason TEXT".into()))
        }
        ["rollback"] => {}
        _ => {
            return Err(Stop::Usage(
                "firmware takes boot, or rollback --reason TEXT".into(),
            ))
        }
    }
    let slots = Slots::open(&root)?;
    let fail = |e: std::io::Error| format!("{}: {e}", root.display());
    match reason {
        None => match slots.boot().map_err(fail)? {
            firmware::slots::Boot::Normal(slot) => println!("{slot}"),
            firmware::slots::Boot::Trial(slot) => println!("{slot} trial"),
            firmware::slots::Boot::RolledBack(slot) => {
                eprintln!("trial failed: back to slot {slot}");
                println!("{slot}");
            }
        },
        Some(reason) => match slots.rollback(&reason).map_err(fail)? {
            Some(r) => println!("rolled back from {} to {}", r.from, r.to),
            None => println!("no trial to roll back"),
        },
    }
    Ok(())
}
