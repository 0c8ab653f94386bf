"""The Remote syslog panel in a real browser: headless Chromium logs in to the demo, sets
remote syslog up on the Configuration page (UDP to a socket of this script's own on
loopback), sends a test message and finds it on the socket, then points the card at a TCP
port where nothing listens and sees the test refused with the reason; screenshots at phone
and laptop widths (the page each time, and the panel alone once).

usage: web_syslog.py BINARY DATA_DIR SCREENSHOT_DIR"""
import base64, os, re, socket, subprocess, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BIN, DATA, SHOTS = sys.argv[1:4]
os.makedirs(SHOTS, exist_ok=True)
SIZES = {"phone": (390, 844), "laptop": (1366, 900)}
HTTPS = 18643

p = subprocess.Popen([BIN, "demo", "--data", DATA, "--http", "127.0.0.1:18280", "--https", f"127.0.0.1:{HTTPS}",
                      "--ssh", "127.0.0.1:12422", "--modbus", "127.0.0.1:11702"],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
out = ""
while "Ctrl-C stops" not in out:
    line = p.stdout.readline()
    if not line:
        raise SystemExit("demo ended: " + out)
    out += line

# The log server: a UDP socket on loopback.
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
server.settimeout(30)
udp_port = server.getsockname()[1]
# A TCP port where nothing listens.
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
closed_port = probe.getsockname()[1]
probe.close()

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
          "--hide-scrollbars", "--ignore-certificate-errors", f"--user-data-dir={DATA}-profile"]:
    opts.add_argument(a)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(d, 30)


def metrics(size):
    w, h = SIZES[size]
    return {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": size == "phone"}


PANEL_RECT = """
    const p = [...document.querySelectorAll('section.panel')]
        .find(s => s.querySelector('h2').textContent === 'Remote syslog');
    const r = p.getBoundingClientRect();
    return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};"""


def shoot(name, only_panel=False):
    """The whole page at each width, or only the outcome above and the Remote syslog panel."""
    for size in SIZES:
        m = metrics(size)
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", m)
        time.sleep(0.3)
        height = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
        m["height"] = max(m["height"], int(height))
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", m)
        time.sleep(0.3)
        args = {"format": "png"}
        if only_panel:
            rect = d.execute_script(PANEL_RECT)
            args["clip"] = {k: rect[k] for k in ("x", "y", "width", "height")}
            args["clip"]["scale"] = 1
            args["captureBeyondViewport"] = True
        shot = d.execute_cdp_cmd("Page.captureScreenshot", args)
        open(os.path.join(SHOTS, f"{name}-{size}.png"), "wb").write(base64.b64decode(shot["data"]))
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def fill(fields):
    for k, v in fields.items():
        el = d.find_element(By.NAME, k)
        el.clear()
        el.send_keys(v)


def submit():
    d.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()


def panel():
    return d.find_element(By.XPATH, "//section[h2='Remote syslog']")


def outcome():
    # Read in one step: the page may be replaced between a find and a read.
    return d.execute_script("const m = document.querySelector('main'); return m ? m.innerText : '';")


def set_syslog(server, port, transport):
    d.get(base + "/config")
    fill({"syslog_server": server, "syslog_port": str(port)})
    Select(d.find_element(By.NAME, "syslog_enabled")).select_by_value("true")
    Select(d.find_element(By.NAME, "syslog_transport")).select_by_value(transport)
    panel().find_element(By.XPATH, ".//button[text()='Save']").click()
    wait.until(lambda d: "Saved and in force" in outcome())


def send_test():
    panel().find_element(By.XPATH, ".//button[text()='Send a test message']").click()
    wait.until(lambda d: "Test message sent" in outcome() or "No test message sent" in outcome())


try:
    base = f"https://127.0.0.1:{HTTPS}"
    d.get(base + "/")
    wait.until(EC.url_contains("/login"))
    default = re.search(r"first password ([0-9A-F]{6})", out).group(1)
    new = "Browser12!Pass"
    fill({"user": "admin", "password": default}); submit()
    time.sleep(1)
    if "/password" in d.current_url:
        fill({"current": default, "new": new, "repeat": new}); submit()
        time.sleep(1)
        fill({"user": "admin", "password": new}); submit()
    wait.until(lambda d: d.current_url.rstrip("/").endswith(str(HTTPS)))

    set_syslog("127.0.0.1", udp_port, "udp")
    # Saving it was an event, sent at once.
    got = server.recv(4096).decode()
    assert "setting_changed" in got, got
    send_test()
    said = outcome()
    assert f"Test message sent to 127.0.0.1:{udp_port} over udp" in said, said
    deadline = time.time() + 30
    while "syslog_test" not in got:
        assert time.time() < deadline, "no test message on the socket"
        got = server.recv(4096).decode()
    print("the server got:", got)
    shoot("config-syslog")
    shoot("syslog", only_panel=True)

    set_syslog("127.0.0.1", closed_port, "tcp")
    send_test()
    said = outcome()
    assert "No test message sent" in said and "refused" in said.lower(), said
    print("refused:", [l for l in said.splitlines() if "No test message" in l][0])
    shoot("config-syslog-refused")
finally:
    d.quit()
    p.terminate(); p.wait()
