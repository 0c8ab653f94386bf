//! Regressions found by .ci/powercut, replayed with the worst cut (every change not synced
//! is lost, SEED 0) so each fails every time on the code before its fix. They start the
//! card's real binary on the mounted file system: `MODBUS_CARD_BIN`, or the debug build of
//! the repository (`cargo build --bin modbus-card` first; .ci/powercut does).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

fn card_bin() -> PathBuf {
    let bin = std::env::var_os("MODBUS_CARD_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/modbus-card"),
        PathBuf::from,
    );
    assert!(
        bin.exists(),
        "{} is missing: build the card first",
        bin.display()
    );
    bin
}

fn mounted(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(mnt.to_str().unwrap()))
}

struct Power {
    fs: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    mnt: PathBuf,
}

impl Power {
    fn on(name: &str) -> Power {
        let mnt = std::env::temp_dir().join(format!("powercut-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&mnt).unwrap();
        let mut fs = Command::new(env!("CARGO_BIN_EXE_powercut"))
            .arg(&mnt)
            .arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdin, stdout) = (fs.stdin.take().unwrap(), fs.stdout.take().unwrap());
        let power = Power {
            fs,
            stdin,
            stdout: BufReader::new(stdout),
            mnt,
        };
        power.wait_mounted();
        power
    }

    fn wait_mounted(&self) {
        let start = Instant::now();
        while !mounted(&self.mnt) {
            assert!(start.elapsed() < PATIENCE, "not mounted");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The power cut, and power back on.
    fn cut(&mut self) -> String {
        let start = Instant::now();
        while !Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .status()
            .unwrap()
            .success()
        {
            assert!(start.elapsed() < PATIENCE, "cannot unmount");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("cut "), "{line}");
        self.stdin.write_all(b"mount\n").unwrap();
        self.stdin.flush().unwrap();
        self.wait_mounted();
        line
    }
}

impl Drop for Power {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mnt)
            .status();
        let _ = self.fs.kill();
        let _ = self.fs.wait();
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

/// A card's first start makes its data folder; a setting the settings command said it
/// stored was lost with the folder's name, which nothing synced.
#[test]
fn a_setting_stored_in_a_new_data_folder_survives_a_power_cut() {
    let mut power = Power::on("setting");
    let data = power.mnt.join("data");
    let out = Command::new(card_bin())
        .args(["settings", "--data"])
        .arg(&data)
        .arg("rs485_slave=17")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cut = power.cut();
    let out = Command::new(card_bin())
        .args(["settings", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("rs485_slave=17\n"), "after {cut}: {shown}");
}

/// The HTTPS certificates made at a start (the host key already there) were written and
/// synced in `tls/`, but `tls/`'s own name was not: after a power cut the card made other
/// ones, and a browser that trusted its root no longer trusted the card.
#[test]
fn certificates_once_made_are_the_ones_after_a_power_cut() {
    let mut power = Power::on("certs");
    let data = power.mnt.join("data");
    let sim = Command::new(card_bin())
        .arg("simulate-ups")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut sim = Kill(sim);
    let mut first = String::new();
    BufReader::new(sim.0.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let ups = first.split_whitespace().last().unwrap().to_string();
    let start = |data: &Path| {
        let mut card = Kill(
            Command::new(card_bin())
                .args(["run", "--ups", &ups, "--modbus", "127.0.0.1:0"])
                .args(["--http", "127.0.0.1:0", "--https", "127.0.0.1:0"])
                .args(["--ssh", "127.0.0.1:0", "--data"])
                .arg(data)
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let lines = BufReader::new(card.0.stderr.take().unwrap()).lines();
        let (mut ssh, mut modbus, mut certs) = (false, false, false);
        for line in lines {
            let line = line.unwrap();
            ssh |= line.contains("ssh listening on");
            modbus |= line.contains("modbus tcp listening on");
            certs |= line.contains("made its HTTPS certificate");
            if ssh && modbus && certs {
                break;
            }
        }
        card
    };
    // The first start makes everything; all of it synced, as a card's flash holds it.
    drop(start(&data));
    sync_tree(&power.mnt);
    // Only the certificates to make: nothing else this start writes syncs the data folder.
    std::fs::remove_dir_all(data.join("tls")).unwrap();
    std::fs::File::open(&data).unwrap().sync_all().unwrap();
    let card = start(&data);
    let made = std::fs::read_to_string(data.join("tls/ca.pem")).unwrap();
    drop(card); // kill -9
    let cut = power.cut();
    let after = std::fs::read_to_string(data.join("tls/ca.pem"));
    assert_eq!(
        after.ok().as_ref(),
        Some(&made),
        "the card's root after {cut}"
    );
}

fn sync_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            sync_tree(&path);
        } else if meta.is_file() {
            std::fs::File::open(&path).unwrap().sync_all().unwrap();
        }
    }
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// A child killed (-9) when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
