"""The cluster suite's eos-failover check: a consume-transform-produce loop with the official Java
client (kafka-clients 4.3.0, java/TxnClient.java eos-loop: a read_committed consumer in a group,
a transactional producer, sendOffsetsToTransaction per poll) copies an input topic to an output
topic (both RF=3, min.insync.replicas=2) while its input is written; the broker coordinating the
loop's transactional id is killed (-9) and restarted, then the broker coordinating its group. The
loop goes on through both and a read_committed read of the output has every input exactly once,
in input order per partition; the group's offsets are the input's ends. Takes the running Cluster
and the state dict; see suite.py for the list."""

import re
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import javaproc
from cluster import list_offsets_latest
from compat import fail
from group_failover import coordinator_of
from replicated import partitions, wait_for
from txn_markers import coordinator_partition, txn_coordinator

IN, OUT = "cluster-eos-in", "cluster-eos-out"
GROUP, TXN_ID = "compat-cluster-eos-group", "compat-cluster-eos-txn"
N_PARTITIONS = 3
N_INPUT = 4000
FEED_INTERVAL_S = 0.005  # 200 inputs/s
# The last inputs wait until both kills are over, so the loop is still at work through them.
HELD_BACK = 300
DOWN_S = 2.0
TXN_TIMEOUT_MS = 30000


class Feeder(threading.Thread):
    """An idempotent acks=all confluent-kafka producer writing input i (key = value = "i") to
    partition i % N_PARTITIONS, paced; the last HELD_BACK once `release` is set."""

    def __init__(self, bs, release):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                           "message.timeout.ms": 60000})
        self.release = release
        self.errors, self.acked, self.left = [], 0, None
        self.done = threading.Event()

    def _report(self, err, _m):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.acked += 1

    def run(self):
        try:
            next_at = time.monotonic()
            for i in range(N_INPUT):
                if i == N_INPUT - HELD_BACK:
                    self.release.wait(90)
                    next_at = time.monotonic()
                now = time.monotonic()
                if now < next_at:
                    time.sleep(next_at - now)
                next_at = max(next_at + FEED_INTERVAL_S, time.monotonic() - 0.1)
                s = str(i).encode()
                while True:
                    try:
                        self.p.produce(IN, key=s, value=s, partition=i % N_PARTITIONS, on_delivery=self._report)
                        break
                    except BufferError:
                        self.p.poll(0.05)
                self.p.poll(0)
            self.left = self.p.flush(60)
        finally:
            self.done.set()


def read_committed_parts(bs, topic, want, timeout=30):
    """{partition: [values in offset order]} a read_committed consumer sees from offset 0, until
    `want` records or `timeout`; then a second more for anything that should not be there."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "compat-cluster-eos-reader", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.assign([TopicPartition(topic, p, 0) for p in range(N_PARTITIONS)])
    got, n = {}, 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.setdefault(m.partition(), []).append(m.value().decode())
            n += 1
        elif n >= want:
            deadline = min(deadline, time.monotonic() + 1.0)
    c.close()
    return got


def total(line):
    m = re.search(r"\btotal=(\d+)", line)
    return int(m.group(1)) if m else -1


def leader_of_key(cl, internal_topic, key):
    """The leader of the key's partition of __transaction_state or __consumer_offsets."""
    parts = partitions(cl, internal_topic)
    return parts[coordinator_partition(key, len(parts))][1]


def eos_failover(cl, state):
    javaproc.classpath()  # fails at once without the Java client
    javaproc.all_brokers_listed(cl)
    bs = cl.bootstrap()
    admin = AdminClient({"bootstrap.servers": bs})
    fs = admin.create_topics([NewTopic(t, N_PARTITIONS, 3, config={"min.insync.replicas": "2"}) for t in (IN, OUT)])
    for f in fs.values():
        f.result(timeout=30)
    for t in (IN, OUT):
        wait_for(f"every partition of {t} led with three in sync",
                 lambda: all(v[0] == 0 and v[1] >= 0 and len(v[3]) == 3 for v in partitions(cl, t).values()), 20)
    loop = javaproc.Proc(cl, "eos-loop", "eos-loop", "--in", IN, "--out", OUT, "--group", GROUP, "--txn-id", TXN_ID,
                         "--timeout-ms", TXN_TIMEOUT_MS, "--expect", N_INPUT, "--partitions", N_PARTITIONS,
                         "--max-run-ms", 150000)
    try:
        _run(cl, loop)
    finally:
        if loop.alive():
            loop.kill9()


def _run(cl, loop):
    release = threading.Event()
    feeder = Feeder(cl.bootstrap(), release)
    kills = []
    try:
        loop.wait_line(lambda ln: ln.startswith("INIT"), 40, "INIT (initTransactions)")
        feeder.start()
        loop.wait_line(lambda ln: ln.startswith("ASSIGNED parts=3"), 40, "an assignment of the 3 partitions")
        loop.wait_line(lambda ln: ln.startswith("PROGRESS"), 30, "a first committed transaction")

        def kill_restart(what, node_id, internal_topic, key):
            node = cl.node(node_id)
            at = len(loop.snapshot())
            before = max((total(ln) for ln in loop.snapshot() if ln.startswith("PROGRESS")), default=0)
            t0 = time.monotonic()
            node.kill9()
            time.sleep(DOWN_S)
            node.start(wait=False)
            node.wait_listening()
            i, _ = loop.wait_line(lambda ln: ln.startswith("PROGRESS") and total(ln) > before, 40,
                                  f"a commit after the kill of the {what} (broker {node_id})", start=at)
            took = loop.line_time(i) - t0
            coord = leader_of_key(cl, internal_topic, key)
            notes = [ln for ln in loop.snapshot()[at:] if not ln.startswith("PROGRESS")]
            wait_for("every ISR back to three members", lambda: all(
                len(v[3]) == 3 for t in (IN, OUT) for v in partitions(cl, t).values()), 30)
            kills.append((what, node_id, took, coord, notes))

        kill_restart("transaction coordinator", txn_coordinator(cl, TXN_ID), "__transaction_state", TXN_ID)
        (group_coord, _), _ = wait_for("the group's coordinator", lambda: coordinator_of(cl.bootstrap(), GROUP), 20,
                                       step=0.2)
        kill_restart("group coordinator", group_coord, "__consumer_offsets", GROUP)
    finally:
        release.set()
    if not feeder.done.wait(90):
        fail("the input producer did not finish within 90 s")
    if feeder.errors or feeder.left:
        fail(f"input not all acknowledged: {feeder.left} left, errors {feeder.errors[:3]}")
    rc = loop.wait_exit(60)
    if rc is None:
        loop.kill9()
        fail(f"the loop did not finish within 60 s of the last input; last lines: {loop.tail(4)}")
    lines = loop.snapshot()
    done = next((ln for ln in lines if ln.startswith("DONE")), None)
    if rc != 0 or done is None:
        fail(f"the loop exited with {rc}: {' | '.join(ln for ln in lines if not ln.startswith('PROGRESS'))[-600:]} "
             f"(stderr: {loop.log_path})")
    ends = {}
    for p, v in partitions(cl, IN).items():
        code, ends[p] = list_offsets_latest(cl.node(v[1]).port, IN, p)
        if code != 0:
            fail(f"ListOffsets of {IN} partition {p} at its leader {v[1]}: error {code}")
    want_ends = {p: len(range(p, N_INPUT, N_PARTITIONS)) for p in range(N_PARTITIONS)}
    if ends != want_ends:
        fail(f"the input's end offsets are {ends}, {N_INPUT} inputs acknowledged once each make {want_ends}")
    got = read_committed_parts(cl.bootstrap(), OUT, N_INPUT)
    n = sum(len(v) for v in got.values())
    aborts = sum(1 for ln in lines if ln.startswith("ABORTING"))
    desc = "; ".join(f"{what} (broker {b}) killed -9, down {DOWN_S:.0f} s: next commit {took:.2f} s after the kill, "
                     f"coordinator then {coord}{' (' + ' | '.join(notes)[:300] + ')' if notes else ''}"
                     for what, b, took, coord, notes in kills)
    print(f"# eos-failover: {desc}; loop {done}, {aborts} aborted; read_committed {OUT}: {n} records for "
          f"{N_INPUT} inputs", flush=True)
    for p in range(N_PARTITIONS):
        rs = got.get(p, [])
        want = [f"out-{i}" for i in range(p, N_INPUT, N_PARTITIONS)]
        if rs != want:
            seen = {}
            for v in rs:
                seen[v] = seen.get(v, 0) + 1
            dups = [v for v, c in seen.items() if c > 1]
            missing = [v for v in want if v not in seen]
            order = next((j for j, (a, b) in enumerate(zip(rs, want)) if a != b), None)
            fail(f"{OUT} partition {p} (read_committed): {len(rs)} records, want {len(want)}; {len(dups)} duplicated "
                 f"(first {dups[:3]}), {len(missing)} missing (first {missing[:3]}), first difference at #{order}")
    c = Consumer({"bootstrap.servers": cl.bootstrap(), "group.id": GROUP})
    committed = c.committed([TopicPartition(IN, p) for p in range(N_PARTITIONS)], timeout=20)
    c.close()
    offsets = {tp.partition: tp.offset for tp in committed}
    if offsets != ends:
        fail(f"{GROUP}'s committed offsets {offsets}, want the input's ends {ends}")
