"""kafka-python transactions (KIP-98) against Sluice.

Same scenarios as confluent-kafka/txn.py (message scheme and offset arithmetic in lib/txn.py),
with kafka-python's KafkaProducer(transactional_id=...) and KafkaConsumer(isolation_level=...):
- abort.*: commit 100, abort 100 (flushed first), commit 100 over 3 partitions; read_committed
  (assign, from the beginning) gets exactly the 200 committed in per-partition order,
  read_uncommitted all 300; end_offsets is the end offset (markers included) for both.
- open-txn.*: an open transaction (and non-transactional records after it) is held back from
  read_committed (end_offsets = LSO = its first offset) and returned right after commit.
- fence.*: B's init_transactions with A's transactional_id fences A: A's further produce + commit
  (fence.produce) or commit (fence.end-txn) fails with ProducerFencedError (directly, or as the
  error state a commit reports); A's records stay invisible to read_committed, B's commit is visible.
- ctp.*: consume-transform-produce with send_offsets_to_transaction(offsets,
  consumer.group_metadata()) (KIP-447: generation and member id, kafka-python 3's preferred form),
  one transaction per poll, one aborted in the middle with the consumer rewound to its committed
  offsets; output exactly once in order, group offsets = input end offsets. Then
  send_offsets_to_transaction(offsets, group_id) (the bare group id: generation -1, no member, as
  kafka-python 2.x and older clients send it) while the group has its member: accepted, as by Kafka.
- admin.*: KafkaAdminClient's KIP-664 calls: list_transactions (with state and producer id
  filters), describe_transactions (an open and a completed transaction, an unknown id) and
  describe_producers (the open transaction's first offset, then none).
Calls that take no timeout (commit/abort/send_offsets_to_transaction wait unbounded) run under
lib/txn.py's bounded().
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import kafka  # noqa: E402
import kafka.errors as Errors  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

import compat  # noqa: E402
import txn  # noqa: E402
from compat import fail  # noqa: E402
from txn import PARTITIONS, bounded, expected_values, kv, marker_layout, partition_of, verify_partition  # noqa: E402

OP = 30  # seconds, any single client call
TIMEOUT_MS = OP * 1000
INIT = 20  # seconds for init_transactions (healthy: well under a second, fencing included)
SUITE_LIMIT = 170
RUN = txn.run_id()
PRE = f"compat-kafka-python-txn-{RUN}"
FENCED = (Errors.ProducerFencedError, Errors.InvalidProducerEpochError)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def create_topics(admin, topics):
    admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics],
                        timeout_ms=TIMEOUT_MS)
    for _ in compat.deadline_loop(15):
        listed = set(admin.list_topics())
        if all(t in listed for t in topics):
            return
    fail(f"{topics} not all listed 15 s after creation")


class TxnProducer:
    """A KafkaProducer (transactional when tid is given) recording each acknowledgement by value."""

    def __init__(self, bs, tid, role, timeout_ms=60000):
        self.tid, self.role = tid, role
        self.futs = {}  # value -> future
        conf = dict(bootstrap_servers=bs, client_id=f"compat-kafka-python-txn-{role}", linger_ms=5,
                    request_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS)
        if tid is not None:
            conf.update(transactional_id=tid, transaction_timeout_ms=timeout_ms)
        else:
            conf.update(enable_idempotence=True, acks="all")
        self.p = KafkaProducer(**conf)

    def produce(self, topic, label, n, only=None):
        for i in (range(n) if only is None else only):
            k, v = kv(label, i)
            self.futs[v] = self.p.send(topic, key=k, value=v, partition=partition_of(i))

    def flush(self, what):
        bounded(f"{self.role}: flush ({what})", OP + 5, self.p.flush, timeout=OP)
        bad = [(v, f) for v, f in self.futs.items() if not f.is_done or f.failed()]
        if bad:
            v, f = bad[0]
            fail(f"{self.role}: {len(bad)} sends not acknowledged ({what}); first {v!r}: "
                 f"{f.exception if f.is_done else 'not done after flush'}")

    @property
    def delivered(self):
        return {v: (f.value.partition, f.value.offset) for v, f in self.futs.items()
                if f.is_done and f.succeeded()}

    def call(self, name, *args):
        t0 = time.monotonic()
        try:
            return bounded(f"{self.role}: {name}", INIT if name == "init_transactions" else OP,
                           getattr(self.p, name), *args)
        except compat.CheckFailed:
            raise
        except Exception as e:  # noqa: BLE001
            fail(f"{self.role} ({self.tid}): {name} failed after {time.monotonic() - t0:.1f} s: {e!r}")

    def last_error(self):
        tm = getattr(self.p, "_transaction_manager", None)
        return getattr(tm, "last_error", None)

    def close(self):
        try:
            self.p.close(timeout=5)
        except Exception as e:  # noqa: BLE001
            log(f"# {self.role}: close: {e!r}")


class Reader:
    """An assign()-only consumer of every partition of a topic from the beginning."""

    def __init__(self, bs, topic, isolation):
        self.topic, self.isolation = topic, isolation
        self.c = KafkaConsumer(bootstrap_servers=bs, client_id=f"compat-kafka-python-txn-{isolation}",
                               group_id=None, isolation_level=isolation, enable_auto_commit=False,
                               auto_offset_reset="earliest", fetch_max_wait_ms=100, request_timeout_ms=TIMEOUT_MS)
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.c.assign(self.tps)
        self.c.seek_to_beginning()
        self.recs = {p: [] for p in range(PARTITIONS)}

    def _take(self, timeout_ms):
        n = 0
        for tp, rs in self.c.poll(timeout_ms=timeout_ms, max_records=1000).items():
            for r in rs:
                self.recs[tp.partition].append((r.offset, r.key, r.value))
                n += 1
        return n

    def end_offsets(self):
        """ListOffsets latest with this consumer's isolation level (read_committed: the LSO)."""
        res = self.c.end_offsets(self.tps, timeout_ms=TIMEOUT_MS)
        return {tp.partition: o for tp, o in res.items()}

    def drain(self, seconds=30, want_total=None):
        """Consume until the position of every partition reaches end_offsets (past any trailing
        marker) and, if given, want_total records arrived."""
        ends = self.end_offsets()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._take(200)
            total = sum(len(r) for r in self.recs.values())
            pos = {tp.partition: self.c.position(tp, timeout_ms=TIMEOUT_MS) for tp in self.tps}
            if all(pos[p] >= ends[p] for p in ends) and (want_total is None or total >= want_total):
                return self.recs
        fail(f"{self.isolation} consumer of {self.topic}: positions {pos} did not reach end_offsets {ends} within "
             f"{seconds} s ({[len(self.recs[p]) for p in range(PARTITIONS)]} records)")

    def poll_for(self, seconds):
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            n += self._take(200)
        return n

    def close(self):
        self.c.close(autocommit=False)


def check_delivery_layout(prod, batches, labels):
    delivered = prod.delivered
    for p in range(PARTITIONS):
        _, firsts = marker_layout(batches, p)
        for (label, n), first in zip(batches, firsts):
            if label not in labels:
                continue
            offs = [delivered[kv(label, i)[1]][1] for i in range(n) if partition_of(i) == p]
            want = list(range(first, first + len(offs))) if offs else []
            if offs != want:
                fail(f"partition {p}: transaction {label} acknowledged at offsets {offs[:3]}..{offs[-3:]}, want "
                     f"{want[:1]}..{want[-1:]} (each earlier transaction's records plus one marker offset)")


# ------------------------------------------------------------------ 1. aborted transactions invisible

def run_abort(s, bs, states):
    topic, tid = f"{PRE}-abort", f"{PRE}-abort"
    batches = [("t1", 100), ("t2", 100), ("t3", 100)]
    st = {}

    def produce():
        prod = TxnProducer(bs, tid, "abort")
        st["prod"] = prod
        prod.call("init_transactions")
        for label, n in batches:
            prod.call("begin_transaction")
            prod.produce(topic, label, n)
            prod.flush(f"transaction {label}")
            prod.call("abort_transaction" if label == "t2" else "commit_transaction")
        check_delivery_layout(prod, batches, ("t1", "t2", "t3"))
        states[tid] = "CompleteCommit"

    try:
        ok, _ = s.check("abort.produce", produce)
        if not ok:
            return
        delivered = st["prod"].delivered

        def read(isolation, want_batches, aborted):
            r = Reader(bs, topic, isolation)
            try:
                recs = r.drain(30)
                for p in range(PARTITIONS):
                    verify_partition(isolation, p, recs[p], expected_values(want_batches, p), delivered, aborted)
                ends = r.end_offsets()
                want_ends = {p: marker_layout(batches, p)[0] for p in range(PARTITIONS)}
                if ends != want_ends:
                    fail(f"{isolation} end_offsets {ends}, want {want_ends} (3 transactions' records and markers)")
                begin = {tp.partition: o for tp, o in r.c.beginning_offsets(r.tps, timeout_ms=TIMEOUT_MS).items()}
                if begin != {p: 0 for p in range(PARTITIONS)}:
                    fail(f"{isolation} beginning_offsets {begin}")
            finally:
                r.close()

        s.check("abort.read-committed", read, "read_committed", [("t1", 100), ("t3", 100)], ("t2",))
        s.check("abort.read-uncommitted", read, "read_uncommitted", batches, ())
    finally:
        if "prod" in st:
            st["prod"].close()


# ------------------------------------------------------------------ open transaction held back

def run_open(s, bs, states):
    topic, tid = f"{PRE}-open", f"{PRE}-open"
    n_txn = 30
    plain_idx = [PARTITIONS * k for k in range(5)]  # 5 non-transactional records, all on partition 0
    per = {p: sum(1 for i in range(n_txn) if partition_of(i) == p) for p in range(PARTITIONS)}
    st = {}
    rc = Reader(bs, topic, "read_committed")
    ru = Reader(bs, topic, "read_uncommitted")

    def want_values(p):
        return expected_values([("open", n_txn)], p) + ([kv("plain", i)[1] for i in plain_idx] if p == 0 else [])

    try:
        def hidden():
            prod = TxnProducer(bs, tid, "open")
            st["prod"] = prod
            prod.call("init_transactions")
            prod.call("begin_transaction")
            prod.produce(topic, "open", n_txn)
            prod.flush("open transaction")
            plain = TxnProducer(bs, None, "plain")
            try:
                plain.produce(topic, "plain", 0, only=plain_idx)
                plain.flush("non-transactional records after the open transaction")
            finally:
                plain.close()
            st["delivered"] = {**prod.delivered, **plain.delivered}
            recs = ru.drain(20, want_total=n_txn + len(plain_idx))
            for p in range(PARTITIONS):
                verify_partition("read_uncommitted", p, recs[p], want_values(p), st["delivered"])
            got = rc.poll_for(3.0)
            if got:
                fail(f"read_committed returned {got} record(s) of an open transaction (or after its first offset): "
                     f"{ {p: [v for _, _, v in r][:3] for p, r in rc.recs.items() if r} }")
            lso, hw = rc.end_offsets(), ru.end_offsets()
            if lso != {p: 0 for p in range(PARTITIONS)}:
                fail(f"read_committed end_offsets {lso}, want 0 everywhere (the LSO: the open transaction's first "
                     f"offset); read_uncommitted end_offsets {hw}")
            want_hw = {p: per[p] + (len(plain_idx) if p == 0 else 0) for p in range(PARTITIONS)}
            if hw != want_hw:
                fail(f"read_uncommitted end_offsets {hw}, want {want_hw}")
            pos = {tp.partition: rc.c.position(tp) for tp in rc.tps}
            if pos != {p: 0 for p in range(PARTITIONS)}:
                fail(f"read_committed positions {pos} with nothing returned, want 0")

        ok, _ = s.check("open-txn.hidden", hidden)
        if not ok:
            return

        def visible():
            t0 = time.monotonic()
            st["prod"].call("commit_transaction")
            t_commit = time.monotonic()
            states[tid] = "CompleteCommit"
            recs = rc.drain(10, want_total=n_txn + len(plain_idx))
            lag = time.monotonic() - t_commit
            for p in range(PARTITIONS):
                verify_partition("read_committed after commit", p, recs[p], want_values(p), st["delivered"])
            want = {p: per[p] + (len(plain_idx) if p == 0 else 0) + 1 for p in range(PARTITIONS)}
            if rc.end_offsets() != want:
                fail(f"read_committed end_offsets after commit {rc.end_offsets()}, want {want}")
            print(f"# open-txn: commit took {(t_commit - t0) * 1000:.0f} ms; read_committed had every record "
                  f"{lag * 1000:.0f} ms after it returned", flush=True)
            if lag > 5:
                fail(f"read_committed needed {lag:.1f} s after commit to return the records")

        s.check("open-txn.visible-after-commit", visible)
    finally:
        rc.close()
        ru.close()
        if "prod" in st:
            st["prod"].close()


# ------------------------------------------------------------------ 2. fencing

def run_fence(s, bs, mode, states):
    topic, tid = f"{PRE}-fence-{mode}", f"{PRE}-fence-{mode}"
    batches = [("A", 30), ("B", 30)]
    held = []

    def scenario():
        a = TxnProducer(bs, tid, f"fence-{mode}-A")
        held.append(a)
        a.call("init_transactions")
        a.call("begin_transaction")
        a.produce(topic, "A", 30)
        a.flush("A's open transaction")
        a_delivered = a.delivered
        b = TxnProducer(bs, tid, f"fence-{mode}-B")
        held.append(b)
        t0 = time.monotonic()
        b.call("init_transactions")  # fences A: its open transaction is aborted
        print(f"# fence.{mode}: B's init_transactions took {(time.monotonic() - t0) * 1000:.0f} ms", flush=True)
        late = kv("Alate", 0)[1]
        if mode == "produce":
            a.produce(topic, "Alate", 1)
            try:
                bounded("A: flush", OP + 5, a.p.flush, timeout=10)
            except Errors.KafkaError as e:
                log(f"# fence.produce: A's flush raised {e!r}")
        # A's commit must fail. If its error is not yet the fencing itself (e.g. an abortable produce
        # error), kafka-python learns about the fencing when it aborts (EndTxn or an InitProducerId
        # epoch bump with the old epoch): that must fail with ProducerFencedError.
        # kafka-python 3.0 refuses commit/abort while its KIP-360 epoch bump (after the produce
        # error) is in flight ("Invalid transition attempted from state BUMPING_PRODUCER_EPOCH"):
        # retry the same step until the bump's answer arrives.
        how, fenced = [], False
        deadline = time.monotonic() + 15
        for step in ("commit_transaction", "abort_transaction"):
            while True:
                try:
                    bounded(f"A: {step}", OP, getattr(a.p, step))
                except compat.CheckFailed:
                    raise
                except Exception as e:  # noqa: BLE001
                    last = a.last_error()
                    if "BUMPING_PRODUCER_EPOCH" in str(e) and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    how.append(f"{step} raised {e!r} (transaction manager error: {last!r})")
                    fenced = isinstance(e, FENCED) or isinstance(last, FENCED)
                    break
                how.append(f"{step} succeeded")
                break
            if fenced or how[-1].endswith("succeeded"):
                break
        if not fenced or how[0].startswith("commit_transaction succeeded"):
            fail(f"A was not told it is fenced: {'; then '.join(how)}")
        print(f"# fence.{mode}: A: {'; then '.join(how)}", flush=True)
        if mode == "produce":
            f = a.futs[late]
            if f.is_done and f.succeeded():
                fail(f"A's record produced after the fencing was acknowledged at {f.value.partition}/{f.value.offset}")
            log(f"# fence.produce: A's late send: {f.exception if f.is_done else 'not completed'}")
        b.call("begin_transaction")
        b.produce(topic, "B", 30)
        b.flush("B's transaction")
        b.call("commit_transaction")
        states[tid] = "CompleteCommit"
        check_delivery_layout(b, batches, ("B",))
        delivered = {**a_delivered, **b.delivered}
        for iso, want_batches in (("read_committed", [("B", 30)]), ("read_uncommitted", batches)):
            r = Reader(bs, topic, iso)
            try:
                recs = r.drain(20)
            finally:
                r.close()
            for p in range(PARTITIONS):
                verify_partition(iso, p, recs[p], expected_values(want_batches, p), delivered,
                                 ("A", "Alate") if iso == "read_committed" else ("Alate",))

    try:
        s.check(f"fence.{mode}", scenario)
    finally:
        for p in held:
            p.close()


# ------------------------------------------------------------------ 3. consume-transform-produce

CTP_N = 3000


def run_ctp(s, bs, admin, states):
    in_t, out_t, group, tid = f"{PRE}-ctp-in", f"{PRE}-ctp-out", f"{PRE}-ctp", f"{PRE}-ctp"
    st = {}

    def setup():
        create_topics(admin, [in_t, out_t])
        prod = TxnProducer(bs, None, "ctp-input")
        try:
            prod.produce(in_t, "in", CTP_N)
            prod.flush("input")
        finally:
            prod.close()
        d = prod.delivered
        for i in range(CTP_N):
            if d[kv("in", i)[1]] != (partition_of(i), i // PARTITIONS):
                fail(f"input message {i} at {d[kv('in', i)[1]]}")
        st["ends"] = {p: sum(1 for i in range(CTP_N) if partition_of(i) == p) for p in range(PARTITIONS)}

    ok, _ = s.check("ctp.setup", setup)
    if not ok:
        return

    def loop():
        c = KafkaConsumer(bootstrap_servers=bs, client_id="compat-kafka-python-txn-ctp", group_id=group,
                          isolation_level="read_committed", enable_auto_commit=False, auto_offset_reset="earliest",
                          session_timeout_ms=10000, heartbeat_interval_ms=1000, request_timeout_ms=TIMEOUT_MS,
                          fetch_max_wait_ms=100)
        st["consumer"] = c
        c.subscribe([in_t])
        prod = TxnProducer(bs, tid, "ctp")
        st["prod"] = prod
        prod.call("init_transactions")
        committed = {}  # partition -> next offset, as of the last committed transaction
        commits, aborted, consumed = 0, None, 0
        end = time.monotonic() + 90
        while sum(committed.get(p, 0) for p in range(PARTITIONS)) < CTP_N:
            if time.monotonic() > end:
                fail(f"not done within 90 s: committed {committed}, {commits} commits, aborted batch {aborted}")
            batch = [r for rs in c.poll(timeout_ms=1000, max_records=300).values() for r in rs]
            if not batch:
                continue
            consumed += len(batch)
            prod.call("begin_transaction")
            for r in batch:
                prod.futs[b"out-" + r.value] = prod.p.send(out_t, key=r.key, value=b"out-" + r.value,
                                                           partition=r.partition)
            offsets = {tp: OffsetAndMetadata(c.position(tp, timeout_ms=TIMEOUT_MS), "", -1) for tp in c.assignment()}
            meta = c.group_metadata()  # KIP-447: generation and member id, checked by the coordinator
            if meta.generation_id < 0 or not meta.member_id:
                fail(f"consumer.group_metadata() {meta} after receiving records: not a joined member")
            prod.call("send_offsets_to_transaction", offsets, meta)
            if aborted is None and sum(committed.values()) >= CTP_N // 3:
                prod.flush("the transaction to abort")
                prod.call("abort_transaction")
                aborted = len(batch)
                got = {tp.partition: c.committed(tp, timeout_ms=TIMEOUT_MS) for tp in c.assignment()}
                want = {p: committed.get(p) for p in got}
                if got != want:
                    fail(f"committed offsets after the aborted transaction: {got}, want {want} (those of the last "
                         f"committed transaction; the aborted one sent "
                         f"{ {tp.partition: om.offset for tp, om in offsets.items()} })")
                for tp in c.assignment():
                    if got[tp.partition] is None:
                        c.seek_to_beginning(tp)
                    else:
                        c.seek(tp, got[tp.partition])
                print(f"# ctp: aborted a transaction of {aborted} records after {commits} commits "
                      f"(committed {committed}), rewound to the committed offsets", flush=True)
                continue
            prod.call("commit_transaction")
            commits += 1
            committed.update({tp.partition: om.offset for tp, om in offsets.items()})
        states[tid] = "CompleteCommit"
        if aborted is None:
            fail("no transaction was aborted")
        if committed != st["ends"]:
            fail(f"last committed positions {committed}, want the input end offsets {st['ends']}")
        st["aborted"] = aborted
        print(f"# ctp: {commits} committed transactions, {consumed} records consumed "
              f"({consumed - CTP_N} re-read after the abort)", flush=True)

    try:
        ok, _ = s.check("ctp.loop", loop)
        if not ok:
            return

        def output():
            delivered = st["prod"].delivered  # re-sent values replace the aborted copies
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
            want = st["ends"]
            res = admin.list_group_offsets(group).get(group, {})
            got = {tp.partition: om.offset for tp, om in res.items() if tp.topic == in_t}
            if got != want:
                fail(f"list_group_offsets {group}: {got}, want the input end offsets {want}")
            c = st["consumer"]
            got = {p: c.committed(TopicPartition(in_t, p), timeout_ms=TIMEOUT_MS) for p in range(PARTITIONS)}
            if got != want:
                fail(f"consumer.committed(): {got}, want {want}")
            ends = {tp.partition: o for tp, o in
                    c.end_offsets([TopicPartition(in_t, p) for p in range(PARTITIONS)], timeout_ms=TIMEOUT_MS).items()}
            if ends != want:
                fail(f"input end_offsets {ends}, want {want}")

        s.check("ctp.group-offsets", group_offsets)

        def bare_group_id():
            # Kafka (ClassicGroup.validateOffsetCommit) accepts a transactional commit without
            # generation and member id into a group with members: older TxnOffsetCommit versions
            # have neither. Offsets of the output topic, so the input's stay as they are.
            prod = st["prod"]
            offsets = {TopicPartition(out_t, p): OffsetAndMetadata(7 + p, "", -1) for p in range(PARTITIONS)}
            prod.call("begin_transaction")
            try:
                prod.call("send_offsets_to_transaction", offsets, group)
                prod.call("commit_transaction")
            except compat.CheckFailed:
                # Leave no open transaction behind (admin.list-transactions expects none).
                states.pop(tid, None)
                try:
                    bounded("ctp: abort_transaction", OP, prod.p.abort_transaction)
                    states[tid] = "CompleteAbort"
                except Exception as e:  # noqa: BLE001
                    log(f"# ctp: abort after the failed commit: {e!r}")
                raise
            res = admin.list_group_offsets(group).get(group, {})
            got = {(tp.topic, tp.partition): om.offset for tp, om in res.items()}
            want = {**{(in_t, p): o for p, o in st["ends"].items()}, **{(out_t, p): 7 + p for p in range(PARTITIONS)}}
            if got != want:
                fail(f"list_group_offsets {group} after the commit: {got}, want {want}")

        s.check("ctp.send-offsets-group-id", bare_group_id)
    finally:
        if "consumer" in st:
            st["consumer"].close(autocommit=False)
        if "prod" in st:
            st["prod"].close()


# ------------------------------------------------------------------ 4. transaction admin (KIP-664)

def run_admin(s, bs, admin, states):
    topic, tid = f"{PRE}-admin", f"{PRE}-admin"
    idx = [i for i in range(15) if partition_of(i) != 2]  # 5 records each on partitions 0 and 1
    timeout_ms = 45000
    st = {}

    def listing(**kw):
        out = {}
        for broker, rows in admin.list_transactions(**kw).items():
            for t in rows:
                if t.transactional_id in out:
                    fail(f"list_transactions: {t.transactional_id} listed twice")
                out[t.transactional_id] = t
        return out

    def open_txn():
        create_topics(admin, [topic])
        prod = TxnProducer(bs, tid, "admin", timeout_ms=timeout_ms)
        st["prod"] = prod
        prod.call("init_transactions")
        got = listing().get(tid)
        if got is None or got.state != "Empty":
            fail(f"after init_transactions, list_transactions shows {tid} as {got}, want state Empty")
        st["t_begin"] = int(time.time() * 1000)
        prod.call("begin_transaction")
        prod.produce(topic, "adm", 0, only=idx)
        prod.flush("the open transaction")

    ok, _ = s.check("admin.setup", open_txn)
    try:
        if ok:
            def list_transactions():
                all_ = listing()
                bad = {t: (all_[t].state if t in all_ else "missing") for t, want in states.items()
                       if t not in all_ or all_[t].state != want}
                if bad:
                    fail(f"list_transactions: {bad}, want {states}")
                if all_.get(tid) is None or all_[tid].state != "Ongoing":
                    fail(f"list_transactions: {tid} is {all_.get(tid)}, want Ongoing")
                st["pid"] = all_[tid].producer_id
                ongoing = listing(state_filters=["Ongoing"])
                if tid not in ongoing or set(ongoing) & set(states):
                    fail(f"state_filters=[Ongoing] listed {sorted(ongoing)}")
                done = listing(state_filters=["CompleteCommit"])
                want_done = {t for t, v in states.items() if v == "CompleteCommit"}
                if tid in done or not want_done <= set(done):
                    fail(f"state_filters=[CompleteCommit] listed {sorted(done)}, want {sorted(want_done)}")
                by_pid = listing(producer_id_filters=[st["pid"]])
                if sorted(by_pid) != [tid]:
                    fail(f"producer_id_filters=[{st['pid']}] listed {sorted(by_pid)}, want [{tid}]")
                pids = [all_[t].producer_id for t in states] + [st["pid"]]
                if len(set(pids)) != len(pids) or min(pids) < 0:
                    fail(f"producer ids not distinct and valid: {dict(zip(list(states) + [tid], pids))}")

            s.check("admin.list-transactions", list_transactions)

            def describe_open():
                d = admin.describe_transactions([tid])[tid]
                now = int(time.time() * 1000)
                want_tps = {TopicPartition(topic, 0), TopicPartition(topic, 1)}
                if d.state != "Ongoing" or d.topic_partitions != want_tps:
                    fail(f"{tid}: {d.state} on {sorted(d.topic_partitions)}, want Ongoing on {sorted(want_tps)}")
                if d.transaction_timeout_ms != timeout_ms:
                    fail(f"{tid}: transaction_timeout_ms {d.transaction_timeout_ms}, want {timeout_ms}")
                if not st["t_begin"] - 10_000 <= d.transaction_start_time_ms <= now + 10_000:
                    fail(f"{tid}: transaction_start_time_ms {d.transaction_start_time_ms}, the first send was at "
                         f"about {st['t_begin']}")
                if d.producer_id != st.get("pid", d.producer_id) or d.producer_epoch < 0 or d.coordinator_id != 1:
                    fail(f"{tid}: {d}")
                st["desc"] = d

            s.check("admin.describe-transactions", describe_open)

            def describe_producers():
                d = st.get("desc") or admin.describe_transactions([tid])[tid]
                tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
                res = admin.describe_producers(tps)
                delivered = st["prod"].delivered
                for p in range(PARTITIONS):
                    mine = [x for x in res[tps[p]].active_producers if x.producer_id == d.producer_id]
                    sent = sorted(delivered[kv("adm", i)[1]][1] for i in idx if partition_of(i) == p)
                    if not sent:
                        if mine:
                            fail(f"partition {p} (not in the transaction) lists the producer: {mine}")
                        continue
                    if len(mine) != 1:
                        fail(f"partition {p}: active producers {res[tps[p]].active_producers}, want producer id "
                             f"{d.producer_id} once")
                    x = mine[0]
                    if (x.producer_epoch, x.current_transaction_start_offset, x.last_sequence) != \
                            (d.producer_epoch, sent[0], len(sent) - 1):
                        fail(f"partition {p}: {x}, want epoch {d.producer_epoch}, current_transaction_start_offset "
                             f"{sent[0]}, last_sequence {len(sent) - 1}")
                st["prod"].call("commit_transaction")
                d2 = admin.describe_transactions([tid])[tid]
                if d2.state != "CompleteCommit" or d2.topic_partitions:
                    fail(f"{tid} after commit: {d2.state} on {sorted(d2.topic_partitions)}, want CompleteCommit, none")
                res = admin.describe_producers(tps[:2])
                for tp in tps[:2]:
                    mine = [x for x in res[tp].active_producers if x.producer_id == d.producer_id]
                    if len(mine) != 1 or mine[0].current_transaction_start_offset != -1:
                        fail(f"partition {tp.partition} after commit: {mine}, want current_transaction_start_offset -1")

            s.check("admin.describe-producers", describe_producers)

        def unknown():
            missing = f"{PRE}-no-such-id"
            try:
                d = admin.describe_transactions([missing])
                fail(f"describe_transactions of an unknown id: {d}, want TRANSACTIONAL_ID_NOT_FOUND (105)")
            except Errors.TransactionalIdNotFoundError:
                pass

        s.check("admin.describe-unknown-id", unknown)
    finally:
        if "prod" in st:
            st["prod"].close()


def main():
    bs = compat.bootstrap()
    print(f"# kafka-python {kafka.__version__}, transactions against {bs} (run {RUN})", flush=True)
    txn.watchdog(SUITE_LIMIT, "kafka-python-txn")
    s = compat.Suite("kafka-python-txn")
    ok, admin = s.check("cluster", lambda: KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=TIMEOUT_MS,
                                                            client_id="compat-kafka-python-txn-admin"))
    if not ok:
        s.finish()
    states = {}  # transactional id -> the state list/describe should show at the end
    try:
        ok, _ = s.check("setup", create_topics, admin,
                        [f"{PRE}-abort", f"{PRE}-open", f"{PRE}-fence-produce", f"{PRE}-fence-end-txn"])
        if not ok:
            s.finish()
        run_abort(s, bs, states)
        run_open(s, bs, states)
        run_fence(s, bs, "produce", states)
        run_fence(s, bs, "end-txn", states)
        run_ctp(s, bs, admin, states)
        run_admin(s, bs, admin, states)
    finally:
        admin.close()
    s.finish()


if __name__ == "__main__":
    main()
