#!/usr/bin/env python3
"""Log compaction benchmark: the cleaner's rate, and what cleaning costs producers elsewhere.

Usage (bench/compaction.sh runs it with the cached venv, a fresh broker and rdkafka_performance):
    compaction.py BOOTSTRAP DATA_DIR RDKAFKA_PERFORMANCE [ROUNDS]

Per round (default 3 rounds; the table shows median and best):
  K1  the cleaner's rate: a 1-partition topic gets DATA_MB (default 512) of 1 KiB records (10%
      live keys: record i has key i % (records / 10)) with cleanup.policy=delete and 128 MiB
      segments; then it is switched to compact and the cleaner's round is timed by the broker
      (its "cleaned log" line: bytes of log recopied / time from snapshot to the last install,
      map building included). The broker's peak RSS growth during the round is printed beside
      log.cleaner.dedupe.buffer.size.
  P1  rdkafka_performance produce (as bench/run.sh's P1: 1 KiB, acks=1, linger 5 ms, 1 MiB
      batches) of P1_MSGS (default 1,000,000) to a fresh 4-partition topic, once with the broker
      idle (P1 idle) and once while the cleaner runs on another topic of BIG_PARTITIONS (4)
      partitions of DATA_MB each, cleaned one after the other (P1 cleaning, started when the
      cleaner's first `.cleaned` file appears); the order alternates by round.
      The ratio cleaning / idle is the figure; whether the cleaner was still running when P1
      ended is printed, so a P1 that outlasted the cleaner is visible.
  Z   P1 (uncompressed batches, rdkafka_performance's payload) into topics with compression.type
      producer (stored as sent), lz4, zstd and gzip (recompressed by the broker on append).
The broker runs on CPU 0 and the clients on CPU 1 (bench/compaction.sh), so the cleaner (a
broker thread at nice +10) shares the broker's core.
"""

import glob
import os
import re
import statistics
import subprocess
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

DATA_MB = int(os.environ.get("DATA_MB", "512"))
P1_MSGS = int(os.environ.get("P1_MSGS", "1000000"))
SEGMENT_BYTES = 128 << 20
BROKER_LOG = os.environ.get("BROKER_LOG", "")
SLUICE_PID = os.environ.get("SLUICE_PID")
CODECS = ["producer", "lz4", "zstd", "gzip"]
BIG_PARTITIONS = int(os.environ.get("BIG_PARTITIONS", "4"))
CLEANED_RE = re.compile(r"cleaned log topic=(\S+) partition=\d+ read=(\d+) written=(\d+) records=(\d+) "
                        r"kept=(\d+) segments=(\d+) elapsed_ms=(\d+)")


_ADMINS = {}


def admin(bs):
    # One client kept alive: a future outlives a dropped AdminClient only as an error.
    if bs not in _ADMINS:
        _ADMINS[bs] = AdminClient({"bootstrap.servers": bs})
    return _ADMINS[bs]


def create(bs, topic, partitions, config):
    admin(bs).create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                      config=config)])[topic].result(timeout=60)


def set_config(bs, topic, **kv):
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET) for k, v in kv.items()])
    admin(bs).incremental_alter_configs([res])[res].result(timeout=60)


def fill(bs, topic, partitions=1):
    """DATA_MB of 1 KiB records per partition, 10% live keys, delivered."""
    records = DATA_MB * 1024 * partitions
    live = records // 10
    create(bs, topic, partitions, {"cleanup.policy": "delete", "segment.bytes": str(SEGMENT_BYTES)})
    p = Producer({"bootstrap.servers": bs, "linger.ms": 20, "batch.size": 1 << 20, "acks": 1,
                  "queue.buffering.max.messages": 500000, "queue.buffering.max.kbytes": 1 << 21})
    body = os.urandom(1024 - 16)
    failed = []
    for i in range(records):
        value = b"%016d" % i + body
        while True:
            try:
                p.produce(topic, key=b"key-%08d" % (i % live), value=value, partition=i % partitions,
                          on_delivery=lambda err, _m: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.05)
        if i % 10000 == 0:
            p.poll(0)
    p.flush(120)
    if failed:
        sys.exit(f"filling {topic}: {failed[0]}")


def cleaned_lines(topic, after_pos):
    out = []
    with open(BROKER_LOG, errors="replace") as f:
        f.seek(after_pos)
        for line in f:
            m = CLEANED_RE.search(line)
            if m and m.group(1) == topic:
                out.append(m)
    return out


def cleaned_line(topic, after_pos):
    found = cleaned_lines(topic, after_pos)
    return found[0] if found else None


def log_pos():
    return os.path.getsize(BROKER_LOG)


def hwm_kb():
    with open(f"/proc/{SLUICE_PID}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_hwm():
    try:
        with open(f"/proc/{SLUICE_PID}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_kb():
    with open(f"/proc/{SLUICE_PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_cleaned(topic, pos, partitions=1, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = cleaned_lines(topic, pos)
        if len(found) >= partitions:
            return found[0]
        time.sleep(0.05)
    sys.exit(f"{topic} was not cleaned within {timeout} s")


def k1(bs, topic):
    fill(bs, topic)
    time.sleep(2)
    rss0 = rss_kb()
    reset_hwm()
    pos = log_pos()
    set_config(bs, topic, cleanup_policy="compact")
    m = wait_cleaned(topic, pos)
    read, ms = int(m.group(2)), int(m.group(7))
    grew_kb = max(0, hwm_kb() - rss0)
    return read / 1e6 / (ms / 1000), read, ms, int(m.group(4)), int(m.group(5)), grew_kb


def p1(rp, bs, topic, logf, config=None):
    create(bs, topic, 4, config or {})
    cmd = ["taskset", "-c", "1", rp, "-P", "-b", bs, "-t", topic, "-s", "1024", "-c", str(P1_MSGS), "-a", "1",
           "-X", "linger.ms=5", "-X", "batch.size=1048576", "-X", "message.max.bytes=1048588",
           "-X", "batch.num.messages=100000", "-X", "queue.buffering.max.messages=1000000",
           "-X", "queue.buffering.max.kbytes=2097151", "-X", "message.timeout.ms=45000"]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    t1 = time.monotonic()
    with open(logf, "w") as f:
        f.write(out.stdout + out.stderr)
    found = re.findall(r"(\d+) delivered \(offset -?\d+, (\d+) failed\) in (\d+)ms: (\d+) msgs/s", out.stdout + out.stderr)
    m = found[-1] if found else None  # the final summary (interim ones come before it)
    if not m or int(m[0]) != P1_MSGS or int(m[1]) != 0:
        sys.exit(f"P1 on {topic} failed; see {logf}")
    return int(m[3]), t0, t1


def p1_while_cleaning(rp, bs, data_dir, big, topic, logf):
    pos = log_pos()
    set_config(bs, big, cleanup_policy="compact")
    deadline = time.monotonic() + 120
    while not glob.glob(os.path.join(data_dir, f"{big}-*", "*.cleaned")):
        if time.monotonic() > deadline:
            sys.exit(f"the cleaner never started on {big}")
        time.sleep(0.01)
    rate, _, _ = p1(rp, bs, topic, logf)
    # The cleaner started before P1 (its first .cleaned file existed): it covered the whole run
    # if it had not finished when P1 did.
    covered = len(cleaned_lines(big, pos)) < BIG_PARTITIONS
    wait_cleaned(big, pos, BIG_PARTITIONS)
    return rate, covered


def main():
    bs, data_dir, rp = sys.argv[1], sys.argv[2], sys.argv[3]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    work = os.environ.get("WORK", "/tmp")
    k1s, idle, busy, overlaps, zs = [], [], [], [], {}
    for r in range(1, rounds + 1):
        rate, read, ms, records, kept, grew = k1(bs, f"k1-r{r}")
        k1s.append(rate)
        print(f"round {r}: K1 {rate:.0f} MB/s ({read / 1e6:.0f} MB recopied in {ms} ms; {records} records, "
              f"{kept} kept); broker RSS grew {grew / 1024:.1f} MiB during the round", flush=True)
        fill(bs, f"big-r{r}", BIG_PARTITIONS)
        time.sleep(2)
        order = ["idle", "cleaning"] if r % 2 else ["cleaning", "idle"]
        for what in order:
            if what == "idle":
                rate_i, _, _ = p1(rp, bs, f"p1-idle-r{r}", f"{work}/p1-idle-r{r}.log")
                idle.append(rate_i)
            else:
                rate_c, ov = p1_while_cleaning(rp, bs, data_dir, f"big-r{r}", f"p1-cleaning-r{r}",
                                               f"{work}/p1-cleaning-r{r}.log")
                busy.append(rate_c)
                overlaps.append(ov)
        for codec in CODECS:
            rate_z, _, _ = p1(rp, bs, f"z-{codec}-r{r}", f"{work}/z-{codec}-r{r}.log", {"compression.type": codec})
            zs.setdefault(codec, []).append(rate_z)
        print(f"round {r}: P1 into compression.type " + ", ".join(f"{c} {zs[c][-1]:,}" for c in CODECS) + " msgs/s",
              flush=True)
        topics = [f"k1-r{r}", f"big-r{r}", f"p1-idle-r{r}", f"p1-cleaning-r{r}"] + [f"z-{c}-r{r}" for c in CODECS]
        for f in admin(bs).delete_topics(topics).values():
            f.result(timeout=60)
        covered = "the whole run" if overlaps[-1] else "part of the run only"
        print(f"round {r}: P1 idle {idle[-1]:,} msgs/s, while cleaning {busy[-1]:,} msgs/s "
              f"(ratio {busy[-1] / idle[-1]:.2f}; the cleaner ran {covered})", flush=True)
    print()
    print("| | workload | median | best | runs |")
    print("|---|---|---|---|---|")
    print(f"| K1 | cleaner, {DATA_MB} MB of 1 KiB records, 10% live keys | {statistics.median(k1s):.0f} MB/s | "
          f"{max(k1s):.0f} MB/s | {', '.join(f'{x:.0f}' for x in k1s)} |")
    print(f"| P1 idle | {P1_MSGS:,} x 1 KiB, acks=1, 4 partitions | {statistics.median(idle):,.0f} msgs/s | "
          f"{max(idle):,} | {', '.join(f'{x:,}' for x in idle)} |")
    ratios = [b / i for b, i in zip(busy, idle)]
    print(f"| P1 cleaning | the same while the cleaner runs on another topic | {statistics.median(busy):,.0f} msgs/s | "
          f"{max(busy):,} | {', '.join(f'{x:,}' for x in busy)} |")
    print(f"| ratio | P1 cleaning / P1 idle (same round) | {statistics.median(ratios):.2f} | {max(ratios):.2f} | "
          f"{', '.join(f'{x:.2f}' for x in ratios)} |")
    for codec in CODECS:
        runs = zs[codec]
        print(f"| Z {codec} | P1 (uncompressed batches) into a topic with compression.type={codec} | "
              f"{statistics.median(runs):,.0f} msgs/s | {max(runs):,} | {', '.join(f'{x:,}' for x in runs)} |")


if __name__ == "__main__":
    main()
