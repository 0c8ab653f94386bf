//! A board in a temporary folder: LED class devices and a network interface as sysfs
//! has them, FIFOs for the button and the watchdog, and ways to watch them over time.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const GREEN: &str = "rs485:green";
pub const YELLOW: &str = "rs485:yellow";
pub const NET_GREEN: &str = "net:green";
pub const NET_YELLOW: &str = "net:yellow";
pub const IFACE: &str = "eth9";

pub struct Sysfs {
    pub root: PathBuf,
}

impl Sysfs {
    /// The four LEDs (the network pair with the kernel's timer trigger, the RS485 pair
    /// without, so both ways of flashing are exercised) and an interface with a link.
    pub fn new(root: &Path) -> Sysfs {
        let s = Sysfs {
            root: root.to_owned(),
        };
        s.led(GREEN, false);
        s.led(YELLOW, false);
        s.led(NET_GREEN, true);
        s.led(NET_YELLOW, true);
        let net = s.net();
        fs::create_dir_all(net.join("statistics")).unwrap();
        s.set_net("carrier", "1");
        s.set_net("speed", "1000");
        s.set_net("statistics/rx_packets", "0");
        s.set_net("statistics/tx_packets", "0");
        s
    }

    /// An LED as the kernel shows it: brightness, max_brightness, and with `timer` a
    /// trigger file offering the timer trigger and its delay files.
    pub fn led(&self, name: &str, timer: bool) {
        let dir = self.led_dir(name);
        fs::create_dir_all(&dir).unwrap();
        // Lit before the service starts, so a test sees what the service wrote.
        fs::write(dir.join("brightness"), "1").unwrap();
        fs::write(dir.join("max_brightness"), "1").unwrap();
        if timer {
            fs::write(dir.join("trigger"), "[none] timer heartbeat").unwrap();
            fs::write(dir.join("delay_on"), "500").unwrap();
            fs::write(dir.join("delay_off"), "500").unwrap();
        }
    }

    pub fn led_dir(&self, name: &str) -> PathBuf {
        self.root.join("class/leds").join(name)
    }

    pub fn net(&self) -> PathBuf {
        self.root.join("class/net").join(IFACE)
    }

    pub fn set_net(&self, file: &str, value: &str) {
        fs::write(self.net().join(file), format!("{value}\n")).unwrap();
    }

    pub fn read(&self, led: &str, file: &str) -> String {
        fs::read_to_string(self.led_dir(led).join(file))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    pub fn lit(&self, led: &str) -> bool {
        self.read(led, "brightness") != "0"
    }

    /// Settings that point a card at this folder.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sysfs_root", self.root.display().to_string()),
            ("net_interface", IFACE.to_string()),
        ]
    }

    /// What LEDs timed by the service do over `span`: each one's pattern.
    pub fn observe(&self, leds: &[&str], span: Duration) -> Vec<Seen> {
        let mut samples: Vec<Vec<(Instant, bool)>> = vec![Vec::new(); leds.len()];
        let start = Instant::now();
        while start.elapsed() < span {
            for (i, led) in leds.iter().enumerate() {
                samples[i].push((Instant::now(), self.lit(led)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        samples.iter().map(|s| Seen::of(s)).collect()
    }
}

/// An LED's pattern as observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Off,
    On,
    /// Flashing, with the median time between changes.
    Flash(Duration),
    /// Changed, but not like flashing (a pattern change during the look).
    Other,
}

impl Seen {
    fn of(samples: &[(Instant, bool)]) -> Seen {
        let edges: Vec<Instant> = samples
            .windows(2)
            .filter(|w| w[0].1 != w[1].1)
            .map(|w| w[1].0)
            .collect();
        if edges.is_empty() {
            return if samples[0].1 { Seen::On } else { Seen::Off };
        }
        if edges.len() < 3 {
            return Seen::Other;
        }
        let mut gaps: Vec<Duration> = edges.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort();
        Seen::Flash(gaps[gaps.len() / 2])
    }

    pub fn is_flash(&self) -> bool {
        matches!(self, Seen::Flash(_))
    }

    /// Like `other`, counting any flashing as flashing.
    pub fn like(&self, other: &Seen) -> bool {
        match (self, other) {
            (Seen::Flash(_), Seen::Flash(_)) => true,
            (a, b) => a == b,
        }
    }
}

/// Flashing, for comparisons with [`Seen::like`].
pub const FLASH: Seen = Seen::Flash(Duration::ZERO);

/// A FIFO in `dir`.
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

/// Everything written to a FIFO, with when it came: the test's end of a watchdog.
pub struct FifoLog {
    pub bytes: Arc<Mutex<Vec<(Instant, u8)>>>,
    /// Times the writer closed its end.
    pub closes: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FifoLog {
    /// Opens the FIFO for reading (so a writer can open it) and records what comes.
    pub fn open(path: &Path) -> FifoLog {
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let closes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, c, s) = (bytes.clone(), closes.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut open = false;
            let mut buf = [0u8; 64];
            while !s.load(Ordering::Relaxed) {
                match file.read(&mut buf) {
                    Ok(0) => {
                        if open {
                            c.lock().unwrap().push(Instant::now());
                            open = false;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(n) => {
                        open = true;
                        let now = Instant::now();
                        b.lock().unwrap().extend(buf[..n].iter().map(|&x| (now, x)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FifoLog {
            bytes,
            closes,
            stop,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<(Instant, u8)> {
        self.bytes.lock().unwrap().clone()
    }

    /// Bytes that came after `since`.
    pub fn since(&self, since: Instant) -> Vec<u8> {
        self.received()
            .into_iter()
            .filter(|(t, _)| *t > since)
            .map(|(_, b)| b)
            .collect()
    }

    pub fn last_at(&self) -> Option<Instant> {
        self.received().last().map(|(t, _)| *t)
    }
}

impl Drop for FifoLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `struct input_event` as the kernel writes it (64-bit: 16-byte timeval).
pub fn input_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let word = std::mem::size_of::<nix::libc::c_ulong>();
    let mut r = Vec::new();
    r.extend_from_slice(&now.as_secs().to_ne_bytes()[..word]);
    r.extend_from_slice(&u64::from(now.subsec_micros()).to_ne_bytes()[..word]);
    r.extend_from_slice(&kind.to_ne_bytes());
    r.extend_from_slice(&code.to_ne_bytes());
    r.extend_from_slice(&value.to_ne_bytes());
    r
}

/// A key event and the EV_SYN that follows it, as gpio-keys sends them.
pub fn key(value: i32) -> Vec<u8> {
    const EV_KEY: u16 = 1;
    const KEY_RESTART: u16 = 0x198;
    let mut r = input_event(EV_KEY, KEY_RESTART, value);
    r.extend(input_event(0, 0, 0));
    r
}
