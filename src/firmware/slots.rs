//! The A/B install on the card, and the trial's state: a few names in one folder
//! (`--firmware`, `/opt/modbus-card` on the card), each changed by one atomic rename.
//!
//! ```text
//! a/, b/        the slots: modbus-card, modbus-card.init, manifest (the image's)
//! current -> b  the slot that starts
//! good -> a     the last slot that proved healthy; its init script is in charge
//!               (/etc/init.d/modbus-card -> good/modbus-card.init)
//! trial         present once a trial start was made: slot, version, when
//! rolled-back   why the last trial was undone, until the next service logs it
//! incoming      an upload being received (removed when done, refused or not)
//! ```
//!
//! `current == good` is the normal state. An install writes the slot that is not `good`
//! (switching `current` away from it first), then points `current` at it: a trial is
//! pending. The next start (see [`Slots::boot`]) writes `trial` and starts it; the new
//! version confirms itself once healthy (`good` follows `current`, `trial` goes). A start
//! that finds `trial` still there means the trial version never confirmed (it crashed,
//! hung until the init script's watch gave up, or the board was reset): `current` goes
//! back to `good`, and why is kept in `rolled-back`. The data folder is shared by both
//! slots and is never touched here.

use super::image::{self, Manifest, Verified};
use super::version::{self, Version};
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const SLOTS: [&str; 2] = ["a", "b"];
pub const CURRENT: &str = "current";
pub const GOOD: &str = "good";
pub const TRIAL: &str = "trial";
pub const ROLLED_BACK: &str = "rolled-back";
pub const INCOMING: &str = "incoming";
pub const MANIFEST: &str = "manifest";

/// What an install is doing, for a progress display (and for tests that stop it at each
/// step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The upload so far.
    Receiving { bytes: u64 },
    /// Checking signature, manifest and contents.
    Verifying,
    /// Writing the files into the inactive slot.
    Writing { done: u64, total: u64 },
    /// Putting the written slot in place of the old one.
    Replacing,
    /// Pointing `current` at the new slot.
    Switching,
}

/// What a start runs, as decided by [`Slots::boot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    Normal(String),
    /// A new version's first start, on trial.
    Trial(String),
    /// The trial version never confirmed: back on the good slot.
    RolledBack(String),
}

/// A rollback, as kept for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub from: String,
    pub to: String,
    pub reason: String,
}

pub struct Slots {
    root: PathBuf,
}

impl Slots {
    /// An A/B install: `current` and `good` must name slots.
    pub fn open(root: &Path) -> Result<Slots, String> {
        let slots = Slots {
            root: root.to_owned(),
        };
        for link in [CURRENT, GOOD] {
            slots.link(link).map_err(|e| {
                format!(
                    "{} is not an A/B install of modbus-card ({link}: {e})",
                    root.display()
                )
            })?;
        }
        Ok(slots)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The slot a link points at.
    pub fn link(&self, name: &str) -> io::Result<String> {
        let target = fs::read_link(self.root.join(name))?;
        let slot = target.to_string_lossy().into_owned();
        if SLOTS.contains(&slot.as_str()) {
            Ok(slot)
        } else {
            Err(io::Error::other(format!("points at '{slot}', not a slot")))
        }
    }

    pub fn current(&self) -> io::Result<String> {
        self.link(CURRENT)
    }

    pub fn good(&self) -> io::Result<String> {
        self.link(GOOD)
    }

    pub fn dir(&self, slot: &str) -> PathBuf {
        self.root.join(slot)
    }

    /// The version a slot holds, from its manifest.
    pub fn version(&self, slot: &str) -> Option<Version> {
        let text = fs::read(self.dir(slot).join(MANIFEST)).ok()?;
        Some(Manifest::decode(&text).ok()?.version)
    }

    fn version_text(&self, slot: &str) -> String {
        self.version(slot)
            .map_or_else(|| format!("slot {slot}"), |v| v.to_string())
    }

    /// The slot this very program runs from, if it is one of them.
    pub fn running_slot(&self) -> Option<String> {
        let me = fs::canonicalize("/proc/self/exe").ok()?;
        SLOTS
            .iter()
            .find(|s| fs::canonicalize(self.dir(s).join(image::BINARY)).ok() == Some(me.clone()))
            .map(|s| s.to_string())
    }

    /// Whether a trial start was made and not yet confirmed.
    pub fn trial_started(&self) -> bool {
        self.root.join(TRIAL).exists()
    }

    /// Decides what a start runs; run by the good slot's init script before it starts
    /// anything. A pending trial is marked started; a trial found started is undone.
    pub fn boot(&self) -> io::Result<Boot> {
        if let Some(_lock) = lock(&self.root)? {
            self.clean_leftovers();
            let _ = fs::remove_file(self.root.join(INCOMING));
        }
        let (current, good) = (self.current()?, self.good()?);
        if current == good {
            remove_if_there(&self.root.join(TRIAL))?;
            return Ok(Boot::Normal(current));
        }
        if self.trial_started() {
            let reason = format!(
                "version {} started on trial and the card started again before it reported \
                 healthy (a crash, a watchdog reset or a power cut)",
                self.version_text(&current)
            );
            self.rollback(&reason)?;
            return Ok(Boot::RolledBack(good));
        }
        if !complete(&self.dir(&current)) {
            self.rollback(&format!("slot {current} is incomplete"))?;
            return Ok(Boot::RolledBack(good));
        }
        self.begin_trial()?;
        Ok(Boot::Trial(current))
    }

    /// Marks the pending trial as started: the next start without a confirmation in
    /// between rolls it back.
    pub fn begin_trial(&self) -> io::Result<()> {
        let current = self.current()?;
        let text = format!(
            "slot={current}\nversion={}\nstarted={}\n",
            self.version_text(&current),
            unix_now()
        );
        write_atomic(&self.root, TRIAL, text.as_bytes())
    }

    /// Back to the good slot, keeping why for the event log. Nothing to do when no trial
    /// is pending.
    pub fn rollback(&self, reason: &str) -> io::Result<Option<RolledBack>> {
        let (current, good) = (self.current()?, self.good()?);
        if current == good {
            remove_if_there(&self.root.join(TRIAL))?;
            return Ok(None);
        }
        let record = RolledBack {
            from: self.version_text(&current),
            to: self.version_text(&good),
            reason: reason.replace('\n', " "),
        };
        let text = format!(
            "from={}\nto={}\nreason={}\n",
            record.from, record.to, record.reason
        );
        write_atomic(&self.root, ROLLED_BACK, text.as_bytes())?;
        self.switch(CURRENT, &good)?;
        remove_if_there(&self.root.join(TRIAL))?;
        sync_dir(&self.root)?;
        Ok(Some(record))
    }

    /// The trial version proved healthy: it is the good one now.
    pub fn confirm(&self) -> io::Result<()> {
        let current = self.current()?;
        self.switch(GOOD, &current)?;
        remove_if_there(&self.root.join(TRIAL))?;
        sync_dir(&self.root)
    }

    /// The last rollback not yet logged; removed once read.
    pub fn take_rolled_back(&self) -> Option<RolledBack> {
        let path = self.root.join(ROLLED_BACK);
        let text = fs::read_to_string(&path).ok()?;
        let _ = fs::remove_file(&path);
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("?")
                .to_owned()
        };
        Some(RolledBack {
            from: field("from"),
            to: field("to"),
            reason: field("reason"),
        })
    }

    /// Points a link at a slot: a new link renamed over the old one, so it is always one
    /// or the other, even across a power cut.
    pub fn switch(&self, link: &str, slot: &str) -> io::Result<()> {
        let tmp = self.root.join(format!(".{link}.new"));
        remove_if_there(&tmp)?;
        symlink(slot, &tmp)?;
        fs::rename(&tmp, self.root.join(link))?;
        sync_dir(&self.root)
    }

    /// The slot an install writes: the one that is not good.
    pub fn inactive(&self) -> io::Result<String> {
        let good = self.good()?;
        Ok(SLOTS.iter().find(|s| **s != good).unwrap().to_string())
    }

    /// Writes a verified image (the file `spool`) into the inactive slot and points
    /// `current` at it. At every moment `current` names a complete slot: a power cut or a
    /// kill leaves either the old state or the new one.
    pub fn install(
        &self,
        spool: &mut File,
        verified: &Verified,
        progress: &mut dyn FnMut(Step),
    ) -> io::Result<String> {
        let slot = self.inactive()?;
        self.clean_leftovers();
        if self.current()? == slot {
            // An install that was never started: nothing may point at the slot rewritten.
            self.switch(CURRENT, &self.good()?)?;
        }
        let new = self.root.join(format!(".{slot}.new"));
        write_slot(&new, spool, verified, progress)?;
        progress(Step::Replacing);
        let dir = self.dir(&slot);
        let old = self.root.join(format!(".{slot}.old"));
        if dir.exists() {
            fs::rename(&dir, &old)?;
        }
        fs::rename(&new, &dir)?;
        sync_dir(&self.root)?;
        let _ = fs::remove_dir_all(&old);
        progress(Step::Switching);
        self.switch(CURRENT, &slot)?;
        Ok(slot)
    }

    /// Removes what an interrupted install left behind.
    fn clean_leftovers(&self) {
        for slot in SLOTS {
            for tmp in [format!(".{slot}.new"), format!(".{slot}.old")] {
                let _ = fs::remove_dir_all(self.root.join(tmp));
            }
        }
    }

    /// The first install of a card (the factory's): a verified image into slot `a`,
    /// both links on it. Only into a folder with no install yet.
    pub fn first_install(
        root: &Path,
        spool: &mut File,
        verified: &Verified,
    ) -> Result<Slots, String> {
        if root.join(CURRENT).symlink_metadata().is_ok()
            || root.join(GOOD).symlink_metadata().is_ok()
        {
            return Err(format!(
                "{} already holds an install: upgrade it instead",
                root.display()
            ));
        }
        let at = |e: io::Error| format!("{}: {e}", root.display());
        fs::create_dir_all(root).map_err(at)?;
        let slots = Slots {
            root: root.to_owned(),
        };
        write_slot(&root.join(".a.new"), spool, verified, &mut |_| {}).map_err(at)?;
        fs::rename(root.join(".a.new"), root.join("a")).map_err(at)?;
        slots.switch(GOOD, "a").map_err(at)?;
        slots.switch(CURRENT, "a").map_err(at)?;
        Ok(slots)
    }
}

/// Writes the image's files and manifest into a new folder, each synced.
fn write_slot(
    dir: &Path,
    spool: &mut File,
    verified: &Verified,
    progress: &mut dyn FnMut(Step),
) -> io::Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let layout = verified.manifest.layout(&verified.header);
    let total: u64 = layout.iter().map(|(_, _, len)| len).sum();
    let mut done = 0;
    for (name, at, len) in layout {
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(dir.join(name))?;
        spool.seek(SeekFrom::Start(at))?;
        image::copy_range(spool, len, |chunk| {
            out.write_all(chunk)?;
            done += chunk.len() as u64;
            progress(Step::Writing { done, total });
            Ok(())
        })?;
        out.sync_all()?;
    }
    let mut manifest = File::create(dir.join(MANIFEST))?;
    manifest.write_all(verified.manifest.encode().as_bytes())?;
    manifest.sync_all()?;
    sync_dir(dir)
}

/// A slot with all its files.
fn complete(dir: &Path) -> bool {
    image::FILES
        .iter()
        .chain(&[MANIFEST])
        .all(|f| dir.join(f).is_file())
}

/// Writes a small file whole or not at all.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.new"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A rename or a new name is on disk once its folder is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The version the card runs: the good slot's, else this build's.
pub fn running_version(slots: &Slots) -> Version {
    slots
        .good()
        .ok()
        .and_then(|g| slots.version(&g))
        .unwrap_or_else(|| Version::parse(version::current()).expect("this build's version"))
}

/// Takes the folder for one install at a time (a lock on the folder itself, so nothing
/// is left behind); `None` when another holds it.
pub fn lock(root: &Path) -> io::Result<Option<nix::fcntl::Flock<File>>> {
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)?;
    match nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_slot(root: &Path, slot: &str, version: &str) {
        let dir = root.join(slot);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(image::BINARY), "bin").unwrap();
        fs::write(dir.join(image::INIT_SCRIPT), "#!/bin/sh\n").unwrap();
        fs::write(
            dir.join(MANIFEST),
            format!(
                "version={version}\nreplaces=0.0.0\nfile=modbus-card 3\nfile=modbus-card.init 10\n"
            ),
        )
        .unwrap();
    }

    fn card() -> (tempfile::TempDir, Slots) {
        let dir = tempfile::tempdir().unwrap();
        fake_slot(dir.path(), "a", "1.0.0");
        fake_slot(dir.path(), "b", "1.1.0");
        let s = Slots {
            root: dir.path().to_owned(),
        };
        s.switch(GOOD, "a").unwrap();
        s.switch(CURRENT, "a").unwrap();
        let s = Slots::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn a_trial_starts_once_and_is_rolled_back_at_the_next_start() {
        let (_dir, s) = card();
        assert_eq!(s.boot().unwrap(), Boot::Normal("a".into()));
        s.switch(CURRENT, "b").unwrap();
        assert_eq!(s.boot().unwrap(), Boot::Trial("b".into()));
        assert!(s.trial_started());
        // Started again without a confirmation: back to a.
        assert_eq!(s.boot().unwrap(), Boot::RolledBack("a".into()));
        assert_eq!(s.current().unwrap(), "a");
        assert!(!s.trial_started());
        let r = s.take_rolled_back().unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str()), ("1.1.0", "1.0.0"));
        assert!(
            r.reason
                .contains("started again before it reported healthy"),
            "{r:?}"
        );
        assert_eq!(s.take_rolled_back(), None, "logged once");
        assert_eq!(s.boot().unwrap(), Boot::Normal("a".into()));
    }

    #[test]
    fn a_confirmed_trial_becomes_the_good_slot() {
        let (_dir, s) = card();
        s.switch(CURRENT, "b").unwrap();
        assert_eq!(s.boot().unwrap(), Boot::Trial("b".into()));
        s.confirm().unwrap();
        assert_eq!(
            (s.current().unwrap(), s.good().unwrap()),
            ("b".into(), "b".into())
        );
        assert_eq!(s.boot().unwrap(), Boot::Normal("b".into()));
        assert_eq!(s.inactive().unwrap(), "a");
        assert_eq!(s.rollback("nothing to undo").unwrap(), None);
    }

    #[test]
    fn an_incomplete_slot_is_never_started() {
        let (dir, s) = card();
        fs::remove_file(dir.path().join("b").join(image::BINARY)).unwrap();
        s.switch(CURRENT, "b").unwrap();
        assert_eq!(s.boot().unwrap(), Boot::RolledBack("a".into()));
        assert!(s.take_rolled_back().unwrap().reason.contains("incomplete"));
    }
}
