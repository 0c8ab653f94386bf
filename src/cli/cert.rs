//! `modbus-card cert`: Modbus/TCP Security's certificates offline, as the Modbus/TCP
//! Security page has them: a master's key and certificate made by the card's client CA
//! (for tests, the demo and a site without its own PKI), a master's request signed, a
//! serial number revoked or un-revoked. Changes are logged in the card's event log.

use super::{settings::BY, text, unexpected, Arg, Args, Outcome, Stop, DEFAULT_DATA};
use crate::event::{Event, Stamped};
use crate::tcp::mbtls::{pki, trust};
use std::path::{Path, PathBuf};

// Literals, so that `cert --help` can show every subcommand's text at once.
macro_rules! client_help {
    () => {
        "  modbus-card cert client [--data DIR] --role NAME --out OUTDIR
      A Modbus/TCP Security master's key and certificate (OUTDIR/client-key.pem,
      OUTDIR/client.pem) carrying role NAME (read: reads only; operate: reads and
      writes), signed by the card's client CA (DIR/mbtls/client-ca.pem, made if
      missing and then trusted in DIR/mbtls/clients-ca.pem). DIR defaults to
      /var/lib/modbus-card.
"
    };
}
macro_rules! sign_help {
    () => {
        "  modbus-card cert sign [--data DIR] --role NAME --out FILE REQUEST
      Signs a master's certificate request (PKCS#10, PEM file REQUEST) with role NAME
      by the card's client CA (made and trusted if missing); the certificate goes to
      FILE. The master's key never leaves it. A request whose signature does not
      verify is refused.
"
    };
}
macro_rules! revoke_help {
    () => {
        "  modbus-card cert revoke|unrevoke [--data DIR] SERIAL
      Refuses the masters' certificates with serial number SERIAL (hexadecimal, with
      or without colons) from their next connection, or no longer.
"
    };
}
pub const HELP: &str = concat!(client_help!(), sign_help!(), revoke_help!());

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut role, mut out) = (None, None, None);
    let mut words = vec![];
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("role") => a.value_into(&mut role, "--role")?,
            Arg::Long("out") => a.value_into(&mut out, "--out")?,
            Arg::Value(word) => {
                let word = text(word)?;
                if words.is_empty() {
                    match word.as_str() {
                        "client" => a.help(client_help!()),
                        "sign" => a.help(sign_help!()),
                        "revoke" | "unrevoke" => a.help(revoke_help!()),
                        _ => {}
                    }
                }
                words.push(word);
            }
            arg => return Err(unexpected(arg)),
        }
    }
    let data = PathBuf::from(data.unwrap_or_else(|| DEFAULT_DATA.into()));
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let what = match words[..] {
        ["client"] => {
            let role: String = role.ok_or("cert client needs --role NAME")?;
            let out = PathBuf::from(out.ok_or("cert client needs --out DIR")?);
            println!("{}", pki::make_client(&data, &role, &out)?);
            return Ok(());
        }
        ["sign", request] => {
            let role: String = role.ok_or("cert sign needs --role NAME")?;
            let out = PathBuf::from(out.ok_or("cert sign needs --out FILE")?);
            let csr = std::fs::read_to_string(request).map_err(|e| format!("{request}: {e}"))?;
            crate::tcp::mbtls::role::check_name(&role)?;
            let (pem, serial) = pki::sign_csr(&data, &csr, &role)?;
            std::fs::write(&out, pem).map_err(|e| format!("{}: {e}", out.display()))?;
            println!(
                "{}: a certificate with role '{role}', serial {serial}",
                out.display()
            );
            format!("certificate signed from {request} with role '{role}' (serial {serial})")
        }
        [word @ ("revoke" | "unrevoke"), serial] => {
            if role.is_some() || out.is_some() {
                return Err(Stop::Usage(format!("cert {word} takes no --role or --out")));
            }
            let on = word == "revoke";
            let s = trust::set_revoked(&data, serial, on)?;
            let what = match on {
                true => format!("certificate with serial {s} revoked"),
                false => format!("certificate with serial {s} no longer revoked"),
            };
            println!("{what}: from the next connection");
            what
        }
        _ => {
            return Err(Stop::Usage(
                "cert takes client, sign REQUEST, revoke SERIAL or unrevoke SERIAL".into(),
            ))
        }
    };
    log(&data, what)
}

/// The change in the card's event log, as the page logs it.
fn log(data: &Path, what: String) -> Outcome {
    let mut store = crate::store::Store::open(data).map_err(|e| e.to_string())?;
    let event = Stamped {
        at: std::time::SystemTime::now(),
        event: Event::MbtlsChanged {
            what,
            by: BY.into(),
        },
    };
    store.add_events(&[event]).map_err(|e| e.to_string())?;
    Ok(())
}
