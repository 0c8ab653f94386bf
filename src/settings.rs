//! The card's settings, with the defaults of the specification. They are stored in the
//! database as text under stable keys; [`Settings::set`] validates a value before it is
//! accepted, whoever offers it (command line, and later the web pages and console).

use crate::access::{self, Cidr, Writers};
use crate::modbus::rtu;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Baud rates the UPS link tries, fastest first.
pub const UPS_BAUDS: [u32; 3] = [57600, 19200, 9600];
/// Baud rates of the RS485 port.
pub const RS485_BAUDS: [u32; 5] = [1200, 2400, 9600, 19200, 57600];

/// The numeric settings and the bounds a value alone must be within (`min`, `max`); a
/// refusal names these bounds. How values go together is checked beyond this (the
/// serial timeout's lowest sane value at the baud rate).
pub const NUMBERS: [(&str, u64, u64); 12] = [
    ("ups_slave", 1, 247),
    ("serial_timeout_ms", 0, 60_000),
    ("poll_rate_s", 0, 86_400),
    ("modbus_port", 1, 65535),
    ("modbus_timeout_s", 0, 86_400),
    ("rs485_slave", 1, 174),
    ("rs485_timeout_s", 0, 86_400),
    ("frame_gap_us", 0, 100_000),
    ("modbus_evict_idle_s", 0, 86_400),
    ("login_timeout_s", 30, 86_400),
    ("password_days", 0, 3650),
    ("syslog_port", 1, 65535),
];

/// The bounds of a numeric setting.
pub fn range(key: &str) -> Option<(u64, u64)> {
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
    pub key: &'static str,
    /// The name an operator reads (pages, events, the configuration file).
    pub label: &'static str,
    /// What it does and what it takes.
    pub help: &'static str,
    pub section: Section,
    /// Takes effect in the running card at once; otherwise at the next start.
    pub live: bool,
    /// Only the admin may change it (read/write users may change the others).
    pub admin_only: bool,
}

const fn def(
    key: &'static str,
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
    }
}

/// A setting only the admin changes: who can reach the card.
const fn admin(
    key: &'static str,
    label: &'static str,
    help: &'static str,
    section: Section,
) -> Def {
    Def {
        key,
        label,
        help,
        section,
        live: true,
        admin_only: true,
    }
}

const fn board(key: &'static str, label: &'static str, help: &'static str) -> Def {
    Def {
        key,
        label,
        help,
        section: Section::Board,
        live: false,
        admin_only: true,
    }
}

use Section::*;

/// Every setting, in the order pages list them.
#[rustfmt::skip]
pub const DEFS: [Def; 42] = [
    def("ups_baud", "UPS baud rate", "0 = detect among 57600, 19200 and 9600; or one of those rates", Modbus, true),
    def("ups_slave", "UPS slave number", "the UPS's address on its serial link, 1 to 247", Modbus, true),
    def("serial_timeout_ms", "Serial timeout (ms)", "how long the UPS has to answer; not below the lowest sane value for the baud rate", Modbus, true),
    def("poll_rate_s", "Polling rate (s)", "a control frame every this many seconds when nothing else shows the UPS is there; 0 = off", Modbus, true),
    def("modbus_port", "Modbus TCP port", "1 to 65535", Modbus, true),
    def("modbus_timeout_s", "Modbus TCP timeout (s)", "an idle session is closed after this long; 0 = never", Modbus, true),
    def("routing", "Unit id routing", "ups: unit ids 0, 255 and the UPS slave number reach the UPS; transparent: every unit id is an RTU address", Modbus, true),
    def("rs485_slave", "RS485 slave number", "the card's address on RS485, 1 to 174", Modbus, true),
    def("rs485_baud", "RS485 baud rate", "1200, 2400, 9600, 19200 or 57600", Modbus, true),
    def("rs485_timeout_s", "RS485 silence before RTU lost (s)", "\"RTU communication lost\" after this long without a frame; 0 = never", Modbus, true),
    def("frame_gap_us", "UPS link frame gap (µs)", "silence between frames on the UPS link; auto = 3.5 characters", Modbus, true),
    def("modbus_evict_idle_s", "Idle session gives way after (s)", "with all 3 sessions in use, a new master takes the slot of a session idle this long; 0 = never", Modbus, true),
    admin("modbus_allow", "Masters allowed", "networks that may connect to Modbus TCP, e.g. 192.168.1.0/24, 10.0.0.5; empty = everyone", Modbus),
    admin("modbus_write", "Writes allowed from", "everyone, listed (only the networks below) or nobody: others may only read, anything else gets exception 01", Modbus),
    admin("modbus_writers", "Masters that may write", "networks that may write when writes are allowed from listed ones", Modbus),
    def("login_timeout_s", "Login timeout (s)", "a web or console session ends after this long without activity; at least 30", Accounts, true),
    def("password_days", "First login reset (days)", "a password must be changed after this many days; 0 = never", Accounts, true),
    admin("http_enabled", "HTTP", "plain web access", Services),
    admin("https_enabled", "HTTPS", "secure web access", Services),
    admin("ssh_enabled", "SSH", "the SSH console", Services),
    def("dhcp_enabled", "BootP/DHCP", "take the address from a DHCP server; off: the static address", Services, true),
    def("ping_enabled", "PING echo", "answer ping", Services, true),
    def("upgrade_enabled", "Network upgrade", "firmware may be uploaded over the network", Services, true),
    def("debug_enabled", "Modbus debug", "the frame log page", Services, true),
    def("mdns_enabled", "DNS-SD (mDNS)", "announce the card's services on the local network, so that modbus-card find and other browsers see it", Services, true),
    def("ntp_server", "NTP server", "host name or address, with an optional :port; empty = set the clock by hand", Time, true),
    def("ip_address", "IP address", "the static address, used while DHCP is off", Network, true),
    def("netmask", "Subnet mask", "of the static address", Network, true),
    def("gateway", "Gateway", "empty = none", Network, true),
    def("dns", "DNS server", "empty = none", Network, true),
    def("syslog_enabled", "Remote syslog", "send every event-log entry to the log server as RFC 5424 syslog", Network, true),
    def("syslog_server", "Syslog server", "host name or address of the log server; empty = none", Network, true),
    def("syslog_port", "Syslog port", "1 to 65535; 514 is usual for UDP and TCP, 6514 for TLS", Network, true),
    def("syslog_transport", "Syslog transport", "udp, tcp (RFC 6587 octet counting) or tls (RFC 5425, TLS 1.3, the server checked against the CA uploaded for syslog)", Network, true),
    board("sysfs_root", "sysfs root", "where the LED and network files are"),
    board("led_rs485_green", "RS485 green LED", "LED name under sysfs_root/class/leds; empty = none"),
    board("led_rs485_yellow", "RS485 yellow LED", "LED name under sysfs_root/class/leds; empty = none"),
    board("led_net_green", "Network green LED", "LED name under sysfs_root/class/leds; empty = none"),
    board("led_net_yellow", "Network yellow LED", "LED name under sysfs_root/class/leds; empty = none"),
    board("net_interface", "Network interface", "the Ethernet interface, e.g. eth0"),
    board("button_device", "Reset button device", "its input device, e.g. /dev/input/event0; empty = none"),
    board("watchdog_device", "Watchdog device", "e.g. /dev/watchdog; empty = none"),
];

/// The declaration of `key`.
pub fn def_of(key: &str) -> Option<&'static Def> {
    DEFS.iter().find(|d| d.key == key)
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
pub fn label(key: &str) -> &'static str {
    def_of(key).map_or("?", |d| d.label)
}

/// A refusal's rule as a person reads it beside the setting's label: without the key the
/// message starts with, capitalised.
pub fn rule(key: &str, message: &str) -> String {
    let text = message
        .strip_prefix(key)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message);
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Every key, in the order pages list them.
pub fn keys() -> impl Iterator<Item = &'static str> {
    DEFS.iter().map(|d| d.key)
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
    pub key: &'static str,
    pub old: String,
    pub new: String,
}

impl Settings {
    /// The value under `key`, as stored.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "ups_baud" => self.ups_baud.to_string(),
            "ups_slave" => self.ups_slave.to_string(),
            "serial_timeout_ms" => self.serial_timeout_ms.to_string(),
            "poll_rate_s" => self.poll_rate_s.to_string(),
            "modbus_port" => self.modbus_port.to_string(),
            "modbus_timeout_s" => self.modbus_timeout_s.to_string(),
            "routing" => match self.routing {
                Routing::Ups => "ups".into(),
                Routing::Transparent => "transparent".into(),
            },
            "rs485_slave" => self.rs485_slave.to_string(),
            "rs485_baud" => self.rs485_baud.to_string(),
            "rs485_timeout_s" => self.rs485_timeout_s.to_string(),
            "frame_gap_us" => self.frame_gap_us.map_or("auto".into(), |v| v.to_string()),
            "modbus_evict_idle_s" => self.modbus_evict_idle_s.to_string(),
            "modbus_allow" => access::list_text(&self.modbus_allow),
            "modbus_write" => match self.modbus_write {
                Writers::Everyone => "everyone".into(),
                Writers::Listed => "listed".into(),
                Writers::Nobody => "nobody".into(),
            },
            "modbus_writers" => access::list_text(&self.modbus_writers),
            "login_timeout_s" => self.login_timeout_s.to_string(),
            "password_days" => self.password_days.to_string(),
            "http_enabled" => self.http_enabled.to_string(),
            "https_enabled" => self.https_enabled.to_string(),
            "ssh_enabled" => self.ssh_enabled.to_string(),
            "dhcp_enabled" => self.dhcp_enabled.to_string(),
            "ping_enabled" => self.ping_enabled.to_string(),
            "upgrade_enabled" => self.upgrade_enabled.to_string(),
            "debug_enabled" => self.debug_enabled.to_string(),
            "ntp_server" => self.ntp_server.clone(),
            "ip_address" => self.ip_address.to_string(),
            "netmask" => self.netmask.to_string(),
            "gateway" => self.gateway.map(|a| a.to_string()).unwrap_or_default(),
            "dns" => self.dns.map(|a| a.to_string()).unwrap_or_default(),
            "sysfs_root" => self.sysfs_root.clone(),
            "led_rs485_green" => self.led_rs485_green.clone(),
            "led_rs485_yellow" => self.led_rs485_yellow.clone(),
            "led_net_green" => self.led_net_green.clone(),
            "led_net_yellow" => self.led_net_yellow.clone(),
            "net_interface" => self.net_interface.clone(),
            "button_device" => self.button_device.clone(),
            "watchdog_device" => self.watchdog_device.clone(),
            "mdns_enabled" => self.mdns_enabled.to_string(),
            "syslog_enabled" => self.syslog_enabled.to_string(),
            "syslog_server" => self.syslog_server.clone(),
            "syslog_port" => self.syslog_port.to_string(),
            "syslog_transport" => self.syslog_transport.name().into(),
            _ => return None,
        })
    }

    /// A copy with `changes` (key, value) made, each value checked on its own and then the
    /// whole checked together ([`Settings::check`]), and the settings it alters. Every
    /// refusal is reported, not only the first.
    pub fn change(&self, changes: &[(&str, &str)]) -> Result<(Settings, Vec<Diff>), Vec<Refusal>> {
        let mut new = self.clone();
        let mut refused = vec![];
        for (key, value) in changes {
            if let Err(message) = new.set(key, value) {
                refused.push(Refusal {
                    key: key.to_string(),
                    message,
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
                let (old, new) = (self.get(key)?, new.get(key)?);
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
                key: "serial_timeout_ms".into(),
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
                key: "ip_address".into(),
                message: format!(
                    "ip_address: {} is the network's own or broadcast address with mask {}",
                    self.ip_address, self.netmask
                ),
            });
        }
        if let Some(gw) = self.gateway {
            if u32::from(gw) & mask != ip & mask || gw == self.ip_address {
                refused.push(Refusal {
                    key: "gateway".into(),
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
                key: "modbus_writers".into(),
                message: "modbus_writers: writes are allowed from listed networks, but none is \
                          listed: list one, or allow writes from nobody"
                    .into(),
            });
        }
        if self.syslog_enabled && self.syslog_server.is_empty() {
            refused.push(Refusal {
                key: "syslog_server".into(),
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
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let value = value.trim();
        // The message names the very bounds the check uses: those of [`NUMBERS`].
        let num = || -> Result<u64, String> {
            let (min, max) = range(key).expect("a numeric setting is in NUMBERS");
            value
                .parse::<u64>()
                .ok()
                .filter(|v| (min..=max).contains(v))
                .ok_or_else(|| format!("{key}: '{value}' is not a number from {min} to {max}"))
        };
        match key {
            "ups_baud" => {
                let v = value
                    .parse::<u32>()
                    .ok()
                    .filter(|v| *v == 0 || UPS_BAUDS.contains(v));
                let Some(v) = v else {
                    return Err(format!(
                        "ups_baud: '{value}' is not 0 (detect) or one of {UPS_BAUDS:?}"
                    ));
                };
                self.ups_baud = v;
            }
            "ups_slave" => {
                self.ups_slave = num()? as u8;
            }
            "serial_timeout_ms" => self.serial_timeout_ms = num()? as u32,
            "poll_rate_s" => self.poll_rate_s = num()? as u32,
            "modbus_port" => {
                self.modbus_port = num()? as u16;
            }
            "modbus_timeout_s" => self.modbus_timeout_s = num()? as u32,
            "routing" => {
                self.routing = match value {
                    "ups" => Routing::Ups,
                    "transparent" => Routing::Transparent,
                    _ => return Err(format!("routing: '{value}' is not 'ups' or 'transparent'")),
                }
            }
            "rs485_slave" => {
                self.rs485_slave = num()? as u8;
            }
            "rs485_baud" => {
                let v = value
                    .parse::<u32>()
                    .ok()
                    .filter(|v| RS485_BAUDS.contains(v));
                let Some(v) = v else {
                    return Err(format!(
                        "rs485_baud: '{value}' is not one of {RS485_BAUDS:?}"
                    ));
                };
                self.rs485_baud = v;
            }
            "rs485_timeout_s" => self.rs485_timeout_s = num()? as u32,
            "frame_gap_us" => {
                self.frame_gap_us = if value == "auto" {
                    None
                } else {
                    Some(num()? as u32)
                }
            }
            "modbus_evict_idle_s" => self.modbus_evict_idle_s = num()? as u32,
            "modbus_allow" => {
                self.modbus_allow = access::parse_list(value).map_err(|e| format!("{key}: {e}"))?
            }
            "modbus_write" => {
                self.modbus_write = match value {
                    "everyone" => Writers::Everyone,
                    "listed" => Writers::Listed,
                    "nobody" => Writers::Nobody,
                    _ => {
                        return Err(format!(
                            "{key}: '{value}' is not everyone, listed or nobody"
                        ))
                    }
                }
            }
            "modbus_writers" => {
                self.modbus_writers =
                    access::parse_list(value).map_err(|e| format!("{key}: {e}"))?
            }
            "login_timeout_s" => {
                self.login_timeout_s = num()? as u32;
            }
            "password_days" => self.password_days = num()? as u32,
            "http_enabled" => self.http_enabled = flag(key, value)?,
            "https_enabled" => self.https_enabled = flag(key, value)?,
            "ssh_enabled" => self.ssh_enabled = flag(key, value)?,
            "dhcp_enabled" => self.dhcp_enabled = flag(key, value)?,
            "ping_enabled" => self.ping_enabled = flag(key, value)?,
            "upgrade_enabled" => self.upgrade_enabled = flag(key, value)?,
            "debug_enabled" => self.debug_enabled = flag(key, value)?,
            "ntp_server" => self.ntp_server = host_port(key, value)?,
            "ip_address" => self.ip_address = host_address(key, value)?,
            "netmask" => self.netmask = netmask(key, value)?,
            "gateway" => self.gateway = optional(key, value, host_address)?,
            "dns" => self.dns = optional(key, value, host_address)?,
            "sysfs_root" => self.sysfs_root = absolute_path(key, value, false)?,
            "led_rs485_green" => self.led_rs485_green = file_name(key, value)?,
            "led_rs485_yellow" => self.led_rs485_yellow = file_name(key, value)?,
            "led_net_green" => self.led_net_green = file_name(key, value)?,
            "led_net_yellow" => self.led_net_yellow = file_name(key, value)?,
            "net_interface" => {
                let v = file_name(key, value)?;
                if v.is_empty() || v.len() > 15 {
                    return Err(format!(
                        "net_interface: '{v}' is not an interface name (1 to 15 characters)"
                    ));
                }
                self.net_interface = v;
            }
            "button_device" => self.button_device = absolute_path(key, value, true)?,
            "watchdog_device" => self.watchdog_device = absolute_path(key, value, true)?,
            "mdns_enabled" => self.mdns_enabled = flag(key, value)?,
            "syslog_enabled" => self.syslog_enabled = flag(key, value)?,
            "syslog_server" => {
                let v = host_port(key, value)?;
                if v.contains(':') {
                    return Err(format!(
                        "{key}: '{v}' is a host name or address alone: the port is syslog_port"
                    ));
                }
                self.syslog_server = v;
            }
            "syslog_port" => self.syslog_port = num()? as u16,
            "syslog_transport" => {
                self.syslog_transport = match value {
                    "udp" => SyslogTransport::Udp,
                    "tcp" => SyslogTransport::Tcp,
                    "tls" => SyslogTransport::Tls,
                    _ => return Err(format!("{key}: '{value}' is not udp, tcp or tls")),
                }
            }
            _ => return Err(format!("unknown setting '{key}'")),
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
fn flag(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(format!("{key}: '{value}' is not true or false")),
    }
}

/// An address a host may have: not 0.0.0.0, loopback, multicast or broadcast.
fn host_address(key: &str, value: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("{key}: '{value}' is not an IPv4 address such as 192.168.1.20"))?;
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
        return Err(format!("{key}: {a} cannot be a host's address"));
    }
    Ok(a)
}

/// A subnet mask: ones then zeros, from /8 to /30.
fn netmask(key: &str, value: &str) -> Result<Ipv4Addr, String> {
    let m: Ipv4Addr = value
        .parse()
        .map_err(|_| format!("{key}: '{value}' is not a mask such as 255.255.255.0"))?;
    let bits = u32::from(m);
    let ones = bits.leading_ones();
    if bits.count_ones() != ones || !(8..=30).contains(&ones) {
        return Err(format!(
            "{key}: {m} is not a subnet mask from 255.0.0.0 (/8) to 255.255.255.252 (/30)"
        ));
    }
    Ok(m)
}

/// Empty means none.
fn optional(
    key: &str,
    value: &str,
    parse: fn(&str, &str) -> Result<Ipv4Addr, String>,
) -> Result<Option<Ipv4Addr>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(key, value).map(Some)
    }
}

/// A host name or IPv4 address, with an optional port; empty means none.
fn host_port(key: &str, value: &str) -> Result<String, String> {
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
            "{key}: '{value}' is not a host name or address (with an optional :port)"
        ))
    }
}

/// An absolute path without `..`; empty allowed where `may_be_empty` (meaning none).
fn absolute_path(key: &str, value: &str, may_be_empty: bool) -> Result<String, String> {
    if value.is_empty() && may_be_empty {
        return Ok(String::new());
    }
    let clean = value.starts_with('/')
        && !value.split('/').any(|p| p == "..")
        && !value.chars().any(char::is_control);
    if !clean || value.len() > 255 {
        return Err(format!("{key}: '{value}' is not an absolute path"));
    }
    Ok(value.to_owned())
}

/// One name inside a folder (an LED, an interface); empty means none.
fn file_name(key: &str, value: &str) -> Result<String, String> {
    let ok = value.len() <= 64
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.@".contains(&b));
    if !ok {
        return Err(format!(
            "{key}: '{value}' is not a plain name (letters, digits, - _ : . @)"
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
            let default = Settings::default().get(def.key).unwrap();
            let numeric = default.parse::<u64>().is_ok() || def.key == "frame_gap_us";
            let choices = def.key.ends_with("_baud");
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
                assert!(e.contains(&bounds), "{key} = {bad}: {e}");
            }
        }
    }

    #[test]
    fn every_key_round_trips() {
        let mut s = Settings::default();
        for key in keys() {
            let v = s.get(key).unwrap();
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
                key: "poll_rate_s",
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
                ("ip_address", "10.1.2.3"),
                ("netmask", "255.255.0.0"),
                ("gateway", "10.1.0.1"),
            ])
            .unwrap();
        assert_eq!(moved.gateway, Some(Ipv4Addr::new(10, 1, 0, 1)));
    }

    #[test]
    fn every_key_is_declared_once_with_a_label() {
        let mut seen = std::collections::HashSet::new();
        for d in &DEFS {
            assert!(seen.insert(d.key), "{} twice", d.key);
            assert!(!d.label.is_empty() && !d.help.is_empty());
            assert!(Settings::default().get(d.key).is_some(), "{}", d.key);
        }
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let mut s = Settings::default();
        assert!(s.set("rs485_slave", "175").unwrap_err().contains("174"));
        assert!(s.set("rs485_baud", "4800").unwrap_err().contains("1200"));
        assert!(s.set("ups_baud", "38400").unwrap_err().contains("57600"));
        assert!(s.set("routing", "x").unwrap_err().contains("transparent"));
        assert!(s.set("nope", "1").unwrap_err().contains("unknown"));
        assert!(s.set("http_enabled", "maybe").unwrap_err().contains("true"));
        assert!(s
            .set("netmask", "255.0.255.0")
            .unwrap_err()
            .contains("mask"));
        assert!(s
            .set("ip_address", "127.0.0.1")
            .unwrap_err()
            .contains("host"));
        assert!(s
            .set("ip_address", "300.1.1.1")
            .unwrap_err()
            .contains("IPv4"));
        assert!(s.set("ntp_server", "a b").unwrap_err().contains("host"));
        assert!(s
            .set("led_net_green", "../x")
            .unwrap_err()
            .contains("plain"));
        assert!(s
            .set("watchdog_device", "dev/wd")
            .unwrap_err()
            .contains("absolute"));
        assert!(s.set("sysfs_root", "").unwrap_err().contains("absolute"));
        assert!(s.set("login_timeout_s", "5").unwrap_err().contains("30"));
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn board_and_network_values_are_accepted_in_their_usual_spellings() {
        let mut s = Settings::default();
        s.set("https_enabled", "off").unwrap();
        assert!(!s.https_enabled);
        assert_eq!(s.get("https_enabled").unwrap(), "false");
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
