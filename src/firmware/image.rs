//! The firmware image: one file with everything a version of the service needs.
//!
//! ```text
//! header    32 bytes, little-endian
//!             0  8  magic "MBCARDFW"
//!             8  4  format, 1
//!            12  4  manifest length (at most 4 KiB)
//!            16  8  payload length
//!            24  8  zero
//! manifest  UTF-8 lines KEY=VALUE, in this order:
//!             version=0.2.0             the version of the binary (its stamp must agree)
//!             replaces=0.1.0            the oldest version this one may replace
//!             file=modbus-card 2653552  then each file: name and length, in payload order
//!             file=modbus-card.init 6144
//! payload   the files' bytes, one after the other
//! signature the minisign signature of all of the above (the 4 lines of a .minisig file)
//! ```
//!
//! The signed part (header, manifest, payload) is exactly what `minisign -S` signs, so an
//! image can be made by hand: `modbus-card image build --unsigned --out body`, then
//! `minisign -Sm body` and `cat body body.minisig > image`. The signature is prehashed
//! (BLAKE2b, minisign's default), so the card checks it while reading the file from disk
//! in small pieces. The whole image is at most [`MAX_IMAGE`] bytes.
//!
//! Nothing in the manifest is believed before the signature is checked; the header's
//! lengths only say where the signature starts.

use super::keys::{key_id_of_signature, TrustedKey};
use super::version::{self, Version};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"MBCARDFW";
pub const FORMAT: u32 = 1;
pub const HEADER_LEN: u64 = 32;
pub const MAX_MANIFEST: u32 = 4096;
/// The largest signature block taken (a .minisig file is about 300 bytes).
pub const MAX_SIGNATURE: u64 = 2048;
/// The largest image the card takes: several times today's release (2.6 MB), far below
/// what its flash holds for two slots.
pub const MAX_IMAGE: u64 = 16 * 1024 * 1024;

/// The files of an image, by name, in payload order.
pub const BINARY: &str = "modbus-card";
pub const INIT_SCRIPT: &str = "modbus-card.init";
pub const FILES: [&str; 2] = [BINARY, INIT_SCRIPT];

/// Why an image is not taken. Each says what is wrong in words for the person who
/// uploaded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAnImage,
    UnknownFormat(u32),
    TooLarge {
        limit: u64,
    },
    Truncated,
    Damaged(String),
    /// Signed with a key the card does not trust.
    UntrustedKey {
        id: String,
        trusted: Vec<String>,
    },
    NoTrustedKeys,
    BadSignature,
    Contents(String),
    /// The version rule: older than the running version, or not allowed to replace it.
    Version(String),
    /// The card cannot take an upgrade now (a trial under way, another upgrade).
    Busy(String),
    /// The upload did not arrive whole.
    Incomplete(String),
    /// The card could not store it (disk full): nothing was changed.
    Failed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAnImage => write!(f, "not a firmware image of this card"),
            Refusal::UnknownFormat(n) => write!(
                f,
                "image format {n} is newer than this firmware reads (format {FORMAT}): \
                 install the version that reads it first"
            ),
            Refusal::TooLarge { limit } => {
                write!(f, "larger than the {} MiB an image may be", limit >> 20)
            }
            Refusal::Truncated => write!(
                f,
                "the image is incomplete (cut short): download or copy it again"
            ),
            Refusal::Damaged(what) => write!(f, "the image is damaged: {what}"),
            Refusal::UntrustedKey { id, trusted } => write!(
                f,
                "signed with key {id}, which this card does not trust (trusted: {})",
                if trusted.is_empty() {
                    "none".to_string()
                } else {
                    trusted.join(", ")
                }
            ),
            Refusal::NoTrustedKeys => write!(
                f,
                "this card trusts no signing key (its data folder's trusted-keys is empty), \
                 so it takes no image"
            ),
            Refusal::BadSignature => write!(
                f,
                "the signature does not match the contents: the image was changed after it \
                 was signed, or damaged"
            ),
            Refusal::Contents(what) => write!(f, "the image's contents are wrong: {what}"),
            Refusal::Version(what) => write!(f, "{what}"),
            Refusal::Busy(what) => write!(f, "{what}"),
            Refusal::Incomplete(what) => write!(f, "the upload did not arrive whole: {what}"),
            Refusal::Failed(what) => write!(f, "{what}; nothing was changed"),
        }
    }
}

/// The header: where the parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub manifest_len: u32,
    pub payload_len: u64,
}

impl Header {
    /// The signed part's length: header, manifest, payload.
    pub fn body_len(&self) -> u64 {
        HEADER_LEN + u64::from(self.manifest_len) + self.payload_len
    }

    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        h[12..16].copy_from_slice(&self.manifest_len.to_le_bytes());
        h[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        h
    }

    /// Reads the first [`HEADER_LEN`] bytes; checks what can be checked before the
    /// signature (the form, and that the lengths fit in an image).
    pub fn decode(h: &[u8]) -> Result<Header, Refusal> {
        if h.len() < HEADER_LEN as usize || &h[..8] != MAGIC {
            return Err(Refusal::NotAnImage);
        }
        let word = |r: std::ops::Range<usize>| u64::from_le_bytes(pad8(&h[r]));
        let format = word(8..12) as u32;
        if format != FORMAT {
            return Err(Refusal::UnknownFormat(format));
        }
        if h[24..32].iter().any(|&b| b != 0) {
            return Err(Refusal::Damaged(
                "the header's reserved bytes are not zero".into(),
            ));
        }
        let header = Header {
            manifest_len: word(12..16) as u32,
            payload_len: word(16..24),
        };
        if header.manifest_len == 0 || header.manifest_len > MAX_MANIFEST {
            return Err(Refusal::Damaged(
                "the manifest's length is impossible".into(),
            ));
        }
        if header.payload_len > MAX_IMAGE {
            return Err(Refusal::TooLarge { limit: MAX_IMAGE });
        }
        Ok(header)
    }
}

fn pad8(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..b.len()].copy_from_slice(b);
    out
}

/// What the manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: Version,
    /// The oldest version this one may replace.
    pub replaces: Version,
    /// Name and length, in payload order.
    pub files: Vec<(String, u64)>,
}

impl Manifest {
    pub fn encode(&self) -> String {
        let mut s = format!("version={}\nreplaces={}\n", self.version, self.replaces);
        for (name, len) in &self.files {
            s.push_str(&format!("file={name} {len}\n"));
        }
        s
    }

    /// Reads a manifest: the form of [`Manifest::encode`], nothing else.
    pub fn decode(text: &[u8]) -> Result<Manifest, String> {
        let text = std::str::from_utf8(text).map_err(|_| "the manifest is not text")?;
        let mut version = None;
        let mut replaces = None;
        let mut files = vec![];
        for line in text.lines() {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("manifest line '{line}' is not KEY=VALUE"))?;
            let parse = |v: &str| {
                Version::parse(v).ok_or_else(|| format!("'{v}' in the manifest is not a version"))
            };
            match key {
                "version" if version.is_none() => version = Some(parse(value)?),
                "replaces" if replaces.is_none() => replaces = Some(parse(value)?),
                "file" => {
                    let (name, len) = value
                        .split_once(' ')
                        .and_then(|(n, l)| Some((n, l.parse::<u64>().ok()?)))
                        .ok_or_else(|| format!("manifest line '{line}' is not file=NAME LENGTH"))?;
                    files.push((name.to_owned(), len));
                }
                _ => return Err(format!("manifest line '{line}' is not expected here")),
            }
        }
        Ok(Manifest {
            version: version.ok_or("the manifest has no version")?,
            replaces: replaces.ok_or("the manifest has no replaces")?,
            files,
        })
    }

    /// Where each file is in the image: (name, offset, length).
    pub fn layout(&self, header: &Header) -> Vec<(&str, u64, u64)> {
        let mut at = HEADER_LEN + u64::from(header.manifest_len);
        self.files
            .iter()
            .map(|(name, len)| {
                let item = (name.as_str(), at, *len);
                at += len;
                item
            })
            .collect()
    }
}

/// An image whose signature, manifest and contents have been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Header,
    pub manifest: Manifest,
    /// The key that signed it (its file name in trusted-keys, and its ID).
    pub signed_by: String,
    /// The signature's trusted comment (when and what the maker signed).
    pub signed_comment: String,
    /// ELF class, byte order and machine of the binary.
    pub machine: Machine,
    /// Its ABI flags and dynamic loader.
    pub abi: Abi,
}

/// Reads the whole image file at `path` and checks it: form, signature with one of
/// `keys`, manifest, and contents. Reads in pieces: the image is never whole in memory.
pub fn verify(path: &Path, keys: &[TrustedKey]) -> Result<Verified, Refusal> {
    let mut file = File::open(path).map_err(|e| Refusal::Failed(format!("cannot read it: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Refusal::Failed(e.to_string()))?
        .len();
    if size > MAX_IMAGE {
        return Err(Refusal::TooLarge { limit: MAX_IMAGE });
    }
    let mut head = vec![0u8; size.min(HEADER_LEN) as usize];
    read_at(&mut file, 0, &mut head).map_err(|e| Refusal::Failed(e.to_string()))?;
    if head.len() < MAGIC.len() || head[..MAGIC.len()] != MAGIC[..] {
        return Err(Refusal::NotAnImage);
    }
    if head.len() < HEADER_LEN as usize {
        return Err(Refusal::Truncated);
    }
    let header = Header::decode(&head)?;
    let body = header.body_len();
    if size <= body {
        return Err(Refusal::Truncated);
    }
    if size - body > MAX_SIGNATURE {
        return Err(Refusal::Damaged(format!(
            "{} bytes after the signed part, where only a signature belongs",
            size - body
        )));
    }
    let mut sig_text = vec![0u8; (size - body) as usize];
    read_at(&mut file, body, &mut sig_text).map_err(|e| Refusal::Failed(e.to_string()))?;
    let sig_text = String::from_utf8(sig_text)
        .map_err(|_| Refusal::Damaged("the signature block is not text".into()))?;
    let signature = minisign_verify::Signature::decode(&sig_text).map_err(|_| {
        // A signature block ends with its fourth line's newline: without it, the file
        // was cut short.
        if sig_text.lines().count() < 4 || !sig_text.ends_with('\n') {
            Refusal::Truncated
        } else {
            Refusal::Damaged("the signature block is not a minisign signature".into())
        }
    })?;
    if keys.is_empty() {
        return Err(Refusal::NoTrustedKeys);
    }
    // The other reader of the block (minisign's own) also checks its first line: a block
    // it cannot read is damaged, not signed by an unknown key.
    let id = key_id_of_signature(&sig_text).ok_or_else(|| {
        Refusal::Damaged("the signature block is not a minisign signature".into())
    })?;
    let key = keys
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| Refusal::UntrustedKey {
            id: id.clone(),
            trusted: keys.iter().map(|k| k.id.clone()).collect(),
        })?;
    let mut verifier = key.key.verify_stream(&signature).map_err(|e| match e {
        minisign_verify::Error::UnsupportedLegacyMode => Refusal::Damaged(
            "the signature is not prehashed (sign with minisign 0.11 or later, without -l)".into(),
        ),
        _ => Refusal::BadSignature,
    })?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Refusal::Failed(e.to_string()))?;
    copy_range(&mut file, body, |chunk| {
        verifier.update(chunk);
        Ok(())
    })
    .map_err(|e| Refusal::Failed(format!("cannot read it: {e}")))?;
    verifier.finalize().map_err(|_| Refusal::BadSignature)?;

    // Signed: now the manifest can be believed.
    let mut text = vec![0u8; header.manifest_len as usize];
    read_at(&mut file, HEADER_LEN, &mut text).map_err(|e| Refusal::Failed(e.to_string()))?;
    let manifest = Manifest::decode(&text).map_err(Refusal::Contents)?;
    let (machine, abi) = check_contents(&mut file, &header, &manifest)?;
    Ok(Verified {
        header,
        manifest,
        signed_by: format!("{} ({})", key.name, key.id),
        signed_comment: signature.trusted_comment().to_owned(),
        machine,
        abi,
    })
}

/// The files are the expected ones, their lengths fill the payload, the binary is an
/// executable of the version the manifest says with whole ELF headers, the init script is a
/// shell script.
fn check_contents(
    file: &mut File,
    header: &Header,
    m: &Manifest,
) -> Result<(Machine, Abi), Refusal> {
    let names: Vec<&str> = m.files.iter().map(|(n, _)| n.as_str()).collect();
    if names != FILES {
        return Err(Refusal::Contents(format!(
            "it holds {names:?}; an image holds {FILES:?}"
        )));
    }
    // Checked: lengths are any u64 the manifest says, and their sum may not fit.
    let total = m.files.iter().try_fold(0u64, |t, (_, l)| t.checked_add(*l));
    if total != Some(header.payload_len) {
        return Err(Refusal::Contents(
            "the files' lengths do not add up to the payload".into(),
        ));
    }
    if m.replaces > m.version {
        return Err(Refusal::Contents(format!(
            "version {} says it replaces versions from {} on, a later one",
            m.version, m.replaces
        )));
    }
    let layout = m.layout(header);
    let (_, bin_at, bin_len) = layout[0];
    let mut elf = [0u8; 20];
    if bin_len < elf.len() as u64 {
        return Err(Refusal::Contents(format!("{BINARY} is not a program")));
    }
    read_at(file, bin_at, &mut elf).map_err(|e| Refusal::Failed(e.to_string()))?;
    let machine = Machine::of_elf(&elf)
        .ok_or_else(|| Refusal::Contents(format!("{BINARY} is not a Linux program (ELF)")))?;
    let abi = Abi::read(file, bin_at, bin_len, machine)
        .map_err(|e| Refusal::Contents(format!("{BINARY} is not a whole program: {e}")))?;
    let stamped = stamped_in_range(file, bin_at, bin_len)
        .map_err(|e| Refusal::Failed(e.to_string()))?
        .ok_or_else(|| {
            Refusal::Contents(format!(
                "{BINARY} is not a build of this service (no version stamp)"
            ))
        })?;
    if stamped != m.version.to_string() {
        return Err(Refusal::Contents(format!(
            "the manifest says version {} but {BINARY} is version {stamped}",
            m.version
        )));
    }
    let (_, init_at, init_len) = layout[1];
    let mut first = vec![0u8; init_len.min(128) as usize];
    read_at(file, init_at, &mut first).map_err(|e| Refusal::Failed(e.to_string()))?;
    let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
    if !(line.starts_with(b"#!") && line.ends_with(b"sh")) {
        return Err(Refusal::Contents(format!(
            "{INIT_SCRIPT} is not a shell script (#!/bin/sh)"
        )));
    }
    Ok((machine, abi))
}

/// The version stamp inside `len` bytes at `at`, read in pieces that overlap by a stamp.
fn stamped_in_range(file: &mut File, at: u64, len: u64) -> io::Result<Option<String>> {
    const CHUNK: usize = 64 * 1024;
    const OVERLAP: usize = 64;
    file.seek(SeekFrom::Start(at))?;
    let mut found: Option<String> = None;
    let mut buf = Vec::with_capacity(CHUNK + OVERLAP);
    let mut left = len;
    let mut chunk = vec![0u8; CHUNK];
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        file.read_exact(&mut chunk[..n])?;
        left -= n as u64;
        buf.extend_from_slice(&chunk[..n]);
        if let Some(v) = version::stamped_in(&buf) {
            match &found {
                Some(f) if *f != v => return Ok(None),
                _ => found = Some(v),
            }
        }
        let keep = buf.len().saturating_sub(OVERLAP);
        buf.drain(..keep);
    }
    Ok(found)
}

/// ELF class, byte order and machine: what a binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub class: u8,
    pub data: u8,
    pub machine: u16,
}

impl Machine {
    fn of_elf(h: &[u8]) -> Option<Machine> {
        if h.len() < 20 || &h[..4] != b"\x7fELF" {
            return None;
        }
        let (class, data) = (h[4], h[5]);
        let machine = match data {
            1 => u16::from_le_bytes([h[18], h[19]]),
            2 => u16::from_be_bytes([h[18], h[19]]),
            _ => return None,
        };
        Some(Machine {
            class,
            data,
            machine,
        })
    }

    /// The machine this program runs on.
    pub fn this() -> io::Result<Machine> {
        let mut h = [0u8; 20];
        File::open("/proc/self/exe")?.read_exact(&mut h)?;
        Machine::of_elf(&h).ok_or_else(|| io::Error::other("this program is not ELF"))
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.machine {
            3 => "x86",
            8 => "MIPS",
            40 => "ARM",
            62 => "x86-64",
            183 => "AArch64",
            243 => "RISC-V",
            _ => "",
        };
        let bits = if self.class == 2 { 64 } else { 32 };
        if name.is_empty() {
            write!(f, "ELF machine {} ({bits}-bit)", self.machine)
        } else {
            write!(f, "{name} ({bits}-bit)")
        }
    }
}

/// What a binary needs of the system beyond its machine: the ABI flags of its ELF header
/// and the dynamic loader it names. Read from the ELF header and program headers, which
/// every image already carries: no manifest line (cards in the field refuse unknown ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abi {
    /// `e_flags`; on 32-bit Arm, the EABI version and the float ABI.
    pub flags: u32,
    /// The loader (PT_INTERP), or None for a static binary.
    pub interpreter: Option<String>,
}

/// ELF machine number of 32-bit Arm.
pub const EM_ARM: u16 = 40;
const EF_ARM_EABI_MASK: u32 = 0xFF00_0000;
const EF_ARM_ABI_FLOAT_SOFT: u32 = 0x200;
const EF_ARM_ABI_FLOAT_HARD: u32 = 0x400;
const PT_INTERP: u32 = 3;

impl Abi {
    /// The ABI of the ELF binary of `len` bytes at `at` in `file`, for `machine`.
    fn read(file: &mut File, at: u64, len: u64, machine: Machine) -> Result<Abi, String> {
        let mut get = |offset: u64, n: usize| -> Result<Vec<u8>, String> {
            let end = offset.checked_add(n as u64).filter(|&e| e <= len);
            if end.is_none() {
                return Err(format!("its headers point past its end ({offset})"));
            }
            let mut buf = vec![0u8; n];
            read_at(file, at + offset, &mut buf).map_err(|e| e.to_string())?;
            Ok(buf)
        };
        let big = machine.data == 2;
        let u16_of = |b: &[u8]| {
            let b = [b[0], b[1]];
            if big {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_of = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let u64_of = |b: &[u8]| {
            let b: [u8; 8] = b[..8].try_into().expect("8 bytes");
            if big {
                u64::from_be_bytes(b)
            } else {
                u64::from_le_bytes(b)
            }
        };
        let wide = machine.class == 2;
        let h = get(0, if wide { 64 } else { 52 })?;
        // (e_phoff, e_flags, e_phentsize, e_phnum) at their offsets for the class.
        let (phoff, flags, phentsize, phnum) = if wide {
            (
                u64_of(&h[32..]),
                u32_of(&h[48..]),
                u16_of(&h[54..]),
                u16_of(&h[56..]),
            )
        } else {
            let phoff = u64::from(u32_of(&h[28..]));
            (phoff, u32_of(&h[36..]), u16_of(&h[42..]), u16_of(&h[44..]))
        };
        let mut interpreter = None;
        for i in 0..u64::from(phnum) {
            let ph = get(
                phoff.saturating_add(i * u64::from(phentsize)),
                if wide { 56 } else { 32 },
            )?;
            if u32_of(&ph[0..]) != PT_INTERP {
                continue;
            }
            let (offset, size) = if wide {
                (u64_of(&ph[8..]), u64_of(&ph[32..]))
            } else {
                (u64::from(u32_of(&ph[4..])), u64::from(u32_of(&ph[16..])))
            };
            if size == 0 || size > 4096 {
                return Err(format!("its loader's name is {size} bytes long"));
            }
            let name = get(offset, size as usize)?;
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            interpreter = Some(String::from_utf8_lossy(name).into_owned());
        }
        Ok(Abi { flags, interpreter })
    }

    /// The ABI of this program.
    pub fn this() -> io::Result<Abi> {
        let mut file = File::open("/proc/self/exe")?;
        let len = file.metadata()?.len();
        Abi::read(&mut file, 0, len, Machine::this()?).map_err(io::Error::other)
    }

    /// Whether a binary with these ABI flags runs where this program, with `here`'s,
    /// runs, for `machine`: on 32-bit Arm, the same EABI version and float ABI (a
    /// hard-float card cannot run a soft-float program's calls, nor the reverse).
    pub fn fits(&self, here: &Abi, machine: Machine) -> Result<(), String> {
        if machine.machine != EM_ARM || machine.class != 1 {
            return Ok(());
        }
        let eabi = |f: u32| (f & EF_ARM_EABI_MASK) >> 24;
        let float = |f: u32| match f & (EF_ARM_ABI_FLOAT_HARD | EF_ARM_ABI_FLOAT_SOFT) {
            EF_ARM_ABI_FLOAT_HARD => "hard-float",
            EF_ARM_ABI_FLOAT_SOFT => "soft-float",
            _ => "unmarked float",
        };
        if eabi(self.flags) != eabi(here.flags) || float(self.flags) != float(here.flags) {
            return Err(format!(
                "the program is built for the ARM EABI {} {} ABI, and this card runs EABI {} {}",
                eabi(self.flags),
                float(self.flags),
                eabi(here.flags),
                float(here.flags)
            ));
        }
        Ok(())
    }
}

fn read_at(file: &mut File, at: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(buf)
}

/// Feeds `len` bytes from the reader's position to `each`, in pieces.
pub fn copy_range(
    from: &mut impl Read,
    len: u64,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        from.read_exact(&mut buf[..n])?;
        each(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// What goes into an image.
pub struct Build<'a> {
    pub binary: &'a Path,
    pub init_script: &'a Path,
    /// The oldest version the image may replace.
    pub replaces: Version,
}

/// Writes the signed part of an image (header, manifest, payload) to `out`, and returns
/// its manifest. The version is the binary's stamp.
pub fn write_body(build: &Build, out: &mut impl Write) -> Result<Manifest, String> {
    let bin =
        std::fs::read(build.binary).map_err(|e| format!("{}: {e}", build.binary.display()))?;
    let init = std::fs::read(build.init_script)
        .map_err(|e| format!("{}: {e}", build.init_script.display()))?;
    let version = version::stamped_in(&bin)
        .and_then(|v| Version::parse(&v))
        .ok_or_else(|| {
            format!(
                "{} carries no version stamp: is it a build of modbus-card?",
                build.binary.display()
            )
        })?;
    if build.replaces > version {
        return Err(format!(
            "an image of {version} cannot replace only versions from {} on",
            build.replaces
        ));
    }
    let manifest = Manifest {
        version,
        replaces: build.replaces.clone(),
        files: vec![
            (BINARY.into(), bin.len() as u64),
            (INIT_SCRIPT.into(), init.len() as u64),
        ],
    };
    let text = manifest.encode();
    let header = Header {
        manifest_len: text.len() as u32,
        payload_len: (bin.len() + init.len()) as u64,
    };
    if header.body_len() + MAX_SIGNATURE > MAX_IMAGE {
        return Err(format!(
            "the image would be {} bytes, over the {} MiB a card takes",
            header.body_len(),
            MAX_IMAGE >> 20
        ));
    }
    let write = |out: &mut dyn Write| -> io::Result<()> {
        out.write_all(&header.encode())?;
        out.write_all(text.as_bytes())?;
        out.write_all(&bin)?;
        out.write_all(&init)
    };
    write(out).map_err(|e| format!("cannot write the image: {e}"))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = Header {
            manifest_len: 80,
            payload_len: 1000,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        assert_eq!(h.body_len(), 32 + 80 + 1000);
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(Header::decode(&bad), Err(Refusal::NotAnImage));
        let mut newer = h.encode();
        newer[8] = 2;
        assert_eq!(Header::decode(&newer), Err(Refusal::UnknownFormat(2)));
        let huge = Header {
            manifest_len: 80,
            payload_len: MAX_IMAGE + 1,
        };
        assert_eq!(
            Header::decode(&huge.encode()),
            Err(Refusal::TooLarge { limit: MAX_IMAGE })
        );
    }

    #[test]
    fn a_signature_block_read_from_the_wrong_place_is_damaged_not_an_unknown_key() {
        // Found by fuzz/firmware_verify: a header saying the payload is 52 bytes longer than
        // it is puts the signature block's start inside its first line; minisign-verify
        // took the block, the key ID could not be read, and the refusal named key "?" as
        // not trusted.
        let dir = tempfile::tempdir().unwrap();
        let demo = super::super::keys::demo_pair(dir.path()).unwrap();
        let keys = super::super::keys::trusted(dir.path()).unwrap();
        let manifest =
            b"version=0.2.0\nreplaces=0.1.0\nfile=modbus-card 26\nfile=modbus-card.init 10\n";
        let header = Header {
            manifest_len: manifest.len() as u32,
            payload_len: 36 + 52,
        };
        let mut body = header.encode().to_vec();
        body.extend_from_slice(manifest);
        body.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\0\0\x3e\0\0\0\0\0\0\0");
        body.extend_from_slice(b"#!/bin/sh\n");
        let path = dir.path().join("image");
        std::fs::write(&path, &body).unwrap();
        let sig = super::super::keys::sign(&demo.secret, &path, "test").unwrap();
        assert!(sig.starts_with("untrusted comment: signature from modbus-card image build\n"));
        body.extend_from_slice(sig.as_bytes());
        std::fs::write(&path, &body).unwrap();
        assert_eq!(
            verify(&path, &keys).unwrap_err(),
            Refusal::Damaged("the signature block is not a minisign signature".into())
        );
    }

    #[test]
    fn file_lengths_whose_sum_overflows_are_refused() {
        // Found by review of the paths fuzz/firmware_verify reaches: the sum of the
        // manifest's lengths overflowed (a panic with overflow checks on).
        let dir = tempfile::tempdir().unwrap();
        let demo = super::super::keys::demo_pair(dir.path()).unwrap();
        let keys = super::super::keys::trusted(dir.path()).unwrap();
        let manifest = format!(
            "version=0.2.0\nreplaces=0.1.0\nfile=modbus-card {}\nfile=modbus-card.init 2\n",
            u64::MAX
        );
        let header = Header {
            manifest_len: manifest.len() as u32,
            payload_len: 1,
        };
        let mut body = header.encode().to_vec();
        body.extend_from_slice(manifest.as_bytes());
        body.push(0);
        let path = dir.path().join("image");
        std::fs::write(&path, &body).unwrap();
        let sig = super::super::keys::sign(&demo.secret, &path, "test").unwrap();
        body.extend_from_slice(sig.as_bytes());
        std::fs::write(&path, &body).unwrap();
        assert_eq!(
            verify(&path, &keys).unwrap_err(),
            Refusal::Contents("the files' lengths do not add up to the payload".into())
        );
    }

    #[test]
    fn manifest_round_trip_and_strictness() {
        let m = Manifest {
            version: Version::parse("0.2.0").unwrap(),
            replaces: Version::parse("0.1.0").unwrap(),
            files: vec![("modbus-card".into(), 10), ("modbus-card.init".into(), 5)],
        };
        let text = m.encode();
        assert_eq!(
            text,
            "version=0.2.0\nreplaces=0.1.0\nfile=modbus-card 10\nfile=modbus-card.init 5\n"
        );
        assert_eq!(Manifest::decode(text.as_bytes()), Ok(m));
        for bad in [
            "version=0.2.0\n",
            "version=0.2.0\nversion=0.3.0\nreplaces=0.1.0\n",
            "version=x\nreplaces=0.1.0\n",
            "version=0.2.0\nreplaces=0.1.0\nfile=a\n",
            "version=0.2.0\nreplaces=0.1.0\nexec=rm -rf /\n",
        ] {
            assert!(Manifest::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    /// A little-endian 32-bit Arm ELF header with these flags and, if given, a PT_INTERP.
    fn arm_elf(flags: u32, loader: Option<&str>) -> Vec<u8> {
        let mut e = vec![0u8; 52 + 32];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 1; // 32-bit
        e[5] = 1; // little-endian
        e[18..20].copy_from_slice(&EM_ARM.to_le_bytes());
        e[28..32].copy_from_slice(&52u32.to_le_bytes()); // e_phoff
        e[36..40].copy_from_slice(&flags.to_le_bytes());
        e[42..44].copy_from_slice(&32u16.to_le_bytes()); // e_phentsize
        e[44..46].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        if let Some(loader) = loader {
            let at = e.len() as u32;
            e.extend_from_slice(loader.as_bytes());
            e.push(0);
            e[52..56].copy_from_slice(&PT_INTERP.to_le_bytes());
            e[56..60].copy_from_slice(&at.to_le_bytes());
            e[68..72].copy_from_slice(&(loader.len() as u32 + 1).to_le_bytes());
        } else {
            e[52..56].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        }
        e
    }

    fn abi_of(bytes: &[u8]) -> Result<Abi, String> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        let machine = Machine::of_elf(bytes).unwrap();
        Abi::read(&mut f, 0, bytes.len() as u64, machine)
    }

    #[test]
    fn the_abi_of_arm_binaries_is_read_and_compared() {
        const HARD: u32 = 0x0500_0400;
        const SOFT: u32 = 0x0500_0200;
        let armhf = abi_of(&arm_elf(HARD, Some("/lib/ld-linux-armhf.so.3"))).unwrap();
        assert_eq!(armhf.flags, HARD);
        assert_eq!(
            armhf.interpreter.as_deref(),
            Some("/lib/ld-linux-armhf.so.3")
        );
        let soft = abi_of(&arm_elf(SOFT, None)).unwrap();
        assert_eq!(soft.interpreter, None, "a static binary names no loader");
        let arm = Machine::of_elf(&arm_elf(HARD, None)).unwrap();
        assert_eq!(armhf.fits(&armhf, arm), Ok(()));
        let why = soft.fits(&armhf, arm).unwrap_err();
        assert!(
            why.contains("EABI 5 soft-float") && why.contains("runs EABI 5 hard-float"),
            "{why}"
        );
        let old_eabi = abi_of(&arm_elf(0x0400_0400, None)).unwrap();
        assert!(old_eabi.fits(&armhf, arm).is_err());
        // Other machines have no such flags to compare.
        let x86 = Machine {
            class: 2,
            data: 1,
            machine: 62,
        };
        assert_eq!(soft.fits(&armhf, x86), Ok(()));
        // Headers that point outside the binary are refused, not read past.
        let mut cut = arm_elf(HARD, Some("/lib/ld-linux-armhf.so.3"));
        cut.truncate(60);
        assert!(abi_of(&cut).unwrap_err().contains("past its end"));
    }

    #[test]
    fn this_program_s_abi_names_the_loader_it_runs_with() {
        let abi = Abi::this().unwrap();
        if let Some(loader) = &abi.interpreter {
            assert!(Path::new(loader).exists(), "{loader}");
        }
    }
}
