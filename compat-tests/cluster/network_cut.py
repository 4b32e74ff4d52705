"""network-cut: a partition leader cut off from the other brokers (its own three-node cluster,
each node in a network namespace; lib/cluster.py Netns).

The node that leads both the controller quorum and an RF=3, min.insync.replicas=2 partition
is cut from the two others (blackhole routes both ways; clients still reach every node) while
an idempotent acks=all producer (confluent-kafka) writes to the partition. What Kafka promises
and this checks:
- the majority elects another leader (a higher leader epoch) and takes acks=all writes from a
  producer that knows only the majority; the cut node acknowledges nothing it appends alone (its
  ISR cannot shrink without the quorum, its high watermark cannot move without a follower);
- after the cut heals the old leader follows, truncates what it appended alone, and rejoins the ISR;
- every acknowledged record is read back exactly once at its acknowledged offset, in order;
- then the new leader is killed (-9) so that the old one leads again: the same records,
  nothing that only it had (its divergent tail is gone).
"""

import os
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import compat
from cluster import Cluster, Netns, metadata, quorum_leader
from compat import fail

TOPIC = "netcut"
CUT_AFTER_S = 3.0
CUT_FOR_S = 15.0
PRODUCE_FOR_S = 26.0


def partition_view(cl, node):
    """(leader, isr, leader epoch) of the topic's partition 0 as `node` sees it, or None."""
    try:
        _, _, _, topics = metadata(node.port, [TOPIC], host=node.host, timeout=2, epochs=True)
        error, leader, _replicas, isr, _offline, epoch = topics[TOPIC][0]
        return (leader, tuple(sorted(isr)), epoch) if error in (0, 5) else None
    except (OSError, KeyError, IndexError):
        return None


def controller_of(cl):
    for n in cl.live():
        try:
            controller = quorum_leader(n.port, host=n.host, timeout=5)
            if controller is not None:
                return controller
        except OSError:
            continue
    fail("no node answered Metadata")


def wait_for(what, check, timeout, step=0.2):
    for _ in compat.deadline_loop(timeout, step=step):
        got = check()
        if got:
            return got
    fail(f"{what}: not within {timeout} s")


def read_back(bs, want, timeout=40):
    """{offset: value} of partition 0 from the start, until `want` records or `timeout`."""
    c = Consumer({"bootstrap.servers": bs, "group.id": f"netcut-read-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    got, dup = {}, 0
    try:
        for _ in compat.deadline_loop(timeout, step=0):
            if len(got) >= want:
                break
            for m in c.consume(500, timeout=0.5):
                if m.error():
                    continue
                dup += m.offset() in got
                got[m.offset()] = m.value()
    finally:
        c.close()
    return got


def check_read(bs, acked, what):
    got = read_back(bs, len(acked))
    missing = [o for o, v in acked.items() if got.get(o) != v]
    values = list(got.values())
    duplicated = len(values) - len(set(values))
    if missing:
        o = missing[0]
        fail(f"{what}: {len(missing)} acknowledged records lost or moved, e.g. offset {o}: "
             f"acked {acked[o]!r}, read {got.get(o)!r}")
    if duplicated:
        fail(f"{what}: {duplicated} records written twice")
    return got


def majority_writes(cl, others, acked, n=300):
    """During the cut: a producer that knows only the majority's nodes writes `n` records with
    acks=all; all of them must be acknowledged there. Returns the time of its first ack."""
    p = Producer({"bootstrap.servers": ",".join(cl.node(i).bootstrap for i in others), "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 15000})
    times, errors = [], []

    def on_delivery(err, m):
        if err is not None:
            errors.append(err)
            return
        acked[m.offset()] = m.value()
        times.append(time.monotonic())

    for j in range(n):
        p.produce(TOPIC, value=f"m-{j}".encode(), partition=0, on_delivery=on_delivery)
    left = p.flush(20)
    if left or errors:
        fail(f"the majority did not take acks=all writes during the cut: {left} undelivered, "
             f"errors {[str(e) for e in errors[:3]]}")
    return times[0]


def scenario(cl, net):
    quorum_leader = controller_of(cl)
    others = [n.id for n in cl.nodes if n.id != quorum_leader]
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    # The quorum's leader leads the partition too: the hardest node to lose.
    new = NewTopic(TOPIC, 1, replica_assignment=[[quorum_leader, *others]], config={"min.insync.replicas": "2"})
    admin.create_topics([new])[TOPIC].result(timeout=30)
    wait_for("the partition led by the quorum leader on every node",
             lambda: all((partition_view(cl, n) or (None,))[0] == quorum_leader for n in cl.nodes), 20)
    first_epoch = partition_view(cl, cl.node(quorum_leader))[2]

    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "request.timeout.ms": 5000, "message.timeout.ms": 90000,
                  **({"debug": os.environ["NETCUT_DEBUG"]} if os.environ.get("NETCUT_DEBUG") else {})})
    acked, errors, ack_times = {}, [], []

    def on_delivery(err, m):
        if err is not None:
            errors.append(err)
            return
        acked[m.offset()] = m.value()
        ack_times.append(time.monotonic())

    t0 = time.monotonic()
    cut_at = healed_at = elected_at = majority_acks = None
    next_look = 0.0
    i = 0
    while time.monotonic() - t0 < PRODUCE_FOR_S:
        now = time.monotonic() - t0
        if cut_at is None and now >= CUT_AFTER_S:
            net.cut([quorum_leader], others)
            cut_at = time.monotonic()
        if cut_at is not None and healed_at is None:
            if elected_at is None and now >= next_look:
                next_look = now + 0.2
                view = partition_view(cl, cl.node(others[0]))
                if view and view[0] in others and view[2] > first_epoch:
                    elected_at = time.monotonic()
                    majority_acks = majority_writes(cl, others, acked)
            if now >= CUT_AFTER_S + CUT_FOR_S:
                net.heal()
                healed_at = time.monotonic()
        try:
            p.produce(TOPIC, value=f"n-{i}".encode(), partition=0, on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0.002)
    left = p.flush(90)
    if left or errors:
        fail(f"{left} undelivered, errors {[str(e) for e in errors[:3]]}")
    if elected_at is None:
        fail(f"no new leader seen by node {others[0]} during the {CUT_FOR_S:.0f} s cut")
    # librdkafka asks the broker it is connected to for metadata: the cut node, whose view
    # is stale, so the first producer's acks resume only after the heal (as against Kafka).
    after_cut = [t for t in ack_times if t > elected_at]
    resumed = (after_cut[0] - cut_at) if after_cut and after_cut[0] < healed_at else None

    def agreed_full_isr():
        views = [partition_view(cl, n) for n in cl.nodes]
        full = all(v and len(v[1]) == 3 for v in views) and len(set(views)) == 1
        return views[0] if full else None

    view = wait_for("the old leader back in a full ISR, on every node", agreed_full_isr, 40)
    leader, _, epoch = view
    if leader == quorum_leader:
        fail(f"node {quorum_leader} still leads after the cut (epoch {epoch})")
    got = check_read(cl.bootstrap(), acked, "after the cut")
    resumed_text = f"{resumed:.2f} s after the cut" if resumed is not None else "after the heal"
    print(f"# network-cut: node {quorum_leader} (quorum and partition leader) cut off for {CUT_FOR_S:.0f} s: "
          f"node {leader} led at epoch {epoch} {elected_at - cut_at:.2f} s after the cut; a producer "
          f"bootstrapped from the majority had its first ack {majority_acks - cut_at:.2f} s after the cut; "
          f"the first producer's acks resumed {resumed_text}; {i} + 300 sent, {len(acked)} acknowledged, "
          f"read back {len(got)}", flush=True)

    # The old leader leads again: nothing it appended alone may show.
    cl.node(leader).kill9()
    def old_leader_leads():
        v = partition_view(cl, cl.node(quorum_leader))
        return v if v and v[0] == quorum_leader else None

    wait_for(f"node {quorum_leader} leading again after kill -9 of node {leader}", old_leader_leads, 30)
    check_read(cl.bootstrap(), acked, f"with node {quorum_leader} leading again")
    cl.node(leader).start()


def network_cut(state):
    ok, why = Netns.available()
    if not ok:
        if os.environ.get("SLUICE_NO_NETNS") == "1":
            print(f"# network-cut: skipped (SLUICE_NO_NETNS=1; network namespaces unavailable: {why})", flush=True)
            return
        fail(f"network namespaces unavailable ({why}): this check needs root and iproute2; "
             "SLUICE_NO_NETNS=1 skips it")
    work = os.path.join(os.environ["SLUICE_DATA_DIR"], "netcut")
    os.makedirs(work, exist_ok=True)
    net = Netns(3)
    cl = Cluster(3, overrides=["replica.lag.time.max.ms=3000", "broker.session.timeout.ms=6000"],
                 net=net, work=work)
    net.setup()
    try:
        cl.start()
        scenario(cl, net)
    except BaseException:
        cl.print_logs(25)
        raise
    finally:
        cl.stop()
        net.teardown()
