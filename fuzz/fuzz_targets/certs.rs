//! An uploaded HTTPS certificate (with its chain), key and CA file: `Certs::install`, which
//! the Configuration page calls with the three uploaded files (src/web/pages/config.rs).
//! Input: the three files, separated by a 0 byte.
//! Properties: a refused upload says why and changes nothing (the certificate served, the
//! files in the folder); one taken is served (then reverted for the next input).
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::web::certs::{Certs, Names, Source};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    tls: PathBuf,
    certs: Certs,
    names: Names,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let names = Names::for_bind(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (certs, _) = Certs::open(dir.path(), &names).expect("the card's own certificates");
        Fixture {
            tls: dir.path().join("tls"),
            _dir: dir,
            certs,
            names,
        }
    })
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    all.sort();
    all
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let cert = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let ca = parts.next().unwrap_or_default();
    let f = fixture();
    let before = (f.certs.info(), listing(&f.tls));
    match f.certs.install(cert, key, ca, &f.names) {
        Ok(info) => {
            assert_eq!(info.source, Source::Uploaded);
            assert_eq!(f.certs.info(), info);
            f.certs.revert().expect("back to the card's own");
            assert_eq!(f.certs.info(), before.0);
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            assert!(errors.iter().all(|e| !e.trim().is_empty()));
            assert_eq!(
                (f.certs.info(), listing(&f.tls)),
                before,
                "a refused upload changed something"
            );
        }
    }
});
