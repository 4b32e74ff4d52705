"""The cluster suite's transaction check: a transaction's markers reach partitions led by other
brokers (WriteTxnMarkers to their leaders) and its offsets reach the group's coordinator
wherever it is. Takes the running Cluster and the state dict; see suite.py for the list."""

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-txn"
N_PARTITIONS = 3
GROUP = "compat-cluster-txn-group"


def read_committed(bs, want, timeout=30):
    """Values a read_committed consumer sees from offset 0 of every partition, until `want`
    of them or `timeout`; then a second more for anything that should not be there."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "compat-cluster-txn-reader", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(N_PARTITIONS)])
    got = []
    import time
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
