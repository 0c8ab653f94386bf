"""The UPS on Home in a real browser: headless Chromium logs in to the demo, whose history
is given 24 hours of samples first (an outage of 40 minutes, a gap of an hour where the
card was off), sees the UPS on line, types `mains off` to the simulated UPS and waits for
"On battery" on the page (it refreshes itself) and for the charts to follow without a
reload, then raises an alarm and waits for it in
words, and saves screenshots at phone and laptop widths.

usage: web_ups.py BINARY DATA_DIR SCREENSHOT_DIR"""
import base64, os, re, sqlite3, subprocess, sys, time, math
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BIN, DATA, SHOTS = sys.argv[1:4]
os.makedirs(SHOTS, exist_ok=True)
SIZES = {"phone": (390, 844), "laptop": (1366, 900)}

def start():
    p = subprocess.Popen([BIN, "demo", "--data", DATA, "--http", "127.0.0.1:18080", "--https", "127.0.0.1:18443",
                          "--ssh", "127.0.0.1:12222", "--modbus", "127.0.0.1:11502"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = ""
    while "Ctrl-C stops" not in out:
        line = p.stdout.readline()
        if not line:
            raise SystemExit("demo ended: " + out)
        out += line
    return p, out

def say(p, cmd):
    p.stdin.write(cmd + "\n"); p.stdin.flush()

# First start: the schema; then 24 hours of history with an outage of 40 minutes and a gap.
p, out = start()
p.terminate(); p.wait()
db = sqlite3.connect(os.path.join(DATA, "card.db"))
now = int(time.time() * 1000) // 60000 * 60000
rows = []
for m in range(24 * 60, 0, -1):
    t = now - m * 60000
    if 600 < m < 660:
        continue  # the card was off: a gap
    batt = 300 < m < 340
    minutes_on = 340 - m if batt else 0
    charge = 100 - minutes_on * 1.6 if batt else min(100, 36 + (300 - m) * 0.55) if m < 300 else 100
    load = 40 + 3 * math.sin(m / 90)
    rows.append((t, load, charge, (charge / 100 * 60) if batt else None,
                 None if batt else 230 + 2 * math.sin(m / 50), 230, 24 + 2 * math.sin(m / 200), int(batt)))
db.executemany("INSERT OR REPLACE INTO ups_minute VALUES (?,?,?,?,?,?,?,?)", rows)
db.commit(); db.close()

p, out = start()
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
          "--hide-scrollbars", "--ignore-certificate-errors", f"--user-data-dir={DATA}-profile"]:
    opts.add_argument(a)
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(d, 30)

def shoot(name):
    for size, (w, h) in SIZES.items():
        metrics = {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": size == "phone"}
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.3)
        height = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
        metrics["height"] = max(h, int(height))
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.3)
        shot = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        open(os.path.join(SHOTS, f"{name}-{size}.png"), "wb").write(base64.b64decode(shot["data"]))
    d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

def fill(fields):
    for k, v in fields.items():
        el = d.find_element(By.NAME, k); el.clear(); el.send_keys(v)

def submit():
    d.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()

try:
    base = "https://127.0.0.1:18443"
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
    wait.until(lambda d: d.current_url.rstrip("/").endswith("18443"))
    wait.until(lambda d: "On line" in d.find_element(By.TAG_NAME, "main").text)
    shoot("home-ups-online")
    say(p, "mains off")
    t0 = time.time()
    wait.until(lambda d: "On battery" in d.find_element(By.TAG_NAME, "main").text)
    print("On battery on the page after %.1f s" % (time.time() - t0))
    # The charts follow by themselves once a minute: no reload.
    d.execute_script("document.querySelector('.charts').dataset.old = '1'")
    WebDriverWait(d, 90).until(lambda d: d.execute_script("return !document.querySelector('.charts[data-old]')"))
    shoot("home-ups-on-battery")
    say(p, "mains on")
    say(p, "alarm overload on")
    say(p, "temperature 41")
    wait.until(lambda d: "Overload" in d.find_element(By.TAG_NAME, "main").text)
    d.get(base + "/")
    shoot("home-ups-alarm")
    d.get(base + "/log")
    shoot("log-ups-events")
    d.get(base + "/?history=7d")
    shoot("home-ups-week")
finally:
    d.quit()
    p.terminate(); p.wait()
