"""The cluster suite's ElectLeaders check (issue 12), with librdkafka's admin client
(confluent-kafka `AdminClient.elect_leaders`) and kafka-clients 4.3.0's `Admin.electLeaders`
(what `kafka-leader-election.sh` calls).

A topic of three partitions (RF 3), each led by its preferred replica (the first). The preferred
leader of partition 0 is killed -9: its leadership moves, and a preferred election of partition
0 answers PREFERRED_LEADER_NOT_AVAILABLE while it is down. Restarted and back in the ISR, a
preferred election of partitions 0 and 1 gives 0 back to it (leader epoch bumped, Metadata of
every broker shows it) and answers ELECTION_NOT_NEEDED for 1; an unclean election of a led
partition is not needed either; an election over every partition (none named) finds nothing to
to do for this topic once its partitions are led by their preferred replicas.

Auto-rebalance, on a cluster of its own with leader.imbalance.check.interval.seconds=1: the
preferred leader of a partition killed and restarted leads it again once back in its ISR,
unasked.
"""

import os

from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import javaproc
from cluster import Cluster, metadata
from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-elect"


def elect(admin, kind, tps):
    """{(topic, partition): error name or None} of an election of `tps` ((topic, partition)
    pairs, or None for every partition)."""
    asked = None if tps is None else [TopicPartition(t, p) for t, p in tps]
    result = admin.elect_leaders(kind, asked).result(timeout=40)
    return {(tp.topic, tp.partition): (e.name() if e is not None else None) for tp, e in result.items()}


def java_elect(cl, kind, parts):
    """{partition: exception class name or "NONE"} of kafka-clients 4.3.0's Admin.electLeaders."""
    java = javaproc.Proc(cl, f"elect-{kind}", "elect-leaders", "--topic", TOPIC, "--type", kind,
                         "--partitions", ",".join(map(str, parts)))
    if java.wait_exit(60) != 0:
        fail(f"elect-leaders exited with {java.p.returncode}: {java.tail()} (stderr: {java.log_path})")
    return {int(line.split()[1]): line.split()[2] for line in java.snapshot() if line.startswith("ELECT ")}


def leader_everywhere(cl, partition):
    """The leader of TOPIC's `partition` if every live broker's Metadata agrees on it."""
    leaders = {metadata(n.port, [TOPIC])[3][TOPIC][partition][1] for n in cl.live()}
    return leaders.pop() if len(leaders) == 1 else None


def elect_leaders(cl, state):
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(TOPIC, 3, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(timeout=30)
    parts, _ = wait_for("every partition led by its preferred replica",
                        lambda: (lambda ps: ps if all(v[1] == v[2][0] for v in ps.values()) else None)(
                            partitions(cl, TOPIC)), 30)
    preferred = parts[0][2][0]
    other = next(p for p, v in parts.items() if v[2][0] != preferred)
    node = cl.node(preferred)
    node.kill9()
    wait_for("partition 0 led by another broker", lambda: partitions(cl, TOPIC)[0][1] not in (preferred, -1), 30)
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    got = elect(admin, ElectionType.PREFERRED, [(TOPIC, 0)])
    if got != {(TOPIC, 0): "PREFERRED_LEADER_NOT_AVAILABLE"}:
        fail(f"preferred election with broker {preferred} down: {got}")
    java = java_elect(cl, "preferred", [0])
    if java != {0: "PreferredLeaderNotAvailableException"}:
        fail(f"Admin.electLeaders(PREFERRED) with broker {preferred} down: {java}")
    meanwhile = partitions(cl, TOPIC)[0][1]
    node.start()
    wait_for(f"broker {preferred} back in partition 0's ISR", lambda: preferred in partitions(cl, TOPIC)[0][3], 30)
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    got = elect(admin, ElectionType.PREFERRED, [(TOPIC, 0), (TOPIC, other)])
    if got != {(TOPIC, 0): None, (TOPIC, other): "ELECTION_NOT_NEEDED"}:
        fail(f"preferred election of partitions 0 and {other}: {got}")
    _, took = wait_for(f"every broker naming {preferred} leader of partition 0",
                       lambda: leader_everywhere(cl, 0) == preferred, 10)
    got = elect(admin, ElectionType.UNCLEAN, [(TOPIC, 0)])
    if got != {(TOPIC, 0): "ELECTION_NOT_NEEDED"}:
        fail(f"unclean election of a led partition: {got}")
    java = java_elect(cl, "unclean", [0, other])
    if java != {0: "ElectionNotNeededException", other: "ElectionNotNeededException"}:
        fail(f"Admin.electLeaders(UNCLEAN) of led partitions: {java}")
    # Every partition: this topic's are balanced, so none of them is in the answer (other
    # checks' topics may have partitions to move back to a restarted broker).
    got = elect(admin, ElectionType.PREFERRED, None)
    mine = {tp: e for tp, e in got.items() if tp[0] == TOPIC}
    if mine:
        fail(f"an election over every partition named balanced ones: {mine}")
    print(f"# elect-leaders: broker {preferred} (preferred for partition 0) killed: PREFERRED_LEADER_NOT_AVAILABLE "
          f"(librdkafka and Java); restarted: a preferred election gave partition 0 back to it (every broker showed it {took:.2f} s after "
          f"the answer; broker {meanwhile} led it meanwhile), ELECTION_NOT_NEEDED for partition {other} and for an unclean "
          f"election; an election over every partition: {sum(e is None for e in got.values())} elected "
          f"elsewhere, none of these", flush=True)


def auto_rebalance():
    work = os.path.join(os.environ["SLUICE_DATA_DIR"], "rebalance")
    os.makedirs(work, exist_ok=True)
    cl = Cluster(3, overrides=["leader.imbalance.check.interval.seconds=1", "replica.lag.time.max.ms=3000"],
                 work=work)
    try:
        cl.start()
        admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
        admin.create_topics([NewTopic(TOPIC, 3, 3)])[TOPIC].result(timeout=30)
        parts, _ = wait_for("every partition led by its preferred replica",
                            lambda: (lambda ps: ps if all(v[1] == v[2][0] for v in ps.values()) else None)(
                                partitions(cl, TOPIC)), 30)
        preferred = parts[0][2][0]
        node = cl.node(preferred)
        node.kill9()
        wait_for("partition 0 led by another broker", lambda: partitions(cl, TOPIC)[0][1] not in (preferred, -1), 30)
        node.start()
        _, back = wait_for(f"broker {preferred} back in partition 0's ISR",
                           lambda: preferred in partitions(cl, TOPIC)[0][3], 30)
        _, took = wait_for(f"broker {preferred} leading partition 0 again, unasked",
                           lambda: leader_everywhere(cl, 0) == preferred, 15)
    except BaseException:
        cl.print_logs(25)
        raise
    finally:
        cl.stop()
    print(f"# auto-rebalance: broker {preferred} killed and restarted, back in the ISR after {back:.2f} s, "
          f"led partition 0 again {took:.2f} s later (leader.imbalance.check.interval.seconds=1)", flush=True)
