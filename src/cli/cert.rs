//! `modbus-card cert client`: a Modbus/TCP Security master's key and certificate, signed
//! offline by the card's client CA, for tests, the demo and a site without its own PKI.

use super::{text, unexpected, Arg, Args, Outcome, Stop, DEFAULT_DATA};
use std::path::PathBuf;

pub const HELP: &str = "  modbus-card cert client [--data DIR] --role NAME --out OUTDIR
      A Modbus/TCP Security master's key and certificate (OUTDIR/client-key.pem,
      OUTDIR/client.pem) carrying role NAME (read: reads only; operate: reads and
      writes), signed by the card's client CA (DIR/mbtls/client-ca.pem, made if
      missing and then trusted in DIR/mbtls/clients-ca.pem). DIR defaults to
      /var/lib/modbus-card.
";

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let (mut data, mut role, mut out) = (None, None, None);
    let mut words = vec![];
    while let Some(arg) = a.arg()? {
        match arg {
            Arg::Long("data") => a.value_into(&mut data, "--data")?,
            Arg::Long("role") => a.value_into(&mut role, "--role")?,
            Arg::Long("out") => a.value_into(&mut out, "--out")?,
            Arg::Value(word) => words.push(text(word)?),
            arg => return Err(unexpected(arg)),
        }
    }
    if words != ["client"] {
        return Err(Stop::Usage(
            "cert takes one word: client (a master's certificate)".into(),
        ));
    }
    let data = PathBuf::from(data.unwrap_or_else(|| DEFAULT_DATA.into()));
    let role: String = role.ok_or("cert client needs --role NAME")?;
    let out = PathBuf::from(out.ok_or("cert client needs --out DIR")?);
    let made = crate::tcp::mbtls::pki::make_client(&data, &role, &out)?;
    println!("{made}");
    Ok(())
}
