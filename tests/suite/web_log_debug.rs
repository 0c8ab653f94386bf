//! The MODBUS debug page (frames decoded, with their fate; JSON for scripts) and the Log
//! page (newest first, paged, filtered, cleared by admin, saved as CSV), over HTTPS, with
//! a real Modbus master (tokio-modbus) making the traffic.

use crate::common;

use common::web::start_web;
use common::{wait_for, Setup, PATIENCE};
use modbus_card::sim::Fault;
use serde_json::Value;
use tokio::time::timeout;
use tokio_modbus::client::{tcp, Reader};
use tokio_modbus::{ExceptionCode, Slave};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debug_page_shows_each_frame_decoded_with_its_fate() {
    let card = start_web(Setup::default().set("poll_rate_s", 0));
    card.wait_state(modbus_card::link::LinkState::Up);
    let mut admin = card.admin();
    let off = admin.get("/debug");
    assert_eq!(off.status, 404);
    assert!(off.body.contains("MODBUS debug is off"));
    assert_eq!(admin.get("/debug.json").status, 404);
    admin.submit("/control", &[("debug_enabled", "true")]);

    let mut m = timeout(PATIENCE, tcp::connect_slave(card.addr(), Slave(1)))
        .await
        .unwrap()
        .unwrap();
    assert!(m.read_holding_registers(0x1060, 8).await.unwrap().is_ok());
    let r = m.read_holding_registers(0x2000, 8).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::IllegalDataAddress));

    let page = admin.get("/debug");
    assert_eq!(page.status, 200);
    page.shows(&[
        "01 03 10 60 00 08 40 D2",
        "slave 1: read holding registers 0x1060 ×8",
        "slave 1: 8 registers: 0x",
        "slave 1: exception 02: illegal data address",
        "TCP 1",
        "to the UPS",
        "from the UPS",
        "src=\"/static/debug.js\"",
    ]);

    let json = |admin: &mut common::web::Browser, query: &str| -> Value {
        let p = admin.get(&format!("/debug.json{query}"));
        assert_eq!(p.status, 200);
        serde_json::from_str(&p.body).unwrap()
    };
    let d = json(&mut admin, "");
    let frames = d["frames"].as_array().unwrap();
    // Newest first: the exception, its request, then the answer and its request.
    let request = frames
        .iter()
        .position(|f| f["bytes"] == "01 03 10 60 00 08 40 D2")
        .expect("the read in the frame log");
    let f = &frames[request];
    assert_eq!(f["source"], "tcp1");
    assert_eq!(f["direction"], "to_ups");
    assert_eq!(f["fate"], "request");
    assert_eq!(f["decoded"], "slave 1: read holding registers 0x1060 ×8");
    assert!(f["time"].as_str().unwrap().len() == "08:00:00.123".len());
    let answer = &frames[request - 1];
    assert_eq!(answer["direction"], "from_ups");
    assert_eq!(answer["fate"], "answer");
    assert!(answer["bytes"].as_str().unwrap().starts_with("01 03 10 "));
    assert!(answer["decoded"]
        .as_str()
        .unwrap()
        .starts_with("slave 1: 8 registers: "));
    assert_eq!(frames[0]["fate"], "exception");
    assert_eq!(frames[0]["bytes"].as_str().unwrap().len(), 5 * 3 - 1);
    assert!(d["counters"]["answers"].as_u64().unwrap() >= 1);
    assert!(d["counters"]["exceptions"].as_u64().unwrap() >= 1);

    // Filtered by source: the link's own frames (baud detection) apart from the master's.
    let tcp = json(&mut admin, "?source=tcp1");
    assert!(tcp["frames"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["source"] == "tcp1"));
    let card_own = json(&mut admin, "?source=card");
    let own = card_own["frames"].as_array().unwrap();
    assert!(!own.is_empty() && own.iter().all(|f| f["source"] == "card"));

    // A silent UPS: the request's fate is a timeout, said in words.
    card.sim.set_fault(Fault::Silent);
    let r = m.read_holding_registers(0x1060, 2).await.unwrap();
    assert_eq!(r, Err(ExceptionCode::GatewayTargetDevice));
    let d = json(&mut admin, "?source=tcp1");
    let f = &d["frames"][0];
    assert_eq!(f["fate"], "timeout", "{f}");
    assert_eq!(f["fate_text"], "no answer in time");
    assert_eq!(f["decoded"], "nothing came");
    assert!(admin.get("/debug").body.contains("no answer in time"));
    let js = admin.get("/static/debug.js");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
}

#[test]
fn the_log_is_paged_filtered_saved_and_cleared() {
    let card = start_web(Setup::default());
    card.wait_state(modbus_card::link::LinkState::Up);
    let who = crate::common::admin_who();
    for rate in 1..=60 {
        card.service()
            .live
            .change(&[("poll_rate_s", &rate.to_string())], &who, false)
            .unwrap();
    }
    wait_for("the changes in the log", || {
        card.events().first().is_some_and(|e| {
            e.message
                .starts_with("Polling rate (s) changed from 59 to 60")
        })
    });
    let mut admin = card.admin();
    let p = admin.get("/log");
    assert_eq!(p.status, 200);
    let rows = p.body.matches("<tr><td class=\"num\">").count();
    assert_eq!(rows, 50, "a page of 50");
    // Newest first: admin's login, then the last change.
    let login = p.body.find("Admin login success").unwrap();
    let last = p.body.find("changed from 59 to 60").unwrap();
    let earlier = p.body.find("changed from 58 to 59").unwrap();
    assert!(login < last && last < earlier);
    assert!(!p.body.contains("Cold boot"), "on an older page");
    let older = p
        .body
        .split("href=\"/log?before=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to older events")
        .to_owned();
    let p2 = admin.get(&format!("/log?before={older}"));
    p2.shows(&["Cold boot"]);
    assert!(p2.body.contains("UPS detected at 19200 baud"));
    assert!(!p2.body.contains("changed from 59 to 60"));
    assert!(p2.body.contains(">Newest</a>"));

    // Filtered: one group only.
    let ups = admin.get("/log?group=ups");
    assert!(ups.body.contains("UPS detected at 19200 baud"));
    assert!(!ups.body.contains("Polling rate"));
    let system = admin.get("/log?group=system");
    assert!(system.body.contains("Cold boot"));
    assert!(!system.body.contains("UPS detected"));

    // Saved as CSV: every event, oldest first.
    let csv = admin.get("/log.csv");
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(csv
        .header("content-disposition")
        .unwrap()
        .contains("modbus-card-events.csv"));
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "id,time_utc,kind,message");
    assert_eq!(lines.len() - 1, card.events().len());
    assert!(lines[1].contains(",cold_boot,Cold boot"), "{}", lines[1]);
    assert!(lines
        .iter()
        .any(|l| l.ends_with(",\"Polling rate (s) changed from 59 to 60 (admin, test)\"")));

    // Cleared by admin, once confirmed: the clearing is then the first event.
    admin.get("/log");
    let p = admin.post("/log/clear", &[]);
    assert!(p.body.contains("Clear the event log?"));
    assert!(card.events().len() > 60, "not yet");
    let p = admin.post("/log/clear", &[("confirm", "yes")]);
    assert_eq!(p.status, 303);
    assert_eq!(p.location(), "/log");
    let events = card.events();
    let oldest = events.last().unwrap();
    assert_eq!(oldest.kind, "log_cleared");
    assert_eq!(oldest.message, "Event log cleared (admin, web 127.0.0.1)");
    assert!(events.len() < 5, "{events:?}");
    assert!(admin
        .get("/log")
        .body
        .contains("Event log cleared (admin, web 127.0.0.1)"));
}
