"""Old clients: the request versions Kafka 4 dropped and Kafka 3.9 still serves (Produce v0-2 with
message formats v0 and v1, Fetch v0-3, ListOffsets v0), with real clients that send them.

  kafka-go.<codec>.write  segmentio/kafka-go 0.2.1 (Debian's package; kgo.go) writes 100 keyed
                    messages with CreateTime per codec (none, gzip, snappy, lz4) through its
                    Writer (Produce v2, message format v1)
  kafka-go.modern-reader  confluent-kafka reads them back from the v2 batches Sluice stored:
                    offsets 0..399 in order, keys, values, timestamps
  kafka-go.read-all / read-mid  kafka-go's partition Reader (Fetch v2: batches converted down
                    to message format v1) reads every message from offset 0, and from the
                    middle of a compressed batch (offset 150)
  kafka-go.modern-data  records confluent-kafka wrote (v2 batches, lz4 and snappy, with
                    headers) read by kafka-go: same keys, values, offsets, timestamps
  kafka-go.group    a kafka-go group Reader (JoinGroup v1, SyncGroup v0, OffsetCommit v2,
                    OffsetFetch v1) reads and commits 10, a second one resumes at 10; the admin
                    API sees the commit
  kafka-python.api-<v>  kafka-python pinned to api_version (0, 9) (Produce v1 with message format
                    v0, Fetch v1, ListOffsets v0) and (0, 10, 0) (Produce v2, format v1, Fetch
                    v2): gzip writes acknowledged at their offsets, beginning/end offsets, reads
                    from the middle, timestamps where the format has them
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
from compat import fail  # noqa: E402

KGO = os.environ["KGO"]
CODECS = ["none", "gzip", "snappy", "lz4"]
TS0 = 1500000000000


def kgo(*args):
    r = subprocess.run([KGO, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        fail(f"kgo {' '.join(args)}: {r.stderr.strip()[-400:]}")
    return r.stdout


def kgo_msgs(out):
    """[(offset, key, value, ts)] from kgo's "msg" lines."""
    msgs = []
    for line in out.splitlines():
        if line.startswith("msg "):
            _, o, k, v, t = line.split(" ")
            msgs.append((int(o), k, v, int(t)))
    return msgs


def create(bs, topic):
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)


def expected(first, n):
    return [(i, f"k{i}", f"{CODECS[i // 100]}-{i}", TS0 + i) for i in range(first, first + n)]


def ck_read(bs, topic, start, n):
    msgs = compat.read_partition({"bootstrap.servers": bs}, topic, start=start, count=n)
    return [(m.offset(), m.key().decode(), m.value().decode(), m.timestamp()[1]) for m in msgs]


def write(bs, codec):
    i = CODECS.index(codec)
    out = kgo("write", bs, "old-kgo", codec, str(i * 100), "100")
    if out.strip() != "wrote 100":
        fail(f"kgo said {out!r}")


def modern_reader(bs):
    got = ck_read(bs, "old-kgo", 0, 400)
    if got != expected(0, 400):
        bad = next((g, e) for g, e in zip(got + [None] * 400, expected(0, 400)) if g != e)
        fail(f"{len(got)} records; first difference (got, expected): {bad}")


def read_all(bs):
    got = kgo_msgs(kgo("read", bs, "old-kgo", "0", "400"))
    if got != expected(0, 400):
        bad = next((g, e) for g, e in zip(got + [None] * 400, expected(0, 400)) if g != e)
        fail(f"{len(got)} messages; first difference (got, expected): {bad}")


def read_mid(bs):
    got = kgo_msgs(kgo("read", bs, "old-kgo", "150", "100"))
    if got != expected(150, 100):
        fail(f"from 150: {got[:3]}... ({len(got)})")


def modern_data(bs):
    create(bs, "old-modern")
    acked = []
    for codec, first in [("lz4", 0), ("snappy", 25)]:
        p = Producer({"bootstrap.servers": bs, "compression.type": codec, "linger.ms": 5, "acks": "all"})
        for i in range(first, first + 25):
            p.produce("old-modern", key=f"m{i}", value=f"modern-{i}", partition=0, timestamp=TS0 + i,
                      headers=[("h", b"dropped for old formats")],
                      on_delivery=lambda err, msg: acked.append(msg.offset()) if err is None else None)
        p.flush(30)
    if sorted(acked) != list(range(50)):
        fail(f"confluent-kafka acks {sorted(acked)[:5]}...")
    got = kgo_msgs(kgo("read", bs, "old-modern", "0", "50"))
    want = [(i, f"m{i}", f"modern-{i}", TS0 + i) for i in range(50)]
    if got != want:
        fail(f"kafka-go read {got[:3]}... ({len(got)}), expected {want[:3]}...")


def group(bs):
    first = kgo_msgs(kgo("group", bs, "old-kgo", "kgo-group", "10"))
    second = kgo_msgs(kgo("group", bs, "old-kgo", "kgo-group", "5"))
    if [m[0] for m in first] != list(range(10)) or [m[0] for m in second] != list(range(10, 15)):
        fail(f"offsets {[m[0] for m in first]} then {[m[0] for m in second]}")
    admin = AdminClient({"bootstrap.servers": bs})
    from confluent_kafka import ConsumerGroupTopicPartitions
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("kgo-group")])
    tps = res["kgo-group"].result(timeout=30).topic_partitions
    committed = {(tp.topic, tp.partition): tp.offset for tp in tps}
    if committed.get(("old-kgo", 0)) != 15:
        fail(f"committed offsets {committed}")


def kafka_python(bs, api):
    from kafka import KafkaConsumer, KafkaProducer
    topic = "old-kp-" + "-".join(map(str, api))
    create(bs, topic)
    p = KafkaProducer(bootstrap_servers=bs, api_version=api, compression_type="gzip", acks="all", linger_ms=5)
    futures = [p.send(topic, key=f"p{i}".encode(), value=f"v{i}".encode(), partition=0,
                      timestamp_ms=TS0 + i if api >= (0, 10) else None) for i in range(50)]
    p.flush(30)
    offsets = [f.get(10).offset for f in futures]
    p.close()
    if offsets != list(range(50)):
        fail(f"acknowledged offsets {offsets[:5]}...")
    c = KafkaConsumer(bootstrap_servers=bs, api_version=api, enable_auto_commit=False)
    try:
        from kafka import TopicPartition as KTP
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_end(tp)
        end = c.position(tp)
        c.seek_to_beginning(tp)
        begin = c.position(tp)
        if (begin, end) != (0, 50):
            fail(f"beginning/end offsets {begin}/{end}")
        c.seek(tp, 20)
        got = []
        for _ in compat.deadline_loop(30, step=0):
            if len(got) >= 30:
                break
            for recs in c.poll(500).values():
                got += recs
        view = [(r.offset, r.key.decode(), r.value.decode(), r.timestamp) for r in got]
        ts = (lambda i: TS0 + i) if api >= (0, 10) else (lambda i: None)
        want = [(i, f"p{i}", f"v{i}", ts(i)) for i in range(20, 50)]
        if view != want:
            fail(f"read {view[:3]}..., expected {want[:3]}...")
    finally:
        c.close()


def main():
    bs = compat.bootstrap()
    s = compat.Suite("old-clients")
    ok, _ = s.check("setup", create, bs, "old-kgo")
    if ok:
        for codec in CODECS:
            s.check(f"kafka-go.{codec}.write", write, bs, codec)
        s.check("kafka-go.modern-reader", modern_reader, bs)
        s.check("kafka-go.read-all", read_all, bs)
        s.check("kafka-go.read-mid", read_mid, bs)
        s.check("kafka-go.modern-data", modern_data, bs)
        s.check("kafka-go.group", group, bs)
    for api in [(0, 9), (0, 10, 0)]:
        s.check(f"kafka-python.api-{'.'.join(map(str, api))}", kafka_python, bs, api)
    s.finish()


if __name__ == "__main__":
    main()
