//! Files the service writes whole: a power cut leaves the old one or the new one.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes a file readable by the owner only, atomically: a temporary file, flushed to
/// disk, then renamed over the old one. Keys of other services (the SSH host key) too.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Creates a folder (and its missing parents) whose name survives a power cut: the new
/// name is synced into the parent folder. `create_dir_all` alone leaves it in the page
/// cache, and files written and synced inside it would be lost with it. The parent is
/// synced even when the folder is already there: a start killed between the two left it
/// made but not synced.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs::File::open(parent)?.sync_all(),
        _ => fs::File::open(".")?.sync_all(),
    }
}

/// Renames within one folder, and syncs the folder: the new name is on disk on return.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fs::File::open(parent)?.sync_all(),
        _ => fs::File::open(".")?.sync_all(),
    }
}
