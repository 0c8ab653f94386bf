//! DNS-SD over multicast DNS (RFC 6762/6763): the card announces its services so that an
//! installer finds it (`modbus-card find`, `avahi-browse -r _modbus._tcp`, `dns-sd -B
//! _modbus._tcp`, `http://modbus-card-xxxxxx.local/`). The protocol (probing, conflict
//! renames, goodbyes, answering queries) is the `mdns-sd` crate's, on a thread of its own;
//! here is what to announce, and keeping it in step with the card.
//!
//! What anyone on the LAN is told without a login: the model, the MAC (every frame the
//! card sends carries it anyway), the firmware version (the login page shows it too, and a
//! site keeping its cards up to date is helped more than an attacker, who can read it
//! there), which services are on (their ports answer anyway) and, once the UPS link has
//! read it, the UPS's model and rating (on its front panel, and what an installer looks
//! for among several cards). The UPS's serial number (an asset's identity, what its
//! maintenance contract is tied to) and the site's settings are not told: they need a
//! login. Every TXT string is sanitised (printable ASCII only) and cut to fit its 255
//! bytes.

pub mod find;

use crate::accounts::Mac;
use crossbeam_channel::Receiver;
use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The standard mDNS port.
pub const MDNS_PORT: u16 = 5353;
/// The model told in TXT records.
pub const MODEL: &str = "modbus-card";
/// How often the announcer compares what is announced with what the card serves (a port
/// change, a service turned off, a new address show within this).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A service the card may announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    Modbus,
    Https,
    Http,
    Ssh,
    /// Modbus/TCP Security (port 802), while `mbtls_enabled`.
    MbapS,
}

impl Service {
    /// The DNS-SD service type.
    pub fn ty(self) -> &'static str {
        match self {
            Service::Modbus => "_modbus._tcp.local.",
            Service::Https => "_https._tcp.local.",
            Service::Http => "_http._tcp.local.",
            Service::Ssh => "_ssh._tcp.local.",
            Service::MbapS => "_mbap-s._tcp.local.",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Modbus => "modbus",
            Service::Https => "https",
            Service::Http => "http",
            Service::Ssh => "ssh",
            Service::MbapS => "mbap-s",
        }
    }
}

/// What the card should announce now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wanted {
    /// `mdns_enabled`.
    pub on: bool,
    /// `net_interface`: announcements go there only.
    pub interface: String,
    /// Each service that is on, and where it listens. Only those listening on every
    /// address, or on one of the interface's, are announced: a service bound to loopback
    /// is not for the LAN (nor is a test card's).
    pub services: BTreeMap<Service, SocketAddr>,
    /// The UPS, once the link has read its identification.
    pub ups: Option<Ups>,
}

/// What the TXT tells of the UPS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ups {
    /// "DELPHYS MX", or "code 1234" for a model the card's map does not name.
    pub model: String,
    /// "20", "7.5".
    pub kva: Option<String>,
}

impl Ups {
    /// From the identification table the link last read; None while it has none.
    pub fn of(tables: &crate::ups::Tables) -> Option<Ups> {
        tables.identification.as_ref()?;
        let id = crate::ups::Tables {
            identification: tables.identification.clone(),
            ..Default::default()
        };
        let r = crate::ups::decode(&id);
        let model = match (r.model, r.model_code) {
            (Some(name), _) => name.to_string(),
            (None, Some(code)) => format!("code {code}"),
            (None, None) => return None,
        };
        Some(Ups {
            model,
            kva: r.power_kva.map(|k| format!("{k}")),
        })
    }
}

/// Who the card is, in every announcement.
#[derive(Debug, Clone)]
pub struct Identity {
    pub mac: Mac,
    pub version: String,
}

impl Identity {
    /// "Modbus card BFA32B"
    pub fn instance(&self) -> String {
        format!("Modbus card {}", self.mac.default_password())
    }

    /// "modbus-card-bfa32b.local."
    pub fn host(&self) -> String {
        format!("{}.local.", crate::syslog::host_name(&self.mac))
    }

    /// The TXT record of `service`, given every service that is on.
    pub fn txt(
        &self,
        service: Service,
        on: &BTreeMap<Service, u16>,
        ups: Option<&Ups>,
    ) -> Vec<(String, String)> {
        let services: Vec<&str> = on.keys().map(|s| s.name()).collect();
        let mut txt = vec![
            ("txtvers".to_string(), "1".to_string()),
            ("model".to_string(), MODEL.to_string()),
            ("mac".to_string(), self.mac.to_string()),
            ("fw".to_string(), self.version.clone()),
            ("services".to_string(), services.join(",")),
        ];
        if let Some(ups) = ups {
            txt.push(("ups_model".into(), ups.model.clone()));
            if let Some(kva) = &ups.kva {
                txt.push(("ups_kva".into(), kva.clone()));
            }
        }
        if matches!(service, Service::Http | Service::Https) {
            // RFC 6763 §6: the page a browser opens.
            txt.push(("path".into(), "/".into()));
        }
        txt.into_iter()
            .map(|(k, v)| {
                let v = txt_value(&k, &v);
                (k, v)
            })
            .collect()
    }
}

/// A TXT value as it may go on the LAN: printable ASCII only (what the UPS sends is not
/// trusted to be text), cut so that `key=value` fits the 255 bytes of one TXT string.
pub fn txt_value(key: &str, value: &str) -> String {
    let room = 255 - key.len() - 1;
    value
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(room)
        .collect()
}

/// The IPv4 addresses of `interface` (IPv4 only: A records).
pub fn addresses(interface: &str) -> Vec<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter(|a| a.interface_name == interface)
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts the announcer: every [`CHECK_EVERY`] (and when `poke` says a setting changed)
/// it asks `wanted` what to announce and changes only what differs; it ends, with
/// goodbyes, when `stop` is dropped.
pub fn spawn(
    identity: Identity,
    wanted: Box<dyn Fn() -> Wanted + Send>,
    mdns_port: u16,
    poke: Receiver<()>,
    stop: Receiver<()>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("dns-sd".into()).spawn(move || {
        let mut announcer = Announcer {
            identity,
            mdns_port,
            daemon: None,
            events: None,
            now: Now::default(),
        };
        loop {
            announcer.follow(wanted());
            crossbeam_channel::select! {
                recv(stop) -> _ => break,
                recv(poke) -> _ => {}
                default(CHECK_EVERY) => {}
            }
        }
        announcer.follow(Wanted::default());
    })
}

/// What is announced now.
#[derive(Debug, Default, PartialEq)]
struct Now {
    interface: String,
    addresses: Vec<Ipv4Addr>,
    /// Each service announced: its port and full name.
    services: BTreeMap<Service, (u16, String)>,
    ups: Option<Ups>,
}

struct Announcer {
    identity: Identity,
    mdns_port: u16,
    daemon: Option<ServiceDaemon>,
    /// The daemon's events: a name conflict's rename is said in the log.
    events: Option<mdns_sd::Receiver<DaemonEvent>>,
    now: Now,
}

impl Announcer {
    fn follow(&mut self, wanted: Wanted) {
        self.renames();
        let addresses = if wanted.on {
            addresses(&wanted.interface)
        } else {
            vec![]
        };
        let services: BTreeMap<Service, u16> = wanted
            .services
            .iter()
            .filter(|_| wanted.on)
            .filter(|(_, at)| match at.ip() {
                std::net::IpAddr::V4(ip) => ip.is_unspecified() || addresses.contains(&ip),
                std::net::IpAddr::V6(_) => false,
            })
            .map(|(s, at)| (*s, at.port()))
            .collect();
        let same_place = self.now.interface == wanted.interface && self.now.addresses == addresses;
        let ports: BTreeMap<Service, u16> = self
            .now
            .services
            .iter()
            .map(|(s, (p, _))| (*s, *p))
            .collect();
        if same_place && ports == services {
            if self.now.ups != wanted.ups && !services.is_empty() {
                // Only the TXT differs: announced again under the same names, without
                // goodbyes (the new TXT flushes the old from caches, RFC 6762 §10.2).
                self.now.ups = wanted.ups;
                self.register(&services, &addresses, &wanted.interface);
            }
            return;
        }
        self.now.ups = wanted.ups;
        if same_place && self.daemon.is_some() {
            // A service turned off, on, or moved: goodbyes for what went or moved only;
            // the others stay and are announced again for their TXT's list of services.
            let gone: Vec<Service> = ports
                .iter()
                .filter(|(s, p)| services.get(s) != Some(p))
                .map(|(s, _)| *s)
                .collect();
            self.withdraw(&gone);
        } else {
            // A new address or interface: everything goes, and is announced again there.
            let all: Vec<Service> = ports.keys().copied().collect();
            self.withdraw(&all);
        }
        self.now.interface = wanted.interface.clone();
        self.now.addresses = addresses.clone();
        if services.is_empty() {
            if let Some(daemon) = self.daemon.take() {
                let _ = daemon.shutdown();
            }
            self.events = None;
            return;
        }
        if self.daemon.is_none() || !same_place {
            // A new address: a daemon of its own that knows it at once, rather than
            // after its own look at the interfaces (every 5 s).
            if let Some(old) = self.daemon.take() {
                let _ = old.shutdown();
            }
            match self.start_daemon(&wanted.interface) {
                Ok(d) => {
                    self.events = d.monitor().ok();
                    self.daemon = Some(d);
                }
                Err(e) => {
                    log::warn!("dns-sd: cannot start on {}: {e}", wanted.interface);
                    return;
                }
            }
        }
        self.register(&services, &addresses, &wanted.interface);
    }

    /// Announces `services` (again, for a TXT change) as they are now.
    fn register(
        &mut self,
        services: &BTreeMap<Service, u16>,
        addresses: &[Ipv4Addr],
        interface: &str,
    ) {
        let Some(daemon) = self.daemon.as_ref() else {
            return;
        };
        let ips: Vec<std::net::IpAddr> = addresses.iter().map(|a| (*a).into()).collect();
        let mut announced = BTreeMap::new();
        for (&service, &port) in services {
            let txt = self.identity.txt(service, services, self.now.ups.as_ref());
            let info = ServiceInfo::new(
                service.ty(),
                &self.identity.instance(),
                &self.identity.host(),
                &ips[..],
                port,
                &txt.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>()[..],
            );
            let info = match info {
                Ok(mut info) => {
                    info.set_interfaces(vec![IfKind::Name(interface.to_string())]);
                    info
                }
                Err(e) => {
                    log::warn!("dns-sd: {}: {e}", service.ty());
                    continue;
                }
            };
            let fullname = info.get_fullname().to_string();
            match daemon.register(info) {
                Ok(()) => {
                    log::info!("dns-sd: announcing {fullname} on port {port}");
                    announced.insert(service, (port, fullname));
                }
                Err(e) => log::warn!("dns-sd: {fullname}: {e}"),
            }
        }
        self.now.services = announced;
    }

    /// Says in the log when probing found our name taken (another card, or a clone of
    /// this one) and mdns-sd took the next free one (RFC 6762 §9: "Modbus card BFA32B
    /// (2)", host "modbus-card-bfa32b-2.local.").
    fn renames(&self) {
        let Some(events) = &self.events else { return };
        while let Ok(event) = events.try_recv() {
            if let DaemonEvent::NameChange(c) = event {
                log::warn!(
                    "dns-sd: {} is taken on the network: announced as {} instead",
                    c.original,
                    c.new_name
                );
            }
        }
    }

    /// Goodbye packets for `services` (RFC 6762 §10.1).
    fn withdraw(&mut self, services: &[Service]) {
        for service in services {
            let Some((_, fullname)) = self.now.services.remove(service) else {
                continue;
            };
            let Some(daemon) = &self.daemon else { continue };
            match daemon.unregister(&fullname) {
                // The goodbye is sent before the answer comes.
                Ok(done) => {
                    let _ = done.recv_timeout(Duration::from_secs(2));
                    log::info!("dns-sd: withdrew {fullname}");
                }
                Err(e) => log::warn!("dns-sd: withdrawing {fullname}: {e}"),
            }
        }
    }

    /// The daemon on `interface` only, IPv4 only.
    fn start_daemon(&self, interface: &str) -> Result<ServiceDaemon, mdns_sd::Error> {
        let daemon = ServiceDaemon::new_with_port(self.mdns_port)?;
        daemon.disable_interface(vec![IfKind::All, IfKind::LoopbackV4, IfKind::LoopbackV6])?;
        daemon.enable_interface(IfKind::Name(interface.to_string()))?;
        daemon.disable_interface(IfKind::IPv6)?;
        Ok(daemon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_keep_printable_ascii_and_fit_255_bytes() {
        assert_eq!(
            txt_value("ups", "Line\nInter\u{0}active\u{7}é\u{7f}"),
            "LineInteractive"
        );
        let long = "A".repeat(300);
        let v = txt_value("ups_model", &long);
        assert_eq!("ups_model=".len() + v.len(), 255);
    }

    #[test]
    fn the_ups_is_named_from_its_identification_and_never_by_its_serial() {
        use crate::sim::Ups as Sim;
        use crate::ups::map::reg;
        let sim = Sim::new();
        let words: Vec<u16> = (0..reg::IDENTIFICATION_LEN)
            .map(|i| sim.register(reg::IDENTIFICATION + i).unwrap())
            .collect();
        let tables = crate::ups::Tables {
            identification: Some(words),
            ..Default::default()
        };
        let ups = Ups::of(&tables).unwrap();
        let serial = crate::ups::decode(&tables).serial.unwrap();
        let identity = Identity {
            mac: "00:11:22:bf:a3:2b".parse().unwrap(),
            version: "1.2.3".into(),
        };
        let on = BTreeMap::from([(Service::Modbus, 502)]);
        let txt = identity.txt(Service::Modbus, &on, Some(&ups));
        assert!(
            txt.contains(&("ups_model".into(), ups.model.clone())),
            "{txt:?}"
        );
        assert!(txt.iter().all(|(_, v)| !v.contains(&serial)), "{txt:?}");
        assert_eq!(Ups::of(&crate::ups::Tables::default()), None);
    }

    #[test]
    fn the_txt_names_the_card_and_its_services() {
        let identity = Identity {
            mac: "00:11:22:bf:a3:2b".parse().unwrap(),
            version: "1.2.3".into(),
        };
        assert_eq!(identity.instance(), "Modbus card BFA32B");
        assert_eq!(identity.host(), "modbus-card-bfa32b.local.");
        let on = BTreeMap::from([(Service::Modbus, 502), (Service::Https, 443)]);
        let txt = identity.txt(Service::Https, &on, None);
        let get = |k: &str| {
            txt.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("mac"), Some("00:11:22:BF:A3:2B"));
        assert_eq!(get("fw"), Some("1.2.3"));
        assert_eq!(get("services"), Some("modbus,https"));
        assert_eq!(get("path"), Some("/"));
    }
}
