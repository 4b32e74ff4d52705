"""kafka-python (pure Python; codecs from cramjam/python-snappy, lz4, zstandard) against Sluice.

Per codec: KafkaAdminClient.create_topics (3 partitions), list_topics / describe_topics /
describe_configs, KafkaProducer (default murmur2 partitioner, explicit timestamps, headers),
KafkaConsumer assign() + seek per partition (group_id=None), beginning_offsets / end_offsets /
offsets_for_times, delete_topics.
"""

import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import kafka  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic  # noqa: E402


import compat  # noqa: E402
from compat import NUM_PARTITIONS, Rec, fail  # noqa: E402

TIMEOUT_MS = 30000


def admin(bs):
    return KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=TIMEOUT_MS, client_id="compat-kafka-python")


def create_topic(a, topic):
    a.create_topics([NewTopic(topic, num_partitions=NUM_PARTITIONS, replication_factor=1)], timeout_ms=TIMEOUT_MS)


def list_topics_check(a, topic):
    names = a.list_topics()
    if topic not in names:
        fail(f"list_topics lacks {topic}: {sorted(names)}")


def describe_topic(a, topic):
    ts = a.describe_topics([topic])
    if len(ts) != 1:
        fail(f"describe_topics returned {len(ts)} topics")
    t = ts[0]
    if t.get("error_code", 0) != 0:
        fail(f"describe_topics error_code {t['error_code']}")
    parts = sorted(p["partition_index"] if "partition_index" in p else p["partition"] for p in t["partitions"])
    if parts != list(range(NUM_PARTITIONS)):
        fail(f"partitions {parts}")
    for p in t["partitions"]:
        leader = p.get("leader_id", p.get("leader"))
        if leader != 1:
            fail(f"partition leader {leader}, want 1: {p}")


def describe_configs(a, topic):
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    if not res:
        fail(f"describe_configs returned {res!r}")


def delete_topic(a, topic):
    a.delete_topics([topic], timeout_ms=TIMEOUT_MS)
    for _ in compat.deadline_loop(15):
        if topic not in a.list_topics():
            return
    fail(f"{topic} still listed 15 s after deletion")


def produce(bs, topic, msgs, codec, acks, idem):
    p = KafkaProducer(
        bootstrap_servers=bs,
        acks=acks if acks == "all" else int(acks),
        enable_idempotence=idem,
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
        request_timeout_ms=TIMEOUT_MS,
        max_block_ms=TIMEOUT_MS,
    )
    try:
        futures = [(m, p.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.ts)) for m in msgs]
        p.flush(timeout=60)
        for m, f in futures:
            if not f.is_done:
                m.error = "not done after flush(60)"
            elif f.failed():
                m.error = repr(f.exception)
            else:
                m.partition, m.offset = f.value.partition, f.value.offset
    finally:
        p.close(timeout=10)


def consumer(bs):
    return KafkaConsumer(
        bootstrap_servers=bs,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=TIMEOUT_MS + 5000,
        client_id="compat-kafka-python",
    )


def consume_partition(bs, topic, p, start, count, timeout=90):
    c = consumer(bs)
    tp = TopicPartition(topic, p)
    out = []
    try:
        c.assign([tp])
        c.seek(tp, start)
        for _ in compat.deadline_loop(timeout, step=0):
            if len(out) >= count:
                break
            for recs in c.poll(timeout_ms=500, max_records=2000).values():
                for r in recs:
                    out.append(Rec(r.partition, r.offset, r.key, r.value, r.headers, r.timestamp))
    finally:
        c.close()
    return out


def verify_list_offsets(bs, topic, msgs, per_partition, base_ts, n):
    c = consumer(bs)
    try:
        tps = [TopicPartition(topic, p) for p in range(NUM_PARTITIONS)]
        earliest = c.beginning_offsets(tps)
        latest = c.end_offsets(tps)
        target = base_ts + n // 2
        by_ts = c.offsets_for_times({tp: target for tp in tps})
        past = c.offsets_for_times({tp: base_ts + n + 60_000 for tp in tps})
    finally:
        c.close()
    for tp in tps:
        p = tp.partition
        if earliest[tp] != 0:
            fail(f"partition {p}: earliest (-2) = {earliest[tp]}, want 0")
        if latest[tp] != per_partition[p]:
            fail(f"partition {p}: latest (-1) = {latest[tp]}, want {per_partition[p]}")
        want, want_ts = compat.expected_for_timestamp(msgs, p, target)
        got = by_ts[tp]
        if (got.offset if got else -1) != want:
            fail(f"partition {p}: offset for timestamp {target} = {got}, want {want}")
        if got and got.timestamp != want_ts:
            fail(f"partition {p}: timestamp for ts query = {got.timestamp}, want {want_ts}")
        if past[tp] is not None:
            fail(f"partition {p}: timestamp after every record gave {past[tp]}, want none")


def run_codec(s, a, bs, codec, acks, idem, n):
    topic = f"compat-kafka-python-{codec}"
    print(f"# topic {topic}: compression_type={codec} acks={acks} enable_idempotence={idem}", flush=True)
    ops = SimpleNamespace(
        create_topic=lambda t: create_topic(a, t),
        list_topics_check=lambda t: list_topics_check(a, t),
        describe_topic=lambda t: describe_topic(a, t),
        describe_configs=lambda t: describe_configs(a, t),
        produce=lambda t, msgs, c, ak, i: produce(bs, t, msgs, c, ak, i),
        consume_partition=lambda t, p, start, count: consume_partition(bs, t, p, start, count),
        verify_list_offsets=lambda *args: verify_list_offsets(bs, *args),
        delete_topic=lambda t: delete_topic(a, t),
    )
    compat.run_codec_checks(s, ops, topic, codec, acks, idem, n)


def main():
    bs = compat.bootstrap()
    n = compat.num_messages()
    print(f"# kafka-python {kafka.__version__} against {bs}", flush=True)
    s = compat.Suite("kafka-python")
    ok, a = s.check("cluster", admin, bs)
    if not ok:
        print("# broker unusable, stopping", flush=True)
        s.finish()
    try:
        for codec, acks, idem in compat.CODEC_RUNS:
            run_codec(s, a, bs, codec, acks, idem, n)
    finally:
        a.close()
    s.finish()


if __name__ == "__main__":
    main()
