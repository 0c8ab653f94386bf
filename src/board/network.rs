//! The network settings (DHCP or static address, ping echo), applied by the script
//! `init/modbus-card-network` with the system's own tools (BusyBox `ip` and `udhcpc`,
//! resolv.conf, `sysctl`). The script runs at start and whenever the settings change
//! ([`Network::apply`]); the DHCP client it starts stays in the background, renews the
//! lease, falls back to 192.168.7.18/24 when no server answers and takes a lease when one
//! appears, calling the same script each time.
//!
//! The script writes what it did to `STATE/status` (`key=value` lines); the thread here
//! turns each new `note` into an event and [`Network::status`] gives it to the pages.

use crate::event::{Event, Events};
use crate::health::Heartbeat;
use crate::poll::wait_any;
use crate::poll::Update;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// A script still running after this is killed (a DHCP attempt takes seconds).
pub const SCRIPT_LIMIT: Duration = Duration::from_secs(120);
/// How often the status file is looked at for news from the DHCP client.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Output kept from the script.
const OUTPUT_CAP: usize = 4096;

/// The settings the script applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSettings {
    pub interface: String,
    pub dhcp: bool,
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Option<Ipv4Addr>,
    pub ping: bool,
}

impl NetSettings {
    pub fn of(s: &Settings) -> NetSettings {
        NetSettings {
            interface: s.net_interface.clone(),
            dhcp: s.dhcp_enabled,
            address: s.ip_address,
            netmask: s.netmask,
            gateway: s.gateway,
            dns: s.dns,
            ping: s.ping_enabled,
        }
    }

    /// The variables the script reads.
    fn env(&self) -> Vec<(&'static str, String)> {
        let opt = |a: Option<Ipv4Addr>| a.map(|a| a.to_string()).unwrap_or_default();
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        vec![
            ("MC_IFACE", self.interface.clone()),
            ("MC_DHCP", flag(self.dhcp)),
            ("MC_ADDRESS", self.address.to_string()),
            ("MC_NETMASK", self.netmask.to_string()),
            ("MC_GATEWAY", opt(self.gateway)),
            ("MC_DNS", opt(self.dns)),
            ("MC_PING", flag(self.ping)),
        ]
    }
}

/// What the network script did, read when a page or the console asks.
pub type NetWatch = Arc<dyn Fn() -> NetStatus + Send + Sync>;

/// What the Home page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStatus {
    /// `dhcp` (lease), `fallback`, `static`, or `dhcp-wait` while asking.
    pub mode: String,
    /// Address with prefix, e.g. `192.168.7.18/24`.
    pub address: String,
    pub gateway: String,
    pub dns: String,
    pub ping: String,
    /// What happened last, in words.
    pub note: String,
    /// The last run of the script: when, whether it succeeded, its last line.
    pub applied: Option<(SystemTime, bool, String)>,
}

pub struct Network {
    update: Arc<Update<NetSettings>>,
    state: PathBuf,
    applied: Arc<Mutex<Option<(SystemTime, bool, String)>>>,
}

impl Network {
    /// Applies `settings` at once with `script`, then waits for changes. `state` is the
    /// script's folder (its status file and the DHCP client's pid file). The thread ends
    /// once `shutdown` fires (a script running is waited for, up to its limit); the
    /// network stays as it is: the DHCP client keeps the lease.
    pub fn spawn(
        script: PathBuf,
        state: PathBuf,
        settings: NetSettings,
        events: Events,
        heartbeat: Heartbeat,
        shutdown: Shutdown,
    ) -> std::io::Result<(Network, JoinHandle<()>)> {
        std::fs::create_dir_all(&state)?;
        let update = Arc::new(Update::new()?);
        update.put(settings);
        let applied = Arc::new(Mutex::new(None));
        let worker = Worker {
            update: update.clone(),
            script,
            state: state.clone(),
            events,
            heartbeat,
            shutdown,
            applied: applied.clone(),
            last_note: read_status(&state).note,
        };
        let thread = std::thread::Builder::new()
            .name("network".into())
            .stack_size(128 * 1024)
            .spawn(move || worker.run())?;
        Ok((
            Network {
                update,
                state,
                applied,
            },
            thread,
        ))
    }

    /// Applies new settings (the settings' one door calls this when they change); the
    /// latest wins if they come faster than the script runs.
    pub fn apply(&self, settings: NetSettings) {
        self.update.put(settings);
    }

    /// [`Network::apply`] as a value to keep (it does not keep the thread running).
    pub fn applier(&self) -> Arc<dyn Fn(NetSettings) + Send + Sync> {
        let update = Arc::downgrade(&self.update);
        Arc::new(move |settings| {
            if let Some(u) = update.upgrade() {
                u.put(settings);
            }
        })
    }

    pub fn status(&self) -> NetStatus {
        NetStatus {
            applied: self.applied.lock().clone(),
            ..read_status(&self.state)
        }
    }

    /// [`Network::status`] as a value to keep, for the pages and the console.
    pub fn watcher(&self) -> NetWatch {
        let (state, applied) = (self.state.clone(), self.applied.clone());
        Arc::new(move || NetStatus {
            applied: applied.lock().clone(),
            ..read_status(&state)
        })
    }
}

fn read_status(state: &Path) -> NetStatus {
    let text = std::fs::read_to_string(state.join("status")).unwrap_or_default();
    let mut s = NetStatus::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_owned();
        match k.trim() {
            "mode" => s.mode = v,
            "address" => s.address = v,
            "gateway" => s.gateway = v,
            "dns" => s.dns = v,
            "note" => s.note = v,
            _ => {}
        }
    }
    s.ping = std::fs::read_to_string(state.join("ping"))
        .map(|p| p.trim().to_owned())
        .unwrap_or_default();
    s
}

struct Worker {
    update: Arc<Update<NetSettings>>,
    script: PathBuf,
    state: PathBuf,
    events: Events,
    heartbeat: Heartbeat,
    shutdown: Shutdown,
    applied: Arc<Mutex<Option<(SystemTime, bool, String)>>>,
    last_note: String,
}

impl Worker {
    fn run(mut self) {
        loop {
            if let Some(settings) = self.update.take() {
                self.apply(&settings);
            }
            self.watch();
            self.heartbeat.idle();
            let woken = wait_any([Some(self.update.fd())], &self.shutdown, Some(WATCH_EVERY));
            self.heartbeat.busy();
            match woken {
                Ok((_, true)) => return,
                Ok(_) => {}
                Err(e) => {
                    log::error!("network: {e}");
                    return;
                }
            }
        }
    }

    /// News from the DHCP client (a lease taken, a fallback) become events.
    fn watch(&mut self) {
        let note = read_status(&self.state).note;
        if !note.is_empty() && note != self.last_note {
            self.events.emit(Event::Network {
                message: note.clone(),
            });
            self.last_note = note;
        }
    }

    fn apply(&mut self, settings: &NetSettings) {
        log::info!(
            "network: applying {} with {}",
            if settings.dhcp {
                "DHCP"
            } else {
                "static settings"
            },
            self.script.display()
        );
        let (ok, line) = match run_script(&self.script, &self.state, settings) {
            Ok((true, out)) => (true, last_line(&out)),
            Ok((false, out)) => (false, last_line(&out)),
            Err(e) => (false, e),
        };
        if ok {
            log::info!("network: {line}");
        } else {
            log::error!("network settings not applied: {line}");
            self.events.emit(Event::Network {
                message: format!("settings not applied: {line}"),
            });
        }
        *self.applied.lock() = Some((self.events.clock().now(), ok, line));
    }
}

fn last_line(out: &str) -> String {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_owned()
}

/// Runs `script apply`; returns whether it succeeded and its output.
fn run_script(
    script: &Path,
    state: &Path,
    settings: &NetSettings,
) -> Result<(bool, String), String> {
    let mut command = Command::new(script);
    // The DHCP client the script starts outlives it: it must not inherit any of the
    // service's descriptors (its ports, the shutdown pipe, the watchdog).
    // SAFETY: the closure only makes raw syscalls, which is allowed between fork and exec.
    unsafe {
        command.pre_exec(|| {
            mark_cloexec_from(3);
            Ok(())
        })
    };
    let mut child = command
        .arg("apply")
        .envs(settings.env())
        .env("MC_STATE", state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    // Both pipes read on threads of their own, so a chatty script cannot block.
    let grab = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(OUTPUT_CAP as u64).read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let out = grab(child.stdout.take().map(|p| Box::new(p) as _));
    let err = grab(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > SCRIPT_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish in {} s and was stopped",
                    script.display(),
                    SCRIPT_LIMIT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    Ok((status.success(), text))
}

/// Marks every descriptor from `first` on close-on-exec: one close_range call (Linux 5.11),
/// or each in turn on older kernels.
fn mark_cloexec_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscalls on descriptor numbers; nothing is dereferenced.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) == 0 {
            return;
        }
        for fd in first as libc::c_int..4096 {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
}
