//! A card with an A/B install in a temporary folder, run by its init script as the board
//! runs it; builds of other versions; signed images of them.
//!
//! A build of another version is this build with its version stamp set, as
//! `MODBUS_CARD_VERSION=1.1.0 cargo build` sets it (rebuilding here would take minutes),
//! and stripped as a release build is. Builds that misbehave (exit at once, hang) are
//! small programs compiled here with rustc, carrying a stamp like any build.
#![allow(dead_code)]

use crate::common::{free_port, wait_for, PATIENCE};
use modbus_card::firmware::keys;
use modbus_card::firmware::version;
use modbus_card::pty::Pty;
use modbus_card::sim::{Sim, SimConfig};
use modbus_card::store::{EventRow, Store};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
pub const INIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/init/modbus-card");

/// The version the card runs first, and the next one.
pub const OLD: &str = "1.0.0";
pub const NEW: &str = "1.1.0";

/// A signing key pair in minisign's files.
pub struct KeyPair {
    pub secret: PathBuf,
    pub public: PathBuf,
}

pub fn key_pair(dir: &Path, name: &str) -> KeyPair {
    let (secret, public) = keys::generate_pair(&format!("test key {name}")).unwrap();
    let pair = KeyPair {
        secret: dir.join(format!("{name}.key")),
        public: dir.join(format!("{name}.pub")),
    };
    fs::write(&pair.secret, secret).unwrap();
    fs::write(&pair.public, public).unwrap();
    pair
}

/// This build, stamped `version`, stripped: what `MODBUS_CARD_VERSION=version cargo
/// build --release` would give, in debug.
pub fn build_of(dir: &Path, version: &str) -> PathBuf {
    let out = dir.join(format!("modbus-card-{version}"));
    if out.exists() {
        return out;
    }
    let tmp = dir.join(format!("modbus-card-{version}.tmp"));
    let status = Command::new("strip")
        .arg("-o")
        .arg(&tmp)
        .arg(BIN)
        .status()
        .expect("strip (binutils) is needed to make a build small enough for an image");
    assert!(status.success());
    let mut bytes = fs::read(&tmp).unwrap();
    let at = version::stamp_offset(&bytes).expect("the build's stamp");
    let field = version::stamp_field(version).unwrap();
    bytes[at..at + field.len()].copy_from_slice(&field);
    write_exe(&out, &bytes);
    let _ = fs::remove_file(tmp);
    out
}

/// A small program stamped `version` whose `main` is `body`: a build that misbehaves.
pub fn misbehaving_build(dir: &Path, name: &str, version: &str, body: &str) -> PathBuf {
    let field = version::stamp_field(version).unwrap();
    let mut stamp: Vec<u8> = b"\x7fmodbus-card\x00ver".to_vec();
    stamp.extend_from_slice(&field);
    let source = format!(
        "#[used]\nstatic STAMP: [u8; {}] = {:?};\n\
         #[allow(unused)]\nextern \"C\" {{ fn signal(sig: i32, handler: usize) -> usize; }}\n\
         #[allow(unused)]\nfn main() {{ let _ = &STAMP; {body} }}\n",
        stamp.len(),
        stamp
    );
    let src = dir.join(format!("{name}.rs"));
    fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let o = Command::new(rustc)
        .args(["--edition", "2021", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

pub fn write_exe(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A signed image made with `modbus-card image build`.
pub fn image(dir: &Path, binary: &Path, init: &Path, key: &KeyPair, replaces: &str) -> PathBuf {
    let name = format!(
        "{}-{}.img",
        binary.file_name().unwrap().to_string_lossy(),
        key.secret.file_stem().unwrap().to_string_lossy()
    );
    let out = dir.join(name);
    let o = Command::new(BIN)
        .args(["image", "build", "--binary"])
        .arg(binary)
        .arg("--init")
        .arg(init)
        .arg("--key")
        .arg(&key.secret)
        .args(["--replaces", replaces, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    out
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A card in a folder: the simulated UPS, the A/B install of [`OLD`] signed by the
/// card's key, its /etc/default file, run by the init script.
pub struct Card {
    pub dir: tempfile::TempDir,
    pub sim: Sim,
    pub key: KeyPair,
    pub root: PathBuf,
    pub data: PathBuf,
    /// Modbus TCP, HTTP and HTTPS, on loopback.
    pub port: u16,
    pub http: u16,
    pub https: u16,
}

impl Card {
    /// Installed as the factory would, not started. `trial_time`: the init script's
    /// TRIAL_TIME.
    pub fn install(trial_time: u32) -> Card {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
        let key = key_pair(dir.path(), "maker");
        let (root, data) = (dir.path().join("opt"), dir.path().join("data"));
        fs::create_dir_all(data.join(keys::TRUSTED_DIR)).unwrap();
        fs::copy(&key.public, data.join(keys::TRUSTED_DIR).join("maker.pub")).unwrap();
        let card = Card {
            sim,
            key,
            root,
            data,
            port: free_port(),
            http: free_port(),
            https: free_port(),
            dir,
        };
        let old = card.image_of(OLD, "0.0.0");
        let o = Command::new(BIN)
            .args(["image", "install", "--firmware"])
            .arg(&card.root)
            .arg("--data")
            .arg(&card.data)
            .arg(&old)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        // The restart of an upgrade reboots the board: the init system then runs the
        // init script's start, as here (in the background, as `reboot` returns at once).
        let reboot = format!("sh {} restart >/dev/null 2>&1 &", card.init().display());
        let defaults = format!(
            "FIRMWARE={}\nDATA={}\nUPS={}\nRS485=\nMODBUS=127.0.0.1:{}\nPIDFILE={}\nLOG={}\n\
             HTTP=127.0.0.1:{}\nHTTPS=127.0.0.1:{}\nSSH=127.0.0.1:0\nMAC={}\n\
             TRIAL_TIME={trial_time}\nSTOP_WAIT=3\nREBOOT='{reboot}'\n",
            card.root.display(),
            card.data.display(),
            card.sim.path().unwrap().display(),
            card.port,
            card.path("pid").display(),
            card.path("log").display(),
            card.http,
            card.https,
            crate::common::web::MAC,
        );
        fs::write(card.path("default"), defaults).unwrap();
        card
    }

    /// Installed, and started by its init script on [`OLD`].
    pub fn running(trial_time: u32) -> Card {
        let card = Card::install(trial_time);
        let o = card.service("start");
        assert!(o.status.success(), "{}", text(&o));
        card.wait_running(OLD, true);
        card
    }

    /// Upgrades to a build of [`NEW`] that misbehaves (see [`misbehaving_build`]).
    pub fn upgrade_to_misbehaving(&self, name: &str, body: &str) {
        let dir = self.dir.path();
        let build = misbehaving_build(dir, name, NEW, body);
        let o = self.upgrade(&image(dir, &build, INIT.as_ref(), &self.key, OLD));
        assert!(o.status.success(), "{}", text(&o));
    }

    /// Until the running service's program is in `slot`.
    pub fn wait_program_in(&self, slot: &str) {
        wait_for(&format!("a program of slot {slot} running"), || {
            self.running_program()
                .is_some_and(|p| p.starts_with(self.root.join(slot)))
        });
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// /etc/init.d/modbus-card: the good slot's init script.
    pub fn init(&self) -> PathBuf {
        self.root.join("good").join("modbus-card.init")
    }

    /// A signed image of this build at `version` with the init script of the sources.
    pub fn image_of(&self, version: &str, replaces: &str) -> PathBuf {
        let bin = build_of(self.dir.path(), version);
        image(self.dir.path(), &bin, Path::new(INIT), &self.key, replaces)
    }

    /// Runs the init script with an action, as the init system does.
    pub fn service(&self, action: &str) -> Output {
        Command::new("sh")
            .arg(self.init())
            .arg(action)
            .env("DEFAULTS", self.path("default"))
            .output()
            .unwrap()
    }

    /// `modbus-card upgrade` on the card, restarting through the init script.
    pub fn upgrade(&self, image: &Path) -> Output {
        Command::new(BIN)
            .args(["upgrade", "--firmware"])
            .arg(&self.root)
            .arg("--data")
            .arg(&self.data)
            .arg("--restart")
            .arg(format!("sh {} restart", self.init().display()))
            .arg(image)
            .env("DEFAULTS", self.path("default"))
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.path("log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.path("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The program the running service was started from.
    pub fn running_program(&self) -> Option<PathBuf> {
        let pid = self.pid()?;
        fs::read_link(format!("/proc/{pid}/exe")).ok()
    }

    /// Until the service runs `version` from the slot `current` names, healthy enough to
    /// serve Modbus TCP, and (with `confirmed`) has become the good slot.
    pub fn wait_running(&self, version: &str, confirmed: bool) {
        wait_for(
            &format!("version {version} running\n{}", self.log()),
            || {
                let Some(exe) = self.running_program() else {
                    return false;
                };
                let slot = exe
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let current = self.link("current");
                self.slot_version(&slot).as_deref() == Some(version)
                    && current.as_deref() == Some(slot.as_str())
                    && (!confirmed || self.link("good") == current)
                    && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            },
        );
    }

    pub fn link(&self, name: &str) -> Option<String> {
        fs::read_link(self.root.join(name))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    pub fn slot_version(&self, slot: &str) -> Option<String> {
        let m = fs::read_to_string(self.root.join(slot).join("manifest")).ok()?;
        m.lines()
            .find_map(|l| l.strip_prefix("version="))
            .map(str::to_owned)
    }

    /// The event log, newest first.
    pub fn events(&self) -> Vec<EventRow> {
        Store::open(&self.data).unwrap().events(10_000).unwrap()
    }

    pub fn wait_event(&self, kind: &str) -> EventRow {
        let mut found = None;
        wait_for(&format!("event {kind}\n{}", self.log()), || {
            found = self.events().into_iter().find(|e| e.kind == kind);
            found.is_some()
        });
        found.unwrap()
    }

    /// Everything of the install (names, bytes, link targets) and the stored settings: what
    /// a refused upgrade must leave as it was.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = BTreeMap::new();
        walk(&self.root, &self.root, &mut all);
        let o = Command::new(BIN)
            .args(["settings", "--data"])
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(o.status.success());
        all.insert("(settings)".into(), o.stdout);
        all
    }

    /// The web as a browser that trusts the card's root certificate.
    pub fn browser(&self) -> crate::common::web::Browser {
        let root = fs::read(self.data.join("tls/ca.pem")).unwrap();
        crate::common::web::Browser::new(&format!("https://127.0.0.1:{}", self.https), Some(&root))
    }

    /// Stops the service and its trial's watch, whatever state they are in.
    pub fn stop(&self) {
        let _ = self.service("stop");
        if let Ok(pid) = fs::read_to_string(self.path("pid.trial")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.stop();
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.insert(
                format!("{name} ->"),
                target.to_string_lossy().into_owned().into_bytes(),
            );
        } else if meta.is_dir() {
            out.insert(format!("{name}/"), vec![]);
            walk(root, &path, out);
        } else {
            out.insert(name, fs::read(&path).unwrap());
        }
    }
}

/// Waits for a process to end; true if it did within [`PATIENCE`].
pub fn gone(pid: i32) -> bool {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The init script's "running": the PID file names a live modbus-card.
pub fn alive(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        String::from_utf8_lossy(&c).contains("modbus-card")
            && !fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    })
}
