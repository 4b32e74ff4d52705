"""A three-node cluster (combined broker+controller processes on loopback), driven by
confluent-kafka and raw requests:

- formation: three processes started with controller.quorum.voters form one cluster with no
  format step; Metadata from every node lists the three brokers and one cluster id, and names
  itself as the controller (a live broker, as KRaft Kafka does); DescribeQuorum through every
  node names the same quorum leader and the three voters; each data dir's meta.properties
  names that cluster.
- spread: a 6-partition RF=1 topic gets two leaders per broker (Kafka's spread); 3,000
  acknowledged records are read back at their offsets through the leaders; a partition asked of
  a broker that does not lead it answers NOT_LEADER_OR_FOLLOWER.
- broker-kill: kill -9 of a broker: the survivors fence it within seconds (its partitions
  offline, it is gone from the broker list) while produce to the other partitions goes on; it is
  restarted and leads its partitions again (higher leader epoch) with every record it had.
- controller-kill: kill -9 of the node leading the quorum: the lowest other voter, seeing its
  connection close and its listener refuse, calls the election as the leader's lease ends; the
  dead node is fenced at once, a topic created through a survivor; the node restarts and rejoins.
- cluster-id-mismatch: a node whose data dir names another cluster refuses to start with a
  clear message; with its own meta.properties back it starts.
- elect-leaders (elections.py): ElectLeaders through librdkafka's admin client: PREFERRED while
  the preferred replica is down (PREFERRED_LEADER_NOT_AVAILABLE), after it is back (elected;
  ELECTION_NOT_NEEDED for a partition already balanced), UNCLEAN of a led partition (not
  needed), and over every partition.
- rolling-restart (rolling.py): every node in turn stopped with SIGTERM (a controlled
  shutdown: its leaderships move first) and restarted under an idempotent acks=all producer:
  no produce request fails, every acknowledged record read back once.
- auto-rebalance (elections.py; its own three nodes, leader.imbalance.check.interval.seconds=1):
  a preferred leader killed and restarted gets its partition back without being asked.
Replication (replicated.py; replica.lag.time.max.ms=3000 on every node):
- failover: an RF=3 min.insync.replicas=2 topic, an idempotent acks=all producer while the
  leader of one partition is killed (-9) and restarted, then another's: every acknowledged
  record read back once at its offset, every ISR whole again; the time to the next ack printed.
- group-failover (group_failover.py): two members of a group consume an RF=3 topic and commit after
  each batch; the broker coordinating the group (the leader of its `__consumer_offsets`
  partition) is killed (-9): another broker coordinates it within seconds, the members go on,
  every record is consumed and every committed offset ends at the partition's end.
- txn-markers (txn_markers.py): a transactional producer commits and aborts transactions over
  partitions led by all three brokers, with a consumer group's offsets in them: read_committed
  sees exactly the committed records (the markers reached every leader, as WriteTxnMarkers to
  the others) and the group's offset is the last committed transaction's.
- txn-coordinator-kill (txn_markers.py): the broker coordinating a transactional id (the leader
  of its `__transaction_state` partition) is killed (-9) with a transaction open: the producer
  commits it through the new coordinator; the next coordinator is killed right after answering
  a commit: the one after writes its markers; read_committed sees exactly the committed records.
- clients-failover (clients_failover.py): kafka-clients 4.3.0 (java/TxnClient.java produce-acks)
  and kafka-python, each an idempotent acks=all producer into one RF=3 min.insync.replicas=2 topic,
  while the leader of a partition is killed (-9) and restarted, then another partition's: every
  record each client had acknowledged read back once at its offset, in send order per partition;
  each client's sent/acknowledged counts and longest pause between acks printed.
- eos-failover (eos_failover.py): a kafka-clients 4.3.0 consume-transform-produce loop (TxnClient
  eos-loop) between two RF=3 topics while its input is written; the broker coordinating its
  transactional id is killed (-9) and restarted, then the one coordinating its group: the loop
  goes on, read_committed sees every input exactly once in input order, the group's offsets end
  at the input's ends.
- follower-pause: a follower stopped (SIGSTOP) leaves the ISR, and rejoins after SIGCONT.
- min-isr: min.insync.replicas=3 with a follower down: acks=all gets NOT_ENOUGH_REPLICAS, acks=1
  is written but stays above the high watermark until the follower is back.
- unclean: the ISR of an RF=2 partition gone: offline while unclean election is off; on, the
  out-of-sync replica leads and the records it never had are gone from the other too.
- broker-only (broker_only.py): a fourth node started later with process.roles=broker (no
  controller listener; it pulls the metadata from the voters) is listed by every node and as an
  observer by DescribeQuorum (raw, and kafka-clients' Admin.describeMetadataQuorum), a new
  topic puts replicas and leaders on it, it follows a new quorum leader (a topic created through
  it after kill -9 of the old one, by an admin client made before), kill -9 of it loses no
  acknowledged record (its partitions move to the other ISR member), and restarted it rejoins
  every ISR.
- network-cut (network_cut.py; its own three nodes, each in a network namespace): the node
  leading both the quorum and an RF=3 partition is cut from the two others while an idempotent
  acks=all producer writes: the majority elects a new leader, the cut node acknowledges nothing it
  wrote alone and truncates it after the heal; every acknowledged record read back once at its
  offset, also with the old leader leading again. Needs root and iproute2 (SLUICE_NO_NETNS=1
  skips it on a machine without).
- reassign (reassign.py): partitions moved with kafka-python's and kafka-clients 4.3.0's
  Alter/ListPartitionReassignments: a move onto a fenced broker listed and cancelled (and
  Kafka's INVALID_REPLICATION_FACTOR / NO_REASSIGNMENT_IN_PROGRESS); under an idempotent
  acks=all producer a partition moved wholly to other brokers (its leader among those leaving)
  and back, another grown to three replicas: nothing lost or failed, old directories removed.
- reassign-throttle (reassign.py): leader/follower.replication.throttled.rate (dynamic broker
  configs) and the topic's throttled replicas hold a move back; removed, it completes.
- decommission (reassign.py): every replica of the broker-only node moved to the others, its
  directories gone, stopped and unregistered (kafka-clients' Admin.unregisterBroker): no longer
  listed, BROKER_ID_NOT_REGISTERED a second time; restarted, it registers anew.
- describe-topic-partitions (describe_topics.py): DescribeTopicPartitions paged by its cursor,
  two partitions a page, with kafka-python and kafka-clients 4.3.0's describeTopics: every
  partition once, as Metadata shows it.
- compacted-replicas (compacted.py): a cleanup.policy=compact RF=3 topic is compacted by every
  replica (records counted in each node's segment files), and after kill -9 of its leader the
  new leader serves the same compacted log (latest value per key at its acknowledged offset).
- restart-all: SIGTERM of every node (the broker-only one too), all restarted: same cluster id,
  topics, leaders and data.

- racks (racks.py; its own three nodes, broker.rack r1, r1, r2): racks in DescribeCluster and
  Metadata, a new topic's partitions each on both racks.
- fetch-from-follower (racks.py, the same nodes; replica.selector.class=RackAwareReplicaSelector):
  a consumer with client.rack=r2 reads a partition led in r1 from its follower in r2 (KIP-392).
- cluster-metrics (racks.py, the same nodes, each with its metrics listener): leaders counted
  once, one active controller; a broker killed: under-replicated and under-min-ISR partitions on
  the leaders, none offline; restarted: healthy again, ISR expansions and elections counted.
- replace-voter (voters.py; its own three nodes): a voter whose data dir is gone removed with
  kafka-clients' Admin.removeRaftVoter, started empty outside controller.quorum.voters and added
  back with Admin.addRaftVoter (KIP-853); it catches up, rejoins the ISR and votes.
- replication-bytes (racks.py, the same nodes): a partition moved onto another broker counted by
  sluice_reassignment_bytes_in/out_total and the replication byte counters.

This suite runs its own processes (run.sh gives it the binary and a work dir, and compiles
java/TxnClient.java for the two Java checks: SLUICE_TXN_CLASSPATH).
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import broker_only  # noqa: E402
import clients_failover  # noqa: E402
import compat  # noqa: E402
import compacted  # noqa: E402
import describe_topics  # noqa: E402
import elections  # noqa: E402
import eos_failover  # noqa: E402
import group_failover  # noqa: E402
import network_cut  # noqa: E402
import replicated  # noqa: E402
import racks  # noqa: E402
import voters  # noqa: E402
import reassign  # noqa: E402
import rolling  # noqa: E402
import txn_markers  # noqa: E402
from cluster import Cluster, describe_quorum, list_offsets_latest, metadata, quorum_leader  # noqa: E402
from compat import fail  # noqa: E402

NOT_LEADER_OR_FOLLOWER = 6
LEADER_NOT_AVAILABLE = 5


def produce(bs, topic, partitions, n, tag, wanted=None):
    """n records, record i to partition i % partitions (only those in `wanted` if given),
    acks=all; returns {partition: {offset: value}} of the acknowledged ones and the errors."""
    acked, errors = {}, []
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 5, "message.timeout.ms": 20000})

    def on_delivery(err, m):
        if err is None:
            acked.setdefault(m.partition(), {})[m.offset()] = m.value()
        else:
            errors.append(err)

    for i in range(n):
        part = i % partitions
        if wanted is not None and part not in wanted:
            continue
        p.produce(topic, value=f"{tag}-{i}".encode(), partition=part, on_delivery=on_delivery)
        p.poll(0)
    left = p.flush(30)
    if left:
        errors.append(f"{left} undelivered")
    return acked, errors


def read_back(bs, topic, expected, timeout=30):
    """Reads each partition of `expected` from 0; fails unless every record is at its offset."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "compat-cluster-reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in expected])
    want = sum(len(v) for v in expected.values())
    got = {}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.setdefault(m.partition(), {})[m.offset()] = m.value()
    c.close()
    wrong = [(p, o) for p, recs in expected.items() for o, v in recs.items() if got.get(p, {}).get(o) != v]
    if wrong:
        fail(f"{len(wrong)} acknowledged records not read back at their offsets, e.g. {wrong[:5]}")


def wait_for(what, check, timeout):
    """Polls `check()` until it returns a true value; returns (value, seconds taken)."""
    t0 = time.monotonic()
    last = None
    for _ in compat.deadline_loop(timeout, step=0.1):
        try:
            last = check()
        except OSError:
            last = None
        if last:
            return last, time.monotonic() - t0
    fail(f"{what}: not within {timeout} s (last: {last})")


def formation(cl):
    views = [metadata(n.port) for n in cl.nodes]
    ids = {v[1] for v in views}
    if len(ids) != 1 or None in ids:
        fail(f"cluster ids {ids}")
    for (brokers, _, controller, _), n in zip(views, cl.nodes):
        if sorted(brokers) != [1, 2, 3]:
            fail(f"node {n.id} lists brokers {sorted(brokers)}")
        # Clients cannot reach KRaft controllers: like Kafka a live broker is named (this one).
        if controller != n.id:
            fail(f"node {n.id} names controller {controller}, not itself")
    # DescribeQuorum (forwarded to the quorum's leader) gives every node the same answer.
    quorums = [describe_quorum(n.port) for n in cl.nodes]
    leaders = {q[1] for q in quorums}
    error, leader, epoch, hw, voters, observers = quorums[0]
    if error or len(leaders) != 1 or sorted(voters) != [1, 2, 3] or observers or hw <= 0:
        fail(f"DescribeQuorum: {quorums}")
    cluster_id = ids.pop()
    for n in cl.nodes:
        with open(os.path.join(n.data, "meta.properties")) as f:
            text = f.read()
        if f"cluster.id={cluster_id}" not in text or f"node.id={n.id}" not in text:
            fail(f"node {n.id} meta.properties: {text!r}")
    print(f"# formation: cluster {cluster_id}; quorum leader {leader} (epoch {epoch}, high watermark {hw}, "
          f"voters' log ends {voters})", flush=True)
    return cluster_id


def leaders(port, topic):
    return {p: v[1] for p, v in metadata(port, [topic])[3][topic].items()}


def spread(cl, state):
    topic = "cluster-spread"
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(timeout=30)
    by_leader = {}
    for p, leader in leaders(cl.nodes[0].port, topic).items():
        by_leader.setdefault(leader, []).append(p)
    if sorted(len(v) for v in by_leader.values()) != [2, 2, 2]:
        fail(f"leaders not spread: {by_leader}")
    acked, errors = produce(cl.bootstrap(), topic, 6, 3000, "spread")
    if errors or sum(len(v) for v in acked.values()) != 3000:
        fail(f"{sum(len(v) for v in acked.values())} of 3000 acknowledged, errors {errors[:3]}")
    read_back(cl.bootstrap(), topic, acked)
    p, leader = next(iter(leaders(cl.nodes[0].port, topic).items()))
    other = next(n for n in cl.nodes if n.id != leader)
    code, _ = list_offsets_latest(other.port, topic, p)
    if code != NOT_LEADER_OR_FOLLOWER:
        fail(f"ListOffsets of partition {p} (leader {leader}) at broker {other.id}: error {code}")
    code, end = list_offsets_latest(cl.node(leader).port, topic, p)
    if code != 0 or end != len(acked[p]):
        fail(f"ListOffsets at the leader: error {code}, end {end}, expected {len(acked[p])}")
    print(f"# spread: leaders {dict(sorted(by_leader.items()))}; 3000 records read back", flush=True)
    state["spread"] = (topic, acked)


def broker_kill(cl, state):
    topic, acked = state["spread"]
    controller = quorum_leader(cl.nodes[0].port)
    victim = next(n for n in cl.nodes if n.id != controller)
    survivor = next(n for n in cl.nodes if n.id not in (controller, victim.id))
    before = metadata(survivor.port, [topic])[3][topic]
    theirs = sorted(p for p, v in before.items() if v[1] == victim.id)
    victim.kill9()

    def fenced():
        brokers, _, _, topics = metadata(survivor.port, [topic])
        parts = topics[topic]
        offline = all(parts[p][0] == LEADER_NOT_AVAILABLE and parts[p][1] == -1 for p in theirs)
        return victim.id not in brokers and offline

    _, took = wait_for(f"broker {victim.id} fenced after kill -9", fenced, 20)
    others = {p: v for p, v in acked.items() if p not in theirs}
    more, errors = produce(cl.bootstrap(), topic, 6, 600, "while-down", wanted=set(others))
    if errors:
        fail(f"produce to the partitions of live brokers while {victim.id} is down: {errors[:3]}")
    victim.start()

    def back():
        parts = metadata(survivor.port, [topic])[3][topic]
        return all(parts[p][1] == victim.id and parts[p][0] == 0 for p in theirs)

    _, back_s = wait_for(f"broker {victim.id} leading its partitions again", back, 30)
    for p, recs in more.items():
        acked.setdefault(p, {}).update(recs)
    read_back(cl.bootstrap(), topic, acked)
    print(f"# broker-kill: broker {victim.id} (led {theirs}) fenced {took:.2f} s after kill -9; back "
          f"{back_s:.2f} s after restart; every acknowledged record read back", flush=True)


def controller_kill(cl, state):
    controller = quorum_leader(cl.nodes[0].port)
    victim = cl.node(controller)
    survivor = next(n for n in cl.nodes if n.id != controller)
    t0 = time.monotonic()
    victim.kill9()

    def new_controller():
        c = quorum_leader(survivor.port, timeout=5)
        return c if c not in (None, controller) and controller not in metadata(survivor.port)[0] else None

    new, took = wait_for("a new controller with the old one fenced", new_controller, 20)
    # The dead leader's connections closed and its listener refused: the lowest other voter asked
    # for an election as the lease ran out, rather than waiting for the voters' random timers.
    first = min(n.id for n in cl.nodes if n.controller and n.id != controller)
    takeover = f"asking for an election as its lease ends leader={controller}"
    if not any(takeover in line for line in cl.node(first).log_tail(400)):
        fail(f"node {first} did not take over from the dead quorum leader at its lease's end "
             f"(no '{takeover}' in its log)")
    topic = "cluster-after-controller-kill"
    admin = AdminClient({"bootstrap.servers": survivor.bootstrap})
    admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(timeout=30)
    acked, errors = produce(survivor.bootstrap, topic, 4, 400, "after")
    if errors:
        fail(f"produce after the controller died: {errors[:3]}")
    created_s = time.monotonic() - t0
    victim.start()
    wait_for(f"node {victim.id} listed again", lambda: victim.id in metadata(survivor.port)[0], 30)
    read_back(cl.bootstrap(), topic, acked)
    print(f"# controller-kill: node {controller} led the quorum; node {first} called an election as its lease "
          f"ended, node {new} took over and the dead node was fenced {took:.2f} s after kill -9; a topic created "
          f"and written {created_s:.2f} s after", flush=True)


def cluster_id_mismatch(cl, state):
    node = cl.nodes[2]
    status = node.stop()
    if status != 0:
        fail(f"node {node.id} SIGTERM: {status}")
    path = os.path.join(node.data, "meta.properties")
    with open(path) as f:
        original = f.read()
    lines = [line if not line.startswith("cluster.id=") else "cluster.id=AnotherClusterXXXXXXXXXX"
             for line in original.splitlines()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    node.start(wait=False)
    try:
        code = node.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.kill9()
        fail("a node with another cluster's data dir kept running")
    text = "\n".join(node.log_tail(10))
    if code == 0 or "cluster id mismatch" not in text:
        fail(f"exit {code}, log: {text[-500:]}")
    with open(path, "w") as f:
        f.write(original)
    node.start()
    print("# cluster-id-mismatch: refused to start (non-zero exit, 'cluster id mismatch' logged); started "
          "again with its own meta.properties", flush=True)


def restart_all(cl, state, cluster_id):
    topic, acked = state["spread"]
    before = leaders(cl.nodes[0].port, topic)
    statuses = cl.stop()
    if any(s != 0 for s in statuses.values()):
        fail(f"SIGTERM exit statuses {statuses}")
    cl.start()

    def settled():
        views = [metadata(n.port, [topic]) for n in cl.nodes]
        ok = all(sorted(v[0]) == sorted(n.id for n in cl.nodes) and v[1] == cluster_id for v in views)
        parts = views[0][3][topic]
        return ok and all(parts[p][0] == 0 for p in parts)

    wait_for("the restarted cluster serving every partition", settled, 30)
    after = leaders(cl.nodes[0].port, topic)
    if after != before:
        fail(f"leaders before {before}, after {after}")
    read_back(cl.bootstrap(), topic, acked)
    print(f"# restart-all: SIGTERM of every node (status 0), restarted: cluster {cluster_id}, leaders "
          f"{after}, every record read back", flush=True)


def main():
    suite = compat.Suite("cluster")
    # Leaders go back to their preferred replicas only when a check asks (ElectLeaders), not on
    # the controller's timer (300 s by default, which a slow machine could reach mid-check);
    # auto-rebalance has its own cluster below.
    cl = Cluster(3, overrides=["replica.lag.time.max.ms=3000", "auto.leader.rebalance.enable=false",
                               "log.cleaner.backoff.ms=500"])
    state = {}
    try:
        cl.start()
        _, cluster_id = suite.check("formation", formation, cl)
        suite.check("spread", spread, cl, state)
        suite.check("broker-kill", broker_kill, cl, state)
        suite.check("controller-kill", controller_kill, cl, state)
        suite.check("cluster-id-mismatch", cluster_id_mismatch, cl, state)
        suite.check("elect-leaders", elections.elect_leaders, cl, state)
        suite.check("failover", replicated.failover, cl, state)
        suite.check("group-failover", group_failover.group_failover, cl, state)
        suite.check("txn-markers", txn_markers.markers_across_brokers, cl, state)
        suite.check("txn-coordinator-kill", txn_markers.coordinator_kills, cl, state)
        suite.check("clients-failover", clients_failover.clients_failover, cl, state)
        suite.check("eos-failover", eos_failover.eos_failover, cl, state)
        suite.check("follower-pause", replicated.follower_pause, cl, state)
        suite.check("min-isr", replicated.min_isr, cl, state)
        suite.check("unclean", replicated.unclean, cl, state)
        suite.check("rolling-restart", rolling.rolling_restart, cl, state)
        suite.check("broker-only", broker_only.fourth_broker, cl, state)
        suite.check("reassign", reassign.reassign, cl, state)
        suite.check("reassign-throttle", reassign.throttle, cl, state)
        suite.check("decommission", reassign.decommission, cl, state)
        suite.check("describe-topic-partitions", describe_topics.describe_paged, cl, state)
        suite.check("compacted-replicas", compacted.compacted_replicas, cl, state)
        if cluster_id:
            suite.check("restart-all", restart_all, cl, state, cluster_id)
    finally:
        if suite.failures:
            cl.print_logs()
        cl.stop()
    # Its own nodes, in network namespaces, once the loopback cluster is gone.
    suite.check("network-cut", network_cut.network_cut, state)
    suite.check("auto-rebalance", elections.auto_rebalance)
    racks.run(suite)
    voters.run(suite)
    suite.finish()


if __name__ == "__main__":
    main()
