//! The command line: one file per command, each with its own help text and options.
//!
//! `src/main.rs` only picks the command. Options are read with `lexopt`: it costs the
//! binary about 15 KiB where `clap` measured 472 KiB (BENCHMARKS.md, Binary and
//! start-up), so the help texts are written out by hand, one per command, and the whole
//! usage is made of them.

pub mod cert;
pub mod config;
pub mod console;
pub mod demo;
pub mod find;
pub mod firmware;
pub mod image;
pub mod run;
mod serve;
pub mod settings;
pub mod simulate_ups;
pub mod upgrade;

use lexopt::ValueExt;
use std::net::SocketAddr;

/// The log's queue, to empty before the process ends or runs another program.
pub static LOGGING: std::sync::OnceLock<crate::logging::Logging> = std::sync::OnceLock::new();

pub const DEFAULT_DATA: &str = "/var/lib/modbus-card";
pub const DEFAULT_FIRMWARE: &str = "/opt/modbus-card";

/// Every command's help, in the order `modbus-card --help` shows them.
const COMMANDS: [&str; 11] = [
    run::HELP,
    demo::HELP,
    simulate_ups::HELP,
    settings::HELP,
    config::HELP,
    image::HELP,
    upgrade::HELP,
    firmware::HELP,
    console::HELP,
    find::HELP,
    cert::HELP,
];

/// `modbus-card --help`: every command's help, and what applies to all.
pub fn usage() -> String {
    let mut text = String::from("usage:\n");
    for help in COMMANDS {
        text.push_str(help);
    }
    text.push_str(
        "  modbus-card --version\n\
         \n\
         settings (KEY for --set): see 'modbus-card settings --data DIR' for every key\n\
         log detail: RUST_LOG=debug (default info)\n\
         'modbus-card COMMAND --help' shows one command's help",
    );
    text
}

/// How a command ends without doing its work.
#[derive(Debug)]
pub enum Stop {
    /// `--help` was asked: the text to show on standard output (a success).
    Help(String),
    /// The command line is wrong (an unknown option, a missing value): the error names
    /// the option.
    Usage(String),
    /// The command failed: why.
    Failed(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Failed(e)
    }
}

impl From<&str> for Stop {
    fn from(e: &str) -> Stop {
        Stop::Failed(e.to_string())
    }
}

impl From<lexopt::Error> for Stop {
    fn from(e: lexopt::Error) -> Stop {
        Stop::Usage(e.to_string())
    }
}

/// What a command returns.
pub type Outcome = Result<(), Stop>;

/// A command's arguments, read one at a time; `--help` (or `-h`) anywhere an option may
/// stand ends the command with its help.
pub struct Args {
    parser: lexopt::Parser,
    help: &'static str,
}

pub use lexopt::Arg;

impl Args {
    pub fn new(args: &[String], help: &'static str) -> Args {
        Args {
            parser: lexopt::Parser::from_args(args),
            help,
        }
    }

    /// From here on `--help` shows `help` (a subcommand's, once its word is read).
    pub fn help(&mut self, help: &'static str) {
        self.help = help;
    }

    /// The next option or positional argument; `None` at the end.
    pub fn arg(&mut self) -> Result<Option<Arg<'_>>, Stop> {
        match self.parser.next()? {
            Some(Arg::Long("help") | Arg::Short('h')) => {
                Err(Stop::Help(format!("usage:\n{}", self.help.trim_end())))
            }
            arg => Ok(arg),
        }
    }

    /// The value of the option just read.
    pub fn value(&mut self) -> Result<String, Stop> {
        Ok(self.parser.value()?.string()?)
    }

    /// The value of option `name` (just read) into `slot`: an option is given once.
    pub fn value_into(&mut self, slot: &mut Option<String>, name: &str) -> Result<(), Stop> {
        let value = self.value()?;
        if slot.replace(value).is_some() {
            return Err(Stop::Usage(format!("{name} is given twice")));
        }
        Ok(())
    }
}

/// An argument the command does not take, named.
pub fn unexpected(arg: Arg<'_>) -> Stop {
    arg.unexpected().into()
}

/// A positional argument as text.
pub fn text(value: std::ffi::OsString) -> Result<String, Stop> {
    Ok(value.string()?)
}

/// Options given to a subcommand that takes them not: the first one, named.
pub fn only(given: &[&'static str], allowed: &[&str], command: &str) -> Outcome {
    match given.iter().find(|g| !allowed.contains(g)) {
        Some(name) => Err(Stop::Usage(format!("{command} takes no {name}"))),
        None => Ok(()),
    }
}

pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an ADDRESS:PORT such as 0.0.0.0:502"))
}

/// SIGINT and SIGTERM, as a channel to wait on beside others.
pub fn signal_channel() -> Result<crossbeam_channel::Receiver<i32>, String> {
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
