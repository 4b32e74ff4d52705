"""The cluster suite's checks on three nodes of their own with racks (broker.rack r1, r1, r2) and
each its metrics listener (issue 12):

- racks: DescribeCluster (kafka-python's describe_cluster) and Metadata (kafka-python's cluster
  view) show each broker's rack, and a new topic's partitions (RF 2, no assignment given) each
  get a replica in both racks, leaders spread over the three brokers (Kafka's rack-aware
  placement).
- fetch-from-follower (KIP-392, replica.selector.class=RackAwareReplicaSelector): a
  confluent-kafka consumer with client.rack=r2 reads a partition led in r1 from its follower in
  r2 (that broker's messages-out counter has every record, the leader's none); with
  client.rack=r1 it reads from the leader.
- cluster-metrics: the replication metrics of every node's /metrics: the leaders of all
  partitions once (sluice_leader_partitions), one active controller; a broker killed (-9): the
  partitions it shared are under-replicated and under min.insync.replicas (3) on their leaders;
  restarted, all back to 0 with the ISR expansions and its new leaderships counted.
- replication-bytes: fetch-from-follower's partition moved onto broker 2 (kafka-python's
  alter_partition_reassignments): the reassignment and replication byte counters of the brokers
  involved count it.
"""

import os
import re
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTP

from cluster import Cluster, free_port, metadata
from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-racks"
RACKS = {1: "r1", 2: "r1", 3: "r2"}
RACK_AWARE = "org.apache.kafka.common.replica.RackAwareReplicaSelector"


def run(suite):
    work = os.path.join(os.environ["SLUICE_DATA_DIR"], "racks")
    os.makedirs(work, exist_ok=True)
    cl = Cluster(3, overrides=["auto.leader.rebalance.enable=false", "replica.lag.time.max.ms=3000",
                               f"replica.selector.class={RACK_AWARE}"], work=work)
    for n in cl.nodes:
        n.metrics_port = free_port()
        n.extra = [f"broker.rack={RACKS[n.id]}", f"metrics.listener=127.0.0.1:{n.metrics_port}"]
    try:
        cl.start()
        suite.check("racks", racks, cl)
        suite.check("cluster-metrics", cluster_metrics, cl)
        suite.check("fetch-from-follower", fetch_from_follower, cl)
        suite.check("replication-bytes", replication_bytes, cl)
    finally:
        if suite.failures:
            cl.print_logs(25)
        cl.stop()


def scrape(node):
    """{(name, labels): value} of a node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def gauge(node, name):
    return scrape(node).get((name, ""), 0.0)


def racks(cl):
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-racks")
    try:
        described = {b["broker_id"]: b["rack"] for b in kp.describe_cluster()["brokers"]}
        # The brokers of the client's last Metadata response.
        in_metadata = {b.node_id: b.rack for b in kp._manager.cluster.brokers()}
    finally:
        kp.close()
    if described != RACKS or in_metadata != RACKS:
        fail(f"racks: DescribeCluster {described}, Metadata {in_metadata}")
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(TOPIC, 6, 2)])[TOPIC].result(timeout=30)
    parts, _ = wait_for("every partition led", lambda: (lambda ps: ps if all(v[1] >= 0 for v in ps.values())
                                                         else None)(partitions(cl, TOPIC)), 30)
    spans = {p: sorted({RACKS[r] for r in v[2]}) for p, v in parts.items()}
    if any(s != ["r1", "r2"] for s in spans.values()):
        fail(f"partitions not spread over both racks: {({p: v[2] for p, v in parts.items()})}")
    leaders = sorted(v[1] for v in parts.values())
    if leaders != [1, 1, 2, 2, 3, 3]:
        fail(f"leaders {leaders}")
    print(f"# racks: DescribeCluster and Metadata show {RACKS}; 6 partitions of RF 2 each on both racks "
          f"({({p: v[2] for p, v in sorted(parts.items())})}), two leaders a broker", flush=True)


METRICS_TOPIC = "cluster-metrics"


def cluster_metrics(cl):
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(METRICS_TOPIC, 6, 3, config={"min.insync.replicas": "3"})])[
        METRICS_TOPIC].result(timeout=30)
    wait_for("every partition with a whole ISR",
             lambda: all(len(v[3]) == 3 for v in partitions(cl, METRICS_TOPIC).values()), 30)
    total = sum(len(parts) for parts in metadata(cl.nodes[0].port)[3].values())

    def settled():
        led = sum(gauge(n, "sluice_leader_partitions") for n in cl.live())
        active = [n.id for n in cl.live() if gauge(n, "sluice_active_controller") == 1]
        under = sum(gauge(n, "sluice_under_replicated_partitions") for n in cl.live())
        return (led, len(active), under) if led == total and len(active) == 1 and under == 0 else None

    (led, _, _), _ = wait_for(f"the {total} partitions led once, one active controller, none under-replicated",
                              settled, 15)
    victim = cl.node(3)
    shared = [p for p, v in partitions(cl, METRICS_TOPIC).items() if victim.id in v[2]]
    survivors = [n for n in cl.nodes if n is not victim]
    elections_before = sum(scrape(n).get(("sluice_leader_elections_total", ""), 0) for n in survivors)
    victim.kill9()

    def degraded():
        under = sum(gauge(n, "sluice_under_replicated_partitions") for n in cl.live())
        under_min = sum(gauge(n, "sluice_under_min_isr_partitions") for n in cl.live())
        offline = sum(gauge(n, "sluice_offline_partitions") for n in cl.live())
        return (under, under_min, offline) if under >= len(shared) and under_min >= len(shared) else None

    (under, under_min, offline), took = wait_for(
        f"the {len(shared)} partitions of broker {victim.id} under-replicated and under min ISR", degraded, 30)
    if offline:
        fail(f"{offline} partitions offline with two of three brokers up")
    victim.start()
    wait_for("every ISR whole again",
             lambda: all(len(v[3]) == 3 for v in partitions(cl, METRICS_TOPIC).values()), 30)

    def recovered():
        live = cl.live()
        under = sum(gauge(n, "sluice_under_replicated_partitions") + gauge(n, "sluice_under_min_isr_partitions")
                    for n in live)
        expands = sum(scrape(n).get(("sluice_isr_expands_total", ""), 0) for n in live)
        shrinks = sum(scrape(n).get(("sluice_isr_shrinks_total", ""), 0) for n in live)
        elections = sum(scrape(n).get(("sluice_leader_elections_total", ""), 0) for n in survivors)
        ok = under == 0 and expands >= len(shared) and elections > elections_before
        return (expands, shrinks, elections) if ok else None

    (expands, shrinks, elections), _ = wait_for("the metrics back to healthy, the ISR expansions counted",
                                                recovered, 30)
    print(f"# cluster-metrics: {led:g} partitions led once over the three nodes, one active controller; broker "
          f"{victim.id} killed: {under:g} under-replicated, {under_min:g} under min ISR after {took:.2f} s, none "
          f"offline; restarted: back to 0, {expands:g} ISR expansions, {shrinks:g} shrinks and "
          f"{elections - elections_before:g} leaderships taken by the survivors counted", flush=True)


NEARBY = "cluster-nearby"
N_NEARBY = 2000


def messages_out(node, topic):
    return scrape(node).get(("sluice_topic_messages_out_total", f'{{topic="{topic}"}}'), 0.0)


def consume_all(cl, rack):
    """Every record of NEARBY's partition 0, by a consumer in `rack`."""
    c = Consumer({"bootstrap.servers": cl.bootstrap(), "group.id": f"compat-nearby-{rack}",
                  "enable.auto.commit": False, "client.rack": rack})
    c.assign([TopicPartition(NEARBY, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < N_NEARBY and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


def fetch_from_follower(cl):
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(NEARBY, 1, replica_assignment=[[1, 3]],
                                  config={"min.insync.replicas": "2"})])[NEARBY].result(timeout=30)
    wait_for("the partition led by 1 with 3 in sync",
             lambda: (lambda v: v[1] == 1 and sorted(v[3]) == [1, 3])(partitions(cl, NEARBY)[0]), 30)
    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "linger.ms": 5})
    for i in range(N_NEARBY):
        p.produce(NEARBY, value=f"n-{i}".encode(), partition=0)
    if p.flush(30) != 0:
        fail("records not acknowledged")
    want = [f"n-{i}".encode() for i in range(N_NEARBY)]
    leader, follower = cl.node(1), cl.node(3)
    got = consume_all(cl, "r2")
    if got != want:
        fail(f"client.rack=r2 read {len(got)} of {N_NEARBY} records (in order: {got == want[:len(got)]})")
    from_follower, from_leader = messages_out(follower, NEARBY), messages_out(leader, NEARBY)
    if from_follower < N_NEARBY or from_leader > 0:
        fail(f"client.rack=r2: broker 3 (r2, follower) sent {from_follower:g} records, broker 1 (leader) "
             f"{from_leader:g}")
    got = consume_all(cl, "r1")
    if got != want:
        fail(f"client.rack=r1 read {len(got)} of {N_NEARBY} records")
    leader_after = messages_out(leader, NEARBY)
    if leader_after < N_NEARBY or messages_out(follower, NEARBY) != from_follower:
        fail(f"client.rack=r1: broker 1 (leader, r1) sent {leader_after:g} records, broker 3 "
             f"{messages_out(follower, NEARBY) - from_follower:g} more")
    print(f"# fetch-from-follower: {N_NEARBY} records of a partition led by broker 1 (r1): a consumer with "
          f"client.rack=r2 read them all from broker 3 (its follower in r2: {from_follower:g} sent, the leader "
          f"{from_leader:g}); with client.rack=r1, from the leader", flush=True)


def counter(node, name):
    return scrape(node).get((name, ""), 0.0)


def replication_bytes(cl):
    """After fetch-from-follower: NEARBY's partition 0 ([1, 3], N_NEARBY records) moved to [1, 2]
    (kafka-python's alter_partition_reassignments): broker 2 appends it as a reassigning follower
    (sluice_reassignment_bytes_in_total) from leader 1 (_out_total); the replication counters
    count what broker 3 followed before."""
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap())
    try:
        before_in, before_out = counter(cl.node(2), "sluice_reassignment_bytes_in_total"), counter(
            cl.node(1), "sluice_reassignment_bytes_out_total")
        got = kp.alter_partition_reassignments({KTP(NEARBY, 0): [1, 2]})
        errors = {tp.partition: e for tp, e in got.items() if e is not None}
        if errors:
            fail(f"reassignment refused: {errors}")
        wait_for("the move done", lambda: (lambda v: sorted(v[2]) == [1, 2] and sorted(v[3]) == [1, 2])(
            partitions(cl, NEARBY)[0]), 30)
    finally:
        kp.close()
    moved_in = counter(cl.node(2), "sluice_reassignment_bytes_in_total") - before_in
    moved_out = counter(cl.node(1), "sluice_reassignment_bytes_out_total") - before_out
    followed = counter(cl.node(3), "sluice_replication_bytes_in_total")
    sent = counter(cl.node(1), "sluice_replication_bytes_out_total")
    if moved_in <= 0 or moved_out < moved_in or followed <= 0 or sent < moved_out:
        fail(f"reassignment bytes in (broker 2) {moved_in:g}, out (broker 1) {moved_out:g}; replication bytes "
             f"in (broker 3) {followed:g}, out (broker 1) {sent:g}")
    print(f"# replication-bytes: a partition of {N_NEARBY} records moved onto broker 2: {moved_in:g} reassignment "
          f"bytes in there, {moved_out:g} out of its leader; replication bytes in on its old follower {followed:g}, "
          f"out of the leader {sent:g}", flush=True)
