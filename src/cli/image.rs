//! `modbus-card image`: firmware images built, verified, and installed at the factory.

use super::{only, text, unexpected, Arg, Args, Outcome, Stop, DEFAULT_DATA};
use crate::firmware::{self, Slots};
use std::path::{Path, PathBuf};

// Literals, so that `image --help` can show the three subcommands' texts at once.
macro_rules! build_help {
    () => {
        "  modbus-card image build --out FILE (--key SECRET_KEY | --unsigned) [--binary PATH]
                          [--init PATH] [--replaces VERSION]
      Makes a firmware image: the binary (default: this program; its version is the
      image's), the init script (default: init/modbus-card as built in), signed with a
      minisign secret key (its password is asked if it has one). --replaces: the
      oldest version it may replace (default 0.0.0: any). --unsigned writes the part
      to sign: `minisign -Sm FILE`, then `cat FILE FILE.minisig > IMAGE`.
"
    };
}
macro_rules! verify_help {
    () => {
        "  modbus-card image verify FILE [--data DIR] [--key PUBLIC_KEY]...
      Checks an image as the card does (signature with DIR's trusted keys, default
      /var/lib/modbus-card, or the keys given; manifest; contents) and shows it.
"
    };
}
macro_rules! install_help {
    () => {
        "  modbus-card image install --firmware ROOT [--data DIR] [--key PUBLIC_KEY]... FILE
      A card's first install (the factory's): the image into slot a of ROOT.
"
    };
}
pub const HELP: &str = concat!(build_help!(), verify_help!(), install_help!());

/// The init script as built in: the default of `image build --init`.
const INIT_SCRIPT: &str = include_str!("../../init/modbus-card");

/// The options of every subcommand; each takes only its own.
#[derive(Default)]
struct Given {
    names: Vec<&'static str>,
    out: Option<String>,
    keys: Vec<String>,
    unsigned: bool,
    binary: Option<String>,
    init: Option<String>,
    replaces: Option<String>,
    data: Option<String>,
    firmware: Option<String>,
}

pub fn main(args: &[String]) -> Outcome {
    let mut a = Args::new(args, HELP);
    let mut g = Given::default();
    let mut words = vec![];
    while let Some(arg) = a.arg()? {
        let name = match arg {
            Arg::Long("out") => a.value_into(&mut g.out, "--out").map(|_| "--out")?,
            Arg::Long("key") => {
                g.keys.push(a.value()?);
                "--key"
            }
            Arg::Long("unsigned") => {
                g.unsigned = true;
                "--unsigned"
            }
            Arg::Long("binary") => a
                .value_into(&mut g.binary, "--binary")
                .map(|_| "--binary")?,
            Arg::Long("init") => a.value_into(&mut g.init, "--init").map(|_| "--init")?,
            Arg::Long("replaces") => a
                .value_into(&mut g.replaces, "--replaces")
                .map(|_| "--replaces")?,
            Arg::Long("data") => a.value_into(&mut g.data, "--data").map(|_| "--data")?,
            Arg::Long("firmware") => a
                .value_into(&mut g.firmware, "--firmware")
                .map(|_| "--firmware")?,
            Arg::Value(word) => {
                let word = text(word)?;
                if words.is_empty() {
                    match word.as_str() {
                        "build" => a.help(build_help!()),
                        "verify" => a.help(verify_help!()),
                        "install" => a.help(install_help!()),
                        _ => {}
                    }
                }
                words.push(word);
                continue;
            }
            arg => return Err(unexpected(arg)),
        };
        g.names.push(name);
    }
    match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["build"] => {
            let allowed = [
                "--out",
                "--key",
                "--unsigned",
                "--binary",
                "--init",
                "--replaces",
            ];
            only(&g.names, &allowed, "image build")?;
            image_build(g)
        }
        ["verify", file] => {
            only(&g.names, &["--key", "--data"], "image verify")?;
            let keys = keys_for(g.keys, g.data)?;
            let (_, verified) = verify_file(Path::new(file), &keys)?;
            show_image(&verified);
            Ok(())
        }
        ["install", file] => {
            only(
                &g.names,
                &["--key", "--data", "--firmware"],
                "image install",
            )?;
            let root = g.firmware.ok_or("image install needs --firmware ROOT")?;
            let keys = keys_for(g.keys, g.data)?;
            let (mut f, verified) = verify_file(Path::new(file), &keys)?;
            Slots::first_install(root.as_ref(), &mut f, &verified)?;
            println!(
                "{} installed in {root}/a; current and good point at it",
                verified.manifest.version
            );
            Ok(())
        }
        _ => Err(Stop::Usage(
            "image takes build, verify FILE or install FILE".into(),
        )),
    }
}

/// The public keys to check an image with: those given, else the data folder's.
fn keys_for(
    given: Vec<String>,
    data: Option<String>,
) -> Result<Vec<firmware::keys::TrustedKey>, String> {
    let data = data.unwrap_or_else(|| DEFAULT_DATA.into());
    if given.is_empty() {
        return firmware::keys::trusted(data.as_ref());
    }
    given
        .iter()
        .map(|k| firmware::keys::read_public(k.as_ref()))
        .collect()
}
fn verify_file(
    path: &Path,
    keys: &[firmware::keys::TrustedKey],
) -> Result<(std::fs::File, firmware::image::Verified), String> {
    let refused = |e: firmware::Refusal| format!("{} refused: {e}", path.display());
    let verified = firmware::image::verify(path, keys).map_err(refused)?;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, verified))
}

fn show_image(v: &firmware::image::Verified) {
    let m = &v.manifest;
    println!(
        "modbus-card firmware image, format {}",
        firmware::image::FORMAT
    );
    println!("  version        {}", m.version);
    println!("  replaces       {} and later", m.replaces);
    println!("  for            {}", v.machine);
    for (name, len) in &m.files {
        println!("  file           {name} ({len} bytes)");
    }
    println!("  signed by      {}", v.signed_by);
    println!("  signed comment {}", v.signed_comment);
    println!("signature, manifest and contents are good");
}

fn image_build(g: Given) -> Outcome {
    use firmware::image;
    let out = PathBuf::from(g.out.ok_or("image build needs --out FILE")?);
    if g.keys.len() > 1 {
        return Err(Stop::Usage("--key is given twice".into()));
    }
    let key = g.keys.into_iter().next();
    let unsigned = g.unsigned;
    if key.is_some() == unsigned {
        return Err("image build needs --key SECRET_KEY or --unsigned".into());
    }
    let binary = match g.binary {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?,
    };
    let replaces = g.replaces.unwrap_or_else(|| "0.0.0".into());
    let replaces = firmware::version::Version::parse(&replaces)
        .ok_or_else(|| format!("--replaces {replaces}: not a version such as 0.1.0"))?;
    let init_given = g.init;
    // The built-in init script goes through a file like a given one.
    let tmp_init = out.with_extension("init.tmp");
    let init = match &init_given {
        Some(p) => PathBuf::from(p),
        None => {
            std::fs::write(&tmp_init, INIT_SCRIPT)
                .map_err(|e| format!("{}: {e}", tmp_init.display()))?;
            tmp_init.clone()
        }
    };
    let body = if unsigned {
        out.clone()
    } else {
        out.with_extension("body.tmp")
    };
    let built = (|| {
        let mut file =
            std::fs::File::create(&body).map_err(|e| format!("{}: {e}", body.display()))?;
        let manifest = image::write_body(
            &image::Build {
                binary: &binary,
                init_script: &init,
                replaces,
            },
            &mut file,
        )?;
        if let Some(key) = &key {
            let name = out.file_name().unwrap_or_default().to_string_lossy();
            let comment = format!(
                "modbus-card {} image {name}, signed at {}",
                manifest.version,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            );
            let signature = firmware::keys::sign(key.as_ref(), &body, &comment)?;
            std::io::Write::write_all(&mut file, signature.as_bytes())
                .map_err(|e| format!("{}: {e}", body.display()))?;
            file.sync_all().map_err(|e| e.to_string())?;
            std::fs::rename(&body, &out).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        Ok::<_, String>(manifest)
    })();
    let _ = std::fs::remove_file(&tmp_init);
    if built.is_err() {
        let _ = std::fs::remove_file(&body);
    }
    let manifest = built?;
    println!(
        "{}: modbus-card {} (replaces {} and later){}",
        out.display(),
        manifest.version,
        manifest.replaces,
        if unsigned {
            "; unsigned: sign it with `minisign -Sm FILE`, then append FILE.minisig to it"
        } else {
            ", signed"
        }
    );
    Ok(())
}
