"""The cluster suite's broker-only check: a fourth node started later with process.roles=broker
(no controller listener, not a voter: it pulls the metadata from the quorum) joins the cluster as
an observer of the quorum, new topics use it, it follows a change of quorum leader, its death
loses nothing and it rejoins its ISRs. Takes the running Cluster and the state dict; see
suite.py for the list."""

import time

from confluent_kafka.admin import AdminClient, NewTopic

import javaproc
from cluster import describe_quorum, metadata, quorum_leader
from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-fourth"
N_PARTITIONS = 8


def fourth_broker(cl, state):
    from suite import produce, read_back  # noqa: PLC0415 - the suite's helpers
    b4 = cl.add_broker()
    t0 = time.monotonic()
    b4.start()
    joined = time.monotonic() - t0
    voters = [n for n in cl.nodes if n.controller]
    brokers, _, _, _ = metadata(b4.port)
    if sorted(brokers) != sorted(n.id for n in cl.nodes):
        fail(f"broker {b4.id} lists brokers {sorted(brokers)}")
    # It is no voter: DescribeQuorum through it names a voter as leader and it as an observer.
    quorum = wait_for(f"broker {b4.id} listed as an observer of the quorum",
                      lambda: (lambda q: q if b4.id in q[5] else None)(describe_quorum(b4.port)), 10)[0]
    if quorum[0] or quorum[1] not in {n.id for n in voters} or b4.id in quorum[4]:
        fail(f"DescribeQuorum through broker {b4.id}: {quorum}")
    # The Java admin client's describeMetadataQuorum (kafka-metadata-quorum.sh's call) says so too.
    java = javaproc.Proc(cl, "describe-quorum", "describe-quorum", bootstrap=b4.bootstrap)
    if java.wait_exit(60) != 0:
        fail(f"describe-quorum exited with {java.p.returncode}: {java.tail()} (stderr: {java.log_path})")
    lines = java.snapshot()
    head = next((line for line in lines if line.startswith("QUORUM ")), "")
    java_voters = sorted(int(line.split()[1]) for line in lines if line.startswith("VOTER "))
    java_observers = [int(line.split()[1]) for line in lines if line.startswith("OBSERVER ")]
    if (f"leader={quorum[1]} " not in head or java_voters != sorted(n.id for n in voters)
            or b4.id not in java_observers):
        fail(f"Admin.describeMetadataQuorum through broker {b4.id}: {lines}")
    admin = AdminClient({"bootstrap.servers": b4.bootstrap})
    admin.create_topics([NewTopic(TOPIC, N_PARTITIONS, 2, config={"min.insync.replicas": "1"})])[TOPIC].result(
        timeout=30)
    parts = partitions(cl, TOPIC)
    mine = sorted(p for p, v in parts.items() if v[1] == b4.id)
    if not mine or not any(b4.id in v[2] and v[1] != b4.id for v in parts.values()):
        fail(f"the new topic does not use broker {b4.id} as leader and follower: {parts}")
    acked, errors = produce(cl.bootstrap(), TOPIC, N_PARTITIONS, 4000, "fourth")
    if errors or sum(len(v) for v in acked.values()) != 4000:
        fail(f"{sum(len(v) for v in acked.values())} of 4000 acknowledged, errors {errors[:3]}")
    # The quorum's leader dies: the broker-only node follows the new one (a topic created
    # through it, which needs its writes forwarded and the new image pulled), by the admin
    # client made before the death: the controller its metadata named is a live broker, not
    # the dead quorum leader it would wait for until its request timed out.
    leader = cl.node(quorum_leader(voters[0].port))
    leader.kill9()
    other = "cluster-fourth-after"
    wait_for("a topic created through the broker-only node after the quorum leader died",
             lambda: create_quietly(admin, other), 30)
    leader.start()
    wait_for(f"node {leader.id} listed again", lambda: leader.id in metadata(b4.port)[0], 30)
    # The broker-only node dies: its partitions move to the other ISR member, nothing is lost.
    b4.kill9()
    wait_for(f"the partitions of {b4.id} led elsewhere",
             lambda: all(v[1] not in (-1, b4.id) for v in partitions(cl, TOPIC).values()), 20)
    read_back(cl.bootstrap(), TOPIC, acked)
    # Back: it catches up and rejoins the ISR of every partition it holds a replica of.
    t0 = time.monotonic()
    b4.start()
    wait_for(f"node {b4.id} back in the ISRs of {TOPIC}",
             lambda: all(len(v[3]) == 2 for v in partitions(cl, TOPIC).values()), 30)
    rejoined = time.monotonic() - t0
    print(f"# broker-only: node {b4.id} (process.roles=broker) joined in {joined:.2f} s; a new topic led by it on "
          f"{mine} and followed by it elsewhere; 4000 acks=all records; quorum leader {leader.id} killed: a "
          f"topic created through node {b4.id}; node {b4.id} killed: every record read back; restarted, back in the ISRs in {rejoined:.2f} s", flush=True)


def create_quietly(admin, topic):
    """True once `topic` exists (created by `admin`); False on a retriable failure."""
    try:
        admin.create_topics([NewTopic(topic, 2, 2)])[topic].result(timeout=10)
        return True
    except Exception as e:  # noqa: BLE001 - retried until the deadline
        return "TOPIC_ALREADY_EXISTS" in str(e)
