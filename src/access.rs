//! Who may use Modbus TCP: an allow-list of client networks checked when a master
//! connects, and write protection checked on each request. Modbus has no authentication of
//! its own, so this is what keeps a stray master on the plant network from switching the
//! UPS to bypass.
//!
//! Pure logic: the networks, and which function codes write.

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

/// Requests that change something in the UPS: writes, and diagnostics other than the
/// echo (sub-function 0), which restart or clear counters.
pub fn writes(pdu: &[u8]) -> bool {
    match pdu.first() {
        Some(
            &(WRITE_SINGLE_COIL
            | WRITE_SINGLE_REGISTER
            | WRITE_MULTIPLE_COILS
            | WRITE_MULTIPLE_REGISTERS
            | WRITE_FILE_RECORD
            | MASK_WRITE_REGISTER
            | READ_WRITE_MULTIPLE_REGISTERS),
        ) => true,
        Some(&DIAGNOSTICS) => pdu.get(1..3) != Some(&[0, 0]),
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
    fn writes_are_told_from_reads() {
        assert!(writes(&[0x06, 0x05, 0xB0, 0x00, 0x0A]));
        assert!(writes(&[0x10, 0, 0, 0, 1, 2, 0, 0]));
        assert!(writes(&[0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0]));
        assert!(!writes(&[0x03, 0x10, 0x60, 0x00, 0x01]));
        assert!(!writes(&[0x2B, 0x0E, 0x01, 0x00]));
        assert!(!writes(&[0x08, 0x00, 0x00, 0x12, 0x34]));
        assert!(writes(&[0x08, 0x00, 0x01, 0x00, 0x00]));
    }
}
