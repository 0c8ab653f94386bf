//! The configuration file through the web: `/config/export` downloads every setting as
//! TOML; an upload is checked whole and shown as what it would change, and changes the
//! card only once confirmed. Broken and hostile files change nothing and say why, at
//! their line.

use crate::common;

use common::web::{start_web, Browser, Page};
use common::{wait_for, Card, Setup};
use modbus_card::store::Store;

fn export(b: &mut Browser) -> String {
    let p = b.get("/config/export");
    assert_eq!(p.status, 200);
    assert_eq!(
        p.header("content-type"),
        Some("application/toml; charset=utf-8")
    );
    assert!(p
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment;"));
    p.body
}

fn upload(b: &mut Browser, file: &[u8]) -> Page {
    b.get("/config");
    b.post_files("/config/file", &[("file", file)])
}

/// Confirms the preview `p` as its form would.
fn confirm(b: &mut Browser, p: &Page) -> Page {
    let file = p.field("file").expect("the file in the preview's form");
    let expect = p.field("expect").expect("the preview's digest");
    b.post(
        "/config/file/apply",
        &[("file", &file), ("expect", &expect)],
    )
}

fn kinds(card: &Card, kind: &str) -> usize {
    card.events().iter().filter(|e| e.kind == kind).count()
}

#[test]
fn an_exported_file_uploaded_again_changes_nothing() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    // Stored, not a command-line override (which the file never carries).
    admin
        .submit("/modbus", &[("routing", "transparent")])
        .shows(&["Unit id routing"]);
    let file = export(&mut admin);
    // It is TOML, as an independent parser reads it, with every setting.
    let table: toml::Table = toml::from_str(&file).unwrap();
    assert_eq!(table["format"].as_integer(), Some(1));
    assert_eq!(table["routing"].as_str(), Some("transparent"));
    assert_eq!(table.len(), modbus_card::settings::DEFS.len() + 1);
    assert!(!file.contains("$argon2"), "no password hash in the file");
    let before = card.service().settings();
    let p = upload(&mut admin, file.as_bytes());
    assert_eq!(p.status, 200, "{}", p.body);
    p.shows(&["nothing to change"]);
    assert_eq!(*card.service().settings(), *before);
    // The event log is written by its own thread: the routing's change is there once it
    // is, and then it is the only one.
    card.wait_event("setting_changed");
    assert_eq!(kinds(&card, "setting_changed"), 1, "the routing only");
    assert_eq!(kinds(&card, "configuration_loaded"), 0);
}

#[test]
fn an_uploaded_file_is_shown_first_and_applied_once_confirmed() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let file = export(&mut admin)
        .replace("\npoll_rate_s = 10\n", "\npoll_rate_s = 3\n")
        .replace(
            "\nmodbus_allow = \"\"\n",
            "\nmodbus_allow = \"127.0.0.0/8\"\n",
        );
    let p = upload(&mut admin, file.as_bytes());
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Load this configuration file?"));
    p.shows(&["changes 2 settings"]);
    for shown in [
        "Polling rate (s)",
        "poll_rate_s",
        "Masters allowed",
        "127.0.0.0/8",
    ] {
        assert!(p.body.contains(shown), "the preview lacks {shown}");
    }
    assert_eq!(card.service().settings().poll_rate_s, 10, "nothing yet");

    // A confirmation that does not match what was shown is shown again, not applied.
    let mut forged = p.field("file").unwrap();
    forged = forged.replace("poll_rate_s = 3", "poll_rate_s = 4");
    let expect = p.field("expect").unwrap();
    let again = admin.post(
        "/config/file/apply",
        &[("file", &forged), ("expect", &expect)],
    );
    again.shows(&["The settings changed since"]);
    assert_eq!(card.service().settings().poll_rate_s, 10);

    let done = confirm(&mut admin, &p);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done
        .body
        .contains("Configuration file loaded: 2 settings changed"));
    assert!(done.body.contains("Polling rate (s): 10 → 3"));
    let now = card.service().settings();
    assert_eq!(now.poll_rate_s, 3);
    assert_eq!(
        modbus_card::access::list_text(&now.modbus_allow),
        "127.0.0.0/8"
    );
    let stored = Store::open(&card.data).unwrap().load_settings().unwrap();
    assert_eq!(stored.poll_rate_s, 3);
    let loaded = card.wait_event("configuration_loaded");
    assert_eq!(
        loaded.message,
        "Configuration file loaded: 2 settings changed (admin, web 127.0.0.1, configuration file)"
    );
    wait_for("each setting logged", || {
        kinds(&card, "setting_changed") == 2
    });
    assert!(card.events().iter().any(|e| e.message
        == "Polling rate (s) changed from 10 to 3 (admin, web 127.0.0.1, configuration file)"));
}

#[test]
fn a_preview_gone_stale_is_shown_again() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let file = export(&mut admin).replace("\npoll_rate_s = 10\n", "\npoll_rate_s = 3\n");
    let p = upload(&mut admin, file.as_bytes());
    // Someone changes another setting the file holds before the confirmation.
    admin.post("/modbus", &[("routing", "transparent")]);
    let again = confirm(&mut admin, &p);
    again.shows(&["The settings changed since"]);
    again.shows(&["Unit id routing"]);
    assert_eq!(card.service().settings().poll_rate_s, 10);
}

#[test]
fn broken_and_hostile_files_are_refused_with_nothing_changed() {
    let card = start_web(Setup::default());
    let mut admin = card.admin();
    let good = export(&mut admin);
    let before = card.service().settings();
    let cut = &good[..good.rfind("watchdog_device = \"").unwrap() + 19];
    let binary: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    let big_text = format!("format = 1\n{}", "# padding\n".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "truncated",
            cut.as_bytes().to_vec(),
            vec!["no closing quote"],
        ),
        (
            "wrong types",
            b"format = 1\npoll_rate_s = \"5\"\nhttp_enabled = 1\nntp_server = 7\n".to_vec(),
            vec![
                "line 2: poll_rate_s takes a whole number",
                "line 3: http_enabled takes true or false",
                "line 4: ntp_server takes a string in double quotes",
            ],
        ),
        (
            "bad values",
            b"format = 1\n\nrs485_slave = 200\nmodbus_port = 0\n".to_vec(),
            vec!["line 3: rs485_slave", "line 4: modbus_port"],
        ),
        (
            "unknown keys and syntax",
            b"format = 1\nnonsense = 3\njust words\n".to_vec(),
            vec!["line 2: unknown setting", "line 3: expected key = value"],
        ),
        ("binary", binary, vec!["not a text file"]),
        ("too big", big_text.into_bytes(), vec!["at most 64 KiB"]),
        (
            "not ours",
            b"[server]\nport = 80\n".to_vec(),
            vec!["line 1"],
        ),
        ("empty", vec![], vec!["no file was sent"]),
    ];
    for (what, file, said) in cases {
        let p = upload(&mut admin, &file);
        assert_eq!(p.status, 400, "{what}: {}", p.body);
        assert!(
            p.body
                .contains("The configuration file was refused; nothing was changed"),
            "{what}"
        );
        for s in said {
            assert!(p.body.contains(s), "{what}: no '{s}' in {}", p.body);
        }
    }
    // 10 MiB: the front refuses the body by its length before it reaches the page; the
    // client sees a 413 or a connection closed in the middle of its upload.
    let huge = vec![b'#'; 10 * 1024 * 1024];
    admin.get("/config");
    match admin.try_post_files("/config/file", &[("file", &huge)]) {
        Ok(p) => assert_eq!(p.status, 413, "{}", p.body),
        Err(e) => assert!(matches!(e, ureq::Error::Io(_)), "{e:?}"),
    }
    // Still serving, and nothing changed.
    assert_eq!(admin.get("/config").status, 200);
    assert_eq!(*card.service().settings(), *before);
    assert_eq!(kinds(&card, "setting_changed"), 0);
    assert_eq!(kinds(&card, "configuration_loaded"), 0);

    // A Read/Write user may load settings, but not the board's devices.
    let mut op = card.user(&mut admin, "op", "read-write");
    let board = good.replace(
        "\nnet_interface = \"eth0\"\n",
        "\nnet_interface = \"eth1\"\n",
    );
    let p = upload(&mut op, board.as_bytes());
    assert_eq!(p.status, 400);
    p.shows(&["only admin changes the board"]);
    assert_eq!(*card.service().settings(), *before);
    // Nor who can reach the card: the services and the Modbus access rules.
    for (line, changed) in [
        ("\nhttps_enabled = true\n", "\nhttps_enabled = false\n"),
        ("\nssh_enabled = true\n", "\nssh_enabled = false\n"),
        (
            "\nmodbus_write = \"everyone\"\n",
            "\nmodbus_write = \"nobody\"\n",
        ),
        (
            "\nmodbus_allow = \"\"\n",
            "\nmodbus_allow = \"10.0.0.0/8\"\n",
        ),
    ] {
        assert!(good.contains(line), "{line} in the exported file");
        let p = upload(&mut op, good.replace(line, changed).as_bytes());
        assert_eq!(p.status, 400, "{changed}");
        p.shows(&["only admin decides who can reach the card"]);
    }
    assert_eq!(*card.service().settings(), *before);
}
