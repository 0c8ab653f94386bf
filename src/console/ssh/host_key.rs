//! The SSH host key: Ed25519, made on the first start and kept in the data folder (in
//! OpenSSH's format, readable by root only), so clients see the same card every time.

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{HashAlg, PrivateKey};
use std::path::{Path, PathBuf};

pub const FILE: &str = "ssh_host_ed25519_key";

pub fn path(data: &Path) -> PathBuf {
    data.join(FILE)
}

/// The card's host key, made and stored first if there is none yet.
pub fn load_or_make(data: &Path) -> Result<PrivateKey, String> {
    let path = path(data);
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| format!("the SSH host key {} cannot be read: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key =
                PrivateKey::from(Ed25519Keypair::from_seed(&crate::accounts::random_bytes::<
                    32,
                >()));
            store(&key, &path)
                .map_err(|e| format!("cannot store the SSH host key {}: {e}", path.display()))?;
            log::info!("made a new SSH host key in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(format!(
            "the SSH host key {} cannot be read: {e}",
            path.display()
        )),
    }
}

/// What `ssh` shows a user the first time: `SHA256:…`.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// Written whole under a temporary name, then renamed: a power cut leaves the old key or
/// the new one, never half a key.
fn store(key: &PrivateKey, path: &Path) -> std::io::Result<()> {
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    crate::files::write_private(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_make(dir.path()).unwrap();
        let again = load_or_make(dir.path()).unwrap();
        assert_eq!(fingerprint(&first), fingerprint(&again));
        assert!(fingerprint(&first).starts_with("SHA256:"));
        let mode = std::fs::metadata(path(dir.path())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        // A damaged key is an error, never silently replaced (clients would see a new card).
        std::fs::write(path(dir.path()), "garbage").unwrap();
        assert!(load_or_make(dir.path())
            .unwrap_err()
            .contains("cannot be read"));
    }
}
