//! Firmware upgrades with images of today's size (the release binary).
//!
//! 1. Upload to running: a card installed in a temporary folder and run by its init
//!    script (release binary, as on the board); `modbus-card upgrade` with the next
//!    version, restarting through the init script. Timed from the command's start to
//!    the image installed, to the new version answering Modbus TCP, and to its
//!    confirmation (5 s of health). The peak RSS of the command, which does the upload
//!    (stream to disk, verify, install), and the service's VmRSS sampled meanwhile.
//! 2. Over HTTPS: the same card, the next version uploaded on its `/firmware` page as a
//!    browser sends it (a multipart form), streamed through the web front to disk. Timed
//!    to the page's answer (installed), to the new version serving, and to its
//!    confirmation; the service's VmRSS sampled during the upload.
//! 3. In the service: `Service::upgrade`, what the `/firmware` page calls, in this
//!    process with the service running, the body arriving in 1400-byte reads; this
//!    process's VmRSS sampled every millisecond during it.
//!
//! A build of the next version is the release binary with its version stamp set, as
//! `MODBUS_CARD_VERSION` sets it.

#[allow(dead_code)] // this benchmark reads memory only
mod usage;

use modbus_card::firmware::{keys, version, Step};
use modbus_card::live::Who;
use modbus_card::pty::Pty;
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Sim, SimConfig};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/suite/common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
const INIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/init/modbus-card");

fn build_of(dir: &Path, v: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let mut bytes = fs::read(BIN).unwrap();
    let at = version::stamp_offset(&bytes).unwrap();
    let field = version::stamp_field(v).unwrap();
    bytes[at..at + field.len()].copy_from_slice(&field);
    let out = dir.join(format!("modbus-card-{v}"));
    fs::write(&out, bytes).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o755)).unwrap();
    out
}

fn image(dir: &Path, key: &Path, v: &str) -> PathBuf {
    let out = dir.join(format!("{v}.img"));
    let o = Command::new(BIN)
        .args([
            "image",
            "build",
            "--replaces",
            "0.0.0",
            "--init",
            INIT,
            "--key",
        ])
        .arg(key)
        .arg("--binary")
        .arg(build_of(dir, v))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    out
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn vm(pid: u32, field: &str) -> u64 {
    usage::vm(pid, field).unwrap_or(0)
}

/// The highest VmRSS of `pid`, sampled every millisecond until `stop`.
fn sample_rss(pid: u32) -> (Arc<AtomicU64>, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let (peak, stop) = (peak.clone(), stop.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(vm(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    (peak, stop, thread)
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (secret, public) = keys::generate_pair("bench").unwrap();
    fs::write(d.join("bench.key"), secret).unwrap();
    let (root, data) = (d.join("opt"), d.join("data"));
    fs::create_dir_all(data.join(keys::TRUSTED_DIR)).unwrap();
    fs::write(data.join(keys::TRUSTED_DIR).join("bench.pub"), public).unwrap();
    let key = d.join("bench.key");
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let https = free_port();
    let o = Command::new(BIN)
        .args(["image", "install", "--firmware"])
        .arg(&root)
        .arg("--data")
        .arg(&data)
        .arg(image(d, &key, "1.0.0"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let init = root.join("good/modbus-card.init");
    fs::write(
        d.join("default"),
        format!(
            "FIRMWARE={}\nDATA={}\nUPS={}\nRS485=\nMODBUS=127.0.0.1:{port}\nPIDFILE={}\nLOG={}\n\
             HTTP=127.0.0.1:{}\nHTTPS=127.0.0.1:{https}\nSSH=127.0.0.1:0\nMAC={}\n",
            root.display(),
            data.display(),
            sim.path().unwrap().display(),
            d.join("pid").display(),
            d.join("log").display(),
            free_port(),
            common::web::MAC,
        ),
    )
    .unwrap();
    let service = |action: &str| {
        Command::new("sh")
            .arg(root.join("good/modbus-card.init"))
            .arg(action)
            .env("DEFAULTS", d.join("default"))
            .output()
            .unwrap()
    };
    assert!(service("start").status.success());
    let pid = || -> Option<u32> { fs::read_to_string(d.join("pid")).ok()?.trim().parse().ok() };
    let serving = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    wait("the card serving", serving);
    let size = fs::metadata(image(d, &key, "1.0.1")).unwrap().len();
    println!(
        "image: {size} bytes (release binary {} bytes)",
        fs::metadata(BIN).unwrap().len()
    );
    println!("| run | installed | serving Modbus TCP | confirmed | command's peak RSS | service VmRSS before / during / after |");
    println!("|---|---|---|---|---|---|");
    let runs = if std::env::var("BENCH_QUICK").is_ok() {
        2
    } else {
        5
    };
    for run in 1..=runs {
        let v = format!("1.0.{run}");
        let img = image(d, &key, &v);
        let old = pid().unwrap();
        let before = vm(old, "VmRSS:");
        let (seen, stop, sampler) = sample_rss(old);
        let good = fs::read_link(root.join("good")).unwrap();
        let slot = PathBuf::from(if good == Path::new("a") { "b" } else { "a" });
        let new_exe = root.join(&slot).join("modbus-card");
        let t0 = Instant::now();
        // Waited for by wait4 below, for its rusage.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new(BIN)
            .args(["upgrade", "--firmware"])
            .arg(&root)
            .arg("--data")
            .arg(&data)
            .arg("--restart")
            .arg(format!("sh {} restart", init.display()))
            .arg(&img)
            .env("DEFAULTS", d.join("default"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let command = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut installed = None;
                for line in BufReader::new(out).lines() {
                    if line.unwrap().contains("installed in slot") {
                        installed = Some(t0.elapsed());
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                // The command's own peak, from wait4 (RUSAGE_CHILDREN would mix in the
                // image builds).
                let mut status = 0;
                // SAFETY: rusage is plain data, filled by wait4 for our own child.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
                assert_eq!(status, 0, "upgrade failed");
                (installed.unwrap(), usage.ru_maxrss)
            }
        });
        wait("the new version serving", || {
            pid().is_some_and(|p| {
                fs::read_link(format!("/proc/{p}/exe")).ok() == Some(new_exe.clone())
            }) && serving()
        });
        let up = t0.elapsed();
        wait("the confirmation", || {
            fs::read_link(root.join("good")).unwrap() == slot
        });
        let confirmed = t0.elapsed();
        let (installed, peak) = command.join().unwrap();
        sampler.join().unwrap();
        println!(
            "| {run} ({v}, slot {}) | {} | {} | {} | {} KiB | {before} / {} / {} KiB |",
            slot.display(),
            ms(installed),
            ms(up),
            ms(confirmed),
            peak,
            seen.load(Ordering::Relaxed),
            vm(pid().unwrap(), "VmRSS:"),
        );
    }

    // 2. The same, uploaded on the `/firmware` page over HTTPS.
    let v = format!("1.0.{}", runs + 1);
    let img = fs::read(image(d, &key, &v)).unwrap();
    let mut admin = common::web::Browser::new(&format!("https://127.0.0.1:{https}"), None);
    let (first, good) = (common::web::DEFAULT_PASSWORD, common::web::GOOD);
    assert_eq!(admin.login("admin", first).location(), "/password");
    admin.change_password(first, good);
    assert_eq!(admin.login("admin", good).location(), "/");
    admin.submit("/control", &[("upgrade_enabled", "true")]);
    let page = admin.get("/firmware");
    let at = page.body.find("action=\"/firmware/upload?csrf=").unwrap() + 8;
    let action = common::web::unescape(page.body[at..].split('"').next().unwrap());
    let old = pid().unwrap();
    let before = vm(old, "VmRSS:");
    let (seen, stop, sampler) = sample_rss(old);
    let good_slot = fs::read_link(root.join("good")).unwrap();
    let slot = PathBuf::from(if good_slot == Path::new("a") {
        "b"
    } else {
        "a"
    });
    let new_exe = root.join(&slot).join("modbus-card");
    let t0 = Instant::now();
    let answer = admin.post_files(&action, &[("image", &img)]);
    let installed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(answer.body.contains("installed"), "{}", answer.body);
    wait("the new version serving", || {
        pid().is_some_and(|p| fs::read_link(format!("/proc/{p}/exe")).ok() == Some(new_exe.clone()))
            && serving()
    });
    let up = t0.elapsed();
    wait("the confirmation", || {
        fs::read_link(root.join("good")).unwrap() == slot
    });
    println!(
        "\nOver HTTPS, the /firmware page ({v}, {} bytes, slot {}): answered (installed) {}, \
         serving {} (the restart waits 2 s for the answer to go out), confirmed {}; service \
         VmRSS {before} KiB before, {} KiB at most during the upload (+{} KiB)",
        img.len(),
        slot.display(),
        ms(installed),
        ms(up),
        ms(t0.elapsed()),
        seen.load(Ordering::Relaxed),
        seen.load(Ordering::Relaxed) - before
    );
    assert!(service("stop").status.success());

    // 3. The page's function, in the service's own process.
    let img = image(d, &key, "1.1.0");
    let service = Service::start(Options {
        data: data.clone(),
        ups: sim.path().unwrap().to_path_buf(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        firmware: Some(root.clone()),
        overrides: vec![("upgrade_enabled".into(), "true".into())],
        ..Options::default()
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let me = std::process::id();
    let before = vm(me, "VmRSS:");
    let (peak, stop, sampler) = sample_rss(me);
    struct Trickle(fs::File);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1400);
            self.0.read(&mut buf[..n])
        }
    }
    let who = Who {
        user: "bench".into(),
        via: "in process".into(),
        role: modbus_card::accounts::Role::Admin,
    };
    let t0 = Instant::now();
    let mut steps = 0;
    service
        .upgrade(
            &mut Trickle(fs::File::open(&img).unwrap()),
            Some(fs::metadata(&img).unwrap().len()),
            &who,
            &mut |s: Step| steps += matches!(s, Step::Receiving { .. }) as u32,
        )
        .unwrap();
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    println!(
        "\nService::upgrade in the service's process: {} for {steps} reads; VmRSS {before} KiB \
         before, {} KiB at most during it (+{} KiB)",
        ms(took),
        peak.load(Ordering::Relaxed),
        peak.load(Ordering::Relaxed) - before
    );
    service.stop();
    drop(sim);
}
