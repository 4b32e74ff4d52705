#!/usr/bin/env python3
"""Consumer-group timing benchmark: how long a group takes to form and to rebalance.

Usage (bench/groups.sh runs it with the cached venv and a fresh broker):
    groups.py BOOTSTRAP [ROUNDS]

Figures, each the median and the worst of ROUNDS rounds (a fresh group and topic each round),
with confluent-kafka (librdkafka) consumers at client defaults and the broker at Kafka's
defaults (group.initial.rebalance.delay.ms = 3000):
  G0  one consumer: subscribe() to its partitions assigned.
  G1  three consumers started together: the last one's subscribe() to all three assigned
      (the group Stable).
  G2  one of three leaves (close(): LeaveGroup): close() returning to the other two assigned
      again (the group Stable again).
Each is printed beside what Kafka's own coordinator takes by its rules, so "target" means
"at most Kafka's own":
  G0: the initial delay + one round trip.
  G1: the initial delay, extended once by the same delay because members joined during it
      (Kafka's InitialDelayedJoin), + one round trip.
  G2: the others learn of the rebalance from their next heartbeat (heartbeat.interval.ms,
      3000 ms in librdkafka), then rejoin: at most one heartbeat interval + one round trip.
"""

import statistics
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

INITIAL_DELAY_MS = 3000
HEARTBEAT_MS = 3000
PARTITIONS = 6


class Member:
    """A consumer polling in its own thread; records when it got (re)assigned."""

    def __init__(self, bootstrap, group, topic):
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
        )
        self.assigned_at = None
        self.assignment = []
        self.stop = threading.Event()
        self.topic = topic
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_assign(self, _consumer, partitions):
        self.assignment = [p.partition for p in partitions]
        self.assigned_at = time.monotonic()

    def _on_revoke(self, _consumer, _partitions):
        self.assignment = []

    def start(self):
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        started = time.monotonic()
        self.thread.start()
        return started

    def _run(self):
        while not self.stop.is_set():
            self.consumer.poll(0.05)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.consumer.close()


def wait_for(cond, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise TimeoutError("condition not met in time")


def one_round(bootstrap, admin):
    topic = f"bench-groups-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()

    # G0: a lone consumer.
    lone = Member(bootstrap, f"g0-{topic}", topic)
    t0 = lone.start()
    wait_for(lambda: lone.assigned_at is not None)
    g0 = lone.assigned_at - t0
    lone.close()

    # G1: three together.
    members = [Member(bootstrap, f"g1-{topic}", topic) for _ in range(3)]
    last_start = max(m.start() for m in members)
    wait_for(lambda: all(m.assigned_at is not None for m in members) and sum(len(m.assignment) for m in members) == PARTITIONS)
    g1 = max(m.assigned_at for m in members) - last_start

    # G2: one leaves.
    for m in members:
        m.assigned_at = None
    leaving, staying = members[0], members[1:]
    leaving.close()
    left_at = time.monotonic()
    wait_for(lambda: all(m.assigned_at is not None for m in staying) and sum(len(m.assignment) for m in staying) == PARTITIONS)
    g2 = max(m.assigned_at for m in staying) - left_at
    for m in staying:
        m.close()
    admin.delete_topics([topic])[topic].result()
    return g0, g1, g2


def main():
    bootstrap = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    admin = AdminClient({"bootstrap.servers": bootstrap})
    results = [one_round(bootstrap, admin) for _ in range(rounds)]
    # Kafka's own: the rules in the module note; the round trip is counted as at most 100 ms.
    rtt_ms = 100
    rows = [
        ("G0", "1 consumer: subscribe -> assigned", INITIAL_DELAY_MS + rtt_ms),
        ("G1", "3 consumers: last start -> group Stable", 2 * INITIAL_DELAY_MS + rtt_ms),
        ("G2", "1 of 3 leaves: close -> others Stable", HEARTBEAT_MS + rtt_ms),
    ]
    print(f"{'figure':6} {'what':44} {'median ms':>10} {'worst ms':>9} {'Kafka rule ms':>14}  verdict")
    ok = True
    for i, (name, what, kafka_ms) in enumerate(rows):
        values = [r[i] * 1000 for r in results]
        median, worst = statistics.median(values), max(values)
        met = worst <= kafka_ms
        ok &= met
        print(f"{name:6} {what:44} {median:10.0f} {worst:9.0f} {'<= ' + str(kafka_ms):>14}  {'met' if met else 'NOT met'}")
    print(f"({rounds} rounds; broker group.initial.rebalance.delay.ms={INITIAL_DELAY_MS}, "
          f"librdkafka heartbeat.interval.ms={HEARTBEAT_MS})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
