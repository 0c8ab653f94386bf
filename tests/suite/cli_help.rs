//! The command line's help and errors, as a user meets them: `--help` on the program and
//! on every command and subcommand, and errors that name the option that is wrong.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");

fn card(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Each command (with its subcommand, if any) and the options its help must list: the
/// command line of docs/interfaces.md and the README.
const COMMANDS: &[(&[&str], &[&str])] = &[
    (
        &["run"],
        &[
            "--data",
            "--ups",
            "--baud",
            "--rs485",
            "--modbus",
            "--set KEY=VALUE",
            "--network-script",
            "--reboot",
            "--system-clock",
            "--stall-limit",
            "--firmware",
            "--http",
            "--https",
            "--ssh",
            "--mac",
        ],
    ),
    (
        &["demo"],
        &[
            "--data",
            "--modbus",
            "--http",
            "--https",
            "--ssh",
            "--firmware",
        ],
    ),
    (&["simulate-ups"], &["PATH", "--baud", "--paced"]),
    (&["settings"], &["--data", "KEY=VALUE"]),
    (&["config", "export"], &["--data"]),
    (&["config", "import"], &["--data", "--dry-run", "FILE"]),
    (
        &["image", "build"],
        &[
            "--out",
            "--key",
            "--unsigned",
            "--binary",
            "--init",
            "--replaces",
        ],
    ),
    (&["image", "verify"], &["FILE", "--data", "--key"]),
    (
        &["image", "install"],
        &["--firmware", "--data", "--key", "FILE"],
    ),
    (
        &["upgrade"],
        &["--firmware", "--data", "--restart", "--no-restart", "FILE"],
    ),
    (&["firmware", "boot"], &["--firmware"]),
    (&["firmware", "rollback"], &["--firmware", "--reason"]),
    (&["console"], &["--data", "--tty"]),
    (&["cert", "client"], &["--data", "--role", "--out"]),
    (&["cert", "sign"], &["--data", "--role", "--out", "REQUEST"]),
    (&["cert", "revoke"], &["--data", "SERIAL"]),
    (
        &["find"],
        &["--json", "--wait", "--interface", "--mdns-port"],
    ),
];

#[test]
fn the_programs_help_lists_every_command_and_succeeds() {
    for help in [&["--help"][..], &["-h"], &["help"]] {
        let out = card(help);
        assert!(out.status.success(), "{help:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with("usage:"), "{text}");
        for (words, _) in COMMANDS {
            let line = format!("modbus-card {}", words.join(" "));
            assert!(
                text.contains(&line),
                "{help:?} does not show '{line}':\n{text}"
            );
        }
        assert!(text.contains("modbus-card --version"), "{text}");
    }
}

#[test]
fn every_command_and_subcommand_has_its_help() {
    for (words, options) in COMMANDS {
        let mut args = words.to_vec();
        args.push("--help");
        let out = card(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.starts_with("usage:"), "{args:?}:\n{text}");
        assert!(
            text.contains(&format!("modbus-card {}", words.join(" "))),
            "{args:?}:\n{text}"
        );
        for option in *options {
            assert!(
                text.contains(option),
                "{args:?} does not list {option}:\n{text}"
            );
        }
        // `help COMMAND` says the same as `COMMAND --help`.
        let out = card(&["help", words[0]]);
        assert!(out.status.success(), "help {}: {}", words[0], stderr(&out));
        assert!(stdout(&out).contains(&format!("modbus-card {}", words.join(" "))));
    }
    // A command with subcommands shows them all; one subcommand shows only its own.
    let image = stdout(&card(&["image", "--help"]));
    for sub in ["image build", "image verify", "image install"] {
        assert!(image.contains(sub), "{image}");
    }
    let build = stdout(&card(&["image", "build", "--help"]));
    assert!(!build.contains("image verify"), "{build}");
    let config = stdout(&card(&["config", "-h"]));
    assert!(config.contains("config export") && config.contains("config import"));
}

#[test]
fn help_does_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["settings", "--data"])
        .arg(&data)
        .args(["poll_rate_s=7", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!data.exists(), "settings --help made the data folder");
    let file = dir.path().join("new.img");
    let out = Command::new(BIN)
        .args(["image", "build", "--unsigned", "--help", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!file.exists(), "image build --help made an image");
}

#[test]
fn a_wrong_command_line_names_what_is_wrong() {
    let wrong: &[(&[&str], &str)] = &[
        // An option the command does not have.
        (
            &["run", "--data", "d", "--ups", "u", "--frobnicate"],
            "--frobnicate",
        ),
        (&["demo", "--ups", "/dev/null"], "--ups"),
        (&["settings", "--data", "d", "--dry-run"], "--dry-run"),
        (&["image", "verify", "x.img", "--out", "y"], "--out"),
        (
            &[
                "image",
                "build",
                "--out",
                "y",
                "--unsigned",
                "--firmware",
                "r",
            ],
            "--firmware",
        ),
        (
            &["config", "export", "--data", "d", "--dry-run"],
            "--dry-run",
        ),
        (
            &["firmware", "boot", "--firmware", "r", "--reason", "x"],
            "--reason",
        ),
        (&["console", "--baud", "9600"], "--baud"),
        // An option without its value.
        (&["run", "--ups", "u", "--data"], "--data"),
        (&["image", "verify", "x.img", "--key"], "--key"),
        // An option given twice.
        (
            &["run", "--data", "a", "--data", "b", "--ups", "u"],
            "--data",
        ),
        // A flag given a value.
        (&["simulate-ups", "--paced=yes"], "--paced"),
        // A command that does not exist.
        (&["frobnicate"], "frobnicate"),
        // A subcommand that does not exist.
        (&["image", "sign", "x.img"], "image takes build"),
    ];
    for (args, named) in wrong {
        let out = card(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.contains(named),
            "{args:?}: the error does not name {named}:\n{err}"
        );
        assert!(err.starts_with("error: "), "{args:?}:\n{err}");
    }
}
