//! The streamed firmware upload's form: `web::upload::FilePart`, which the firmware page
//! reads the image through (src/web/pages/firmware.rs) as the body arrives. Input: a byte
//! for how the body is cut into reads, then the body.
//! Properties: the file read out is one stretch of the body as sent; and the same bytes
//! sent as the file of a well-formed form come out whole, however the reads are cut.
#![no_main]
use libfuzzer_sys::fuzz_target;
use modbus_card::web::upload::FilePart;
use std::io::Read;

const CTYPE: &str = "multipart/form-data; boundary=XyZ";

/// Gives `step` bytes a read, as a socket would.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(out.len()).min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn read_file(body: &[u8], step: usize) -> std::io::Result<Vec<u8>> {
    let mut part = FilePart::new(Trickle(body, step), CTYPE, "image")?;
    let mut got = Vec::new();
    part.read_to_end(&mut got)?;
    Ok(got)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    // Any body: what comes out is in it.
    if let Ok(file) = read_file(rest, step) {
        assert!(
            file.is_empty() || rest.windows(file.len()).any(|w| w == file),
            "a file that is not in the body"
        );
    }
    // The bytes as the file of a well-formed form (unless they hold the delimiter).
    if rest.windows(7).any(|w| w == b"\r\n--XyZ") {
        return;
    }
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt0k3n\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"v.img\"\r\n\
Content-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    body.extend_from_slice(rest);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    assert_eq!(read_file(&body, step).expect("a well-formed form"), rest);
});
