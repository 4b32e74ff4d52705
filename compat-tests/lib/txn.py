"""Shared pieces of the transaction (KIP-98) suites: confluent-kafka/txn.py and kafka-python/txn.py.

Message scheme: in a transaction labelled L, message i has key "k-i", value "L-i" and goes to
partition i % PARTITIONS, in index order, so each partition's expected contents (and order) follow
from the labels and counts produced into it. The suites record each delivery's offset, so consumed
records are also checked against where the producer was told they landed.

In Kafka, each commit or abort writes one control record (a marker) into every partition of the
transaction: it takes one offset, consumers never return it, and a read_committed consumer reads
only up to the last stable offset (LSO: the first offset of the oldest open transaction, else the
high watermark) and drops records of aborted transactions.
"""

import faulthandler
import os
import sys
import threading
import time

from compat import fail

PARTITIONS = 3


def run_id():
    """Unique per run: transactional ids, topics and groups carry it."""
    return f"{int(time.time()) % 1_000_000}-{os.getpid()}"


def kv(label, i):
    return f"k-{i}".encode(), f"{label}-{i}".encode()


def partition_of(i):
    return i % PARTITIONS


def expected_values(batches, p):
    """Values partition p should hold, in order, for batches = [(label, count), ...] produced in order."""
    out = []
    for label, n in batches:
        out.extend(kv(label, i)[1] for i in range(n) if partition_of(i) == p)
    return out


def describe_values(vals, limit=4):
    s = [bytes(v).decode("utf-8", "replace") for v in vals[:limit]]
    return "[" + ", ".join(s) + (f", ... ({len(vals)} in all)]" if len(vals) > limit else "]")


def verify_partition(what, p, recs, want, delivered=None, aborted_labels=()):
    """recs: [(offset, key, value)] as consumed from partition p; want: the expected values in order.

    delivered: {value: (partition, offset)} from the producer's delivery reports (offsets checked).
    aborted_labels: labels whose values must never appear (named in the failure message).
    """
    got = [bytes(v) for _, _, v in recs]
    leaked = [v for v in got if any(v.startswith(f"{a}-".encode()) for a in aborted_labels)]
    if leaked:
        fail(f"{what}: partition {p} returned {len(leaked)} record(s) of aborted transactions, first "
             f"{describe_values(leaked)}")
    if got != want:
        first = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
        fail(f"{what}: partition {p}: {len(got)} records, want {len(want)}; first difference at #{first}: "
             f"got {describe_values(got[first:first + 3], 3)}, want {describe_values(want[first:first + 3], 3)}")
    last = -1
    for off, key, val in recs:
        if off <= last:
            fail(f"{what}: partition {p}: offset {off} after {last} (not increasing)")
        last = off
        i = int(bytes(val).decode().rsplit("-", 1)[1])
        if bytes(key or b"") != f"k-{i}".encode():
            fail(f"{what}: partition {p} offset {off}: key {key!r} for value {val!r}")
        if delivered is not None:
            at = delivered.get(bytes(val))
            if at is None:
                fail(f"{what}: partition {p} offset {off}: {val!r} has no delivery report")
            if at != (p, off):
                fail(f"{what}: {val!r} consumed at {p}/{off}, the delivery report said {at[0]}/{at[1]}")


def marker_layout(batches, p):
    """Kafka's offsets for partition p after transactions [(label, count), ...], each ending in one
    marker: returns (end offset, [first offset of each transaction's records on p])."""
    off, firsts = 0, []
    for _label, n in batches:
        k = sum(1 for i in range(n) if partition_of(i) == p)
        firsts.append(off if k else None)
        off += k + (1 if k else 0)  # a transaction writes a marker only to partitions it touched
    return off, firsts


def bounded(what, seconds, fn, *args, **kw):
    """Run fn in a daemon thread; fail if it has not returned within `seconds` (for client calls
    that take no timeout). Exceptions propagate."""
    box = {}

    def run():
        try:
            box["r"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=run, name=f"bounded:{what}", daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        fail(f"{what} did not return within {seconds} s")
    if "e" in box:
        raise box["e"]
    return box.get("r")


def wait_until(cond, seconds, what, step=0.05):
    end = time.monotonic() + seconds
    while True:
        if cond():
            return
        if time.monotonic() >= end:
            fail(f"{what}: not reached within {seconds} s")
        time.sleep(step)


def watchdog(seconds, suite):
    """Whole-suite bound: print a FAIL line and every thread's stack, then exit 1."""

    def fire():
        print(f"FAIL watchdog: {suite} still running after {seconds} s (stacks on stderr)", flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(1)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t
