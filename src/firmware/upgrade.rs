//! One upgrade, from the upload's first byte to the new slot in place: what the
//! `/firmware` page and `modbus-card upgrade` both call.
//!
//! The body is streamed to a file in the install folder (`incoming`) within
//! [`MAX_IMAGE`], never held in memory; then checked whole (signature, manifest,
//! contents, the version rule) before anything changes; then written into the inactive
//! slot, and `current` switched to it. Whoever called it then restarts the service into
//! the new version, which runs on trial. A refusal changes nothing (the partial upload is
//! removed) and says why, in the event log too.

use super::image::{self, Abi, Machine, Refusal, Verified, HEADER_LEN, MAX_IMAGE};
use super::keys;
use super::slots::{self, Slots, Step, INCOMING};
use super::version::Version;
use crate::event::Event;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Where the events of an upgrade go: the service's event channel, or the store
/// directly from the command line.
pub type Log = Box<dyn Fn(Event) + Send + Sync>;

pub struct Upgrader {
    root: PathBuf,
    data: PathBuf,
    log: Log,
}

/// An image installed: the service restarts into it next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub version: Version,
    /// The version it replaces (the good one, kept for a rollback).
    pub previous: Version,
    pub slot: String,
}

impl Upgrader {
    /// `root`: the A/B install; `data`: the data folder, whose trusted keys are used.
    pub fn new(root: &Path, data: &Path, log: Log) -> Upgrader {
        Upgrader {
            root: root.to_owned(),
            data: data.to_owned(),
            log,
        }
    }

    /// The whole upgrade from `body` (`length` when the sender said it, as HTTP's
    /// Content-Length). `by` says who, for the event log; `progress` is told each step.
    pub fn upgrade(
        &self,
        body: &mut dyn Read,
        length: Option<u64>,
        by: &str,
        progress: &mut dyn FnMut(Step),
    ) -> Result<Installed, Refusal> {
        (self.log)(Event::FirmwareStarted { by: by.into() });
        let result = self.run(body, length, progress);
        (self.log)(match &result {
            Ok(i) => Event::FirmwareInstalled {
                version: i.version.to_string(),
                previous: i.previous.to_string(),
                slot: i.slot.clone(),
                by: by.into(),
            },
            Err(e) => Event::FirmwareRefused {
                reason: e.to_string(),
                by: by.into(),
            },
        });
        result
    }

    fn run(
        &self,
        body: &mut dyn Read,
        length: Option<u64>,
        progress: &mut dyn FnMut(Step),
    ) -> Result<Installed, Refusal> {
        if length.is_some_and(|l| l > MAX_IMAGE) {
            return Err(Refusal::TooLarge { limit: MAX_IMAGE });
        }
        let slots = Slots::open(&self.root).map_err(Refusal::Failed)?;
        let failed = |e: io::Error| Refusal::Failed(format!("{}: {e}", self.root.display()));
        let _lock = slots::lock(&self.root).map_err(failed)?.ok_or_else(|| {
            Refusal::Busy("another firmware upgrade is under way: wait for it to end".into())
        })?;
        let (current, good) = (
            slots.current().map_err(failed)?,
            slots.good().map_err(failed)?,
        );
        if current != good && slots.trial_started() {
            return Err(Refusal::Busy(format!(
                "version {} is on trial until it reports healthy: upgrade again after that",
                slots
                    .version(&current)
                    .map_or_else(|| "?".into(), |v| v.to_string())
            )));
        }
        let running = slots::running_version(&slots);
        let keys = keys::trusted(&self.data).map_err(Refusal::Failed)?;
        if keys.is_empty() {
            return Err(Refusal::NoTrustedKeys);
        }

        let spool_path = self.root.join(INCOMING);
        let spool = Spool::create(&spool_path).map_err(failed)?;
        let mut file = spool.receive(body, length, progress)?;
        progress(Step::Verifying);
        let verified = image::verify(&spool_path, &keys)?;
        check_rules(&verified, &running)?;
        let slot = slots
            .install(&mut file, &verified, progress)
            .map_err(|e| Refusal::Failed(format!("cannot write the new slot: {e}")))?;
        Ok(Installed {
            version: verified.manifest.version,
            previous: running,
            slot,
        })
    }
}

/// The version rule, and the machine and ABI the binary is for: its ELF machine, its ABI
/// flags (hard-float on 32-bit Arm) and its loader must be this card's.
fn check_rules(v: &Verified, running: &Version) -> Result<(), Refusal> {
    let m = &v.manifest;
    if m.version < *running {
        return Err(Refusal::Version(format!(
            "version {} is older than the {running} this card runs: a card does not go back \
             to an older version",
            m.version
        )));
    }
    if *running < m.replaces {
        return Err(Refusal::Version(format!(
            "version {} replaces versions from {} on, and this card runs {running}: install \
             a version in between first",
            m.version, m.replaces
        )));
    }
    let here = Machine::this().map_err(|e| Refusal::Failed(e.to_string()))?;
    if v.machine != here {
        return Err(Refusal::Contents(format!(
            "the program is built for {}, and this card is {here}",
            v.machine
        )));
    }
    let abi = Abi::this().map_err(|e| Refusal::Failed(e.to_string()))?;
    v.abi.fits(&abi, here).map_err(Refusal::Contents)?;
    if let Some(loader) = &v.abi.interpreter {
        if !Path::new(loader).exists() {
            return Err(Refusal::Contents(format!(
                "the program needs the loader {loader}, which this card does not have: build it \
                 for the card's C library, or static"
            )));
        }
    }
    Ok(())
}

/// The upload's file: removed when dropped, unless kept by [`Spool::receive`]'s caller.
struct Spool {
    path: PathBuf,
    file: Option<File>,
}

impl Spool {
    fn create(path: &Path) -> io::Result<Spool> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Spool {
            path: path.to_owned(),
            file: Some(file),
        })
    }

    /// Copies the body to disk, stopping at [`MAX_IMAGE`], and returns the file. A body
    /// that is not an image is refused from its header, without reading the rest.
    fn receive(
        mut self,
        body: &mut dyn Read,
        length: Option<u64>,
        progress: &mut dyn FnMut(Step),
    ) -> Result<SpoolFile, Refusal> {
        let file = self.file.as_mut().expect("open");
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0u64;
        let mut head = Vec::with_capacity(HEADER_LEN as usize);
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Refusal::Incomplete(format!("{e} after {bytes} bytes"))),
            };
            bytes += n as u64;
            if bytes > MAX_IMAGE {
                return Err(Refusal::TooLarge { limit: MAX_IMAGE });
            }
            if head.len() < HEADER_LEN as usize {
                let take = (HEADER_LEN as usize - head.len()).min(n);
                head.extend_from_slice(&buf[..take]);
                let magic = image::MAGIC.len().min(head.len());
                if head[..magic] != image::MAGIC[..magic] {
                    return Err(Refusal::NotAnImage);
                }
                if head.len() == HEADER_LEN as usize {
                    image::Header::decode(&head)?;
                }
            }
            file.write_all(&buf[..n])
                .map_err(|e| Refusal::Failed(format!("cannot store the upload: {e}")))?;
            progress(Step::Receiving { bytes });
        }
        if let Some(expected) = length {
            if bytes < expected {
                return Err(Refusal::Incomplete(format!(
                    "{bytes} of {expected} bytes arrived"
                )));
            }
        }
        file.sync_all()
            .map_err(|e| Refusal::Failed(format!("cannot store the upload: {e}")))?;
        Ok(SpoolFile(self))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        drop(self.file.take());
        let _ = fs::remove_file(&self.path);
    }
}

/// The received upload, removed when the upgrade ends whatever the outcome.
struct SpoolFile(Spool);

impl std::ops::Deref for SpoolFile {
    type Target = File;
    fn deref(&self) -> &File {
        self.0.file.as_ref().expect("open")
    }
}

impl std::ops::DerefMut for SpoolFile {
    fn deref_mut(&mut self) -> &mut File {
        self.0.file.as_mut().expect("open")
    }
}
