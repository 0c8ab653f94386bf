//! Signing keys, in minisign's own file formats.
//!
//! The card trusts the public keys in its data folder, `DATA/trusted-keys/*.pub` (as
//! `minisign -G` writes them; installed with the card). Keys are named by minisign's key
//! ID, the 16 hex digits `minisign` prints, so a refusal names the key that signed.
//!
//! The maker's side (`image build`, the demo's key pair) uses the `minisign` crate, which
//! reads and writes the same secret key files as the minisign tool.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The folder of trusted keys, in the data folder.
pub const TRUSTED_DIR: &str = "trusted-keys";

/// A public key the card takes images from.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// Its file's name without `.pub`.
    pub name: String,
    /// minisign's key ID: 16 upper-case hex digits.
    pub id: String,
    pub key: minisign_verify::PublicKey,
}

/// The keys in `DATA/trusted-keys`. A file that is not a minisign public key is an error,
/// naming it: a card must not quietly trust fewer keys than its maker installed.
pub fn trusted(data: &Path) -> Result<Vec<TrustedKey>, String> {
    let dir = data.join(TRUSTED_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut keys = vec![];
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|x| x != "pub") {
            continue;
        }
        keys.push(read_public(&path)?);
    }
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(keys)
}

/// Reads one public key file.
pub fn read_public(path: &Path) -> Result<TrustedKey, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let bad = || format!("{} is not a minisign public key", path.display());
    let key = minisign_verify::PublicKey::decode(&text).map_err(|_| bad())?;
    let id = minisign::PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .map(|k| key_id(k.keynum()))
        .map_err(|_| bad())?;
    Ok(TrustedKey {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        id,
        key,
    })
}

/// The key ID a signature (a .minisig file's text) names.
pub fn key_id_of_signature(text: &str) -> Option<String> {
    let sig = minisign::SignatureBox::from_string(text).ok()?;
    Some(key_id(sig.keynum()))
}

/// minisign's way of showing a key number: the little-endian u64 in hex.
fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// Signs `body` with the secret key file at `secret` (minisign's format; a password is
/// asked on the terminal if the key has one). Returns the signature's text, as a
/// .minisig file holds it.
pub fn sign(secret: &Path, body: &Path, trusted_comment: &str) -> Result<String, String> {
    let text = fs::read_to_string(secret).map_err(|e| format!("{}: {e}", secret.display()))?;
    let boxed = minisign::SecretKeyBox::from_string(&text).map_err(|e| e.to_string())?;
    let sk = match boxed.clone().into_unencrypted_secret_key() {
        Ok(sk) => sk,
        Err(_) => match without_password(&text) {
            Some(sk) => sk,
            None => boxed
                .into_secret_key(None)
                .map_err(|e| format!("{}: {e}", secret.display()))?,
        },
    };
    let file = fs::File::open(body).map_err(|e| format!("{}: {e}", body.display()))?;
    let sig = minisign::sign(
        None,
        &sk,
        io::BufReader::new(file),
        Some(trusted_comment),
        Some("signature from modbus-card image build"),
    )
    .map_err(|e| format!("signing failed: {e}"))?;
    Ok(sig.into_string())
}

/// A secret key without a password as the minisign tool writes it (`minisign -G -W`):
/// the tool leaves its checksum empty, which the crate takes for a damaged key.
fn without_password(text: &str) -> Option<minisign::SecretKey> {
    let line = text.lines().nth(1)?;
    use ct_codecs::Decoder;
    let bytes = ct_codecs::Base64::decode_to_vec(line.trim(), None).ok()?;
    // Ed, then the key derivation: none.
    if bytes.get(..4)? != b"Ed\0\0" {
        return None;
    }
    minisign::SecretKey::from_bytes(&bytes).ok()
}

/// A key pair without a password, in minisign's files: for the demo and for tests.
/// Returns the secret and public key files' text.
pub fn generate_pair(comment: &str) -> Result<(String, String), String> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| e.to_string())?;
    let secret = pair
        .sk
        .to_box(Some(comment))
        .map_err(|e| e.to_string())?
        .into_string();
    let public = pair.pk.to_box().map_err(|e| e.to_string())?.into_string();
    Ok((secret, public))
}

/// Where the demo's key pair is: the secret key in the data folder (a demo's data, never
/// a card's), the public key among the trusted ones.
pub struct DemoKeys {
    pub secret: PathBuf,
    pub public: PathBuf,
}

/// Makes the demo's key pair once, and trusts its public key.
pub fn demo_pair(data: &Path) -> Result<DemoKeys, String> {
    let keys = DemoKeys {
        secret: data.join("demo-secret.key"),
        public: data.join(TRUSTED_DIR).join("demo.pub"),
    };
    if keys.secret.exists() && keys.public.exists() {
        return Ok(keys);
    }
    let (secret, public) = generate_pair("modbus-card demo signing key, no password")?;
    let write = |path: &Path, text: &str, mode: u32| -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)?;
        io::Write::write_all(&mut f, text.as_bytes())
    };
    write(&keys.secret, &secret, 0o600).map_err(|e| format!("{}: {e}", keys.secret.display()))?;
    write(&keys.public, &public, 0o644).map_err(|e| format!("{}: {e}", keys.public.display()))?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_signs_what_the_card_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = demo_pair(dir.path()).unwrap();
        let trusted = trusted(dir.path()).unwrap();
        assert_eq!(trusted.len(), 1);
        assert_eq!(trusted[0].name, "demo");
        let body = dir.path().join("body");
        fs::write(&body, b"some bytes").unwrap();
        let sig = sign(&keys.secret, &body, "test").unwrap();
        assert_eq!(key_id_of_signature(&sig).unwrap(), trusted[0].id);
        let sig = minisign_verify::Signature::decode(&sig).unwrap();
        trusted[0].key.verify(b"some bytes", &sig, false).unwrap();
        assert!(trusted[0].key.verify(b"other bytes", &sig, false).is_err());
        // Made once: a second call keeps the pair.
        let again = demo_pair(dir.path()).unwrap();
        assert_eq!(
            fs::read(again.public).unwrap(),
            fs::read(keys.public).unwrap()
        );
    }

    #[test]
    fn a_key_without_password_as_the_minisign_tool_writes_it_signs() {
        use ct_codecs::{Decoder, Encoder};
        let dir = tempfile::tempdir().unwrap();
        let keys = demo_pair(dir.path()).unwrap();
        // `minisign -G -W` leaves the checksum (the last 32 bytes) zero.
        let text = fs::read_to_string(&keys.secret).unwrap();
        let line = text.lines().nth(1).unwrap();
        let mut bytes = ct_codecs::Base64::decode_to_vec(line, None).unwrap();
        let n = bytes.len();
        bytes[n - 32..].fill(0);
        let line = ct_codecs::Base64::encode_to_string(&bytes).unwrap();
        let tool_key = dir.path().join("tool.key");
        fs::write(
            &tool_key,
            format!("untrusted comment: minisign encrypted secret key\n{line}\n"),
        )
        .unwrap();
        let body = dir.path().join("body");
        fs::write(&body, b"image").unwrap();
        let sig = sign(&tool_key, &body, "t").unwrap();
        let key = &trusted(dir.path()).unwrap()[0];
        key.key
            .verify(
                b"image",
                &minisign_verify::Signature::decode(&sig).unwrap(),
                false,
            )
            .unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join(TRUSTED_DIR)).unwrap();
        fs::write(dir.path().join(TRUSTED_DIR).join("junk.pub"), "hello").unwrap();
        let e = trusted(dir.path()).unwrap_err();
        assert!(e.contains("junk.pub is not a minisign public key"), "{e}");
        assert!(trusted(&dir.path().join("none")).unwrap().is_empty());
    }
}
