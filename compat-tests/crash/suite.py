"""Crash test: every message acknowledged with acks=-1 survives kill -9 at its acknowledged place.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file):
  1. start the broker, create a 3-partition topic;
  2. produce with confluent-kafka (acks=all, retries on) recording every delivery report
     (partition, offset, value), keeping thousands of messages in flight;
  3. kill -9 the broker while messages are in flight, restart it on the same data dir and port,
     keep producing (the producer retries what was in flight); do this ROUNDS times;
  4. read every partition back from offset 0 and check that each acknowledged message is at
     exactly the acknowledged partition/offset, and that offsets have no holes.
Unacknowledged messages may or may not be there, and may be duplicated by retries (no idempotence).
Then the same once more with an idempotent producer, which must see no duplicates and no fatal error
(the restarted broker rebuilds producer state from the log).
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Producer  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import NUM_PARTITIONS, fail  # noqa: E402

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("ck_suite", os.path.join(HERE, "..", "confluent-kafka", "suite.py"))
ck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ck)

ROUNDS = int(os.environ.get("SLUICE_CRASH_ROUNDS", "2"))
ACKS_BEFORE_KILL = int(os.environ.get("SLUICE_CRASH_ACKS_PER_ROUND", "20000"))
IN_FLIGHT_TARGET = 5000
TOPIC = "compat-crash"


def value_for(i):
    v = f"crash-{i}-"
    return (v + "x" * (200 - len(v))).encode()


class Run:
    """One producer's stream into one topic, with every delivery report recorded."""

    def __init__(self, bs, topic, idempotent):
        self.bs = bs
        self.topic = topic
        self.next = 0
        self.acked = {}  # index -> (partition, offset)
        self.failed = {}  # index -> error
        self.fatal = []
        self.producer = Producer({
            "bootstrap.servers": bs,
            "client.id": "compat-crash-producer",
            "acks": "all",
            "enable.idempotence": idempotent,
            "compression.type": "lz4",  # multi-record compressed batches must survive recovery
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "message.timeout.ms": 60000,
            "queue.buffering.max.messages": 200000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "socket.timeout.ms": 10000,
            "log_level": 2,  # connection-refused noise while the broker is down is expected
        }, error_cb=self._error)

    def _error(self, err):
        if err.fatal():
            self.fatal.append(str(err))

    def _cb(self, i):
        def cb(err, msg):
            if err is None:
                self.acked[i] = (msg.partition(), msg.offset())
            else:
                self.failed[i] = str(err)
        return cb

    def send_one(self):
        i = self.next
        try:
            self.producer.produce(self.topic, key=f"k{i % 100}".encode(), value=value_for(i), on_delivery=self._cb(i))
        except BufferError:
            self.producer.poll(0.05)
            return
        self.next += 1

    def in_flight(self):
        return len(self.producer)

    def produce_until(self, acked_target, seconds):
        """Keeps IN_FLIGHT_TARGET messages queued until acked_target acks or the time is up."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and len(self.acked) < acked_target:
            while self.in_flight() < IN_FLIGHT_TARGET:
                self.send_one()
            self.producer.poll(0.01)


def phase(s, broker, a, bs, name, topic, idempotent, rounds):
    """Produce into `topic`, kill -9 the broker `rounds` times mid-stream, restart it, produce more,
    then check every acknowledged message (and, when idempotent, that nothing was written twice)."""
    ok, _ = s.check(f"{name}.create-topic", ck.create_topic, a, topic)
    if not ok:
        return False
    run = Run(bs, topic, idempotent)
    print(f"# {name}: topic {topic}, acks=all enable.idempotence={idempotent}, {rounds} kill -9 round(s)", flush=True)
    for rnd in range(1, rounds + 1):
        target = len(run.acked) + ACKS_BEFORE_KILL

        def produce_then_kill():
            run.produce_until(target, 60)
            if run.fatal:
                fail(f"producer fatal error: {run.fatal[0]}")
            if len(run.acked) < target:
                fail(f"only {len(run.acked)} acks of {target} within 60 s (failed: {len(run.failed)}, "
                     f"first error: {next(iter(run.failed.values()), None)})")
            inflight = run.in_flight()
            broker.kill9()
            print(f"# {name} round {rnd}: kill -9 with {inflight} messages in flight, "
                  f"{len(run.acked)} acknowledged so far, {run.next} sent", flush=True)
            if inflight == 0:
                fail("nothing was in flight at kill time")

        ok, _ = s.check(f"{name}.round{rnd}.kill-in-flight", produce_then_kill)
        if not ok:
            return False
        # Produce into the void for a moment: requests fail and are queued for retry.
        for _ in compat.deadline_loop(0.5, step=0.01):
            run.producer.poll(0)
        ok, _ = s.check(f"{name}.round{rnd}.restart", broker.start)
        if not ok:
            return False

    def after_restart():
        before = len(run.acked)
        run.produce_until(before + 5000, 60)
        left = run.producer.flush(90)
        if run.fatal:
            fail(f"producer fatal error after restart: {run.fatal[0]}")
        if left:
            fail(f"{left} messages still queued 90 s after the last restart")
        if len(run.acked) < before + 5000:
            fail(f"only {len(run.acked) - before} new acks after the last restart; "
                 f"first error: {next(iter(run.failed.values()), None)}")

    s.check(f"{name}.produce-after-restart", after_restart)
    print(f"# {name}: sent {run.next}, acknowledged {len(run.acked)}, failed {len(run.failed)}", flush=True)

    def verify():
        latest = ck.list_offsets(a, topic, ck.OffsetSpec.latest())
        by_pos = {}
        for p in range(NUM_PARTITIONS):
            hw = latest[p].offset
            recs = ck.consume_partition(bs, topic, p, 0, hw, timeout=120)
            if len(recs) != hw:
                fail(f"partition {p}: read {len(recs)} records, high watermark {hw}")
            for i, r in enumerate(recs):
                if r.offset != i:
                    fail(f"partition {p}: record #{i} at offset {r.offset} (hole in the log)")
                by_pos[(p, r.offset)] = r.value
        lost = []
        for i, (p, off) in sorted(run.acked.items()):
            got = by_pos.get((p, off))
            if got != value_for(i):
                lost.append((i, p, off, None if got is None else got[:20]))
        if lost:
            fail(f"{len(lost)} of {len(run.acked)} acknowledged messages are not at their acknowledged "
                 f"partition/offset; first: message {lost[0][0]} at {lost[0][1]}/{lost[0][2]} holds {lost[0][3]!r}")
        if idempotent:
            seen = {}
            for pos, v in by_pos.items():
                if v in seen:
                    fail(f"idempotent producer: {v[:20]!r} written twice, at {seen[v]} and {pos} "
                         "(retries after the restart were not deduplicated)")
                seen[v] = pos
        print(f"# {name}: all {len(run.acked)} acknowledged messages found; {len(by_pos)} records in the log",
              flush=True)

    s.check(f"{name}.acked-messages-present", verify)
    return True


def main():
    bs = compat.bootstrap()
    s = compat.Suite("crash")
    broker = Broker("crash suite")
    try:
        ok, _ = s.check("start", broker.start)
        if not ok:
            s.finish()
        a = ck.admin(bs)
        # Plain acks=all producer: every ack must survive; retries may duplicate unacked messages.
        if phase(s, broker, a, bs, "plain", TOPIC, False, ROUNDS):
            # Idempotent producer: the restarted broker must rebuild producer state from the log,
            # so retried batches are recognised as duplicates (no double writes, no fatal error).
            phase(s, broker, a, bs, "idempotent", TOPIC + "-idempotent", True, 1)

        def clean_stop():
            rc = broker.stop()
            if rc not in (0, None):
                fail(f"broker exit status {rc} after SIGTERM")

        if broker.proc is not None and broker.proc.poll() is None:
            s.check("clean-shutdown", clean_stop)
    finally:
        broker.stop()
    s.finish()


if __name__ == "__main__":
    main()
