//! Firmware upgrades on a card run by its init script, as on the board: a good image
//! installs and the card runs the new version, which confirms itself; bad images are
//! refused with nothing changed; new versions that never become healthy (one exits, one
//! hangs and ignores SIGTERM, one whose board is reset during its trial) are rolled back.

use crate::board_fixture;
use crate::common;
use crate::firmware_fixture;

use firmware_fixture::*;
use modbus_card::firmware::image::Abi;
use std::fs;
use std::process::Command;

/// The body of a build that never gets anywhere.
const HANG: &str = "loop { std::thread::sleep(std::time::Duration::from_secs(1)); }";

#[test]
fn a_good_image_installs_and_the_card_runs_the_new_version() {
    let card = Card::running(60);
    let before = card.pid().unwrap();
    // Home, as the admin sees it after the first login.
    let firmware_on_home = |b: &mut common::web::Browser| {
        let home = b.get("/");
        assert_eq!(home.status, 200, "{}", home.body);
        let at = home
            .body
            .find("<dt>Firmware</dt><dd>")
            .expect("Home shows the firmware")
            + 21;
        home.body[at..].split('<').next().unwrap().to_owned()
    };
    let mut admin = card.browser();
    admin.login("admin", common::web::DEFAULT_PASSWORD);
    admin.change_password(common::web::DEFAULT_PASSWORD, common::web::GOOD);
    admin.login("admin", common::web::GOOD);
    assert_eq!(firmware_on_home(&mut admin), OLD);
    // The console's title, as the serial terminal shows it.
    let console_title = |card: &Card| {
        let mut screen = common::console::Screen::console_at(&card.data);
        screen.login("admin", common::web::GOOD);
        let title = screen.expect(common::console::PROMPT);
        screen.send("0\r");
        title
    };
    let title = console_title(&card);
    assert!(
        title.contains(&format!("Modbus Interface Configuration Utility  [{OLD}]")),
        "{title}"
    );

    let image = card.image_of(NEW, OLD);
    let o = card.upgrade(&image);
    let said = text(&o);
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("1.1.0 installed in slot b (replacing 1.0.0)"),
        "{said}"
    );
    assert!(said.contains("starts on trial"), "{said}");

    // The old version stopped, the new one runs from slot b, reports healthy and is kept.
    card.wait_running(NEW, true);
    assert!(gone(before));
    assert_eq!(card.link("good").as_deref(), Some("b"));
    common::wait_for("the trial's mark gone", || {
        !card.root.join("trial").exists()
    });
    let o = Command::new(card.root.join("current/modbus-card"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "modbus-card 1.1.0"
    );
    let log = card.log();
    assert!(log.contains("modbus-card 1.1.0 starting"), "{log}");
    let mut admin = card.browser();
    let p = admin.login("admin", common::web::GOOD);
    assert_eq!(p.location(), "/", "{}", p.body);
    assert_eq!(firmware_on_home(&mut admin), NEW);
    let title = console_title(&card);
    assert!(
        title.contains(&format!("Modbus Interface Configuration Utility  [{NEW}]")),
        "{title}"
    );
    assert!(
        said.contains("version 1.1.0 (slot b) starts on trial"),
        "{said}"
    );

    let confirmed = card.wait_event("firmware_confirmed");
    assert_eq!(
        confirmed.message,
        "Firmware 1.1.0 confirmed: healthy on trial, it is the version kept"
    );
    let kinds: Vec<String> = card.events().into_iter().map(|e| e.kind).collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k}: {kinds:?}"))
    };
    // Newest first: started, installed, the old version stopped, confirmed.
    assert!(at("firmware_started") > at("firmware_installed"));
    assert!(at("firmware_installed") > at("firmware_confirmed"));
    let installed = card
        .events()
        .into_iter()
        .find(|e| e.kind == "firmware_installed")
        .unwrap();
    assert!(
        installed
            .message
            .starts_with("Firmware 1.1.0 installed in slot b (")
            && installed
                .message
                .ends_with("it replaces 1.0.0 after a trial start"),
        "{}",
        installed.message
    );

    // The next version goes to the other slot; the init script in charge is now b's.
    let o = card.upgrade(&card.image_of("1.2.0", OLD));
    assert!(o.status.success(), "{}", text(&o));
    card.wait_running("1.2.0", true);
    assert_eq!(card.link("good").as_deref(), Some("a"));
    let o = card.service("stop");
    assert!(text(&o).contains("modbus-card stopped"), "{}", text(&o));
}

#[test]
fn refused_images_change_nothing() {
    let card = Card::running(60);
    let pid = card.pid().unwrap();
    let dir = card.dir.path();
    let good = fs::read(card.image_of(NEW, OLD)).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    };

    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let stranger = key_pair(dir, "stranger");
    let wrong_key = image(dir, &build_of(dir, NEW), INIT.as_ref(), &stranger, OLD);
    let mut oversized = good.clone();
    oversized.resize(17 << 20, 0);
    let mut foreign = fs::read(build_of(dir, NEW)).unwrap();
    // e_machine: the same program for another processor.
    let other: u16 = if foreign[18..20] == 62u16.to_le_bytes() {
        183
    } else {
        62
    };
    foreign[18..20].copy_from_slice(&other.to_le_bytes());
    let foreign_bin = dir.join("foreign");
    write_exe(&foreign_bin, &foreign);
    let foreign = image(dir, &foreign_bin, INIT.as_ref(), &card.key, OLD);
    // The same program asking for a loader this card lacks (as one built for another C
    // library would): its PT_INTERP renamed in place.
    let mut other_libc = fs::read(build_of(dir, NEW)).unwrap();
    let loader = Abi::this()
        .unwrap()
        .interpreter
        .expect("a dynamic test build");
    let at = other_libc
        .windows(loader.len() + 1)
        .position(|w| w[..loader.len()] == *loader.as_bytes() && w[loader.len()] == 0)
        .expect("the loader's name in the binary");
    other_libc[at + loader.len() - 1] = b'9';
    let missing = format!("{}9", &loader[..loader.len() - 1]);
    assert!(!std::path::Path::new(&missing).exists());
    let other_libc_bin = dir.join("other-libc");
    write_exe(&other_libc_bin, &other_libc);
    let other_libc = image(dir, &other_libc_bin, INIT.as_ref(), &card.key, OLD);
    let needs_loader =
        format!("the program needs the loader {missing}, which this card does not have");
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "tampered",
            write("tampered.img", &tampered),
            "the signature does not match the contents",
        ),
        (
            "truncated",
            write("half.img", &good[..good.len() / 2]),
            "the image is incomplete",
        ),
        (
            "truncated signature",
            write("cut.img", &good[..good.len() - 40]),
            "the image is incomplete",
        ),
        (
            "wrong key",
            wrong_key,
            "which this card does not trust (trusted: ",
        ),
        (
            "older",
            card.image_of("0.9.0", "0.0.0"),
            "version 0.9.0 is older than the 1.0.0 this card runs",
        ),
        (
            "not allowed to replace",
            card.image_of("1.3.0", "1.0.5"),
            "replaces versions from 1.0.5 on, and this card runs 1.0.0",
        ),
        (
            "oversized",
            write("big.img", &oversized),
            "larger than the 16 MiB an image may be",
        ),
        ("another processor", foreign, "the program is built for"),
        ("another C library", other_libc, &needs_loader),
        (
            "not an image",
            write("junk.img", b"PK\x03\x04 a zip file, say"),
            "not a firmware image of this card",
        ),
    ];
    for (what, path, why) in cases {
        let before = card.snapshot();
        let o = card.upgrade(&path);
        let said = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {said}");
        assert!(
            said.contains("refused, nothing changed") && said.contains(why),
            "{what}: {said}"
        );
        assert_eq!(
            card.snapshot(),
            before,
            "{what}: the install or the settings changed"
        );
        let refused = card
            .events()
            .into_iter()
            .find(|e| e.kind == "firmware_refused")
            .unwrap();
        assert!(refused.message.contains(why), "{what}: {}", refused.message);
        assert_eq!(card.pid(), Some(pid), "{what}: the service was restarted");
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", card.port)).is_ok());
    card.wait_running(OLD, true);
}

#[test]
fn a_version_that_exits_at_once_is_rolled_back() {
    let card = Card::running(60);
    card.upgrade_to_misbehaving(
        "exits",
        "eprintln!(\"cannot start\"); std::process::exit(3);",
    );

    let rolled = card.wait_event("firmware_rolled_back");
    assert_eq!(
        rolled.message,
        "Firmware rolled back from 1.1.0 to 1.0.0: it stopped before reporting healthy"
    );
    card.wait_running(OLD, true);
    assert_eq!(card.link("current").as_deref(), Some("a"));
    assert!(!card.root.join("trial").exists());
    assert!(card.log().contains("cannot start"), "{}", card.log());
}

#[test]
fn a_version_that_hangs_is_stopped_and_rolled_back() {
    let card = Card::running(8);
    // Ignores SIGTERM too: the watch has to kill it.
    card.upgrade_to_misbehaving("hangs", &format!("unsafe {{ signal(15, 1); }} {HANG}"));
    card.wait_program_in("b");
    let hung = card.pid().unwrap();

    let rolled = card.wait_event("firmware_rolled_back");
    assert_eq!(
        rolled.message,
        "Firmware rolled back from 1.1.0 to 1.0.0: it did not report healthy within 8 s"
    );
    assert!(gone(hung), "the hung version still runs");
    card.wait_running(OLD, true);
    assert!(
        card.log().contains("did not stop in 3s; killing it"),
        "{}",
        card.log()
    );
}

#[test]
fn a_board_reset_during_the_trial_rolls_back_at_the_next_start() {
    let card = Card::running(600);
    card.upgrade_to_misbehaving("hangs", HANG);
    common::wait_for("the trial's watch", || card.path("pid.trial").exists());
    card.wait_program_in("b");
    assert!(card.root.join("trial").exists());

    // The watchdog resets the board: every process ends at once, files stay.
    let watch = fs::read_to_string(card.path("pid.trial")).unwrap();
    for pid in [watch.trim().to_string(), card.pid().unwrap().to_string()] {
        Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    }
    // The board starts again.
    let o = card.service("start");
    assert!(o.status.success(), "{}", text(&o));
    card.wait_running(OLD, true);
    let rolled = card.wait_event("firmware_rolled_back");
    assert!(
        rolled.message.starts_with(
            "Firmware rolled back from 1.1.0 to 1.0.0: version 1.1.0 started on trial and the \
             card started again before it reported healthy"
        ),
        "{}",
        rolled.message
    );
}

/// Without a reboot command (a card whose init system does not restart it), a restart
/// after an install runs the new slot in this same process, marked on trial.
#[test]
fn without_a_reboot_command_the_restart_runs_the_new_slot_in_place() {
    use std::io::Write;
    let card = Card::install(60);
    let button = board_fixture::fifo(card.dir.path(), "event0");
    let log = fs::File::create(card.path("log")).unwrap();
    let mut child = Command::new(card.root.join("a/modbus-card"))
        .args(["run", "--data"])
        .arg(&card.data)
        .arg("--ups")
        .arg(card.sim.path().unwrap())
        .args([
            "--modbus",
            &format!("127.0.0.1:{}", card.port),
            "--ssh",
            "127.0.0.1:0",
            "--firmware",
        ])
        .arg(&card.root)
        .args(["--set", &format!("button_device={}", button.display())])
        .stderr(log)
        .spawn()
        .unwrap();
    fs::write(card.path("pid"), child.id().to_string()).unwrap();
    card.wait_running(OLD, true);

    let o = Command::new(BIN)
        .args(["upgrade", "--no-restart", "--firmware"])
        .arg(&card.root)
        .arg("--data")
        .arg(&card.data)
        .arg(card.image_of(NEW, OLD))
        .output()
        .unwrap();
    assert!(
        text(&o).contains("not restarted: the next start runs it"),
        "{}",
        text(&o)
    );
    // The reset button held 1.5 s asks for a restart.
    let mut b = fs::File::options().write(true).open(&button).unwrap();
    b.write_all(&board_fixture::key(1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    b.write_all(&board_fixture::key(0)).unwrap();

    card.wait_running(NEW, true);
    assert_eq!(card.pid(), Some(child.id() as i32), "the same process");
    assert!(
        card.log().contains("restarting into slot b"),
        "{}",
        card.log()
    );
    card.wait_event("firmware_confirmed");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}
