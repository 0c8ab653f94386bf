//! The trusted signing keys: `keys::trusted`, which the firmware page and the upgrade call
//! on the data folder's trusted-keys/ (src/firmware/upgrade.rs), reading each file with
//! `keys::read_public`. The key files come with the card, but a card must not crash on a
//! damaged one: it must name it.
//! Properties: a file that is not a key is refused naming it; a key taken has minisign's
//! 16-hex-digit ID.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::firmware::keys;
use std::path::PathBuf;
use std::sync::OnceLock;

fn data() -> &'static (tempfile::TempDir, PathBuf) {
    static D: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    D.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(keys::TRUSTED_DIR).join("maker.pub");
        std::fs::create_dir_all(file.parent().unwrap()).expect("trusted-keys");
        (dir, file)
    })
}

fuzz_target!(|bytes: &[u8]| {
    let (dir, file) = data();
    std::fs::write(file, bytes).expect("write key");
    match keys::trusted(dir.path()) {
        Ok(found) => {
            assert_eq!(found.len(), 1);
            let k = &found[0];
            assert_eq!(k.name, "maker");
            assert!(
                k.id.len() == 16 && k.id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                k.id
            );
        }
        Err(e) => assert!(
            e.contains("maker.pub"),
            "a refusal that does not name the file: {e}"
        ),
    }
});
