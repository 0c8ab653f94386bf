//! Who may use Modbus TCP: an allow-list of client networks checked when a master
//! connects, and write protection checked on each request. Modbus has no authentication of
//! its own, so this is what keeps a stray master on the plant network from switching the
//! UPS to bypass.
//!
//! Pure logic: the networks, and which requests only read.

use crate::modbus::pdu::function::*;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// An IPv4 network, `a.b.c.d/n` (a lone address is a /32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: Ipv4Addr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return false,
            },
        };
        let mask = mask(self.prefix);
        u32::from(ip) & mask == u32::from(self.net)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let net: Ipv4Addr = addr.parse().map_err(|_| {
            format!("'{s}' is not an IPv4 address or network such as 192.168.1.0/24")
        })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("'{s}': the prefix length must be 0 to 32"))?;
        let base = Ipv4Addr::from(u32::from(net) & mask(prefix));
        if base != net {
            return Err(format!(
                "'{s}' has host bits set: the network is {base}/{prefix}"
            ));
        }
        Ok(Cidr { net, prefix })
    }
}

/// A list of networks as a setting holds it: separated by commas or spaces; empty is none.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

/// The canonical text of a list.
pub fn list_text(list: &[Cidr]) -> String {
    list.iter()
        .map(Cidr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True if `list` is empty (everyone) or holds `ip`.
pub fn allowed(list: &[Cidr], ip: IpAddr) -> bool {
    list.is_empty() || list.iter().any(|c| c.contains(ip))
}

/// Who may write through Modbus TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    Everyone,
    /// Only the networks of `modbus_writers`.
    Listed,
    Nobody,
}

/// MEI type of Read Device Identification, the one encapsulated request that only reads.
const READ_DEVICE_ID: u8 = 0x0E;

/// Requests that only read: what a master that may not write is allowed to send. An
/// allow-list, not a list of known writes, because a UPS may act on codes no list knows
/// (user-defined codes 0x41-0x48 and 0x64-0x6E, other MEI types): whatever is not known to
/// read is taken to write. Diagnostics pass only as the echo (sub-function 0); the others
/// restart the port, clear counters or force listen-only mode.
pub fn reads(pdu: &[u8]) -> bool {
    match pdu.first() {
        Some(
            &(READ_COILS
            | READ_DISCRETE_INPUTS
            | READ_HOLDING_REGISTERS
            | READ_INPUT_REGISTERS
            | READ_EXCEPTION_STATUS
            | GET_COMM_EVENT_COUNTER
            | GET_COMM_EVENT_LOG
            | REPORT_SERVER_ID
            | READ_FILE_RECORD
            | READ_FIFO_QUEUE),
        ) => true,
        Some(&DIAGNOSTICS) => pdu.get(1..3) == Some(&[0, 0]),
        Some(&ENCAPSULATED_INTERFACE) => pdu.get(1) == Some(&READ_DEVICE_ID),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_print_and_contain() {
        let list = parse_list("192.168.1.0/24, 10.0.0.5 172.16.0.0/12").unwrap();
        assert_eq!(
            list_text(&list),
            "192.168.1.0/24, 10.0.0.5/32, 172.16.0.0/12"
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allowed(&list, ip("192.168.1.200")));
        assert!(allowed(&list, ip("10.0.0.5")));
        assert!(!allowed(&list, ip("10.0.0.6")));
        assert!(allowed(&list, ip("::ffff:172.20.1.1")));
        assert!(allowed(&[], ip("8.8.8.8")));
        assert!(parse_list("0.0.0.0/0").unwrap()[0].contains(ip("1.2.3.4")));
    }

    #[test]
    fn bad_networks_say_what_is_wrong() {
        assert!(parse_list("192.168.1.5/24")
            .unwrap_err()
            .contains("192.168.1.0/24"));
        assert!(parse_list("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(parse_list("example.com").unwrap_err().contains("IPv4"));
    }

    #[test]
    fn only_known_reads_are_reads() {
        let reads_fc = |fc: u8| reads(&[fc, 0, 0, 0, 1]);
        // Sub-function 0 of diagnostics (08) is the echo.
        let listed = [
            0x01, 0x02, 0x03, 0x04, 0x07, 0x08, 0x0B, 0x0C, 0x11, 0x14, 0x18,
        ];
        for fc in 0..=0xFFu8 {
            assert_eq!(reads_fc(fc), listed.contains(&fc), "function {fc:#04x}");
        }
        // Diagnostics: the echo only.
        assert!(reads(&[0x08, 0x00, 0x00, 0x12, 0x34]));
        assert!(!reads(&[0x08, 0x00, 0x01, 0x00, 0x00]));
        assert!(!reads(&[0x08, 0x00, 0x04, 0x00, 0x00]));
        assert!(!reads(&[0x08]));
        // Encapsulated: Read Device Identification only.
        assert!(reads(&[0x2B, 0x0E, 0x01, 0x00]));
        assert!(!reads(&[0x2B, 0x0D, 0x00]));
        assert!(!reads(&[0x2B]));
        assert!(!reads(&[]));
    }
}
