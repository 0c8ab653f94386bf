#!/usr/bin/env python3
"""Power cuts at the file system (ROBUSTNESS.md, "Power cuts"); run by .ci/powercut.

The card's data folder and its A/B firmware install live on tools/powercut, a FUSE file
system that keeps only what was fsynced. Each round: check what the last cut left, start
the card as its init script does (firmware boot, then the booted slot's binary), do one
operation, and at a random moment kill -9 the card and everything the operation ran, and
cut the power (unmount: the file system drops or tears what was not synced, and mounts the
rest again). Any broken promise stops the run with a non-zero exit.
"""

import hashlib
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("POWERCUT_BIN", os.path.join(REPO, "target/debug/modbus-card"))
FS = os.path.join(REPO, "tools/powercut/target/release/powercut")
PER_OP = int(os.environ.get("POWERCUT_PER_OP", "100"))
SEED = int(os.environ.get("POWERCUT_SEED", "1"))
OPS = os.environ.get("POWERCUT_OPS", "settings events keys config firmware").split()
PATIENCE = 30.0

rng = random.Random(SEED)
WORK = tempfile.mkdtemp(prefix="powercut-")
MNT = os.path.join(WORK, "mnt")
DATA = os.path.join(MNT, "data")
ROOT = os.path.join(MNT, "opt")
started_here = []  # every process this script started, to end by PID at the end


class Failed(Exception):
    pass


def fail(msg):
    raise Failed(msg)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    started_here.append(p)
    return p


def kill9(p):
    if p is not None and p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def mounted():
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == MNT for line in f)


class PowerFs:
    """The FUSE file system process; cut() is the power cut and the next power-on."""

    def __init__(self, seed):
        os.makedirs(MNT)
        self.p = spawn([FS, MNT, str(seed)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       text=True)
        self.wait_mounted()
        self.totals = {}

    def wait_mounted(self):
        deadline = time.time() + PATIENCE
        while not mounted():
            if time.time() > deadline or self.p.poll() is not None:
                fail("the powercut file system did not mount")
            time.sleep(0.01)

    def cut(self):
        deadline = time.time() + PATIENCE
        while True:
            r = run(["fusermount3", "-u", MNT])
            if r.returncode == 0:
                break
            if time.time() > deadline:
                fail(f"cannot unmount for the cut: {r.stderr.strip()}")
            time.sleep(0.05)
        line = self.p.stdout.readline()
        if not line.startswith("cut "):
            fail(f"the file system did not cut: {line!r}")
        stats = dict(kv.split("=") for kv in line.split()[1:])
        for k, v in stats.items():
            self.totals[k] = self.totals.get(k, 0) + int(v)
        self.p.stdin.write("mount\n")
        self.p.stdin.flush()
        self.wait_mounted()
        return stats

    def close(self):
        if mounted():
            run(["fusermount3", "-u", MNT])
            self.p.stdout.readline()
        self.p.stdin.close()
        self.p.wait(timeout=PATIENCE)


def make_durable(path):
    """What the factory leaves on a card is on its flash: every file and folder synced."""
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            fd = os.open(full, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- the file system's own test


def fs_self_test(fs):
    """The emulated cut must lose what was not synced, and keep what was: else the rounds
    below would prove nothing."""
    d = os.path.join(MNT, "selftest")
    os.mkdir(d)
    # Eight folders for new files: each keeps a random prefix of its unsynced names, so
    # that all keep all of them is a chance of 6^-8.
    for k in range(8):
        os.mkdir(os.path.join(d, f"new{k}"))
    make_durable(d)
    blob = lambda i: bytes([i % 251]) * 3000 + b"end"  # noqa: E731
    for i in range(40):
        with open(os.path.join(d, f"synced{i}"), "wb") as f:
            f.write(blob(i))
            f.flush()
            os.fsync(f.fileno())
    fd = os.open(d, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    for i in range(40):
        # Written over with new bytes, never synced; and a new file of its own.
        with open(os.path.join(d, f"synced{i}"), "r+b") as f:
            f.write(b"X" * 3003)
        with open(os.path.join(d, f"new{i % 8}", f"unsynced{i}"), "wb") as f:
            f.write(b"Y" * 3003)
    # A folder synced after the new files: their names stay, their bytes may not.
    e = os.path.join(MNT, "selftest2")
    os.mkdir(e)
    make_durable(e)
    for i in range(40):
        with open(os.path.join(e, f"named{i}"), "wb") as f:
            f.write(b"Z" * 3003)
    fd = os.open(e, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    stats = fs.cut()
    kept = torn = gone = 0
    for i in range(40):
        got = open(os.path.join(d, f"synced{i}"), "rb").read()
        if got == b"X" * 3003:
            kept += 1
        elif got != blob(i):
            torn += 1  # part old, part new
        if not os.path.exists(os.path.join(d, f"new{i % 8}", f"unsynced{i}")):
            gone += 1
    if not all(os.path.exists(os.path.join(d, f"synced{i}")) for i in range(40)):
        fail("self test: a synced file in a synced folder was lost")
    lost_bytes = sum(
        1 for i in range(40) if open(os.path.join(e, f"named{i}"), "rb").read() != b"Z" * 3003)
    names = len(os.listdir(e))
    print(f"fs self test: of 40 synced files overwritten without fsync, {kept} kept the new "
          f"bytes, {torn} torn, {40 - kept - torn} the old bytes; of 40 new files in folders "
          f"never synced, {gone} gone; of 40 new files whose folder was synced but not they, "
          f"{names} named, {lost_bytes} lost or torn bytes; cut: {stats}")
    if names != 40:
        fail("self test: a name in a synced folder was lost")
    if torn == 0 or gone == 0 or 40 - kept - torn == 0 or lost_bytes == 0:
        fail("self test: the cut did not lose unsynced writes")
    # Synced and then untouched: exactly kept.
    for i in range(5):
        p = os.path.join(d, f"again{i}")
        with open(p, "wb") as f:
            f.write(blob(i))
            f.flush()
            os.fsync(f.fileno())
    fd = os.open(d, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    fs.cut()
    for i in range(5):
        if open(os.path.join(d, f"again{i}"), "rb").read() != blob(i):
            fail("self test: a synced file changed at a cut")
    shutil.rmtree(d)
    shutil.rmtree(e)
    make_durable(MNT)


# ---------------------------------------------------------------- the card


class Card:
    """The service, started as the init script starts it after a power-on."""

    def __init__(self, ups):
        r = run([BIN, "firmware", "boot", "--firmware", ROOT])
        if r.returncode != 0:
            fail(f"firmware boot failed: {r.stdout}{r.stderr}")
        words = r.stdout.split()
        self.slot, self.trial = words[0], "trial" in words[1:]
        self.binary = os.path.join(ROOT, self.slot, "modbus-card")
        self.lines = []
        self.p = spawn([self.binary, "run", "--data", DATA, "--ups", ups, "--firmware", ROOT,
                        "--modbus", "127.0.0.1:0", "--http", "127.0.0.1:0",
                        "--https", "127.0.0.1:0", "--ssh", "127.0.0.1:0"],
                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                       env=dict(os.environ, RUST_LOG="info"))
        self.ready = threading.Event()
        self.found = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        pats = {"modbus": r"modbus tcp listening on (\S+)", "https": r"https listening on (\S+)",
                "ssh_fp": r"ssh host key (SHA256:\S+)", "ssh": r"ssh listening on (\S+)"}
        for line in self.p.stderr:
            self.lines.append(line)
            for k, pat in pats.items():
                m = re.search(pat, line)
                if m:
                    self.found[k] = m.group(1)
            if len(self.found) == len(pats):
                self.ready.set()

    def wait_ready(self):
        deadline = time.time() + PATIENCE
        while not self.ready.wait(0.02):
            if self.p.poll() is not None or time.time() > deadline:
                time.sleep(0.2)
                fail(f"the card did not start (slot {self.slot}):\n" + "".join(self.lines[-30:]))

    def addr(self, k):
        host, port = self.found[k].rsplit(":", 1)
        return host, int(port)

    def kill(self):
        kill9(self.p)


def served_cert(card):
    host, port = card.addr("https")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


# ---------------------------------------------------------------- checks after a cut


def copy_db():
    """The database as the cut left it, copied off the mount: checking it there changes
    nothing the card will find."""
    out = tempfile.mkdtemp(dir=WORK)
    for suffix in ["", "-wal", "-journal"]:
        src = os.path.join(DATA, "card.db" + suffix)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out, "card.db" + suffix))
    return out


def check_db(copy):
    if not os.path.exists(os.path.join(copy, "card.db")):
        fail("the database is gone")
    conn = sqlite3.connect(os.path.join(copy, "card.db"))
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        if rows != [("ok",)]:
            fail(f"integrity_check: {rows[:5]}")
        events = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, kind, message FROM events")}
    finally:
        conn.close()
    return events


def stored_settings(copy):
    r = run([BIN, "settings", "--data", copy])
    if r.returncode != 0:
        fail(f"settings cannot be read after the cut: {r.stderr}")
    return dict(line.split("=", 1) for line in r.stdout.splitlines()
                if "=" in line and not line.startswith("#"))


PEM = re.compile(rb"\A-----BEGIN ([A-Z ]+)-----\n[A-Za-z0-9+/=\n]+-----END \1-----\n\Z")


def check_whole_files():
    """Every certificate, key and configuration the card keeps is whole: a PEM block from
    BEGIN to END, or absent (a temporary name may be left half-written: it is never read)."""
    for dirpath, _, files in os.walk(DATA):
        for name in files:
            full = os.path.join(dirpath, name)
            if name.endswith(".tmp") or not os.path.isfile(full) or os.path.islink(full):
                continue
            if name.endswith((".pem", ".key")) or name == "ssh_host_ed25519_key":
                data = open(full, "rb").read()
                blocks = re.findall(rb"-----BEGIN [A-Z ]+-----\n[^-]*-----END [A-Z ]+-----\n",
                                    data)
                if not blocks or b"".join(blocks) != data or not all(PEM.match(b)
                                                                    for b in blocks):
                    fail(f"{full} is half-written: {len(data)} bytes")


# ---------------------------------------------------------------- operations


class Op:
    """One round's operation: prepare (card stopped), run (card up, until cut), check
    (after the cut, on the copy; then again with the card restarted)."""

    window = 1.0  # the cut falls uniformly within this many seconds of the start
    fresh_start = False  # True: prepare() with the card stopped, then start it for the round

    def prepare(self):
        pass

    def start(self, card):
        pass

    def stop(self):
        pass

    def check(self, copy, events):
        pass

    def check_running(self, card):
        pass


class Loop(threading.Thread):
    """Runs step(i) until stopped; the step in flight when the cut comes is not
    acknowledged."""

    def __init__(self, step):
        super().__init__(daemon=True)
        self.step, self.halt, self.acked, self.tried, self.error = step, False, -1, -1, None
        self.procs = []

    def run(self):
        i = 0
        try:
            while not self.halt:
                self.tried = i
                if self.step(i, self):
                    self.acked = i
                i += 1
        except Exception as e:  # noqa: BLE001
            self.error = e

    def call(self, args):
        p = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        out, err = p.communicate()
        if self.halt or p.returncode == -9:
            return None
        if p.returncode != 0:
            raise Failed(f"{args[1:3]} failed before the cut: {out}{err}")
        return out

    def cut(self):
        self.halt = True
        for p in list(self.procs):
            kill9(p)
        self.join(PATIENCE)
        if self.error:
            raise self.error


class Settings(Op):
    """Settings changed with the settings command while the card runs: each one it said
    it stored is there after the cut (or the one it was storing when the power went)."""

    window = 1.0
    values = lambda self, i: str(1 + (self.base + i) % 174)  # noqa: E731

    def start(self, card):
        self.base = rng.randrange(174)

        def step(i, loop):
            return loop.call([BIN, "settings", "--data", DATA,
                              f"rs485_slave={self.values(i)}"]) is not None
        self.before = stored_settings(DATA)["rs485_slave"]
        self.loop = Loop(step)
        self.loop.start()

    def stop(self):
        self.loop.cut()

    def check(self, copy, events):
        got = stored_settings(copy)["rs485_slave"]
        a, t = self.loop.acked, self.loop.tried
        allowed = {self.values(i) for i in range(max(a, 0), t + 1)}
        if a < 0:
            allowed.add(self.before)  # nothing acknowledged yet: the old value may stay
        else:
            self.acked_cuts = getattr(self, "acked_cuts", 0) + 1
        if got not in allowed:
            fail(f"settings: acknowledged rs485_slave={self.values(a)}, after the cut {got}")


class Config(Op):
    """A configuration file imported with `config import` (all its settings or none)."""

    window = 1.0
    FILES = [{"rs485_slave": "11", "modbus_timeout_s": "61", "poll_rate_s": "11",
              "login_timeout_s": "611"},
             {"rs485_slave": "22", "modbus_timeout_s": "62", "poll_rate_s": "12",
              "login_timeout_s": "622"}]

    def __init__(self):
        self.paths = []
        for n, f in enumerate(self.FILES):
            p = os.path.join(WORK, f"config{n}.toml")
            with open(p, "w") as out:
                out.write("format = 1\n" + "".join(f"{k} = {v}\n" for k, v in f.items()))
            self.paths.append(p)

    def start(self, card):
        first = rng.randrange(2)
        self.which = lambda i: (first + i) % 2  # noqa: E731
        now = stored_settings(DATA)
        self.before = {k: now[k] for k in self.FILES[0]}

        def step(i, loop):
            return loop.call([BIN, "config", "import", "--data", DATA,
                              self.paths[self.which(i)]]) is not None
        self.loop = Loop(step)
        self.loop.start()

    def stop(self):
        self.loop.cut()

    def check(self, copy, events):
        got = stored_settings(copy)
        mine = {k: got[k] for k in self.FILES[0]}
        a, t = self.loop.acked, self.loop.tried
        allowed = [self.FILES[self.which(i)] for i in range(max(a, 0), t + 1)]
        if a < 0:
            allowed.append(self.before)  # nothing acknowledged yet: the old settings may stay
        else:
            self.acked_cuts = getattr(self, "acked_cuts", 0) + 1
        if mine not in allowed:
            fail(f"config: acknowledged {self.FILES[self.which(a)] if a >= 0 else None}, "
                 f"after the cut {mine} (all of one file, or the old settings, expected)")


class Events(Op):
    """Events the card wrote (Modbus TCP connections opened and closed) that a reader of
    the log saw: each is there after the cut, as it was read."""

    window = 1.0

    def start(self, card):
        self.seen = {}
        self.halt = False
        host, port = card.addr("modbus")
        db = os.path.join(DATA, "card.db")

        def connect():
            n = 0
            while not self.halt:
                try:
                    with socket.create_connection((host, port), timeout=5) as s:
                        s.sendall(bytes([0, n % 256, 0, 0, 0, 6, 1, 3, 0x10, 0x60, 0, 1]))
                        s.recv(64)
                except OSError:
                    pass
                n += 1
                time.sleep(0.01)

        def read():
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                while not self.halt:
                    for r in conn.execute("SELECT id, kind, message FROM events WHERE id > ?",
                                          (max(self.seen, default=0),)):
                        self.seen[r[0]] = (r[1], r[2])
                    time.sleep(0.02)
            finally:
                conn.close()
        self.threads = [threading.Thread(target=connect, daemon=True),
                        threading.Thread(target=read, daemon=True)]
        for t in self.threads:
            t.start()

    def stop(self):
        # The reader lets go of the file first (an unmount waits for every open file).
        self.halt = True
        for t in self.threads:
            t.join(PATIENCE)

    def check(self, copy, events):
        # The log keeps the newest events up to its cap: older ones go, oldest first.
        oldest = min(events, default=0)
        for id_, row in self.seen.items():
            if id_ >= oldest and events.get(id_) != row:
                fail(f"event {id_} {row} was read from the log before the cut, after it: "
                     f"{events.get(id_)}")
        self.total_seen = getattr(self, "total_seen", 0) + len(self.seen)
        self.acked_cuts = getattr(self, "acked_cuts", 0) + (len(self.seen) > 0)


class Keys(Op):
    """The HTTPS certificates and the SSH host key the card makes at its first start (they
    are removed, and the removal synced, before): once served, they are the ones served
    after the cut; and never half-written."""

    window = 0.25  # the files are made within about 0.1 s of the start
    fresh_start = True

    def prepare(self):
        # The certificates, the host key, or both, to be made (each alone is a case of its
        # own: the other one's write syncs the data folder too).
        which = rng.choice(["tls", "ssh", "both"])
        if which in ("tls", "both"):
            shutil.rmtree(os.path.join(DATA, "tls"), ignore_errors=True)
        p = os.path.join(DATA, "ssh_host_ed25519_key")
        if which in ("ssh", "both") and os.path.exists(p):
            os.remove(p)
        make_durable(DATA)

    def start(self, card):
        self.cert = None
        self.fp = None
        self.halt = False

        def watch():
            while not self.halt and self.cert is None:
                if "https" in card.found:
                    try:
                        self.cert = served_cert(card)
                    except OSError:
                        time.sleep(0.01)
                else:
                    time.sleep(0.005)
        self.card = card
        self.t = threading.Thread(target=watch, daemon=True)
        self.t.start()

    def stop(self):
        # The key's fingerprint the card logged: what an SSH client is shown first.
        self.fp = self.card.found.get("ssh_fp")
        self.halt = True
        self.t.join(PATIENCE)

    def check_running(self, card):
        if self.cert is not None and served_cert(card) != self.cert:
            fail("the HTTPS certificate served before the cut is not the one served after it")
        if self.fp is not None and card.found["ssh_fp"] != self.fp:
            fail(f"the SSH host key changed at the cut: {self.fp} -> {card.found['ssh_fp']}")
        self.acked_cuts = getattr(self, "acked_cuts", 0) + (self.cert is not None)


class Firmware(Op):
    """An image installed with `modbus-card upgrade` (as the /firmware page installs it):
    once it said installed, the next start is the new version on trial; whatever the
    moment, the card starts from a whole slot (the new one, or the good one)."""

    window = 2.0
    # A version on trial refuses upgrades until it confirms (5 s healthy): the round
    # starts the card again, which rolls the unconfirmed trial back, as after any reset.
    fresh_start = True

    def __init__(self, images, binaries):
        self.images, self.binaries = images, binaries

    def start(self, card):
        def step(i, loop):
            if i > 0:
                loop.halt = True  # one install per round
                return False
            return loop.call([BIN, "upgrade", "--firmware", ROOT, "--data", DATA,
                              "--no-restart", self.images["new"]]) is not None
        self.loop = Loop(step)
        self.loop.start()

    def stop(self):
        self.loop.cut()

    def check_running(self, card):
        got = sha(card.binary)
        if got not in self.binaries.values():
            fail(f"slot {card.slot} holds a binary of no image")
        if self.loop.acked == 0:
            if not (card.trial and got == self.binaries["new"]):
                fail(f"an upgrade said installed, the next start is slot {card.slot} "
                     f"(trial: {card.trial})")
            self.acked_cuts = getattr(self, "acked_cuts", 0) + 1


# ---------------------------------------------------------------- the run


def build_images():
    demo = os.path.join(WORK, "keys")
    p = spawn([BIN, "demo", "--data", demo, "--modbus", "127.0.0.1:0", "--http", "127.0.0.1:0",
               "--https", "127.0.0.1:0", "--ssh", "127.0.0.1:0"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secret = os.path.join(demo, "demo-secret.key")
    public = os.path.join(demo, "trusted-keys", "demo.pub")
    deadline = time.time() + PATIENCE
    while not (os.path.exists(public) and os.path.exists(secret)):
        if time.time() > deadline:
            fail("no signing key from the demo")
        time.sleep(0.05)
    time.sleep(0.2)
    p.terminate()
    p.wait()
    stripped = os.path.join(WORK, "stripped")
    if run(["strip", "-o", stripped, BIN]).returncode != 0:
        fail("strip (binutils) is needed")
    body = open(stripped, "rb").read()
    mark = b"\x7fmodbus-card\x00ver"
    images, binaries = {}, {}
    for name, version in [("old", "1.0.0"), ("new", "1.1.0")]:
        at = -1
        while True:  # the stamp: the mark followed by a NUL-padded version
            at = body.find(mark, at + 1)
            if at < 0:
                fail("no version stamp in the binary")
            field = body[at + len(mark):at + len(mark) + 32]
            if re.fullmatch(rb"[0-9.]+\x00+", field):
                break
        at += len(mark)
        stamped = body[:at] + version.encode().ljust(32, b"\x00") + body[at + 32:]
        b = os.path.join(WORK, f"modbus-card-{version}")
        with open(b, "wb") as f:
            f.write(stamped)
        os.chmod(b, 0o755)
        binaries[name] = hashlib.sha256(stamped).hexdigest()
        img = os.path.join(WORK, f"{name}.img")
        r = run([BIN, "image", "build", "--binary", b, "--init",
                 os.path.join(REPO, "init/modbus-card"), "--key", secret, "--replaces", "0.0.0",
                 "--out", img])
        if r.returncode != 0:
            fail(f"image build: {r.stderr}")
        images[name] = img
    return images, binaries, public


def main():
    t0 = time.time()
    for tool in [FS, BIN, shutil.which("fusermount3")]:
        if not tool or not os.path.exists(tool):
            fail(f"missing: {tool}")
    if not os.path.exists("/dev/fuse"):
        fail("no /dev/fuse")
    images, binaries, public = build_images()
    sim = spawn([BIN, "simulate-ups"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                stdin=subprocess.PIPE, text=True)
    ups = re.search(r"/dev/pts/\d+", sim.stdout.readline()).group(0)
    threading.Thread(target=lambda: [None for _ in sim.stdout], daemon=True).start()

    print(f"images built, {time.time() - t0:.0f} s", flush=True)
    fs = PowerFs(SEED)
    try:
        fs_self_test(fs)
        # The factory: the data folder with the maker's key trusted, version 1.0.0 in slot a.
        os.makedirs(os.path.join(DATA, "trusted-keys"))
        shutil.copyfile(public, os.path.join(DATA, "trusted-keys", "maker.pub"))
        r = run([BIN, "image", "install", "--firmware", ROOT, "--data", DATA, images["old"]])
        if r.returncode != 0:
            fail(f"factory install: {r.stdout}{r.stderr}")
        make_durable(MNT)
        ops = {"settings": Settings(), "events": Events(), "keys": Keys(), "config": Config(),
               "firmware": Firmware(images, binaries)}
        ops = {k: v for k, v in ops.items() if k in OPS}
        schedule = [k for k in ops for _ in range(PER_OP)]
        rng.shuffle(schedule)
        counts = {k: 0 for k in ops}
        seconds = {k: 0.0 for k in ops}
        last = None
        for n, name in enumerate(schedule):
            op = ops[name]
            round_start = time.time()
            # Power on: the card comes up on what the last cut left, and what was promised
            # before the cut is there.
            card = Card(ups)
            card.wait_ready()
            if last is not None:
                last.check_running(card)
            if op.fresh_start:
                card.kill()
                op.prepare()
                card = Card(ups)
            op.start(card)
            time.sleep(rng.uniform(0, op.window))
            op.stop()
            card.kill()
            fs.cut()
            counts[name] += 1
            copy = copy_db()
            events = check_db(copy)
            op.check(copy, events)
            shutil.rmtree(copy)
            check_whole_files()
            last = op
            seconds[name] += time.time() - round_start
            if (n + 1) % 50 == 0:
                print(f"{n + 1} cuts, {time.time() - t0:.0f} s: {counts}", flush=True)
        card = Card(ups)
        card.wait_ready()
        if last is not None:
            last.check_running(card)
        card.kill()
        print(f"cuts per operation: {counts}; total {sum(counts.values())}")
        print("seconds per operation: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
        print(f"what the cuts lost, in total: {fs.totals}")
        print("cuts after the operation's first acknowledgement (a setting or file stored, an "
              "event read from the log, the certificate served, an upgrade installed): "
              + ", ".join(f"{k} {getattr(v, 'acked_cuts', 0)}" for k, v in ops.items()))
        if "events" in ops:
            seen = getattr(ops["events"], "total_seen", 0)
            print(f"events read before a cut and checked after it: {seen}")
        # A promise never made before a cut was never checked.
        never = [k for k, v in ops.items() if getattr(v, "acked_cuts", 0) == 0]
        if PER_OP >= 10 and never:
            fail(f"no cut came after an acknowledgement of: {', '.join(never)}")
        print(f"powercut: all promises kept, {time.time() - t0:.0f} s")
    finally:
        for p in started_here:
            if p is not fs.p:
                kill9(p)
        fs.close()


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"powercut: FAILED: {e}", file=sys.stderr)
        print(f"(work folder kept: {WORK})", file=sys.stderr)
        for p in started_here:
            kill9(p)
        if mounted():
            subprocess.run(["fusermount3", "-u", "-z", MNT])
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
