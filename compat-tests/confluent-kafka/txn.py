"""confluent-kafka (librdkafka) transactions (KIP-98) against Sluice.

Scenarios (message scheme and offset arithmetic in lib/txn.py):
- abort.*: one transactional producer commits 100 messages, aborts 100 (flushed first, so they are
  in the log), commits 100, over 3 partitions. A read_committed consumer (assign, from the
  beginning) gets exactly the 200 committed ones in per-partition order, a read_uncommitted one all
  300; delivery offsets show one marker offset after each transaction; get_watermark_offsets, both
  from the broker (ListOffsets) and cached (from Fetch), gives the end offset for both.
- open-txn.*: records of an open (flushed, not committed) transaction, and non-transactional
  records appended after them, are not returned to read_committed (the LSO is the open
  transaction's first offset) while read_uncommitted gets them; right after commit they are.
- fence.*: producer B calls init_transactions with A's transactional.id while A has an open
  transaction; A's next produce + commit (fence.produce) or commit (fence.end-txn) fails with the
  fatal _FENCED error; A's records are aborted (never visible to read_committed), B's commit is.
- ctp.*: consume-transform-produce: a subscribed read_committed consumer (no auto commit) and a
  transactional producer copy 3,000 messages to an output topic with send_offsets_to_transaction,
  one transaction per consume batch; one transaction in the middle is aborted and the consumer
  rewound to its committed offsets. The output holds each input exactly once, in order, and the
  group's committed offsets are the input's end offsets. Then a never-joined consumer of the same
  group (generation -1, no member id) sends offsets in a transaction while the group has its
  member: accepted, as by Kafka.
The binding has no transaction admin calls (list/describe transactions, describe producers):
kafka-python/txn.py covers those.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import confluent_kafka  # noqa: E402
from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING, ConsumerGroupTopicPartitions, Consumer, KafkaError, KafkaException, Producer, TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
import txn  # noqa: E402
from compat import fail  # noqa: E402
from txn import PARTITIONS, expected_values, kv, marker_layout, partition_of, verify_partition  # noqa: E402

OP = 30  # seconds, any single client call
INIT = 20  # seconds for init_transactions (healthy: well under a second, fencing included)
SUITE_LIMIT = 170
RUN = txn.run_id()
PRE = f"compat-confluent-txn-{RUN}"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def err_of(exc):
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def create_topics(admin, topics):
    futs = admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics], operation_timeout=OP)
    for t, f in futs.items():
        try:
            f.result(timeout=OP)
        except Exception as e:  # noqa: BLE001
            fail(f"create_topics {t}: {e}")
    for t in topics:
        for _ in compat.deadline_loop(15):
            md = admin.list_topics(topic=t, timeout=OP).topics.get(t)
            if md is not None and md.error is None and len(md.partitions) == PARTITIONS:
                break
        else:
            fail(f"{t} not in metadata with {PARTITIONS} partitions 15 s after creation")


class TxnProducer:
    """A Producer (transactional when tid is given) recording each delivery report by value."""

    def __init__(self, bs, tid, role):
        self.tid, self.role = tid, role
        self.delivered = {}  # value -> (partition, offset)
        self.failed = {}  # value -> KafkaError
        self.errors = []  # error_cb
        conf = {
            "bootstrap.servers": bs,
            "client.id": f"compat-confluent-txn-{role}",
            "linger.ms": 5,
            "message.timeout.ms": 30000,
            "socket.timeout.ms": 15000,
        }
        if tid is not None:
            conf.update({"transactional.id": tid, "transaction.timeout.ms": 60000})
        else:
            conf["enable.idempotence"] = True
        self.p = Producer(conf, error_cb=self._error)

    def _error(self, e):
        self.errors.append(e)
        log(f"# {self.role} error_cb: {e}")

    def _cb(self, err, msg):
        if err is not None:
            self.failed[bytes(msg.value())] = err
        else:
            self.delivered[bytes(msg.value())] = (msg.partition(), msg.offset())

    def produce(self, topic, label, n, only=None):
        """Messages kv(label, i) for i in range(n) (or the indexes in `only`) to partition i % 3."""
        for i in (range(n) if only is None else only):
            k, v = kv(label, i)
            while True:
                try:
                    self.p.produce(topic, key=k, value=v, partition=partition_of(i), on_delivery=self._cb)
                    break
                except BufferError:
                    self.p.poll(0.05)

    def flush(self, what):
        left = self.p.flush(OP)
        if left:
            fail(f"{self.role}: {left} messages undelivered {OP} s into flush ({what}); client errors {self.errors[:3]}")
        if self.failed:
            v, e = next(iter(self.failed.items()))
            fail(f"{self.role}: {len(self.failed)} deliveries failed ({what}); first {v!r}: {e}")

    def txn_call(self, name, *args):
        t0 = time.monotonic()
        try:
            getattr(self.p, name)(*args)
        except KafkaException as e:
            fail(f"{self.role} ({self.tid}): {name} failed after {time.monotonic() - t0:.1f} s: {e}")


class Reader:
    """An assign()-only consumer of every partition of a topic from the beginning."""

    def __init__(self, bs, topic, isolation):
        self.topic, self.isolation = topic, isolation
        self.c = Consumer({
            "bootstrap.servers": bs,
            "client.id": f"compat-confluent-txn-{isolation}",
            "group.id": f"{PRE}-assign-only",  # required by the binding; never joined (assign only)
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        })
        self.c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        self.recs = {p: [] for p in range(PARTITIONS)}
        self.eof = set()

    def _take(self, timeout):
        n = 0
        for m in self.c.consume(num_messages=1000, timeout=timeout):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self.eof.add(m.partition())
                    continue
                fail(f"{self.isolation} consumer of {self.topic}: error {err}")
            self.eof.discard(m.partition())
            self.recs[m.partition()].append((m.offset(), m.key(), m.value()))
            n += 1
        return n

    def drain(self, seconds=30, want_total=None):
        """Consume until every partition reported EOF (at its high watermark, or its LSO for
        read_committed) and, if given, want_total records have arrived in all."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._take(0.2)
            total = sum(len(r) for r in self.recs.values())
            if len(self.eof) == PARTITIONS and (want_total is None or total >= want_total):
                return self.recs
        fail(f"{self.isolation} consumer of {self.topic}: not at the end of every partition within {seconds} s "
             f"(EOF on {sorted(self.eof)}, {[len(self.recs[p]) for p in range(PARTITIONS)]} records)")

    def poll_for(self, seconds):
        """Consume for `seconds`; returns how many records arrived."""
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            n += self._take(0.2)
        return n

    def watermarks(self, p, cached=False):
        """(low, high): cached=False queries the broker (ListOffsets with this consumer's isolation
        level: the LSO for read_committed); cached=True is what the last Fetch response said."""
        return self.c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=OP, cached=cached)

    def close(self):
        self.c.close()


def check_delivery_layout(prod, batches, labels_in_txn):
    """Delivery offsets: each transaction's records consecutive per partition, starting right after
    the previous transaction's marker (marker_layout)."""
    for p in range(PARTITIONS):
        _, firsts = marker_layout(batches, p)
        for (label, n), first in zip(batches, firsts):
            if label not in labels_in_txn:
                continue
            offs = [prod.delivered[kv(label, i)[1]][1] for i in range(n) if partition_of(i) == p]
            want = list(range(first, first + len(offs))) if offs else []
            if offs != want:
                fail(f"partition {p}: transaction {label} delivered at offsets {offs[:3]}..{offs[-3:]}, want "
                     f"{want[:1]}..{want[-1:]} (each earlier transaction's records plus one marker offset)")


# ------------------------------------------------------------------ 1. aborted transactions invisible

def run_abort(s, bs):
    topic = f"{PRE}-abort"
    batches = [("t1", 100), ("t2", 100), ("t3", 100)]
    committed = [("t1", 100), ("t3", 100)]
    st = {}

    def produce():
        prod = TxnProducer(bs, f"{PRE}-abort", "abort")
        st["prod"] = prod
        prod.txn_call("init_transactions", INIT)
        for label, n in batches:
            prod.txn_call("begin_transaction")
            prod.produce(topic, label, n)
            prod.flush(f"transaction {label}")  # aborted records reach the log too
            prod.txn_call("abort_transaction" if label == "t2" else "commit_transaction", OP)
        check_delivery_layout(prod, batches, ("t1", "t2", "t3"))

    ok, _ = s.check("abort.produce", produce)
    if not ok:
        return
    delivered = st["prod"].delivered

    def read(isolation, want_batches, aborted):
        r = Reader(bs, topic, isolation)
        st[isolation] = r
        recs = r.drain(30)
        for p in range(PARTITIONS):
            verify_partition(isolation, p, recs[p], expected_values(want_batches, p), delivered, aborted)
        total = sum(len(v) for v in recs.values())
        want = sum(n for _, n in want_batches)
        if total != want:
            fail(f"{isolation}: {total} records, want {want}")

    try:
        s.check("abort.read-committed", read, "read_committed", committed, ("t2",))
        s.check("abort.read-uncommitted", read, "read_uncommitted", batches, ())

        def watermarks():
            for iso in ("read_committed", "read_uncommitted"):
                r = st.get(iso)
                if r is None:
                    fail(f"no {iso} consumer (its check failed)")
                for p in range(PARTITIONS):
                    end, _ = marker_layout(batches, p)
                    lo, hi = r.watermarks(p)
                    if (lo, hi) != (0, end):
                        fail(f"{iso} get_watermark_offsets (from the broker) partition {p}: ({lo}, {hi}), want (0, {end}) "
                             "(3 transactions' records and markers)")
                    _, hi_c = r.watermarks(p, cached=True)
                    if hi_c != end:
                        fail(f"{iso} get_watermark_offsets (cached, from Fetch) partition {p}: high {hi_c}, want {end}")

        s.check("abort.watermarks", watermarks)
    finally:
        for iso in ("read_committed", "read_uncommitted"):
            if iso in st:
                st[iso].close()


# ------------------------------------------------------------------ open transaction held back

def run_open(s, bs):
    topic = f"{PRE}-open"
    n_txn = 30
    plain_idx = [PARTITIONS * k for k in range(5)]  # 5 non-transactional records, all on partition 0
    per = {p: sum(1 for i in range(n_txn) if partition_of(i) == p) for p in range(PARTITIONS)}
    st = {}
    rc = Reader(bs, topic, "read_committed")
    ru = Reader(bs, topic, "read_uncommitted")
    try:
        def hidden():
            prod = TxnProducer(bs, f"{PRE}-open", "open")
            st["prod"] = prod
            prod.txn_call("init_transactions", INIT)
            prod.txn_call("begin_transaction")
            prod.produce(topic, "open", n_txn)
            prod.flush("open transaction")
            plain = TxnProducer(bs, None, "plain")
            plain.produce(topic, "plain", 0, only=plain_idx)
            plain.flush("non-transactional records after the open transaction")
            st["delivered"] = {**prod.delivered, **plain.delivered}
            # read_uncommitted gets all of it: the records are in the log.
            recs = ru.drain(20, want_total=n_txn + len(plain_idx))
            for p in range(PARTITIONS):
                want = expected_values([("open", n_txn)], p) + ([kv("plain", i)[1] for i in plain_idx] if p == 0 else [])
                verify_partition("read_uncommitted", p, recs[p], want, st["delivered"])
            got = rc.poll_for(3.0)
            if got:
                fail(f"read_committed returned {got} record(s) of an open transaction (or after its first offset): "
                     f"{ {p: [v for _, _, v in r][:3] for p, r in rc.recs.items() if r} }")
            ends = {p: per[p] + (len(plain_idx) if p == 0 else 0) for p in range(PARTITIONS)}
            for p in range(PARTITIONS):
                lo, hi = rc.watermarks(p)
                if hi != 0:
                    fail(f"read_committed get_watermark_offsets partition {p}: high {hi}, want 0 (the LSO: first "
                         f"offset of the open transaction); read_uncommitted high is {ru.watermarks(p)[1]}")
                _, hi = ru.watermarks(p)
                if hi != ends[p]:
                    fail(f"read_uncommitted get_watermark_offsets partition {p}: high {hi}, want {ends[p]}")

        ok, _ = s.check("open-txn.hidden", hidden)
        if not ok:
            return

        def visible():
            t0 = time.monotonic()
            st["prod"].txn_call("commit_transaction", OP)
            t_commit = time.monotonic()
            recs = rc.drain(10, want_total=n_txn + len(plain_idx))
            lag = time.monotonic() - t_commit
            for p in range(PARTITIONS):
                want = expected_values([("open", n_txn)], p) + ([kv("plain", i)[1] for i in plain_idx] if p == 0 else [])
                verify_partition("read_committed after commit", p, recs[p], want, st["delivered"])
            for p in range(PARTITIONS):
                end = per[p] + (len(plain_idx) if p == 0 else 0) + 1  # + the commit marker
                _, hi = rc.watermarks(p)
                if hi != end:
                    fail(f"read_committed get_watermark_offsets partition {p} after commit: high {hi}, want {end}")
            print(f"# open-txn: commit took {(t_commit - t0) * 1000:.0f} ms; read_committed had every record "
                  f"{lag * 1000:.0f} ms after it returned", flush=True)
            if lag > 5:
                fail(f"read_committed needed {lag:.1f} s after commit to return the records")

        s.check("open-txn.visible-after-commit", visible)
    finally:
        rc.close()
        ru.close()


# ------------------------------------------------------------------ 2. fencing

def run_fence(s, bs, mode):
    topic, tid = f"{PRE}-fence-{mode}", f"{PRE}-fence-{mode}"
    a_batches = [("A", 30), ("B", 30)]

    def scenario():
        a = TxnProducer(bs, tid, f"fence-{mode}-A")
        a.txn_call("init_transactions", INIT)
        a.txn_call("begin_transaction")
        a.produce(topic, "A", 30)
        a.flush("A's open transaction")
        b = TxnProducer(bs, tid, f"fence-{mode}-B")
        t0 = time.monotonic()
        b.txn_call("init_transactions", INIT)  # fences A: its open transaction is aborted
        print(f"# fence.{mode}: B's init_transactions took {(time.monotonic() - t0) * 1000:.0f} ms", flush=True)
        if mode == "produce":
            a.produce(topic, "Alate", 1)
            try:
                a.p.flush(10)
            except Exception as e:  # noqa: BLE001
                # The binding raises the fatal error from flush (with 2.16, chained to a SystemError
                # when a delivery callback runs while it is pending): it must be the fencing.
                err = err_of(e) or err_of(e.__cause__)
                if err is None or err.code() != KafkaError._FENCED or not err.fatal():
                    fail(f"A's flush of a record produced after being fenced raised {e!r} (cause {e.__cause__!r}); "
                         "want the fatal _FENCED error")
                print(f"# fence.produce: A's flush raised the fatal {err.name()}: {err.str()}", flush=True)
        try:
            a.p.commit_transaction(10)
            fail("A's commit_transaction succeeded after B's init_transactions with the same transactional.id")
        except KafkaException as e:
            err = err_of(e)
            if err is None or err.code() != KafkaError._FENCED or not err.fatal():
                fail(f"A's commit_transaction after being fenced raised {e!r} (fatal={err.fatal() if err else None}); "
                     "want the fatal _FENCED error (librdkafka's name for PRODUCER_FENCED/INVALID_PRODUCER_EPOCH)")
        if mode == "produce":
            late = kv("Alate", 0)[1]
            if late in a.delivered:
                fail(f"A's record produced after the fencing was acknowledged at {a.delivered[late]}")
            log(f"# fence.produce: A's late record failed with {a.failed.get(late)}")
        # B's transaction commits.
        b.txn_call("begin_transaction")
        b.produce(topic, "B", 30)
        b.flush("B's transaction")
        b.txn_call("commit_transaction", OP)
        check_delivery_layout(b, a_batches, ("B",))  # after A's records and the abort marker
        delivered = {**a.delivered, **b.delivered}
        for iso, want_batches in (("read_committed", [("B", 30)]), ("read_uncommitted", a_batches)):
            r = Reader(bs, topic, iso)
            try:
                recs = r.drain(20)
            finally:
                r.close()
            for p in range(PARTITIONS):
                verify_partition(iso, p, recs[p], expected_values(want_batches, p), delivered,
                                 ("A", "Alate") if iso == "read_committed" else ("Alate",))

    s.check(f"fence.{mode}", scenario)


# ------------------------------------------------------------------ 3. consume-transform-produce

CTP_N = 3000


def run_ctp(s, bs, admin):
    in_t, out_t, group, tid = f"{PRE}-ctp-in", f"{PRE}-ctp-out", f"{PRE}-ctp", f"{PRE}-ctp"
    st = {}

    def setup():
        create_topics(admin, [in_t, out_t])
        prod = TxnProducer(bs, None, "ctp-input")
        prod.produce(in_t, "in", CTP_N)
        prod.flush("input")
        ends = [sum(1 for i in range(CTP_N) if partition_of(i) == p) for p in range(PARTITIONS)]
        for i in range(CTP_N):
            if prod.delivered[kv("in", i)[1]] != (partition_of(i), i // PARTITIONS):
                fail(f"input message {i} at {prod.delivered[kv('in', i)[1]]}")
        st["ends"] = ends

    ok, _ = s.check("ctp.setup", setup)
    if not ok:
        return

    def loop():
        c = Consumer({
            "bootstrap.servers": bs,
            "client.id": "compat-confluent-txn-ctp",
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            "error_cb": lambda e: log(f"# ctp consumer error_cb: {e}"),
        })
        st["consumer"] = c
        c.subscribe([in_t])
        prod = TxnProducer(bs, tid, "ctp")
        st["prod"] = prod
        prod.txn_call("init_transactions", INIT)
        committed = {}  # partition -> next offset, as of the last committed transaction
        commits, aborted, consumed = 0, None, 0
        end = time.monotonic() + 90
        while sum(committed.get(p, 0) for p in range(PARTITIONS)) < CTP_N:
            if time.monotonic() > end:
                fail(f"not done within 90 s: committed {committed}, {commits} commits, aborted batch {aborted}")
            msgs = []
            for m in c.consume(num_messages=300, timeout=1.0):
                if m.error() is not None:
                    if m.error().fatal():
                        fail(f"consumer fatal error {m.error()}")
                    log(f"# ctp consumer error: {m.error()}")
                    continue
                msgs.append(m)
            if not msgs:
                continue
            consumed += len(msgs)
            prod.txn_call("begin_transaction")
            for m in msgs:
                k = m.key()
                prod.p.produce(out_t, key=k, value=b"out-" + m.value(), partition=m.partition(), on_delivery=prod._cb)
            pos = [tp for tp in c.position(c.assignment()) if tp.offset >= 0]
            if not pos:
                fail(f"position() of {c.assignment()} has no valid offsets after consuming {len(msgs)} records")
            prod.txn_call("send_offsets_to_transaction", pos, c.consumer_group_metadata(), OP)
            if aborted is None and sum(committed.values()) >= CTP_N // 3:
                prod.flush("the transaction to abort")  # its records reach the log, then get aborted
                prod.txn_call("abort_transaction", OP)
                aborted = len(msgs)
                got = {tp.partition: tp.offset for tp in c.committed(c.assignment(), timeout=OP)}
                want = {p: committed.get(p, confluent_kafka.OFFSET_INVALID) for p in got}
                if got != want:
                    fail(f"committed offsets after the aborted transaction: {got}, want {want} (those of the last "
                         f"committed transaction; the aborted one sent {[(tp.partition, tp.offset) for tp in pos]})")
                for p, o in got.items():
                    c.seek(TopicPartition(in_t, p, o if o >= 0 else OFFSET_BEGINNING))
                print(f"# ctp: aborted a transaction of {aborted} records after {commits} commits "
                      f"(committed {committed}), rewound to the committed offsets", flush=True)
                continue
            prod.txn_call("commit_transaction", OP)
            commits += 1
            committed.update({tp.partition: tp.offset for tp in pos})
        if aborted is None:
            fail("no transaction was aborted")
        if committed != {p: st["ends"][p] for p in range(PARTITIONS)}:
            fail(f"last committed positions {committed}, want the input end offsets {st['ends']}")
        if prod.failed:
            fail(f"{len(prod.failed)} output deliveries failed: {next(iter(prod.failed.items()))}")
        st["aborted"] = aborted
        print(f"# ctp: {commits} committed transactions, {consumed} records consumed "
              f"({consumed - CTP_N} re-read after the abort)", flush=True)

    try:
        ok, _ = s.check("ctp.loop", loop)
        if not ok:
            return

        def output():
            delivered = st["prod"].delivered  # re-produced values overwrite the aborted copies
            r = Reader(bs, out_t, "read_committed")
            try:
                recs = r.drain(30)
            finally:
                r.close()
            for p in range(PARTITIONS):
                verify_partition("output read_committed", p, recs[p], expected_values([("out-in", CTP_N)], p),
                                 delivered)
            r = Reader(bs, out_t, "read_uncommitted")
            try:
                recs = r.drain(30)
            finally:
                r.close()
            total = sum(len(v) for v in recs.values())
            if total != CTP_N + st["aborted"]:
                fail(f"output read_uncommitted: {total} records, want {CTP_N} + the aborted {st['aborted']}")

        s.check("ctp.output-exactly-once", output)

        def group_offsets():
            want = {p: st["ends"][p] for p in range(PARTITIONS)}
            res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=OP)
            r = res[group].result(timeout=OP)
            got = {tp.partition: tp.offset for tp in r.topic_partitions if tp.topic == in_t}
            if got != want:
                fail(f"list_consumer_group_offsets {group}: {got}, want the input end offsets {want}")
            c = st["consumer"]
            got = {tp.partition: tp.offset for tp in c.committed([TopicPartition(in_t, p) for p in range(PARTITIONS)],
                                                                 timeout=OP)}
            if got != want:
                fail(f"consumer.committed(): {got}, want {want}")
            for p in range(PARTITIONS):
                lo, hi = c.get_watermark_offsets(TopicPartition(in_t, p), timeout=OP)
                if hi != want[p]:
                    fail(f"input partition {p} high watermark {hi}, want {want[p]}")

        s.check("ctp.group-offsets", group_offsets)

        def simple_member():
            # A consumer of the group that never joined (assign-only, a "simple" consumer): its
            # consumer_group_metadata() has generation -1 and no member id. Kafka
            # (ClassicGroup.validateOffsetCommit) accepts such a transactional commit into a group
            # with members (older TxnOffsetCommit versions carry neither). Offsets of the output
            # topic, so the input's stay as they are.
            c2 = Consumer({"bootstrap.servers": bs, "group.id": group, "client.id": "compat-confluent-txn-simple",
                           "enable.auto.commit": False})
            try:
                meta = c2.consumer_group_metadata()
                prod = st["prod"]
                prod.txn_call("begin_transaction")
                try:
                    prod.txn_call("send_offsets_to_transaction",
                                  [TopicPartition(out_t, p, 7 + p) for p in range(PARTITIONS)], meta, OP)
                    prod.txn_call("commit_transaction", OP)
                except compat.CheckFailed:
                    try:
                        prod.p.abort_transaction(OP)
                    except KafkaException as e:
                        log(f"# ctp: abort after the failed commit: {e}")
                    raise
            finally:
                c2.close()
            res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=OP)
            got = {(tp.topic, tp.partition): tp.offset for tp in res[group].result(timeout=OP).topic_partitions}
            want = {**{(in_t, p): st["ends"][p] for p in range(PARTITIONS)},
                    **{(out_t, p): 7 + p for p in range(PARTITIONS)}}
            if got != want:
                fail(f"list_consumer_group_offsets {group} after the commit: {got}, want {want}")

        s.check("ctp.send-offsets-no-member", simple_member)
    finally:
        if "consumer" in st:
            st["consumer"].close()


def main():
    bs = compat.bootstrap()
    print(f"# confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}, "
          f"transactions against {bs} (run {RUN})", flush=True)
    txn.watchdog(SUITE_LIMIT, "confluent-kafka-txn")
    s = compat.Suite("confluent-kafka-txn")
    admin = AdminClient({"bootstrap.servers": bs, "client.id": "compat-confluent-txn-admin", "socket.timeout.ms": 15000})
    ok, _ = s.check("setup", create_topics, admin,
                    [f"{PRE}-abort", f"{PRE}-open", f"{PRE}-fence-produce", f"{PRE}-fence-end-txn"])
    if not ok:
        s.finish()
    run_abort(s, bs)
    run_open(s, bs)
    run_fence(s, bs, "produce")
    run_fence(s, bs, "end-txn")
    run_ctp(s, bs, admin)
    missing = [n for n in ("list_transactions", "describe_transactions", "describe_producers")
               if not hasattr(admin, n)]
    if missing:
        print(f"# admin: confluent-kafka {confluent_kafka.__version__} has no AdminClient.{', '.join(missing)}: "
              "not checked here (kafka-python-txn checks them)", flush=True)
    s.finish()


if __name__ == "__main__":
    main()
