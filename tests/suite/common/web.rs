//! The card's web interface as a browser sees it, through ureq (rustls, TLS 1.3): a cookie
//! jar, the Origin header a browser sends with forms, the CSRF token from the last page.

use super::{start_with, Card, Setup, PATIENCE};
use modbus_card::accounts::Mac;
use modbus_card::service::Options;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The MAC every web test card has, and the default admin password it gives.
pub const MAC: &str = "00:1a:2b:3c:4d:5e";
pub const DEFAULT_PASSWORD: &str = "3C4D5E";
/// A password that passes the policy.
pub const GOOD: &str = "Cardpass12!Ab";
pub const GOOD_2: &str = "Second12pass!X";

/// A card serving HTTP and HTTPS on loopback ports of its own.
pub fn start_web(setup: Setup) -> Card {
    start_with(
        setup,
        Options {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: Some("127.0.0.1:0".parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        },
    )
}

impl Card {
    /// Stops the service and starts it again on the same data, UPS and MAC, with HTTPS on
    /// `https` (and HTTP on a port of its own).
    pub fn restart_web(&mut self, https: &str) {
        self.stop();
        let service = modbus_card::service::Service::start(Options {
            data: self.data.clone(),
            ups: self.sim.path().unwrap().to_path_buf(),
            modbus: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: Some(https.parse().unwrap()),
            mac: Some(MAC.parse::<Mac>().unwrap()),
            ..Options::default()
        })
        .unwrap();
        self.service = Some(service);
    }

    pub fn https(&self) -> SocketAddr {
        self.service().https_addr().expect("HTTPS served")
    }

    pub fn http(&self) -> SocketAddr {
        self.service().http_addr().expect("HTTP served")
    }

    /// The card's root certificate as it keeps it.
    pub fn root_pem(&self) -> Vec<u8> {
        std::fs::read(self.data.join("tls/ca.pem")).unwrap()
    }

    /// A browser on HTTPS that trusts the card's root.
    pub fn browser(&self) -> Browser {
        Browser::new(&format!("https://{}", self.https()), Some(&self.root_pem()))
    }

    /// A browser that has logged in as admin and set its own password ([`GOOD`]).
    pub fn admin(&self) -> Browser {
        admin_in(self.browser())
    }

    /// A browser on plain HTTP (for a card whose HTTPS is off).
    pub fn plain_browser(&self) -> Browser {
        Browser::new(&format!("http://{}", self.http()), None)
    }

    /// A browser logged in as a new user `name` with `role` (`read-write`, `read-only`),
    /// added by `admin`; see [`new_user`].
    pub fn user(&self, admin: &mut Browser, name: &str, role: &str) -> Browser {
        new_user(admin, self.browser(), name, role)
    }
}

/// `b` logged in as admin, with admin's own password ([`GOOD`]) set.
pub fn admin_in(mut b: Browser) -> Browser {
    let p = b.login("admin", DEFAULT_PASSWORD);
    assert_eq!(p.location(), "/password", "{}", p.body);
    let p = b.change_password(DEFAULT_PASSWORD, GOOD);
    assert!(p.location().starts_with("/login"), "{}", p.body);
    let p = b.login("admin", GOOD);
    assert_eq!(p.location(), "/", "{}", p.body);
    assert_eq!(b.get("/").status, 200, "Home, and the session's CSRF token");
    b
}

/// `browser` logged in as a new user `name` with `role`, added by `admin` and with its
/// first password changed to [`GOOD_2`]. Admin's session ends: the web has one session
/// at a time.
pub fn new_user(admin: &mut Browser, mut browser: Browser, name: &str, role: &str) -> Browser {
    admin.get("/users");
    let p = admin.post(
        "/users",
        &[
            ("action", "add"),
            ("name", name),
            ("role", role),
            ("password", "Firstpass12!X"),
        ],
    );
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(browser.login(name, "Firstpass12!X").location(), "/password");
    browser.change_password("Firstpass12!X", GOOD_2);
    assert_eq!(browser.login(name, GOOD_2).location(), "/");
    assert_eq!(browser.get("/").status, 200);
    browser
}

/// One answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Fails the test unless the page shows every one of `texts`.
    pub fn shows(&self, texts: &[&str]) {
        for t in texts {
            assert!(self.body.contains(t), "the page lacks {t}:\n{}", self.body);
        }
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or("")
    }

    /// The value of the page's first field named `name`, as a browser would send it (the
    /// HTML escapes undone).
    pub fn field(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\" value=\""))? + name.len() + 15;
        let raw = self.body[at..].split('"').next()?;
        Some(unescape(raw))
    }

    /// The first hidden CSRF field of the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + 19;
        Some(self.body[at..].split('"').next()?.to_owned())
    }
}

/// Text with its HTML character references undone (`&amp;`, `&#34;`, `&#x27;` …).
pub fn unescape(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse::<u32>))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub struct Browser {
    agent: ureq::Agent,
    pub base: String,
    pub cookies: BTreeMap<String, String>,
    /// The Origin header sent with posts; a browser sends the page's own.
    pub origin: Option<String>,
    /// The CSRF token of the last page that had one.
    pub csrf: String,
}

impl Browser {
    /// A client for `base`; with `root` it trusts only that root, without it trusts
    /// anything (for tests of refusals that must happen before a certificate matters).
    pub fn new(base: &str, root: Option<&[u8]>) -> Browser {
        let tls = match root {
            Some(pem) => {
                ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::Specific(
                    Arc::new(vec![ureq::tls::Certificate::from_pem(pem).unwrap()]),
                ))
            }
            None => ureq::tls::TlsConfig::builder().disable_verification(true),
        }
        .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(PATIENCE))
            .build()
            .into();
        Browser {
            agent,
            base: base.to_owned(),
            cookies: BTreeMap::new(),
            origin: Some(base.to_owned()),
            csrf: String::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn take(&mut self, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Page {
        let mut r = r.expect("an answer");
        let headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        for (n, v) in &headers {
            if n.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                if v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let body = r.body_mut().read_to_string().unwrap_or_default();
        let page = Page {
            status: r.status().as_u16(),
            headers,
            body,
        };
        if let Some(t) = page.csrf() {
            self.csrf = t;
        }
        page
    }

    pub fn get(&mut self, path: &str) -> Page {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .call();
        self.take(r)
    }

    /// A GET with extra headers.
    pub fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header());
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let r = req.call();
        self.take(r)
    }

    /// Posts a form with the current CSRF token (unless `fields` has its own).
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            all.push(("csrf", &csrf));
        }
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header());
        if let Some(o) = &self.origin {
            req = req.header("Origin", o);
        }
        let r = req.send_form(all);
        self.take(r)
    }

    /// Posts files and fields as multipart/form-data, with the current CSRF token.
    pub fn post_files(&mut self, path: &str, parts: &[(&str, &[u8])]) -> Page {
        let r = self.send_files(path, parts);
        self.take(r)
    }

    /// [`Browser::post_files`], or the error the client met (a card that closes the
    /// connection on a body it refuses, before the client has sent all of it).
    pub fn try_post_files(
        &mut self,
        path: &str,
        parts: &[(&str, &[u8])],
    ) -> Result<Page, ureq::Error> {
        let r = self.send_files(path, parts)?;
        Ok(self.take(Ok(r)))
    }

    fn send_files(
        &mut self,
        path: &str,
        parts: &[(&str, &[u8])],
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let boundary = "----cardtestboundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        let csrf = self.csrf.clone();
        let mut all: Vec<(&str, &[u8])> = vec![("csrf", csrf.as_bytes())];
        all.extend_from_slice(parts);
        for (name, content) in all {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.pem\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Cookie", self.cookie_header())
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            );
        if let Some(o) = &self.origin {
            req = req.header("Origin", o);
        }
        req.send(&body[..])
    }

    /// Opens `page` (for its CSRF token) and posts `fields` to it.
    pub fn submit(&mut self, page: &str, fields: &[(&str, &str)]) -> Page {
        let form = self.get(page);
        assert_eq!(form.status, 200, "{}", form.body);
        self.post(page, fields)
    }

    /// Opens the login page and logs in; returns the answer to the post.
    pub fn login(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/login");
        assert_eq!(form.status, 200, "{}", form.body);
        self.post("/login", &[("user", user), ("password", password)])
    }

    pub fn change_password(&mut self, current: &str, new: &str) -> Page {
        let form = self.get("/password");
        assert_eq!(form.status, 200, "{}", form.body);
        self.post(
            "/password",
            &[("current", current), ("new", new), ("repeat", new)],
        )
    }
}
