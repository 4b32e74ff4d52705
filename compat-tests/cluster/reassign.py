"""The cluster suite's reassign check (issue 12): partitions moved between brokers with the stock
admin clients, kafka-python's `alter_partition_reassignments` / `list_partition_reassignments`
and kafka-clients 4.3.0's `Admin.alterPartitionReassignments` / `listPartitionReassignments`
(what `kafka-reassign-partitions --execute / --verify / --cancel` send).

On the four brokers the broker-only check leaves (voters a, b, c and the broker-only node d), a
topic of two partitions, 0 on [a, b] and 1 on [b, c], min.insync.replicas=2:

- cancel: d killed (fenced, still registered), partition 1 reassigned to [b, c, d]: accepted,
  listed in progress (adding d) by both clients; a target of another size with
  allowReplicationFactorChange(false) is INVALID_REPLICATION_FACTOR; cancelled (kafka-python,
  a null target): nothing listed, the replicas [b, c] again, and a second cancel (Java) is
  NO_REASSIGNMENT_IN_PROGRESS. d restarted holds no directory of it.
- moves under an idempotent acks=all producer (rolling.Load): partition 0 moved wholly to
  [d, c] (its leader a leaves: the leadership moves when the move completes), partition 1 grown
  to [b, c, a]; once nothing is listed, every broker's Metadata shows the targets with whole
  ISRs and the brokers that left hold no directory of them; partition 0 moved back to [a, b]
  with the Java client likewise. No produce request fails; every acknowledged record is read
  back once at its offset.
"""

import os
import time

from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic,
                                   ResourceType)
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTP

import javaproc
from cluster import metadata
from compat import fail
from replicated import partitions, wait_for
from rolling import Load

TOPIC = "cluster-move"


def java(cl, name, *args):
    """The output lines of one TxnClient command (kafka-clients 4.3.0)."""
    proc = javaproc.Proc(cl, name, *args)
    if proc.wait_exit(60) != 0:
        fail(f"{args[0]} exited with {proc.p.returncode}: {proc.tail()} (stderr: {proc.log_path})")
    return proc.snapshot()


def java_reassign(cl, partition, *args):
    lines = java(cl, f"reassign-{partition}", "reassign", "--topic", TOPIC, "--partition", str(partition), *args)
    return next((line.split()[2] for line in lines if line.startswith("REASSIGN ")), None)


def java_listed(cl):
    return [line for line in java(cl, "list-reassignments", "list-reassignments", "--topic", TOPIC)
            if line.startswith(("REASSIGNING ", "LISTED "))]


def listed(kp):
    """{partition: {replicas, adding_replicas, removing_replicas}} of TOPIC in progress."""
    return {tp.partition: v for tp, v in kp.list_partition_reassignments().items() if tp.topic == TOPIC}


def alter(kp, targets):
    """kafka-python's alter_partition_reassignments: {partition: error name or None}."""
    got = kp.alter_partition_reassignments({KTP(TOPIC, p): r for p, r in targets.items()})
    return {tp.partition: (e.__name__ if e is not None else None) for tp, e in got.items()}


def everywhere(cl, partition, replicas):
    """Every live broker's Metadata shows `replicas` with all of them in the ISR."""
    for n in cl.live():
        _, leader, replicas_seen, isr = metadata(n.port, [TOPIC])[3][TOPIC][partition][:4]
        if replicas_seen != replicas or sorted(isr) != sorted(replicas) or leader not in replicas:
            return False
    return True


def no_dirs(cl, partition, ids):
    """None of the brokers `ids` holds a directory of TOPIC's `partition`."""
    return all(not os.path.exists(os.path.join(cl.node(i).data, f"{TOPIC}-{partition}")) for i in ids)


def reassign(cl, state):
    d = next(n for n in cl.nodes if not n.controller)
    a, b, c = sorted(n.id for n in cl.nodes if n.controller)
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(TOPIC, 2, replica_assignment=[[a, b], [b, c]],
                                  config={"min.insync.replicas": "2"})])[TOPIC].result(timeout=30)
    wait_for("both partitions led with whole ISRs",
             lambda: all(v[1] >= 0 and len(v[3]) == 2 for v in partitions(cl, TOPIC).values()), 30)

    # Cancel: the added replica cannot catch up while its broker is down.
    d.kill9()
    wait_for(f"broker {d.id} fenced", lambda: d.id not in metadata(cl.live()[0].port)[0], 30)
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-reassign")
    try:
        got = alter(kp, {1: [b, c, d.id]})
        if got != {1: None}:
            fail(f"reassigning partition 1 to [{b}, {c}, {d.id}]: {got}")
        seen = listed(kp)
        if seen != {1: {"replicas": [b, c, d.id], "adding_replicas": [d.id], "removing_replicas": []}}:
            fail(f"kafka-python lists {seen}")
        lines = java_listed(cl)
        if lines != [f"REASSIGNING 1 replicas={b},{c},{d.id} adding={d.id} removing=", "LISTED 1"]:
            fail(f"Admin.listPartitionReassignments: {lines}")
        rf = java_reassign(cl, 1, "--replicas", f"{a},{b}", "--no-rf-change")
        if rf != "InvalidReplicationFactorException":
            fail(f"a target of 2 replicas while 3 are the target, allowReplicationFactorChange(false): {rf}")
        got = alter(kp, {1: None})
        if got != {1: None}:
            fail(f"cancelling partition 1's reassignment: {got}")
        if listed(kp):
            fail(f"still listed after the cancel: {listed(kp)}")
        if partitions(cl, TOPIC)[1][2] != [b, c]:
            fail(f"partition 1 after the cancel: {partitions(cl, TOPIC)[1]}")
        again = java_reassign(cl, 1, "--cancel")
        if again != "NoReassignmentInProgressException":
            fail(f"a cancel with nothing in progress: {again}")
        d.start()
        wait_for(f"broker {d.id} back", lambda: d.id in metadata(cl.live()[0].port)[0], 30)
        if not no_dirs(cl, 1, [d.id]):
            fail(f"broker {d.id} holds a directory of the cancelled replica")

        # Moves under load.
        load = Load(cl.bootstrap(), TOPIC, 2)
        load.start()
        # Some data to move first (and more comes while it moves).
        wait_for("5,000 acknowledgements", lambda: len(load.acked) > 5000, 30)
        t0 = time.monotonic()
        got = alter(kp, {0: [d.id, c], 1: [b, c, a]})
        if got != {0: None, 1: None}:
            fail(f"moving partition 0 to [{d.id}, {c}] and growing 1 to [{b}, {c}, {a}]: {got}")
        in_progress = listed(kp)
        wait_for("no reassignment listed", lambda: not listed(kp), 60)
        moved = time.monotonic() - t0
        wait_for("every broker showing the moved replicas",
                 lambda: everywhere(cl, 0, [d.id, c]) and everywhere(cl, 1, [b, c, a]), 15)
        wait_for(f"brokers {a} and {b} rid of partition 0's directory", lambda: no_dirs(cl, 0, [a, b]), 15)
        t1 = time.monotonic()
        back = java_reassign(cl, 0, "--replicas", f"{a},{b}")
        if back != "NONE":
            fail(f"Admin.alterPartitionReassignments of partition 0 back to [{a}, {b}]: {back}")
        wait_for("partition 0 back on its first brokers", lambda: everywhere(cl, 0, [a, b]), 60)
        lines = java_listed(cl)
        if lines != ["LISTED 0"]:
            fail(f"Admin.listPartitionReassignments after the move back: {lines}")
        moved_back = time.monotonic() - t1
        wait_for(f"brokers {d.id} and {c} rid of partition 0's directory", lambda: no_dirs(cl, 0, [d.id, c]), 15)
    finally:
        kp.close()
    load.finish(cl)
    print(f"# reassign: cancel of a move onto a fenced broker (listed by kafka-python and Java, "
          f"INVALID_REPLICATION_FACTOR for a size change not allowed, NO_REASSIGNMENT_IN_PROGRESS after); under "
          f"{load.sent} acknowledged records: partition 0 [{a}, {b}] -> [{d.id}, {c}] and 1 grown to 3 replicas in "
          f"{moved:.2f} s (listed at once: {sorted(in_progress)}), 0 moved back by the Java client in "
          f"{moved_back:.2f} s; old replicas' directories removed; every record read back once", flush=True)


THROTTLED = "cluster-throttle"
RATE = 100_000  # bytes a second
RECORD = 1024


def set_configs(admin, kind, name, op, configs):
    """IncrementalAlterConfigs (what `kafka-configs --alter` sends) of one resource."""
    entries = [ConfigEntry(k, v, incremental_operation=op) for k, v in configs.items()]
    res = ConfigResource(kind, name, incremental_configs=entries)
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=30)


def throttle(cl, state):
    """Kafka's replication throttles, as `kafka-reassign-partitions --throttle` sets them:
    leader.replication.throttled.rate on the leader's broker and follower.replication.throttled.rate
    on the new replica's (IncrementalAlterConfigs of BROKER resources, dynamic), and the topic's
    leader/follower.replication.throttled.replicas. A partition of 1.5 MB moved onto a new replica
    at 100 kB/s (Kafka's rate lets ten seconds' worth through at once, then holds the rest) is
    still catching up after 1.5 s; the rates removed (what --verify does once done), it completes
    at once."""
    d = next(n for n in cl.nodes if not n.controller)
    a = min(n.id for n in cl.nodes if n.controller)
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(THROTTLED, 1, replica_assignment=[[a]])])[THROTTLED].result(timeout=30)
    wait_for("the partition led", lambda: partitions(cl, THROTTLED)[0][1] == a, 30)
    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "linger.ms": 20})
    n = 15 * RATE // RECORD
    for i in range(n):
        p.produce(THROTTLED, value=b"x" * RECORD, partition=0)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(30) != 0:
        fail("the throttled topic's records not all acknowledged")
    set_configs(admin, ResourceType.BROKER, str(a), AlterConfigOpType.SET,
                {"leader.replication.throttled.rate": str(RATE)})
    set_configs(admin, ResourceType.BROKER, str(d.id), AlterConfigOpType.SET,
                {"follower.replication.throttled.rate": str(RATE)})
    set_configs(admin, ResourceType.TOPIC, THROTTLED, AlterConfigOpType.SET,
                {"leader.replication.throttled.replicas": f"0:{a}",
                 "follower.replication.throttled.replicas": f"0:{d.id}"})
    described = admin.describe_configs([ConfigResource(ResourceType.BROKER, str(a))])
    entry = list(described.values())[0].result(timeout=30).get("leader.replication.throttled.rate")
    if entry is None or entry.value != str(RATE) or entry.source != ConfigSource.DYNAMIC_BROKER_CONFIG.value:
        fail(f"DescribeConfigs of broker {a}: leader.replication.throttled.rate {entry}")
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-throttle")
    try:
        t0 = time.monotonic()
        got = kp.alter_partition_reassignments({KTP(THROTTLED, 0): [a, d.id]})
        if got != {KTP(THROTTLED, 0): None}:
            fail(f"reassigning {THROTTLED}-0 to [{a}, {d.id}]: {got}")
        time.sleep(1.5)
        held = {tp.partition: v for tp, v in kp.list_partition_reassignments().items() if tp.topic == THROTTLED}
        if held.get(0, {}).get("adding_replicas") != [d.id]:
            fail(f"the throttled move is not in progress 1.5 s later: {held}")
        for broker, key in ((a, "leader.replication.throttled.rate"), (d.id, "follower.replication.throttled.rate")):
            set_configs(admin, ResourceType.BROKER, str(broker), AlterConfigOpType.DELETE, {key: ""})
        t1 = time.monotonic()
        wait_for("the move done once the throttle is gone",
                 lambda: not any(tp.topic == THROTTLED for tp in kp.list_partition_reassignments()), 30)
        released = time.monotonic() - t1
    finally:
        kp.close()
    print(f"# reassign-throttle: {n} records of 1 KiB moved onto broker {d.id} at {RATE // 1000} kB/s "
          f"(leader and follower rates, topic throttled replicas): still catching up after 1.5 s; the rates "
          f"removed, done {released:.2f} s later ({time.monotonic() - t0:.2f} s in all)", flush=True)


def decommission(cl, state):
    """Retiring a broker as a Kafka operator does: every replica it holds reassigned to the
    others (kafka-python, one request), its directories gone once the moves complete, stopped
    (SIGTERM), then unregistered with kafka-clients' Admin.unregisterBroker (kafka-cluster.sh
    unregister): no longer listed by Metadata or DescribeCluster, a second unregister answers
    BROKER_ID_NOT_REGISTERED. Started again with the same node.id, it registers anew."""
    d = next(n for n in cl.nodes if not n.controller)
    voters = sorted(n.id for n in cl.nodes if n.controller)
    port = cl.node(voters[0]).port
    moves = {}
    for topic, parts in metadata(port)[3].items():
        for p, v in parts.items():
            if d.id in v[2]:
                spare = next(b for b in voters if b not in v[2])
                moves[KTP(topic, p)] = [spare if r == d.id else r for r in v[2]]
    if not moves:
        fail(f"broker {d.id} holds no replica to move")
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-decommission")
    try:
        t0 = time.monotonic()
        got = kp.alter_partition_reassignments(moves)
        if any(e is not None for e in got.values()) or len(got) != len(moves):
            fail(f"moving {len(moves)} replicas off broker {d.id}: {got}")

        def off():
            held = [(t, p) for t, parts in metadata(port)[3].items() for p, v in parts.items() if d.id in v[2]]
            return not held and not kp.list_partition_reassignments()

        wait_for(f"no replica left on broker {d.id}", off, 60)
        moved = time.monotonic() - t0
    finally:
        kp.close()

    def partition_dirs():
        return [e for e in os.listdir(d.data)
                if os.path.isdir(os.path.join(d.data, e)) and not e.startswith("__cluster_metadata")]

    wait_for(f"broker {d.id}'s partition directories removed", lambda: not partition_dirs(), 15)
    status = d.stop()
    if status != 0:
        fail(f"broker {d.id}: SIGTERM exit status {status}")
    first = java(cl, "unregister", "unregister-broker", "--id", str(d.id))
    if f"UNREGISTER {d.id} NONE" not in first:
        fail(f"Admin.unregisterBroker({d.id}): {first}")
    wait_for(f"broker {d.id} gone from Metadata", lambda: d.id not in metadata(port)[0], 10)
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-decommission")
    try:
        listed = sorted(b["broker_id"] for b in kp.describe_cluster()["brokers"])
    finally:
        kp.close()
    if listed != voters:
        fail(f"DescribeCluster after the unregister lists {listed}")
    again = java(cl, "unregister-again", "unregister-broker", "--id", str(d.id))
    if f"UNREGISTER {d.id} BrokerIdNotRegisteredException" not in again:
        fail(f"a second Admin.unregisterBroker({d.id}): {again}")
    d.start()
    wait_for(f"broker {d.id} registered again", lambda: d.id in metadata(port)[0], 30)
    print(f"# decommission: {len(moves)} replicas moved off broker {d.id} in {moved:.2f} s, its directories removed; "
          f"stopped and unregistered (Admin.unregisterBroker): gone from Metadata and DescribeCluster, "
          f"BROKER_ID_NOT_REGISTERED the second time; started again, registered anew", flush=True)
