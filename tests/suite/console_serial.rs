//! The serial console end to end: `modbus-card console`, the program init runs on the USB
//! gadget's tty, on a pseudo-terminal whose master side plays the user's terminal program;
//! the real service behind it. And the same program on standard input and output, as
//! BusyBox's askfirst runs it.

use crate::common;

use common::console::{card, Screen, PROMPT};
use common::web::GOOD;
use common::{Setup, PATIENCE};
use modbus_card::settings::Settings;
use nix::sys::termios::{self, LocalFlags};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_modbus-card");
const ACTIVATE: &str = "Please press Enter to activate this console.";

/// A pseudo-terminal as the kernel makes it (cooked: echo and line editing on), the way
/// a serial tty is before anyone sets it.
struct Tty {
    master: File,
    slave: OwnedFd,
    path: std::path::PathBuf,
}

fn tty() -> Tty {
    let pair = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(pair.slave.as_fd()).unwrap();
    Tty {
        master: File::from(pair.master),
        slave: pair.slave,
        path,
    }
}

impl Tty {
    fn cooked(&self) -> bool {
        let attrs = termios::tcgetattr(&self.slave).unwrap();
        attrs
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }

    fn screen(&self) -> Screen {
        Screen::new(
            self.master.try_clone().unwrap(),
            self.master.try_clone().unwrap(),
        )
    }
}

/// A console process, ended with the test whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn relay(data: &std::path::Path, tty: &Tty) -> Running {
    Running(
        Command::new(BIN)
            .arg("console")
            .arg("--data")
            .arg(data)
            .arg("--tty")
            .arg(&tty.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    exited(child)
}

fn exited(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < PATIENCE, "the console did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_console_on_a_tty_asks_for_enter_logs_in_and_starts_over() {
    let mut card = card(Setup::default());
    let tty = tty();
    assert!(tty.cooked());
    let mut child = relay(&card.data, &tty);
    let mut t = tty.screen();
    t.expect(ACTIVATE);
    // Nothing happens before Enter.
    t.send("admin");
    assert!(!t.collect(Duration::from_millis(500)).contains("User Name"));
    assert!(!tty.cooked(), "the relay put the tty in raw mode");
    t.send("\r\n");
    t.first_admin_login();
    // Raw: each key reaches the menu at once and is echoed once, by the menu.
    t.send("1");
    t.expect("1");
    t.send("\r");
    t.expect("Change them? (y/n)");
    t.send("y\r");
    t.answer("(y/n) [y]: ", "n");
    t.expect("IP address [192.168.7.18]: ");
    t.send("10.9.9.9\x03");
    t.expect("Cancelled: nothing was changed.");
    t.answer(PROMPT, "0");
    t.expect("Goodbye.");
    // Exit starts over.
    t.expect(ACTIVATE);
    assert!(
        t.transcript
            .contains("Please Enter Your Choice => 1\r\n\r\nCard Settings"),
        "one echo, CR LF line ends:\n{}",
        t.transcript
    );

    // The relay stopped in the middle of a question: the session ends, nothing changed,
    // and the terminal is as the relay found it.
    t.send("\r");
    t.login("admin", GOOD);
    t.answer(PROMPT, "1");
    t.answer("Change them? (y/n)", "y");
    t.answer("(y/n) [y]: ", "n");
    t.answer("IP address [192.168.7.18]: ", "10.9.9.9");
    t.expect("Subnet mask");
    assert!(terminate(&mut child.0).success());
    card.wait_event("logout");
    assert!(tty.cooked(), "the relay restored the tty");
    let stored = modbus_card::store::Store::open(&card.data)
        .unwrap()
        .load_settings_over(Settings::default())
        .unwrap();
    assert_eq!(stored.ip_address.to_string(), "192.168.7.18");
    assert!(card.events().iter().all(|e| e.kind != "setting_changed"));

    // Without the service the console says so, and tries again at the next Enter.
    card.stop();
    let mut child = relay(&card.data, &tty);
    t.expect(ACTIVATE);
    t.send("\r");
    t.expect("The card's service is not running");
    t.expect(ACTIVATE);
    assert!(terminate(&mut child.0).success());
}

#[test]
fn under_askfirst_the_console_serves_one_login_on_its_standard_input() {
    let card = card(Setup::default());
    let mut child = Running(
        Command::new(BIN)
            .arg("console")
            .arg("--data")
            .arg(&card.data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut t = Screen::new(
        child.0.stdout.take().unwrap(),
        child.0.stdin.take().unwrap(),
    );
    t.first_admin_login();
    t.send("0\r");
    t.expect("Goodbye.");
    assert!(exited(&mut child.0).success());
    assert!(
        !t.transcript.contains(ACTIVATE),
        "askfirst says it, not the console"
    );
    drop(card);

    // No service: said clearly, and a failure for init's log.
    let out = Command::new(BIN)
        .arg("console")
        .arg("--data")
        .arg(tempfile::tempdir().unwrap().path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("The card's service is not running"), "{said}");
}
