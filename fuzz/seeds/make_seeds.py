#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the frames and files
the tests use (src/modbus/*.rs, src/board/*.rs, src/console/input.rs, src/web/form.rs,
tests/suite/web_config_file.rs, tests/suite/web_certs.rs). Run it again after changing it; the seeds
are committed, so CI needs neither it nor openssl."""
import base64, os, shutil, struct, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu(*b):
    b = bytes(b)
    return b + struct.pack("<H", crc16(b))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# Requests of every public function (rtu.rs request_lengths_for_every_public_function).
REQUESTS = [
    [1, 0x01, 0, 0, 0, 8], [1, 0x03, 0x10, 0x60, 0, 48], [1, 0x06, 0x05, 0xB0, 0, 3],
    [1, 0x07], [1, 0x08, 0x00, 0x0B, 0, 0], [1, 0x0B], [1, 0x0C],
    [1, 0x0F, 0, 0, 0, 10, 2, 0xFF, 0x03], [1, 0x10, 0, 0, 0, 2, 4, 0, 1, 0, 2], [1, 0x11],
    [1, 0x14, 7, 6, 0, 4, 0, 1, 0, 2], [1, 0x16, 0, 4, 0, 0xF2, 0, 0x25],
    [1, 0x17, 0, 3, 0, 6, 0, 14, 0, 1, 2, 0, 0xFF], [1, 0x18, 0x04, 0xDE],
    [1, 0x2B, 0x0E, 0x01, 0x00], [1, 0x08, 0, 0, 1, 2, 3, 4, 5], [1, 0x41, 1, 2],
]
# (request PDU, answer) pairs (rtu.rs response_lengths_for_every_public_function).
ANSWERS = [
    ([0x01, 0, 0, 0, 10], [1, 0x01, 2, 0xCD, 0x01]),
    ([0x02, 0, 0, 0, 3], [1, 0x02, 1, 0x05]),
    ([0x03, 0x10, 0x60, 0, 1], [1, 0x03, 2, 0, 42]),
    ([0x04, 0, 8, 0, 1], [1, 0x04, 2, 0, 10]),
    ([0x05, 0, 0xAC, 0xFF, 0], [1, 0x05, 0, 0xAC, 0xFF, 0]),
    ([0x07], [1, 0x07, 0x6D]),
    ([0x08, 0, 0, 0xA5, 0x37], [1, 0x08, 0, 0, 0xA5, 0x37]),
    ([0x0B], [1, 0x0B, 0xFF, 0xFF, 0x01, 0x08]),
    ([0x0C], [1, 0x0C, 8, 0, 0, 1, 8, 1, 0x21, 0x20, 0]),
    ([0x0F, 0, 0x13, 0, 10, 2, 0xCD, 1], [1, 0x0F, 0, 0x13, 0, 10]),
    ([0x10, 0, 1, 0, 2, 4, 0, 10, 1, 2], [1, 0x10, 0, 1, 0, 2]),
    ([0x11], [1, 0x11, 3, 0x42, 0xFF, 0x00]),
    ([0x16, 0, 4, 0, 0xF2, 0, 0x25], [1, 0x16, 0, 4, 0, 0xF2, 0, 0x25]),
    ([0x17, 0, 3, 0, 2, 0, 14, 0, 1, 2, 0, 0xFF], [1, 0x17, 4, 0, 0xFE, 0x0A, 0xCD]),
    ([0x18, 0x04, 0xDE], [1, 0x18, 0, 6, 0, 2, 0x01, 0xB8, 0x12, 0x84]),
    ([0x2B, 0x0E, 1, 0], [1, 0x2B, 0x0E, 0x01, 0x01, 0, 0, 0]),
    ([0x03, 0x00, 0x41, 0, 1], [1, 0x83, 0x02]),
]


def mbap():
    # mbap.rs a_read_request, then two frames in a row, then the bad headers.
    read = bytes([0x01, 0x02, 0, 0, 0, 6, 1, 0x03, 0x10, 0x60, 0x00, 0x30])
    write("mbap", "read", read)
    write("mbap", "two_frames", read + bytes([0, 3, 0, 0, 0, 6, 1, 0x06, 0x05, 0xB0, 0, 3]))
    write("mbap", "largest", bytes([0, 1, 0, 0, 0, 254, 1, 0x10]) + bytes(252))
    write("mbap", "bad_protocol", bytes([0, 1, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1]))
    write("mbap", "bad_length", bytes([0, 1, 0, 0, 0xFF, 0xFF]))


def rtu_targets():
    for i, r in enumerate(REQUESTS):
        f = rtu(*r)
        write("rtu_slave", f"request_{i:02}", bytes([0x00]) + f)
        write("rtu_slave", f"request_silent_{i:02}", bytes([0xFF]) + f)
    write("rtu_slave", "noise_then_read", bytes([0x10, 0xAA, 0x55]) + rtu(1, 3, 0, 0, 0, 1))
    for i, (req, ans) in enumerate(ANSWERS):
        pdu = bytes([len(req)]) + bytes(req)
        # No earlier request; then one earlier request of the same function (a late answer).
        write("rtu_master", f"answer_{i:02}", bytes([1, 0]) + pdu + rtu(*ans))
        write("rtu_master", f"late_{i:02}", bytes([1, 1, 1]) + pdu + pdu + rtu(*ans))


def form():
    # form.rs url_encoded_fields and multipart_fields_and_files.
    write("form", "urlencoded", "application/x-www-form-urlencoded\nuser=admin&password=a%20b+c&x=%ZZ")
    body = (
        b"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nadmin\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--\xff\r\n--XyZ--\r\n"
    )
    write("form", "multipart", b"multipart/form-data; boundary=XyZ\n" + body)
    write("form", "multipart_quoted", b'multipart/form-data; boundary="XyZ"\n' + body)


def config_file():
    # tests/suite/web_config_file.rs: a file of some settings, and the refused ones.
    write("config_file", "some_settings", (
        "# modbus-card configuration file\n\nformat = 1\n\n# --- Modbus ---\n"
        "ups_slave = 1\nserial_timeout_ms = 500\npoll_rate_s = 10\nmodbus_port = 502\n"
        "rs485_slave = 1\nrs485_baud = 9600\nmodbus_timeout_s = 60\nhttp_enabled = true\n"
        "ssh_enabled = false\nntp_server = \"pool.ntp.org\"\nnet_interface = \"eth0\"\n"
        "led_net_green = \"net:green\"\nbutton_device = \"\"\nwatchdog_device = \"\\u0041\"\n"
    ))
    write("config_file", "wrong_types", "format = 1\npoll_rate_s = \"5\"\nhttp_enabled = 1\nntp_server = 7\n")
    write("config_file", "bad_values", "format = 1\n\nrs485_slave = 200\nmodbus_port = 0\n")
    write("config_file", "unknown", "format = 1\nnonsense = 3\njust words\n")
    write("config_file", "not_ours", "[server]\nport = 80\n")
    write("config_file", "truncated", "format = 1\nwatchdog_device = \"")


def firmware():
    manifest = b"version=0.2.0\nreplaces=0.1.0\nfile=modbus-card 120\nfile=modbus-card.init 10\n"
    header = b"MBCARDFW" + struct.pack("<IIQQ", 1, len(manifest), 130, 0)
    write("firmware_header", "header", header)
    write("firmware_header", "bad_format", b"MBCARDFW" + struct.pack("<IIQQ", 2, 10, 0, 0))
    write("firmware_manifest", "manifest", manifest)
    write("firmware_manifest", "prerelease", b"version=1.0.0-rc.1\nreplaces=0.9.9\nfile=modbus-card 1\n")
    # A binary: ELF header, then the version stamp (src/firmware/version.rs).
    elf = b"\x7fELF\x02\x01\x01" + bytes(11) + struct.pack("<H", 62)
    stamp = b"\x7fmodbus-card\x00ver" + b"0.2.0".ljust(32, b"\0")
    binary = elf + bytes(120 - len(elf) - len(stamp)) + stamp
    payload = binary + b"#!/bin/sh\n"
    body = header + manifest + payload
    assert len(binary) == 120
    # Odd first byte: the target signs the body with its trusted key.
    write("firmware_verify", "signed_body", b"\x01" + body)
    # Even: a whole image, its signature by a key the card does not trust.
    sig = (
        "untrusted comment: signature from modbus-card image build\n"
        + base64.b64encode(b"ED" + bytes(range(8)) + bytes(64)).decode() + "\n"
        + "trusted comment: fuzz\n"
        + base64.b64encode(bytes(64)).decode() + "\n"
    )
    write("firmware_verify", "untrusted_image", b"\x00" + body + sig.encode())
    write("firmware_verify", "truncated", b"\x00" + body[:40])
    key = (
        "untrusted comment: minisign public key 0706050403020100\n"
        + base64.b64encode(b"Ed" + bytes(range(8)) + bytes(range(32))).decode() + "\n"
    )
    write("trusted_keys", "public_key", key)
    write("trusted_keys", "not_a_key", "hello\n")


def console():
    # console/input.rs tests: line ends, erasing, escapes, UTF-8, Ctrl-C, a long line.
    for name, typed in [
        ("line_ends", b"a\r\nb\rc\n\r\n"),
        ("erase", b"abc\x7f\x08d\x15ef\r"),
        ("escapes", b"ab\x1b[A\x1b[1;5C\x1bOPc\x1b\r"),
        ("utf8", "h\u00e9\u20ac\U0001F600\r".encode() + b"\xff\xc3(\xe2\x82\r"),
        ("ctrl_c", b"secret\x03next\r"),
        ("long", b"x" * 200 + b"\r"),
    ]:
        write("console_line", name + "_echo", bytes([3, 1]) + typed)
        write("console_line", name + "_password", bytes([1, 0]) + typed)


def sntp():
    # sntp.rs reply_to: version 4, server mode, stratum 2.
    p = bytearray(48)
    p[0] = (0 << 6) | (4 << 3) | 4
    p[1] = 2
    p[32:40] = struct.pack(">Q", 0xEC8B_2A00_0000_0000)
    p[40:48] = struct.pack(">Q", 0xEC8B_2A00_1000_0000)
    write("sntp", "reply", bytes([0, 0, 0x81]) + bytes(p))
    kiss = bytearray(p)
    kiss[1] = 0
    kiss[12:16] = b"RATE"
    write("sntp", "kiss", bytes([0, 0, 0x81]) + bytes(kiss))
    write("sntp", "short", bytes([0, 0, 0]) + bytes(p[:20]))


def button():
    # board/button.rs record(): time (16 bytes), type, code, value.
    def record(kind, code, value):
        return bytes(16) + struct.pack("<HHi", kind, code, value)
    write("button", "press_release", record(1, 0x100, 1) + record(0, 0, 0) + record(1, 0x100, 0))
    write("button", "partial", record(1, 0x100, 2) + b"\x01\x00")


def certs():
    # tests/suite/web_certs.rs uploads a certificate for the card's names, its key, and a CA.
    d = tempfile.mkdtemp()
    try:
        def run(*args):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650", "-subj", "/CN=Fuzz CA")
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
        with open(os.path.join(d, "ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "srv.pem", "-days", "3650", "-extfile", "ext")
        read = lambda n: open(os.path.join(d, n), "rb").read()
        write("certs", "with_ca", read("srv.pem") + b"\0" + read("srv.key") + b"\0" + read("ca.pem"))
        write("certs", "without_ca", read("srv.pem") + b"\0" + read("srv.key") + b"\0")
        write("certs", "key_mismatch", read("srv.pem") + b"\0" + read("ca.key") + b"\0")
        write("certs", "ca_as_server", read("ca.pem") + b"\0" + read("ca.key") + b"\0")
    finally:
        shutil.rmtree(d)


def date_time():
    # calendar.rs tests and tests/suite/board_clock.rs: what people and browsers type.
    for i, t in enumerate(["2026-11-24 08:00", "2026-11-24T08:00:30", "2024-02-29 23:59:59 UTC",
                           "1970-01-01T00:00Z", "2026-02-30 08:00", "9999-12-31 23:59:59"]):
        write("date_time", f"typed_{i}", t)


def event_csv():
    write("event_csv", "plain", "link up")
    write("event_csv", "quoting", "a,b\0say \"hi\"\0two\r\nlines\0=1+2")
    write("event_csv", "formula", "-cmd\0@SUM(A1)\0+x\0=HYPERLINK(\"x\")")


def http_head():
    # What browsers, scripts and the tests (tests/suite/web_front.rs) send the front.
    write("http_head", "get", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nUser-Agent: Mozilla/5.0\r\n"
          "Accept: text/html\r\nCookie: session=abc; csrf=def\r\nConnection: keep-alive\r\n\r\n")
    write("http_head", "post", "POST /login HTTP/1.1\r\nHost: card\r\nOrigin: https://card\r\n"
          "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 27\r\n\r\n"
          "user=admin&password=x&csrf=1")
    write("http_head", "upload", "POST /firmware/upload HTTP/1.1\r\nHost: card\r\n"
          "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 16777216\r\n\r\n")
    write("http_head", "http10", "GET /api/status?x=1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    write("http_head", "chunked", "POST /config HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    write("http_head", "pipelined", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    write("http_head", "absolute", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n")
    write("http_head", "tls_hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")


def multipart():
    # A cut byte, then the firmware page's form as a browser sends it (src/web/upload.rs tests).
    form = (b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nt0k3n\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"v.img\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n")
    write("multipart", "whole", b"\x07" + form + b"MCFW\x00\x01image bytes\r\n-\r\n--XyZ--\r\n")
    write("multipart", "cut_short", b"\x00" + form + b"MCFW\x00\x01")
    write("multipart", "no_image", b"\x20--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--XyZ--\r\n")
    write("multipart", "file_bytes", b"\x03\r\n--Xy\r\n-\r\n\r\n--")


if __name__ == "__main__":
    for t in os.listdir(HERE):
        if os.path.isdir(os.path.join(HERE, t)):
            shutil.rmtree(os.path.join(HERE, t))
    mbap(); rtu_targets(); form(); config_file(); firmware(); console(); sntp(); button()
    certs(); event_csv(); date_time(); http_head(); multipart()
