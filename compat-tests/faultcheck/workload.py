"""The fault checker's clients (confluent-kafka, i.e. librdkafka), each a thread recording what it
was told: every acknowledged write, every transaction's outcome, every record read, every offset
commit. history.py checks the records; nothing here decides what is right.

- JavaProducer: kafka-clients 4.3.0's idempotent acks=all producer (java/TxnClient.java
  produce-acks) on TOPIC_JAVA, when the Java client is there (compat-tests/setup.sh caches it).
- IdempotentProducer: acks=all, enable.idempotence, paced over the partitions of TOPIC_IDEM in
  turn; values carry a sequence number so that order and duplicates can be checked.
- TransactionalProducer: transactions of TXN_RECORDS records over TOPIC_TXN; every ABORT_EVERY-th
  aborted on purpose. A commit that raised a fatal error has an unknown outcome (the producer is
  made again, which fences the old one and settles the transaction).
- Reader: an assigned consumer reading every partition of a topic from the start, continuously
  (read_committed for the transactions' topic, read_uncommitted for the other): what it reads
  during the faults must still be in the log afterwards (nothing served above the high watermark).
- GroupMember: two members of one consumer group on TOPIC_IDEM, committing synchronously after
  each batch; OffsetWatcher samples the group's committed offsets to see that they never go back.

Rates are small and bounded (this machine has two cores shared with the brokers).
"""

import logging
import os
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

TOPIC_IDEM = "fc-idem"
TOPIC_TXN = "fc-txn"
TOPIC_JAVA = "fc-java"
JAVA_PARTITIONS = 3
JAVA_INTERVAL_US = 5000  # 200 records a second
IDEM_PARTITIONS = 6
TXN_PARTITIONS = 3
GROUP = "fc-group"
IDEM_RATE = 400  # records a second
TXN_RECORDS = 4
TXN_PAUSE_S = 0.1
ABORT_EVERY = 4


# The clients' own logs (librdkafka's connection failures are many under faults) go to a file.
CLIENT_LOG = logging.getLogger("librdkafka")
CLIENT_LOG.propagate = False


def log_clients_to(path):
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    CLIENT_LOG.addHandler(handler)
    CLIENT_LOG.setLevel(logging.INFO)


def conf(bootstrap, settings=None):
    return {"bootstrap.servers": bootstrap, "logger": CLIENT_LOG, **(settings or {})}


class Worker(threading.Thread):
    def __init__(self, name):
        super().__init__(name=name, daemon=True)
        self.stop = threading.Event()
        self.crashed = None  # an exception that ended the thread early

    def run(self):
        try:
            self.work()
        except Exception as e:  # noqa: BLE001 - reported in the summary as a client failure
            self.crashed = f"{type(e).__name__}: {e}"


class IdempotentProducer(Worker):
    def __init__(self, bootstrap):
        super().__init__("idempotent-producer")
        self.p = Producer(conf(bootstrap, {"acks": "all", "enable.idempotence": True,
                           "linger.ms": 5, "message.timeout.ms": 120000}))
        self.sent = 0
        self.acked = {}  # (partition, offset) -> value
        self.sent_partition = {}  # value -> partition
        self.failed = []  # (value, error)
        self.last_ack = None
        self.longest_gap = 0.0
        self.lock = threading.Lock()

    def on_delivery(self, err, m):
        if err is not None:
            self.failed.append((m.value(), str(err)))
            return
        now = time.monotonic()
        with self.lock:
            if self.last_ack is not None:
                self.longest_gap = max(self.longest_gap, now - self.last_ack)
            self.last_ack = now
            self.acked[(m.partition(), m.offset())] = m.value()

    def work(self):
        t0 = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - t0) * IDEM_RATE)
            while self.sent < due:
                value = f"i-{self.sent}".encode()
                part = self.sent % IDEM_PARTITIONS
                self.sent_partition[value] = part
                self.p.produce(TOPIC_IDEM, key=f"k{self.sent % 97}".encode(), value=value, partition=part,
                               on_delivery=self.on_delivery)
                self.sent += 1
            self.p.poll(0.02)
        self.p.flush(150)


class JavaProducer(Worker):
    """java/TxnClient.java produce-acks: key = value = j-<i> to partition i % JAVA_PARTITIONS, paced,
    until a stop file appears; what it acknowledged is read from its output when it has stopped,
    into the same shape as IdempotentProducer's record (history.check_idempotent checks both)."""

    def __init__(self, cl, work):
        import javaproc  # compat-tests/cluster: the Java client's process and output

        super().__init__("java-producer")
        self.javaproc = javaproc
        self.stop_file = os.path.join(work, "java-producer.stop")
        self.proc = javaproc.Proc(cl, "java-producer", "produce-acks", "--topic", TOPIC_JAVA, "--partitions",
                                  JAVA_PARTITIONS, "--prefix", "j-", "--stop-file", self.stop_file,
                                  "--interval-us", JAVA_INTERVAL_US, "--max-run-ms", 3_600_000)
        self.sent = 0
        self.acked = {}
        self.sent_partition = {}
        self.failed = []

    def work(self):
        self.stop.wait()
        open(self.stop_file, "w").close()
        rc = self.proc.wait_exit(150)
        acks, errors, sent = self.javaproc.parse_java(self.proc.snapshot())
        if rc is None or sent is None:
            self.proc.kill9()
            raise RuntimeError(f"the Java producer did not finish (exit {rc}); its log: {self.proc.tail()}")
        self.sent = sent
        self.sent_partition = {f"j-{i}".encode(): i % JAVA_PARTITIONS for i in range(sent)}
        self.acked = {(p, o): f"j-{i}".encode() for i, (p, o, _) in acks.items()}
        self.failed = sorted(errors.items())


class TransactionalProducer(Worker):
    """Outcomes: committed / aborted (by us, or after an abortable error) / unknown (a fatal error
    while committing). Each transaction's values: t-<txn>-<i>."""

    def __init__(self, bootstrap):
        super().__init__("transactional-producer")
        self.bootstrap = bootstrap
        self.committed, self.aborted, self.unknown = [], [], []
        self.records = {}  # txn -> [(partition, value)]
        self.errors = []  # every exception the client raised (retried or not)
        self.producers_made = 0
        self.txn = 0

    def make(self):
        self.producers_made += 1
        p = Producer(conf(self.bootstrap, {"transactional.id": "fc-txn-producer",
                      "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                      "transaction.timeout.ms": 60000, "message.timeout.ms": 60000}))
        p.init_transactions(60)
        return p

    def settle(self, p, fn, txn, deliberate_abort):
        """Runs commit/abort, retrying retriable errors; the outcome list it belongs to."""
        for _ in range(20):
            try:
                fn(60)
                return self.aborted if deliberate_abort else self.committed
            except KafkaException as e:
                err = e.args[0]
                self.errors.append(f"txn {txn}: {err}")
                if err.retriable():
                    time.sleep(0.5)
                    continue
                if err.txn_requires_abort():
                    try:
                        p.abort_transaction(60)
                        return self.aborted
                    except KafkaException as e2:
                        self.errors.append(f"txn {txn} abort: {e2.args[0]}")
                        return None
                return None  # fatal: outcome unknown
        return None

    def work(self):
        p = self.make()
        while not self.stop.is_set():
            txn = self.txn
            self.txn += 1
            recs = [((txn + i) % TXN_PARTITIONS, f"t-{txn}-{i}".encode()) for i in range(TXN_RECORDS)]
            self.records[txn] = recs
            deliberate_abort = txn % ABORT_EVERY == ABORT_EVERY - 1
            outcome = None
            try:
                p.begin_transaction()
                for part, value in recs:
                    p.produce(TOPIC_TXN, value=value, partition=part)
                    p.poll(0)
                outcome = self.settle(p, p.abort_transaction if deliberate_abort else p.commit_transaction, txn,
                                      deliberate_abort)
            except KafkaException as e:
                err = e.args[0]
                self.errors.append(f"txn {txn}: {err}")
                if err.txn_requires_abort():
                    outcome = self.settle(p, p.abort_transaction, txn, True)
            if outcome is None:
                self.unknown.append(txn)
                # A new producer with the same transactional id fences the old one and settles
                # its transaction; what became of it is for the readers to say.
                p = None
                while p is None and not self.stop.is_set():
                    try:
                        p = self.make()
                    except KafkaException as e:
                        self.errors.append(f"init_transactions: {e.args[0]}")
                        time.sleep(1)
                if p is None:
                    return
            else:
                outcome.append(txn)
            time.sleep(TXN_PAUSE_S)


class Reader(Worker):
    """Reads every partition of `topic` from offset 0 until stopped: {(partition, offset): value},
    and every offset read twice with a different value (a read that was later rewritten)."""

    def __init__(self, bootstrap, topic, partitions, isolation):
        super().__init__(f"reader-{topic}-{isolation}")
        self.topic, self.partitions = topic, partitions
        self.c = Consumer(conf(bootstrap, {"group.id": f"fc-reader-{topic}",
                           "enable.auto.commit": False, "isolation.level": isolation,
                           "auto.offset.reset": "earliest"}))
        self.seen = {}
        self.rewritten = []  # (partition, offset, first value, second value)
        self.reads = 0

    def work(self):
        self.c.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
        try:
            while not self.stop.is_set():
                self.drain(0.2)
        finally:
            self.c.close()

    def drain(self, timeout):
        for m in self.c.consume(500, timeout=timeout):
            if m.error():
                continue
            self.reads += 1
            k = (m.partition(), m.offset())
            old = self.seen.get(k)
            if old is not None and old != m.value():
                self.rewritten.append((k[0], k[1], old, m.value()))
            self.seen[k] = m.value()


class GroupMember(Worker):
    """A member of GROUP on TOPIC_IDEM; commits synchronously after each batch it processed."""

    def __init__(self, bootstrap, n):
        super().__init__(f"group-member-{n}")
        self.c = Consumer(conf(bootstrap, {"group.id": GROUP, "enable.auto.commit": False,
                           "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                           "heartbeat.interval.ms": 1000}))
        self.consumed = {}  # (partition, offset) -> value, last seen
        self.redelivered = 0
        self.commits = 0
        self.acked_commits = []  # (monotonic time, {partition: offset}) of each commit acknowledged
        self.commit_errors = []

    def work(self):
        self.c.subscribe([TOPIC_IDEM])
        try:
            while not self.stop.is_set():
                msgs = self.c.consume(200, timeout=0.5)
                got = [m for m in msgs if not m.error()]
                for m in got:
                    k = (m.partition(), m.offset())
                    self.redelivered += k in self.consumed
                    self.consumed[k] = m.value()
                if got:
                    try:
                        done = self.c.commit(asynchronous=False)
                        self.commits += 1
                        self.acked_commits.append((time.monotonic(), {tp.partition: tp.offset for tp in done or []
                                                                       if tp.error is None and tp.offset >= 0}))
                    except KafkaException as e:
                        self.commit_errors.append(str(e.args[0]))
        finally:
            self.c.close()


class OffsetWatcher(Worker):
    """Samples GROUP's committed offsets every half second (OffsetFetch through a consumer of the
    group that never joins it); every time a partition's committed offset is lower than one seen
    before is recorded. (Not the admin client's list_consumer_group_offsets: librdkafka 2.16's
    admin client crashes the process in rd_kafka_cgrp_op when an OffsetFetch answer asks it to
    look the coordinator up again, as answers do while the coordinator moves.)"""

    def __init__(self, bootstrap):
        super().__init__("offset-watcher")
        self.c = Consumer(conf(bootstrap, {"group.id": GROUP, "enable.auto.commit": False}))
        self.highest = {}  # partition -> highest committed offset seen
        self.backwards = []  # (monotonic time, partition, seen before, now)
        self.samples = 0
        self.failed_samples = 0

    def committed(self, timeout=5):
        """{partition: committed offset} (None if the fetch failed)."""
        try:
            tps = self.c.committed([TopicPartition(TOPIC_IDEM, p) for p in range(IDEM_PARTITIONS)], timeout=timeout)
        except KafkaException:
            return None
        return {tp.partition: tp.offset for tp in tps if tp.error is None and tp.offset >= 0}

    def sample(self):
        out = self.committed()
        if out is None:
            self.failed_samples += 1
            return
        self.samples += 1
        for part, off in out.items():
            before = self.highest.get(part, -1)
            if off < before:
                self.backwards.append((round(time.monotonic(), 1), part, before, off))
            self.highest[part] = max(before, off)

    def work(self):
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(0.5)
        self.c.close()
