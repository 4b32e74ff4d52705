"""The cluster suite's compaction check: a compacted RF=3 topic is compacted by every replica
(each follower runs its own cleaner on what it replicated, as Kafka's do), and after kill -9 of
the leader the new leader serves the same compacted log: the latest value of every key at its
acknowledged offset."""

import glob
import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import compat
from cluster import metadata
from compat import fail

TOPIC = "cluster-compacted"
KEYS = [f"k{i}" for i in range(10)]


def records_on_disk(node):
    """Records (batch record counts summed) in the node's replica of partition 0."""
    total = 0
    for path in glob.glob(os.path.join(node.data, f"{TOPIC}-0", "*.log")):
        data = open(path, "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            length = int.from_bytes(data[pos + 8:pos + 12], "big")
            attributes = int.from_bytes(data[pos + 21:pos + 23], "big")
            if not attributes & 0x20:  # control batches are not records
                total += int.from_bytes(data[pos + 57:pos + 61], "big")
            pos += 12 + length
    return total


def read_all(bs):
    c = Consumer({"bootstrap.servers": bs, "group.id": f"compacted-{time.monotonic_ns()}",
                  "enable.auto.commit": False})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
        c.assign([TopicPartition(TOPIC, 0, low)])
        out = []
        for _ in compat.deadline_loop(30, step=0):
            if c.position([TopicPartition(TOPIC, 0)])[0].offset >= high:
                break
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                fail(f"read: {msg.error()}")
            out.append((msg.offset(), msg.key().decode(), msg.value().decode()))
        return out
    finally:
        c.close()


def compacted_replicas(cl, state):
    bs = cl.bootstrap()
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3, config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "min.insync.replicas": "2"})])[TOPIC].result(timeout=30)
    p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
    last = {}

    def cb(err, msg):
        if err is not None:
            fail(f"produce: {err}")
        last[msg.key().decode()] = (msg.offset(), msg.value().decode())

    for rnd in range(20):
        for k in KEYS:
            p.produce(TOPIC, key=k.encode(), value=f"v{rnd}".encode(), partition=0, on_delivery=cb)
            p.flush(30)
    time.sleep(0.3)
    p.produce(TOPIC, key=b"tail", value=b"t", partition=0, on_delivery=cb)
    p.flush(30)
    expected = sorted((off, k, v) for k, (off, v) in last.items())

    def all_compacted():
        counts = {n.id: records_on_disk(n) for n in cl.live()}
        return counts if all(c <= len(expected) + 1 for c in counts.values()) else None

    deadline = time.monotonic() + 60
    counts = None
    while time.monotonic() < deadline and counts is None:
        counts = all_compacted()
        time.sleep(0.5)
    if counts is None:
        fail(f"not every replica compacted within 60 s: records on disk "
             f"{ {n.id: records_on_disk(n) for n in cl.live()} } (of 201 written)")
    got = read_all(bs)
    if got != expected:
        fail(f"leader's compacted log {got[:12]}... != expected {expected[:12]}...")
    leader = metadata(cl.live()[0].port, [TOPIC])[3][TOPIC][0][1]
    victim = cl.node(leader)
    victim.kill9()
    t0 = time.monotonic()
    for _ in compat.deadline_loop(30, step=0.2):
        parts = metadata(cl.live()[0].port, [TOPIC])[3][TOPIC]
        if parts[0][0] == 0 and parts[0][1] not in (-1, leader):
            break
    else:
        fail("no new leader within 30 s")
    took = time.monotonic() - t0
    got = read_all(cl.bootstrap())
    victim.start()
    if got != expected:
        fail(f"the new leader's log {got[:12]}... != the compacted log {expected[:12]}...")
    for _ in compat.deadline_loop(60, step=0.2):
        if len(metadata(cl.live()[0].port, [TOPIC])[3][TOPIC][0][3]) == 3:
            break
    else:
        fail(f"node {leader} did not rejoin the ISR within 60 s")
    print(f"# compacted: records on disk per node after cleaning {counts} (201 written); after kill -9 of "
          f"leader {leader} the new leader (elected in {took:.2f} s) serves the same {len(expected)} records",
          flush=True)
