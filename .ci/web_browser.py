"""Drives the card's web pages in headless Chromium, as a person would, and saves screenshots.

usage: web_browser.py BASE_URL DEFAULT_PASSWORD SCREENSHOT_DIR PROFILE_DIR MODBUS_PORT
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
from selenium.webdriver.support.ui import WebDriverWait

BASE, DEFAULT, SHOTS, PROFILE, MODBUS = sys.argv[1:6]
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


def text():
    return driver.find_element(By.TAG_NAME, "main").text


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
    wait.until(EC.url_contains("ended=password-changed"))
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

    driver.get(BASE + "/config")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "input[type=file]")))
    shoot("config")

    driver.get(BASE + "/users")
    wait.until(EC.presence_of_element_located((By.NAME, "name")))
    add = driver.find_element(By.CSS_SELECTOR, "form.stack")
    add.find_element(By.NAME, "name").send_keys("operator")
    add.find_element(By.NAME, "password").send_keys("Operator12!First")
    add.find_element(By.CSS_SELECTOR, "button").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".ok")))
    assert "User operator added" in text(), text()
    shoot("users")

    driver.find_element(By.CSS_SELECTOR, "header form.who button").click()
    wait.until(EC.url_contains("ended=logout"))
    assert "You have logged out" in text(), text()

    # Script errors and Content-Security-Policy violations; the refused login and password
    # above are network "errors" on purpose.
    problems = [e for e in driver.get_log("browser")
                if e["level"] == "SEVERE" and e["source"] != "network"]
    assert not problems, problems
    print("browser: first login, forced change, Home refreshing, logout: ok")
finally:
    driver.quit()
