#!/usr/bin/env python3
"""TLS benchmark (issue #14): what an SSL listener costs beside the PLAINTEXT one, same broker,
same run.

Usage (bench/tls.sh runs it with a fresh broker holding both listeners and rdkafka_performance):
    tls.py PLAIN_BOOTSTRAP SSL_BOOTSTRAP CA_PEM RDKAFKA_PERFORMANCE [ROUNDS]

Per round (default 3; the table shows medians; PLAINTEXT and SSL alternate first):
  P1  rdkafka_performance produce, as bench/run.sh's P1 (P1_MSGS, default 1,000,000 x 1 KiB,
      acks=1, linger 5 ms, 1 MiB batches, 4 partitions), over PLAINTEXT and over SSL
  C1  rdkafka_performance consume of that topic from the beginning, over each listener
Then:
  handshake  HANDSHAKES (default 200) sequential TCP connect + TLS handshake (Python's ssl,
      TLS 1.3, certificate verified), median and p99 in ms
  idle  IDLE (default 10,000) TLS connections opened (handshake done) and held idle: the
      broker's RSS before and after (VmRSS of SLUICE_PID), in all and per connection
The broker runs on CPU 0 and the clients on CPU 1 (bench/tls.sh).
"""

import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic

P1_MSGS = int(os.environ.get("P1_MSGS", "1000000"))
HANDSHAKES = int(os.environ.get("HANDSHAKES", "200"))
IDLE = int(os.environ.get("IDLE", "10000"))
SLUICE_PID = os.environ.get("SLUICE_PID")
PIN = ["taskset", "-c", "1"] if os.environ.get("PIN", "1") == "1" else []
PRODUCER_X = ["-X", "linger.ms=5", "-X", "batch.size=1048576", "-X", "message.max.bytes=1048588",
              "-X", "batch.num.messages=100000", "-X", "queue.buffering.max.messages=1000000",
              "-X", "queue.buffering.max.kbytes=2097151", "-X", "message.timeout.ms=45000"]


def rss_kib():
    with open(f"/proc/{SLUICE_PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def perf(rp, args, tls_x):
    out = subprocess.run(PIN + [rp, *args, *tls_x], capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    return text


def p1(rp, bs, topic, tls_x):
    admin = AdminClient({"bootstrap.servers": bs.plain})  # alive until the result is in
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(timeout=60)
    text = perf(rp, ["-P", "-b", bs.for_(tls_x), "-t", topic, "-s", "1024", "-c", str(P1_MSGS), "-a", "1",
                     *PRODUCER_X], tls_x)
    found = re.findall(r"(\d+) delivered \(offset -?\d+, (\d+) failed\) in (\d+)ms: (\d+) msgs/s", text)
    if not found or int(found[-1][0]) != P1_MSGS or int(found[-1][1]) != 0:
        sys.exit(f"P1 on {topic} failed:\n{text[-2000:]}")
    return int(found[-1][3])


def c1(rp, bs, topic, tls_x):
    text = perf(rp, ["-C", "-b", bs.for_(tls_x), "-t", topic, "-p", "0", "-p", "1", "-p", "2", "-p", "3",
                     "-o", "beginning", "-e", "-c", str(P1_MSGS)], tls_x)
    found = re.findall(r"(\d+) messages? \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s", text)
    if not found or int(found[-1][0]) != P1_MSGS:
        sys.exit(f"C1 on {topic} failed:\n{text[-2000:]}")
    return int(found[-1][3])


class Bootstraps:
    def __init__(self, plain, tls):
        self.plain, self.tls = plain, tls

    def for_(self, tls_x):
        return self.tls if tls_x else self.plain


def handshakes(host, port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    times = []
    for _ in range(HANDSHAKES):
        t0 = time.perf_counter()
        with socket.create_connection((host, port)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def idle(host, port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    before = rss_kib()
    held = []
    try:
        for _ in range(IDLE):
            raw = socket.create_connection((host, port))
            held.append(ctx.wrap_socket(raw, server_hostname="localhost"))
        time.sleep(2)
        after = rss_kib()
    finally:
        for s in held:
            s.close()
    return before, after, len(held)


def main():
    plain, tls, ca, rp = sys.argv[1:5]
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    bs = Bootstraps(plain, tls)
    tls_x = ["-X", "security.protocol=ssl", "-X", f"ssl.ca.location={ca}"]
    res = {k: [] for k in ["p1.plain", "p1.ssl", "c1.plain", "c1.ssl"]}
    for r in range(rounds):
        order = [("plain", []), ("ssl", tls_x)]
        if r % 2:
            order.reverse()
        for name, x in order:
            topic = f"tls-bench-{name}-{r}"
            res[f"p1.{name}"].append(p1(rp, bs, topic, x))
            res[f"c1.{name}"].append(c1(rp, bs, topic, x))
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:,}" for k, v in res.items()) + " msgs/s", flush=True)
    host, port = tls.rsplit(":", 1)
    hs_median, hs_p99 = handshakes(host, int(port), ca)
    before, after, n = idle(host, int(port), ca)
    med = {k: statistics.median(v) for k, v in res.items()}
    print()
    print("| phase | PLAINTEXT (median msgs/s) | SSL (median msgs/s) | SSL / PLAINTEXT | rounds (plain; ssl) |")
    print("|---|---|---|---|---|")
    for ph in ["p1", "c1"]:
        print(f"| {ph.upper()} | {med[ph + '.plain']:,.0f} | {med[ph + '.ssl']:,.0f} | "
              f"{med[ph + '.ssl'] / med[ph + '.plain']:.2f} | "
              f"{', '.join(f'{x:,}' for x in res[ph + '.plain'])}; {', '.join(f'{x:,}' for x in res[ph + '.ssl'])} |")
    print(f"| TLS handshake | {HANDSHAKES} sequential connects + handshakes | median {hs_median:.2f} ms | "
          f"p99 {hs_p99:.2f} ms | |")
    print(f"| idle TLS connections | {n:,} held | broker RSS {before / 1024:.0f} MiB -> {after / 1024:.0f} MiB | "
          f"{(after - before) / max(n, 1):.1f} KiB each | |")


if __name__ == "__main__":
    main()
