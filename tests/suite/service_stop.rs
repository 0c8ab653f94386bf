//! `stop()` with everything busy at once: a silent UPS and a Modbus master waiting on it
//! (a long serial timeout), an SSH console session open, and a firmware upload half sent.
//! The service must still stop, promptly, with its last event on disk.

use crate::common;
use crate::firmware_fixture;

use common::web::{admin_in, Browser, GOOD, MAC};
use firmware_fixture::*;
use modbus_card::accounts::Mac;
use modbus_card::link::LinkState;
use modbus_card::service::{Options, Service};
use modbus_card::sim::Fault;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio_modbus::client::Reader;

/// Far longer than the 2 s a stop may take, so a stuck stop fails here, not elsewhere.
const SERIAL_TIMEOUT_MS: u64 = 5000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_returns_with_a_silent_ups_a_master_mid_request_an_ssh_session_and_an_upload() {
    let _ = env_logger::builder().is_test(true).try_init();
    let card = Card::install(60);
    let image = std::fs::read(card.image_of(NEW, OLD)).unwrap();
    let service = Service::start(Options {
        data: card.data.clone(),
        ups: card.sim.path().unwrap().to_path_buf(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        firmware: Some(card.root.clone()),
        http: Some(format!("127.0.0.1:{}", card.http).parse().unwrap()),
        ssh: Some("127.0.0.1:0".parse().unwrap()),
        mac: Some(MAC.parse::<Mac>().unwrap()),
        overrides: vec![
            ("upgrade_enabled".into(), "true".into()),
            ("poll_rate_s".into(), "0".into()),
            ("serial_timeout_ms".into(), SERIAL_TIMEOUT_MS.to_string()),
        ],
        ..Options::default()
    })
    .unwrap();
    let status = service.link.status.clone();
    common::wait_for("the UPS found", || status.state() == LinkState::Up);

    // An upload: the head and half of the body, the rest never comes.
    let mut b = admin_in(Browser::new(
        &format!("http://127.0.0.1:{}", card.http),
        None,
    ));
    let page = b.get("/firmware");
    let at = page
        .body
        .find("action=\"/firmware/upload?csrf=")
        .expect("the upload form")
        + 8;
    let action = common::web::unescape(page.body[at..].split('"').next().unwrap());
    let boundary = "----stopboundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"image.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let cookies: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut upload = TcpStream::connect(("127.0.0.1", card.http)).unwrap();
    write!(
        upload,
        "POST {action} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
        card.http,
        cookies.join("; "),
        head.len() + image.len() + tail.len(),
    )
    .unwrap();
    upload.write_all(&image[..image.len() / 2]).unwrap();
    upload.flush().unwrap();

    // An SSH console session, logged in, its menu open.
    let ssh = TcpStream::connect(service.ssh_addr().unwrap()).unwrap();
    let mut session = ssh2::Session::new().unwrap();
    session.set_timeout(common::PATIENCE.as_millis() as u32);
    session.set_tcp_stream(ssh);
    session.handshake().unwrap();
    session.userauth_password("admin", GOOD).unwrap();
    assert!(session.authenticated());
    let mut shell = session.channel_session().unwrap();
    shell
        .request_pty("xterm", None, Some((80, 24, 0, 0)))
        .unwrap();
    shell.shell().unwrap();

    // A master waiting on a UPS that no longer answers.
    card.sim.set_fault(Fault::Silent);
    let mut master = tokio_modbus::client::tcp::connect(service.modbus_addr())
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let answer = master.read_holding_registers(0x1060, 1).await;
        (answer, started.elapsed())
    });
    // Long enough for the request to reach the line; far short of the serial timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the master is still waiting");

    let started = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || service.stop());
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("stop() did not return within 10 s")
        .unwrap();
    let took = started.elapsed();
    eprintln!("stop() took {took:?}");

    // The master had its answer (or its connection closed) when the service stopped, not
    // when the UPS's time was up.
    let (_, waited) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the master still waits after the stop")
        .unwrap();
    assert!(
        waited < Duration::from_millis(SERIAL_TIMEOUT_MS),
        "{waited:?}"
    );
    // The last event is on disk.
    assert_eq!(
        card.events().first().map(|e| e.kind.as_str()),
        Some("stopped")
    );
    drop((shell, session, upload));
}
