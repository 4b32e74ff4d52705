"""The cluster suite's transaction checks: a transaction's markers reach partitions led by other
brokers (WriteTxnMarkers to their leaders) and its offsets reach the group's coordinator
wherever it is; transaction state survives kill -9 of its coordinator's broker. Takes the running Cluster and the state dict; see suite.py for the list."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-txn"
N_PARTITIONS = 3
GROUP = "compat-cluster-txn-group"


def read_committed(bs, want, timeout=30, topic=TOPIC):
    """Values a read_committed consumer sees from offset 0 of every partition, until `want`
    of them or `timeout`; then a second more for anything that should not be there."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "compat-cluster-txn-reader", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(N_PARTITIONS)])
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m.value())
        elif len(got) >= want:
            deadline = min(deadline, time.monotonic() + 1.0)
    c.close()
    return got


def markers_across_brokers(cl, state):
    """Committed and aborted transactions over partitions led by all three brokers, with the
    consumer group's offsets in the transaction: read_committed sees exactly the committed
    records, and the group's committed offsets are the transaction's."""
    bs = cl.bootstrap()
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, N_PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(
        timeout=30)
    leaders = {p: v[1] for p, v in partitions(cl, TOPIC).items()}
    if len(set(leaders.values())) < 2:
        fail(f"the partitions should be led by several brokers: {leaders}")
    p = Producer({"bootstrap.servers": bs, "transactional.id": "compat-cluster-txn", "linger.ms": 5})
    p.init_transactions(30)
    committed = []
    for txn in range(6):
        p.begin_transaction()
        values = [f"t{txn}-{i}".encode() for i in range(30)]
        for i, v in enumerate(values):
            p.produce(TOPIC, value=v, partition=i % N_PARTITIONS)
        if txn % 2 == 0:
            # The offsets of a consumer group go in the same transaction (its coordinator may be
            # another broker than the transaction's).
            meta = Consumer({"bootstrap.servers": bs, "group.id": GROUP}).consumer_group_metadata()
            p.send_offsets_to_transaction([TopicPartition(TOPIC, 0, 100 + txn)], meta, 30)
            p.commit_transaction(30)
            committed.extend(values)
        else:
            p.flush(30)
            p.abort_transaction(30)
    got = read_committed(bs, len(committed))
    if sorted(got) != sorted(committed):
        extra = set(got) - set(committed)
        missing = set(committed) - set(got)
        fail(f"read_committed saw {len(got)} records, want {len(committed)}: {len(missing)} missing "
             f"(e.g. {sorted(missing)[:3]}), {len(extra)} that should not be there (e.g. {sorted(extra)[:3]})")
    c = Consumer({"bootstrap.servers": bs, "group.id": GROUP})
    offsets = c.committed([TopicPartition(TOPIC, 0)], timeout=20)
    c.close()
    if offsets[0].offset != 104:
        fail(f"the group's committed offset is {offsets[0].offset}, the last committed transaction gave 104")
    # Every partition's last stable offset caught up: a read_committed consumer reaches the end.
    wait_for("the last stable offsets at the ends", lambda: len(read_committed(bs, len(committed), 5))
             == len(committed), 20)
    print(f"# txn-markers: partitions led by {leaders}; 3 committed and 3 aborted transactions of 30 records: "
          f"read_committed saw exactly the {len(committed)} committed; the group's offset came with the last "
          f"commit", flush=True)


FAILOVER_TOPIC = "cluster-txn-failover"
FAILOVER_ID = "compat-cluster-txn-failover"


def coordinator_partition(key, partitions=50):
    """Kafka's partition of a coordinator key: abs(String.hashCode()) % partitions."""
    h = 0
    units = key.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (h * 31 + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def txn_coordinator(cl, transactional_id):
    """The leader of the id's __transaction_state partition, as the metadata names it."""
    parts, _ = wait_for("__transaction_state in the metadata", lambda: partitions(cl, "__transaction_state"), 10)
    return parts[coordinator_partition(transactional_id, len(parts))][1]


def coordinator_kills(cl, state):
    """The transaction state survives its coordinator: an open transaction whose coordinator's
    broker is killed (-9) commits through the new one; a commit answered just before the next
    coordinator is killed still reaches every partition (the new coordinator writes the
    markers); read_committed sees exactly the committed records."""
    bs = cl.bootstrap()
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(FAILOVER_TOPIC, N_PARTITIONS, 3, config={"min.insync.replicas": "2"})])[
        FAILOVER_TOPIC].result(timeout=30)
    p = Producer({"bootstrap.servers": bs, "transactional.id": FAILOVER_ID, "linger.ms": 5,
                  "transaction.timeout.ms": 60000})
    p.init_transactions(30)
    committed = []

    def txn(tag, commit=True):
        values = [f"{tag}-{i}".encode() for i in range(30)]
        for i, v in enumerate(values):
            p.produce(FAILOVER_TOPIC, value=v, partition=i % N_PARTITIONS)
        if p.flush(30):
            fail(f"{tag}: records not acknowledged")
        return values

    p.begin_transaction()
    committed.extend(txn("before"))
    p.commit_transaction(30)
    # An open transaction, then its coordinator's broker dies.
    p.begin_transaction()
    values = txn("open")
    first = txn_coordinator(cl, FAILOVER_ID)
    cl.node(first).kill9()
    t0 = time.monotonic()
    p.commit_transaction(60)
    took = time.monotonic() - t0
    committed.extend(values)
    second = txn_coordinator(cl, FAILOVER_ID)
    if second == first:
        fail(f"broker {first} was killed and still coordinates {FAILOVER_ID}")
    cl.node(first).start()
    wait_for("every ISR back to three members",
             lambda: all(len(v[3]) == 3 for v in partitions(cl, FAILOVER_TOPIC).values()), 30)
    # A commit answered, then the new coordinator dies at once (markers possibly in flight).
    p.begin_transaction()
    committed.extend(txn("answered"))
    p.commit_transaction(30)
    cl.node(second).kill9()
    got = read_committed(cl.live()[0].bootstrap, len(committed), timeout=60, topic=FAILOVER_TOPIC)
    if sorted(got) != sorted(committed):
        fail(f"read_committed saw {len(got)} records, want {len(committed)}: "
             f"{len(set(committed) - set(got))} missing, {len(set(got) - set(committed))} unexpected")
    # The producer goes on with the coordinator that is left.
    p.begin_transaction()
    committed.extend(txn("after"))
    p.commit_transaction(60)
    cl.node(second).start()
    wait_for("every ISR back to three members",
             lambda: all(len(v[3]) == 3 for v in partitions(cl, FAILOVER_TOPIC).values()), 30)
    got = read_committed(bs, len(committed), topic=FAILOVER_TOPIC)
    if sorted(got) != sorted(committed):
        fail(f"at the end read_committed saw {len(got)} records, want {len(committed)}")
    print(f"# txn-coordinator-kill: coordinator {first} killed with a transaction open, committed through "
          f"{second} in {took:.2f} s; {second} killed right after a commit was answered, its markers written by "
          f"the next; read_committed saw exactly the {len(committed)} committed records", flush=True)
