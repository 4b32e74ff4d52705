#!/usr/bin/env python3
"""Transactions benchmark: what a transaction costs a producer and a read_committed consumer.

Usage (bench/transactions.sh runs it with the cached venv and a fresh broker):
    transactions.py BOOTSTRAP [ROUNDS]

Every figure is measured beside its non-transactional counterpart in the same round, seconds
apart, with the same client (confluent-kafka / librdkafka) and the same settings otherwise. Each
round uses fresh 6-partition topics (deleted at the end of the round); the table shows the median
and the best of ROUNDS rounds (default 3).

  T1  transactional produce: MSGS (default 200,000) x 1 KiB values, 100 messages per
      transaction (begin_transaction, 100 x produce(), commit_transaction); message i of a
      transaction goes to partition i % 6, so every transaction spans all 6 partitions.
      Timed from the first begin_transaction to the last commit_transaction returning
      (init_transactions is done before, and reported separately).
  T0  the same messages, same partitions, from an idempotent non-transactional producer
      (enable.idempotence=true, acks=all), flushed at the end; timed from the first produce()
      to flush() returning. Both producers: linger.ms=5, librdkafka's default batch sizes,
      poll(0) after every 100 messages, connected (metadata fetched) before the clock starts;
      T0 first delivers one message to a warm-up topic (its producer id, as init_transactions
      gets T1's).
  R1  read_committed consume of T1's topic: assign() all 6 partitions from the beginning, count
      until all MSGS messages are received; timed from assign() to the last message.
  R0  the same with read_uncommitted, same topic: R1 / R0 is the cost of the isolation level.
  R2  read_committed of T0's (non-transactional) topic: R1 / R2 is the cost of reading a
      transactional topic (its control batches, and its smaller batches: a transaction puts
      ~17 messages in each partition) with the same isolation level.
The order of T0/T1, and of the consumes, alternates between rounds. Checks: every consume gets
exactly MSGS messages (none left over on a final short poll); T0's topic ends at MSGS (sum of the
high watermarks), T1's at MSGS + one commit marker per partition per transaction.

Environment: MSGS (messages per producer run, a multiple of TXN_SIZE), TXN_SIZE (100),
PHASE_TIMEOUT (60 s per producer/consumer run), QUIET_WAIT (30 s: before the first round, wait
up to this long for the machine to be idle; a third of it before later rounds), SLUICE_PID (the
broker's pid: its CPU use and run-queue wait per figure, and from them the other processes'
share of the machine, are printed).
"""

import os
import resource
import statistics
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
VALUE_SIZE = 1024
MSGS = int(os.environ.get("MSGS", "200000"))
TXN_SIZE = int(os.environ.get("TXN_SIZE", "100"))
PHASE_TIMEOUT = float(os.environ.get("PHASE_TIMEOUT", "60"))
QUIET_WAIT = float(os.environ.get("QUIET_WAIT", "30"))
SLUICE_PID = os.environ.get("SLUICE_PID")
OP = 30  # seconds, any single client call
SLOW_COMMIT_MS = 50  # commits slower than this are listed
NOISE_PCT = 15  # other processes' CPU (% of one core) above which a run is flagged

PRODUCER_COMMON = {
    "linger.ms": 5,
    "acks": "all",
    "enable.idempotence": True,
    "message.timeout.ms": 60000,
}


class BenchError(Exception):
    pass


def broker_cpu():
    """The broker's user+system CPU seconds, or None without SLUICE_PID."""
    if not SLUICE_PID:
        return None
    try:
        with open(f"/proc/{SLUICE_PID}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def broker_wait():
    """Seconds the broker's threads spent runnable but waiting for a CPU (schedstat), or None."""
    if not SLUICE_PID:
        return None
    total = 0
    try:
        tasks = os.listdir(f"/proc/{SLUICE_PID}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{SLUICE_PID}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total / 1e9


def machine_busy():
    """CPU seconds all CPUs spent running processes (/proc/stat: user, nice, system; not the
    kernel's interrupt work, which the loopback traffic itself causes, nor steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:4]]
    return sum(v) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit):
    """Wait up to `limit` seconds for the machine to be idle (other processes' CPU under
    NOISE_PCT of one core over a second); returns the last sample (% of one core)."""
    deadline = time.monotonic() + limit
    while True:
        b, t = machine_busy(), time.monotonic()
        time.sleep(1)
        busy = 100 * (machine_busy() - b) / (time.monotonic() - t)
        if busy <= NOISE_PCT or time.monotonic() >= deadline:
            return busy


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread: Python and librdkafka's
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall time plus the CPU the broker and this process used over it."""

    def start(self):
        self.w0 = broker_wait()
        self.b0, self.c0, self.m0, self.t0 = broker_cpu(), self_cpu(), machine_busy(), time.monotonic()
        return self

    def stop(self):
        self.secs = time.monotonic() - self.t0
        b1 = broker_cpu()
        self.broker_pct = None if b1 is None or self.b0 is None else 100 * (b1 - self.b0) / self.secs
        self.client_pct = 100 * (self_cpu() - self.c0) / self.secs
        # Everything else on the machine (other processes: noise), when the broker's CPU is known.
        busy = 100 * (machine_busy() - self.m0) / self.secs
        self.other_pct = None if self.broker_pct is None else max(0.0, busy - self.broker_pct - self.client_pct)
        w1 = broker_wait()
        self.wait_pct = None if w1 is None or self.w0 is None else 100 * (w1 - self.w0) / self.secs
        return self


class Result:
    def __init__(self, clock, msgs, extra=None):
        self.secs = clock.secs
        self.msgs_s = msgs / clock.secs
        self.mb_s = msgs * VALUE_SIZE / clock.secs / 1e6
        self.broker_pct, self.client_pct, self.other_pct = clock.broker_pct, clock.client_pct, clock.other_pct
        self.wait_pct = clock.wait_pct
        self.extra = extra or {}


def check_deadline(t0, what):
    if time.monotonic() - t0 > PHASE_TIMEOUT:
        raise BenchError(f"{what}: not done after {PHASE_TIMEOUT:.0f} s")


def produce_one(p, topic, value, partition):
    while True:
        try:
            p.produce(topic, value=value, partition=partition)
            return
        except BufferError:
            p.poll(0.01)


def errors_cb(sink, role):
    def cb(err):
        sink.append(f"{role}: {err}")
    return cb


def run_t0(bootstrap, topic, warm_topic, value):
    errs = []
    p = Producer({"bootstrap.servers": bootstrap, "client.id": "bench-txn-t0", **PRODUCER_COMMON},
                 error_cb=errors_cb(errs, "T0"))
    # Warm-up (as init_transactions is for T1): the producer id (InitProducerId), the connection
    # and the topic's metadata, before the clock starts.
    p.produce(warm_topic, value=b"warm-up")
    if p.flush(OP):
        raise BenchError("T0: warm-up message not delivered")
    p.list_topics(topic, timeout=OP)
    clock = Clock().start()
    for t in range(MSGS // TXN_SIZE):
        for i in range(TXN_SIZE):
            produce_one(p, topic, value, i % PARTITIONS)
        p.poll(0)
        if t % 100 == 0:
            check_deadline(clock.t0, "T0")
    left = p.flush(PHASE_TIMEOUT)
    clock.stop()
    if left:
        raise BenchError(f"T0: {left} messages not delivered after flush({PHASE_TIMEOUT:.0f})")
    if errs:
        raise BenchError("T0: client errors: " + "; ".join(errs[:5]))
    return Result(clock, MSGS)


def run_t1(bootstrap, topic, value):
    errs = []
    tid = f"bench-txn-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": bootstrap, "client.id": "bench-txn-t1", **PRODUCER_COMMON,
                  "transactional.id": tid, "transaction.timeout.ms": 60000},
                 error_cb=errors_cb(errs, "T1"))
    t = time.monotonic()
    p.init_transactions(OP)
    init_ms = (time.monotonic() - t) * 1000
    p.list_topics(topic, timeout=OP)
    commits = []
    clock = Clock().start()
    for n in range(MSGS // TXN_SIZE):
        p.begin_transaction()
        for i in range(TXN_SIZE):
            produce_one(p, topic, value, i % PARTITIONS)
        c = time.monotonic()
        p.commit_transaction(OP)
        commits.append(time.monotonic() - c)
        p.poll(0)
        if n % 100 == 0:
            check_deadline(clock.t0, "T1")
    clock.stop()
    p.flush(OP)
    if errs:
        raise BenchError("T1: client errors: " + "; ".join(errs[:5]))
    return Result(clock, MSGS, {"init_ms": init_ms, "commits_s": commits})


def run_consume(bootstrap, topic, isolation, name):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-txn-{uuid.uuid4().hex[:8]}",  # never joined: assign() only
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "client.id": f"bench-txn-{name.lower()}",
    })
    try:
        c.list_topics(topic, timeout=OP)
        clock = Clock().start()
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        n = 0
        while n < MSGS:
            for m in c.consume(10000, 0.5):
                err = m.error()
                if err is None:
                    n += 1
                elif err.code() != KafkaError._PARTITION_EOF:
                    raise BenchError(f"{name}: consume error: {err}")
            check_deadline(clock.t0, f"{name} ({n}/{MSGS} messages)")
        clock.stop()
        # Anything beyond MSGS (an aborted or duplicated record delivered) shows up here.
        extra = sum(1 for m in c.consume(10000, 0.3) if m.error() is None)
        if n + extra != MSGS:
            raise BenchError(f"{name}: got {n + extra} messages, expected {MSGS}")
        return Result(clock, MSGS)
    finally:
        c.close()


def end_offsets(admin_bootstrap, topic):
    c = Consumer({"bootstrap.servers": admin_bootstrap, "group.id": "bench-txn-wm"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP)[1]
                   for p in range(PARTITIONS))
    finally:
        c.close()


def one_round(bootstrap, admin, rnd, value):
    run = uuid.uuid4().hex[:8]
    t0_topic, t1_topic = f"bench-txn-plain-{run}", f"bench-txn-txn-{run}"
    warm_topic = f"bench-txn-warm-{run}"
    futs = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (t0_topic, t1_topic, warm_topic)])
    for f in futs.values():
        f.result(timeout=OP)
    try:
        res = {}
        producers = [("T0", lambda: run_t0(bootstrap, t0_topic, warm_topic, value)),
                     ("T1", lambda: run_t1(bootstrap, t1_topic, value))]
        for name, fn in (producers if rnd % 2 == 0 else producers[::-1]):
            res[name] = fn()
        txns = MSGS // TXN_SIZE
        for topic, want in ((t0_topic, MSGS), (t1_topic, MSGS + txns * PARTITIONS)):
            deadline = time.monotonic() + 5  # the last commit's markers may land just after EndTxn
            while (got := end_offsets(bootstrap, topic)) != want and time.monotonic() < deadline:
                time.sleep(0.1)
            if got != want:
                raise BenchError(f"{topic}: end offsets sum to {got}, expected {want}")
        consumers = [("R1", t1_topic, "read_committed"), ("R0", t1_topic, "read_uncommitted"),
                     ("R2", t0_topic, "read_committed")]
        k = rnd % len(consumers)
        for name, topic, iso in consumers[k:] + consumers[:k]:
            res[name] = run_consume(bootstrap, topic, iso, name)
        return res
    finally:
        for f in admin.delete_topics([t0_topic, t1_topic, warm_topic]).values():
            try:
                f.result(timeout=OP)
            except Exception as e:  # noqa: BLE001
                print(f"# delete_topics: {e}", file=sys.stderr)


def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def main():
    bootstrap = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if MSGS % TXN_SIZE:
        sys.exit("MSGS must be a multiple of TXN_SIZE")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    value = os.urandom(VALUE_SIZE)
    results = []
    for rnd in range(rounds):
        busy = wait_quiet(QUIET_WAIT if rnd == 0 else QUIET_WAIT / 3)
        if busy > NOISE_PCT:
            print(f"# round {rnd + 1}: the machine is busy ({busy:.0f}% of a core used by others); "
                  "measuring anyway", file=sys.stderr, flush=True)
        t = time.monotonic()
        try:
            results.append(one_round(bootstrap, admin, rnd, value))
        except Exception as e:  # noqa: BLE001
            print(f"ERROR in round {rnd + 1}: {e}", flush=True)
            return 1
        print(f"# round {rnd + 1}/{rounds}: {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)

    rows = [
        ("T1", f"txn produce, {TXN_SIZE} msgs/txn", "msgs_s", "msgs/s", "T0", "idempotent produce"),
        ("T1", f"txn produce, {TXN_SIZE} msgs/txn", "mb_s", "MB/s", "T0", "idempotent produce"),
        ("R1", "read_committed, txn topic", "mb_s", "MB/s", "R0", "read_uncommitted, txn topic"),
        ("R1", "read_committed, txn topic", "mb_s", "MB/s", "R2", "read_committed, plain topic"),
    ]
    print(f"Transactions: {MSGS:,} x {VALUE_SIZE} B per run, {TXN_SIZE} msgs/txn, "
          f"{PARTITIONS} partitions, {rounds} rounds (median / best)")
    print()
    print(f"{'figure':6} {'what':28} {'unit':6} {'median':>9} {'best':>9}   "
          f"{'vs':3} {'counterpart':28} {'median':>9} {'best':>9}  {'ratio':>5}")
    for fig, what, key, unit, cfig, cwhat in rows:
        v = [getattr(r[fig], key) for r in results]
        cv = [getattr(r[cfig], key) for r in results]
        ratio = statistics.median(a / b for a, b in zip(v, cv))
        print(f"{fig:6} {what:28} {unit:6} {fmt(statistics.median(v)):>9} {fmt(max(v)):>9}   "
              f"{cfig:3} {cwhat:28} {fmt(statistics.median(cv)):>9} {fmt(max(cv)):>9}  {ratio:5.2f}")
    print("(ratio: figure / counterpart, the median of the per-round ratios; msgs/s for R* is MB/s x 1e6 / 1024)")

    commits = sorted(c for r in results for c in r["T1"].extra["commits_s"])
    pct = lambda q: commits[min(len(commits) - 1, int(q * len(commits)))] * 1000  # noqa: E731
    inits = [r["T1"].extra["init_ms"] for r in results]
    slow = [(i + 1, n, c * 1000) for i, r in enumerate(results)
            for n, c in enumerate(r["T1"].extra["commits_s"]) if c * 1000 > SLOW_COMMIT_MS]
    print()
    print(f"T1 commit_transaction() (sends the transaction's last batches, then EndTxn), "
          f"{len(commits):,} commits: p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, "
          f"max {commits[-1] * 1000:.1f} ms; {len(slow)} over {SLOW_COMMIT_MS} ms"
          + (" (" + ", ".join(f"r{r} #{n}: {ms:.0f} ms" for r, n, ms in slow[:8])
             + (", ..." if len(slow) > 8 else "") + ")" if slow else "")
          + f"; init_transactions {statistics.median(inits):.0f} ms (median)")
    names = ["T0", "T1", "R0", "R1", "R2"]
    med = lambda n, attr: (lambda v: "-" if None in v else f"{statistics.median(v):.0f}")(  # noqa: E731
        [getattr(r[n], attr) for r in results])
    print("CPU broker/client/other processes (% of one core, median): "
          + ", ".join(f"{n} {med(n, 'broker_pct')}/{med(n, 'client_pct')}/{med(n, 'other_pct')}" for n in names))
    print("Broker threads runnable but waiting for a CPU (% of the run's time, median): "
          + ", ".join(f"{n} {med(n, 'wait_pct')}" for n in names))
    print()
    print("Every round:")
    for i, r in enumerate(results):
        print(f"  r{i + 1}: " + ", ".join(
            f"{n} {r[n].msgs_s:,.0f} msgs/s {r[n].mb_s:.1f} MB/s ({r[n].secs:.2f} s)" for n in names))
    noisy = [f"r{i + 1} {n} ({r[n].other_pct:.0f}%)" for i, r in enumerate(results) for n in names
             if r[n].other_pct is not None and r[n].other_pct > NOISE_PCT]
    if noisy:
        print(f"Warning: other processes used more than {NOISE_PCT}% of a core during: " + ", ".join(noisy)
              + " (those runs are likely slower than on a quiet machine)")
    print()
    print(
        "What is measured: T1 produces every message inside a transaction of 100 (begin, 100 x\n"
        "produce to partitions 0-5 in turn, commit_transaction), so each transaction adds the\n"
        "AddPartitionsToTxn and EndTxn round trips and 6 commit markers written by the coordinator,\n"
        "and caps a partition's batches at ~17 messages; T0 sends the same messages with the same\n"
        "settings (idempotent, acks=all, linger.ms=5) with no transaction boundaries, so T1/T0 is\n"
        "what transactions cost a producer that commits every 100 messages (the client waits for\n"
        "each commit before the next transaction: the figure is bound by commit latency). R1 reads\n"
        "T1's topic read_committed (fetches capped at the last stable offset, aborted-transaction\n"
        "lists); R0 reads the same bytes read_uncommitted, so R1/R0 is the cost of the isolation\n"
        "level alone; R2 reads T0's topic read_committed, so R1/R2 is the cost of the transactional\n"
        "layout (control batches and the small batches) at the same isolation level. Consumers use\n"
        "librdkafka's defaults and assign(); time is from assign() to the last message. A ratio\n"
        "near 1 with the client near 100% CPU means the client, not the broker, is the limit."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
