"""The cluster benchmark (see bench/README.md, "Cluster"): three Sluice nodes (combined
broker+controller) on loopback, driven by librdkafka's rdkafka_performance and confluent-kafka.

    cluster.py RDKAFKA_PERFORMANCE SLUICE_BIN [ROUNDS]

Each round, in the same cluster: R1 produce 1 KiB acks=all to an RF=1 topic, then R3 the same
to an RF=3 min.insync.replicas=2 topic (6 partitions each, linger 5 ms); C3 consume the RF=3
topic from the beginning; L3 produce latency at a fixed rate to the RF=3 topic. Then F: the
failover time, from kill -9 of a partition's leader to the first acknowledged acks=all write of
a record sent after the kill (a producer sending every 2 ms), three times, then FQ, the same
when the node killed leads the controller quorum too (an election first); and the brokers' peak
RSS. Prints a table and writes bench/out/cluster.txt.
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "compat-tests", "lib"))

PROD_RE = re.compile(r"^% (\d+) messages produced \((\d+) bytes\), (\d+) delivered .* in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONS_RE = re.compile(r"^% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")
R_MSGS = int(os.environ.get("R_MSGS", "400000"))
C_MSGS = int(os.environ.get("C_MSGS", "400000"))
L_RATE = int(os.environ.get("L_RATE", "5000"))
L_MSGS = int(os.environ.get("L_MSGS", "50000"))
PRODUCER_X = ["-X", "linger.ms=5", "-X", "batch.size=1048576", "-X", "batch.num.messages=100000",
              "-X", "queue.buffering.max.messages=1000000", "-X", "queue.buffering.max.kbytes=2097151",
              "-X", "message.timeout.ms=60000"]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssWatch:
    """Samples every node's RSS every 200 ms; keeps the peak per node."""

    def __init__(self, cluster):
        self.cluster, self.peak, self.stop = cluster, {}, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            for n in self.cluster.nodes:
                if n.alive():
                    self.peak[n.id] = max(self.peak.get(n.id, 0.0), rss_mib(n.proc.pid))
            time.sleep(0.2)


def perf(rp, bs, args, timeout=120):
    out = subprocess.run([rp, "-b", bs] + args, capture_output=True, text=True, timeout=timeout)
    prod = cons = None
    for line in out.stdout.splitlines() + out.stderr.splitlines():
        prod = PROD_RE.match(line) or prod
        cons = CONS_RE.match(line) or cons
    return prod, cons, out


def produce(rp, bs, topic, n):
    prod, _, out = perf(rp, bs, ["-P", "-t", topic, "-s", "1024", "-c", str(n), "-a", "-1"] + PRODUCER_X)
    if not prod or int(prod.group(3)) != n:
        raise RuntimeError(f"produce to {topic}: {out.stdout[-500:]} {out.stderr[-500:]}")
    return int(prod.group(5)), float(prod.group(6))


def consume(rp, bs, topic, n):
    parts = [a for p in range(6) for a in ("-p", str(p))]
    _, cons, out = perf(rp, bs, ["-C", "-t", topic, "-o", "beginning", "-e", "-c", str(n)] + parts)
    if not cons:
        raise RuntimeError(f"consume {topic}: {out.stdout[-500:]}")
    return int(cons.group(4)), float(cons.group(5))


def latency(rp, bs, topic, work):
    path = os.path.join(work, "lat.txt")
    perf(rp, bs, ["-P", "-t", topic, "-s", "1024", "-c", str(L_MSGS), "-a", "-1", "-r", str(L_RATE), "-l", "-A", path]
         + PRODUCER_X + ["-X", "linger.ms=0.5"])
    with open(path) as f:
        vals = sorted(int(x) for x in f.read().split()[L_MSGS // 10:])
    q = lambda p: vals[min(len(vals) - 1, int(p * len(vals)))] / 1000.0  # noqa: E731
    return q(0.5), q(0.99)


def failover(cl, topic, trials=3, quorum_leader=False):
    """Seconds from kill -9 of partition 0's leader to the first ack of a record sent after.
    With `quorum_leader`, the node leading the controller quorum is killed instead, and the
    partition timed is one it leads (skipped, NaN, if it leads none)."""
    from cluster import metadata
    from cluster import quorum_leader as find_quorum_leader
    from confluent_kafka import Producer

    out = []
    for _ in range(trials):
        parts = metadata(cl.live()[0].port, [topic])[3][topic]
        if quorum_leader:
            leader = find_quorum_leader(cl.live()[0].port)
            mine = sorted(p for p, v in parts.items() if v[1] == leader)
            if not mine:
                out.append(float("nan"))
                continue
            part = mine[0]
        else:
            part, leader = 0, parts[0][1]
        node = cl.node(leader)
        p = Producer({"bootstrap.servers": cl.bootstrap(), "acks": "all", "enable.idempotence": True,
                      "linger.ms": 0, "message.timeout.ms": 60000})
        acks = []
        for i in range(200):  # warm: connections and metadata in place
            p.produce(topic, value=b"warm", partition=part, on_delivery=lambda e, m: None)
        p.flush(10)
        node.kill9()
        killed = time.monotonic()
        while not acks and time.monotonic() - killed < 30:
            sent = time.monotonic()
            p.produce(topic, value=b"after", partition=part,
                      on_delivery=lambda e, m, s=sent: acks.append(time.monotonic()) if e is None and s >= killed else None)
            p.poll(0.002)
        out.append(acks[0] - killed if acks else float("nan"))
        p.flush(30)
        node.start()
        # back in every ISR before the next trial
        for _ in range(300):
            parts = metadata(cl.live()[0].port, [topic])[3][topic]
            if all(len(v[3]) == 3 for v in parts.values()):
                break
            time.sleep(0.1)
    return out


def main():
    rp, binary = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    work = tempfile.mkdtemp(prefix="sluice-cluster-bench.")
    os.environ["SLUICE_BIN"] = binary
    os.environ["SLUICE_DATA_DIR"] = work
    from cluster import Cluster
    from confluent_kafka.admin import AdminClient, NewTopic

    cl = Cluster(3)
    rows = {"R1": [], "R3": [], "C3": [], "L3": []}
    try:
        cl.start()
        bs = cl.bootstrap()
        admin = AdminClient({"bootstrap.servers": bs})
        watch = RssWatch(cl)
        for r in range(rounds):
            t1, t3 = f"bench-rf1-r{r}", f"bench-rf3-r{r}"
            fs = admin.create_topics([NewTopic(t1, 6, 1), NewTopic(t3, 6, 3, config={"min.insync.replicas": "2"})])
            for f in fs.values():
                f.result(timeout=30)
            rows["R1"].append(produce(rp, bs, t1, R_MSGS))
            rows["R3"].append(produce(rp, bs, t3, R_MSGS))
            rows["C3"].append(consume(rp, bs, t3, min(C_MSGS, R_MSGS)))
            rows["L3"].append(latency(rp, bs, t3, work))
            print(f"[cluster-bench] round {r + 1}: R1 {rows['R1'][-1][0]} msg/s, R3 {rows['R3'][-1][0]} msg/s, "
                  f"C3 {rows['C3'][-1][1]} MB/s, L3 p50/p99 {rows['L3'][-1][0]:.2f}/{rows['L3'][-1][1]:.2f} ms",
                  file=sys.stderr, flush=True)
        ft = "bench-failover"
        admin.create_topics([NewTopic(ft, 6, 3, config={"min.insync.replicas": "2"})])[ft].result(timeout=30)
        fail = failover(cl, ft)
        fail_q = failover(cl, ft, trials=5, quorum_leader=True)
        watch.stop.set()
        best = lambda k, i=0: max(x[i] for x in rows[k])  # noqa: E731
        r1, r3 = best("R1"), best("R3")
        lines = [
            f"Cluster benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
            f"3 nodes on loopback, best of {rounds} rounds (all runs listed)",
            f"R1 produce 1 KiB acks=all RF=1 (6 partitions):      {r1:>9,} msg/s   runs {[x[0] for x in rows['R1']]}",
            f"R3 produce 1 KiB acks=all RF=3 min ISR 2:            {r3:>9,} msg/s   runs {[x[0] for x in rows['R3']]}",
            f"   R3 / R1:                                          {r3 / r1:.2f}        (target >= 0.5; Kafka 3.9 here: 0.12)",
            f"C3 consume RF=3 from the beginning:                  {best('C3', 1):>9.1f} MB/s   runs {[x[1] for x in rows['C3']]}",
            f"L3 latency at {L_RATE} msg/s, RF=3 acks=all: p50 {min(x[0] for x in rows['L3']):.2f} ms, "
            f"p99 {min(x[1] for x in rows['L3']):.2f} ms (best round)",
            f"F  failover, kill -9 of a leader to the next ack:   {', '.join(f'{x:.2f}' for x in fail)} s "
            f"(median {statistics.median(fail):.2f}; target < 2 s; Kafka 3.9 here: 9-13 s)",
            f"FQ the same, killing the quorum's leader (leading the partition): {', '.join(f'{x:.2f}' for x in fail_q)} s "
            f"(median {statistics.median(fail_q):.2f})",
            f"RSS peak per broker: {', '.join(f'node {k} {v:.0f} MiB' for k, v in sorted(watch.peak.items()))} "
            f"(target < 200 MB; Kafka 3.9: 0.8-1 GB)",
        ]
        text = "\n".join(lines)
        print(text)
        out_dir = os.path.join(HERE, "out")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "cluster.txt"), "w") as f:
            f.write(text + "\n")
    finally:
        cl.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
