"""Drives the card's web pages in headless Chromium, as a person would, and saves screenshots.

usage: web_browser.py BASE_URL DEFAULT_PASSWORD SCREENSHOT_DIR PROFILE_DIR MODBUS_PORT IMAGE
"""
import base64
import os
import socket
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, DEFAULT, SHOTS, PROFILE, MODBUS, IMAGE = sys.argv[1:7]
NEW = "Browser12!Pass"
SIZES = {"phone": (390, 844), "laptop": (1366, 900)}

os.makedirs(SHOTS, exist_ok=True)
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={PROFILE}",
          # The card's own root is not in this fresh profile; the tests in tests/ check it.
          "--ignore-certificate-errors"]:
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
wait = WebDriverWait(driver, 20)


def shoot(name):
    """The whole page at each width, as a phone (touch, viewport meta) and as a laptop."""
    for size, (w, h) in SIZES.items():
        metrics = {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": size == "phone"}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.3)
        height = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
        metrics["height"] = max(h, int(height))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.3)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        with open(os.path.join(SHOTS, f"{name}-{size}.png"), "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def fill(fields):
    for name, value in fields.items():
        el = driver.find_element(By.NAME, name)
        el.clear()
        el.send_keys(value)


def submit():
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()


def on_login_saying(words):
    """The login page, telling why the session ended (from the card's own record: the
    address says nothing)."""
    def ready(d):
        return d.current_url.split("?")[0].endswith("/login") and words in text()
    return ready


def text():
    return driver.find_element(By.TAG_NAME, "main").text


def form_of(name):
    """The form holding the field (or hidden input) called `name`."""
    return driver.find_element(By.NAME, name).find_element(By.XPATH, "./ancestor::form")


def set_field(name, value):
    el = driver.find_element(By.NAME, name)
    el.clear()
    el.send_keys(value)


def click_through(button):
    """Clicks a button that loads a new page, and waits until the new page is there."""
    old = driver.find_element(By.TAG_NAME, "html")
    button.click()
    wait.until(EC.staleness_of(old))


def save(name):
    """Submits the form of field `name`, as its button would, and waits for the answer."""
    click_through(form_of(name).find_element(By.CSS_SELECTOR, "button[type=submit]"))


def change(name, value, said):
    """Types `value` into field `name`, saves its form, and checks the answer says `said`."""
    set_field(name, value)
    save(name)
    assert said in text(), (said, text())


try:
    driver.set_window_size(*SIZES["laptop"])
    driver.get(BASE + "/")
    wait.until(EC.url_contains("/login"))
    shoot("login")

    fill({"user": "admin", "password": "wrong"})
    submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".error")))
    assert "Wrong user name or password" in text(), text()
    shoot("login-failed")

    fill({"user": "admin", "password": DEFAULT})
    submit()
    wait.until(EC.url_contains("/password"))
    assert "valid for this first login only" in text(), text()
    shoot("password-first-login")

    fill({"current": DEFAULT, "new": "short", "repeat": "short"})
    # The browser's own minlength check would stop the form: let the card judge it.
    driver.execute_script("for (const i of document.querySelectorAll('input')) i.removeAttribute('minlength')")
    submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".error")))
    assert "At least 12 characters" in text(), text()
    shoot("password-refused")

    fill({"current": DEFAULT, "new": NEW, "repeat": NEW})
    submit()
    wait.until(on_login_saying("log in with the new one"))
    assert "log in with the new one" in text(), text()

    # A Modbus master reads the UPS's measurements and keeps its session open.
    master = socket.create_connection(("127.0.0.1", int(MODBUS)))
    master.sendall(bytes([0, 1, 0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 8]))
    assert master.recv(64)[7] == 3

    fill({"user": "admin", "password": NEW})
    submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-k='time']")))
    assert "Communicating" in text(), text()
    assert "127.0.0.1:%d" % master.getsockname()[1] in text(), text()
    first = driver.find_element(By.CSS_SELECTOR, "[data-k='time']").text
    # The script refreshes the figures every 5 s (allowed by the CSP: it is the card's own file).
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "[data-k='time']").text != first)
    shoot("home")

    # MODBUS configuration: a value below the lowest sane one is refused beside its field;
    # a good one is in force at once.
    driver.get(BASE + "/modbus")
    change("serial_timeout_ms", "100", "below the lowest sane timeout of 310 ms")
    assert driver.find_elements(By.CSS_SELECTOR, "label.bad .field-error"), "error beside the field"
    shoot("modbus-refused")
    change("serial_timeout_ms", "800", "Serial timeout (ms): 500 → 800")
    shoot("modbus")

    # Configuration: a setting, then a configuration file, previewed, then loaded.
    driver.get(BASE + "/config")
    change("login_timeout_s", "900", "Login timeout (s): 600 → 900")
    shoot("config")
    card_file = os.path.join(PROFILE, "card.toml")
    with open(card_file, "w") as f:
        f.write('format = 1\npoll_rate_s = 5\nmodbus_allow = "127.0.0.0/8, 192.168.1.0/24"\n')
    driver.find_element(By.NAME, "file").send_keys(card_file)
    form_of("file").find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(EC.url_contains("/config/file"))
    assert "Load this configuration file?" in text(), text()
    assert "Polling rate (s)" in text(), text()
    shoot("config-preview")
    driver.find_element(By.XPATH, "//button[contains(., 'Load it')]").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".ok")))
    assert "Configuration file loaded: 2 settings changed" in text(), text()

    # Control: Modbus debug and Network upgrade on, each at once; a reboot asks first.
    driver.get(BASE + "/control")
    for key in ["debug_enabled", "upgrade_enabled"]:
        click_through(form_of(key).find_element(By.CSS_SELECTOR, "button"))
    assert "Network upgrade: Off → On" in text(), text()
    shoot("control")
    driver.find_element(By.XPATH, "//button[contains(., 'Reboot')]").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".warn")))
    assert "Reboot the card?" in text(), text()
    shoot("control-reboot")
    driver.find_element(By.LINK_TEXT, "Cancel").click()
    wait.until(EC.url_contains("/control"))

    # MODBUS debug: the master's frames, decoded, refreshing by themselves until paused.
    for tid, addr in [(2, 0x1000), (3, 0x1060), (4, 0x2000)]:
        master.sendall(bytes([0, tid, 0, 0, 0, 6, 1, 3, addr >> 8, addr & 0xFF, 0, 8]))
        master.recv(256)
    driver.get(BASE + "/debug")
    assert "slave 1: read holding registers 0x1060 ×8" in text(), text()
    assert "exception 02: illegal data address" in text(), text()
    first = driver.find_element(By.ID, "updated").text
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "updated").text != first)
    master.sendall(bytes([0, 5, 0, 0, 0, 6, 1, 3, 0x10, 0x20, 0, 6]))
    master.recv(256)
    WebDriverWait(driver, 15).until(lambda d: "0x1020 ×6" in text())
    shoot("debug")
    driver.find_element(By.ID, "pause").click()
    paused = driver.find_element(By.ID, "updated").text
    time.sleep(4.5)
    assert driver.find_element(By.ID, "updated").text == paused, "refreshed while paused"
    driver.find_element(By.ID, "pause").click()

    # Date and time: an NTP server, and the clock set by hand.
    driver.get(BASE + "/time")
    change("ntp_server", "127.0.0.1:12300", "NTP server: none → 127.0.0.1:12300")
    save("time")
    assert "Time set." in text(), text()
    shoot("time")

    driver.get(BASE + "/firmware")
    assert "Firmware image" in text(), text()
    shoot("firmware")

    # Each change is in the log, with who made it.
    driver.get(BASE + "/log")
    for event in ["Serial timeout (ms) changed from 500 to 800 (admin, web 127.0.0.1)",
                  "Login timeout (s) changed from 600 to 900",
                  "Configuration file loaded: 2 settings changed",
                  "Modbus debug changed from false to true",
                  "NTP server changed from (none) to 127.0.0.1:12300",
                  "Time changed by user (admin, web 127.0.0.1)"]:
        assert event in text(), (event, text())
    shoot("log")

    driver.get(BASE + "/users")
    wait.until(EC.presence_of_element_located((By.NAME, "name")))
    for name, role in [("operator", "read-write"), ("viewer", "read-only")]:
        add = driver.find_element(By.CSS_SELECTOR, "form.stack")
        add.find_element(By.NAME, "name").send_keys(name)
        Select(add.find_element(By.NAME, "role")).select_by_value(role)
        add.find_element(By.NAME, "password").send_keys("Operator12!First")
        click_through(add.find_element(By.CSS_SELECTOR, "button"))
        assert f"User {name} added" in text(), text()
    shoot("users")

    # A Read-only user sees the pages, every form disabled.
    driver.find_element(By.CSS_SELECTOR, "header form.who button").click()
    wait.until(on_login_saying("You have logged out"))
    fill({"user": "viewer", "password": "Operator12!First"})
    submit()
    wait.until(EC.url_contains("/password"))
    fill({"current": "Operator12!First", "new": "Viewer12!Pass", "repeat": "Viewer12!Pass"})
    submit()
    wait.until(on_login_saying("log in with the new one"))
    fill({"user": "viewer", "password": "Viewer12!Pass"})
    submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-k='time']")))
    driver.get(BASE + "/modbus")
    assert "Your account is Read-only" in text(), text()
    assert not driver.find_element(By.NAME, "serial_timeout_ms").is_enabled()
    shoot("modbus-read-only")

    driver.find_element(By.CSS_SELECTOR, "header form.who button").click()
    wait.until(on_login_saying("You have logged out"))
    assert "You have logged out" in text(), text()

    # Last, a firmware image through the page: installed, the card restarts into it, and
    # the new version, healthy, is kept.
    fill({"user": "admin", "password": NEW})
    submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-k='time']")))
    driver.get(BASE + "/firmware")
    driver.find_element(By.NAME, "image").send_keys(IMAGE)
    click_through(form_of("image").find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "installed" in text() and "restarts into it" in text(), text()
    shoot("firmware-installed")
    time.sleep(3)  # the card restarts 2 s after its answer
    deadline = time.time() + 60
    while True:
        driver.get(BASE + "/login")
        if driver.find_elements(By.NAME, "user"):
            break
        assert time.time() < deadline, "the card did not come back"
        time.sleep(1)
    fill({"user": "admin", "password": NEW})
    submit()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-k='time']")))
    deadline = time.time() + 60
    while True:
        driver.get(BASE + "/log?group=system")
        if "confirmed" in text():
            break
        assert time.time() < deadline, text()
        time.sleep(1)
    assert "installed in slot b" in text() or "installed in slot" in driver.page_source, text()
    driver.find_element(By.CSS_SELECTOR, "header form.who button").click()
    wait.until(on_login_saying("You have logged out"))

    # Script errors and Content-Security-Policy violations; the refused login and password
    # above are network "errors" on purpose.
    problems = [e for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and e["source"] != "network"]
    assert not problems, problems
    print("browser: first login, forced change, Home refreshing, a change on every page "
          "and its event in the log, debug refreshing and paused, a firmware upgrade, "
          "logout: ok")
finally:
    driver.quit()
