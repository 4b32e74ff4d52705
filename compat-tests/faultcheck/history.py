"""The fault checker's verdict: the recorded history (workload.py) against the log as read back
once the cluster has recovered. Each check returns a list of violations (strings, with examples);
nothing here talks to a broker.

What is checked, and why it is what Kafka promises (acks=all, min.insync.replicas=2, no unclean
election, RF=3):
- idempotent producer: every acknowledged record is in the log at the offset it was acknowledged
  with; no record is in the log twice (retries of an idempotent producer never duplicate); in
  each partition the records are in the order they were sent; none is in another partition.
- transactions, read_committed: every committed transaction is seen whole, exactly once; no
  aborted one is seen at all; one whose outcome the producer never learned is seen whole or not
  at all; a partition's records are in transaction order.
- readers during the faults: every record a consumer was served is still in the log at that
  offset afterwards (nothing was served above the high watermark or the last stable offset and
  later truncated away), and no offset was ever served with two different values.
- the consumer group: committed offsets never went back; at the end they are the partitions'
  ends and every acknowledged record was consumed at least once.
"""

from workload import TXN_RECORDS

EXAMPLES = 5


def _examples(items):
    items = list(items)
    more = f" (+{len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return f"{items[:EXAMPLES]}{more}"


def _seq(value, prefix):
    """The number in `<prefix>-<n>`, or None for a value not written by that producer."""
    try:
        text = value.decode()
    except (AttributeError, UnicodeDecodeError):
        return None
    if not text.startswith(prefix + "-"):
        return None
    try:
        return int(text[len(prefix) + 1:])
    except ValueError:
        return None


def _txn_of(value):
    """(txn, index) of a value `t-<txn>-<i>`, or None."""
    try:
        _, txn, i = value.decode().split("-")
        return int(txn), int(i)
    except (AttributeError, UnicodeDecodeError, ValueError):
        return None


def by_value(log):
    """{value: [(partition, offset)]} of a log read back."""
    out = {}
    for k, v in log.items():
        out.setdefault(v, []).append(k)
    return out


def check_idempotent(producer, final, prefix="i", what="idempotent"):
    """`producer`'s record (acked, sent_partition, sent, failed; values `<prefix>-<n>`) against
    its topic read back. -> (violations, counts)."""
    v = []
    lost = [(k, val) for k, val in producer.acked.items() if final.get(k) != val]
    if lost:
        v.append(f"{what}: {len(lost)} acknowledged records not in the log at their offsets, "
                 f"e.g. {_examples(lost)}")
    where = by_value(final)
    dups = {val: ks for val, ks in where.items() if len(ks) > 1}
    if dups:
        v.append(f"{what}: {len(dups)} records in the log more than once, e.g. {_examples(dups.items())}")
    misplaced = [(val, ks) for val, ks in where.items()
                 if producer.sent_partition.get(val) not in (None, ks[0][0])]
    if misplaced:
        v.append(f"{what}: {len(misplaced)} records in a partition they were not sent to, "
                 f"e.g. {_examples(misplaced)}")
    out_of_order = []
    by_part = {}
    for (part, off), val in sorted(final.items()):
        n = _seq(val, prefix)
        if n is None:
            continue
        if part in by_part and n <= by_part[part][1]:
            out_of_order.append((part, off, n, by_part[part]))
        by_part[part] = (off, n)
    if out_of_order:
        v.append(f"{what}: {len(out_of_order)} records after a later one in their partition, "
                 f"e.g. (partition, offset, seq, previous (offset, seq)) {_examples(out_of_order)}")
    counts = {"sent": producer.sent, "acked": len(producer.acked), "failed": len(producer.failed),
              "lost": len(lost), "duplicated": sum(len(ks) - 1 for ks in dups.values()),
              "out of order": len(out_of_order)}
    return v, counts


def check_transactions(producer, final):
    """`final`: the transactions' topic read back read_committed. -> (violations, counts)."""
    v = []
    seen = {}  # txn -> [(index, partition, offset)]
    for (part, off), val in final.items():
        t = _txn_of(val)
        if t is not None:
            seen.setdefault(t[0], []).append((t[1], part, off))
    missing, dup, aborted_seen, partial = [], [], [], []
    for txn in producer.committed:
        got = sorted(i for i, _, _ in seen.get(txn, []))
        if got != list(range(TXN_RECORDS)):
            (dup if len(got) > len(set(got)) else missing).append((txn, got))
    for txn in producer.aborted:
        if txn in seen:
            aborted_seen.append((txn, sorted(seen[txn])))
    for txn in producer.unknown:
        got = sorted(i for i, _, _ in seen.get(txn, []))
        if got and got != list(range(TXN_RECORDS)):
            partial.append((txn, got))
    settled = set(producer.committed) | set(producer.aborted) | set(producer.unknown)
    stray = sorted(t for t in seen if t not in settled)
    if missing:
        v.append(f"transactions: {len(missing)} committed transactions not seen whole by read_committed, "
                 f"e.g. (txn, indexes seen) {_examples(missing)}")
    if dup:
        v.append(f"transactions: {len(dup)} committed transactions seen twice, e.g. {_examples(dup)}")
    if aborted_seen:
        v.append(f"transactions: {len(aborted_seen)} aborted transactions visible to read_committed, "
                 f"e.g. {_examples(aborted_seen)}")
    if partial:
        v.append(f"transactions: {len(partial)} transactions of unknown outcome seen in part, "
                 f"e.g. {_examples(partial)}")
    if stray:
        v.append(f"transactions: records of transactions never settled by the producer visible: "
                 f"{_examples(stray)}")
    out_of_order = []
    last = {}
    for (part, off), val in sorted(final.items()):
        t = _txn_of(val)
        if t is None:
            continue
        if part in last and t < last[part]:
            out_of_order.append((part, off, t, last[part]))
        last[part] = t
    if out_of_order:
        v.append(f"transactions: {len(out_of_order)} records before an earlier transaction's in their "
                 f"partition, e.g. {_examples(out_of_order)}")
    unknown_visible = sum(1 for t in producer.unknown if t in seen)
    counts = {"committed": len(producer.committed), "aborted": len(producer.aborted),
              "unknown": f"{len(producer.unknown)} ({unknown_visible} visible)",
              "lost": len(missing), "duplicated": len(dup), "aborted visible": len(aborted_seen),
              "producers made": producer.producers_made}
    return v, counts


def check_reader(reader, final, what):
    """Everything `reader` was served during the run is in the final log at the same offset."""
    v = []
    gone = [(k, val) for k, val in reader.seen.items() if final.get(k) != val]
    if gone:
        v.append(f"{what}: {len(gone)} records served during the faults are not in the log at that offset "
                 f"afterwards (served above the high watermark?), e.g. {_examples(gone)}")
    if reader.rewritten:
        v.append(f"{what}: {len(reader.rewritten)} offsets served twice with different values, "
                 f"e.g. {_examples(reader.rewritten)}")
    return v, {"read": len(reader.seen), "vanished": len(gone), "rewritten": len(reader.rewritten)}


def check_group(members, watcher, final_committed, ends, acked):
    """`final_committed` / `ends`: {partition: offset} once the group caught up."""
    v = []
    if watcher.backwards:
        v.append(f"group: committed offsets went back {len(watcher.backwards)} times, "
                 f"e.g. (time, partition, before, after) {_examples(watcher.backwards)}")
    last_acked = {}
    for m in members:
        for t, offsets in m.acked_commits:
            for p, off in offsets.items():
                last_acked.setdefault(p, []).append((t, off))
    for p, ts in last_acked.items():
        ts.sort()
        lost = [(round(t, 1), off, later) for (t, off), (_, later) in zip(ts, ts[1:]) if later < off]
        if lost:
            v.append(f"group: partition {p}: an acknowledged commit followed by a lower one acknowledged later "
                     f"(time, offset, later offset) {_examples(lost)}")
    behind = {p: (final_committed.get(p), end) for p, end in ends.items() if final_committed.get(p) != end}
    if behind:
        v.append(f"group: committed offsets not at the partitions' ends at the end: "
                 f"{{partition: (committed, end)}} {behind}")
    consumed = set()
    for m in members:
        consumed |= m.consumed.keys()
    unconsumed = [k for k in acked if k not in consumed]
    if unconsumed:
        v.append(f"group: {len(unconsumed)} acknowledged records never consumed by the group, "
                 f"e.g. {_examples(sorted(unconsumed))}")
    counts = {"consumed": len(consumed), "redelivered": sum(m.redelivered for m in members),
              "commits": sum(m.commits for m in members),
              "commit errors": sum(len(m.commit_errors) for m in members),
              "offset samples": watcher.samples, "went back": len(watcher.backwards)}
    return v, counts
