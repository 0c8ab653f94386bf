//! The settings pages (MODBUS configuration, Configuration, Control, Date and time) as a
//! user drives them over HTTPS: each change reaches the running card at once, checked by
//! what it does (a Modbus master on the new port with tokio-modbus, a silent UPS timed,
//! HTTPS no longer listening); bad values come back next to their field with nothing
//! changed; Read-only users are refused by the server whatever the page shows.

use crate::common;

use common::web::{start_web, Browser, DEFAULT_PASSWORD, GOOD};
use common::{free_port, silent_ups_answered_after, wait_for, Card, Setup, PATIENCE};
use modbus_card::store::Store;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};
use tokio::time::timeout;
use tokio_modbus::client::{tcp, Context, Reader, Writer};
use tokio_modbus::{ExceptionCode, Slave};

/// A Modbus master connecting from `from` (loopback gives this machine every 127.x.y.z).
async fn master(addr: SocketAddr, from: &str) -> std::io::Result<Context> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    let stream = timeout(PATIENCE, socket.connect(addr)).await??;
    Ok(tcp::attach_slave(stream, Slave(1)))
}

/// The settings-changed events in the log, oldest first.
fn changes(card: &Card) -> Vec<String> {
    let mut v: Vec<String> = card
        .events()
        .into_iter()
        .filter(|e| e.kind == "setting_changed")
        .map(|e| e.message)
        .collect();
    v.reverse();
    v
}

/// Waits until the log holds an event whose message contains `text`.
fn logged(card: &Card, text: &str) -> String {
    let mut found = None;
    wait_for(&format!("'{text}' in the log"), || {
        found = card
            .events()
            .into_iter()
            .find(|e| e.message.contains(text))
            .map(|e| e.message);
        found.is_some()
    });
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modbus_page_changes_the_running_card() {
    let card = start_web(Setup::default().set("poll_rate_s", 0));
    card.wait_state(modbus_card::link::LinkState::Up);
    let mut admin = card.admin();
    let page = admin.get("/modbus");
    page.shows(&[
        "Modbus TCP port",
        "Serial timeout (ms)",
        "Lowest sane value now: 310 ms",
        "RS485 slave number",
        "Masters allowed",
        "name=\"modbus_port\" value=\"502\"",
    ]);
    let old = card.addr();
    let port = free_port();
    let p = admin.post(
        "/modbus",
        &[
            ("modbus_port", &port.to_string()),
            ("modbus_timeout_s", "60"),
            ("modbus_evict_idle_s", "30"),
            ("routing", "ups"),
        ],
    );
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["Saved and in force"]);
    assert!(p.body.contains(&format!("Modbus TCP port: 502 → {port}")));
    // A master reaches the UPS on the new port at once; the old one is closed.
    let mut m = timeout(
        PATIENCE,
        tcp::connect_slave(SocketAddr::new(old.ip(), port), Slave(1)),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(m.read_holding_registers(0x1060, 2).await.unwrap().is_ok());
    wait_for("the old port closed", || TcpStream::connect(old).is_err());
    let event = logged(&card, "Modbus TCP port changed");
    assert_eq!(
        event,
        format!("Modbus TCP port changed from 502 to {port} (admin, web 127.0.0.1)")
    );
    assert_eq!(
        changes(&card).len(),
        1,
        "only what changed is logged: {:?}",
        changes(&card)
    );

    // The serial timeout typed on the page is the time a silent UPS gets.
    let p = admin.post("/modbus", &[("serial_timeout_ms", "1500")]);
    p.shows(&["Serial timeout (ms): 500 → 1500"]);
    silent_ups_answered_after(&card, &mut m, 1500).await;
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!((stored.modbus_port, stored.serial_timeout_ms), (port, 1500));
}

#[test]
fn bad_values_come_back_next_to_their_field_and_change_nothing() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let before = card.service().settings();
    admin.get("/modbus");
    let p = admin.post(
        "/modbus",
        &[
            ("modbus_port", "abc"),
            ("rs485_slave", "0"),
            ("poll_rate_s", "5"),
        ],
    );
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("Nothing was changed"));
    // Each error beside its field, and what was typed kept in it.
    assert!(
        p.body
            .contains("Modbus TCP port: &#39;abc&#39; is not a number from 1 to 65535")
            || p.body
                .contains("Modbus TCP port: &#x27;abc&#x27; is not a number from 1 to 65535"),
        "{}",
        p.body
    );
    assert!(p.body.contains("name=\"modbus_port\" value=\"abc\""));
    assert!(
        p.body.contains("&#39;0&#39; is not a number from 1 to 174")
            || p.body
                .contains("&#x27;0&#x27; is not a number from 1 to 174"),
        "{}",
        p.body
    );
    assert_eq!(p.body.matches("class=\"field-error\"").count(), 2);
    // Past the top, the same bounds.
    let p = admin.post("/modbus", &[("rs485_slave", "175")]);
    assert_eq!(p.status, 400);
    p.shows(&["is not a number from 1 to 174"]);
    // The rule between settings, named beside the timeout.
    let p = admin.post("/modbus", &[("serial_timeout_ms", "100")]);
    assert_eq!(p.status, 400);
    p.shows(&["100 ms is below the lowest sane timeout of 310 ms at 9600 baud"]);
    // Hostile values: an unknown choice, a key the page does not have.
    let p = admin.post(
        "/modbus",
        &[("routing", "<script>"), ("net_interface", "x")],
    );
    assert_eq!(p.status, 400);
    assert!(!p.body.contains("<script>"), "escaped");
    assert_eq!(*card.service().settings(), *before);
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!(stored, *before);
    // Nothing was logged: the next change is the first.
    admin.post("/modbus", &[("poll_rate_s", "7")]);
    logged(&card, "Polling rate (s) changed from 10 to 7");
    assert_eq!(changes(&card).len(), 1, "{:?}", changes(&card));
}

#[test]
fn read_only_users_see_every_page_and_change_nothing() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let mut viewer = card.user(&mut admin, "viewer", "read-only");
    let before = card.service().settings();
    for page in [
        "/modbus",
        "/config",
        "/control",
        "/time",
        "/firmware",
        "/log",
    ] {
        let p = viewer.get(page);
        assert_eq!(p.status, 200, "{page}");
        assert!(p.body.contains("Your account is Read-only"), "{page}");
        // The settings forms are disabled; the log's filter and the downloads are not
        // changes.
        if !matches!(page, "/firmware" | "/log") {
            assert!(
                p.body.contains("<fieldset disabled>") || p.body.contains(" disabled>"),
                "{page}: forms disabled"
            );
            assert!(
                !p.body.contains("<fieldset>"),
                "{page}: a form left enabled"
            );
        }
    }
    let posts: [(&str, &[(&str, &str)]); 8] = [
        ("/modbus", &[("poll_rate_s", "5")]),
        ("/config", &[("login_timeout_s", "900")]),
        ("/control", &[("debug_enabled", "true")]),
        ("/time", &[("ntp_server", "127.0.0.1")]),
        ("/time", &[("time", "2030-01-01T00:00:00")]),
        ("/control/reboot", &[("confirm", "yes")]),
        ("/control/factory-reset", &[("confirm", "yes")]),
        ("/log/clear", &[("confirm", "yes")]),
    ];
    for (path, fields) in posts {
        let p = viewer.post(path, fields);
        assert_eq!(p.status, 403, "{path}: {}", p.body);
    }
    let p = viewer.post_files(
        "/config/file",
        &[("file", b"format = 1\npoll_rate_s = 5\n")],
    );
    assert_eq!(p.status, 403);
    assert!(p.body.contains("Read-only"));
    assert_eq!(*card.service().settings(), *before);
    assert!(card.service().restarts().try_recv().is_err());
    assert!(changes(&card).is_empty());

    // A Read/Write user changes settings, but neither the board's devices nor the reset
    // of the whole card nor the log, which are admin's.
    let mut admin = card.browser();
    admin.login("admin", GOOD);
    let mut op = card.user(&mut admin, "op", "read-write");
    let p = op.submit("/config", &[("login_timeout_s", "900")]);
    p.shows(&["Login timeout (s): 600 → 900"]);
    for (path, fields) in [
        ("/config", &[("net_interface", "eth1")][..]),
        ("/control/factory-reset", &[("confirm", "yes")]),
        ("/log/clear", &[("confirm", "yes")]),
    ] {
        let p = op.post(path, fields);
        assert_eq!(p.status, 403, "{path}: {}", p.body);
        assert!(p.body.contains("Only admin"), "{path}");
    }
    assert_eq!(card.service().settings().net_interface, "eth0");
}

/// Who can reach the card (the web and SSH services, the Modbus access rules) is the
/// admin's decision: a Read/Write user sees those fields locked, and the server refuses
/// them whatever is posted.
#[test]
fn only_admin_decides_who_can_reach_the_card() {
    let card = start_web(Setup::default());
    let before = card.service().settings();
    let mut admin = card.admin();
    let mut op = card.user(&mut admin, "op", "read-write");
    let page = op.get("/control");
    // Five services are admin's; the others the Read/Write user may switch.
    assert_eq!(page.body.matches("admin only").count(), 5, "{}", page.body);
    for (path, key, value) in [
        ("/control", "http_enabled", "false"),
        ("/control", "https_enabled", "false"),
        ("/control", "ssh_enabled", "false"),
        ("/control", "modbus_enabled", "false"),
        ("/control", "mbtls_enabled", "true"),
        ("/modbus", "modbus_allow", "10.0.0.0/8"),
        ("/modbus", "modbus_write", "nobody"),
    ] {
        op.get(path);
        let p = op.post(path, &[(key, value), ("confirm", "yes")]);
        assert_eq!(p.status, 403, "{key}: {}", p.body);
        p.shows(&["Only admin decides who can reach the card"]);
    }
    assert_eq!(*card.service().settings(), *before);
    assert!(changes(&card).is_empty());
    // What the Read/Write user may change still goes through beside a locked field posted
    // as it is.
    op.get("/control");
    let p = op.post(
        "/control",
        &[("ping_enabled", "false"), ("ssh_enabled", "true")],
    );
    p.shows(&["PING echo: On → Off"]);

    // Turning off the last way in over the network names the ways back at the card (a
    // new login: op's took over the first one).
    let mut admin = card.browser();
    admin.login("admin", GOOD);
    admin.get("/control");
    let p = admin.post(
        "/control",
        &[
            ("http_enabled", "false"),
            ("https_enabled", "false"),
            ("ssh_enabled", "false"),
        ],
    );
    p.shows(&["Confirm the change", "USB console", "reset button"]);
    let s = card.service().settings();
    assert!(
        s.http_enabled && s.https_enabled && s.ssh_enabled,
        "not yet"
    );
}

#[test]
fn https_and_http_start_and_stop_from_the_control_page() {
    let card = start_web(Setup::default());
    let https = card.https();
    let http = card.http();
    let mut admin = card.admin();
    let page = admin.get("/control");
    assert!(page.body.contains(&format!("TCP {}", https.port())));
    // Turning off the service this page came over asks first, and says where to go.
    let p = admin.post("/control", &[("https_enabled", "false")]);
    assert_eq!(p.status, 200);
    let there = format!("http://127.0.0.1:{}/", http.port());
    p.shows(&["Confirm the change"]);
    p.shows(&[&there]);
    assert!(card.service().settings().https_enabled, "not yet");
    let p = admin.post(
        "/control",
        &[("https_enabled", "false"), ("confirm", "yes")],
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains(&format!("The pages are now at {there}")));
    wait_for("HTTPS to stop listening", || {
        TcpStream::connect(https).is_err()
    });
    assert_eq!(card.service().https_addr(), None);
    logged(
        &card,
        "HTTPS changed from true to false (admin, web 127.0.0.1)",
    );

    // Plain HTTP serves the pages now instead of redirecting.
    let mut plain = Browser::new(&format!("http://{http}"), None);
    assert_eq!(plain.login("admin", GOOD).location(), "/");
    let p = plain.submit("/control", &[("https_enabled", "true")]);
    p.shows(&["HTTPS: Off → On"]);
    // HTTPS is back where it was, and HTTP redirects to it again.
    assert_eq!(card.service().https_addr(), Some(https));
    assert_eq!(card.browser().get("/login").status, 200);
    let p = plain.get("/login");
    assert_eq!(p.status, 301);
    assert_eq!(
        p.location(),
        format!("https://127.0.0.1:{}/login", https.port())
    );

    // Both off: the card says the pages go away, and only then does it.
    let mut admin = card.browser();
    admin.login("admin", GOOD);
    let p = admin.submit("/control", &[("http_enabled", "false")]);
    p.shows(&["HTTP: On → Off"]);
    wait_for("HTTP to stop listening", || {
        TcpStream::connect(http).is_err()
    });
    let p = admin.post("/control", &[("https_enabled", "false")]);
    p.shows(&["the web pages go away"]);
    assert!(card.service().settings().https_enabled);
    admin.post(
        "/control",
        &[("https_enabled", "false"), ("confirm", "yes")],
    );
    wait_for("HTTPS to stop listening", || {
        TcpStream::connect(https).is_err()
    });
    assert!(!card.service().settings().https_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_set_on_the_modbus_page_holds_at_once() {
    let card = start_web(Setup::default());
    card.wait_state(modbus_card::link::LinkState::Up);
    let mut admin = card.admin();
    // The factory setting lets anyone write; Home says so and points to the MODBUS page.
    let open = "Any host on the network can send the UPS commands";
    admin.get("/").shows(&[open, "href=\"/modbus\""]);
    let p = admin.submit("/modbus", &[("modbus_allow", "127.0.0.1")]);
    p.shows(&["Masters allowed: none → 127.0.0.1"]);
    assert!(!admin.get("/").body.contains(open), "decided: no banner");
    let mut inside = master(card.addr(), "127.0.0.1").await.unwrap();
    assert!(inside
        .read_holding_registers(0x1060, 1)
        .await
        .unwrap()
        .is_ok());
    let mut outside = master(card.addr(), "127.0.0.2").await.unwrap();
    let r = timeout(PATIENCE, outside.read_holding_registers(0x1060, 1))
        .await
        .unwrap();
    assert!(r.is_err(), "a master not allowed got {r:?}");

    // Writes from nobody: exception 01, the UPS untouched; reads go on.
    let p = admin.post("/modbus", &[("modbus_write", "nobody")]);
    p.shows(&["Writes allowed from: Every master → No master: read only"]);
    let r = inside.write_single_register(0x0020, 77).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalFunction));
    assert_eq!(card.sim.register(0x0020), Some(0));
    assert!(inside
        .read_holding_registers(0x1060, 4)
        .await
        .unwrap()
        .is_ok());
    // What was turned away is on the page.
    let page = admin.get("/modbus");
    page.shows(&["<b>1</b> connections from masters not allowed, <b>1</b> writes"]);
    // Writes from listed masters, but none listed: refused beside the list.
    let p = admin.post("/modbus", &[("modbus_write", "listed")]);
    assert_eq!(p.status, 400);
    p.shows(&["but none is listed"]);
    assert_eq!(
        card.service().settings().modbus_write,
        modbus_card::access::Writers::Nobody
    );
}

#[test]
fn each_service_switch_takes_effect_at_once() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    assert_eq!(admin.get("/debug").status, 404, "debug is off");
    let page = admin.get("/control");
    assert!(!page.body.contains("href=\"/debug\""));
    for (key, label) in [
        ("debug_enabled", "Modbus debug: Off → On"),
        ("upgrade_enabled", "Network upgrade: Off → On"),
    ] {
        let p = admin.post("/control", &[(key, "true")]);
        p.shows(&[label]);
    }
    for (key, label) in [
        ("ssh_enabled", "SSH: On → Off"),
        ("ping_enabled", "PING echo: On → Off"),
    ] {
        let p = admin.post("/control", &[(key, "false")]);
        p.shows(&[label]);
    }
    let s = card.service().settings();
    assert!(s.debug_enabled && s.upgrade_enabled && !s.ssh_enabled && !s.ping_enabled);
    // The debug page and its menu entry come with the switch; the firmware page offers
    // its upload to admin.
    let p = admin.get("/debug");
    assert_eq!(p.status, 200);
    assert!(p.body.contains("href=\"/debug\""));
    // The firmware page says why this card, run outside an A/B install, takes no image.
    admin
        .get("/firmware")
        .shows(&["not started from a firmware install"]);
    // DHCP off is a new address: asked first, with the address to reconnect to.
    let p = admin.post("/control", &[("dhcp_enabled", "false")]);
    p.shows(&["static address 192.168.7.18"]);
    assert!(card.service().settings().dhcp_enabled);
    logged(&card, "Network upgrade changed from false to true");
    logged(&card, "SSH changed from true to false");
}

#[test]
fn reboot_and_factory_reset_ask_first_then_act() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    admin.get("/control");
    let p = admin.post("/control/reboot", &[]);
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Reboot the card?"));
    assert!(card.service().restarts().try_recv().is_err(), "not yet");
    let p = admin.post("/control/reboot", &[("confirm", "yes")]);
    assert!(p.body.contains("The card is restarting"));
    let restart = card.service().restarts().try_recv().unwrap();
    assert_eq!(restart.by, "admin, web 127.0.0.1");
    logged(&card, "Restart (admin, web 127.0.0.1)");

    // A factory reset: settings, users and certificates back as they came.
    admin.submit("/modbus", &[("poll_rate_s", "3")]);
    let mut admin_2 = card.browser();
    admin_2.login("admin", GOOD);
    card.user(&mut admin_2, "op", "read-write");
    let mut admin = card.browser();
    admin.login("admin", GOOD);
    admin.get("/control");
    let p = admin.post("/control/factory-reset", &[]);
    p.shows(&["Reset to factory settings?"]);
    assert_eq!(card.service().settings().poll_rate_s, 3, "not yet");
    let tls = card.data.join("tls");
    assert!(tls.join("ca.pem").exists());
    let p = admin.post("/control/factory-reset", &[("confirm", "yes")]);
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Back to factory settings"));
    assert_eq!(card.service().settings().poll_rate_s, 10);
    assert!(
        !tls.join("ca.pem").exists(),
        "the certificates are made again"
    );
    assert!(card.service().restarts().try_recv().is_ok());
    // Until the restart the old certificate is still served; its root file is gone.
    let browser = || Browser::new(&format!("https://{}", card.https()), None);
    assert_eq!(browser().login("op", common::web::GOOD_2).status, 401);
    assert_eq!(
        browser().login("admin", DEFAULT_PASSWORD).location(),
        "/password"
    );
    logged(
        &card,
        "Configuration reset to factory settings (admin, web 127.0.0.1)",
    );
}

#[test]
fn date_and_time_by_hand_and_from_ntp() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let page = admin.get("/time");
    assert!(page.body.contains("Set by hand (no NTP server)"));
    assert!(page.body.contains("never sets the UPS"));
    let offset = |card: &Card| {
        let card_ms = card
            .service()
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        card_ms - now_ms
    };
    let in_an_hour = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    let typed = modbus_card::calendar::input_value(in_an_hour);
    let p = admin.post("/time", &[("time", &typed)]);
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Time set."));
    let moved = offset(&card);
    assert!((3_590_000..3_602_000).contains(&moved), "{moved} ms");
    let event = logged(&card, "Time changed by user (admin, web 127.0.0.1): +");
    let step: f64 = event
        .rsplit(": +")
        .next()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!((3590.0..3601.0).contains(&step), "{event}");
    // A date that does not exist: said beside the field, the clock left alone.
    let p = admin.post("/time", &[("time", "2026-02-30T10:00")]);
    assert_eq!(p.status, 400);
    assert!(p.body.contains("class=\"field-error\""));
    p.shows(&["is not a date and time"]);
    assert!((moved - offset(&card)).abs() < 2000);

    let p = admin.post("/time", &[("ntp_server", "a b")]);
    assert_eq!(p.status, 400);
    assert!(p.body.contains("is not a host name or address"));
    let p = admin.post("/time", &[("ntp_server", "127.0.0.1:9")]);
    p.shows(&["NTP server: none → 127.0.0.1:9"]);
    assert_eq!(card.service().settings().ntp_server, "127.0.0.1:9");
    let page = admin.get("/time");
    assert!(page.body.contains("NTP server 127.0.0.1:9"));
    assert!(page.body.contains("not yet"));
}

#[test]
fn the_configuration_page_sets_logins_network_and_board() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let page = admin.get("/config");
    page.shows(&[
        "Login timeout (s)",
        "First login reset (days)",
        "Subnet mask",
        "Serial timeout (ms)",
        "Download the configuration",
        "Your password",
        "Watchdog device",
    ]);
    let p = admin.post(
        "/config",
        &[("login_timeout_s", "900"), ("password_days", "30")],
    );
    p.shows(&["Login timeout (s): 600 → 900"]);
    let limits = card.service().accounts.limits();
    assert_eq!(limits.login_timeout, Duration::from_secs(900));
    assert_eq!(limits.password_days, 30);
    // The static address, checked against its mask and gateway.
    let p = admin.post(
        "/config",
        &[
            ("ip_address", "10.1.2.3"),
            ("netmask", "255.255.0.0"),
            ("gateway", "10.2.0.1"),
        ],
    );
    assert_eq!(p.status, 400);
    p.shows(&["10.2.0.1 is not another address of the network 10.1.0.0/16"]);
    let p = admin.post(
        "/config",
        &[
            ("ip_address", "10.1.2.3"),
            ("netmask", "255.255.0.0"),
            ("gateway", "10.1.0.1"),
        ],
    );
    p.shows(&["IP address: 192.168.7.18 → 10.1.2.3"]);
    // A board device: stored, read at the next start, and said so.
    let p = admin.post("/config", &[("net_interface", "eth1")]);
    p.shows(&["Network interface takes effect at the next start"]);
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!(stored.net_interface, "eth1");
}
