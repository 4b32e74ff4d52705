"""The cluster suite's controller-membership check (issue 12): a voter whose disk died replaced
through the Raft library's membership change, as the README's steps do it, with kafka-clients
4.3.0's `Admin.removeRaftVoter` / `addRaftVoter` (KIP-853's RemoveRaftVoter / AddRaftVoter, what
`kafka-metadata-quorum remove-controller / add-controller` send). Its own three nodes:

- replace-voter: records written to an RF=3 topic; a voter that does not lead the quorum is
  killed (-9) and its data dir deleted (the dead disk); removed as a voter (DescribeQuorum: two
  voters; removing it again: VoterNotFoundException); started empty with its id outside
  `controller.quorum.voters` (it waits, not forming a quorum of its own); added back
  (DescribeQuorum: three voters, the node caught up; adding it again: DuplicateVoterException);
  it is back in the topic's ISR with every record; and it votes: with another voter killed, the
  quorum of it and the third still takes a new topic.
"""

import os
import shutil
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import javaproc
from cluster import Cluster, describe_quorum
from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-voters"
N_RECORDS = 500


def run(suite):
    work = os.path.join(os.environ["SLUICE_DATA_DIR"], "voters")
    os.makedirs(work, exist_ok=True)
    cl = Cluster(3, overrides=["replica.lag.time.max.ms=3000", "auto.leader.rebalance.enable=false"], work=work)
    try:
        cl.start()
        suite.check("replace-voter", replace_voter, cl)
    finally:
        if suite.failures:
            cl.print_logs(25)
        cl.stop()


def java(cl, name, *args):
    proc = javaproc.Proc(cl, name, *args)
    if proc.wait_exit(90) != 0:
        fail(f"{args[0]} exited with {proc.p.returncode}: {proc.tail()} (stderr: {proc.log_path})")
    return next((ln for ln in proc.snapshot() if ln.startswith(("ADD_VOTER ", "REMOVE_VOTER "))), "")


def quorum(cl):
    """(leader, {voter: log end}) through a live node."""
    for n in cl.live():
        try:
            error, leader, _epoch, _hw, voters, _observers = describe_quorum(n.port)
        except OSError:
            continue
        if not error:
            return leader, voters
    return None, {}


def read_all(bs):
    c = Consumer({"bootstrap.servers": bs, "group.id": "compat-voters", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < N_RECORDS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.close()
    return got


def replace_voter(cl):
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(timeout=30)
    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "enable.idempotence": True})
    for i in range(N_RECORDS):
        p.produce(TOPIC, value=f"v-{i}".encode(), partition=0)
    if p.flush(30) != 0:
        fail("records not acknowledged")
    leader, voters = quorum(cl)
    if sorted(voters) != [1, 2, 3]:
        fail(f"voters at the start: {sorted(voters)}")
    victim = next(n for n in cl.nodes if n.id != leader)
    others = [n for n in cl.nodes if n is not victim]

    # The dead disk: the node gone with its data.
    victim.kill9()
    shutil.rmtree(victim.data)
    got = java(cl, "remove-voter", "remove-raft-voter", "--id", victim.id)
    if got != f"REMOVE_VOTER {victim.id} NONE":
        fail(f"removeRaftVoter({victim.id}): {got!r}")
    (_, voters), _ = wait_for("two voters", lambda: (lambda q: q if sorted(q[1]) == sorted(n.id for n in others) else None)(
        quorum(cl)), 15)
    again = java(cl, "remove-voter-again", "remove-raft-voter", "--id", victim.id)
    if "VoterNotFoundException" not in again:
        fail(f"removing a non-voter: {again!r}")

    # Started empty, outside controller.quorum.voters: it waits to be added.
    outside = ",".join(f"{n.id}@{n.host}:{n.cport}" for n in others)
    victim.extra = [f"controller.quorum.voters={outside}"]
    victim.start(wait=False)
    time.sleep(2.0)
    if victim.proc.poll() is not None:
        fail(f"node {victim.id} exited ({victim.proc.returncode}) while waiting to be added")
    _, voters = quorum(cl)
    if victim.id in voters:
        fail(f"node {victim.id} is a voter before it was added: {voters}")
    got = java(cl, "add-voter", "add-raft-voter", "--id", victim.id, "--host", victim.host, "--port", victim.cport)
    if got != f"ADD_VOTER {victim.id} NONE":
        fail(f"addRaftVoter({victim.id}): {got!r}")
    victim.wait_listening()
    (_, voters), _ = wait_for("three voters, the new one caught up",
                         lambda: (lambda q: q if sorted(q[1]) == [1, 2, 3] and q[1][victim.id] > 0 else None)(
                             quorum(cl)), 15)
    dup = java(cl, "add-voter-again", "add-raft-voter", "--id", victim.id, "--host", victim.host, "--port",
               victim.cport)
    if "DuplicateVoterException" not in dup:
        fail(f"adding a voter twice: {dup!r}")
    wait_for(f"node {victim.id} back in the ISR", lambda: sorted(partitions(cl, TOPIC)[0][3]) == [1, 2, 3], 30)

    # It votes: one of the others down, the quorum is it and the third.
    down = next(n for n in others if n.id != leader) if leader in (n.id for n in others) else others[0]
    down.kill9()
    t0 = time.monotonic()
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})  # kept: a collected client fails its futures
    admin.create_topics([NewTopic(TOPIC + "-after", 1, 1)])[TOPIC + "-after"].result(timeout=30)
    took = time.monotonic() - t0
    down.start()
    wait_for("every ISR whole", lambda: sorted(partitions(cl, TOPIC)[0][3]) == [1, 2, 3], 30)
    got_records = read_all(cl.bootstrap())
    if got_records != [f"v-{i}".encode() for i in range(N_RECORDS)]:
        fail(f"{len(got_records)} of {N_RECORDS} records read back after the replacement")
    victim.extra = []  # a later restart may list it among the voters again
    print(f"# replace-voter: node {victim.id} killed with its data dir deleted, removed as a voter "
          f"(voters {sorted(n.id for n in others)}), started empty outside controller.quorum.voters, added "
          f"back (voters {sorted(voters)}; its metadata log end {voters[victim.id]}); the quorum of it and "
          f"one other created a topic {took:.1f} s after node {down.id} was killed; {N_RECORDS} records intact",
          flush=True)
