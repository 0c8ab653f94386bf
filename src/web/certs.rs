//! The card's HTTPS certificates.
//!
//! On first start the card makes its own root CA and a server certificate signed by it, for
//! every address HTTPS is served on, `localhost` and the host name ([`Names`]). The user
//! downloads the root (`/config/root-ca.pem`) and trusts it once; the server certificate is
//! made again, by the same root, whenever the card's names change or it nears its end, so
//! the browser goes on trusting it.
//!
//! The root signs only for the card: its name constraints (critical) permit the card's DNS
//! names (`localhost`, `HOST.local`, and the host name if it has a dot: a constraint also
//! permits the names under it, so a bare `bank` would cover a top-level domain) and the
//! subnets of its addresses (loopback, the fallback 192.168.7.0/24, each interface's subnet
//! and the static address's subnet), so its key, taken from one card, cannot vouch for any
//! other site. The root is kept across restarts and upgrades, including a root made before
//! it carried constraints ([`Scope::Any`]); a new root is made only when an administrator
//! asks for one ([`Certs::new_root`]), at first start, or when the root is missing, damaged
//! or near its end. A name the root does not permit (the card moved to another subnet, the
//! host was renamed) is left out of the server certificate, since a single name outside
//! the constraints would make browsers refuse the whole certificate; the Configuration
//! page names it and offers the new root.
//!
//! An uploaded certificate (with its key, and optionally the CA that issued it) is checked
//! whole before anything is replaced ([`check_upload`]): it parses, the key matches, the
//! dates are valid, it names the card, and the chain verifies against the given CA. It then
//! takes the place of the card's own until reverted.
//!
//! Everything lives in `DATA/tls/` (folder 0700, files 0600), each file written to a
//! temporary name and renamed, so a power cut leaves the old file or the new one.

use crate::files::{rename_durable, write_private};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// The folder inside the data folder.
pub const FOLDER: &str = "tls";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const OWN_CERT: &str = "server.pem";
const OWN_KEY: &str = "server.key";
const UPLOADED_CERT: &str = "uploaded.pem";
const UPLOADED_KEY: &str = "uploaded.key";
/// An uploaded chain stored whole, waiting for its key to be in place (see `install`).
const UPLOADED_CERT_STAGED: &str = "uploaded.pem.new";

/// Validity of the card's root.
const CA_DAYS: i64 = 20 * 365;
/// Validity of the server certificate: browsers refuse longer ones.
const SERVER_DAYS: i64 = 397;
/// The server certificate is made again when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// The fallback address the network script takes when no DHCP server answers
/// (`init/modbus-card-network`): its subnet is always in the root's constraints.
const FALLBACK: (Ipv4Addr, u8) = (Ipv4Addr::new(192, 168, 7, 18), 24);

/// The card's names: those its server certificate carries, and the subnets a new root is
/// made to cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Addresses HTTPS is reached on (every interface address when bound to all).
    pub ips: Vec<IpAddr>,
    /// `localhost`, the host name and `HOST.local` (its mDNS name).
    pub dns: Vec<String>,
    /// Loopback, the fallback subnet, each interface's subnet, the static address's subnet
    /// ([`Names::with_static`]), and each of `ips` not in any of them.
    pub subnets: Vec<Subnet>,
}

impl Names {
    /// The names for HTTPS bound to `bind`: that address, or every interface's address when
    /// it is 0.0.0.0; `localhost`, the host name and `HOST.local`.
    pub fn for_bind(bind: IpAddr) -> Names {
        let mut ips = if bind.is_unspecified() {
            interface_addresses()
        } else {
            vec![bind]
        };
        ips.sort();
        ips.dedup();
        let mut dns = vec!["localhost".to_string()];
        if let Some(host) = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| is_dns_name(h) && h != "localhost")
        {
            let local = host.strip_suffix(".local").unwrap_or(&host).to_string();
            if !local.is_empty() {
                dns.push(local.clone());
                dns.push(format!("{local}.local"));
            }
        }
        let mut names = Names {
            ips,
            dns,
            subnets: vec![],
        };
        names.add_subnet(Subnet::new(Ipv4Addr::LOCALHOST.into(), 8));
        names.add_subnet(Subnet::new(FALLBACK.0.into(), FALLBACK.1));
        for net in interface_subnets() {
            names.add_subnet(net);
        }
        for ip in names.ips.clone() {
            names.add_subnet(Subnet::new(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        names
    }

    /// With the subnet of the static address the settings hold (used while DHCP is off),
    /// so a root made now still covers the card once it goes back to it.
    pub fn with_static(mut self, address: Ipv4Addr, netmask: Ipv4Addr) -> Names {
        if !address.is_unspecified() {
            let prefix = u32::from(netmask).leading_ones() as u8;
            self.add_subnet(Subnet::around(address.into(), prefix));
        }
        self
    }

    /// Adds `net` unless a subnet already there holds it.
    fn add_subnet(&mut self, net: Subnet) {
        if !self.subnets.iter().any(|s| s.holds(&net)) {
            self.subnets.retain(|s| !net.holds(s));
            self.subnets.push(net);
        }
    }

    /// Whether `host` (a `Host` header's name, without its port; IPv6 in brackets) is one
    /// of the card's names or addresses.
    pub fn is_own(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&ip),
            Err(_) => self.dns.iter().any(|d| d.eq_ignore_ascii_case(host)),
        }
    }

    /// The DNS names a new root permits: `localhost` and the names with a dot. A DNS name
    /// constraint permits the names under it too, so a bare host name (`vm`, `bank`) would
    /// let the root sign for a whole top-level domain; its `HOST.local` stands in for it.
    fn root_dns(&self) -> Vec<String> {
        self.dns
            .iter()
            .filter(|d| is_dns_name(d) && (*d == "localhost" || d.contains('.')))
            .cloned()
            .collect()
    }

    /// What a new root made for these names signs for, as the user reads it.
    pub fn root_scope(&self) -> Vec<String> {
        let mut all = self.root_dns();
        all.extend(self.subnets.iter().map(Subnet::to_string));
        all
    }

    fn sans(&self) -> Vec<SanType> {
        let mut sans: Vec<SanType> = self.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        sans.extend(
            self.dns
                .iter()
                .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName)),
        );
        sans
    }

    /// As the user reads them.
    pub fn list(&self) -> String {
        let mut all: Vec<String> = self.ips.iter().map(IpAddr::to_string).collect();
        all.extend(self.dns.iter().cloned());
        all.join(", ")
    }
}

/// An IP address range: an address and its prefix length, the host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    addr: IpAddr,
    prefix: u8,
}

impl Subnet {
    pub fn new(addr: IpAddr, prefix: u8) -> Subnet {
        let addr = match addr {
            IpAddr::V4(a) => {
                let prefix = prefix.min(32);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix)))
            }
            IpAddr::V6(a) => {
                let prefix = prefix.min(128);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix)))
            }
        };
        let prefix = prefix.min(if addr.is_ipv4() { 32 } else { 128 });
        Subnet { addr, prefix }
    }

    /// The subnet of the card's address `ip` with `prefix`, or `ip` alone when that subnet
    /// is wider than a /8 (IPv4) or /32 (IPv6): a stray interface's 0.0.0.0/0 must not let
    /// the root sign for much of the internet.
    fn around(ip: IpAddr, prefix: u8) -> Subnet {
        let (widest, host) = if ip.is_ipv4() { (8, 32) } else { (32, 128) };
        Subnet::new(ip, if prefix < widest { host } else { prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// `other` lies wholly inside this subnet.
    fn holds(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// From a name constraint's address and mask (8 or 32 bytes).
    fn from_constraint(bytes: &[u8]) -> Option<Subnet> {
        let (addr, prefix) = match bytes.len() {
            8 => {
                let a = <[u8; 4]>::try_from(&bytes[..4]).ok()?;
                let m = <[u8; 4]>::try_from(&bytes[4..]).ok()?;
                (IpAddr::from(a), u32::from_be_bytes(m).leading_ones())
            }
            32 => {
                let a = <[u8; 16]>::try_from(&bytes[..16]).ok()?;
                let m = <[u8; 16]>::try_from(&bytes[16..]).ok()?;
                (IpAddr::from(a), u128::from_be_bytes(m).leading_ones())
            }
            _ => return None,
        };
        Some(Subnet::new(addr, prefix as u8))
    }

    fn constraint(&self) -> CidrSubnet {
        CidrSubnet::from_addr_prefix(self.addr, self.prefix)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// What a root may sign for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Anything: a root without name constraints (made by firmware before they came).
    Any,
    /// What its name constraints permit; `None` leaves that kind of name free.
    Only {
        dns: Option<Vec<String>>,
        subnets: Option<Vec<Subnet>>,
    },
}

impl Scope {
    /// The scope of a root certificate, from its permitted subtrees. (Excluded subtrees
    /// only narrow it further; the card's own roots have none.)
    fn of(der: &[u8]) -> Scope {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Scope::Any;
        };
        let permitted = match cert.name_constraints() {
            Ok(Some(nc)) => nc.value.permitted_subtrees.clone().unwrap_or_default(),
            // A constraint the card cannot read: assume it permits none of its names.
            Err(_) => {
                return Scope::Only {
                    dns: Some(vec![]),
                    subnets: Some(vec![]),
                }
            }
            Ok(None) => return Scope::Any,
        };
        let (mut dns, mut subnets) = (None::<Vec<String>>, None::<Vec<Subnet>>);
        for sub in permitted {
            match sub.base {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    dns.get_or_insert_with(Vec::new).push(d.to_string())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    let list = subnets.get_or_insert_with(Vec::new);
                    list.extend(Subnet::from_constraint(b));
                }
                _ => {}
            }
        }
        Scope::Only { dns, subnets }
    }

    fn permits_ip(&self, ip: IpAddr) -> bool {
        match self {
            Scope::Any | Scope::Only { subnets: None, .. } => true,
            Scope::Only {
                subnets: Some(nets),
                ..
            } => nets.iter().any(|n| n.contains(ip)),
        }
    }

    /// As RFC 5280 matches a dNSName constraint: the name itself or any name under it.
    fn permits_dns(&self, name: &str) -> bool {
        match self {
            Scope::Any | Scope::Only { dns: None, .. } => true,
            Scope::Only {
                dns: Some(list), ..
            } => list.iter().any(|c| {
                let c = c.trim_start_matches('.');
                let name = name.to_ascii_lowercase();
                let c = c.to_ascii_lowercase();
                c.is_empty() || name == c || name.ends_with(&format!(".{c}"))
            }),
        }
    }

    /// The names of `names` this scope permits, and the others as the user reads them.
    fn split(&self, names: &Names) -> (Names, Vec<String>) {
        let (ips, out_ips): (Vec<IpAddr>, Vec<IpAddr>) =
            names.ips.iter().partition(|ip| self.permits_ip(**ip));
        let (dns, out_dns): (Vec<String>, Vec<String>) =
            names.dns.iter().cloned().partition(|d| self.permits_dns(d));
        // A bare host name no root of the card covers is left out without a word: a new
        // root would not bring it back.
        let coverable = names.root_dns();
        let mut outside: Vec<String> = out_ips.iter().map(IpAddr::to_string).collect();
        outside.extend(out_dns.into_iter().filter(|d| coverable.contains(d)));
        let fit = Names {
            ips,
            dns,
            subnets: names.subnets.clone(),
        };
        (fit, outside)
    }

    /// What the root signs for, as the user reads it; empty for [`Scope::Any`].
    fn list(&self) -> Vec<String> {
        match self {
            Scope::Any => vec![],
            Scope::Only { dns, subnets } => {
                let mut all = dns.clone().unwrap_or_default();
                all.extend(subnets.iter().flatten().map(Subnet::to_string));
                all
            }
        }
    }
}

/// The IPv4 subnets of every interface, loopback included.
fn interface_subnets() -> Vec<Subnet> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let ip = a.address?.as_sockaddr_in()?.ip();
                    let mask = a.netmask?.as_sockaddr_in()?.ip();
                    Some(Subnet::around(
                        ip.into(),
                        u32::from(mask).leading_ones() as u8,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The IPv4 addresses of every interface, loopback included.
pub fn interface_addresses() -> Vec<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
                .collect()
        })
        .unwrap_or_default()
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Which certificate HTTPS serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Made by the card, signed by its own root.
    Own,
    Uploaded,
}

/// What the pages show of the certificate in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub source: Source,
    pub subject: String,
    pub names: Vec<String>,
    pub not_after: String,
}

#[derive(Debug)]
pub struct CertError(String);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertError {}

fn io_err(path: &Path, e: io::Error) -> CertError {
    CertError(format!(
        "{}: {e}; check that the data folder is writable",
        path.display()
    ))
}

/// The certificates of the card, and the resolver HTTPS asks for the one to serve.
pub struct Certs {
    dir: PathBuf,
    current: parking_lot::RwLock<(Arc<CertifiedKey>, Info)>,
    provider: Arc<CryptoProvider>,
    /// The card's names and what its root makes of them; held while a certificate is made,
    /// so the periodic check and an administrator's new root never interleave.
    own: parking_lot::Mutex<Own>,
}

/// The card's names as last checked, and what the root permits of them.
struct Own {
    names: Names,
    scope: Scope,
    /// The card's names the root does not permit, left out of the server certificate.
    outside: Vec<String>,
    root_not_after: String,
}

/// What the Configuration page shows of the card's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootInfo {
    /// The names and subnets it signs for; empty when it signs for any site.
    pub scope: Vec<String>,
    /// The card's names it does not sign for (left out of the server certificate).
    pub outside: Vec<String>,
    pub not_after: String,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").field("dir", &self.dir).finish()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().0.clone())
    }
}

/// What [`Certs::open`] and [`Certs::refresh`] did, for the event log.
pub enum Made {
    Nothing,
    /// The card made its server certificate for these names.
    Server(String),
}

impl Certs {
    /// Loads the certificates in `data/tls`, making the root and the server certificate if
    /// they are missing, damaged, for other names or near their end.
    pub fn open(data: &Path, names: &Names) -> Result<(Certs, Made), CertError> {
        let dir = data.join(FOLDER);
        // Durable before the certificates go in: they are served once made, and must be
        // the ones served after a power cut.
        crate::files::create_dir_durable(&dir).map_err(|e| io_err(&dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err(&dir, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (made, own) = ensure_own(&dir, names, false)?;
        let current = load_current(&dir, &provider)?;
        Ok((
            Certs {
                dir,
                current: parking_lot::RwLock::new(current),
                provider,
                own: parking_lot::Mutex::new(own),
            },
            made,
        ))
    }

    /// Makes the server certificate again if the names changed or it nears its end, and
    /// serves it if the card's own is in use.
    pub fn refresh(&self, names: &Names) -> Result<Made, CertError> {
        let mut own = self.own.lock();
        let (made, now) = ensure_own(&self.dir, names, false)?;
        *own = now;
        if let Made::Server(_) = made {
            *self.current.write() = load_current(&self.dir, &self.provider)?;
        }
        Ok(made)
    }

    /// Makes a new root for `names` (an administrator confirmed it), its key written over
    /// the old one's, and a server certificate from it. Clients that trusted the old root
    /// no longer trust the card until they trust the new one.
    pub fn new_root(&self, names: &Names) -> Result<Made, CertError> {
        let mut own = self.own.lock();
        let (made, now) = ensure_own(&self.dir, names, true)?;
        *own = now;
        *self.current.write() = load_current(&self.dir, &self.provider)?;
        Ok(made)
    }

    /// The card's names as last checked.
    pub fn names(&self) -> Names {
        self.own.lock().names.clone()
    }

    pub fn root_info(&self) -> RootInfo {
        let own = self.own.lock();
        RootInfo {
            scope: own.scope.list(),
            outside: own.outside.clone(),
            not_after: own.root_not_after.clone(),
        }
    }

    /// The card's root certificate, PEM.
    pub fn root_pem(&self) -> Result<String, CertError> {
        let path = self.dir.join(CA_CERT);
        fs::read_to_string(&path).map_err(|e| io_err(&path, e))
    }

    pub fn info(&self) -> Info {
        self.current.read().1.clone()
    }

    /// Checks an uploaded certificate (PEM, possibly with its chain), its key and the
    /// optional CA certificate(s), and serves it if all is well; otherwise nothing changes
    /// and the errors say what is wrong, one sentence each.
    pub fn install(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        card: &Names,
    ) -> Result<Info, Vec<String>> {
        let checked = check_upload(
            cert_pem,
            key_pem,
            ca_pem,
            card,
            &self.provider,
            SystemTime::now(),
        )?;
        // As uploaded: the certificate with its chain, then the CA's certificates.
        let mut chain_pem = cert_pem.to_vec();
        chain_pem.push(b'\n');
        chain_pem.extend_from_slice(ca_pem);
        // Two files that must match, each written whole: the chain first under a name of
        // its own, then the key in place, then the chain renamed into place. A power cut
        // between the last two leaves the new key beside the old chain, and the new chain
        // staged: the next start finishes the install (`load_current`).
        let staged = self.dir.join(UPLOADED_CERT_STAGED);
        let written = write_private(&staged, &chain_pem)
            .and_then(|()| write_private(&self.dir.join(UPLOADED_KEY), key_pem))
            .and_then(|()| rename_durable(&staged, &self.dir.join(UPLOADED_CERT)));
        if let Err(e) = written {
            let _ = fs::remove_file(&staged);
            let _ = fs::remove_file(self.dir.join(UPLOADED_CERT));
            return Err(vec![format!("The certificate could not be stored: {e}")]);
        }
        let info = checked.info.clone();
        *self.current.write() = (Arc::new(checked.key), checked.info);
        Ok(info)
    }

    /// Goes back to the card's own certificate; the uploaded one is deleted.
    pub fn revert(&self) -> Result<(), CertError> {
        for name in [UPLOADED_CERT_STAGED, UPLOADED_CERT, UPLOADED_KEY] {
            let path = self.dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        *self.current.write() = load_current(&self.dir, &self.provider)?;
        Ok(())
    }
}

/// Forgets the card's certificates (its root, its server certificate and an uploaded
/// one), for a reset to factory settings: the card makes new ones at its next start, so
/// a root downloaded before no longer trusts it.
pub fn forget(data: &Path) -> Result<(), CertError> {
    let dir = data.join(FOLDER);
    for name in [
        UPLOADED_CERT_STAGED,
        UPLOADED_CERT,
        UPLOADED_KEY,
        OWN_CERT,
        OWN_KEY,
        CA_CERT,
        CA_KEY,
    ] {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, e)),
        }
    }
    Ok(())
}

/// The certificate to serve: the uploaded one if there is one that still loads, else the
/// card's own.
fn load_current(
    dir: &Path,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Info), CertError> {
    let uploaded = dir.join(UPLOADED_CERT);
    let staged = dir.join(UPLOADED_CERT_STAGED);
    if staged.exists() {
        // An install a power cut interrupted: finished if its key is already in place (the
        // staged chain matches it), else forgotten (the old upload is still whole).
        let key = dir.join(UPLOADED_KEY);
        if load_pair(&staged, &key, provider, Source::Uploaded).is_ok() {
            match rename_durable(&staged, &uploaded) {
                Ok(()) => log::warn!("finished installing the uploaded HTTPS certificate"),
                Err(e) => log::error!("{}: {e}", staged.display()),
            }
        } else {
            let _ = fs::remove_file(&staged);
        }
    }
    if uploaded.exists() {
        match load_pair(
            &uploaded,
            &dir.join(UPLOADED_KEY),
            provider,
            Source::Uploaded,
        ) {
            Ok(pair) => return Ok(pair),
            Err(e) => log::error!(
                "the uploaded HTTPS certificate cannot be used, serving the card's own: {e}"
            ),
        }
    }
    load_pair(
        &dir.join(OWN_CERT),
        &dir.join(OWN_KEY),
        provider,
        Source::Own,
    )
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
    source: Source,
) -> Result<(Arc<CertifiedKey>, Info), CertError> {
    let chain = read_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| CertError(format!("{}: {e}", key.display())))?;
    let certified = CertifiedKey::from_der(chain, key_der, provider)
        .map_err(|e| CertError(format!("{}: {e}", cert.display())))?;
    let parsed = Parsed::of(&certified.cert[0])
        .ok_or_else(|| CertError(format!("{}: not an X.509 certificate", cert.display())))?;
    let info = parsed.info(source);
    Ok((Arc::new(certified), info))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertError(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(CertError(format!(
            "{}: no certificate in it",
            path.display()
        )));
    }
    Ok(chain)
}

/// The parts of a certificate the card looks at.
struct Parsed {
    subject: String,
    not_before: i64,
    not_after: i64,
    sans: Vec<String>,
    is_ca: bool,
}

impl Parsed {
    fn of(der: &[u8]) -> Option<Parsed> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            sans.push(IpAddr::from(a).to_string());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            sans.push(IpAddr::from(a).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(Parsed {
            subject: cert.subject().to_string(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sans,
            is_ca: cert.is_ca(),
        })
    }

    fn info(&self, source: Source) -> Info {
        Info {
            source,
            subject: self.subject.clone(),
            names: self.sans.clone(),
            not_after: date(self.not_after),
        }
    }
}

/// `YYYY-MM-DD` of a unix time.
fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| unix.to_string())
}

fn unix(t: SystemTime) -> i64 {
    crate::clock::unix_s(t)
}

/// Makes the root if missing, unreadable or near its end (or `new_root`), and the server
/// certificate if missing, for other names, near its end or not from this root. The
/// server certificate carries the names the root permits.
fn ensure_own(dir: &Path, names: &Names, new_root: bool) -> Result<(Made, Own), CertError> {
    let loaded = if new_root { None } else { load_root(dir) };
    let (ca_key, root, new_root) = match loaded {
        Some((key, root)) => (key, root, false),
        None => {
            let key =
                KeyPair::generate().map_err(|e| CertError(format!("no key for the root: {e}")))?;
            let cert = root_params(names)
                .self_signed(&key)
                .map_err(|e| CertError(format!("cannot make the root certificate: {e}")))?;
            // The key first: a cut between the two leaves a pair that does not match, and
            // a new root is made at the next start.
            write_private(&dir.join(CA_KEY), key.serialize_pem().as_bytes())
                .map_err(|e| io_err(dir, e))?;
            write_private(&dir.join(CA_CERT), cert.pem().as_bytes()).map_err(|e| io_err(dir, e))?;
            (key, cert.der().clone(), true)
        }
    };
    let scope = Scope::of(&root);
    let (fit, outside) = scope.split(names);
    let own = Own {
        names: names.clone(),
        root_not_after: Parsed::of(&root).map_or_else(String::new, |p| date(p.not_after)),
        scope,
        outside,
    };
    if !new_root && own_server_fits(dir, &fit) {
        return Ok((Made::Nothing, own));
    }
    let issuer = Issuer::from_ca_cert_der(&root, &ca_key)
        .map_err(|e| CertError(format!("cannot read the root certificate: {e}")))?;
    let key = KeyPair::generate().map_err(|e| CertError(format!("no key for the server: {e}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        fit.dns
            .iter()
            .find(|d| *d != "localhost")
            .or(fit.dns.first())
            .cloned()
            .unwrap_or_else(|| "modbus-card".into()),
    );
    params.subject_alt_names = fit.sans();
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(SERVER_DAYS);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &crate::accounts::random_bytes::<16>(),
    ));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| CertError(format!("cannot make the server certificate: {e}")))?;
    write_private(&dir.join(OWN_KEY), key.serialize_pem().as_bytes())
        .map_err(|e| io_err(dir, e))?;
    write_private(&dir.join(OWN_CERT), cert.pem().as_bytes()).map_err(|e| io_err(dir, e))?;
    let mut made = fit.list();
    if !own.outside.is_empty() {
        made += &format!(
            " (not for {}: the card's root does not cover them)",
            own.outside.join(", ")
        );
    }
    Ok((Made::Server(made), own))
}

/// A new root: a fixed name, pathlen 0, and name constraints (critical) permitting only
/// the card's DNS names and subnets.
fn root_params(names: &Names) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Modbus card root CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Modbus card");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut permitted: Vec<GeneralSubtree> = names
        .root_dns()
        .into_iter()
        .map(GeneralSubtree::DnsName)
        .collect();
    permitted.extend(
        names
            .subnets
            .iter()
            .map(|s| GeneralSubtree::IpAddress(s.constraint())),
    );
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: vec![],
    });
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(
        &crate::accounts::random_bytes::<16>(),
    ));
    params
}

/// The root on disk, kept whatever its constraints (or lack of them), if its key matches,
/// it is a CA, and it is not near its end.
fn load_root(dir: &Path) -> Option<(KeyPair, CertificateDer<'static>)> {
    let key_pem = fs::read_to_string(dir.join(CA_KEY)).ok()?;
    let cert_pem = fs::read_to_string(dir.join(CA_CERT)).ok()?;
    let key = KeyPair::from_pem(&key_pem).ok()?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let parsed = Parsed::of(&der)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let spki_matches = cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw();
    let fresh = parsed.not_after - unix(SystemTime::now()) > RENEW_BEFORE.as_secs() as i64;
    (spki_matches && parsed.is_ca && fresh).then_some((key, der))
}

/// The server certificate on disk is for exactly these names, not near its end, and its
/// key and root are those beside it.
fn own_server_fits(dir: &Path, names: &Names) -> bool {
    let Ok(chain) = read_certs(&dir.join(OWN_CERT)) else {
        return false;
    };
    let Ok(key) = PrivateKeyDer::from_pem_file(dir.join(OWN_KEY)) else {
        return false;
    };
    let provider = rustls::crypto::ring::default_provider();
    if CertifiedKey::from_der(chain.clone(), key, &provider).is_err() {
        return false;
    }
    let Some(parsed) = Parsed::of(&chain[0]) else {
        return false;
    };
    let mut want: Vec<String> = names.ips.iter().map(IpAddr::to_string).collect();
    want.extend(names.dns.iter().cloned());
    want.sort();
    let mut have = parsed.sans.clone();
    have.sort();
    let fresh = parsed.not_after - unix(SystemTime::now()) > RENEW_BEFORE.as_secs() as i64;
    let signed_by_root = fs::read(dir.join(CA_CERT))
        .ok()
        .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok())
        .is_some_and(|root| {
            verifies(&chain[0], &[], &[root], &provider, SystemTime::now()).is_ok()
        });
    want == have && fresh && signed_by_root
}

/// An upload that passed every check.
struct Checked {
    key: CertifiedKey,
    info: Info,
}

/// Every check of an upload, all reported at once.
fn check_upload(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    card: &Names,
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<Checked, Vec<String>> {
    let mut errors = Vec::new();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        errors.push("The certificate file holds no PEM certificate (a block starting with -----BEGIN CERTIFICATE-----).".to_string());
    }
    if !ca_pem.iter().all(u8::is_ascii_whitespace) && ca.is_empty() {
        errors.push("The CA file holds no PEM certificate.".to_string());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).ok();
    if key.is_none() {
        errors.push("The key file holds no private key in PEM (PKCS#8, PKCS#1 or SEC1: -----BEGIN PRIVATE KEY-----).".to_string());
    }
    let parsed = chain.first().map(|c| Parsed::of(c));
    if let Some(None) = parsed {
        errors.push("The certificate cannot be read as an X.509 certificate.".to_string());
    }
    let Some(Some(parsed)) = parsed else {
        return Err(errors);
    };
    let now_s = unix(now);
    if now_s < parsed.not_before {
        errors.push(format!(
            "The certificate is not valid before {}.",
            date(parsed.not_before)
        ));
    }
    if now_s > parsed.not_after {
        errors.push(format!(
            "The certificate expired on {}.",
            date(parsed.not_after)
        ));
    }
    if parsed.is_ca {
        errors.push("This is a CA certificate; upload the server's own certificate (and the CA as the CA file).".to_string());
    }
    if !names_card(&chain[0], card) {
        let named = if parsed.sans.is_empty() {
            "no names".to_string()
        } else {
            parsed.sans.join(", ")
        };
        errors.push(format!(
            "The certificate names {named}, but not this card ({}).",
            card.list()
        ));
    }
    if !ca.is_empty() && now_s >= parsed.not_before && now_s <= parsed.not_after {
        if let Err(e) = verifies(&chain[0], &chain[1..], &ca, provider, now) {
            errors.push(format!(
                "The certificate does not verify against the CA file: {e}."
            ));
        }
    }
    let mut certified = None;
    if let Some(key) = key {
        match CertifiedKey::from_der(chain.clone(), key, provider) {
            Ok(k) => certified = Some(k),
            Err(rustls::Error::InconsistentKeys(_)) => {
                errors.push("The key does not belong to the certificate.".to_string())
            }
            Err(e) => errors.push(format!(
                "The key cannot be used ({e}); use an ECDSA P-256 or P-384, Ed25519 or RSA key."
            )),
        }
    }
    match certified {
        Some(mut key) if errors.is_empty() => {
            // Serve the CA's certificates after the chain, unless already there.
            for c in ca {
                if !key.cert.contains(&c) {
                    key.cert.push(c);
                }
            }
            Ok(Checked {
                key,
                info: parsed.info(Source::Uploaded),
            })
        }
        _ => Err(errors),
    }
}

/// The certificate is valid for at least one of the card's addresses or its host name
/// (wildcards count, as browsers count them).
fn names_card(cert: &CertificateDer<'_>, card: &Names) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let ips = card
        .ips
        .iter()
        .filter(|ip| !ip.is_loopback() || card.ips.iter().all(|i| i.is_loopback()));
    let mut names: Vec<ServerName<'static>> =
        ips.map(|ip| ServerName::IpAddress((*ip).into())).collect();
    names.extend(
        card.dns
            .iter()
            .filter(|d| *d != "localhost")
            .filter_map(|d| ServerName::try_from(d.clone()).ok()),
    );
    names
        .iter()
        .any(|n| ee.verify_is_valid_for_subject_name(n).is_ok())
}

/// Checks that `cert` chains to one of `roots` through `intermediates` (and the roots
/// themselves when they are intermediates), as a TLS server certificate, at `now`.
fn verifies(
    cert: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
    provider: &CryptoProvider,
    now: SystemTime,
) -> Result<(), String> {
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| e.to_string())?;
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let mut all_intermediates = intermediates.to_vec();
    all_intermediates.extend(roots.iter().cloned());
    let time = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    ee.verify_for_usage(
        provider.signature_verification_algorithms.all,
        &anchors,
        &all_intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(drop)
    .map_err(|e| format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_subnet_holds_its_range_only() {
        let net = Subnet::new(ip("192.168.7.18"), 24);
        assert_eq!(net.to_string(), "192.168.7.0/24");
        assert!(net.contains(ip("192.168.7.1")) && net.contains(ip("192.168.7.255")));
        assert!(!net.contains(ip("192.168.8.1")) && !net.contains(ip("::1")));
        assert!(Subnet::new(ip("0.0.0.0"), 0).contains(ip("203.0.113.5")));
        // Never wider than a /8 around one of the card's addresses.
        assert_eq!(Subnet::around(ip("10.1.2.3"), 8).to_string(), "10.0.0.0/8");
        assert_eq!(Subnet::around(ip("10.1.2.3"), 0).to_string(), "10.1.2.3/32");
        assert!(net.holds(&Subnet::new(ip("192.168.7.18"), 32)));
        assert!(!net.holds(&Subnet::new(ip("192.168.0.0"), 16)));
        // As a name constraint writes it: address then mask.
        let read = Subnet::from_constraint(&[10, 1, 0, 0, 255, 255, 0, 0]).unwrap();
        assert_eq!(read, Subnet::new(ip("10.1.2.3"), 16));
    }

    #[test]
    fn a_dns_constraint_permits_the_name_and_names_under_it() {
        let scope = Scope::Only {
            dns: Some(vec!["localhost".into(), "card".into()]),
            subnets: Some(vec![Subnet::new(ip("127.0.0.0"), 8)]),
        };
        assert!(scope.permits_dns("localhost") && scope.permits_dns("CARD"));
        assert!(scope.permits_dns("a.localhost"));
        assert!(!scope.permits_dns("evillocalhost") && !scope.permits_dns("card.example"));
        assert!(scope.permits_ip(ip("127.3.2.1")) && !scope.permits_ip(ip("10.0.0.1")));
        assert!(Scope::Any.permits_dns("example.com") && Scope::Any.permits_ip(ip("8.8.8.8")));
    }

    #[test]
    fn a_host_is_the_cards_own_only_when_it_is_one_of_its_names() {
        let names = Names {
            ips: vec![ip("192.168.7.18"), ip("::1")],
            dns: vec!["localhost".into(), "card".into(), "card.local".into()],
            subnets: vec![],
        };
        for own in ["card", "CARD.local", "card.local.", "192.168.7.18", "[::1]"] {
            assert!(names.is_own(own), "{own}");
        }
        for other in [
            "evil.example",
            "card.evil",
            "192.168.7.19",
            "",
            "[::2]",
            "::1]",
        ] {
            assert!(!names.is_own(other), "{other}");
        }
        // A bare host name is the card's, but a root does not permit it: it would permit
        // every name under it.
        assert_eq!(names.root_dns(), ["localhost", "card.local"]);
    }
}
