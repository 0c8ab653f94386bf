//! The card's settings, with the defaults of the specification. They are stored in the
//! database as text under stable keys; [`Settings::set`] validates a value before it is
//! accepted, whoever offers it (command line, and later the web pages and console).

use crate::access::{self, Cidr, Writers};
use crate::modbus::rtu;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Declares [`Key`]: each setting's variant and the name it is stored, exported and given
/// under (these names never change: stored settings and configuration files use them).
macro_rules! keys {
    ($($variant:ident = $name:literal,)*) => {
        /// A setting, named in code by its variant rather than by its text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Key {
            $($variant,)*
        }

        impl Key {
            /// Every key, in the order pages list them (that of [`DEFS`]).
            pub const ALL: [Key; [$($name),*].len()] = [$(Key::$variant,)*];

            /// The name under which it is stored, exported and given on the command line.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Key::$variant => $name,)*
                }
            }
        }
    };
}

#[rustfmt::skip]
keys! {
    UpsBaud = "ups_baud",
    UpsSlave = "ups_slave",
    SerialTimeoutMs = "serial_timeout_ms",
    PollRateS = "poll_rate_s",
    ModbusPort = "modbus_port",
    ModbusTimeoutS = "modbus_timeout_s",
    Routing = "routing",
    Rs485Slave = "rs485_slave",
    Rs485Baud = "rs485_baud",
    Rs485TimeoutS = "rs485_timeout_s",
    FrameGapUs = "frame_gap_us",
    ModbusEvictIdleS = "modbus_evict_idle_s",
    ModbusAllow = "modbus_allow",
    ModbusWrite = "modbus_write",
    ModbusWriters = "modbus_writers",
    LoginTimeoutS = "login_timeout_s",
    PasswordDays = "password_days",
    HttpEnabled = "http_enabled",
    HttpsEnabled = "https_enabled",
    SshEnabled = "ssh_enabled",
    ModbusEnabled = "modbus_enabled",
    MbtlsEnabled = "mbtls_enabled",
    DhcpEnabled = "dhcp_enabled",
    PingEnabled = "ping_enabled",
    UpgradeEnabled = "upgrade_enabled",
    DebugEnabled = "debug_enabled",
    MdnsEnabled = "mdns_enabled",
    NtpServer = "ntp_server",
    IpAddress = "ip_address",
    Netmask = "netmask",
    Gateway = "gateway",
    Dns = "dns",
    SyslogEnabled = "syslog_enabled",
    SyslogServer = "syslog_server",
    SyslogPort = "syslog_port",
    SyslogTransport = "syslog_transport",
    SysfsRoot = "sysfs_root",
    LedRs485Green = "led_rs485_green",
    LedRs485Yellow = "led_rs485_yellow",
    LedNetGreen = "led_net_green",
    LedNetYellow = "led_net_yellow",
    NetInterface = "net_interface",
    ButtonDevice = "button_device",
    WatchdogDevice = "watchdog_device",
}

impl Key {
    /// The key of a name as stored or typed; `None` for a name this firmware does not know.
    pub fn named(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The key of `name`, or the refusal of an unknown name.
    pub fn parse(name: &str) -> Result<Key, SetError> {
        Key::named(name).ok_or_else(|| SetError::Unknown(name.to_string()))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a key may come as text (a form, the command line, a test speaking as a user),
/// the functions that take one take either.
impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// Compares with a name as typed.
impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// Why a setting was not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    /// A name this firmware does not know (a retired setting, a typing mistake).
    Unknown(String),
    /// A value the setting does not take; `why` says what it takes.
    Refused { key: Key, why: String },
}

impl SetError {
    /// What is wrong, as read beside the setting's label: without its key, capitalised.
    pub fn why(&self) -> String {
        match self {
            SetError::Unknown(_) => capitalised(&self.to_string()),
            SetError::Refused { why, .. } => capitalised(why),
        }
    }
}

/// "key: why"; the unknown name quoted.
impl std::fmt::Display for SetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetError::Unknown(name) => write!(f, "unknown setting '{name}'"),
            SetError::Refused { key, why } => write!(f, "{key}: {why}"),
        }
    }
}

impl std::error::Error for SetError {}

/// Baud rates the UPS link tries, fastest first.
pub const UPS_BAUDS: [u32; 3] = [57600, 19200, 9600];
/// Baud rates of the RS485 port.
pub const RS485_BAUDS: [u32; 5] = [1200, 2400, 9600, 19200, 57600];

/// The numeric settings and the bounds a value alone must be within (`min`, `max`); a
/// refusal names these bounds. How values go together is checked beyond this (the
/// serial timeout's lowest sane value at the baud rate).
pub const NUMBERS: [(Key, u64, u64); 12] = [
    (Key::UpsSlave, 1, 247),
    (Key::SerialTimeoutMs, 0, 60_000),
    (Key::PollRateS, 0, 86_400),
    (Key::ModbusPort, 1, 65535),
    (Key::ModbusTimeoutS, 0, 86_400),
    (Key::Rs485Slave, 1, 174),
    (Key::Rs485TimeoutS, 0, 86_400),
    (Key::FrameGapUs, 0, 100_000),
    (Key::ModbusEvictIdleS, 0, 86_400),
    (Key::LoginTimeoutS, 30, 86_400),
    (Key::PasswordDays, 0, 3650),
    (Key::SyslogPort, 1, 65535),
];

/// The bounds of a numeric setting.
pub fn range(key: Key) -> Option<(u64, u64)> {
    NUMBERS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// How unit ids of Modbus TCP requests reach the serial link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Unit ids 0, 255 and the UPS slave number go to the UPS; others get exception 0x0A
    /// at once, so a misconfigured master cannot stall the link.
    Ups,
    /// Every unit id is used as the RTU address (0 is a broadcast): for sites with several
    /// RTU devices on the link.
    Transparent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// 0: detect among [`UPS_BAUDS`] at start; otherwise the fixed rate.
    pub ups_baud: u32,
    pub ups_slave: u8,
    pub serial_timeout_ms: u32,
    /// Seconds between control frames; 0 turns polling off.
    pub poll_rate_s: u32,
    pub modbus_port: u16,
    /// Seconds of silence after which a Modbus TCP session is closed; 0 = never.
    pub modbus_timeout_s: u32,
    pub routing: Routing,
    pub rs485_slave: u8,
    pub rs485_baud: u32,
    /// Seconds without a valid frame for this card after which the RS485 master counts as
    /// lost; 0 turns the event off.
    pub rs485_timeout_s: u32,
    /// Silence kept on the UPS link between frames, in µs; `None` = 3.5 characters at the
    /// current baud rate, as the serial line guide asks.
    pub frame_gap_us: Option<u32>,
    /// With all sessions in use, a new master takes the slot of a session idle at least
    /// this many seconds; 0 = never.
    pub modbus_evict_idle_s: u32,
    /// Masters allowed to connect to Modbus TCP; empty: everyone.
    pub modbus_allow: Vec<Cidr>,
    /// Who may write through Modbus TCP.
    pub modbus_write: Writers,
    /// The networks that may write when `modbus_write` is `listed`.
    pub modbus_writers: Vec<Cidr>,

    /// Seconds without activity after which a web or console session ends.
    pub login_timeout_s: u32,
    /// Days after which a password must be changed ("First Login Reset"); 0 = never.
    pub password_days: u32,
    pub http_enabled: bool,
    pub https_enabled: bool,
    pub ssh_enabled: bool,
    /// Plain Modbus TCP on `modbus_port`; off leaves Modbus/TCP Security alone.
    pub modbus_enabled: bool,
    /// Modbus/TCP Security (TLS with client certificates and roles) on its own port.
    pub mbtls_enabled: bool,
    pub dhcp_enabled: bool,
    pub ping_enabled: bool,
    /// "Network upgrade": firmware may be uploaded over the network.
    pub upgrade_enabled: bool,
    /// "Modbus debug": the frame log page.
    pub debug_enabled: bool,
    /// NTP server as host or host:port; empty = no NTP.
    pub ntp_server: String,

    /// The static address, used while DHCP is off.
    pub ip_address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Option<Ipv4Addr>,

    /// Where the board's sysfs is (tests point it at a temporary folder).
    pub sysfs_root: String,
    pub led_rs485_green: String,
    pub led_rs485_yellow: String,
    pub led_net_green: String,
    pub led_net_yellow: String,
    pub net_interface: String,
    /// Input device of the reset button; empty = none.
    pub button_device: String,
    /// Watchdog device; empty = none.
    pub watchdog_device: String,

    /// DNS-SD announcements over multicast DNS.
    pub mdns_enabled: bool,
    /// Every event-log entry also sent to `syslog_server` as RFC 5424 syslog.
    pub syslog_enabled: bool,
    /// The log server, a host name or address; empty = none.
    pub syslog_server: String,
    pub syslog_port: u16,
    pub syslog_transport: SyslogTransport,
}

/// How syslog messages travel to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogTransport {
    Udp,
    /// RFC 6587 octet counting.
    Tcp,
    /// RFC 5425, TLS 1.3.
    Tls,
}

impl SyslogTransport {
    pub fn name(self) -> &'static str {
        match self {
            SyslogTransport::Udp => "udp",
            SyslogTransport::Tcp => "tcp",
            SyslogTransport::Tls => "tls",
        }
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ups_baud: 0,
            ups_slave: 1,
            serial_timeout_ms: 500,
            poll_rate_s: 10,
            modbus_port: 502,
            modbus_timeout_s: 60,
            routing: Routing::Ups,
            rs485_slave: 1,
            rs485_baud: 9600,
            rs485_timeout_s: 60,
            frame_gap_us: None,
            modbus_evict_idle_s: 30,
            modbus_allow: vec![],
            modbus_write: Writers::Everyone,
            modbus_writers: vec![],
            login_timeout_s: 600,
            password_days: 90,
            http_enabled: true,
            https_enabled: true,
            ssh_enabled: true,
            modbus_enabled: true,
            mbtls_enabled: false,
            dhcp_enabled: true,
            ping_enabled: true,
            upgrade_enabled: false,
            debug_enabled: false,
            ntp_server: String::new(),
            ip_address: Ipv4Addr::new(192, 168, 7, 18),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: None,
            dns: None,
            sysfs_root: "/sys".into(),
            led_rs485_green: "rs485:green".into(),
            led_rs485_yellow: "rs485:yellow".into(),
            led_net_green: "net:green".into(),
            led_net_yellow: "net:yellow".into(),
            net_interface: "eth0".into(),
            button_device: String::new(),
            watchdog_device: String::new(),
            mdns_enabled: true,
            syslog_enabled: false,
            syslog_server: String::new(),
            syslog_port: 514,
            syslog_transport: SyslogTransport::Udp,
        }
    }
}

/// Where a setting belongs: its page, and its part of the configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The UPS link, Modbus TCP and RS485.
    Modbus,
    /// Logins and passwords.
    Accounts,
    /// The services of the Control page.
    Services,
    Network,
    Time,
    /// The board's devices: set once by whoever installs the card.
    Board,
}

/// One setting, declared once: the pages, the configuration file, the console, the
/// `settings` command and `--set` all read this table.
#[derive(Debug)]
pub struct Def {
    pub key: Key,
    /// The name an operator reads (pages, events, the configuration file).
    pub label: &'static str,
    /// What it does and what it takes.
    pub help: &'static str,
    pub section: Section,
    /// Takes effect in the running card at once; otherwise at the next start.
    pub live: bool,
    /// Only the admin may change it (read/write users may change the others).
    pub admin_only: bool,
    /// How it is typed in and shown.
    pub kind: Kind,
    /// Beside a field that offers its choices (so the help need not spell them out):
    /// what to know in the help's place.
    pub note: Option<&'static str>,
}

/// How a setting is typed in (a form's field, the configuration file's value) and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number, within its bounds ([`NUMBERS`]).
    Number,
    /// A whole number, or `auto`.
    NumberOrAuto,
    /// `true` or `false`, shown in these words.
    Switch {
        on: &'static str,
        off: &'static str,
    },
    /// One of these values, each shown in its words.
    Choice(&'static [(&'static str, &'static str)]),
    Text,
}

impl Kind {
    /// The values to choose among, with their words; empty where the value is typed.
    pub fn choices(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Kind::Switch { on, off } => vec![("true", on), ("false", off)],
            Kind::Choice(list) => list.to_vec(),
            _ => vec![],
        }
    }
}

/// Most switches read On and Off.
const ON_OFF: Kind = Kind::Switch {
    on: "On",
    off: "Off",
};
/// [`UPS_BAUDS`], and detection.
const UPS_BAUD_CHOICES: Kind = Kind::Choice(&[
    ("0", "Detect (57600, 19200 or 9600)"),
    ("57600", "57600 baud"),
    ("19200", "19200 baud"),
    ("9600", "9600 baud"),
]);
/// [`RS485_BAUDS`].
const RS485_BAUD_CHOICES: Kind = Kind::Choice(&[
    ("1200", "1200 baud"),
    ("2400", "2400 baud"),
    ("9600", "9600 baud"),
    ("19200", "19200 baud"),
    ("57600", "57600 baud"),
]);
const ROUTINGS: Kind = Kind::Choice(&[
    ("ups", "To the UPS only"),
    ("transparent", "Transparent (unit id = RTU address)"),
]);
const WRITERS: Kind = Kind::Choice(&[
    ("everyone", "Every master"),
    ("listed", "Only the masters listed below"),
    ("nobody", "No master: read only"),
]);
const SYSLOG_TRANSPORTS: Kind = Kind::Choice(&[
    ("udp", "UDP"),
    ("tcp", "TCP (RFC 6587 octet counting)"),
    ("tls", "TLS 1.3 (RFC 5425)"),
]);
const DHCP: Kind = Kind::Switch {
    on: "DHCP (BootP)",
    off: "Static address",
};

const fn def(
    key: Key,
    kind: Kind,
    label: &'static str,
    help: &'static str,
    section: Section,
    live: bool,
) -> Def {
    Def {
        key,
        label,
        help,
        section,
        live,
        admin_only: false,
        kind,
        note: None,
    }
}

/// A setting only the admin changes: who can reach the card.
const fn admin(
    key: Key,
    kind: Kind,
    label: &'static str,
    help: &'static str,
    section: Section,
) -> Def {
    Def {
        admin_only: true,
        ..def(key, kind, label, help, section, true)
    }
}

/// The board's devices: the admin's, text, read at the next start.
const fn board(key: Key, label: &'static str, help: &'static str) -> Def {
    admin(key, Kind::Text, label, help, Section::Board).at_next_start()
}

impl Def {
    const fn at_next_start(self) -> Def {
        Def {
            live: false,
            ..self
        }
    }

    const fn note(self, note: &'static str) -> Def {
        Def {
            note: Some(note),
            ..self
        }
    }
}

use Kind::{Number, NumberOrAuto, Text};
use Section::*;

/// Every setting, in the order pages list them.
#[rustfmt::skip]
pub const DEFS: [Def; 44] = [
    def(Key::UpsBaud, UPS_BAUD_CHOICES, "UPS baud rate", "0 = detect among 57600, 19200 and 9600; or one of those rates", Modbus, true)
        .note("Detected when the card starts, or fixed."),
    def(Key::UpsSlave, Number, "UPS slave number", "the UPS's address on its serial link, 1 to 247", Modbus, true),
    def(Key::SerialTimeoutMs, Number, "Serial timeout (ms)", "how long the UPS has to answer; not below the lowest sane value for the baud rate", Modbus, true),
    def(Key::PollRateS, Number, "Polling rate (s)", "a control frame every this many seconds when nothing else shows the UPS is there; 0 = off", Modbus, true),
    def(Key::ModbusPort, Number, "Modbus TCP port", "1 to 65535", Modbus, true),
    def(Key::ModbusTimeoutS, Number, "Modbus TCP timeout (s)", "an idle session is closed after this long; 0 = never", Modbus, true),
    def(Key::Routing, ROUTINGS, "Unit id routing", "ups: unit ids 0, 255 and the UPS slave number reach the UPS; transparent: every unit id is an RTU address", Modbus, true)
        .note("To the UPS only: unit ids 0, 255 and the UPS slave number reach the UPS, others get exception 0A at once. Transparent: every unit id is an RTU address on the link."),
    def(Key::Rs485Slave, Number, "RS485 slave number", "the card's address on RS485, 1 to 174", Modbus, true),
    def(Key::Rs485Baud, RS485_BAUD_CHOICES, "RS485 baud rate", "1200, 2400, 9600, 19200 or 57600", Modbus, true)
        .note("The RS485 master's rate (NUT's socomec_jbus driver speaks 9600)."),
    def(Key::Rs485TimeoutS, Number, "RS485 silence before RTU lost (s)", "\"RTU communication lost\" after this long without a frame; 0 = never", Modbus, true),
    def(Key::FrameGapUs, NumberOrAuto, "UPS link frame gap (µs)", "silence between frames on the UPS link; auto = 3.5 characters", Modbus, true),
    def(Key::ModbusEvictIdleS, Number, "Idle session gives way after (s)", "with all 3 sessions in use, a new master takes the slot of a session idle this long; 0 = never", Modbus, true),
    admin(Key::ModbusAllow, Text, "Masters allowed", "networks that may connect to Modbus TCP, e.g. 192.168.1.0/24, 10.0.0.5; empty = everyone", Modbus),
    admin(Key::ModbusWrite, WRITERS, "Writes allowed from", "everyone, listed (only the networks below) or nobody: others may only read, anything else gets exception 01", Modbus)
        .note("A write from any other master gets exception 01 (illegal function) and never reaches the UPS."),
    admin(Key::ModbusWriters, Text, "Masters that may write", "networks that may write when writes are allowed from listed ones", Modbus),
    def(Key::LoginTimeoutS, Number, "Login timeout (s)", "a web or console session ends after this long without activity; at least 30", Accounts, true),
    def(Key::PasswordDays, Number, "First login reset (days)", "a password must be changed after this many days; 0 = never", Accounts, true),
    admin(Key::HttpEnabled, ON_OFF, "HTTP", "plain web access", Services),
    admin(Key::HttpsEnabled, ON_OFF, "HTTPS", "secure web access", Services),
    admin(Key::SshEnabled, ON_OFF, "SSH", "the SSH console", Services),
    admin(Key::ModbusEnabled, ON_OFF, "Modbus TCP", "plain Modbus TCP on the Modbus TCP port (502); off leaves Modbus/TCP Security alone", Services),
    admin(Key::MbtlsEnabled, ON_OFF, "Modbus/TCP Security", "Modbus over TLS with client certificates and roles (port 802)", Services),
    def(Key::DhcpEnabled, DHCP, "BootP/DHCP", "take the address from a DHCP server; off: the static address", Services, true)
        .note("Without an answer from a DHCP server the card uses 192.168.7.18/24 until one answers."),
    def(Key::PingEnabled, ON_OFF, "PING echo", "answer ping", Services, true),
    def(Key::UpgradeEnabled, ON_OFF, "Network upgrade", "firmware may be uploaded over the network", Services, true),
    def(Key::DebugEnabled, ON_OFF, "Modbus debug", "the frame log page", Services, true),
    def(Key::MdnsEnabled, ON_OFF, "DNS-SD (mDNS)", "announce the card's services on the local network, so that modbus-card find and other browsers see it", Services, true),
    def(Key::NtpServer, Text, "NTP server", "host name or address, with an optional :port; empty = set the clock by hand", Time, true),
    def(Key::IpAddress, Text, "IP address", "the static address, used while DHCP is off", Network, true),
    def(Key::Netmask, Text, "Subnet mask", "of the static address", Network, true),
    def(Key::Gateway, Text, "Gateway", "empty = none", Network, true),
    def(Key::Dns, Text, "DNS server", "empty = none", Network, true),
    def(Key::SyslogEnabled, ON_OFF, "Remote syslog", "send every event-log entry to the log server as RFC 5424 syslog", Network, true),
    def(Key::SyslogServer, Text, "Syslog server", "host name or address of the log server; empty = none", Network, true),
    def(Key::SyslogPort, Number, "Syslog port", "1 to 65535; 514 is usual for UDP and TCP, 6514 for TLS", Network, true),
    def(Key::SyslogTransport, SYSLOG_TRANSPORTS, "Syslog transport", "udp, tcp (RFC 6587 octet counting) or tls (RFC 5425, TLS 1.3, the server checked against the CA uploaded for syslog)", Network, true)
        .note("UDP is what most log servers take at first; TCP loses nothing on a busy network; TLS also keeps the log private and checks the server against the CA uploaded below."),
    board(Key::SysfsRoot, "sysfs root", "where the LED and network files are"),
    board(Key::LedRs485Green, "RS485 green LED", "LED name under sysfs_root/class/leds; empty = none"),
    board(Key::LedRs485Yellow, "RS485 yellow LED", "LED name under sysfs_root/class/leds; empty = none"),
    board(Key::LedNetGreen, "Network green LED", "LED name under sysfs_root/class/leds; empty = none"),
    board(Key::LedNetYellow, "Network yellow LED", "LED name under sysfs_root/class/leds; empty = none"),
    board(Key::NetInterface, "Network interface", "the Ethernet interface, e.g. eth0"),
    board(Key::ButtonDevice, "Reset button device", "its input device, e.g. /dev/input/event0; empty = none"),
    board(Key::WatchdogDevice, "Watchdog device", "e.g. /dev/watchdog; empty = none"),
];

/// The declaration of `key`.
pub fn def_of(key: Key) -> &'static Def {
    // DEFS lists the keys in the order of Key::ALL (a test checks).
    &DEFS[key as usize]
}

/// The declaration of a setting named as text; `None` for a name this firmware does not
/// know.
pub fn def_named(name: &str) -> Option<&'static Def> {
    Key::named(name).map(def_of)
}

/// Why a user who is not admin may not change `def` (an admin-only setting), in words.
pub fn admin_reason(def: &Def) -> &'static str {
    if def.section == Section::Board {
        "only admin changes the board's devices"
    } else {
        "only admin decides who can reach the card"
    }
}

/// The label of `key`, as the pages and the console name it.
pub fn label(key: Key) -> &'static str {
    def_of(key).label
}

/// A refusal's rule as a person reads it beside the setting's label: without the key the
/// message starts with, capitalised.
pub fn rule(key: impl AsRef<str>, message: &str) -> String {
    let text = message
        .strip_prefix(key.as_ref())
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message);
    capitalised(text)
}

fn capitalised(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Every key, in the order pages list them.
pub fn keys() -> impl Iterator<Item = Key> {
    Key::ALL.into_iter()
}

/// How an empty value reads (a setting that takes none: no gateway, no NTP server).
pub const NONE: &str = "none";

/// A value as a person reads it, on the pages and on the console alike: the words of a
/// choice or a switch; [`NONE`] for an empty value.
pub fn shown(key: Key, value: &str) -> String {
    if value.is_empty() {
        return NONE.into();
    }
    def_of(key)
        .kind
        .choices()
        .into_iter()
        .find(|(v, _)| *v == value)
        .map_or_else(|| value.to_string(), |(_, words)| words.to_string())
}

/// "Label: old → new" for each change, on the pages and on the console alike (the
/// console's terminals speak UTF-8; an ASCII "->" would be escaped in a page's HTML).
pub fn summary(diffs: &[Diff]) -> Vec<String> {
    diffs
        .iter()
        .map(|d| {
            format!(
                "{}: {} → {}",
                label(d.key),
                shown(d.key, &d.old),
                shown(d.key, &d.new)
            )
        })
        .collect()
}

/// A value refused, and why (the text names what is allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One setting that a change alters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    pub key: Key,
    pub old: String,
    pub new: String,
}

impl Settings {
    /// The value under `key`, as stored.
    pub fn get(&self, key: Key) -> String {
        match key {
            Key::UpsBaud => self.ups_baud.to_string(),
            Key::UpsSlave => self.ups_slave.to_string(),
            Key::SerialTimeoutMs => self.serial_timeout_ms.to_string(),
            Key::PollRateS => self.poll_rate_s.to_string(),
            Key::ModbusPort => self.modbus_port.to_string(),
            Key::ModbusTimeoutS => self.modbus_timeout_s.to_string(),
            Key::Routing => match self.routing {
                Routing::Ups => "ups".into(),
                Routing::Transparent => "transparent".into(),
            },
            Key::Rs485Slave => self.rs485_slave.to_string(),
            Key::Rs485Baud => self.rs485_baud.to_string(),
            Key::Rs485TimeoutS => self.rs485_timeout_s.to_string(),
            Key::FrameGapUs => self.frame_gap_us.map_or("auto".into(), |v| v.to_string()),
            Key::ModbusEvictIdleS => self.modbus_evict_idle_s.to_string(),
            Key::ModbusAllow => access::list_text(&self.modbus_allow),
            Key::ModbusWrite => match self.modbus_write {
                Writers::Everyone => "everyone".into(),
                Writers::Listed => "listed".into(),
                Writers::Nobody => "nobody".into(),
            },
            Key::ModbusWriters => access::list_text(&self.modbus_writers),
            Key::LoginTimeoutS => self.login_timeout_s.to_string(),
            Key::PasswordDays => self.password_days.to_string(),
            Key::HttpEnabled => self.http_enabled.to_string(),
            Key::HttpsEnabled => self.https_enabled.to_string(),
            Key::SshEnabled => self.ssh_enabled.to_string(),
            Key::ModbusEnabled => self.modbus_enabled.to_string(),
            Key::MbtlsEnabled => self.mbtls_enabled.to_string(),
            Key::DhcpEnabled => self.dhcp_enabled.to_string(),
            Key::PingEnabled => self.ping_enabled.to_string(),
            Key::UpgradeEnabled => self.upgrade_enabled.to_string(),
            Key::DebugEnabled => self.debug_enabled.to_string(),
            Key::NtpServer => self.ntp_server.clone(),
            Key::IpAddress => self.ip_address.to_string(),
            Key::Netmask => self.netmask.to_string(),
            Key::Gateway => self.gateway.map(|a| a.to_string()).unwrap_or_default(),
            Key::Dns => self.dns.map(|a| a.to_string()).unwrap_or_default(),
            Key::SysfsRoot => self.sysfs_root.clone(),
            Key::LedRs485Green => self.led_rs485_green.clone(),
            Key::LedRs485Yellow => self.led_rs485_yellow.clone(),
            Key::LedNetGreen => self.led_net_green.clone(),
            Key::LedNetYellow => self.led_net_yellow.clone(),
            Key::NetInterface => self.net_interface.clone(),
            Key::ButtonDevice => self.button_device.clone(),
            Key::WatchdogDevice => self.watchdog_device.clone(),
            Key::MdnsEnabled => self.mdns_enabled.to_string(),
            Key::SyslogEnabled => self.syslog_enabled.to_string(),
            Key::SyslogServer => self.syslog_server.clone(),
            Key::SyslogPort => self.syslog_port.to_string(),
            Key::SyslogTransport => self.syslog_transport.name().into(),
        }
    }

    /// A copy with `changes` (key, value) made, each value checked on its own and then the
    /// whole checked together ([`Settings::check`]), and the settings it alters. Every
    /// refusal is reported, not only the first.
    pub fn change<K: AsRef<str>>(
        &self,
        changes: &[(K, &str)],
    ) -> Result<(Settings, Vec<Diff>), Vec<Refusal>> {
        let mut new = self.clone();
        let mut refused = vec![];
        for (key, value) in changes {
            if let Err(e) = new.set(key, value) {
                refused.push(Refusal {
                    key: key.as_ref().to_string(),
                    message: e.to_string(),
                });
            }
        }
        if refused.is_empty() {
            if let Err(mut whole) = new.check() {
                refused.append(&mut whole);
            }
        }
        if !refused.is_empty() {
            return Err(refused);
        }
        let diffs = keys()
            .filter_map(|key| {
                let (old, new) = (self.get(key), new.get(key));
                (old != new).then_some(Diff { key, old, new })
            })
            .collect();
        Ok((new, diffs))
    }

    /// The rules between settings: the serial timeout against the slowest baud rate the
    /// link may use, the static address against its mask and gateway.
    pub fn check(&self) -> Result<(), Vec<Refusal>> {
        let mut refused = vec![];
        let floor = self.min_serial_timeout_ms();
        if self.serial_timeout_ms < floor {
            let baud = self.slowest_ups_baud();
            let why = if self.ups_baud == 0 {
                format!("at {baud} baud, the slowest rate detection may find")
            } else {
                format!("at {baud} baud")
            };
            refused.push(Refusal {
                key: Key::SerialTimeoutMs.name().into(),
                message: format!(
                    "serial_timeout_ms: {} ms is below the lowest sane timeout of {floor} ms {why}",
                    self.serial_timeout_ms
                ),
            });
        }
        let (ip, mask) = (u32::from(self.ip_address), u32::from(self.netmask));
        let host = ip & !mask;
        if host == 0 || host == !mask {
            refused.push(Refusal {
                key: Key::IpAddress.name().into(),
                message: format!(
                    "ip_address: {} is the network's own or broadcast address with mask {}",
                    self.ip_address, self.netmask
                ),
            });
        }
        if let Some(gw) = self.gateway {
            if u32::from(gw) & mask != ip & mask || gw == self.ip_address {
                refused.push(Refusal {
                    key: Key::Gateway.name().into(),
                    message: format!(
                        "gateway: {gw} is not another address of the network {}/{}",
                        Ipv4Addr::from(ip & mask),
                        mask.leading_ones()
                    ),
                });
            }
        }
        if self.modbus_write == Writers::Listed && self.modbus_writers.is_empty() {
            refused.push(Refusal {
                key: Key::ModbusWriters.name().into(),
                message: "modbus_writers: writes are allowed from listed networks, but none is \
                          listed: list one, or allow writes from nobody"
                    .into(),
            });
        }
        if self.syslog_enabled && self.syslog_server.is_empty() {
            refused.push(Refusal {
                key: Key::SyslogServer.name().into(),
                message: "syslog_server: remote syslog is on but no server is given: give one, \
                          or turn remote syslog off"
                    .into(),
            });
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(refused)
        }
    }

    /// Sets `key` from text, refusing values the card cannot work with; the error says
    /// what is allowed. Rules between settings are [`Settings::check`]'s.
    pub fn set(&mut self, key: impl AsRef<str>, value: &str) -> Result<(), SetError> {
        let key = Key::parse(key.as_ref())?;
        self.assign(key, value.trim())
            .map_err(|why| SetError::Refused { key, why })
    }

    /// [`Settings::set`], refusing with why alone.
    fn assign(&mut self, key: Key, value: &str) -> Result<(), String> {
        // The message names the very bounds the check uses: those of [`NUMBERS`].
        let num = || -> Result<u64, String> {
            let (min, max) = range(key).expect("a numeric setting is in NUMBERS");
            value
                .parse::<u64>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| format!("'{value}' is not a number from {min} to {max}"))
        };
        match key {
            Key::UpsBaud => {
                let v = value
                    .parse::<u32>()
                    .ok()
                    .filter(|v| *v == 0 || UPS_BAUDS.contains(v));
                let Some(v) = v else {
                    return Err(format!(
                        "'{value}' is not 0 (detect) or one of {UPS_BAUDS:?}"
                    ));
                };
                self.ups_baud = v;
            }
            Key::UpsSlave => {
                self.ups_slave = num()? as u8;
            }
            Key::SerialTimeoutMs => self.serial_timeout_ms = num()? as u32,
            Key::PollRateS => self.poll_rate_s = num()? as u32,
            Key::ModbusPort => {
                self.modbus_port = num()? as u16;
            }
            Key::ModbusTimeoutS => self.modbus_timeout_s = num()? as u32,
            Key::Routing => {
                self.routing = match value {
                    "ups" => Routing::Ups,
                    "transparent" => Routing::Transparent,
                    _ => return Err(format!("'{value}' is not 'ups' or 'transparent'")),
                }
            }
            Key::Rs485Slave => {
                self.rs485_slave = num()? as u8;
            }
            Key::Rs485Baud => {
                let v = value
                    .parse::<u32>()
                    .ok()
                    .filter(|v| RS485_BAUDS.contains(v));
                let Some(v) = v else {
                    return Err(format!("'{value}' is not one of {RS485_BAUDS:?}"));
                };
                self.rs485_baud = v;
            }
            Key::Rs485TimeoutS => self.rs485_timeout_s = num()? as u32,
            Key::FrameGapUs => {
                self.frame_gap_us = if value == "auto" {
                    None
                } else {
                    Some(num()? as u32)
                }
            }
            Key::ModbusEvictIdleS => self.modbus_evict_idle_s = num()? as u32,
            Key::ModbusAllow => self.modbus_allow = access::parse_list(value)?,
            Key::ModbusWrite => {
                self.modbus_write = match value {
                    "everyone" => Writers::Everyone,
                    "listed" => Writers::Listed,
                    "nobody" => Writers::Nobody,
                    _ => return Err(format!("'{value}' is not everyone, listed or nobody")),
                }
            }
            Key::ModbusWriters => self.modbus_writers = access::parse_list(value)?,
            Key::LoginTimeoutS => {
                self.login_timeout_s = num()? as u32;
            }
            Key::PasswordDays => self.password_days = num()? as u32,
            Key::HttpEnabled => self.http_enabled = flag(value)?,
            Key::HttpsEnabled => self.https_enabled = flag(value)?,
            Key::SshEnabled => self.ssh_enabled = flag(value)?,
            Key::ModbusEnabled => self.modbus_enabled = flag(value)?,
            Key::MbtlsEnabled => self.mbtls_enabled = flag(value)?,
            Key::DhcpEnabled => self.dhcp_enabled = flag(value)?,
            Key::PingEnabled => self.ping_enabled = flag(value)?,
            Key::UpgradeEnabled => self.upgrade_enabled = flag(value)?,
            Key::DebugEnabled => self.debug_enabled = flag(value)?,
            Key::NtpServer => self.ntp_server = host_port(value)?,
            Key::IpAddress => self.ip_address = host_address(value)?,
            Key::Netmask => self.netmask = netmask(value)?,
            Key::Gateway => self.gateway = optional(value, host_address)?,
            Key::Dns => self.dns = optional(value, host_address)?,
            Key::SysfsRoot => self.sysfs_root = absolute_path(value, false)?,
            Key::LedRs485Green => self.led_rs485_green = file_name(value)?,
            Key::LedRs485Yellow => self.led_rs485_yellow = file_name(value)?,
            Key::LedNetGreen => self.led_net_green = file_name(value)?,
            Key::LedNetYellow => self.led_net_yellow = file_name(value)?,
            Key::NetInterface => {
                let v = file_name(value)?;
                if v.is_empty() || v.len() > 15 {
                    return Err(format!(
                        "'{v}' is not an interface name (1 to 15 characters)"
                    ));
                }
                self.net_interface = v;
            }
            Key::ButtonDevice => self.button_device = absolute_path(value, true)?,
            Key::WatchdogDevice => self.watchdog_device = absolute_path(value, true)?,
            Key::MdnsEnabled => self.mdns_enabled = flag(value)?,
            Key::SyslogEnabled => self.syslog_enabled = flag(value)?,
            Key::SyslogServer => {
                let v = host_port(value)?;
                if v.contains(':') {
                    return Err(format!(
                        "'{v}' is a host name or address alone: the port is syslog_port"
                    ));
                }
                self.syslog_server = v;
            }
            Key::SyslogPort => self.syslog_port = num()? as u16,
            Key::SyslogTransport => {
                self.syslog_transport = match value {
                    "udp" => SyslogTransport::Udp,
                    "tcp" => SyslogTransport::Tcp,
                    "tls" => SyslogTransport::Tls,
                    _ => return Err(format!("'{value}' is not udp, tcp or tls")),
                }
            }
        }
        Ok(())
    }

    /// The slowest rate the link may run at with these settings.
    pub fn slowest_ups_baud(&self) -> u32 {
        if self.ups_baud == 0 {
            *UPS_BAUDS.iter().min().unwrap()
        } else {
            self.ups_baud
        }
    }

    /// The lowest serial timeout that lets the longest exchange finish at the slowest rate
    /// the link may use: see [`min_serial_timeout`].
    pub fn min_serial_timeout_ms(&self) -> u32 {
        min_serial_timeout(self.slowest_ups_baud()).as_millis() as u32
    }

    pub fn serial_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.serial_timeout_ms))
    }
}

/// A switch: `true`/`false` (also on/off, yes/no, 1/0).
fn flag(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(format!("'{value}' is not true or false")),
    }
}

/// An address a host may have: not 0.0.0.0, loopback, multicast or broadcast.
fn host_address(value: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("'{value}' is not an IPv4 address such as 192.168.1.20"))?;
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
        return Err(format!("{a} cannot be a host's address"));
    }
    Ok(a)
}

/// A subnet mask: ones then zeros, from /8 to /30.
fn netmask(value: &str) -> Result<Ipv4Addr, String> {
    let m: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("'{value}' is not a mask such as 255.255.255.0"))?;
    let bits = u32::from(m);
    let ones = bits.leading_ones();
    if bits.count_ones() != ones || !(8..=30).contains(&ones) {
        return Err(format!(
            "{m} is not a subnet mask from 255.0.0.0 (/8) to 255.255.255.252 (/30)"
        ));
    }
    Ok(m)
}

/// Empty means none.
fn optional(
    value: &str,
    parse: fn(&str) -> Result<Ipv4Addr, String>,
) -> Result<Option<Ipv4Addr>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

/// A host name or IPv4 address, with an optional port; empty means none.
fn host_port(value: &str) -> Result<String, String> {
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (value, None),
    };
    let host_ok = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if value.is_empty() || (host_ok && port_ok) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "'{value}' is not a host name or address (with an optional :port)"
        ))
    }
}

/// An absolute path without `..`; empty allowed where `may_be_empty` (meaning none).
fn absolute_path(value: &str, may_be_empty: bool) -> Result<String, String> {
    if value.is_empty() && may_be_empty {
        return Ok(String::new());
    }
    let clean = value.starts_with('/')
        && !value.split('/').any(|p| p == "..")
        && !value.chars().any(char::is_control);
    if !clean || value.len() > 255 {
        return Err(format!("'{value}' is not an absolute path"));
    }
    Ok(value.to_owned())
}

/// One name inside a folder (an LED, an interface); empty means none.
fn file_name(value: &str) -> Result<String, String> {
    let ok = value.len() <= 64
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.@".contains(&b));
    if !ok {
        return Err(format!(
            "'{value}' is not a plain name (letters, digits, - _ : . @)"
        ));
    }
    Ok(value.to_owned())
}

/// Time the UPS is allowed to think between a request and its answer.
pub const UPS_TURNAROUND: Duration = Duration::from_millis(20);

/// The lowest sane serial timeout at `baud`: the longest exchange a master can ask for
/// (8-byte read request + 255-byte answer of 125 registers, or the same in a write), the
/// silence that ends each frame, and the UPS's turnaround, rounded up to the next 10 ms.
pub fn min_serial_timeout(baud: u32) -> Duration {
    let exchange = rtu::wire_time(baud, 8 + 255) + rtu::t35(baud) * 2 + UPS_TURNAROUND;
    let ms = exchange.as_micros().div_ceil(1000) as u64;
    Duration::from_millis(ms.div_ceil(10) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every numeric setting, at min−1, min, max and max+1: the refusal names the bounds
    /// that the check uses.
    #[test]
    fn numbers_are_refused_with_the_bounds_they_are_checked_against() {
        for def in DEFS.iter() {
            let default = Settings::default().get(def.key);
            let numeric = default.parse::<u64>().is_ok() || def.key == Key::FrameGapUs;
            let choices = def.key.name().ends_with("_baud");
            assert_eq!(
                range(def.key).is_some(),
                numeric && !choices,
                "{} in NUMBERS",
                def.key
            );
        }
        for (key, min, max) in NUMBERS {
            let bounds = format!("is not a number from {min} to {max}");
            let mut s = Settings::default();
            s.set(key, &min.to_string()).unwrap();
            s.set(key, &max.to_string()).unwrap();
            let below = min.checked_sub(1).map_or("-1".into(), |v| v.to_string());
            for bad in [below, (max + 1).to_string(), "x".into()] {
                let e = s.set(key, &bad).unwrap_err();
                assert!(e.to_string().contains(&bounds), "{key} = {bad}: {e}");
            }
        }
    }

    /// A setting's kind agrees with what it takes: its default and every choice are
    /// values it accepts, numbers are those with bounds, the baud choices are the rates.
    #[test]
    fn every_kind_fits_its_values() {
        let defaults = Settings::default();
        for def in &DEFS {
            let default = defaults.get(def.key);
            assert_eq!(
                matches!(def.kind, Kind::Number | Kind::NumberOrAuto),
                range(def.key).is_some(),
                "{}",
                def.key
            );
            match def.kind {
                Kind::Switch { .. } => assert!(default == "true" || default == "false"),
                Kind::Choice(list) => {
                    assert!(list.iter().any(|(v, _)| *v == default), "{}", def.key);
                    for (v, _) in list {
                        Settings::default().set(def.key, v).unwrap();
                    }
                }
                _ => assert!(default != "true" && default != "false", "{}", def.key),
            }
            assert_eq!(
                def.note.is_some(),
                !def.kind.choices().is_empty() && def.kind != ON_OFF
            );
        }
        let rates = |k: Key| -> Vec<u32> {
            let list = def_of(k).kind.choices();
            list.iter().map(|(v, _)| v.parse().unwrap()).collect()
        };
        assert_eq!(rates(Key::UpsBaud), [&[0][..], &UPS_BAUDS].concat());
        assert_eq!(rates(Key::Rs485Baud), RS485_BAUDS);
    }

    #[test]
    fn values_read_the_same_wherever_they_are_shown() {
        assert_eq!(shown(Key::Gateway, ""), "none");
        assert_eq!(shown(Key::DhcpEnabled, "false"), "Static address");
        assert_eq!(shown(Key::PingEnabled, "true"), "On");
        assert_eq!(shown(Key::UpsBaud, "0"), "Detect (57600, 19200 or 9600)");
        assert_eq!(shown(Key::IpAddress, "10.1.2.3"), "10.1.2.3");
        let (_, diffs) = Settings::default()
            .change(&[(Key::Gateway, "192.168.7.1"), (Key::PollRateS, "3")])
            .unwrap();
        assert_eq!(
            summary(&diffs),
            ["Polling rate (s): 10 → 3", "Gateway: none → 192.168.7.1"]
        );
    }

    #[test]
    fn every_key_round_trips() {
        let mut s = Settings::default();
        for key in keys() {
            let v = s.get(key);
            s.set(key, &v).unwrap();
        }
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn timeout_floor_depends_on_the_baud_rate() {
        assert_eq!(min_serial_timeout(9600), Duration::from_millis(310));
        assert_eq!(min_serial_timeout(19200), Duration::from_millis(170));
        assert_eq!(min_serial_timeout(57600), Duration::from_millis(70));
        let s = Settings::default();
        let err = s.change(&[("serial_timeout_ms", "100")]).unwrap_err();
        assert!(err[0].message.contains("310 ms"), "{err:?}");
        // Together with a fixed fast rate, the same timeout is fine, in either order.
        let (fast, diffs) = s
            .change(&[("serial_timeout_ms", "100"), ("ups_baud", "57600")])
            .unwrap();
        assert_eq!(fast.serial_timeout_ms, 100);
        assert_eq!(diffs.len(), 2);
        // Back to detection (9600 possible) would leave the timeout too short: refused,
        // unless the timeout goes up in the same change.
        let err = fast.change(&[("ups_baud", "0")]).unwrap_err();
        assert!(err[0].message.contains("310 ms"), "{err:?}");
        let (back, _) = fast
            .change(&[("ups_baud", "0"), ("serial_timeout_ms", "400")])
            .unwrap();
        assert_eq!((back.ups_baud, back.serial_timeout_ms), (0, 400));
    }

    #[test]
    fn a_change_reports_every_refusal_and_what_it_alters() {
        let s = Settings::default();
        let err = s
            .change(&[("rs485_slave", "0"), ("routing", "x"), ("poll_rate_s", "5")])
            .unwrap_err();
        let keys: Vec<_> = err.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["rs485_slave", "routing"]);
        let (_, diffs) = s
            .change(&[("poll_rate_s", "5"), ("routing", "ups")])
            .unwrap();
        assert_eq!(
            diffs,
            [Diff {
                key: Key::PollRateS,
                old: "10".into(),
                new: "5".into()
            }]
        );
    }

    #[test]
    fn the_static_address_fits_its_mask_and_gateway() {
        let s = Settings::default();
        let err = s.change(&[("gateway", "10.0.0.1")]).unwrap_err();
        assert!(err[0].message.contains("192.168.7.0/24"), "{err:?}");
        assert!(s.change(&[("ip_address", "192.168.7.255")]).is_err());
        assert!(s.change(&[("ip_address", "192.168.7.0")]).is_err());
        let (moved, _) = s
            .change(&[
                (Key::IpAddress, "10.1.2.3"),
                (Key::Netmask, "255.255.0.0"),
                (Key::Gateway, "10.1.0.1"),
            ])
            .unwrap();
        assert_eq!(moved.gateway, Some(Ipv4Addr::new(10, 1, 0, 1)));
    }

    #[test]
    fn every_key_is_declared_once_with_a_label() {
        // def_of finds a key's declaration by its place in Key::ALL.
        for (i, key) in Key::ALL.into_iter().enumerate() {
            assert_eq!(DEFS[i].key, key);
        }
        let mut seen = std::collections::HashSet::new();
        for d in &DEFS {
            assert!(seen.insert(d.key), "{} twice", d.key);
            assert!(!d.label.is_empty() && !d.help.is_empty());
            assert_eq!(Key::named(d.key.name()), Some(d.key));
        }
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let mut s = Settings::default();
        for (key, value, says) in [
            ("rs485_slave", "175", "174"),
            ("rs485_baud", "4800", "1200"),
            ("ups_baud", "38400", "57600"),
            ("routing", "x", "transparent"),
            ("http_enabled", "maybe", "true"),
            ("netmask", "255.0.255.0", "mask"),
            ("ip_address", "127.0.0.1", "host"),
            ("ip_address", "300.1.1.1", "IPv4"),
            ("ntp_server", "a b", "host"),
            ("led_net_green", "../x", "plain"),
            ("watchdog_device", "dev/wd", "absolute"),
            ("sysfs_root", "", "absolute"),
            ("login_timeout_s", "5", "30"),
        ] {
            let e = s.set(key, value).unwrap_err();
            assert!(
                matches!(e, SetError::Refused { key: k, .. } if k == key),
                "{e:?}"
            );
            assert!(e.to_string().starts_with(&format!("{key}: ")), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let e = s.set("nope", "1").unwrap_err();
        assert_eq!(e, SetError::Unknown("nope".into()));
        assert!(e.to_string().contains("unknown"));
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn board_and_network_values_are_accepted_in_their_usual_spellings() {
        let mut s = Settings::default();
        s.set("https_enabled", "off").unwrap();
        assert!(!s.https_enabled);
        assert_eq!(s.get(Key::HttpsEnabled), "false");
        s.set("ntp_server", "127.0.0.1:12300").unwrap();
        s.set("ntp_server", "pool.ntp.org").unwrap();
        s.set("gateway", "192.168.7.1").unwrap();
        assert_eq!(s.gateway, Some(Ipv4Addr::new(192, 168, 7, 1)));
        s.set("gateway", "").unwrap();
        assert_eq!(s.gateway, None);
        s.set("netmask", "255.255.0.0").unwrap();
        s.set("watchdog_device", "/dev/watchdog").unwrap();
        s.set("watchdog_device", "").unwrap();
    }
}
