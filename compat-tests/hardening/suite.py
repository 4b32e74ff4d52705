"""Hardening probes (issue 10) against real broker processes, each a check:

- memory: 50 connections each holding a 50 MB frame one byte short, then 40 sending only a 30 MB
  length prefix, keep the broker's RSS within queued.max.request.bytes (512 MiB by default) of
  its idle size, while a confluent-kafka producer and consumer are served.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file).
"""

import os
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, Producer  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

MIB = 1 << 20
POOL_MIB = 512  # the default queued.max.request.bytes
SLACK_MIB = 192  # beside the pool: freed heap glibc keeps (M_TRIM_THRESHOLD 64 MiB per arena) and
# frame buffers briefly doubled while they grow (600 MiB peak seen here)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    fail(f"no VmRSS for pid {pid}")


def round_trip(bs, topic, n=200):
    """Produces n messages with acks=all and reads them back; fails with what went wrong."""
    delivered = []
    p = Producer({"bootstrap.servers": bs, "acks": "all", "message.timeout.ms": 30000})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, m: delivered.append(e))
    left = p.flush(30)
    if left or len(delivered) != n or any(delivered):
        fail(f"{topic}: {left} undelivered, errors {[e for e in delivered if e][:3]}")
    c = Consumer({"bootstrap.servers": bs, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.close()
    if got != n:
        fail(f"{topic}: read back {got} of {n}")


def memory(bs):
    broker = Broker("memory")
    broker.start()
    sockets = []
    try:
        round_trip(bs, "hardening-warm")
        pid = broker.proc.pid
        idle = rss_mib(pid)
        body = memoryview(bytes(50_000_000))
        prefix = struct.pack(">i", 50_000_000)

        def hold(s):
            try:
                s.sendall(prefix)
                s.sendall(body[:-1])
            except OSError:
                pass  # not admitted (the broker stopped reading it): its send timed out

        threads = []
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", broker.port))
            s.settimeout(20)
            sockets.append(s)
            t = threading.Thread(target=hold, args=(s,), daemon=True)
            t.start()
            threads.append(t)
        peak = idle
        for _ in compat.deadline_loop(10, step=0.5):
            peak = max(peak, rss_mib(pid))
        # Then bare prefixes: a reservation each (waiting, as the pool is spent), no memory.
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", broker.port))
            s.sendall(struct.pack(">i", 30_000_000))
            sockets.append(s)
        # While the held frames arrive (or wait): a producer and consumer are served.
        t0 = time.monotonic()
        round_trip(bs, "hardening-served")
        served_s = time.monotonic() - t0
        for _ in compat.deadline_loop(25, step=0.5):
            peak = max(peak, rss_mib(pid))
            if not any(t.is_alive() for t in threads):
                break
        peak = max(peak, rss_mib(pid))
        print(f"# memory: RSS idle {idle:.0f} MiB, peak {peak:.0f} MiB with 40 bare 30 MB prefixes and "
              f"50 held 50 MB frames; round trip while held {served_s:.1f} s", flush=True)
        if peak > idle + POOL_MIB + SLACK_MIB:
            fail(f"RSS {peak:.0f} MiB, above idle {idle:.0f} + pool {POOL_MIB} + {SLACK_MIB} MiB")
        if peak < idle + 200:
            fail(f"RSS peaked at {peak:.0f} MiB: the held frames never reached the broker (probe broken)")
        if broker.proc.poll() is not None:
            fail(f"broker exited with {broker.proc.returncode}")
    finally:
        for s in sockets:
            s.close()
        status = broker.stop()
    if status != 0:
        fail(f"broker stop: {status}")


def main():
    bs = compat.bootstrap()
    suite = compat.Suite("hardening")
    suite.check("memory-bounded-with-held-frames", memory, bs)
    suite.finish()


if __name__ == "__main__":
    main()
