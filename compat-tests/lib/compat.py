"""Shared pieces of the Python-driven compat suites (confluent-kafka, kafka-python, kcat, crash).

The message scheme matches java/SluiceClient.java and kafkajs/suite.js, so every suite checks the
same things: message i has key "key-(i % 1000)", value "value-i-" padded to 100 bytes, headers
idx=i and codec=<codec>, timestamp base_ts + i. Each check prints "PASS <check>" or
"FAIL <check>: <reason>"; run.sh matches FAIL lines against allowlist.txt.
"""

import os
import sys
import time
import traceback

NUM_PARTITIONS = 3

# Per codec: (codec, acks, idempotence). acks=all (+ idempotence where supported) and acks=1 both
# appear, so each client exercises the delayed-produce path and the leader-only path.
CODEC_RUNS = [
    ("none", "all", True),
    ("gzip", "1", False),
    ("snappy", "all", True),
    ("lz4", "1", False),
    ("zstd", "all", True),
]


def bootstrap():
    b = os.environ.get("SLUICE_BOOTSTRAP")
    if not b:
        sys.exit("SLUICE_BOOTSTRAP is not set (run through compat-tests/run.sh)")
    return b


def num_messages():
    return int(os.environ.get("SLUICE_NUM_MESSAGES", "10000"))


class CheckFailed(Exception):
    """A check's expectation did not hold."""


def fail(msg):
    raise CheckFailed(msg)


class Suite:
    """Runs named checks, printing one PASS/FAIL line each and counting failures."""

    def __init__(self, name):
        self.name = name
        self.failures = 0

    def check(self, check, fn, *args):
        t0 = time.monotonic()
        try:
            result = fn(*args)
        except CheckFailed as e:
            print(f"FAIL {check}: {e}", flush=True)
            self.failures += 1
            return False, None
        except Exception as e:  # noqa: BLE001 - a client exception is a failed check, with context
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            print(f"FAIL {check}: unexpected {detail}", flush=True)
            traceback.print_exc(file=sys.stderr)
            self.failures += 1
            return False, None
        print(f"PASS {check} ({(time.monotonic() - t0) * 1000:.0f} ms)", flush=True)
        return True, result

    def finish(self):
        print(f"# {self.name}: {self.failures} check(s) failed", flush=True)
        sys.exit(1 if self.failures else 0)


class Msg:
    """One message to produce, and where the producer said it landed."""

    __slots__ = ("index", "key", "value", "headers", "ts", "partition", "offset", "error")

    def __init__(self, index, key, value, headers, ts):
        self.index, self.key, self.value, self.headers, self.ts = index, key, value, headers, ts
        self.partition, self.offset, self.error = -1, -1, None


def make_messages(codec, n, size=100, base_ts=None):
    if base_ts is None:
        base_ts = base_timestamp()
    out = []
    for i in range(n):
        v = f"value-{i}-"
        v += "".join(chr(ord("a") + (i + j) % 26) for j in range(len(v), size))
        headers = [("idx", str(i).encode()), ("codec", codec.encode())]
        out.append(Msg(i, f"key-{i % 1000}".encode(), v.encode(), headers, base_ts + i))
    return out


def base_timestamp():
    """Ten minutes ago, on a whole second: explicit, increasing, inside default retention."""
    return (int(time.time() * 1000) - 600_000) // 1000 * 1000


def murmur2(data):
    """Kafka's murmur2 (Utils.murmur2 in the Java client), as an unsigned 32-bit int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(length // 4):
        k = int.from_bytes(data[i * 4:i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail, extra = length & ~3, length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def key_partition(key, partitions=NUM_PARTITIONS):
    """The Java default partitioner (and librdkafka's murmur2_random) for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def verify_deliveries(msgs, partitions=NUM_PARTITIONS):
    """Every message acknowledged, on its key's partition, offsets consecutive in send order."""
    next_offset = {}
    for m in msgs:
        if m.error is not None:
            fail(f"message {m.index} not acknowledged: {m.error}")
        want = key_partition(m.key, partitions)
        if m.partition != want:
            fail(f"message {m.index} (key {m.key!r}) acknowledged on partition {m.partition}, murmur2 says {want}")
        expect = next_offset.get(m.partition, 0)
        if m.offset != expect:
            fail(f"message {m.index} acknowledged at {m.partition}/{m.offset}, expected offset {expect} "
                 "(consecutive in send order)")
        next_offset[m.partition] = expect + 1
    return [next_offset.get(p, 0) for p in range(partitions)]


class Rec:
    """A consumed record, normalised across clients. headers: list of (str, bytes or None)."""

    __slots__ = ("partition", "offset", "key", "value", "headers", "ts")

    def __init__(self, partition, offset, key, value, headers, ts):
        self.partition, self.offset, self.key, self.value = partition, offset, key, value
        self.headers, self.ts = list(headers or []), ts


def short(b):
    if b is None:
        return "null"
    s = b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else str(b)
    return s if len(s) <= 40 else s[:40] + "..."


def verify_partition(msgs, p, recs, expected, check_ts=True):
    """Consumed records of partition p match the delivery reports exactly, offsets 0..expected-1."""
    by_offset = {m.offset: m for m in msgs if m.partition == p}
    if len(recs) != expected:
        fail(f"partition {p}: read {len(recs)} records, produced {expected}")
    for i, r in enumerate(recs):
        if r.offset != i:
            fail(f"partition {p}: record #{i} has offset {r.offset} (want consecutive from 0)")
        m = by_offset.get(r.offset)
        if m is None:
            fail(f"partition {p} offset {r.offset}: no delivery report for it")
        if bytes(r.key or b"") != m.key:
            fail(f"partition {p} offset {i}: key {short(r.key)}, want {short(m.key)}")
        if bytes(r.value or b"") != m.value:
            fail(f"partition {p} offset {i}: value {short(r.value)}, want {short(m.value)}")
        if check_ts and r.ts != m.ts:
            fail(f"partition {p} offset {i}: timestamp {r.ts}, want {m.ts}")
        got_h = [(k, bytes(v) if v is not None else None) for k, v in r.headers]
        if got_h != m.headers:
            fail(f"partition {p} offset {i}: headers {got_h}, want {m.headers}")


def verify_unacked_partition(msgs, p, recs):
    """For acks=0 (no offsets reported): records consecutive, each a produced message on its key's
    partition, in send order. Returns the number of records."""
    last = -1
    for i, r in enumerate(recs):
        if r.offset != i:
            fail(f"partition {p}: record #{i} has offset {r.offset}")
        hdr = dict(r.headers)
        idx = int(hdr["idx"])
        m = msgs[idx]
        if bytes(r.key) != m.key or bytes(r.value) != m.value:
            fail(f"partition {p} offset {i}: key/value differ from message {idx}")
        if key_partition(m.key) != p:
            fail(f"message {idx} on partition {p}, its key hashes to {key_partition(m.key)}")
        if idx <= last:
            fail(f"partition {p}: message {idx} after message {last} (order)")
        last = idx
    return len(recs)


def expected_for_timestamp(msgs, p, target):
    """(offset, timestamp) of the first record of partition p with timestamp >= target, or (-1, -1)."""
    best = None
    for m in msgs:
        if m.partition == p and m.ts >= target and (best is None or m.offset < best.offset):
            best = m
    return (best.offset, best.ts) if best else (-1, -1)


def read_partition(conf, topic, partition=0, start=0, count=None, seconds=30):
    """confluent-kafka messages of `topic`'s partition from offset `start`: `count` of them, or
    (count None) up to the end as it was when reading started. No consumer group is used (the
    group.id is only a name). A message error fails the check."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    c = Consumer(dict(conf, **{"group.id": f"compat-reader-{time.monotonic_ns()}", "enable.auto.commit": False,
                               "enable.partition.eof": True}))
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        for _ in deadline_loop(seconds, step=0):
            if count is not None and len(out) >= count:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if count is None:
                        break
                    continue
                fail(f"reading {topic}-{partition}: {m.error()}")
            out.append(m)
        return out
    finally:
        c.close()


def deadline_loop(seconds, step=0.2):
    """Yields until `seconds` have passed (bounded polling)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        yield
        time.sleep(step)


def run_codec_checks(s, ops, topic, codec, acks, idem, n, extra=None):
    """The per-codec check sequence the admin-capable Python suites share.

    `ops` names the client's own calls (a namespace or module-like object): create_topic(topic),
    list_topics_check(topic), describe_topic(topic), describe_configs(topic),
    produce(topic, msgs, codec, acks, idem), consume_partition(topic, p, start, count),
    verify_list_offsets(topic, msgs, per_partition, base_ts, n), delete_topic(topic).
    `extra(topic, msgs, per_partition)` adds client-specific checks after list-offsets.
    """
    pre = f"{codec}."
    ok, _ = s.check(pre + "create-topic", ops.create_topic, topic)
    if not ok:
        return
    s.check(pre + "list-topics", ops.list_topics_check, topic)
    s.check(pre + "describe-topic", ops.describe_topic, topic)
    s.check(pre + "describe-configs", ops.describe_configs, topic)
    base_ts = base_timestamp()
    msgs = make_messages(codec, n, base_ts=base_ts)

    def produce_check():
        ops.produce(topic, msgs, codec, acks, idem)
        return verify_deliveries(msgs)

    ok, per_partition = s.check(pre + "produce", produce_check)
    if ok:
        def consume_check():
            for p in range(NUM_PARTITIONS):
                recs = ops.consume_partition(topic, p, 0, per_partition[p])
                verify_partition(msgs, p, recs, per_partition[p])

        s.check(pre + "consume", consume_check)
        s.check(pre + "list-offsets", ops.verify_list_offsets, topic, msgs, per_partition, base_ts, n)
        if extra is not None:
            extra(topic, msgs, per_partition)
    s.check(pre + "delete-topic", ops.delete_topic, topic)
