"""The cluster suite's consumer-group checks: a group's coordinator is the leader of its
`__consumer_offsets` partition, and the group and its committed offsets survive kill -9 of
that broker. Takes the running Cluster and the state dict; see suite.py for the list."""

import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat import fail
from replicated import partitions, wait_for

GROUP = "compat-cluster-group"
TOPIC = "cluster-groups"
N_PARTITIONS = 6
RECORDS = 6000


def coordinator_of(bs, group):
    """(coordinator node id, state name) as DescribeGroups through a new admin client sees it
    (a new one each time: librdkafka's admin client keeps a coordinator it found, even a dead
    one, in its cache); None while it answers a retriable error (the coordinator moving or
    loading)."""
    admin = AdminClient({"bootstrap.servers": bs})
    try:
        # A short request timeout: a request sent to the dead coordinator (still named by a
        # FindCoordinator answered just before its partitions moved) costs 1 s, not 60.
        d = admin.describe_consumer_groups([group], request_timeout=1)[group].result(timeout=10)
    except KafkaException as e:
        # _TIMED_OUT: the request went to the dead coordinator.
        if e.args[0].retriable() or e.args[0].name() in ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
                                                         "_TIMED_OUT"):
            return None
        raise
    return d.coordinator.id, d.state.name


class Member(threading.Thread):
    """A consumer of the group committing synchronously after every poll batch."""

    def __init__(self, bs, name, stop):
        super().__init__(daemon=True)
        self.c = Consumer({"bootstrap.servers": bs, "group.id": GROUP, "client.id": name,
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
        self.stop, self.seen, self.commits, self.commit_errors = stop, set(), [], []
        self.error = None

    def run(self):
        try:
            self.c.subscribe([TOPIC])
            while not self.stop.is_set():
                msgs = self.c.consume(20, 0.2)
                got = [m for m in msgs if m.error() is None]
                for m in got:
                    self.seen.add(m.value())
                if got:
                    try:
                        self.c.commit(asynchronous=False)
                        self.commits.append(time.monotonic())
                    except KafkaException as e:
                        # Retriable while the coordinator moves; the next batch commits again.
                        self.commit_errors.append((time.monotonic(), str(e)))
                    time.sleep(0.05)  # paced, so that the kill falls in the middle
            self.c.close()
        except Exception as e:  # noqa: BLE001 - reported by the check
            self.error = e


def group_failover(cl, state):
    """Two members consume and commit; the coordinator's broker is killed; they go on."""
    bs = cl.bootstrap()
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, N_PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(
        timeout=30)
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 5})
    for i in range(RECORDS):
        p.produce(TOPIC, value=f"g-{i}".encode(), partition=i % N_PARTITIONS)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(30):
        fail("records not acknowledged")
    stop = threading.Event()
    members = [Member(bs, f"member-{i}", stop) for i in range(2)]
    for m in members:
        m.start()
    (coordinator, _), _ = wait_for("the group Stable", lambda: (lambda c: c if c and c[1] == "STABLE" else None)(
        coordinator_of(bs, GROUP)), 30)
    offsets_leaders = {v[1] for v in partitions(cl, "__consumer_offsets").values()}
    wait_for("some records consumed and committed", lambda: sum(len(m.commits) for m in members) >= 2, 30)
    node = cl.node(coordinator)
    node.kill9()
    killed = time.monotonic()
    # A coordinator elsewhere, and the members committing through it.
    survivor = cl.live()[0].bootstrap
    (moved, _), took = wait_for("a new coordinator", lambda: (lambda c: c if c and c[0] != coordinator else None)(
        coordinator_of(survivor, GROUP)), 30, step=0.2)
    wait_for("every record consumed", lambda: len(set().union(*(m.seen for m in members))) >= RECORDS, 60)
    after = [t for m in members for t in m.commits if t > killed]
    if not after:
        fail("no commit succeeded after the coordinator was killed")
    first_commit = min(after) - killed
    stop.set()
    for m in members:
        m.join(30)
        if m.error:
            fail(f"a member failed: {m.error}")
    seen = set().union(*(m.seen for m in members))
    missing = [i for i in range(RECORDS) if f"g-{i}".encode() not in seen]
    if missing:
        fail(f"{len(missing)} records never consumed, e.g. {missing[:5]}")
    # Every partition's committed offset is its end: the commits made before and after the
    # kill are all there on the new coordinator.
    c = Consumer({"bootstrap.servers": cl.live()[0].bootstrap, "group.id": GROUP})
    committed = c.committed([TopicPartition(TOPIC, i) for i in range(N_PARTITIONS)], timeout=20)
    c.close()
    ends = {i: RECORDS // N_PARTITIONS for i in range(N_PARTITIONS)}
    wrong = {tp.partition: tp.offset for tp in committed if tp.offset != ends[tp.partition]}
    if wrong:
        fail(f"committed offsets {wrong}, expected {ends}")
    node.start()
    wait_for("every ISR back to three members",
             lambda: all(len(v[3]) == 3 for v in partitions(cl, TOPIC).values()), 30)
    errors = sum(len(m.commit_errors) for m in members)
    print(f"# group-failover: __consumer_offsets led by {sorted(offsets_leaders)}; coordinator {coordinator} "
          f"killed, {moved} coordinates after {took:.2f} s, first commit after the kill at {first_commit:.2f} s "
          f"({errors} retriable commit errors); {RECORDS} records consumed, committed offsets all at the end",
          flush=True)
