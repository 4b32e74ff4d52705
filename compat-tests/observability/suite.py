"""Observability: the broker's Prometheus /metrics, the Grafana dashboard and the alert rules
(issue #4), against a live broker, promtool and a real Prometheus server.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file; see
lib/broker.py) so it can choose a free metrics port (metrics.listener). Checks:
  metrics-endpoint          GET /metrics answers 200 text/plain (version 0.0.4); after traffic
                            (confluent-kafka producer, a consumer group that commits, an fsync'd
                            topic, provoked errors) the series hold exactly what the clients did:
                            messages in/out, bytes in = log size, log end offsets = delivery
                            reports, committed offsets = the consumer's commits, lag = LEO -
                            committed, requests per API = histogram counts, error counters,
                            connections back to 0, fsyncs counted; histograms well formed; a
                            group id with a quote, backslash and newline escaped correctly.
  dashboard-metric-names    every sluice_* name in grafana/sluice.json (panel targets and template
                            variables), grafana/alerts.yml and the input series of
                            grafana/alerts_test.yml is a family the live broker exports; the
                            dashboard's structure (datasource variable, unique panel ids, every
                            $variable defined) holds.
  promtool                  promtool check rules / test rules pass, and promtool check metrics
                            (the exposition linter) accepts a live scrape.
  prometheus-scrape         a real Prometheus (Debian's package) scrapes the broker every 1 s with
                            alerts.yml loaded; its HTTP API returns the produced message count for
                            a fresh topic and up{job="sluice"} == 1, the target has no scrape
                            error and every alert rule evaluates without error.
  dashboard-queries         every dashboard expression (variables set to match all) runs on that
                            Prometheus without error and returns data.
  scrape-1000-partitions    a 1,000-partition topic with traffic and a group's commits: 20 timed
                            scrapes (median/max/body size printed, no threshold asserted), the last
                            listing the 1,000 log end offset and lag series with their values.
                            Also printed: the creation time and the slowest scrape during it.
  deleted-topic-series      deleting that topic removes its partition and group series (what is
                            left of its per-topic counters is printed, not asserted).
  clean-shutdown            SIGTERM stops the broker with exit status 0 (within 30 s).

Needs Debian's prometheus package (run.sh installs it when /usr/bin/promtool is missing).
"""

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

DASHBOARD = os.path.join(ROOT, "grafana", "sluice.json")
ALERTS = os.path.join(ROOT, "grafana", "alerts.yml")
ALERTS_TEST = os.path.join(ROOT, "grafana", "alerts_test.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

OP_TIMEOUT = 30
TOPIC = "obs-traffic"
FLUSH_TOPIC = "obs-flush"
PROM_TOPIC = "obs-prom"
WIDE_TOPIC = "obs-wide"
GROUP = "obs-group"
WIDE_GROUP = "obs-wide-group"
PARTITIONS = 3
N_FIRST = 3000  # produced, then consumed and committed by GROUP
N_MORE = 500  # produced after the group closed: its lag
N_FLUSH = 20  # one at a time to a flush.messages=1 topic: one fsync each
N_PROM = 123
WIDE_PARTITIONS = 1000
SCRAPES = 20
SHUTDOWN_TIMEOUT = 30
# Creating 1,000 partitions writes and fsyncs files for each: 2 to 27 s seen on this disk.
WIDE_CREATE_TIMEOUT = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ exposition format
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


class Page:
    """One parsed /metrics page: families (name -> type) and samples."""

    def __init__(self, text):
        self.text = text
        self.types = {}
        self.samples = []  # (name, labels dict, float)
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    if parts[2] in self.types:
                        fail(f"line {n}: second TYPE line for {parts[2]}")
                    self.types[parts[2]] = parts[3].strip()
                continue
            m = _SAMPLE.match(line)
            if not m:
                fail(f"line {n} is not a sample: {line[:120]!r}")
            name, raw_labels, value = m.group(1), m.group(2) or "", m.group(3)
            labels = {}
            pos = 0
            while pos < len(raw_labels):
                lm = _LABEL.match(raw_labels, pos)
                if not lm:
                    fail(f"line {n}: bad labels {raw_labels[pos:pos + 60]!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
            try:
                v = float(value)
            except ValueError:
                fail(f"line {n}: bad value {value!r}")
            self.samples.append((name, labels, v))

    def family_of(self, name):
        """The declared family a sample or expression name belongs to, or None."""
        if name in self.types:
            return name
        for suffix, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                              ("_count", ("histogram", "summary"))):
            if name.endswith(suffix):
                base = name[: -len(suffix)]
                if self.types.get(base) in kinds:
                    return base
        return None

    def series(self, name, **match):
        """{labels tuple: value} of `name` whose labels include `match`."""
        out = {}
        for n, labels, v in self.samples:
            if n == name and all(labels.get(k) == str(val) for k, val in match.items()):
                out[tuple(sorted(labels.items()))] = v
        return out

    def value(self, name, **match):
        s = self.series(name, **match)
        if len(s) != 1:
            fail(f"{name}{match}: {len(s)} series, want exactly 1"
                 + (f" ({list(s)[:4]})" if s else " (missing)"))
        return next(iter(s.values()))

    def by_partition(self, name, **match):
        return {int(dict(k)["partition"]): v for k, v in self.series(name, **match).items()}


class Metrics:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path="/metrics"):
        """(status, content type, body text) of GET path."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")

    def page(self):
        status, ctype, body = self.get()
        if status != 200:
            fail(f"GET /metrics answered {status}")
        return Page(body)


# ------------------------------------------------------------------ clients
class Ctx:
    def __init__(self, bs, broker, metrics):
        self.bs = bs
        self.broker = broker
        self.metrics = metrics
        self.admin = None  # created once the broker listens
        self.leo = {}  # (topic, partition) -> expected log end offset
        self.prom = None

    def create(self, topic, partitions, config=None, timeout=OP_TIMEOUT):
        fs = self.admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})],
                                      operation_timeout=timeout, request_timeout=timeout + 10)
        fs[topic].result(timeout=timeout + 10)

    def produce(self, topic, n, round_robin=0, one_by_one=False, prefix="m"):
        """n acks=all messages to topic, recording each partition's expected log end offset.
        round_robin=P: message i goes to partition i % P (else the key's murmur2 partition)."""
        errors = []

        def cb(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                key = (msg.topic(), msg.partition())
                self.leo[key] = max(self.leo.get(key, 0), msg.offset() + 1)

        p = Producer({"bootstrap.servers": self.bs, "client.id": "obs-producer", "acks": "all",
                      "enable.idempotence": True, "linger.ms": 5, "partitioner": "murmur2_random"})
        for i in range(n):
            kw = {"partition": i % round_robin} if round_robin else {}
            p.produce(topic, key=f"{prefix}-{i}".encode(), value=f"{prefix}-value-{i}".encode() * 4,
                      on_delivery=cb, **kw)
            if one_by_one:
                p.flush(OP_TIMEOUT)
            else:
                p.poll(0)
        left = p.flush(OP_TIMEOUT)
        if left:
            fail(f"{left} messages to {topic} not delivered in {OP_TIMEOUT} s")
        if errors:
            fail(f"produce to {topic}: {errors[:3]}")


def consume_group(bs, topic, group, want):
    """A subscribe() consumer of `group` reads `want` messages, commits synchronously and closes.
    Returns ({partition: committed offset}, messages read)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "client.id": "obs-consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100})
    got = 0
    try:
        c.subscribe([topic])
        for _ in compat.deadline_loop(40, step=0):
            msgs = c.consume(num_messages=1000, timeout=0.5)
            for m in msgs:
                if m.error():
                    fail(f"consumer error: {m.error()}")
                got += 1
            if got >= want:
                break
        if got != want:
            fail(f"group {group} read {got} of {want} messages in 40 s")
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in committed}, got


def provoke_offset_out_of_range(bs, topic):
    """A Fetch at an offset past the log end: OFFSET_OUT_OF_RANGE in a Fetch response."""
    c = Consumer({"bootstrap.servers": bs, "group.id": "obs-oor", "client.id": "obs-oor",
                  "auto.offset.reset": "error", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, 10**9)])
        for _ in compat.deadline_loop(10, step=0):
            m = c.poll(0.2)
            if m is not None and m.error():
                return str(m.error())
        fail("no offset-out-of-range error reached the consumer in 10 s")
    finally:
        c.close()


# ------------------------------------------------------------------ metrics-endpoint
EXPECTED_APIS = ["ApiVersions", "Metadata", "CreateTopics", "Produce", "InitProducerId", "Fetch",
                 "ListOffsets", "FindCoordinator", "JoinGroup", "SyncGroup", "OffsetCommit", "OffsetFetch",
                 "LeaveGroup"]
# A group id needing every escape of the exposition format (quote, backslash, newline).
ODD_GROUP = 'obs "quoted" \\ group\nline 2'


def commit_simple(bs, group, offsets):
    """Commits {(topic, partition): offset} for `group` without joining it (generation -1)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "client.id": "obs-committer"})
    try:
        res = c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        bad = [tp for tp in res if tp.error]
        if bad:
            fail(f"commit for {group!r}: {bad[:3]}")
    finally:
        c.close()


def check_histograms(page):
    """Every histogram series: cumulative buckets non-decreasing in le, +Inf == _count."""
    for fam, kind in page.types.items():
        if kind != "histogram":
            continue
        buckets = {}
        for n, labels, v in page.samples:
            if n == fam + "_bucket":
                key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
                buckets.setdefault(key, []).append((float(labels["le"]), v))
        counts = {tuple(sorted(lab.items())): v for n, lab, v in page.samples if n == fam + "_count"}
        if not buckets and counts:
            fail(f"{fam}: _count without buckets")
        for key, bs in buckets.items():
            bs.sort()
            if bs[-1][0] != float("inf"):
                fail(f"{fam}{dict(key)}: no +Inf bucket")
            for (le1, v1), (le2, v2) in zip(bs, bs[1:]):
                if v2 < v1:
                    fail(f"{fam}{dict(key)}: bucket le={le2} ({v2}) below le={le1} ({v1})")
            if counts.get(key) != bs[-1][1]:
                fail(f"{fam}{dict(key)}: _count {counts.get(key)} != +Inf bucket {bs[-1][1]}")


def metrics_endpoint(ctx):
    m = ctx.metrics
    status, ctype, body = m.get()
    if status != 200:
        fail(f"GET /metrics answered {status}")
    if not ctype.startswith("text/plain") or "version=0.0.4" not in ctype:
        fail(f"Content-Type {ctype!r}, want text/plain; version=0.0.4")
    status404, _, _ = m.get("/nope")
    if status404 != 404:
        fail(f"GET /nope answered {status404}, want 404")
    page = Page(body)
    if page.value("sluice_up") != 1:
        fail("sluice_up is not 1")

    ctx.create(TOPIC, PARTITIONS)
    ctx.create(FLUSH_TOPIC, 1, {"flush.messages": "1"})
    ctx.produce(TOPIC, N_FIRST, prefix="first")
    flushes_before = sum(Page(m.get()[2]).series("sluice_log_flush_seconds_count").values())
    ctx.produce(FLUSH_TOPIC, N_FLUSH, one_by_one=True, prefix="flush")
    committed, consumed = consume_group(ctx.bs, TOPIC, GROUP, N_FIRST)
    commit_simple(ctx.bs, ODD_GROUP, {(TOPIC, 1): 7})

    # Right after the group closed: out == what it consumed.
    page = m.page()
    out = page.value("sluice_topic_messages_out_total", topic=TOPIC)
    if out != consumed:
        fail(f"sluice_topic_messages_out_total{{topic={TOPIC}}} = {out:g}, the group consumed {consumed}")

    # A broker-side long poll of the closed consumer (fetch.wait.max.ms 100) must have expired
    # before more is produced, or it would pick up (and count) the new records.
    time.sleep(0.5)
    ctx.produce(TOPIC, N_MORE, prefix="more")
    oor = provoke_offset_out_of_range(ctx.bs, TOPIC)
    # CreateTopics of an existing topic: exactly one TOPIC_ALREADY_EXISTS.
    before = Page(m.get()[2]).series("sluice_request_errors_total", api="CreateTopics",
                                     error="TOPIC_ALREADY_EXISTS")
    try:
        ctx.create(TOPIC, PARTITIONS)
        fail(f"creating {TOPIC} twice succeeded")
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise

    # Every client is closed: the connection gauge must come back to 0. The AdminClient is
    # the last one; drop it and wait for the broker to notice.
    ctx.admin = None
    page = None
    for _ in compat.deadline_loop(10, step=0.1):
        page = m.page()
        if page.value("sluice_connections_active") == 0:
            break
    if page.value("sluice_connections_active") != 0:
        fail(f"sluice_connections_active = {page.value('sluice_connections_active'):g} 10 s after "
             "every client closed")
    ctx.admin = AdminClient({"bootstrap.servers": ctx.bs, "client.id": "obs-admin"})
    problems = []

    def expect(cond, msg):
        if not cond:
            problems.append(msg)

    # messages and bytes
    expect(page.value("sluice_topic_messages_in_total", topic=TOPIC) == N_FIRST + N_MORE,
           f"messages_in{{{TOPIC}}} = {page.value('sluice_topic_messages_in_total', topic=TOPIC):g}, "
           f"produced {N_FIRST + N_MORE}")
    expect(page.value("sluice_topic_messages_in_total", topic=FLUSH_TOPIC) == N_FLUSH,
           f"messages_in{{{FLUSH_TOPIC}}} = {page.value('sluice_topic_messages_in_total', topic=FLUSH_TOPIC):g}, "
           f"produced {N_FLUSH}")
    out = page.value("sluice_topic_messages_out_total", topic=TOPIC)
    expect(out == consumed, f"messages_out{{{TOPIC}}} = {out:g} after more produce and an out-of-range "
                            f"fetch, the group consumed {consumed}")
    bytes_in = page.value("sluice_topic_bytes_in_total", topic=TOPIC)
    bytes_out = page.value("sluice_topic_bytes_out_total", topic=TOPIC)
    size = page.by_partition("sluice_partition_size_bytes", topic=TOPIC)
    expect(bytes_in == sum(size.values()), f"bytes_in {bytes_in:g} != sum of partition sizes {sum(size.values()):g}")
    expect(0 < bytes_out < bytes_in, f"bytes_out {bytes_out:g} not in (0, bytes_in {bytes_in:g})")

    # partitions
    leo = page.by_partition("sluice_partition_log_end_offset", topic=TOPIC)
    want_leo = {p: ctx.leo.get((TOPIC, p), 0) for p in range(PARTITIONS)}
    expect(leo == want_leo, f"log end offsets {leo}, delivery reports say {want_leo}")
    hw = page.by_partition("sluice_partition_high_watermark", topic=TOPIC)
    expect(hw == leo, f"high watermarks {hw} != log end offsets {leo}")
    lso = page.by_partition("sluice_partition_log_start_offset", topic=TOPIC)
    expect(lso == {p: 0 for p in range(PARTITIONS)}, f"log start offsets {lso}, want 0")
    n_leo = len(page.series("sluice_partition_log_end_offset"))
    expect(page.value("sluice_partitions") == n_leo,
           f"sluice_partitions = {page.value('sluice_partitions'):g}, {n_leo} log end offset series")

    # groups
    got_committed = page.by_partition("sluice_consumer_group_committed_offset", group=GROUP, topic=TOPIC)
    expect(got_committed == committed, f"committed offsets {got_committed}, the consumer committed {committed}")
    lag = page.by_partition("sluice_consumer_group_lag", group=GROUP, topic=TOPIC)
    want_lag = {p: leo[p] - committed[p] for p in committed}
    expect(lag == want_lag, f"lag {lag}, LEO - committed = {want_lag}")
    expect(sum(lag.values()) == N_MORE, f"total lag {sum(lag.values()):g}, produced {N_MORE} after the commit")
    odd = page.series("sluice_consumer_group_committed_offset", group=ODD_GROUP, topic=TOPIC, partition=1)
    odd_lag = page.series("sluice_consumer_group_lag", group=ODD_GROUP, topic=TOPIC, partition=1)
    expect(list(odd.values()) == [7] and list(odd_lag.values()) == [leo[1] - 7],
           f"group {ODD_GROUP!r} (escaped label): committed {list(odd.values())}, lag {list(odd_lag.values())}; "
           f"want 7 and {leo[1] - 7}")
    expect(page.value("sluice_consumer_groups", state="Empty") >= 1, "no group in state Empty")
    expect(page.value("sluice_consumer_group_rebalances_total") >= 1, "no rebalance counted")

    # requests and latency histograms: every request counted once in each histogram
    for api in EXPECTED_APIS:
        n = page.series("sluice_requests_total", api=api)
        expect(n and next(iter(n.values())) > 0, f"sluice_requests_total{{api={api}}} is {n or 'missing'}")
    for key, n in page.series("sluice_requests_total").items():
        api = dict(key)["api"]
        for h in ("sluice_request_seconds", "sluice_request_queue_seconds", "sluice_request_local_seconds",
                  "sluice_request_remote_seconds"):
            c = page.series(h + "_count", api=api)
            expect(list(c.values()) == [n], f"{h}_count{{api={api}}} = {list(c.values())}, requests_total {n:g}")
    produce_remote = page.value("sluice_request_remote_seconds_sum", api="Produce")
    expect(produce_remote > 0, "acks=all produce spent no remote (purgatory) time")
    check_histograms(page)

    # errors
    err = page.series("sluice_request_errors_total", api="JoinGroup", error="MEMBER_ID_REQUIRED")
    expect(err and next(iter(err.values())) >= 1,
           f"JoinGroup MEMBER_ID_REQUIRED errors: {err or 'missing'} (librdkafka joins with an empty member id)")
    err = page.series("sluice_request_errors_total", api="Fetch", error="OFFSET_OUT_OF_RANGE")
    expect(err and next(iter(err.values())) >= 1, f"Fetch OFFSET_OUT_OF_RANGE errors: {err or 'missing'} ({oor})")
    after = page.series("sluice_request_errors_total", api="CreateTopics", error="TOPIC_ALREADY_EXISTS")
    delta = sum(after.values()) - sum(before.values())
    expect(delta == 1, f"CreateTopics TOPIC_ALREADY_EXISTS went up by {delta:g}, want 1")
    for key, v in page.series("sluice_request_errors_total").items():
        expect(dict(key).get("error") not in (None, "", "NONE", "0"), f"error counter for no error: {dict(key)}")

    # connections, fsync, replication
    expect(page.value("sluice_connections_total") >= 5, "fewer than 5 connections counted")
    flushes = sum(page.series("sluice_log_flush_seconds_count").values()) - flushes_before
    expect(flushes >= N_FLUSH, f"{flushes:g} fsyncs counted for {N_FLUSH} acks=all produces to a "
                               "flush.messages=1 topic")
    for name in ("sluice_under_replicated_partitions", "sluice_offline_partitions", "sluice_isr_shrinks_total",
                 "sluice_isr_expands_total"):
        expect(page.value(name) == 0, f"{name} = {page.value(name):g} on a single node")
    if problems:
        fail("; ".join(problems))
    print(f"# metrics-endpoint: {len(page.samples)} samples, {len(page.types)} families, "
          f"{len(page.text)} bytes", flush=True)


# ------------------------------------------------------------------ expressions
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SLUICE_NAME = re.compile(r"(?<![a-zA-Z0-9_:])sluice_[a-zA-Z0-9_:]*")


def names_in(expr):
    return set(_SLUICE_NAME.findall(_STRING.sub('""', expr)))


def dashboard_exprs(dash):
    """[(where, expression)] of every panel target and template variable query."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            out.append((f"variable {v.get('name')}", q or ""))
            if v.get("definition") and v["definition"] != q:
                out.append((f"variable {v.get('name')} definition", v["definition"]))
    return out


def alert_exprs(path):
    """[(where, expression)] of every rule in a Prometheus rules file (no yaml module: the
    `expr:` values are read as plain or block scalars)."""
    out = []
    lines = open(path).read().splitlines()
    name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*-?\s*(alert|record):\s*(\S+)", line)
        if m:
            name = m.group(2)
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in ("|", ">", "|-", ">-", "|+", ">+"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].strip())
                    i += 1
                out.append((f"rule {name}", " ".join(block)))
                continue
            out.append((f"rule {name}", rest.strip("'\"")))
        i += 1
    return out


def test_series(path):
    """[(where, series selector)] of the input series of a promtool test file."""
    out = []
    for line in open(path).read().splitlines():
        m = re.match(r"^\s*-?\s*series:\s*'(.*)'\s*$", line) or re.match(r'^\s*-?\s*series:\s*"(.*)"\s*$', line)
        if m:
            out.append(("test input series", m.group(1)))
    return out


def dashboard_metric_names(ctx):
    page = ctx.metrics.page()
    with open(DASHBOARD) as f:
        dash = json.load(f)
    problems = []

    # structure: importable as it is
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problems.append(f"schemaVersion {dash.get('schemaVersion')}")
    if not dash.get("uid") or not dash.get("title"):
        problems.append("no uid or title")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_vars = [n for n, v in variables.items() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    inputs = [i.get("name") for i in dash.get("__inputs", []) if i.get("pluginId") == "prometheus"]
    if not ds_vars and not inputs:
        problems.append("neither a prometheus datasource variable nor a DS_ input")
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p.get("id"))
            gp = p.get("gridPos", {})
            if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp["x"] + gp["w"] > 24:
                problems.append(f"panel {p.get('id')}: gridPos {gp}")
            if p.get("type") != "row":
                if not p.get("targets"):
                    problems.append(f"panel {p.get('id')} {p.get('title')!r}: no targets")
                ds = json.dumps(p.get("datasource"))
                if not any(f"${{{n}}}" in ds for n in ds_vars + inputs):
                    problems.append(f"panel {p.get('id')} {p.get('title')!r}: datasource {ds}")
                refs = [t.get("refId") for t in p.get("targets", [])]
                if len(set(refs)) != len(refs) or None in refs:
                    problems.append(f"panel {p.get('id')}: refIds {refs}")
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    if len(set(ids)) != len(ids):
        problems.append(f"duplicate panel ids {sorted(i for i in ids if ids.count(i) > 1)}")

    exprs = dashboard_exprs(dash)
    if len(exprs) < 20:
        problems.append(f"only {len(exprs)} expressions in the dashboard")
    builtin = {"__rate_interval", "__interval", "__range", "__all"}
    for where, e in exprs:
        for v in re.findall(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)", e):
            if v not in variables and v not in builtin:
                problems.append(f"{where}: undefined variable ${v}")

    alerts = alert_exprs(ALERTS)
    n_rules = len(re.findall(r"^\s*-\s*(?:alert|record):", open(ALERTS).read(), re.M))
    if len(alerts) != n_rules or n_rules < 6:
        problems.append(f"{len(alerts)} expressions read from alerts.yml's {n_rules} rules")
    checked = set()
    for where, e in exprs + [(f"alerts.yml {w}", e) for w, e in alerts] + test_series(ALERTS_TEST):
        names = names_in(e)
        if not names and "test input" not in where and "up{" not in e:
            problems.append(f"{where}: no sluice_ metric in {e[:80]!r}")
        for n in names:
            checked.add(n)
            if page.family_of(n) is None:
                problems.append(f"{where}: {n} is not exported by the broker")
    if problems:
        fail("; ".join(problems[:15]) + (f" (+{len(problems) - 15} more)" if len(problems) > 15 else ""))
    print(f"# dashboard-metric-names: {len(exprs)} dashboard and {len(alerts)} alert expressions, "
          f"{len(checked)} distinct names, all exported", flush=True)


# ------------------------------------------------------------------ promtool
def run(cmd, stdin=None, timeout=60):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)


def promtool(ctx):
    if not os.path.exists(PROMTOOL):
        fail(f"no promtool at {PROMTOOL} (apt-get install prometheus)")
    problems = []
    r = run([PROMTOOL, "check", "rules", ALERTS])
    if r.returncode != 0:
        problems.append(f"check rules: {(r.stdout + r.stderr).strip()[-400:]}")
    r = run([PROMTOOL, "test", "rules", ALERTS_TEST])
    if r.returncode != 0:
        problems.append(f"test rules: {(r.stdout + r.stderr).strip()[-800:]}")
    status, _, body = ctx.metrics.get()
    r = run([PROMTOOL, "check", "metrics"], stdin=body)
    if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
        problems.append(f"check metrics on a live scrape (rc {r.returncode}): {(r.stdout + r.stderr).strip()[:400]}")
    if problems:
        fail("; ".join(problems))


# ------------------------------------------------------------------ Prometheus
class Prometheus:
    """A real Prometheus server scraping the broker's metrics port every second, stopped by PID."""

    def __init__(self, metrics_port):
        self.dir = tempfile.mkdtemp(prefix="sluice-prom.")
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "prometheus.log")
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: sluice
    static_configs:
      - targets: ['127.0.0.1:{metrics_port}']
""")
        self.cmd = [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
                    f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc = None

    def start(self):
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        for _ in compat.deadline_loop(20, step=0.1):
            if self.proc.poll() is not None:
                fail(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
        fail(f"prometheus not ready 20 s after start: {self.log_tail()}")

    def log_tail(self):
        try:
            return open(self.log_path, errors="replace").read()[-600:].strip()
        except OSError:
            return ""

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"{}")

    def query(self, expr):
        return self.api("query", query=expr)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def prometheus_scrape(ctx):
    if not os.path.exists(PROMETHEUS):
        fail(f"no prometheus at {PROMETHEUS} (apt-get install prometheus)")
    prom = Prometheus(ctx.metrics.base.rsplit(":", 1)[1])
    ctx.prom = prom
    prom.start()
    ctx.create(PROM_TOPIC, 1)
    ctx.produce(PROM_TOPIC, N_PROM, prefix="prom")
    last = None
    for _ in compat.deadline_loop(30, step=0.5):
        r = prom.query(f'sluice_topic_messages_in_total{{job="sluice", topic="{PROM_TOPIC}"}}')
        up = prom.query('up{job="sluice"}')
        last = (r, up)
        vals = [float(x["value"][1]) for x in r.get("data", {}).get("result", [])]
        ups = [float(x["value"][1]) for x in up.get("data", {}).get("result", [])]
        if vals == [N_PROM] and ups == [1]:
            break
    else:
        targets = prom.api("targets").get("data", {}).get("activeTargets", [])
        errs = [(t.get("health"), t.get("lastError")) for t in targets]
        fail(f"after 30 s: messages_in query {json.dumps(last[0])[:300]}, up {json.dumps(last[1])[:200]}, "
             f"targets {errs}; prometheus log: {prom.log_tail()[-300:]}")
    problems = []
    targets = prom.api("targets").get("data", {}).get("activeTargets", [])
    for t in targets:
        if t.get("health") != "up" or t.get("lastError"):
            problems.append(f"target {t.get('scrapeUrl')}: health {t.get('health')}, error {t.get('lastError')!r}")
    # Samples Prometheus scraped vs. what the page lists (nothing dropped as unparsable).
    r = prom.query('scrape_samples_scraped{job="sluice"}')
    scraped = [float(x["value"][1]) for x in r.get("data", {}).get("result", [])]
    page = ctx.metrics.page()
    if not scraped or abs(scraped[0] - len(page.samples)) > 50:
        problems.append(f"scrape_samples_scraped {scraped}, the page has {len(page.samples)} samples")
    # alerts.yml loaded and every rule evaluated without error (a few evaluations in).
    rules = []
    for _ in compat.deadline_loop(10, step=0.5):
        groups = prom.api("rules").get("data", {}).get("groups", [])
        rules = [r for g in groups for r in g.get("rules", [])]
        if rules and all(r.get("health") == "ok" and not r.get("lastEvaluation", "0001").startswith("0001")
                         for r in rules):
            break
    bad = [(r.get("name"), r.get("health"), r.get("lastError")) for r in rules if r.get("health") != "ok"]
    if not rules:
        problems.append("no alert rules loaded from alerts.yml")
    if bad:
        problems.append(f"rules not healthy: {bad}")
    if problems:
        fail("; ".join(problems))
    print(f"# prometheus-scrape: {PROM_TOPIC} = {N_PROM} via /api/v1/query, up=1, {len(rules)} rules ok, "
          f"{scraped[0]:g} samples per scrape", flush=True)


def dashboard_queries(ctx):
    prom = ctx.prom
    if prom is None or prom.proc is None:
        fail("prometheus is not running (prometheus-scrape failed)")
    with open(DASHBOARD) as f:
        dash = json.load(f)

    def concrete(e):
        e = e.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
        e = re.sub(r"\$\{?job\}?", "sluice", e)
        return re.sub(r"\$\{?(instance|topic|group|api)\}?", ".*", e)

    exprs = []
    for where, e in dashboard_exprs(dash):
        m = re.match(r"^\s*label_values\((.*),\s*([a-zA-Z_]+)\s*\)\s*$", e)
        if m:
            exprs.append((where, concrete(m.group(1)), m.group(2)))
        elif e.startswith("label_values(") or e.startswith("query_result("):
            exprs.append((where, None, e))
        else:
            exprs.append((where, concrete(e), None))
    pending = {i for i in range(len(exprs))}
    errors = {}
    # rate()s need two scrapes inside the window: retry empty answers for a few seconds.
    for _ in compat.deadline_loop(15, step=1):
        for i in sorted(pending):
            where, e, label = exprs[i]
            if e is None:
                errors[i] = f"{where}: cannot evaluate {label!r}"
                pending.discard(i)
                continue
            r = prom.query(e)
            if r.get("status") != "success":
                errors[i] = f"{where}: {r.get('errorType')}: {r.get('error')} in {e[:100]!r}"
                pending.discard(i)
                continue
            res = r["data"]["result"]
            if label:
                res = [x for x in res if label in x.get("metric", {})]
            if res:
                pending.discard(i)
                errors.pop(i, None)
            else:
                errors[i] = f"{where}: no data for {e[:120]!r}"
        if not pending:
            break
    if errors:
        fail(f"{len(errors)} of {len(exprs)} expressions: " + "; ".join(list(errors.values())[:8]))
    print(f"# dashboard-queries: {len(exprs)} expressions evaluated on Prometheus, each returned data", flush=True)


# ------------------------------------------------------------------ 1000 partitions
def scrape_1000(ctx):
    m = ctx.metrics
    base = []
    for _ in range(5):
        t0 = time.perf_counter()
        _, _, body = m.get()
        base.append((time.perf_counter() - t0) * 1000)
    base_size = len(body)
    # Scrapes keep going while the topic is created (informational: how long the longest took).
    during = []
    done = threading.Event()

    def scrape_loop():
        while not done.is_set():
            t = time.perf_counter()
            try:
                m.get()
            except OSError:
                pass
            during.append((time.perf_counter() - t) * 1000)
            done.wait(0.1)

    scraper = threading.Thread(target=scrape_loop, daemon=True)
    scraper.start()
    t0 = time.monotonic()
    try:
        ctx.create(WIDE_TOPIC, WIDE_PARTITIONS, timeout=WIDE_CREATE_TIMEOUT)
    finally:
        created = time.monotonic() - t0
        done.set()
        scraper.join(timeout=15)
    ctx.produce(WIDE_TOPIC, 3 * WIDE_PARTITIONS, round_robin=WIDE_PARTITIONS, prefix="wide")
    commit_simple(ctx.bs, WIDE_GROUP, {(WIDE_TOPIC, p): 2 for p in range(WIDE_PARTITIONS)})
    times, sizes = [], []
    page = None
    for i in range(SCRAPES):
        t0 = time.perf_counter()
        status, _, body = m.get()
        times.append((time.perf_counter() - t0) * 1000)
        sizes.append(len(body))
        if status != 200:
            fail(f"scrape {i + 1}: status {status}")
        if i == SCRAPES - 1:
            page = Page(body)
    leo = page.by_partition("sluice_partition_log_end_offset", topic=WIDE_TOPIC)
    if len(leo) != WIDE_PARTITIONS:
        fail(f"{len(leo)} log end offset series for {WIDE_TOPIC}, want {WIDE_PARTITIONS}")
    if set(leo.values()) != {3}:
        fail(f"log end offsets of {WIDE_TOPIC}: {sorted(set(leo.values()))}, want 3 everywhere")
    lag = page.by_partition("sluice_consumer_group_lag", group=WIDE_GROUP, topic=WIDE_TOPIC)
    if len(lag) != WIDE_PARTITIONS or set(lag.values()) != {1}:
        fail(f"{len(lag)} lag series for {WIDE_GROUP}, values {sorted(set(lag.values()))[:5]}; want "
             f"{WIDE_PARTITIONS} of 1")
    print(f"# scrape-1000-partitions: {len(page.series('sluice_partition_log_end_offset'))} partitions in all, "
          f"{SCRAPES} scrapes: median {statistics.median(times):.2f} ms, max {max(times):.2f} ms, "
          f"body {sizes[-1]} bytes, {len(page.samples)} samples (before the topic: median "
          f"{statistics.median(base):.2f} ms, {base_size} bytes); creating the {WIDE_PARTITIONS}-partition "
          f"topic took {created:.1f} s, the slowest of {len(during)} scrapes meanwhile {max(during or [0]):.0f} ms",
          flush=True)


def deleted_topic_series(ctx):
    """Deleting the 1,000-partition topic takes its scrape-time series (and the group's offsets)
    with it: nothing is left for a deleted partition."""
    m = ctx.metrics
    t0 = time.monotonic()
    fs = ctx.admin.delete_topics([WIDE_TOPIC], operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT + 10)
    fs[WIDE_TOPIC].result(timeout=OP_TIMEOUT + 10)
    took = time.monotonic() - t0
    page = m.page()
    left = {}
    for name in ("sluice_partition_log_end_offset", "sluice_partition_log_start_offset",
                 "sluice_partition_high_watermark", "sluice_partition_size_bytes",
                 "sluice_consumer_group_lag", "sluice_consumer_group_committed_offset"):
        n = len(page.series(name, topic=WIDE_TOPIC))
        if n:
            left[name] = n
    if left:
        fail(f"series of the deleted topic still listed: {left}")
    all_leo = page.series("sluice_partition_log_end_offset")
    n_leo = len(all_leo)
    # Internal topics (__consumer_offsets, created by the group's FindCoordinator) count too.
    n_user = sum(1 for k in all_leo if not dict(k)["topic"].startswith("__"))
    if page.value("sluice_partitions") != n_leo or n_user != len(ctx.leo) - WIDE_PARTITIONS:
        fail(f"sluice_partitions {page.value('sluice_partitions'):g}, {n_leo} log end offset series "
             f"({n_user} of user topics), want {len(ctx.leo) - WIDE_PARTITIONS} of user topics")
    for key in [k for k in ctx.leo if k[0] == WIDE_TOPIC]:
        del ctx.leo[key]
    kept = [n for n in ("sluice_topic_messages_in_total", "sluice_topic_bytes_in_total",
                        "sluice_topic_messages_out_total", "sluice_topic_bytes_out_total")
            if page.series(n, topic=WIDE_TOPIC)]
    print(f"# deleted-topic-series: DeleteTopics of {WIDE_PARTITIONS} partitions took {took:.1f} s; per-topic "
          f"counters still listed after the delete: {', '.join(kept) or 'none'}", flush=True)
    if kept:
        fail(f"per-topic counters of the deleted topic are still listed: {', '.join(kept)}")


def json_logs(ctx):
    """log.format=json with RUST_LOG=sluice=debug: every line the broker wrote since this start is
    a JSON object; a produce request shows up as a "request handled" event inside its request span
    (api, version, correlation id, client id, peer); the record's value never appears in the log."""
    marker = "payload-marker-%d" % os.getpid()
    topic = "obs-json-logs"
    p = Producer({"bootstrap.servers": ctx.bs, "client.id": "obs-json-logger"})
    p.produce(topic, value=marker.encode())
    if p.flush(30) != 0:
        fail("produce to the auto-created topic was not delivered")
    time.sleep(0.5)
    with open(os.environ["SLUICE_BROKER_LOG"], "rb") as f:
        text = f.read().decode("utf-8", "replace")
    tail = text.rsplit("===== observability suite: broker start", 1)[-1].split("\n", 1)[-1]
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    if not lines:
        fail("no log lines after the broker start")
    events = []
    for ln in lines:
        try:
            events.append(json.loads(ln))
        except json.JSONDecodeError:
            fail(f"not a JSON line: {ln[:200]!r}")
    if marker in tail:
        fail("a record value appears in the broker log")
    produce = [e for e in events
               if e.get("fields", {}).get("message") == "request handled"
               and e.get("span", {}).get("api") == "Produce"
               and e.get("span", {}).get("client_id") == "obs-json-logger"]
    if not produce:
        fail(f"no 'request handled' event in a Produce request span among {len(events)} JSON lines")
    span = produce[0]["span"]
    missing = [k for k in ("api", "version", "correlation_id", "client_id", "peer") if k not in span]
    if missing:
        fail(f"request span lacks {missing}: {span}")
    print(f"# json-logs: {len(events)} JSON lines; a Produce span: {json.dumps(span)}", flush=True)
    # Leave the partition set as the later checks expect it.
    admin = AdminClient({"bootstrap.servers": ctx.bs})
    admin.delete_topics([topic])[topic].result(30)


def main():
    bs = compat.bootstrap()
    s = compat.Suite("observability")
    mport = free_port()
    # JSON logs with a line per request (the json-logs check reads them).
    os.environ["RUST_LOG"] = "sluice=debug"
    # A SASL listener beside the PLAINTEXT one, so the authentication counters exist.
    port = int(os.environ["SLUICE_PORT"])
    broker = Broker("observability suite", overrides=[f"metrics.listener=127.0.0.1:{mport}",
                                                      f"listeners=PLAINTEXT://127.0.0.1:{port},"
                                                      f"SASL_PLAINTEXT://127.0.0.1:{free_port()}",
                                                      "sasl.enabled.mechanisms=SCRAM-SHA-256",
                                                      "group.initial.rebalance.delay.ms=0",
                                                      "log.format=json"])
    ctx = Ctx(bs, broker, Metrics(mport))
    t0 = time.monotonic()
    try:
        ok, _ = s.check("start", broker.start)
        if not ok:
            s.finish()
        ctx.admin = AdminClient({"bootstrap.servers": bs, "client.id": "obs-admin"})
        s.check("metrics-endpoint", metrics_endpoint, ctx)
        s.check("json-logs", json_logs, ctx)
        s.check("dashboard-metric-names", dashboard_metric_names, ctx)
        s.check("promtool", promtool, ctx)
        try:
            s.check("prometheus-scrape", prometheus_scrape, ctx)
            s.check("dashboard-queries", dashboard_queries, ctx)
        finally:
            if ctx.prom is not None:
                ctx.prom.stop()
        ok, _ = s.check("scrape-1000-partitions", scrape_1000, ctx)
        if ok:
            s.check("deleted-topic-series", deleted_topic_series, ctx)

        def clean_stop():
            # The shutdown flushes and checkpoints every partition (seconds for 1,000 on a slow
            # disk): allow more than Broker.stop()'s 10 s, and print how long it took.
            t0 = time.monotonic()
            broker.proc.send_signal(signal.SIGTERM)
            try:
                rc = broker.proc.wait(timeout=SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                fail(f"broker still running {SHUTDOWN_TIMEOUT} s after SIGTERM")
            print(f"# clean-shutdown: exited {rc} {time.monotonic() - t0:.1f} s after SIGTERM "
                  f"({len(ctx.leo)} partitions with data)", flush=True)
            if rc != 0:
                fail(f"broker exit status {rc} after SIGTERM")

        ctx.admin = None  # its connection would only log the broker going away
        if broker.proc is not None and broker.proc.poll() is None:
            s.check("clean-shutdown", clean_stop)
    finally:
        if ctx.prom is not None:
            ctx.prom.stop()
        broker.stop()
    print(f"# observability: {time.monotonic() - t0:.1f} s", flush=True)
    s.finish()


if __name__ == "__main__":
    main()
