//! modbus-card: the service of a Modbus TCP card for UPS and STS units. This file only
//! picks the command; each lives in `src/cli/`, with its options and help.

use modbus_card::cli::{self, Stop};
use modbus_card::firmware;
use std::process::ExitCode;

fn main() -> ExitCode {
    let logging = cli::LOGGING.get_or_init(modbus_card::logging::init);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("", &[][..]),
    };
    let result = dispatch(command, rest);
    logging.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::Help(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(Stop::Usage(e)) => {
            eprintln!("error: {e}\n(modbus-card {command} --help shows its options)");
            ExitCode::FAILURE
        }
        Err(Stop::Failed(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: &str, args: &[String]) -> cli::Outcome {
    match command {
        "run" => cli::run::main(args),
        "demo" => cli::demo::main(args),
        "simulate-ups" => cli::simulate_ups::main(args),
        "settings" => cli::settings::main(args),
        "find" => cli::find::main(args),
        "config" => cli::config::main(args),
        "image" => cli::image::main(args),
        "upgrade" => cli::upgrade::main(args),
        "firmware" => cli::firmware::main(args),
        "console" => cli::console::main(args),
        "cert" => cli::cert::main(args),
        "--version" | "-V" => {
            println!("modbus-card {}", firmware::version::current());
            Ok(())
        }
        // `help COMMAND` is `COMMAND --help`.
        "help" | "--help" | "-h" => match args.first() {
            Some(command) if command != "--help" => dispatch(command, &["--help".into()]),
            _ => Err(Stop::Help(cli::usage())),
        },
        "" => Err(Stop::Failed(cli::usage())),
        _ => Err(Stop::Failed(format!(
            "unknown command '{command}'\n\n{}",
            cli::usage()
        ))),
    }
}
