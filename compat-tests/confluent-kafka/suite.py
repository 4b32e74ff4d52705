"""confluent-kafka (Python binding of librdkafka, wheel-bundled) against Sluice.

Per codec: AdminClient.create_topics (3 partitions), list_topics / describe_topics /
describe_configs, Producer (murmur2_random partitioner, explicit timestamps, headers) recording
every delivery report, Consumer assign() per partition from offset 0, AdminClient.list_offsets
(earliest, latest, by timestamp), delete_topics. Plus a produce with acks=0.
"""

import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import confluent_kafka  # noqa: E402
from confluent_kafka import Consumer, KafkaError, Producer, TopicCollection, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec  # noqa: E402


import compat  # noqa: E402
from compat import NUM_PARTITIONS, Rec, fail  # noqa: E402

OP_TIMEOUT = 30


def admin(bs):
    return AdminClient({"bootstrap.servers": bs, "socket.timeout.ms": 15000, "client.id": "compat-confluent-admin"})


def wait_futures(futs, what):
    for key, f in futs.items():
        try:
            f.result(timeout=OP_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            fail(f"{what} {key}: {e}")


def create_topic(a, topic, partitions=NUM_PARTITIONS):
    wait_futures(a.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=OP_TIMEOUT), "create_topics")


def list_topics_check(a, topic):
    md = a.list_topics(timeout=OP_TIMEOUT)
    if topic not in md.topics:
        fail(f"list_topics lacks {topic}: {sorted(md.topics)}")
    t = md.topics[topic]
    if t.error is not None:
        fail(f"metadata error for {topic}: {t.error}")
    if sorted(t.partitions) != list(range(NUM_PARTITIONS)):
        fail(f"partitions {sorted(t.partitions)}, want 0..{NUM_PARTITIONS - 1}")
    for p in t.partitions.values():
        if p.leader != 1 or p.replicas != [1] or p.isrs != [1]:
            fail(f"partition {p.id}: leader {p.leader} replicas {p.replicas} isr {p.isrs}")
    if md.controller_id != 1:
        fail(f"controller_id {md.controller_id}, want 1")


def describe_topic(a, topic):
    futs = a.describe_topics(TopicCollection([topic]), request_timeout=OP_TIMEOUT)
    d = futs[topic].result(timeout=OP_TIMEOUT)
    if len(d.partitions) != NUM_PARTITIONS:
        fail(f"describe_topics: {len(d.partitions)} partitions")
    if d.topic_id is None or str(d.topic_id) in ("", "AAAAAAAAAAAAAAAAAAAAAA"):
        fail(f"describe_topics: topic id {d.topic_id!r} is zero")


def describe_configs(a, topic):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = a.describe_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)
    if not entries:
        fail("describe_configs returned no entries")


def delete_topic(a, topic):
    wait_futures(a.delete_topics([topic], operation_timeout=OP_TIMEOUT), "delete_topics")
    for _ in compat.deadline_loop(15):
        if topic not in a.list_topics(timeout=OP_TIMEOUT).topics:
            return
    fail(f"{topic} still listed 15 s after deletion")


def produce(bs, topic, msgs, codec, acks, idem, extra=None):
    conf = {
        "bootstrap.servers": bs,
        "client.id": "compat-confluent-producer",
        "acks": acks,
        "enable.idempotence": idem,
        "compression.type": codec,
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        "message.timeout.ms": 30000,
    }
    conf.update(extra or {})
    errors = []
    p = Producer(conf, error_cb=lambda e: errors.append(str(e)))

    def on_delivery(m):
        def cb(err, rec):
            if err is not None:
                m.error = str(err)
            else:
                m.partition, m.offset = rec.partition(), rec.offset()
        return cb

    for m in msgs:
        while True:
            try:
                p.produce(topic, key=m.key, value=m.value, headers=m.headers, timestamp=m.ts,
                          on_delivery=on_delivery(m))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    if left:
        fail(f"{left} messages still queued after flush(60); client errors: {errors[:5]}")
    fatal = [e for e in errors if "fatal" in e.lower()]
    if fatal:
        fail(f"producer fatal error: {fatal[0]}")


def consume_partition(bs, topic, p, start, count, timeout=90):
    c = Consumer({
        "bootstrap.servers": bs,
        "client.id": "compat-confluent-consumer",
        "group.id": "compat-assign-only",  # required by the binding; never joined (assign only)
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    })
    out = []
    try:
        c.assign([TopicPartition(topic, p, start)])
        for _ in compat.deadline_loop(timeout, step=0):
            if len(out) >= count:
                break
            for msg in c.consume(num_messages=1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    fail(f"partition {p}: consumer error {err}")
                out.append(Rec(msg.partition(), msg.offset(), msg.key(), msg.value(),
                               msg.headers(), msg.timestamp()[1]))
    finally:
        c.close()
    return out


def list_offsets(a, topic, spec):
    req = {TopicPartition(topic, p): spec for p in range(NUM_PARTITIONS)}
    futs = a.list_offsets(req, request_timeout=OP_TIMEOUT)
    return {tp.partition: f.result(timeout=OP_TIMEOUT) for tp, f in futs.items()}


def verify_list_offsets(a, topic, msgs, per_partition, base_ts, n):
    earliest = list_offsets(a, topic, OffsetSpec.earliest())
    latest = list_offsets(a, topic, OffsetSpec.latest())
    target = base_ts + n // 2
    by_ts = list_offsets(a, topic, OffsetSpec.for_timestamp(target))
    past = list_offsets(a, topic, OffsetSpec.for_timestamp(base_ts + n + 60_000))
    for p in range(NUM_PARTITIONS):
        if earliest[p].offset != 0:
            fail(f"partition {p}: earliest (-2) = {earliest[p].offset}, want 0")
        if latest[p].offset != per_partition[p]:
            fail(f"partition {p}: latest (-1) = {latest[p].offset}, want {per_partition[p]}")
        want, want_ts = compat.expected_for_timestamp(msgs, p, target)
        if by_ts[p].offset != want:
            fail(f"partition {p}: offset for timestamp {target} = {by_ts[p].offset}, want {want}")
        if want >= 0 and by_ts[p].timestamp != want_ts:
            fail(f"partition {p}: timestamp for ts query = {by_ts[p].timestamp}, want {want_ts}")
        if past[p].offset != -1:
            fail(f"partition {p}: timestamp after every record gave {past[p].offset}, want -1")


def run_codec(s, a, bs, codec, acks, idem, n):
    topic = f"compat-confluent-{codec}"
    print(f"# topic {topic}: compression.type={codec} acks={acks} enable.idempotence={idem}", flush=True)
    ops = SimpleNamespace(
        create_topic=lambda t: create_topic(a, t),
        list_topics_check=lambda t: list_topics_check(a, t),
        describe_topic=lambda t: describe_topic(a, t),
        describe_configs=lambda t: describe_configs(a, t),
        produce=lambda t, msgs, c, ak, i: produce(bs, t, msgs, c, ak, i),
        consume_partition=lambda t, p, start, count: consume_partition(bs, t, p, start, count),
        verify_list_offsets=lambda *args: verify_list_offsets(a, *args),
        delete_topic=lambda t: delete_topic(a, t),
    )

    def extra(topic, msgs, per_partition):
        def middle():
            start = per_partition[0] // 2
            recs = consume_partition(bs, topic, 0, start, 10)
            if not recs or recs[0].offset != start:
                fail(f"assign at offset {start}: first record {recs[0].offset if recs else None}")

        s.check(f"{codec}.consume-from-middle", middle)

    compat.run_codec_checks(s, ops, topic, codec, acks, idem, n, extra)


def run_acks0(s, a, bs):
    topic = "compat-confluent-acks0"
    n = 1000
    ok, _ = s.check("acks0.create-topic", create_topic, a, topic)
    if not ok:
        return
    msgs = compat.make_messages("none", n)

    def produce_check():
        produce(bs, topic, msgs, "none", "0", False)
        bad = [m for m in msgs if m.error is not None]
        if bad:
            fail(f"{len(bad)} messages failed, first: {bad[0].error}")

    s.check("acks0.produce", produce_check)

    def consume_check():
        latest = list_offsets(a, topic, OffsetSpec.latest())
        total = 0
        for p in range(NUM_PARTITIONS):
            recs = consume_partition(bs, topic, p, 0, latest[p].offset)
            if len(recs) != latest[p].offset:
                fail(f"partition {p}: read {len(recs)} of {latest[p].offset}")
            total += compat.verify_unacked_partition(msgs, p, recs)
        if total != n:
            fail(f"read {total} messages back, produced {n} with acks=0")

    s.check("acks0.consume", consume_check)
    s.check("acks0.delete-topic", delete_topic, a, topic)


def main():
    bs = compat.bootstrap()
    n = compat.num_messages()
    print(f"# confluent-kafka {confluent_kafka.version()[0]}, librdkafka {confluent_kafka.libversion()[0]}, "
          f"against {bs}", flush=True)
    s = compat.Suite("confluent-kafka")
    a = admin(bs)
    ok, _ = s.check("cluster", lambda: a.list_topics(timeout=OP_TIMEOUT))
    if not ok:
        print("# broker unusable, stopping", flush=True)
        s.finish()
    for codec, acks, idem in compat.CODEC_RUNS:
        run_codec(s, a, bs, codec, acks, idem, n)
    run_acks0(s, a, bs)
    s.finish()


if __name__ == "__main__":
    main()
