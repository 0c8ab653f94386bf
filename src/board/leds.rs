//! The four LEDs, through the Linux LED class: `SYSFS/class/leds/NAME/brightness`, and
//! the kernel's `timer` trigger for flashing where the LED offers it (then flashing costs
//! no wake-ups); otherwise the board thread flashes them itself.
//!
//! What they show comes from atomics only (the link's state and counters, sysfs files of
//! the network interface): nothing here ever waits on the Modbus path.

use crate::link::{LinkState, LinkStatus};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Half the flashing period: on this long, off this long.
pub const HALF_PERIOD: Duration = Duration::from_millis(250);
/// Answers to masters within this long count as "communicating".
const RECENT: Duration = Duration::from_secs(5);
/// Network packets within this long count as traffic.
const TRAFFIC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Off,
    On,
    Flash,
}

/// One LED class device.
struct Led {
    name: String,
    dir: PathBuf,
    /// Written for "on": the LED's max_brightness.
    on_value: String,
    /// The kernel's timer trigger is offered.
    timer: bool,
    shown: Option<Pattern>,
    /// With our own timing: whether it is lit now.
    lit: Option<bool>,
    warned: bool,
}

impl Led {
    /// The LED `name`, or None (logged once) if it does not exist.
    fn open(sysfs: &Path, name: &str) -> Option<Led> {
        if name.is_empty() {
            return None;
        }
        let dir = sysfs.join("class/leds").join(name);
        if !dir.join("brightness").exists() {
            log::warn!(
                "LED '{name}' skipped: {} does not exist",
                dir.join("brightness").display()
            );
            return None;
        }
        let on_value = fs::read_to_string(dir.join("max_brightness"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.parse::<u32>().is_ok_and(|v| v > 0))
            .unwrap_or_else(|| "1".into());
        let timer = fs::read_to_string(dir.join("trigger")).is_ok_and(|t| {
            t.split_whitespace()
                .any(|w| w.trim_matches(['[', ']']) == "timer")
        });
        Some(Led {
            name: name.to_owned(),
            dir,
            on_value,
            timer,
            shown: None,
            lit: None,
            warned: false,
        })
    }

    fn write(&mut self, file: &str, value: &str) {
        // No create: sysfs attributes exist or the write is wrong. (Truncating is a no-op
        // on sysfs and keeps a plain file, in tests, holding just the value.)
        let r = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.dir.join(file))
            .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()));
        if let Err(e) = r {
            if !self.warned {
                log::warn!("LED '{}': cannot write {file}: {e}", self.name);
                self.warned = true;
            }
        }
    }

    /// Shows `pattern`; `phase_on` is the flashing phase for LEDs we time ourselves.
    fn show(&mut self, pattern: Pattern, phase_on: bool) {
        if self.timer {
            if self.shown == Some(pattern) {
                return;
            }
            let ms = HALF_PERIOD.as_millis().to_string();
            match pattern {
                Pattern::Flash => {
                    self.write("trigger", "timer");
                    self.write("delay_on", &ms);
                    self.write("delay_off", &ms);
                }
                Pattern::On | Pattern::Off => {
                    self.write("trigger", "none");
                    self.set_lit(pattern == Pattern::On);
                }
            }
            self.shown = Some(pattern);
            return;
        }
        self.shown = Some(pattern);
        let lit = match pattern {
            Pattern::Off => false,
            Pattern::On => true,
            Pattern::Flash => phase_on,
        };
        if self.lit != Some(lit) {
            self.set_lit(lit);
        }
    }

    fn set_lit(&mut self, lit: bool) {
        let value = if lit {
            self.on_value.clone()
        } else {
            "0".into()
        };
        self.write("brightness", &value);
        self.lit = Some(lit);
    }
}

/// The RS485 pair (green, yellow), then the network pair (green, yellow).
pub type Patterns = [Pattern; 4];

/// Names of the four LEDs under `sysfs/class/leds/`.
#[derive(Debug, Clone, Default)]
pub struct LedNames {
    pub sysfs: PathBuf,
    pub rs485_green: String,
    pub rs485_yellow: String,
    pub net_green: String,
    pub net_yellow: String,
}

pub struct Leds {
    leds: [Option<Led>; 4],
    epoch: Instant,
}

impl Leds {
    pub fn open(names: &LedNames) -> Leds {
        let open = |name: &str| Led::open(&names.sysfs, name);
        Leds {
            leds: [
                open(&names.rs485_green),
                open(&names.rs485_yellow),
                open(&names.net_green),
                open(&names.net_yellow),
            ],
            epoch: Instant::now(),
        }
    }

    /// Whether any of the four exists.
    pub fn any(&self) -> bool {
        self.leds.iter().any(Option::is_some)
    }

    /// Whether flashing LEDs are in their lit half at `now`.
    fn phase_on(&self, now: Instant) -> bool {
        ((now - self.epoch).as_millis() / HALF_PERIOD.as_millis()).is_multiple_of(2)
    }

    /// The next moment a flashing LED we time ourselves must change.
    pub fn next_edge(&self, now: Instant) -> Instant {
        let half = HALF_PERIOD.as_nanos();
        let into = (now - self.epoch).as_nanos() % half;
        now + Duration::from_nanos((half - into) as u64)
    }

    pub fn show(&mut self, patterns: Patterns, now: Instant) {
        let phase = self.phase_on(now);
        for (led, p) in self.leds.iter_mut().zip(patterns) {
            if let Some(led) = led {
                led.show(p, phase);
            }
        }
    }

    /// Shows the RS485 pair only (the network pair untouched): power-on and hardware
    /// error before the board thread runs.
    pub fn show_ups(&mut self, signal: UpsSignal) {
        let (g, y) = signal.patterns();
        let phase = self.phase_on(Instant::now());
        for (led, p) in self.leds[..2].iter_mut().zip([g, y]) {
            if let Some(led) = led {
                led.show(p, phase);
            }
        }
    }
}

/// What the RS485 pair says about the UPS link (docs/board.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsSignal {
    /// The service is starting: the link does not run yet.
    PowerOn,
    /// Baud search.
    Detecting,
    /// Found, no master talking through it.
    Detected,
    /// Masters' requests answered recently.
    Communicating,
    /// The UPS stopped answering.
    Failed,
    /// The UPS port cannot be opened.
    HardwareError,
}

impl UpsSignal {
    /// (green, yellow) as in docs/board.md's table.
    pub fn patterns(self) -> (Pattern, Pattern) {
        use Pattern::*;
        match self {
            UpsSignal::Detecting => (Off, Flash),
            UpsSignal::Detected => (On, Off),
            UpsSignal::Communicating => (On, Flash),
            UpsSignal::PowerOn => (Flash, Flash),
            UpsSignal::Failed => (On, On),
            UpsSignal::HardwareError => (Off, Off),
        }
    }
}

/// Follows the link's state and counters.
pub struct UpsIndicator {
    status: Arc<LinkStatus>,
    ups_path: PathBuf,
    /// Good answers and polls at the last look.
    last: (u64, u64),
    last_master_answer: Option<Instant>,
}

impl UpsIndicator {
    pub fn new(status: Arc<LinkStatus>, ups_path: PathBuf) -> UpsIndicator {
        let c = status.counters();
        UpsIndicator {
            status,
            ups_path,
            last: (c.answers + c.exceptions, c.polls),
            last_master_answer: None,
        }
    }

    pub fn signal(&mut self, now: Instant) -> UpsSignal {
        let c = self.status.counters();
        let (good, polls) = (c.answers + c.exceptions, c.polls);
        // More good answers than polls since the last look: some answered a master
        // (polls alone only keep the UPS's port open).
        if good - self.last.0 > polls - self.last.1 {
            self.last_master_answer = Some(now);
        }
        self.last = (good, polls);
        let state = self.status.state();
        // A USB adapter unplugged: its device node is gone and the link cannot reopen it.
        if state != LinkState::Up && !self.ups_path.exists() {
            return UpsSignal::HardwareError;
        }
        match state {
            LinkState::Detecting => UpsSignal::Detecting,
            LinkState::Lost => UpsSignal::Failed,
            LinkState::Stopped => UpsSignal::PowerOn,
            LinkState::Up if self.last_master_answer.is_some_and(|t| now - t < RECENT) => {
                UpsSignal::Communicating
            }
            LinkState::Up => UpsSignal::Detected,
        }
    }
}

/// Follows the Ethernet interface: carrier, speed, packet counters.
pub struct NetIndicator {
    dir: PathBuf,
    packets: Option<u64>,
    last_traffic: Option<Instant>,
}

impl NetIndicator {
    pub fn new(sysfs: &Path, interface: &str) -> NetIndicator {
        let dir = sysfs.join("class/net").join(interface);
        if !dir.exists() {
            log::warn!(
                "network interface '{interface}' not found ({}): network LEDs off",
                dir.display()
            );
        }
        NetIndicator {
            dir,
            packets: None,
            last_traffic: None,
        }
    }

    fn read(&self, file: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(file))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// (green, yellow): green at 1000 Mb/s, yellow below; flashing with traffic, both
    /// off without a link.
    pub fn patterns(&mut self, now: Instant) -> (Pattern, Pattern) {
        // Reading carrier fails while the interface is down: no link.
        if self.read("carrier").as_deref() != Some("1") {
            self.packets = None;
            return (Pattern::Off, Pattern::Off);
        }
        let packets = ["statistics/rx_packets", "statistics/tx_packets"]
            .iter()
            .filter_map(|f| self.read(f)?.parse::<u64>().ok())
            .sum::<u64>();
        if self.packets.is_some_and(|p| p != packets) {
            self.last_traffic = Some(now);
        }
        self.packets = Some(packets);
        let lit = if self.last_traffic.is_some_and(|t| now - t < TRAFFIC) {
            Pattern::Flash
        } else {
            Pattern::On
        };
        let gigabit = self
            .read("speed")
            .and_then(|s| s.parse::<i64>().ok())
            .is_some_and(|s| s >= 1000);
        if gigabit {
            (lit, Pattern::Off)
        } else {
            (Pattern::Off, lit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led_dir(root: &Path, name: &str, trigger: Option<&str>) -> PathBuf {
        let dir = root.join("class/leds").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("brightness"), "0").unwrap();
        fs::write(dir.join("max_brightness"), "255").unwrap();
        if let Some(t) = trigger {
            fs::write(dir.join("trigger"), t).unwrap();
            fs::write(dir.join("delay_on"), "500").unwrap();
            fs::write(dir.join("delay_off"), "500").unwrap();
        }
        dir
    }

    fn read(dir: &Path, f: &str) -> String {
        fs::read_to_string(dir.join(f)).unwrap()
    }

    #[test]
    fn the_kernel_timer_flashes_where_offered() {
        let root = tempfile::tempdir().unwrap();
        let dir = led_dir(root.path(), "a", Some("[none] timer heartbeat"));
        let mut led = Led::open(root.path(), "a").unwrap();
        assert!(led.timer);
        led.show(Pattern::Flash, false);
        assert_eq!(read(&dir, "trigger"), "timer");
        assert_eq!(read(&dir, "delay_on"), "250");
        assert_eq!(read(&dir, "delay_off"), "250");
        led.show(Pattern::On, false);
        assert_eq!(read(&dir, "trigger"), "none");
        assert_eq!(read(&dir, "brightness"), "255");
        led.show(Pattern::Off, true);
        assert_eq!(read(&dir, "brightness"), "0");
    }

    #[test]
    fn without_a_timer_trigger_the_phase_decides() {
        let root = tempfile::tempdir().unwrap();
        let dir = led_dir(root.path(), "b", Some("[none] heartbeat"));
        let mut led = Led::open(root.path(), "b").unwrap();
        assert!(!led.timer);
        led.show(Pattern::Flash, true);
        assert_eq!(read(&dir, "brightness"), "255");
        led.show(Pattern::Flash, false);
        assert_eq!(read(&dir, "brightness"), "0");
        assert_eq!(read(&dir, "trigger"), "[none] heartbeat", "untouched");
        assert!(Led::open(root.path(), "missing").is_none());
        assert!(Led::open(root.path(), "").is_none());
    }

    #[test]
    fn the_rs485_pair_is_spec_10_s_table() {
        use Pattern::*;
        let table = [
            (UpsSignal::Detecting, (Off, Flash)),
            (UpsSignal::Detected, (On, Off)),
            (UpsSignal::Communicating, (On, Flash)),
            (UpsSignal::PowerOn, (Flash, Flash)),
            (UpsSignal::Failed, (On, On)),
            (UpsSignal::HardwareError, (Off, Off)),
        ];
        for (signal, pair) in table {
            assert_eq!(signal.patterns(), pair, "{signal:?}");
        }
    }

    #[test]
    fn power_on_flashes_the_rs485_pair_by_the_kernel_timer_and_leaves_the_network_pair() {
        let root = tempfile::tempdir().unwrap();
        for name in ["g", "y", "ng", "ny"] {
            led_dir(root.path(), name, Some("[none] timer"));
        }
        let mut leds = Leds::open(&LedNames {
            sysfs: root.path().to_owned(),
            rs485_green: "g".into(),
            rs485_yellow: "y".into(),
            net_green: "ng".into(),
            net_yellow: "ny".into(),
        });
        leds.show_ups(UpsSignal::PowerOn);
        let trigger = |n: &str| read(&root.path().join("class/leds").join(n), "trigger");
        assert_eq!(
            (trigger("g"), trigger("y")),
            ("timer".into(), "timer".into())
        );
        assert_eq!(trigger("ng"), "[none] timer");
        leds.show_ups(UpsSignal::HardwareError);
        assert_eq!((trigger("g"), trigger("y")), ("none".into(), "none".into()));
    }

    #[test]
    fn the_network_pair_follows_carrier_speed_and_traffic() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("class/net/eth0");
        fs::create_dir_all(dir.join("statistics")).unwrap();
        let set = |f: &str, v: &str| fs::write(dir.join(f), v).unwrap();
        set("carrier", "0\n");
        set("speed", "1000\n");
        set("statistics/rx_packets", "10\n");
        set("statistics/tx_packets", "5\n");
        let mut net = NetIndicator::new(root.path(), "eth0");
        let t0 = Instant::now();
        assert_eq!(net.patterns(t0), (Pattern::Off, Pattern::Off));
        set("carrier", "1\n");
        assert_eq!(net.patterns(t0), (Pattern::On, Pattern::Off));
        set("statistics/rx_packets", "11\n");
        assert_eq!(net.patterns(t0), (Pattern::Flash, Pattern::Off));
        assert_eq!(
            net.patterns(t0 + Duration::from_secs(2)),
            (Pattern::On, Pattern::Off)
        );
        set("speed", "100\n");
        assert_eq!(
            net.patterns(t0 + Duration::from_secs(2)),
            (Pattern::Off, Pattern::On)
        );
        fs::remove_file(dir.join("carrier")).unwrap();
        assert_eq!(net.patterns(t0), (Pattern::Off, Pattern::Off));
    }
}
