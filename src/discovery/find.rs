//! Finding cards on the local network: a DNS-SD browse for `_modbus._tcp`, for a bounded
//! time, each card resolved with what its TXT record tells.

use super::{IfKind, MODEL};
use mdns_sd::{ServiceDaemon, ServiceEvent};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// The address a card takes when no DHCP server answers.
pub const FALLBACK: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 18);

/// One card found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Card {
    /// "Modbus card BFA32B"
    pub instance: String,
    /// "modbus-card-bfa32b.local."
    pub host: String,
    pub addresses: Vec<Ipv4Addr>,
    pub modbus_port: u16,
    pub mac: String,
    pub firmware: String,
    /// The services on: modbus, https, http, ssh, mbap-s.
    pub services: Vec<String>,
    /// The UPS's model and rating, once the card has read them.
    pub ups_model: Option<String>,
    pub ups_kva: Option<String>,
    /// Said when the card is at its fallback address and this computer is not on that
    /// subnet: it cannot be reached until it is.
    pub note: Option<String>,
}

/// Browses for `wait` on `mdns_port`, on `interface` only when given.
pub fn find(wait: Duration, mdns_port: u16, interface: Option<&str>) -> Result<Vec<Card>, String> {
    let daemon = ServiceDaemon::new_with_port(mdns_port)
        .map_err(|e| format!("cannot start multicast DNS: {e}"))?;
    if let Some(name) = interface {
        let _ = daemon.disable_interface(vec![IfKind::All, IfKind::LoopbackV4, IfKind::LoopbackV6]);
        daemon
            .enable_interface(IfKind::Name(name.to_string()))
            .map_err(|e| format!("{name}: {e}"))?;
    }
    let events = daemon
        .browse(super::Service::Modbus.ty())
        .map_err(|e| format!("cannot browse: {e}"))?;
    let deadline = Instant::now() + wait;
    let mut cards = BTreeMap::new();
    let subnets = local_subnets();
    while let Ok(event) = events.recv_deadline(deadline) {
        let ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        let txt = |k: &str| info.get_property_val_str(k).unwrap_or("").to_string();
        let some = |k: &str| info.get_property_val_str(k).map(str::to_string);
        if txt("model") != MODEL {
            continue;
        }
        let mut addresses: Vec<Ipv4Addr> = info.get_addresses_v4().into_iter().collect();
        addresses.sort();
        let note = addresses
            .iter()
            .any(|a| *a == FALLBACK && !reachable(*a, &subnets))
            .then(|| {
                format!(
                    "at its fallback address {FALLBACK} (no DHCP answer), not on this \
                     computer's subnet: give this computer an address in 192.168.7.0/24 \
                     to reach it"
                )
            });
        let fullname = info.get_fullname();
        let instance = fullname
            .strip_suffix(&format!(".{}", super::Service::Modbus.ty()))
            .unwrap_or(fullname)
            .replace("\\ ", " ");
        cards.insert(
            fullname.to_string(),
            Card {
                instance,
                host: info.get_hostname().to_string(),
                addresses,
                modbus_port: info.get_port(),
                mac: txt("mac"),
                firmware: txt("fw"),
                services: txt("services")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                ups_model: some("ups_model"),
                ups_kva: some("ups_kva"),
                note,
            },
        );
    }
    let _ = daemon.shutdown();
    Ok(cards.into_values().collect())
}

/// Whether `a` is on the subnet of one of this computer's IPv4 addresses.
fn reachable(a: Ipv4Addr, subnets: &[(Ipv4Addr, Ipv4Addr)]) -> bool {
    subnets
        .iter()
        .any(|(ip, mask)| u32::from(*ip) & u32::from(*mask) == u32::from(a) & u32::from(*mask))
}

fn local_subnets() -> Vec<(Ipv4Addr, Ipv4Addr)> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let ip = a.address?.as_sockaddr_in()?.ip();
                    let mask = a.netmask?.as_sockaddr_in()?.ip();
                    (!ip.is_loopback()).then_some((ip, mask))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The table `find` prints.
pub fn table(cards: &[Card]) -> String {
    if cards.is_empty() {
        return "No card answered.\n".into();
    }
    let mut rows = vec![[
        "INSTANCE".to_string(),
        "IP".into(),
        "MAC".into(),
        "FIRMWARE".into(),
        "SERVICES".into(),
        "UPS".into(),
    ]];
    for c in cards {
        let ips: Vec<String> = c.addresses.iter().map(Ipv4Addr::to_string).collect();
        rows.push([
            c.instance.clone(),
            ips.join(","),
            c.mac.clone(),
            c.firmware.clone(),
            c.services.join(","),
            match (&c.ups_model, &c.ups_kva) {
                (Some(m), Some(k)) => format!("{m} {k} kVA"),
                (Some(m), None) => m.clone(),
                _ => String::new(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for c in cards {
        if let Some(note) = &c.note {
            out.push_str(&format!("{}: {note}\n", c.instance));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_address_is_flagged_off_its_subnet_only() {
        let home = [(Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(255, 255, 255, 0))];
        assert!(!reachable(FALLBACK, &home));
        let on = [(
            Ipv4Addr::new(192, 168, 7, 1),
            Ipv4Addr::new(255, 255, 255, 0),
        )];
        assert!(reachable(FALLBACK, &on));
    }
}
