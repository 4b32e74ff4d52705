"""The cluster suite's replication checks (RF=3 and RF=2 topics), with confluent-kafka and raw
requests. Each takes the running Cluster and a state dict; see suite.py for the list."""

import os
import signal
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

import compat
from cluster import list_offsets_latest, metadata, quorum_leader
from compat import fail

NOT_ENOUGH_REPLICAS = 19
LEADER_NOT_AVAILABLE = 5


def wait_for(what, check, timeout, step=0.1):
    t0 = time.monotonic()
    last = None
    for _ in compat.deadline_loop(timeout, step=step):
        try:
            last = check()
        except OSError:
            last = None
        if last:
            return last, time.monotonic() - t0
    fail(f"{what}: not within {timeout} s (last: {last})")


def partitions(cl, topic):
    """{partition: (error, leader, replicas, isr, offline)} from a live node."""
    node = cl.live()[0]
    return metadata(node.port, [topic])[3][topic]


def controller_id(cl):
    """The quorum's leader (DescribeQuorum through a live broker)."""
    return quorum_leader(cl.live()[0].port)


def read_all(bs, topic, n_partitions, want, timeout=30):
    """{(partition, offset): value} read from offset 0 until `want` records or `timeout`."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "compat-cluster-reader", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(n_partitions)])
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got[(m.partition(), m.offset())] = m.value()
    c.close()
    return got


def failover(cl, state):
    """An idempotent acks=all producer through kill -9 and restart of two leaders in turn."""
    topic = "cluster-replicated"
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})])[topic].result(timeout=30)
    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 60000})
    acked, errors, ack_times = {}, [], {}

    def on_delivery(err, m):
        if err is not None:
            errors.append(err)
            return
        acked[(m.partition(), m.offset())] = m.value()
        ack_times.setdefault(m.partition(), []).append(time.monotonic())

    plan = [(2.0, "kill", 0), (5.0, "start", 0), (7.0, "kill", 1), (10.0, "start", 1)]
    victims, kills = {}, []
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 13:
        now = time.monotonic() - t0
        while plan and plan[0][0] <= now:
            _, action, part = plan.pop(0)
            if action == "kill":
                leader = partitions(cl, topic)[part][1]
                node = cl.node(leader)
                node.kill9()
                victims[part] = node
                kills.append((part, leader, time.monotonic()))
            else:
                victims[part].start(wait=False)
        try:
            p.produce(topic, value=f"r-{i}".encode(), partition=i % 3, on_delivery=on_delivery)
            i += 1
        except BufferError:
            p.poll(0.05)
            continue
        p.poll(0)
        if i % 500 == 0:
            time.sleep(0.01)
    left = p.flush(60)
    for n in victims.values():
        n.wait_listening()
    if left or errors:
        fail(f"{left} undelivered, errors {[str(e) for e in errors[:3]]}")
    # The partition whose leader each kill hit: its longest pause between acknowledgements
    # around the kill (the failover as the producer saw it).
    gaps = []
    for part, leader, at in kills:
        times = [t for t in ack_times.get(part, []) if at - 1 <= t <= at + 10]
        pause = max((b - a for a, b in zip(times, times[1:])), default=float("nan"))
        gaps.append(f"partition {part} (leader {leader} killed): no ack for {pause:.2f} s")
    wait_for("every ISR back to three members",
             lambda: all(len(v[3]) == 3 for v in partitions(cl, topic).values()), 30)
    got = read_all(cl.bootstrap(), topic, 3, len(acked))
    missing = [k for k, v in acked.items() if got.get(k) != v]
    values = list(got.values())
    duplicated = len(values) - len(set(values))
    print(f"# failover: {i} sent, {len(acked)} acknowledged; {'; '.join(gaps)}; read back {len(got)}, "
          f"{len(missing)} missing, {duplicated} duplicated", flush=True)
    if missing:
        fail(f"{len(missing)} acknowledged records lost or moved, e.g. {missing[:5]}")
    if duplicated:
        fail(f"{duplicated} records written twice")


def follower_pause(cl, state):
    """A follower stopped with SIGSTOP leaves the ISR after replica.lag.time.max.ms, and
    rejoins after SIGCONT."""
    topic = "cluster-pause"
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(timeout=30)
    leader = partitions(cl, topic)[0][1]
    ctl = controller_id(cl)
    follower = next(n for n in cl.nodes if n.id not in (leader, ctl))
    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "1", "linger.ms": 5})
    stopped = time.monotonic()
    follower.pause()
    try:
        for i in range(200):
            p.produce(topic, value=f"p-{i}".encode())
            p.poll(0)
            time.sleep(0.01)
        p.flush(10)
        wait_for(f"follower {follower.id} out of the ISR", lambda: follower.id not in partitions(cl, topic)[0][3], 20)
        took = time.monotonic() - stopped
    finally:
        follower.resume()
    _, back = wait_for(f"follower {follower.id} back in the ISR",
                       lambda: follower.id in partitions(cl, topic)[0][3], 30)
    print(f"# follower-pause: follower {follower.id} left the ISR {took:.1f} s after SIGSTOP "
          f"(replica.lag.time.max.ms=3000), back {back:.1f} s after SIGCONT", flush=True)


def min_isr(cl, state):
    """With min.insync.replicas=3 and a follower down: acks=all gets NOT_ENOUGH_REPLICAS; acks=1
    is written but stays above the high watermark until the follower is back."""
    topic = "cluster-min-isr"
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "3"})])[topic].result(timeout=30)
    bs = cl.bootstrap()
    before, errors = {}, []
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 0})
    p.produce(topic, value=b"before", on_delivery=lambda e, m: errors.append(e) if e else before.update({m.offset(): 1}))
    p.flush(10)
    if errors or len(before) != 1:
        fail(f"acks=all with every replica up: {errors}")
    leader = partitions(cl, topic)[0][1]
    ctl = controller_id(cl)
    follower = next(n for n in cl.nodes if n.id not in (leader, ctl))
    follower.kill9()
    wait_for(f"follower {follower.id} out of the ISR", lambda: follower.id not in partitions(cl, topic)[0][3], 20)
    codes = []
    p = Producer({"bootstrap.servers": bs, "acks": "all", "retries": 0, "message.timeout.ms": 5000})
    p.produce(topic, value=b"all", on_delivery=lambda e, m: codes.append(e.code() if e else 0))
    p.flush(10)
    if codes != [NOT_ENOUGH_REPLICAS]:
        fail(f"acks=all with ISR 2 < min ISR 3: {codes}, expected [{NOT_ENOUGH_REPLICAS}]")
    one = []
    p1 = Producer({"bootstrap.servers": bs, "acks": "1", "linger.ms": 0})
    p1.produce(topic, value=b"one", on_delivery=lambda e, m: one.append(e or m.offset()))
    p1.flush(10)
    if len(one) != 1 or not isinstance(one[0], int):
        fail(f"acks=1 with ISR 2: {one}")
    lnode = cl.node(leader)
    _, hw = list_offsets_latest(lnode.port, topic, 0)
    if hw > one[0]:
        fail(f"the acks=1 record at {one[0]} is below the high watermark {hw} while the ISR is short")
    follower.start()
    wait_for("the high watermark past the acks=1 record",
             lambda: list_offsets_latest(lnode.port, topic, 0)[1] > one[0], 30)
    got = read_all(bs, topic, 1, 2, timeout=15)
    if got.get((0, one[0])) != b"one":
        fail(f"the acks=1 record not read back once the ISR recovered: {got}")
    print(f"# min-isr: acks=all got NOT_ENOUGH_REPLICAS with 2 of 3 in the ISR; acks=1 at {one[0]} "
          f"stayed above the HW ({hw}) until the follower was back", flush=True)


def unclean(cl, state):
    """A partition whose whole ISR is gone stays offline; with unclean.leader.election.enable
    set, the out-of-sync replica leads and what it never had is gone, on every replica."""
    topic = "cluster-unclean"
    ctl = controller_id(cl)
    a, b = [n for n in cl.nodes if n.id != ctl]
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    # confluent-kafka 2.16 wants the partition count beside the assignment (and no factor).
    nt = NewTopic(topic, 1, replica_assignment=[[a.id, b.id]])
    admin.create_topics([nt])[topic].result(timeout=30)
    p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "linger.ms": 0})
    for i in range(50):
        p.produce(topic, value=f"both-{i}".encode())
    p.flush(10)
    wait_for("both replicas in sync", lambda: len(partitions(cl, topic)[0][3]) == 2, 10)
    # Every node is a voter: b may be silent only briefly (with a dead too, the quorum needs
    # it), and must not be fenced (broker.session.timeout.ms) before it left the ISR by lag.
    b.pause()
    try:
        # Records b never gets (a follower at the log end is never out of sync). Its last
        # fetch, a long poll, is answered into its socket first (replica.fetch.wait.max.ms).
        time.sleep(1.0)
        p1 = Producer({"bootstrap.servers": a.bootstrap, "acks": "1", "linger.ms": 0})
        for i in range(30):
            p1.produce(topic, value=f"only-a-{i}".encode())
        p1.flush(10)
        wait_for(f"{b.id} out of the ISR", lambda: partitions(cl, topic)[0][3] == [a.id], 8)
        _, a_end = list_offsets_latest(a.port, topic, 0)
        a.kill9()
    finally:
        b.resume()
    wait_for("the partition offline", lambda: partitions(cl, topic)[0][1] == -1, 20)
    time.sleep(3)
    part = partitions(cl, topic)[0]
    if part[1] != -1 or part[0] != LEADER_NOT_AVAILABLE:
        fail(f"unclean election off: {b.id} (out of sync) was elected: {part}")
    res = ConfigResource("topic", topic, set_config={"unclean.leader.election.enable": "true"})
    admin.alter_configs([res])[res].result(timeout=30)
    wait_for(f"{b.id} elected uncleanly", lambda: partitions(cl, topic)[0][1] == b.id, 20)
    _, b_end = list_offsets_latest(b.port, topic, 0)
    a.start()
    wait_for(f"{a.id} back in the ISR", lambda: len(partitions(cl, topic)[0][3]) == 2, 30)
    got = read_all(cl.bootstrap(), topic, 1, b_end, timeout=15)
    if len(got) != b_end or any(v.startswith(b"only-a") for v in got.values()):
        fail(f"after the unclean election {len(got)} records read, expected {b_end} without a's tail")
    a_files = sum(os.path.getsize(os.path.join(a.data, f"{topic}-0", f))
                  for f in os.listdir(os.path.join(a.data, f"{topic}-0")) if f.endswith(".log"))
    b_files = sum(os.path.getsize(os.path.join(b.data, f"{topic}-0", f))
                  for f in os.listdir(os.path.join(b.data, f"{topic}-0")) if f.endswith(".log"))
    if a_files != b_files:
        fail(f"{a.id} did not truncate to the new leader's log: {a_files} bytes of log, the leader has {b_files}")
    print(f"# unclean: ISR gone -> offline while unclean election is off; on: {b.id} leads with {b_end} "
          f"records, {a_end - b_end} written only to {a.id} are gone there too (truncated on rejoin)", flush=True)

