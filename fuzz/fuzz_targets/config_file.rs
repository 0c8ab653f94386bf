//! The configuration file, as uploaded on the Configuration page or given to
//! `config import` (src/web/pages/config.rs and src/main.rs call `config_file::parse`, then
//! check the entries as one change: `config_file::changes`, `Live::preview`).
//! Property: a file the card accepts, applied to the factory settings and exported, reads
//! back to the same settings, and that export applied again changes nothing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::config_file;
use modbus_card::settings::{Key, Settings};

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = config_file::parse(data) else {
        return;
    };
    let base = Settings::default();
    let Ok(diffs) = config_file::changes(&base, &entries) else {
        return;
    };
    let pairs: Vec<(Key, &str)> = entries.iter().map(|e| (e.key, e.value.as_str())).collect();
    let (applied, again) = base.change(&pairs).expect("changes() accepted it");
    assert_eq!(diffs, again);

    let exported = config_file::export(&applied, "fuzz");
    let back = config_file::parse(exported.as_bytes()).expect("an export reads back");
    let pairs: Vec<(Key, &str)> = back.iter().map(|e| (e.key, e.value.as_str())).collect();
    let (reread, _) = base
        .change(&pairs)
        .expect("an export applies to the factory settings");
    assert_eq!(
        reread, applied,
        "the export does not read back to the same settings"
    );
    let none = config_file::changes(&applied, &back).expect("an export applies to itself");
    assert!(
        none.is_empty(),
        "an export changes its own settings: {none:?}"
    );
});
