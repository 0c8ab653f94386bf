//! The service's side of the network settings: it runs the apply script at start with the
//! settings in its environment, again when they change, and shows what the script did.
//! (The real script, init/modbus-card-network, is proven with a DHCP server in network
//! namespaces by .ci/network; here a small script in a temporary folder stands in for it,
//! so nothing on this machine is reconfigured.)

use crate::common;

use common::wait_for;
use modbus_card::pty::Pty;
use modbus_card::service::{Options, Service};
use modbus_card::sim::{Sim, SimConfig};
use modbus_card::store::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A script that records its environment, then does `body`.
fn script(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("apply");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nenv | grep ^MC_ | sort >\"$MC_STATE/env\"\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn start(dir: &Path, script: &Path, sim: &Sim, settings: &[(&str, &str)]) -> Service {
    Service::start(Options {
        data: dir.join("data"),
        ups: sim.path().unwrap().to_owned(),
        modbus: Some("127.0.0.1:0".parse().unwrap()),
        network_script: Some(script.to_owned()),
        overrides: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    })
    .unwrap()
}

fn events(dir: &Path) -> Vec<String> {
    Store::open(&dir.join("data"))
        .unwrap()
        .events(100)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect()
}

#[test]
fn the_script_gets_the_settings_and_its_outcome_shows() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let apply = script(
        dir.path(),
        r#"a="$MC_ADDRESS/24"
printf 'mode=static\naddress=%s\ngateway=%s\ndns=%s\nnote=static address %s\n' "$a" "$MC_GATEWAY" "$MC_DNS" "$a" >"$MC_STATE/status"
echo off >"$MC_STATE/ping"
echo "static address $a""#,
    );
    let service = start(
        dir.path(),
        &apply,
        &sim,
        &[
            ("dhcp_enabled", "false"),
            ("ip_address", "10.1.2.3"),
            ("gateway", "10.1.2.1"),
            ("ping_enabled", "false"),
            ("net_interface", "eth7"),
        ],
    );
    let network = service.network.as_ref().unwrap();
    wait_for("the script run", || network.status().applied.is_some());
    let status = network.status();
    let (_, ok, line) = status.applied.clone().unwrap();
    assert!(ok, "{line}");
    assert_eq!(line, "static address 10.1.2.3/24");
    assert_eq!(status.mode, "static");
    assert_eq!(status.address, "10.1.2.3/24");
    assert_eq!(status.gateway, "10.1.2.1");
    assert_eq!(status.ping, "off");
    let env = std::fs::read_to_string(dir.path().join("data/network/env")).unwrap();
    assert_eq!(
        env,
        format!(
            "MC_ADDRESS=10.1.2.3\nMC_DHCP=0\nMC_DNS=\nMC_GATEWAY=10.1.2.1\nMC_IFACE=eth7\n\
         MC_NETMASK=255.255.255.0\nMC_PING=0\nMC_STATE={}\n",
            dir.path().join("data/network").display()
        )
    );
    wait_for("the event", || {
        events(dir.path()).contains(&"Network: static address 10.1.2.3/24".to_string())
    });

    // A change through the settings' door runs it again with the new values.
    let who = crate::common::admin_who();
    service
        .live
        .change(
            &[("dhcp_enabled", "true"), ("ping_enabled", "true")],
            &who,
            true,
        )
        .unwrap();
    wait_for("the script run again", || {
        std::fs::read_to_string(dir.path().join("data/network/env"))
            .is_ok_and(|e| e.contains("MC_DHCP=1") && e.contains("MC_PING=1"))
    });
    service.stop();
}

#[test]
fn a_failing_script_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::on_pty(Pty::open().unwrap(), SimConfig::default()).unwrap();
    let apply = script(
        dir.path(),
        "echo 'cannot set 192.168.7.18/24 on eth0' >&2\nexit 1",
    );
    let service = start(dir.path(), &apply, &sim, &[]);
    let network = service.network.as_ref().unwrap();
    wait_for("the script run", || network.status().applied.is_some());
    let (_, ok, line) = network.status().applied.unwrap();
    assert!(!ok);
    assert_eq!(line, "cannot set 192.168.7.18/24 on eth0");
    wait_for("the event", || {
        events(dir.path()).contains(
            &"Network: settings not applied: cannot set 192.168.7.18/24 on eth0".to_string(),
        )
    });
    service.stop();
}
