"""Hardening probes (issue 10) against real broker processes, each a check:

- memory: 50 connections each holding a 50 MB frame one byte short, then 40 sending only a 30 MB
  length prefix, keep the broker's RSS within queued.max.request.bytes (512 MiB by default) of
  its idle size, while a confluent-kafka producer and consumer are served.
- many partitions: CreateTopics of 3,000 partitions answers while a raw Metadata client on another
  connection is never held up a second (worst latency printed); one record each, then SIGTERM
  exits 0 within 15 s; after a restart DeleteTopics of them is as quick for that client.
- corruption: 5,000 acknowledged records in small segments, kill -9, a few bytes overwritten in the
  middle of a middle segment, restart: the damage is reported (ERROR log, .damaged record, metric)
  and every acknowledged record outside the damaged batch is read back by confluent-kafka (CRC
  checks on), those after it by seeking past the damage.
- disk full: the broker's data dir on a 48 MiB tmpfs (its metadata log elsewhere, with
  metadata.log.dir), filled to 2 MiB by another file, then produce: KAFKA_STORAGE_ERROR once
  full, one ERROR line, the log dir offline in /metrics and the replica in Metadata's
  offline_replicas, reads go on; SIGTERM exits 0 with a clean-shutdown
  marker; the broker starts on the full disk and serves every acknowledged record; space freed,
  produce works again and the dir is online.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file).
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from cluster import metadata, recv_exact  # noqa: E402
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


class MetadataProbe:
    """A thread sending Metadata v1 requests for one topic on its own connection, every 20 ms,
    keeping the worst round trip: a request path held up by admin work shows here."""

    def __init__(self, port, topic):
        name = topic.encode()
        client = b"hardening-probe"
        body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
        self.port = port
        self.header = (struct.pack(">hh", 3, 1), struct.pack(">h", len(client)) + client, body)
        self.worst = 0.0
        self.count = 0
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def request(self, s, correlation):
        api, client, body = self.header
        frame = api + struct.pack(">i", correlation) + client + body
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        reply = recv_exact(s, size)
        if struct.unpack(">i", reply[:4])[0] != correlation:
            raise OSError(f"correlation {struct.unpack('>i', reply[:4])[0]} != {correlation}")

    def run(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                while not self.stopping.is_set():
                    t0 = time.monotonic()
                    self.request(s, self.count)
                    self.worst = max(self.worst, time.monotonic() - t0)
                    self.count += 1
                    time.sleep(0.02)
        except OSError as e:
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=35)


MANY = 3000


def many_partitions(bs):
    broker = Broker("many-partitions")
    broker.start()
    try:
        round_trip(bs, "hardening-small", n=20)
        admin = AdminClient({"bootstrap.servers": bs})
        with MetadataProbe(broker.port, "hardening-small") as probe:
            time.sleep(0.2)
            t0 = time.monotonic()
            futures = admin.create_topics([NewTopic("hardening-many", MANY, 1)], operation_timeout=60,
                                          request_timeout=90)
            futures["hardening-many"].result(timeout=90)
            created_s = time.monotonic() - t0
            time.sleep(0.2)
        print(f"# many-partitions: CreateTopics of {MANY} partitions {created_s:.2f} s; concurrent Metadata "
              f"worst {probe.worst * 1000:.0f} ms over {probe.count} requests", flush=True)
        if probe.error:
            fail(f"Metadata probe: {probe.error}")
        if probe.worst > 1.0:
            fail(f"a Metadata request waited {probe.worst:.2f} s during CreateTopics")
        p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 50})
        errors = []
        for i in range(MANY):
            p.produce("hardening-many", value=b"x", partition=i, on_delivery=lambda e, m: e and errors.append(e))
        left = p.flush(60)
        if left or errors:
            fail(f"one record per partition: {left} undelivered, errors {errors[:3]}")
        fds = len(os.listdir(f"/proc/{broker.proc.pid}/fd"))
        print(f"# many-partitions: {fds} open file descriptors with {MANY + 1} partitions written", flush=True)
        t0 = time.monotonic()
        broker.proc.send_signal(signal.SIGTERM)
        try:
            status = broker.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fail(f"SIGTERM with {MANY} partitions: still running after 15 s")
        stop_s = time.monotonic() - t0
        print(f"# many-partitions: SIGTERM to exit with {MANY + 1} partitions {stop_s:.2f} s (status {status})",
              flush=True)
        if status != 0:
            fail(f"exit status {status} after SIGTERM")
        broker.start()
        with MetadataProbe(broker.port, "hardening-small") as probe:
            time.sleep(0.2)
            t0 = time.monotonic()
            admin = AdminClient({"bootstrap.servers": bs})
            admin.delete_topics(["hardening-many"], operation_timeout=60)["hardening-many"].result(timeout=90)
            deleted_s = time.monotonic() - t0
            time.sleep(0.2)
        print(f"# many-partitions: DeleteTopics {deleted_s:.2f} s; concurrent Metadata worst "
              f"{probe.worst * 1000:.0f} ms", flush=True)
        if probe.error:
            fail(f"Metadata probe: {probe.error}")
        if probe.worst > 1.0:
            fail(f"a Metadata request waited {probe.worst:.2f} s during DeleteTopics")
        round_trip(bs, "hardening-small-after", n=20)
    finally:
        status = broker.stop()
    if status not in (0, None):
        fail(f"broker stop: {status}")


def partition_dir(broker, topic, index):
    return os.path.join(broker.data, f"{topic}-{index}")


def segments(d):
    return sorted(int(f[:-4]) for f in os.listdir(d) if f.endswith(".log"))


def consume_range(bs, topic, start, stop_at=None, idle_s=3.0):
    """Offset -> value read from `start` until `stop_at` (exclusive) or `idle_s` without progress;
    also the consumer errors seen."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "hardening-corrupt", "enable.auto.commit": False,
                  "check.crcs": True, "fetch.error.backoff.ms": 100})
    c.assign([TopicPartition(topic, 0, start)])
    got, errors = {}, []
    last = time.monotonic()
    deadline = last + 60
    while time.monotonic() < deadline and time.monotonic() - last < idle_s:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            errors.append(m.error())
            continue
        got[m.offset()] = m.value()
        last = time.monotonic()
        if stop_at is not None and m.offset() + 1 >= stop_at:
            break
    c.close()
    return got, errors


def corruption(bs):
    # No log dir checkpoint in the run (as within the first minute after a start): recovery
    # re-checks every segment, the corrupted one included.
    broker = Broker("corruption", overrides=["log.flush.offset.checkpoint.interval.ms=3600000"])
    broker.start()
    topic, n = "hardening-corrupt", 5000
    try:
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "65536"})])[topic].result(timeout=30)
        acked = {}
        p = Producer({"bootstrap.servers": bs, "acks": "all", "batch.num.messages": 10, "linger.ms": 5,
                      "enable.idempotence": True})

        def on_delivery(err, m):
            if err is None:
                acked[m.offset()] = m.value()

        for i in range(n):
            p.produce(topic, value=f"value-{i}-".encode().ljust(100, b"."), on_delivery=on_delivery)
            p.poll(0)
        if p.flush(60) or len(acked) != n:
            fail(f"{len(acked)} of {n} acknowledged")
        broker.kill9()
        d = partition_dir(broker, topic, 0)
        bases = segments(d)
        if len(bases) < 5:
            fail(f"only {len(bases)} segments (segment.bytes not applied?)")
        victim = bases[len(bases) // 2]
        path = os.path.join(d, f"{victim:020d}.log")
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\xde\xad\xbe\xef\xde\xad\xbe\xef")
        broker.start()
        damaged = os.path.join(d, f"{victim:020d}.damaged")
        if not os.path.exists(damaged):
            fail(f"no {damaged} after restart")
        with open(damaged) as f:
            ranges = [tuple(int(x) for x in line.split()) for line in f.read().splitlines()[1:] if line]
        if len(ranges) != 1:
            fail(f"damage ranges {ranges}")
        _, _, first, resume = ranges[0]
        lost = [o for o in acked if first <= o < resume]
        with open(broker.log_path, "rb") as f:
            if b"corrupt bytes in the log" not in f.read():
                fail("no ERROR line for the corruption in the broker log")
        before, errors = consume_range(bs, topic, 0)
        after, _ = consume_range(bs, topic, resume, stop_at=max(acked) + 1)
        read = {**before, **after}
        wrong = [o for o, v in acked.items() if not first <= o < resume and read.get(o) != v]
        codes = sorted({e.code() for e in errors})
        print(f"# corruption: {n} acknowledged in {len(bases)} segments; 8 bytes overwritten in segment {victim} "
              f"held offsets [{first}, {resume}) ({len(lost)} records); {len(read)} read back, "
              f"{len(wrong)} others missing or changed; consumer errors at the damage {codes}", flush=True)
        if wrong:
            fail(f"{len(wrong)} acknowledged records outside the damage not read back, e.g. {wrong[:5]}")
        if len(lost) > 20:
            fail(f"the damage took {len(lost)} records: more than the two batches it can touch")
        if not before or max(before) + 1 != first:
            fail(f"reading from 0 stopped at {max(before) if before else None}, not before the damage at {first}")
    finally:
        status = broker.stop()
    if status not in (0, None):
        fail(f"broker stop: {status}")


def metric(name):
    port = os.environ.get("SLUICE_METRICS_PORT")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    fail(f"no {name} in /metrics")


def offline_replicas(port, topic):
    """partition -> offline_replicas, from a raw Metadata v5."""
    return {p: v[4] for p, v in metadata(port, [topic])[3][topic].items()}


def produce_until_full(bs, topic, limit):
    """acks=all, no retries: offset -> value acknowledged, and the error codes of the rest."""
    acked, errors = {}, []
    p = Producer({"bootstrap.servers": bs, "acks": "all", "retries": 0, "enable.idempotence": False,
                  "linger.ms": 5, "message.timeout.ms": 30000})

    def on_delivery(err, m):
        if err is None:
            acked[m.offset()] = m.value()
        else:
            errors.append(err.code())

    for i in range(limit):
        p.produce(topic, value=f"full-{i}-".encode().ljust(1000, b"."), on_delivery=on_delivery)
        p.poll(0)
        if i % 100 == 99:
            p.flush(30)
            if errors:
                break
    p.flush(30)
    return acked, errors


def disk_full(bs):
    if os.geteuid() != 0:
        print("# disk-full: SKIPPED (mounting a tmpfs needs root)", flush=True)
        return
    mnt = tempfile.mkdtemp(prefix="sluice-full-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", mnt], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"mount -t tmpfs: {r.stderr.strip()}")
    # The metadata log on another disk (metadata.log.dir), as a deployment that wants to ride
    # out a full data disk has it: the quorum of one must write at startup (its vote, the
    # broker's registration), which a full disk refuses, as Kafka's would.
    meta_dir = tempfile.mkdtemp(prefix="sluice-full-meta-")
    broker = Broker("disk-full", data=os.path.join(mnt, "data"), overrides=[f"metadata.log.dir={meta_dir}"])
    topic = "hardening-full"
    try:
        broker.start()
        admin = AdminClient({"bootstrap.servers": bs})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        first, errors = produce_until_full(bs, topic, 100)
        if errors or len(first) != 100:
            fail(f"before the disk filled: {len(first)} acknowledged, errors {errors[:3]}")
        # The reading consumer has a group.id (librdkafka insists), so its first poll creates
        # __consumer_offsets: that happens here, before the disk fills, not at a racy moment
        # of the full disk (where its 50 replicas could take the last free pages).
        got, _ = consume_range(bs, topic, 0, stop_at=max(first) + 1)
        if any(got.get(o) != v for o, v in first.items()):
            fail(f"reads before the disk filled: {sum(got.get(o) == v for o, v in first.items())} of 100")
        st = os.statvfs(mnt)
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            f.truncate(0)
            left = st.f_bavail * st.f_frsize - 2 * MIB
            while left > 0:
                n = f.write(bytes(min(left, MIB)))
                left -= n
        acked, errors = produce_until_full(bs, topic, 20000)
        acked.update(first)
        codes = sorted(set(errors))
        print(f"# disk-full: {len(acked)} acknowledged, then {len(errors)} failed with codes {codes}", flush=True)
        if not errors or codes != [56]:
            fail(f"a full disk should answer KAFKA_STORAGE_ERROR (56), got {codes}")
        if metric("sluice_offline_log_directories") != 1:
            fail("the full log dir is not reported offline in /metrics")
        if offline_replicas(broker.port, topic) != {0: [1]}:
            fail(f"Metadata offline_replicas {offline_replicas(broker.port, topic)}, expected {{0: [1]}}")
        got, _ = consume_range(bs, topic, 0, stop_at=max(acked) + 1)
        if any(got.get(o) != v for o, v in acked.items()):
            fail(f"reads while full: {sum(got.get(o) == v for o, v in acked.items())} of {len(acked)}")
        with open(broker.log_path, "rb") as f:
            lines = f.read().count(b"log dir is full")
        if lines != 1:
            fail(f"{lines} 'log dir is full' lines, expected one per state change")
        status = broker.stop()
        if status != 0 or not os.path.exists(os.path.join(broker.data, ".kafka_cleanshutdown")):
            fail(f"SIGTERM on a full disk: status {status}, clean-shutdown marker "
                 f"{os.path.exists(os.path.join(broker.data, '.kafka_cleanshutdown'))}")
        broker.start()
        got, _ = consume_range(bs, topic, 0, stop_at=max(acked) + 1)
        missing = [o for o, v in acked.items() if got.get(o) != v]
        print(f"# disk-full: restarted on the full disk, {len(acked) - len(missing)} of {len(acked)} read back",
              flush=True)
        if missing:
            fail(f"after the restart on a full disk {len(missing)} acknowledged records missing, e.g. {missing[:5]}")
        os.remove(filler)
        more, errors = produce_until_full(bs, topic, 100)
        if errors or len(more) != 100:
            fail(f"space freed: {len(more)} of 100 acknowledged, errors {errors[:3]}")
        if metric("sluice_offline_log_directories") != 0:
            fail("the log dir is still offline in /metrics after space freed")
        if offline_replicas(broker.port, topic) != {0: []}:
            fail(f"Metadata offline_replicas {offline_replicas(broker.port, topic)} after space freed")
    finally:
        status = broker.stop()
        subprocess.run(["umount", mnt], capture_output=True)
        os.rmdir(mnt)
        shutil.rmtree(meta_dir, ignore_errors=True)
    if status not in (0, None):
        fail(f"broker stop: {status}")


def main():
    bs = compat.bootstrap()
    suite = compat.Suite("hardening")
    suite.check("memory-bounded-with-held-frames", memory, bs)
    suite.check("many-partitions-create-stop-delete", many_partitions, bs)
    suite.check("corrupt-middle-segment-keeps-later-records", corruption, bs)
    suite.check("disk-full-reads-go-on-clean-stop-restart", disk_full, bs)
    suite.finish()


if __name__ == "__main__":
    main()
