"""The cluster suite's clients-failover check: the official Java client (kafka-clients 4.3.0,
java/TxnClient.java produce-acks) and kafka-python, unmodified, each run an idempotent acks=all
producer into one RF=3 min.insync.replicas=2 topic while the leader of a partition is killed (-9)
and restarted, then another partition's leader. Every record each client had acknowledged is read
back (confluent-kafka) exactly once at its offset, in send order per partition. Takes the running
Cluster and the state dict; see suite.py for the list."""

import os
import threading
import time
from collections import Counter

import kafka
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer

import javaproc
from cluster import list_offsets_latest
from compat import fail
from replicated import partitions, read_all, wait_for

TOPIC = "cluster-clients"
N_PARTITIONS = 3
JAVA_INTERVAL_US = 2000  # 500 records/s
PY_INTERVAL_S = 0.004  # 250 records/s


class PythonProducer(threading.Thread):
    """kafka-python's KafkaProducer (idempotent, acks=all), paced: key = value = prefix + i to
    partition i % N_PARTITIONS until `stop` is set; then a bounded flush."""

    def __init__(self, bs, prefix, stop):
        super().__init__(daemon=True)
        self.bs, self.prefix, self.stop = bs, prefix, stop
        self.acks = {}  # i -> (partition, offset, seconds since the first send)
        self.errors = {}  # i -> error
        self.sent = 0
        self.failure = None
        self.done = threading.Event()

    def _ok(self, i, t0, md):
        self.acks[i] = (md.partition, md.offset, time.monotonic() - t0)

    def _err(self, i, e):
        self.errors[i] = repr(e)

    def run(self):
        try:
            p = KafkaProducer(bootstrap_servers=self.bs.split(","), client_id="compat-cluster-kafka-python",
                              enable_idempotence=True, acks="all", linger_ms=5, request_timeout_ms=10000,
                              delivery_timeout_ms=30000, max_block_ms=15000, reconnect_backoff_max_ms=500)
            try:
                t0 = next_at = time.monotonic()
                while not self.stop.is_set():
                    now = time.monotonic()
                    if now < next_at:
                        time.sleep(next_at - now)
                        continue
                    next_at = max(next_at + PY_INTERVAL_S, now - 0.1)
                    i = self.sent
                    v = f"{self.prefix}{i}".encode()
                    f = p.send(TOPIC, key=v, value=v, partition=i % N_PARTITIONS)
                    self.sent += 1
                    f.add_callback(self._ok, i, t0)
                    f.add_errback(self._err, i)
                p.flush(timeout=45)
            finally:
                p.close(timeout=5)
        except Exception as e:  # noqa: BLE001 - reported by the check
            self.failure = e
        finally:
            self.done.set()


def longest_pauses(acks):
    """{partition: longest time between two acknowledgements in it}."""
    by_part = {}
    for p, _o, t in acks.values():
        by_part.setdefault(p, []).append(t)
    out = {}
    for p, ts in by_part.items():
        ts.sort()
        out[p] = max((b - a for a, b in zip(ts, ts[1:])), default=0.0)
    return out


def verify_client(name, prefix, acks, errors, sent, got):
    """Every acknowledged record of this client once at its offset; offsets increase with the
    send order in each partition."""
    if errors:
        sample = sorted(errors.items())[:3]
        fail(f"{name}: {len(errors)} of {sent} records failed, e.g. {sample}")
    if len(acks) != sent:
        fail(f"{name}: {sent} sent, {len(acks)} acknowledged (no error reported for the rest)")
    last = {}
    for i in sorted(acks):
        p, o, _ = acks[i]
        if p != i % N_PARTITIONS:
            fail(f"{name}: record {i} acknowledged on partition {p}, sent to {i % N_PARTITIONS}")
        if o <= last.get(p, -1):
            fail(f"{name}: record {i} acknowledged at {p}/{o}, after an earlier record at {p}/{last[p]}")
        last[p] = o
    wrong = [(i, acks[i][:2], got.get(acks[i][:2])) for i in sorted(acks)
             if got.get(acks[i][:2]) != f"{prefix}{i}".encode()]
    if wrong:
        fail(f"{name}: {len(wrong)} acknowledged records not read back at their offsets, e.g. "
             f"(record, (partition, offset), read there) {wrong[:3]}")


def clients_failover(cl, state):
    javaproc.classpath()  # fails at once without the Java client
    javaproc.all_brokers_listed(cl)
    bs = cl.bootstrap()
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, N_PARTITIONS, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(
        timeout=30)
    wait_for("every partition led with three in sync",
             lambda: all(v[0] == 0 and v[1] >= 0 and len(v[3]) == 3 for v in partitions(cl, TOPIC).values()), 20)
    stop_file = os.path.join(cl.work, "clients-failover.stop")
    java = javaproc.Proc(cl, "produce-acks", "produce-acks", "--topic", TOPIC, "--partitions", N_PARTITIONS,
                         "--prefix", "j-", "--stop-file", stop_file, "--interval-us", JAVA_INTERVAL_US,
                         "--max-run-ms", 90000)
    try:
        _run(cl, java, stop_file)
    finally:
        if java.alive():
            java.kill9()


def _run(cl, java, stop_file):
    stop = threading.Event()
    py = PythonProducer(cl.bootstrap(), "k-", stop)
    kills = []
    try:
        java.wait_line(lambda ln: ln == "STARTED", 30, "STARTED (its first acknowledgement)")
        py.start()
        wait_for("kafka-python's first acknowledgement", lambda: py.acks or py.done.is_set(), 20)
        if py.failure:
            fail(f"kafka-python producer: {py.failure!r}")
        # Kill -9 the leader of partition 0, restart it; then the leader of another partition
        # (one led by another broker if there is one).
        for round_ in range(2):
            time.sleep(2.0)
            parts = partitions(cl, TOPIC)
            cands = [0] if round_ == 0 else [p for p in range(1, N_PARTITIONS) if parts[p][1] != kills[0][1]] or [1]
            part = cands[0]
            leader = parts[part][1]
            node = cl.node(leader)
            node.kill9()
            kills.append((part, leader))
            time.sleep(3.0)
            node.start(wait=False)
            node.wait_listening()
            wait_for("every ISR back to three members",
                     lambda: all(len(v[3]) == 3 for v in partitions(cl, TOPIC).values()), 30)
        time.sleep(2.0)
    finally:
        open(stop_file, "w").close()
        stop.set()
    rc = java.wait_exit(60)
    if rc is None:
        java.kill9()
        fail(f"the Java producer did not finish within 60 s of the stop; last lines: {java.tail(3)}")
    if not py.done.wait(60):
        fail("the kafka-python producer did not finish within 60 s of the stop (flush stuck)")
    if rc != 0:
        fail(f"the Java producer exited with {rc}: {java.tail(3)} (stderr: {java.log_path})")
    if py.failure:
        fail(f"kafka-python producer: {py.failure!r}")
    j_acks, j_errors, j_sent = javaproc.parse_java(java.snapshot())
    if j_sent is None:
        fail(f"no SENT line from the Java producer: {java.tail(3)}")

    ends = {}
    for p, v in partitions(cl, TOPIC).items():
        code, end = list_offsets_latest(cl.node(v[1]).port, TOPIC, p)
        if code != 0:
            fail(f"ListOffsets of partition {p} at its leader {v[1]}: error {code}")
        ends[p] = end
    total = sum(ends.values())
    got = read_all(cl.bootstrap(), TOPIC, N_PARTITIONS, total)
    j_pause, k_pause = longest_pauses(j_acks), longest_pauses(py.acks)
    fmt = lambda d: ", ".join(f"{p}: {d[p]:.2f} s" for p in sorted(d))  # noqa: E731
    print(f"# clients-failover: killed -9 and restarted the leader of partition {kills[0][0]} (broker {kills[0][1]}), "
          f"then of partition {kills[1][0]} (broker {kills[1][1]}); kafka-clients 4.3.0: {j_sent} sent, "
          f"{len(j_acks)} acknowledged, longest pause between acks per partition {{{fmt(j_pause)}}}; "
          f"kafka-python {kafka.__version__}: {py.sent} sent, {len(py.acks)} acknowledged, longest pause "
          f"{{{fmt(k_pause)}}}; read back {len(got)} of {total} records", flush=True)
    if len(got) != total:
        fail(f"read back {len(got)} records, the end offsets {ends} say {total}")
    counts = Counter(got.values())
    dups = sorted(v for v, c in counts.items() if c > 1)
    if dups:
        fail(f"{len(dups)} records written more than once, e.g. {[(v, counts[v]) for v in dups[:5]]}")
    verify_client("kafka-clients 4.3.0", "j-", j_acks, j_errors, j_sent, got)
    verify_client(f"kafka-python {kafka.__version__}", "k-", py.acks, py.errors, py.sent, got)
    # In each partition, each client's records (acknowledged or not) in its send order.
    for prefix in ("j-", "k-"):
        for p in range(N_PARTITIONS):
            idx = [int(v[len(prefix):]) for (q, _o), v in sorted(got.items())
                   if q == p and v.decode().startswith(prefix)]
            bad = next((n for n in range(1, len(idx)) if idx[n] <= idx[n - 1]), None)
            if bad is not None:
                fail(f"partition {p}: {prefix}{idx[bad]} after {prefix}{idx[bad - 1]} (send order not kept)")
