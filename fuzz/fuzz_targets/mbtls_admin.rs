//! What the administrator gives the Modbus/TCP Security page (src/web/pages/mbtls.rs) and
//! `modbus-card cert`: trusted CAs (`trust::add_cas`), a revocation list
//! (`trust::install_crl`), a serial number to revoke (`trust::set_revoked`), a role name
//! (`role::set`) and a master's certificate request (`pki::sign_csr`).
//! Input: one byte choosing which, then the upload or the text typed.
//! Properties: a refusal changes no file; a CA or list taken is trusted as uploaded; a
//! serial taken is revoked, then un-revoked; a role taken is in the table with its
//! rights; a request signed gives a certificate that carries the role asked for.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::tcp::mbtls::role::{self, Grant};
use modbus_card::tcp::mbtls::{pki, trust};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn data() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        (dir, data)
    })
    .1
}

fn file(name: &str) -> PathBuf {
    pki::dir(data()).join(name)
}

/// The file's bytes (None: absent), and a way to put them back.
fn snapshot(name: &str) -> Option<Vec<u8>> {
    std::fs::read(file(name)).ok()
}

fn restore(name: &str, was: &Option<Vec<u8>>) {
    match was {
        Some(bytes) => std::fs::write(file(name), bytes).expect("restore"),
        None => {
            let _ = std::fs::remove_file(file(name));
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&op, bytes)) = input.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    let data = data();
    match op % 5 {
        0 => {
            let was = snapshot(pki::CLIENTS_CA);
            match trust::add_cas(data, bytes, op & 0x80 != 0) {
                Err(errors) => {
                    assert!(!errors.is_empty(), "a refusal says why");
                    assert_eq!(
                        snapshot(pki::CLIENTS_CA),
                        was,
                        "a refused CA upload changed the file"
                    );
                }
                Ok(_) => {
                    let trusted = std::fs::read(file(pki::CLIENTS_CA)).expect("trusted file");
                    for der in CertificateDer::pem_slice_iter(bytes) {
                        let der = der.expect("taken, so readable");
                        let again: Vec<_> = CertificateDer::pem_slice_iter(&trusted)
                            .map(|d| d.expect("written readable"))
                            .collect();
                        assert!(again.contains(&der), "an uploaded CA is not trusted");
                    }
                    restore(pki::CLIENTS_CA, &was);
                }
            }
        }
        1 => {
            let was = snapshot(pki::CLIENTS_CRL);
            match trust::install_crl(data, bytes) {
                Err(errors) => {
                    assert!(!errors.is_empty(), "a refusal says why");
                    assert_eq!(
                        snapshot(pki::CLIENTS_CRL),
                        was,
                        "a refused list changed the file"
                    );
                }
                Ok(_) => restore(pki::CLIENTS_CRL, &was),
            }
        }
        2 => {
            let was = snapshot(trust::REVOKED);
            match trust::set_revoked(data, &text, true) {
                Err(_) => assert_eq!(
                    snapshot(trust::REVOKED),
                    was,
                    "a refused serial changed the file"
                ),
                Ok(serial) => {
                    assert!(
                        trust::revoked(data).contains(&serial),
                        "{serial} not revoked"
                    );
                    assert_eq!(trust::serial(&serial).as_deref(), Ok(serial.as_str()));
                    assert_eq!(
                        trust::set_revoked(data, &serial, false).as_deref(),
                        Ok(serial.as_str())
                    );
                    assert!(
                        !trust::revoked(data).contains(&serial),
                        "{serial} still revoked"
                    );
                }
            }
        }
        3 => {
            let was = snapshot(role::ROLES);
            match role::set(data, &text, Grant::Operate) {
                Err(_) => assert_eq!(
                    snapshot(role::ROLES),
                    was,
                    "a refused role changed the table"
                ),
                Ok(()) => {
                    assert_eq!(role::grant(data, &text), Grant::Operate);
                    role::set(data, &text, Grant::None).expect("taken once, taken again");
                    assert_eq!(role::grant(data, &text), Grant::None);
                    restore(role::ROLES, &was);
                }
            }
        }
        _ => {
            if let Ok((cert, _serial)) = pki::sign_csr(data, &text, "read") {
                let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("a certificate");
                assert_eq!(role::of(&der).role.as_deref(), Ok("read"));
            }
        }
    }
});
