"""Log compaction (cleanup.policy=compact), per Kafka's guarantees, and compression by the broker
(compression.type), with real clients.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file; see
lib/broker.py), with log.cleaner.backoff.ms=200 so the cleaner looks often. Topics are created
with segment.ms=100 (a segment rolls at the first append after 100 ms), min.cleanable.dirty.ratio
0.01 and delete.retention.ms 3000. Checks:
  <client>.latest-per-key  confluent-kafka (librdkafka), kafka-python and the Java client
              (kafka-clients 4.3.0) each write keys k0..k9 x 20 rounds, then after a roll one
              more record; reading from the beginning with the same client then shows exactly
              the last value of every key, at the offset it was acknowledged at, in offset
              order, plus the tail; the beginning and end offsets did not move.
  <client>.keyless-refused  a record without a key is refused with INVALID_RECORD
              (InvalidRecordException in Java, KafkaError INVALID_RECORD in librdkafka).
  tombstone.*  a tombstone for k3 (confluent-kafka): k3's values go and the tombstone is seen
              for delete.retention.ms; after it, with more writes, the tombstone goes too.
  txn.aborted-removed  a transactional producer commits one transaction and aborts another:
              after cleaning, a read_uncommitted reader from the beginning sees none of the
              aborted records, every committed one.
  idempotent.continues  an idempotent producer whose batches were compacted away goes on
              producing (no sequence error), across a broker restart too.
  kill-mid-clean  the broker is kill -9ed while the cleaner writes a segment (the I/O rate set
              low, `.cleaned` files present): after the restart every key's latest value is at
              its offset, nothing else is lost, and the cleaner finishes the job.
  internal.*  __consumer_offsets is created compacted (DescribeConfigs).
  compression.<codec>  a topic with compression.type=<codec> (gzip, snappy, lz4, zstd,
              uncompressed): batches produced uncompressed by confluent-kafka and lz4 by
              kafka-python are stored in <codec> (read from the segment file), and both clients
              read every value back in order.
"""

import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic)

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

CACHE = os.environ.get("SLUICE_CACHE", os.path.expanduser("~/.cache/sluice"))
JARS = os.path.join(CACHE, "java", "kafka-4.3.0")
TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "3000",
}
KEYS = [f"k{i}" for i in range(10)]
ROUNDS = 20


def create_topic(bs, topic, extra=None):
    admin = AdminClient({"bootstrap.servers": bs})
    config = dict(TOPIC_CONFIG, **(extra or {}))
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])
    fs[topic].result(timeout=30)


def ck_producer(bs, **extra):
    conf = {"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True, "linger.ms": 0}
    conf.update(extra)
    return Producer(conf)


def ck_produce(bs, topic, pairs, producer=None):
    """Writes (key, value) pairs in order (value None: a tombstone); returns {key: offset}."""
    p = producer or ck_producer(bs)
    acked, errors = {}, []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.key().decode()] = msg.offset()

    for k, v in pairs:
        p.produce(topic, key=k.encode(), value=None if v is None else v.encode(), partition=0, on_delivery=cb)
        p.flush(30)
    if errors:
        fail(f"produce failed: {errors[0]}")
    return acked


def ck_read(bs, topic, isolation="read_uncommitted"):
    """[(offset, key, value or None)] from the beginning to the end offset, and (low, high)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": f"compact-reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "isolation.level": isolation})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.assign([TopicPartition(topic, 0, low)])
        out = []
        for _ in compat.deadline_loop(30, step=0):
            pos = c.position([TopicPartition(topic, 0)])[0].offset
            if high == low or (pos >= high and pos >= 0):
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    break
                fail(f"read: {msg.error()}")
            v = msg.value()
            out.append((msg.offset(), msg.key().decode() if msg.key() else None, None if v is None else v.decode()))
        return out, (low, high)
    finally:
        c.close()


def kp_produce(bs, topic, pairs):
    from kafka import KafkaProducer
    p = KafkaProducer(bootstrap_servers=bs, acks="all")
    try:
        acked = {}
        for k, v in pairs:
            md = p.send(topic, key=k.encode(), value=None if v is None else v.encode(), partition=0).get(timeout=30)
            acked[k] = md.offset
        return acked
    finally:
        p.close()


def kp_read(bs, topic):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        low = c.beginning_offsets([tp])[tp]
        high = c.end_offsets([tp])[tp]
        c.seek_to_beginning(tp)
        out = []
        for _ in compat.deadline_loop(30, step=0):
            if c.position(tp) >= high:
                break
            for recs in c.poll(timeout_ms=500).values():
                for r in recs:
                    out.append((r.offset, r.key.decode(), None if r.value is None else r.value.decode()))
        return out, (low, high)
    finally:
        c.close()


def java(cmd, bs, topic, *args):
    out = subprocess.run(["java", "-cp", os.path.join(JARS, "*"), os.path.join(HERE, "CompactCheck.java"), cmd, bs,
                          topic, *args], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        fail(f"CompactCheck {cmd} exited {out.returncode}: {out.stdout[-500:]} {out.stderr[-1500:]}")
    return out.stdout.splitlines()


def java_produce(bs, topic, pairs):
    spec = ",".join(f"{k}={'' if v is None else v}" for k, v in pairs)
    acked = {}
    for line in java("produce", bs, topic, spec):
        if line.startswith("acked "):
            _, k, off = line.split()
            acked[k] = int(off)
    return acked


def java_read(bs, topic):
    out, rng = [], None
    for line in java("read", bs, topic):
        if line.startswith("rec "):
            _, off, k, v = line.split(" ", 3)
            out.append((int(off), k, None if v == "<null>" else v))
        elif line.startswith("range "):
            _, lo, hi = line.split()
            rng = (int(lo), int(hi))
    return out, rng


CLIENTS = {
    "confluent-kafka": (lambda bs, t, pairs: ck_produce(bs, t, pairs), ck_read),
    "kafka-python": (kp_produce, kp_read),
    "java": (java_produce, java_read),
}


def wait_compacted(read, bs, topic, expected, seconds=60):
    """Reads until the records are exactly `expected` ([(offset, key, value)]); fails with the
    last read after `seconds`."""
    got = None
    for _ in compat.deadline_loop(seconds, step=0.5):
        got, rng = read(bs, topic)
        if got == expected:
            return rng
    fail(f"not compacted to the expected {len(expected)} records within {seconds} s; last read "
         f"{len(got or [])} records: {(got or [])[:12]}...")


def latest_per_key(client, bs):
    produce, read = CLIENTS[client]
    topic = f"compact-{client}"
    create_topic(bs, topic)
    # One call (one JVM for Java): the acknowledged offset of each key's last write is kept.
    acked = produce(bs, topic, [(k, f"v{rnd}") for rnd in range(ROUNDS) for k in KEYS])
    last = {k: (off, f"v{ROUNDS - 1}") for k, off in acked.items()}
    _, (low0, high0) = read(bs, topic)
    if (low0, high0) != (0, ROUNDS * len(KEYS)):
        fail(f"offsets before cleaning {(low0, high0)}")
    time.sleep(0.3)
    tail = produce(bs, topic, [("tail", "t")])["tail"]
    expected = sorted([(off, k, v) for k, (off, v) in last.items()] + [(tail, "tail", "t")])
    low, high = wait_compacted(read, bs, topic, expected)
    if (low, high) != (0, tail + 1):
        fail(f"beginning/end offsets moved: {(low, high)}, expected {(0, tail + 1)}")


def keyless_refused(client, bs):
    topic = f"compact-{client}"
    if client == "java":
        lines = java("keyless", bs, topic)
        if not any(line.startswith("refused ") for line in lines):
            fail(f"not refused: {lines}")
    elif client == "kafka-python":
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bs, acks="all", retries=0)
        try:
            p.send(topic, value=b"no-key", partition=0).get(timeout=30)
            fail("a keyless record was accepted")
        except Exception as e:  # noqa: BLE001 - the client's error class for code 87
            if "InvalidRecord" not in type(e).__name__ and "87" not in str(e):
                fail(f"refused with an unexpected error: {type(e).__name__}: {e}")
        finally:
            p.close()
    else:
        p = ck_producer(bs)
        errors = []
        p.produce(topic, value=b"no-key", partition=0, on_delivery=lambda err, msg: errors.append(err))
        p.flush(30)
        if not errors or errors[0] is None or errors[0].code() != KafkaError.INVALID_RECORD:
            fail(f"expected INVALID_RECORD, got {errors}")


def tombstones(bs):
    topic = "compact-tombstone"
    create_topic(bs, topic)
    acked = ck_produce(bs, topic, [(k, "v0") for k in KEYS])
    tomb = ck_produce(bs, topic, [("k3", None)])["k3"]
    time.sleep(0.3)
    tail = ck_produce(bs, topic, [("tail", "t")])["tail"]
    with_tomb = sorted([(off, k, "v0") for k, off in acked.items() if k != "k3"]
                       + [(tomb, "k3", None), (tail, "tail", "t")])
    wait_compacted(ck_read, bs, topic, with_tomb)
    # After delete.retention.ms (3 s) and another round (new dirty data), the tombstone goes.
    time.sleep(3.5)
    tail2 = ck_produce(bs, topic, [("tail", "t2")])["tail"]
    time.sleep(0.3)
    tail3 = ck_produce(bs, topic, [("tail3", "t3")])["tail3"]
    gone = sorted([(off, k, "v0") for k, off in acked.items() if k != "k3"]
                  + [(tail2, "tail", "t2"), (tail3, "tail3", "t3")])
    wait_compacted(ck_read, bs, topic, gone)


def aborted_removed(bs):
    topic = "compact-txn"
    create_topic(bs, topic)
    p = Producer({"bootstrap.servers": bs, "transactional.id": "compact-txn", "linger.ms": 0})
    p.init_transactions(30)
    p.begin_transaction()
    for k in ["a1", "a2", "a3"]:
        p.produce(topic, key=k.encode(), value=b"committed", partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    for k in ["b1", "b2", "b3"]:
        p.produce(topic, key=k.encode(), value=b"aborted", partition=0)
    p.flush(30)
    p.abort_transaction(30)
    before, _ = ck_read(bs, topic)
    if not any(v == "aborted" for _, _, v in before):
        fail(f"the aborted records should be in the log before cleaning: {before}")
    time.sleep(0.3)
    ck_produce(bs, topic, [("tail", "t")])
    for _ in compat.deadline_loop(60, step=0.5):
        got, _ = ck_read(bs, topic)
        keys = [k for _, k, _ in got]
        if keys == ["a1", "a2", "a3", "tail"]:
            return
    fail(f"aborted records not removed: {got}")


def idempotent_continues(bs, broker):
    topic = "compact-idempotent"
    create_topic(bs, topic)
    errors = []
    p = ck_producer(bs, error_cb=errors.append)
    for rnd in range(5):
        ck_produce(bs, topic, [("same", f"r{rnd}")], producer=p)
    time.sleep(0.3)
    other = ck_produce(bs, topic, [("other", "x")])
    wait_compacted(ck_read, bs, topic, [(4, "same", "r4"), (other["other"], "other", "x")])
    ck_produce(bs, topic, [("same", "r5")], producer=p)
    broker.stop()
    broker.start()
    last = ck_produce(bs, topic, [("same", "r6")], producer=p)
    fatal = [e for e in errors if e.fatal()]
    if fatal:
        fail(f"the idempotent producer failed: {fatal}")
    got, _ = ck_read(bs, topic)
    if got[-1] != (last["same"], "same", "r6"):
        fail(f"last record {got[-1]}")


def kill_mid_clean(bs, broker):
    topic = "compact-kill"
    create_topic(bs, topic, {"segment.bytes": "1048576", "segment.ms": "3600000"})
    p = ck_producer(bs, **{"linger.ms": 20})
    last = {}
    value = "x" * 1000
    n = 30000

    def cb(err, msg):
        if err is None:
            last[msg.key().decode()] = msg.offset()

    for i in range(n):
        key = f"key-{i % 3000}"
        p.produce(topic, key=key.encode(), value=f"{i}-{value}".encode(), partition=0, on_delivery=cb)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(60)
    if len(last) != 3000:
        fail(f"{len(last)} keys acknowledged")
    # Restart with a slow cleaner (30 segments of 1 MiB; 5 MB/s: about 6 s to map them, then
    # about 0.2 s a segment to rewrite), kill -9 while it writes.
    broker.stop()
    slow = Broker("compaction", overrides=broker.overrides + ["log.cleaner.io.max.bytes.per.second=5000000"])
    slow.start()
    ck_produce(bs, topic, [("tail", "t")])  # rolls nothing (segment.ms long): the roll is by size
    part_dir = os.path.join(os.environ["SLUICE_DATA_DIR"], f"{topic}-0")
    for _ in compat.deadline_loop(60, step=0.05):
        if glob.glob(os.path.join(part_dir, "*.cleaned")):
            break
    else:
        fail("the cleaner never started writing")
    time.sleep(0.5)
    slow.kill9()
    broker.start()
    got, (low, high) = ck_read(bs, topic)
    latest = {}
    for off, k, v in got:
        latest[k] = (off, v)
    for k, off in last.items():
        if k not in latest or latest[k][0] != off:
            fail(f"key {k}: latest at {latest.get(k)}, acknowledged at {off}")
    offsets = [o for o, _, _ in got]
    if offsets != sorted(set(offsets)) or low != 0:
        fail(f"offsets out of order or log start moved ({low})")
    # The cleaner (normal speed now) finishes: one record per key, once the active segment (never
    # cleaned, nor mapped) rolls: segment.ms down to 100, then one more record.
    admin = AdminClient({"bootstrap.servers": bs})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("segment.ms", "100", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(timeout=30)
    time.sleep(0.3)
    ck_produce(bs, topic, [("tail2", "t")])
    expected = sorted([(off, k, None) for k, off in last.items()])
    for _ in compat.deadline_loop(90, step=1):
        got, _ = ck_read(bs, topic)
        if len([1 for _, k, _ in got if k.startswith("key-")]) == 3000:
            break
    else:
        fail(f"not compacted after the restart: {len(got)} records")
    kept = sorted([(o, k, None) for o, k, _ in got if k.startswith("key-")])
    if kept != expected:
        fail("after the restart the kept records are not every key's latest")


def stored_codecs(topic):
    """The codec (attribute bits 0-2) of every batch in the topic's partition-0 segment files."""
    codecs = []
    for path in sorted(glob.glob(os.path.join(os.environ["SLUICE_DATA_DIR"], f"{topic}-0", "*.log"))):
        data = open(path, "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            length = int.from_bytes(data[pos + 8:pos + 12], "big")
            attributes = int.from_bytes(data[pos + 21:pos + 23], "big")
            codecs.append(attributes & 7)
            pos += 12 + length
    return codecs


def broker_compression(bs, codec):
    topic = f"compress-{codec}"
    admin = AdminClient({"bootstrap.servers": bs})
    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                       config={"compression.type": codec})])
    fs[topic].result(timeout=30)
    values = [f"value-{i}-" + "abc" * (i % 50) for i in range(300)]
    p = ck_producer(bs, **{"linger.ms": 5, "compression.type": "none"})
    for v in values[:150]:
        p.produce(topic, key=b"k", value=v.encode(), partition=0)
    p.flush(30)
    from kafka import KafkaProducer
    kp = KafkaProducer(bootstrap_servers=bs, acks="all", compression_type="lz4", linger_ms=5)
    for v in values[150:]:
        kp.send(topic, key=b"k", value=v.encode(), partition=0)
    kp.flush(30)
    kp.close()
    want = {"uncompressed": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}[codec]
    codecs = stored_codecs(topic)
    if not codecs or any(c != want for c in codecs):
        fail(f"stored codecs {sorted(set(codecs))}, expected only {want}")
    for read in (ck_read, kp_read):
        got, _ = read(bs, topic)
        if [v for _, _, v in got] != values:
            fail(f"{read.__name__} read {len(got)} values, not the {len(values)} produced in order")


def internal_topics(bs):
    # A group lookup creates __consumer_offsets.
    c = Consumer({"bootstrap.servers": bs, "group.id": "compact-internal"})
    c.subscribe(["compact-confluent-kafka"])
    c.poll(2)
    c.close()
    admin = AdminClient({"bootstrap.servers": bs})
    res = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets")
    configs = admin.describe_configs([res])[res].result(timeout=30)
    if configs["cleanup.policy"].value != "compact":
        fail(f"__consumer_offsets cleanup.policy = {configs['cleanup.policy'].value}")


def main():
    bs = compat.bootstrap()
    s = compat.Suite("compaction")
    broker = Broker("compaction", overrides=["log.cleaner.backoff.ms=200", "log.retention.check.interval.ms=1000"])
    ok, _ = s.check("start", broker.start)
    if not ok:
        s.finish()
    try:
        for client in CLIENTS:
            if client == "java" and not os.path.exists(os.path.join(JARS, ".complete")):
                print(f"SKIP java: no kafka-clients jars in {JARS}", flush=True)
                continue
            s.check(f"{client}.latest-per-key", latest_per_key, client, bs)
            s.check(f"{client}.keyless-refused", keyless_refused, client, bs)
        s.check("tombstone.visible-then-gone", tombstones, bs)
        s.check("txn.aborted-removed", aborted_removed, bs)
        s.check("idempotent.continues", idempotent_continues, bs, broker)
        s.check("internal.consumer-offsets-compacted", internal_topics, bs)
        for codec in ["gzip", "snappy", "lz4", "zstd", "uncompressed"]:
            s.check(f"compression.{codec}", broker_compression, bs, codec)
        s.check("kill-mid-clean", kill_mid_clean, bs, broker)
    finally:
        broker.stop()
    s.finish()


if __name__ == "__main__":
    main()
