//! Configuration files as cards have exported them, one written by hand, and broken ones,
//! imported with the command line as an operator imports them: each must give exactly
//! what it gave when it was recorded (tests/fixtures/config/NAME.out), the settings it
//! yields or the refusal with each problem at its line, whichever reader the card uses.
//!
//! `RECORD=1 cargo test --test suite config_fixtures::` writes the .out files instead of
//! comparing: only for a new fixture, never to make a changed answer pass.

use modbus_card::config_file;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");

/// What `config import` of `name` into a card of factory settings says, and then the
/// card's settings (`settings`) if it took the file.
fn import(name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let card = |args: &[&str]| {
        Command::new(BIN)
            .current_dir(FIXTURES)
            .env("RUST_LOG", "error")
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = card(&["config", "import", name]);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    if out.status.success() {
        let settings = card(&["settings"]);
        assert!(settings.status.success());
        format!(
            "accepted\n{}\n{}",
            text(&out.stdout),
            text(&settings.stdout)
        )
    } else {
        format!(
            "refused, exit status {:?}\n{}{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        )
    }
}

/// `got` without the settings listing's lines of keys added since `recorded` was made,
/// when they show their defaults: a file that predates a setting leaves it at its default,
/// which is all the card can do with it.
fn without_newer_defaults(got: &str, recorded: &str) -> String {
    let defaults = modbus_card::settings::Settings::default();
    let known = |key: &str| recorded.lines().any(|l| l.starts_with(&format!("{key}=")));
    got.lines()
        .filter(|line| {
            let Some((key, value)) = line.split_once('=') else {
                return true;
            };
            match modbus_card::settings::Key::named(key) {
                Some(k) => known(key) || defaults.get(k) != value,
                None => true,
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn every_fixture_imports_as_it_did_when_recorded() {
    let mut names: Vec<String> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    let record = std::env::var_os("RECORD").is_some();
    let mut differ = vec![];
    for name in &names {
        let got = import(name);
        let expected = Path::new(FIXTURES).join(name.replace(".toml", ".out"));
        if record {
            std::fs::write(&expected, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected)
            .unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        let got = without_newer_defaults(&got, &want);
        if got != want {
            differ.push(format!("{name}:\n--- recorded\n{want}--- now\n{got}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// The card's own reader and an independent TOML reader (the `toml` crate) read every
/// file the card accepts to the same keys and values.
#[test]
fn the_files_the_card_accepts_read_the_same_to_a_toml_reader() {
    for name in [
        "factory.toml",
        "changed.toml",
        "partial.toml",
        "together.toml",
    ] {
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap();
        let entries = config_file::parse(text.as_bytes()).unwrap();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(
            table.len(),
            entries.len() + 1,
            "{name}: format and each entry"
        );
        assert_eq!(table["format"].as_integer(), Some(config_file::FORMAT));
        for e in &entries {
            let theirs = match &table[e.key.name()] {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => panic!("{name}: {} = {other:?}", e.key),
            };
            assert_eq!(theirs, e.value, "{name}: {}", e.key);
        }
    }
}
