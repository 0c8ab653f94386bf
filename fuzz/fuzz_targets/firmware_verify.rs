//! A whole uploaded firmware image: `image::verify`, which the upgrade calls on the file
//! the upload wrote (src/firmware/upgrade.rs), with the card's trusted keys.
//!
//! The first input byte picks how the rest is used: even, as the whole image (the
//! signature framing: header lengths, the signature block, untrusted keys); odd, as the
//! signed part, signed with a trusted key, so the manifest and contents checks behind the
//! signature are reached too.
//! Properties: verifying reads only: the image and its folder are left as they were,
//! whatever the verdict; a key refused as not trusted is named by its ID; an image signed
//! with a trusted key, its header's lengths true, is never refused for its signature.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::firmware::image::{self, Refusal};
use modbus_card::firmware::keys::{self, TrustedKey};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    secret: PathBuf,
    keys: Vec<TrustedKey>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let demo = keys::demo_pair(&data).expect("demo keys");
        let keys = keys::trusted(&data).expect("trusted keys");
        let work = dir.path().join("upload");
        std::fs::create_dir(&work).expect("upload dir");
        Fixture {
            work,
            secret: demo.secret,
            keys,
            _dir: dir,
        }
    })
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    all.sort();
    all
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let path = f.work.join("image");
    let signed = mode & 1 == 1;
    if signed {
        std::fs::write(&path, rest).expect("write body");
        let sig = keys::sign(&f.secret, &path, "fuzz").expect("sign");
        let mut image = rest.to_vec();
        image.extend_from_slice(sig.as_bytes());
        std::fs::write(&path, &image).expect("write image");
    } else {
        std::fs::write(&path, rest).expect("write image");
    }
    let before = listing(&f.work);
    let verdict = image::verify(&path, &f.keys);
    assert_eq!(listing(&f.work), before, "verify changed the upload folder");
    if let Err(Refusal::UntrustedKey { id, .. }) = &verdict {
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "key {id:?}"
        );
    }
    // Signed as the header says it is: the signature is where the header puts it.
    let whole = image::Header::decode(rest).is_ok_and(|h| h.body_len() == rest.len() as u64);
    if signed && whole {
        assert!(
            !matches!(
                verdict,
                Err(Refusal::BadSignature | Refusal::UntrustedKey { .. } | Refusal::NoTrustedKeys)
            ),
            "a trusted signature refused: {verdict:?}"
        );
    }
    std::fs::remove_file(&path).expect("clean up");
});
