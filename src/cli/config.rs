//! `modbus-card config`: the configuration file, exported or imported while the service
//! is stopped.

use super::{only, settings::BY, text, unexpected, Arg, Args, Outcome, Stop};
use crate::config_file;
use crate::event::{Event, Stamped};
use crate::firmware;
use crate::settings::Key;

// Literals, so that `config --help` can show both subcommands' texts at once.
macro_rules! export_help {
    () => {
        "  modbus-card config export --data DIR
      Writes the configuration file (every setting, commented) to standard output.
"
    };
}
macro_rules! import_help {
    () => {
        "  modbus-card config import --data DIR [--dry-run] FILE
      Checks FILE whole (as the web page does) and stores its settings, or, with
      --dry-run, only shows what would change. A refused file changes nothing and
      the exit status is 1. The service reads them at its next start.
"
    };
}
pub const HELP: &str = concat!(export_help!(), import_help!());

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut dry_run, mut words, mut given) = (None, false, vec![], vec![]);
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("dry-run") => {
                dry_run = true;
                given.push("--dry-run");
            }
            Arg::Value(word) => {
                let word = text(word)?;
                match (words.is_empty(), word.as_str()) {
                    (true, "export") => a.help(export_help!()),
                    (true, "import") => a.help(import_help!()),
                    _ => {}
                }
                words.push(word);
            }
            arg => return Err(unexpected(arg)),
        }
    }
    let data = data.ok_or("config needs --data DIR")?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let import = match words[..] {
        ["export"] => {
            only(&given, &[], "config export")?;
            None
        }
        ["import", file] => Some(file),
        _ => return Err(Stop::Usage("config takes export, or import FILE".into())),
    };
    let mut store = crate::store::Store::open(data.as_ref()).map_err(|e| e.to_string())?;
    let current = store.load_settings().map_err(|e| e.to_string())?;
    let Some(file) = import else {
        let origin = format!(
            "modbus-card {}, exported from {data}",
            firmware::version::current()
        );
        print!("{}", config_file::export(&current, &origin));
        return Ok(());
    };
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
        let pairs: Vec<(Key, &str)> = entries.iter().map(|e| (e.key, e.value.as_str())).collect();
        let diffs =
            crate::live::change_stored(&mut store, &pairs, BY).map_err(|e| e.to_string())?;
        let loaded = Stamped {
            at: std::time::SystemTime::now(),
            event: Event::ConfigurationLoaded {
                changed: diffs.len(),
                by: format!("{BY}, {file}"),
            },
        };
        store.add_events(&[loaded]).map_err(|e| e.to_string())?;
        println!(
            "{} settings stored; the service reads them at its next start",
            diffs.len()
        );
    }
    Ok(())
}
