"""The cluster suite's rolling-restart check (issue 12): controlled shutdown under load.

An idempotent acks=all confluent-kafka producer writes to an RF=3, min.insync.replicas=2 topic
of six partitions, paced, while every broker in turn is stopped with SIGTERM and started again
once the one before is back in every ISR. Each stop is a controlled shutdown: the node moves its
leaderships to other brokers first (its log says so), exits 0, and no produce request fails
after its retries: every record is acknowledged, none with an error, and every acknowledged
record is read back once at its offset. The longest pause between acknowledgements per
partition is printed.
"""

import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from compat import fail
from replicated import partitions, read_all, wait_for

TOPIC = "cluster-rolling"
N_PARTITIONS = 6
RATE = 2000  # records per second, paced
LIMIT_S = 90  # the producer stops after this long whatever happens


class Load(threading.Thread):
    """An idempotent acks=all producer, paced at RATE records a second over the partitions of
    `topic` in turn, until `stop` is set (or LIMIT_S)."""

    def __init__(self, bs, topic=TOPIC, n_partitions=N_PARTITIONS):
        super().__init__(daemon=True)
        self.topic, self.n_partitions = topic, n_partitions
        self.p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
        self.stop = threading.Event()
        self.acked, self.errors, self.last_ack, self.gaps = {}, [], {}, {}
        self.sent = 0

    def on_delivery(self, err, m):
        if err is not None:
            self.errors.append(err)
            return
        now = time.monotonic()
        part = m.partition()
        if part in self.last_ack:
            self.gaps[part] = max(self.gaps.get(part, 0.0), now - self.last_ack[part])
        self.last_ack[part] = now
        self.acked[(part, m.offset())] = m.value()

    def finish(self, cl):
        """Stops the load and checks it: no request failed after its retries, every record
        sent acknowledged and read back once at its offset."""
        self.stop.set()
        self.join(90)
        if self.errors:
            fail(f"{len(self.errors)} produce requests failed after their retries, e.g. {self.errors[:3]}")
        if len(self.acked) != self.sent:
            fail(f"{self.sent} sent, {len(self.acked)} acknowledged")
        got = read_all(cl.bootstrap(), self.topic, self.n_partitions, len(self.acked), timeout=60)
        missing = [k for k, v in self.acked.items() if got.get(k) != v]
        if missing:
            fail(f"{len(missing)} acknowledged records not read back at their offsets, e.g. {missing[:5]}")
        if len(set(got.values())) != len(got):
            fail("records read back more than once")

    def run(self):
        t0 = time.monotonic()
        while not self.stop.is_set() and time.monotonic() - t0 < LIMIT_S:
            for _ in range(RATE // 100):
                self.p.produce(self.topic, value=f"r-{self.sent}".encode(), partition=self.sent % self.n_partitions,
                               on_delivery=self.on_delivery)
                self.sent += 1
            self.p.poll(0.01)
        self.p.flush(60)


def rolling_restart(cl, state):
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(TOPIC, N_PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(
        timeout=30)
    wait_for("every partition led", lambda: all(v[1] >= 0 for v in partitions(cl, TOPIC).values()), 30)
    load = Load(cl.bootstrap())
    load.start()
    wait_for("the first acknowledgements", lambda: len(load.acked) > 500, 30)
    stops = []
    for node in list(cl.nodes):
        if not node.controller or not node.alive():
            continue
        led = sorted(p for p, v in partitions(cl, TOPIC).items() if v[1] == node.id)
        t0 = time.monotonic()
        status = node.stop()
        took = time.monotonic() - t0
        if status != 0:
            fail(f"node {node.id}: SIGTERM exit status {status}")
        with open(node.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        if "controlled shutdown done" not in log.split(f"node {node.id}: start #{node.starts} =====")[-1]:
            fail(f"node {node.id} stopped without a controlled shutdown (see {node.log_path})")
        stops.append((node.id, led, took))
        node.start()
        wait_for(f"node {node.id} back in every ISR",
                 lambda: all(len(v[3]) == 3 for v in partitions(cl, TOPIC).values()), 30)
    acked_before_stop = len(load.acked)
    load.finish(cl)
    stopped = "; ".join(f"node {n} (led {led}) stopped in {t:.2f} s" for n, led, t in stops)
    gaps = {p: round(g, 2) for p, g in sorted(load.gaps.items())}
    print(f"# rolling-restart: {stopped}; {load.sent} sent, all acknowledged without an error "
          f"({acked_before_stop} of them by the time the last node was back), read back once each; longest pause between acks per "
          f"partition {gaps}", flush=True)
