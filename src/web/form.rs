//! Form bodies, already whole in memory (the front capped them at 1 MiB):
//! `application/x-www-form-urlencoded` (every text form) and `multipart/form-data` (file
//! uploads). Parsing a body in memory is a few lines; rouille's multipart reader, built for
//! streams, pulls unmaintained crates and is not used.

use rouille::Request;

/// Most fields taken from one form.
const MAX_FIELDS: usize = 32;

/// The fields of a posted form, by name; file fields hold the file's bytes.
#[derive(Debug, Default)]
pub struct Form {
    fields: Vec<(String, Vec<u8>)>,
}

impl Form {
    /// The request's form (its body can be read once).
    pub fn of(req: &Request) -> Form {
        let mut body = Vec::new();
        if let Some(mut data) = req.data() {
            let _ = std::io::Read::read_to_end(&mut data, &mut body);
        }
        Form::parse(req.header("Content-Type").unwrap_or(""), &body)
    }

    /// Parses a body by its Content-Type; an unknown type gives an empty form.
    pub fn parse(ctype: &str, body: &[u8]) -> Form {
        let mime = ctype.split(';').next().unwrap_or("").trim();
        let fields = if mime.eq_ignore_ascii_case("multipart/form-data") {
            boundary(ctype)
                .map(|b| multipart(body, b.as_bytes()))
                .unwrap_or_default()
        } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            form_urlencoded::parse(body)
                .take(MAX_FIELDS)
                .map(|(k, v)| (k.into_owned(), v.into_owned().into_bytes()))
                .collect()
        } else {
            Vec::new()
        };
        Form { fields }
    }

    /// A field's bytes (a file's content).
    pub fn bytes(&self, name: &str) -> &[u8] {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// A text field, if the form has it (and it is UTF-8).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// A text field; invalid UTF-8 reads as empty.
    pub fn text(&self, name: &str) -> &str {
        std::str::from_utf8(self.bytes(name)).unwrap_or("")
    }
}

/// The boundary parameter of a multipart Content-Type.
pub(crate) fn boundary(ctype: &str) -> Option<String> {
    ctype.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// The parts of a multipart body (RFC 7578): each starts after `--boundary` CRLF, has
/// headers up to an empty line, and its content ends at CRLF `--boundary`.
fn multipart(body: &[u8], boundary: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut delimiter = b"\r\n--".to_vec();
    delimiter.extend_from_slice(boundary);
    let mut fields = Vec::new();
    // The first delimiter may open the body without the CRLF before it.
    let mut rest = match find(body, &delimiter[2..]) {
        Some(i) => &body[i + delimiter.len() - 2..],
        None => return fields,
    };
    while fields.len() < MAX_FIELDS {
        // After a delimiter: "--" ends the body, CRLF starts a part.
        let Some(part) = rest.strip_prefix(b"\r\n") else {
            break;
        };
        let Some(head_end) = find(part, b"\r\n\r\n") else {
            break;
        };
        let headers = String::from_utf8_lossy(&part[..head_end]);
        let content_start = head_end + 4;
        let Some(end) = find(&part[content_start..], &delimiter) else {
            break;
        };
        if let Some(name) = field_name(&headers) {
            fields.push((name, part[content_start..content_start + end].to_vec()));
        }
        rest = &part[content_start + end + delimiter.len()..];
    }
    fields
}

/// The `name` of a part's Content-Disposition.
pub(crate) fn field_name(headers: &str) -> Option<String> {
    let disposition = headers.lines().find(|l| {
        l.split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    disposition.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Where `needle` first is in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ctype: &str, body: &[u8]) -> Form {
        let req = Request::fake_http(
            "POST",
            "/",
            vec![("Content-Type".into(), ctype.into())],
            body.to_vec(),
        );
        Form::of(&req)
    }

    #[test]
    fn url_encoded_fields() {
        let f = request(
            "application/x-www-form-urlencoded",
            b"user=admin&password=a%21b+c",
        );
        assert_eq!(f.text("user"), "admin");
        assert_eq!(f.text("password"), "a!b c");
        assert_eq!(f.text("none"), "");
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"cert\"; filename=\"a.pem\"\r\nContent-Type: application/octet-stream\r\n\r\nline1\r\nline2\r\n\r\n\
--XyZ--\r\n";
        let f = request("multipart/form-data; boundary=XyZ", body);
        assert_eq!(f.text("csrf"), "abc");
        assert_eq!(f.bytes("cert"), b"line1\r\nline2\r\n");
        // Truncated or garbled bodies give what was whole, never a panic.
        for cut in 0..body.len() {
            let _ = request("multipart/form-data; boundary=XyZ", &body[..cut]);
        }
        assert_eq!(
            request("multipart/form-data; boundary=\"XyZ\"", body).text("csrf"),
            "abc"
        );
        assert_eq!(request("multipart/form-data", body).text("csrf"), "");
    }
}
