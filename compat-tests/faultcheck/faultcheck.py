"""Sluice's fault checker: a cluster of N brokers on this machine, real clients writing and reading,
faults injected on a schedule, and the history checked (see history.py for what is checked and
faults.py for the faults). Prints a summary table; exits 1 on any violation, 2 on a usage error.

    compat-tests/faultcheck/run.sh                      # the short schedule (each fault once)
    compat-tests/faultcheck/run.sh --schedule long --duration 600 --seed 7
    compat-tests/faultcheck/run.sh --schedule kill9-leader,pause,kill9-leader --nodes 4

Needs SLUICE_BIN (run.sh sets it). Work files under --work (default: a new temp dir), kept when a
check failed or with --keep.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
import faults  # noqa: E402
import history  # noqa: E402
import workload as wl  # noqa: E402
from cluster import Cluster, Netns, metadata  # noqa: E402

SESSION_TIMEOUT_MS = 6000
RECOVERY_LIMIT_S = 120
INTERNAL = ("__consumer_offsets", "__transaction_state")


class Context:
    """What the faults act on and report into."""

    def __init__(self, cl, net, disk, rng):
        self.cl, self.net, self.disk, self.rng = cl, net, disk, rng
        self.session_timeout_s = SESSION_TIMEOUT_MS / 1000
        self.violations = []
        self.recoveries = []
        self.java_missing = None

    def whole(self):
        """Every node running, and every partition of every topic led with its full replica set
        in the ISR, as every node sees it (a node just resumed answers from a stale view until
        it has caught up); else why not."""
        down = [n.id for n in self.cl.nodes if not n.alive()]
        if down:
            return f"nodes {down} not running"
        for n in self.cl.nodes:
            try:
                topics = metadata(n.port, [wl.TOPIC_IDEM, wl.TOPIC_TXN, wl.TOPIC_JAVA, *INTERNAL], host=n.host,
                                  timeout=3)[3]
            except OSError as e:
                return f"node {n.id} does not answer Metadata ({e})"
            for topic, parts in topics.items():
                for p, (error, leader, replicas, isr, _offline) in parts.items():
                    if error == 3 and topic in INTERNAL:
                        continue  # not made yet
                    if error not in (0, 9) or leader < 0 or sorted(isr) != sorted(replicas):
                        return (f"node {n.id} sees {topic}-{p}: error {error}, leader {leader}, "
                                f"replicas {replicas}, isr {isr}")
        return None

    def wait_recovered(self, what):
        t0 = time.monotonic()
        why = None
        for _ in compat.deadline_loop(RECOVERY_LIMIT_S, step=0.2):
            why = self.whole()
            if why is None:
                took = time.monotonic() - t0
                self.recoveries.append(took)
                return took
        self.violations.append(f"{what}: the cluster did not recover to full ISR within {RECOVERY_LIMIT_S} s "
                               f"({why})")
        return None


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3, help="brokers (combined broker+controller), at least 3")
    ap.add_argument("--schedule", default="short",
                    help="short (each fault once), long (random faults for --duration s), or a comma-separated "
                         f"list of: {', '.join(faults.FAULTS)}")
    ap.add_argument("--duration", type=float, default=300, help="seconds of faults for --schedule long")
    ap.add_argument("--seed", type=int, default=None, help="seed for the long schedule's choices")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of plain load between faults")
    ap.add_argument("--no-netns", action="store_true", help="brokers on 127.0.0.1; no network-cut fault")
    ap.add_argument("--no-disk", action="store_true", help="no size-limited data dir; no disk-full fault")
    ap.add_argument("--disk-mib", type=int, default=160, help="size of the disk node's data dir (tmpfs)")
    ap.add_argument("--work", default=None, help="work dir (logs, data); default a new temp dir")
    ap.add_argument("--keep", action="store_true", help="keep the work dir even when every check passed")
    a = ap.parse_args()
    if a.nodes < 3:
        ap.error("--nodes must be at least 3 (replication factor 3)")
    if a.schedule not in ("short", "long"):
        unknown = [f for f in a.schedule.split(",") if f not in faults.FAULTS]
        if unknown:
            ap.error(f"unknown faults {unknown}; known: {', '.join(faults.FAULTS)}")
    return a


def mount_tmpfs(path, mib):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    return r.returncode == 0, r.stderr.strip()


def wait_for(what, check, timeout, step=0.2):
    for _ in compat.deadline_loop(timeout, step=step):
        if check():
            return True
    print(f"# faultcheck: {what}: not within {timeout} s", flush=True)
    return False


def read_log(bs, topic, partitions, isolation, timeout=90):
    """The whole of `topic` from offset 0 to its end ({(partition, offset): value}), and whether
    the end was reached within `timeout`."""
    c = Consumer(wl.conf(bs, {"group.id": f"fc-final-{topic}", "enable.auto.commit": False,
                  "isolation.level": isolation}))
    tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    c.assign(tps)
    got = {}
    done = False
    for _ in compat.deadline_loop(timeout, step=0):
        for m in c.consume(500, timeout=0.5):
            if not m.error():
                got[(m.partition(), m.offset())] = m.value()
        pos = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in range(partitions)])}
        if all(pos.get(p, -1) >= end for p, end in ends.items()):
            done = True
            break
    c.close()
    return got, ends, done


def table(rows, headers):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    say(line.format(*headers))
    say(line.format(*("-" * w for w in widths)))
    for r in rows:
        say(line.format(*(str(x) for x in r)))


def schedule(a, rng):
    if a.schedule == "short":
        yield from faults.SCHEDULES["short"]
    elif a.schedule == "long":
        end = time.monotonic() + a.duration
        names = list(faults.FAULTS)
        while time.monotonic() < end:
            yield rng.choice(names)
    else:
        yield from a.schedule.split(",")


def main():
    # A SIGTERM (a timeout) unwinds through main's cleanup: the brokers, namespaces and tmpfs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    a = parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = a.work or tempfile.mkdtemp(prefix="sluice-faultcheck.")
    os.makedirs(work, exist_ok=True)
    wl.log_clients_to(os.path.join(work, "clients.log"))
    print(f"# faultcheck: {a.nodes} nodes, schedule {a.schedule}, seed {seed}, work dir {work}", flush=True)

    net = None
    if not a.no_netns:
        ok, why = Netns.available()
        if ok:
            net = Netns(a.nodes)
            net.setup()
        else:
            print(f"# faultcheck: no network namespaces ({why}); brokers on 127.0.0.1, no network cuts", flush=True)
    overrides = ["default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3",
                 "offsets.topic.num.partitions=10", "transaction.state.log.replication.factor=3",
                 "transaction.state.log.min.isr=2", "transaction.state.log.num.partitions=10",
                 f"broker.session.timeout.ms={SESSION_TIMEOUT_MS}", "replica.lag.time.max.ms=5000"]
    cl = Cluster(a.nodes, overrides=overrides, net=net, work=work)
    disk = None
    if not a.no_disk:
        node = cl.nodes[-1]
        ok, why = mount_tmpfs(node.data, a.disk_mib)
        if ok:
            # The metadata log on another disk (as the README advises for a data disk that can fill).
            node.extra.append(f"metadata.log.dir={os.path.join(work, f'metadata{node.id}')}")
            disk = (node, node.data)
        else:
            print(f"# faultcheck: no size-limited data dir ({why}); no disk-full fault", flush=True)
    ctx = Context(cl, net, disk, rng)
    workers = []
    exit_code = 1
    try:
        exit_code = run(a, ctx, workers)
    finally:
        for w in workers:
            w.stop.set()
        statuses = cl.stop()
        if net is not None:
            net.teardown()
        if disk is not None:
            subprocess.run(["umount", "-l", disk[1]], stdin=subprocess.DEVNULL, capture_output=True)
        if exit_code == 0 and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"# faultcheck: work dir kept: {work} (node logs node<i>.log)", flush=True)
        bad_exits = {i: s for i, s in statuses.items() if s not in (0, None)}
        if bad_exits:
            print(f"# faultcheck: nodes that did not exit 0 on the final SIGTERM: {bad_exits}", flush=True)
    sys.exit(exit_code)


def run(a, ctx, workers):
    cl = ctx.cl
    cl.start()
    bs = cl.bootstrap()
    admin = AdminClient(wl.conf(bs))
    topics = [NewTopic(wl.TOPIC_IDEM, wl.IDEM_PARTITIONS, 3, config={"min.insync.replicas": "2"}),
              NewTopic(wl.TOPIC_TXN, wl.TXN_PARTITIONS, 3, config={"min.insync.replicas": "2"}),
              NewTopic(wl.TOPIC_JAVA, wl.JAVA_PARTITIONS, 3, config={"min.insync.replicas": "2"})]
    for f in admin.create_topics(topics).values():
        f.result(timeout=30)
    idem = wl.IdempotentProducer(bs)
    txn = wl.TransactionalProducer(bs)
    idem_reader = wl.Reader(bs, wl.TOPIC_IDEM, wl.IDEM_PARTITIONS, "read_uncommitted")
    txn_reader = wl.Reader(bs, wl.TOPIC_TXN, wl.TXN_PARTITIONS, "read_committed")
    members = [wl.GroupMember(bs, i) for i in range(2)]
    watcher = wl.OffsetWatcher(bs)
    producers = [idem, txn]
    java = None
    if os.environ.get("SLUICE_TXN_CLASSPATH"):
        java = wl.JavaProducer(cl, cl.work)
        producers.append(java)
    else:
        ctx.java_missing = (os.environ.get("SLUICE_TXN_CLASSPATH_ERROR")
                               or "SLUICE_TXN_CLASSPATH not set (run through faultcheck/run.sh)")
        say(f"faultcheck: no Java producer: {ctx.java_missing}")
    consumers = [idem_reader, txn_reader, *members, watcher]
    workers.extend(producers + consumers)
    for w in workers:
        w.start()
    wait_for("the first acknowledgements", lambda: len(idem.acked) > 200 and txn.committed, 60)
    if java is not None:
        java.proc.wait_line(lambda ln: ln == "STARTED", 60, "the Java producer's first acknowledgement")
    ctx.wait_recovered("start")  # the internal topics are made on first use

    rows = []
    t_start = time.monotonic()
    print(f"# faultcheck: faults start (times in the history are time.monotonic(): {t_start:.1f})", flush=True)
    for name in schedule(a, ctx.rng):
        at = time.monotonic() - t_start
        acked_before = len(idem.acked)
        try:
            what = faults.FAULTS[name](ctx)
        except faults.Skip as e:
            rows.append((name, f"{at:.0f}", "skipped", "-", "-", str(e)))
            print(f"# faultcheck: {name} skipped: {e}", flush=True)
            continue
        took = ctx.wait_recovered(name)
        rows.append((name, f"{at:.0f}", f"{time.monotonic() - t_start - at:.0f}",
                     "-" if took is None else f"{took:.1f}", len(idem.acked) - acked_before, what))
        print(f"# faultcheck: {name} at {at:.0f} s: {what}; recovered in "
              f"{'(not)' if took is None else f'{took:.1f} s'}", flush=True)
        time.sleep(a.settle)

    # The load ends; the group catches up; the readers read to the end.
    for w in producers:
        w.stop.set()
    for w in producers:
        w.join(180)
    ctx.wait_recovered("end of load")
    final_idem, ends, idem_done = read_log(cl.bootstrap(), wl.TOPIC_IDEM, wl.IDEM_PARTITIONS, "read_uncommitted")
    final_txn, _, txn_done = read_log(cl.bootstrap(), wl.TOPIC_TXN, wl.TXN_PARTITIONS, "read_committed")
    final_java, _, java_done = read_log(cl.bootstrap(), wl.TOPIC_JAVA, wl.JAVA_PARTITIONS, "read_uncommitted")
    wait_for("the group's committed offsets at the partitions' ends",
             lambda: watcher.committed() == ends, 90, step=1)
    final_committed = watcher.committed(timeout=10) or {}
    for r in (idem_reader, txn_reader):
        r.stop.set()
    for w in consumers:
        w.stop.set()
    for w in consumers:
        w.join(60)

    v = list(ctx.violations)
    for done, topic in ((idem_done, wl.TOPIC_IDEM), (txn_done, wl.TOPIC_TXN), (java_done, wl.TOPIC_JAVA)):
        if not done:
            v.append(f"{topic}: the final read did not reach the end of the log within its time")
    for w in workers:
        if w.crashed:
            v.append(f"{w.name}: the client thread failed: {w.crashed}")
    checks = [
        ("idempotent producer", *history.check_idempotent(idem, final_idem)),
        ("transactions (read_committed)", *history.check_transactions(txn, final_txn)),
        *([("Java idempotent producer", *history.check_idempotent(java, final_java, "j", "Java idempotent producer"))]
          if java is not None else []),
        ("reader, read_uncommitted", *history.check_reader(idem_reader, final_idem, "read_uncommitted reader")),
        ("reader, read_committed", *history.check_reader(txn_reader, final_txn, "read_committed reader")),
        ("consumer group", *history.check_group(members, watcher, final_committed, ends, idem.acked)),
    ]
    for _, violations, _ in checks:
        v.extend(violations)

    say("")
    say("## faults injected")
    table(rows, ("fault", "at s", "took s", "recovered in s", "acks meanwhile", "what"))
    say("")
    say("## history")
    table([(name, "; ".join(f"{k} {val}" for k, val in counts.items())) for name, _, counts in checks],
          ("workload", "counts"))
    say("")
    say(f"longest pause between the idempotent producer's acks: {idem.longest_gap:.1f} s; "
        f"transactional producer errors (retried or settled): {len(txn.errors)}; "
        f"idempotent deliveries failed: {len(idem.failed)}")
    if txn.errors:
        say(f"  e.g. {txn.errors[:3]}")
    if idem.failed:
        say(f"  e.g. {idem.failed[:3]}")
    rec = ctx.recoveries
    if rec:
        say(f"recovery to full ISR: median {sorted(rec)[len(rec) // 2]:.1f} s, longest {max(rec):.1f} s")
    faults_run = sum(1 for r in rows if r[2] != "skipped")
    if v:
        say("")
        say(f"VIOLATIONS ({len(v)}):")
        for line in v:
            say(f"- {line}")
        print_logs(cl)
        print(f"FAIL faultcheck: {len(v)} violations under {faults_run} faults (listed above)", flush=True)
        return 1
    if ctx.java_missing:
        say(f"no Java producer in this run: {ctx.java_missing}")
    java_acked = f" (+{len(java.acked)} by kafka-clients)" if java is not None else ""
    print(f"PASS faultcheck: {faults_run} faults, {len(idem.acked)}{java_acked} idempotent and {len(txn.committed)} "
          "transactional writes acknowledged: none lost, duplicated or out of order; transactions all or "
          "nothing; nothing served was lost; group offsets never went back; full ISR again after every fault",
          flush=True)
    return 0


def say(line):
    """Summary lines start with '# ' (compat-tests/run.sh shows those and PASS/FAIL lines)."""
    print(f"# {line}".rstrip(), flush=True)


def print_logs(cl):
    for n in cl.nodes:
        say(f"last lines of node {n.id}'s log ({n.log_path}):")
        for line in n.log_tail(8):
            say(f"  {line[:300]}")


if __name__ == "__main__":
    main()
