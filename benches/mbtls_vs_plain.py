#!/usr/bin/env python3
"""Modbus/TCP Security (802) against plain Modbus TCP (502) through a running demo, with
pymodbus's clients: handshake cost, one client's latency, three clients' throughput.
Bounded: a fixed number of connections and requests.

usage: benches/mbtls_vs_plain.py DATA PLAIN_PORT TLS_PORT
(the demo's data folder, with its master certificate in DATA/mbtls-master/)"""
import ssl, statistics, sys, threading, time
from pymodbus.client import ModbusTcpClient, ModbusTlsClient

data, plain, tls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CONNECTS, REQUESTS, PER_CLIENT = 50, 1000, 500


def context():
    s = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    s.check_hostname = False
    s.load_verify_locations(f"{data}/mbtls/server.pem")
    s.load_cert_chain(f"{data}/mbtls-master/client.pem", f"{data}/mbtls-master/client-key.pem")
    return s


def client(secure):
    if secure:
        return ModbusTlsClient("127.0.0.1", port=tls, sslctx=context(), timeout=5, retries=0)
    return ModbusTcpClient("127.0.0.1", port=plain, timeout=5, retries=0)


def read(c):
    try:
        r = c.read_holding_registers(0x1060, count=8, device_id=1)
    except TypeError:
        r = c.read_holding_registers(0x1060, count=8, slave=1)
    assert not r.isError(), r


def ms(xs):
    return statistics.median(xs) * 1000, sorted(xs)[int(len(xs) * 0.99) - 1] * 1000


for secure, name in [(False, "502 plain"), (True, "802 TLS 1.3")]:
    connects = []
    for _ in range(CONNECTS):
        c = client(secure)
        t = time.perf_counter()
        assert c.connect()
        read(c)  # with TLS 1.3 the card's verdict on the certificate comes with this
        connects.append(time.perf_counter() - t)
        c.close()
    c = client(secure)
    assert c.connect()
    lat = []
    for _ in range(REQUESTS):
        t = time.perf_counter()
        read(c)
        lat.append(time.perf_counter() - t)
    c.close()
    done = []

    def run():
        c = client(secure)
        assert c.connect()
        for _ in range(PER_CLIENT):
            read(c)
        c.close()
        done.append(PER_CLIENT)

    t = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    three = sum(done) / (time.perf_counter() - t)
    print(
        f"{name}: connect+first read median {ms(connects)[0]:.2f} ms (p99 {ms(connects)[1]:.2f}); "
        f"one client {REQUESTS / sum(lat):.0f} req/s, median {ms(lat)[0]:.2f} ms, p99 {ms(lat)[1]:.2f} ms; "
        f"three clients {three:.0f} req/s"
    )
