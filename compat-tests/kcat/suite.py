"""kcat (Debian's, librdkafka 2.0.2) against Sluice, driven through its command line.

kcat has no admin API: the 3-partition topics are created and deleted with confluent-kafka's
AdminClient, and auto-creation is tested on its own (kcat -P to a new topic, then Metadata via
kcat -L must show it with num.partitions=1). kcat prints no delivery reports, so placement is
checked from what is read back: every message on its key's murmur2 partition (partitioner set to
murmur2_random), in send order, offsets consecutive from 0. Timestamps are the producer's wall
clock, so the timestamp query's expectation comes from the records read back. Offsets: kcat -Q.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import compat  # noqa: E402
from compat import NUM_PARTITIONS, Msg, fail  # noqa: E402

_spec = importlib.util.spec_from_file_location("ck_suite", os.path.join(HERE, "..", "confluent-kafka", "suite.py"))
ck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ck)

KCAT = os.environ.get("KCAT", "kcat")


def kcat(args, stdin=None, timeout=60):
    """Runs kcat with a hard timeout; returns (rc, stdout, stderr) as text."""
    try:
        r = subprocess.run([KCAT, "-X", "client.id=kcat"] + args, input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        fail(f"kcat {' '.join(args[:6])}... timed out after {timeout} s; stderr: {err_summary(e.stderr or '')}")
    return r.returncode, r.stdout, r.stderr


def err_summary(err):
    """kcat's own "% ERROR" lines first, then librdkafka's log lines, cut to a readable length."""
    if isinstance(err, bytes):  # TimeoutExpired keeps raw bytes even with text=True
        err = err.decode("utf-8", "replace")
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    lines = [ln for ln in lines if "ERROR" in ln] + [ln for ln in lines if "ERROR" not in ln]
    return " | ".join(lines)[:500] or "(no stderr)"


def metadata(bs, topic=None):
    rc, out, err = kcat(["-b", bs, "-L", "-J", "-m", "10"] + (["-t", topic] if topic else []))
    if rc != 0:
        fail(f"kcat -L exit {rc}: {err_summary(err)}")
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        fail(f"kcat -L -J printed non-JSON: {out[:300]!r}")


def check_metadata(bs, topic, partitions):
    md = metadata(bs, topic)
    brokers = md.get("brokers", [])
    if [b.get("id") for b in brokers] != [1]:
        fail(f"brokers {brokers}, want node 1")
    topics = [t for t in md.get("topics", []) if t.get("topic") == topic]
    if not topics:
        fail(f"topic {topic} not in metadata: {md.get('topics')}")
    t = topics[0]
    if t.get("error"):
        fail(f"topic error {t['error']}")
    parts = t.get("partitions", [])
    if sorted(p["partition"] for p in parts) != list(range(partitions)):
        fail(f"partitions {[p['partition'] for p in parts]}, want {partitions}")
    for p in parts:
        if p.get("leader") != 1:
            fail(f"partition {p['partition']} leader {p.get('leader')}")


def make_kcat_messages(codec, n):
    msgs = compat.make_messages(codec, n, base_ts=0)
    for m in msgs:
        m.headers = [("codec", codec.encode()), ("client", b"kcat")]
        m.ts = None
    return msgs


def produce(bs, topic, msgs, codec, acks, idem):
    lines = "".join(f"{m.key.decode()}\t{m.value.decode()}\n" for m in msgs)
    args = ["-b", bs, "-P", "-t", topic, "-K", "\t", "-H", f"codec={codec}", "-H", "client=kcat",
            "-X", f"acks={acks}", "-X", f"enable.idempotence={'true' if idem else 'false'}",
            "-X", "partitioner=murmur2_random", "-X", "linger.ms=5", "-X", "message.timeout.ms=30000",
            "-X", f"compression.codec={codec}", "-m", "10"]
    rc, out, err = kcat(args, stdin=lines, timeout=120)
    problems = [ln for ln in err.splitlines() if "fail" in ln.lower() or "error" in ln.lower()]
    if rc != 0 or problems:
        fail(f"kcat -P exit {rc}: {err_summary(err)}")


def consume_partition(bs, topic, p, expected):
    rc, out, err = kcat(["-b", bs, "-C", "-t", topic, "-p", str(p), "-o", "0", "-e", "-J", "-q",
                         "-m", "10", "-X", "fetch.wait.max.ms=100"], timeout=90)
    if rc != 0:
        fail(f"kcat -C partition {p} exit {rc}: {err_summary(err)}")
    recs = []
    for ln in out.splitlines():
        if ln.strip():
            recs.append(json.loads(ln))
    if len(recs) != expected:
        fail(f"partition {p}: kcat -C read {len(recs)} records, want {expected}")
    return recs


def verify_read_back(msgs, per_partition_recs):
    """Placement, order, offsets and content from the records alone (kcat gives no delivery reports)."""
    seen = set()
    for p, recs in per_partition_recs.items():
        last = -1
        for i, r in enumerate(recs):
            if r["offset"] != i:
                fail(f"partition {p}: record #{i} has offset {r['offset']}")
            m = re.match(r"value-(\d+)-", r.get("payload") or "")
            if not m:
                fail(f"partition {p} offset {i}: payload {r.get('payload')!r}")
            idx = int(m.group(1))
            want = msgs[idx]
            if r.get("key") != want.key.decode() or r["payload"] != want.value.decode():
                fail(f"partition {p} offset {i}: key/value {r.get('key')!r}/{r['payload'][:30]!r} differ from message {idx}")
            hdrs = r.get("headers") or []
            got_h = list(zip(hdrs[0::2], hdrs[1::2]))
            want_h = [(k, v.decode()) for k, v in want.headers]
            if got_h != want_h:
                fail(f"partition {p} offset {i}: headers {got_h}, want {want_h}")
            if compat.key_partition(want.key) != p:
                fail(f"message {idx} on partition {p}, murmur2 says {compat.key_partition(want.key)}")
            if idx <= last:
                fail(f"partition {p}: message {idx} at offset {i} after message {last} (order)")
            if idx in seen:
                fail(f"message {idx} read twice")
            seen.add(idx)
            last = idx
            want.partition, want.offset, want.ts = p, i, r.get("ts")
    if len(seen) != len(msgs):
        fail(f"read back {len(seen)} distinct messages of {len(msgs)}")


def query(bs, topic, ts_by_partition):
    args = ["-b", bs, "-Q", "-m", "10"]
    for p, ts in ts_by_partition.items():
        args += ["-t", f"{topic}:{p}:{ts}"]
    rc, out, err = kcat(args)
    if rc != 0:
        fail(f"kcat -Q exit {rc}: {err_summary(err)}")
    got = {int(p): int(o) for p, o in re.findall(r"\[(\d+)\]\s+offset\s+(-?\d+)", out)}
    if sorted(got) != sorted(ts_by_partition):
        fail(f"kcat -Q output not understood: {out!r}")
    return got


def verify_offsets(bs, topic, msgs, counts):
    earliest = query(bs, topic, {p: -2 for p in range(NUM_PARTITIONS)})
    latest = query(bs, topic, {p: -1 for p in range(NUM_PARTITIONS)})
    target = msgs[len(msgs) // 2].ts
    by_ts = query(bs, topic, {p: target for p in range(NUM_PARTITIONS)})
    past = query(bs, topic, {p: max(m.ts for m in msgs) + 60_000 for p in range(NUM_PARTITIONS)})
    for p in range(NUM_PARTITIONS):
        if earliest[p] != 0:
            fail(f"partition {p}: earliest (-2) = {earliest[p]}, want 0")
        if latest[p] != counts[p]:
            fail(f"partition {p}: latest (-1) = {latest[p]}, want {counts[p]}")
        want, _ = compat.expected_for_timestamp(msgs, p, target)
        if by_ts[p] != want:
            fail(f"partition {p}: offset for timestamp {target} = {by_ts[p]}, want {want}")
        if past[p] != -1:
            # librdkafka reports "no such offset" as -1 (RD_KAFKA_OFFSET_END).
            fail(f"partition {p}: timestamp after every record gave {past[p]}, want -1")


def delete_and_check(a, bs, topic):
    ck.delete_topic(a, topic)
    # All-topics Metadata: naming the topic (kcat -L -t) would auto-create it again.
    md = metadata(bs)
    t = [t for t in md.get("topics", []) if t.get("topic") == topic]
    if t and not t[0].get("error") and t[0].get("partitions"):
        fail(f"kcat -L still shows {topic} after deletion: {t[0]}")


def run_codec(s, a, bs, codec, acks, idem, n):
    topic = f"compat-kcat-{codec}"
    pre = f"{codec}."
    print(f"# topic {topic}: compression.codec={codec} acks={acks} enable.idempotence={idem}", flush=True)
    ok, _ = s.check(pre + "create-topic", ck.create_topic, a, topic)
    if not ok:
        return
    s.check(pre + "metadata", check_metadata, bs, topic, NUM_PARTITIONS)
    msgs = make_kcat_messages(codec, n)
    ok, _ = s.check(pre + "produce", produce, bs, topic, msgs, codec, acks, idem)
    if ok:
        counts = [0] * NUM_PARTITIONS
        for m in msgs:
            counts[compat.key_partition(m.key)] += 1

        def consume_check():
            recs = {p: consume_partition(bs, topic, p, counts[p]) for p in range(NUM_PARTITIONS)}
            verify_read_back(msgs, recs)

        ok, _ = s.check(pre + "consume", consume_check)
        if ok:
            s.check(pre + "list-offsets", verify_offsets, bs, topic, msgs, counts)
    s.check(pre + "delete-topic", delete_and_check, a, bs, topic)


def auto_create(s, a, bs):
    topic = "compat-kcat-autocreate"

    def produce_one():
        rc, out, err = kcat(["-b", bs, "-P", "-t", topic, "-K", ":", "-m", "10", "-X", "acks=all"],
                            stdin="k:auto-created\n")
        if rc != 0 or "fail" in err.lower():
            fail(f"kcat -P to a new topic: exit {rc}: {err_summary(err)}")

    ok, _ = s.check("autocreate.produce", produce_one)
    if not ok:
        return
    s.check("autocreate.metadata", check_metadata, bs, topic, 1)

    def read_back():
        recs = consume_partition(bs, topic, 0, 1)
        if recs[0].get("key") != "k" or recs[0].get("payload") != "auto-created" or recs[0]["offset"] != 0:
            fail(f"read back {recs[0]}")

    s.check("autocreate.consume", read_back)
    s.check("autocreate.delete-topic", delete_and_check, a, bs, topic)


def balanced_consumer(s, a, bs):
    """kcat -G (librdkafka 2.0's balanced consumer: JoinGroup/SyncGroup through the v0-era
    feature checks): reads every message of a 3-partition topic, commits on exit, and a second
    run in the same group resumes from the committed offsets (nothing new to read)."""
    topic = "kcat-group"
    a.create_topics([ck.NewTopic(topic, NUM_PARTITIONS, 1)])[topic].result(30)
    lines = "".join(f"k{i}:v{i}\n" for i in range(300))
    rc, _, err = kcat(["-b", bs, "-P", "-t", topic, "-K", ":", "-X", "acks=all"], stdin=lines)
    if rc != 0:
        fail(f"kcat -P exit {rc}: {err_summary(err)}")

    def group_read():
        rc, out, err = kcat(["-b", bs, "-G", "kcat-g", "-X", "auto.offset.reset=earliest", "-e", "-q", topic],
                            timeout=60)
        if rc != 0:
            fail(f"kcat -G exit {rc}: {err_summary(err)}")
        return sorted(ln for ln in out.splitlines() if ln)

    def first():
        got = group_read()
        want = sorted(f"v{i}" for i in range(300))
        if got != want:
            fail(f"read {len(got)} messages ({len(set(got))} distinct), want the 300 produced")

    def resumed():
        got = group_read()
        if got:
            fail(f"a second run of the group re-read {len(got)} messages: offsets not committed/resumed")

    s.check("group.consume-all", first)
    s.check("group.resume-from-committed", resumed)
    s.check("group.delete-topic", delete_and_check, a, bs, topic)


def main():
    bs = compat.bootstrap()
    n = compat.num_messages()
    rc, out, err = kcat(["-V"])
    print(f"# {out.splitlines()[3] if len(out.splitlines()) > 3 else out.strip()} against {bs}", flush=True)
    s = compat.Suite("kcat")
    a = ck.admin(bs)

    def cluster():
        md = metadata(bs)
        if [b.get("id") for b in md.get("brokers", [])] != [1]:
            fail(f"brokers {md.get('brokers')}")

    ok, _ = s.check("cluster", cluster)
    if not ok:
        print("# broker unusable, stopping", flush=True)
        s.finish()
    auto_create(s, a, bs)
    balanced_consumer(s, a, bs)
    for codec, acks, idem in compat.CODEC_RUNS:
        run_codec(s, a, bs, codec, acks, idem, n)
    s.finish()


if __name__ == "__main__":
    main()
