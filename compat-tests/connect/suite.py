"""Kafka Connect 4.3.0 in distributed mode against Sluice: two unchanged workers (their
DistributedHerder and Worker, started by ConnectLauncher.java because the REST server's jar is not
obtainable here; see README.md) in one group, Apache Kafka's FileStreamSource and FileStreamSink
connectors, and Debezium 3.6.3's PostgreSQL connector capturing a real PostgreSQL server.

This suite runs its own broker (lib/broker.py) with log.roll.ms=1000 (segments roll at the first
append after a second, so Connect's internal topics have sealed segments to clean),
log.cleaner.min.cleanable.ratio=0.01 and log.cleaner.backoff.ms=200. Checks, in order:
  start            broker, worker 1 (submits the two file connectors) and worker 2 join one group;
                   both connectors and their tasks RUNNING
  pipeline         500 lines appended to the source file arrive in the sink file, once each, in order
  failover         the worker running the source task is kill -9ed (after the offsets were flushed);
                   its connectors and tasks move to the other worker, and 500 more lines arrive once
  reconfigure      the source connector's config is changed through the REST call a follower
                   forwards to the leader; its task restarts and 100 more lines arrive once
  restart-resume   both workers stopped (one SIGTERM, one kill -9 after a flush), 400 lines appended
                   while none runs, both restarted without configs: they read the connectors from
                   the config topic and resume from the offsets topic (source) and the group's
                   committed offsets (sink): every line exactly once
  broker-restart   the broker is kill -9ed and restarted under the running workers; 500 more lines
                   arrive once
  internal-topics  connect-sluice-configs/-offsets/-status are cleanup.policy=compact and Sluice's
                   cleaner compacted each (a reader from the start sees fewer records than offsets)
  debezium.*       see debezium.py (skipped with a SKIP line when no PostgreSQL server is installed)
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, KafkaError, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

GROUP = "connect-sluice"
INTERNAL = [f"{GROUP}-configs", f"{GROUP}-offsets", f"{GROUP}-status"]
TOPIC = "connect-lines"
WORK = os.path.dirname(os.environ["SLUICE_BROKER_LOG"])
DATA = os.environ["SLUICE_DATA_DIR"]
IN = os.path.join(WORK, "source.txt")
OUT = os.path.join(WORK, "sink.txt")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """One Connect worker JVM (run-launcher.sh), started and killed by PID only. Its PID goes to
    DATA/extra-connect-<id>.pid so run.sh stops it if the suite times out."""

    def __init__(self, wid, bs):
        self.wid = wid
        self.bs = bs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker_id = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(WORK, f"worker-{wid}.log")
        self.proc = None

    def start(self, configs=None, extra=()):
        args = [os.path.join(HERE, "run-launcher.sh"), f"bootstrap={self.bs}", f"worker.id={self.wid}",
                f"rest.port={self.port}", f"group={GROUP}", "status.interval.ms=5000",
                "offset.flush.interval.ms=1000", "scheduled.rebalance.max.delay.ms=3000",
                "session.timeout.ms=6000", "heartbeat.interval.ms=1000",
                # Sink tasks' consumers: a consumer closed while the broker is down cannot leave its
                # group, and the next member's join waits for its session to expire (as in Kafka).
                "consumer.session.timeout.ms=6000", "consumer.heartbeat.interval.ms=1000", *extra]
        if configs:
            args.append(f"configs={configs}")
        log = open(self.log_path, "ab")
        log.write(f"\n===== worker {self.wid} start =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        with open(os.path.join(DATA, f"extra-connect-{self.wid}.pid"), "w") as f:
            f.write(f"{self.proc.pid} ConnectLauncher\n")
        for _ in compat.deadline_loop(60, step=0.5):
            if self.proc.poll() is not None:
                fail(f"worker {self.wid} exited with {self.proc.returncode} (log {self.log_path})")
            try:
                self.get("/connectors")
                return
            except OSError:
                pass
        fail(f"worker {self.wid} REST port {self.port} not answering 60 s after start")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if not self.running():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def put(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=100) as r:
            return r.status

    def status(self, name):
        try:
            return self.get(f"/connectors/{name}/status")
        except OSError:
            return None


def wait_running(worker, names, on=None, seconds=90):
    """Waits until each connector and its tasks are RUNNING (on worker `on` if given); returns the
    statuses. A FAILED task fails at once with its state."""
    last = None
    for _ in compat.deadline_loop(seconds, step=0.5):
        sts = [worker.status(n) for n in names]
        last = sts
        if any(s is None for s in sts):
            continue
        for s in sts:
            for t in s["tasks"]:
                if t["state"] == "FAILED":
                    fail(f"{s['name']} task {t['id']} FAILED on {t['worker_id']}")
        units = [(s["connector"]["state"], s["connector"]["worker_id"]) for s in sts]
        units += [(t["state"], t["worker_id"]) for s in sts for t in s["tasks"]]
        if all(s["tasks"] for s in sts) and all(st == "RUNNING" and (on is None or w == on) for st, w in units):
            return sts
    fail(f"not all RUNNING{' on ' + on if on else ''} after {seconds} s: {last}")


def append_lines(start, count):
    with open(IN, "a") as f:
        for i in range(start, start + count):
            f.write(f"line-{i:06d}\n")


def wait_sink(total, seconds=90):
    """Waits until the sink file holds `total` lines; then they must be line-000000.. in order,
    each once (after a short settle, so a late duplicate is seen too)."""
    want = [f"line-{i:06d}" for i in range(total)]
    got = []
    for _ in compat.deadline_loop(seconds, step=0.5):
        got = read_sink()
        if len(got) >= total:
            break
    time.sleep(2)
    got = read_sink()
    if got != want:
        dups = len(got) - len(set(got))
        missing = len(set(want) - set(got))
        fail(f"sink has {len(got)} lines ({dups} duplicates, {missing} missing, in order: "
             f"{sorted(got) == got}), expected {total} once each")


def read_sink():
    try:
        with open(OUT) as f:
            return [ln.rstrip("\n") for ln in f if ln.strip()]
    except FileNotFoundError:
        return []


def write_configs(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "file-source.properties"), "w") as f:
        f.write(f"name=file-source\nconnector.class=org.apache.kafka.connect.file.FileStreamSourceConnector\n"
                f"tasks.max=1\nfile={IN}\ntopic={TOPIC}\n")
    with open(os.path.join(d, "file-sink.properties"), "w") as f:
        f.write(f"name=file-sink\nconnector.class=org.apache.kafka.connect.file.FileStreamSinkConnector\n"
                f"tasks.max=1\nfile={OUT}\ntopics={TOPIC}\n")


def source_config():
    return {"connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector", "tasks.max": "1",
            "file": IN, "topic": TOPIC}


NAMES = ["file-source", "file-sink"]


def start(bs, broker, workers):
    broker.start()
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[TOPIC].result(timeout=30)
    open(IN, "w").close()
    configs = os.path.join(WORK, "connectors")
    write_configs(configs)
    workers[0].start(configs=configs)
    workers[1].start()
    wait_running(workers[0], NAMES)


def pipeline(_bs, workers):
    append_lines(0, 500)
    wait_sink(500)


def source_worker(workers):
    s = workers[0].status("file-source") or workers[1].status("file-source")
    wid = s["tasks"][0]["worker_id"]
    return next(w for w in workers if w.worker_id == wid)


def failover(_bs, workers):
    time.sleep(3)  # the offsets of what the sink wrote are committed (offset.flush.interval.ms=1000)
    victim = source_worker(workers)
    survivor = next(w for w in workers if w is not victim)
    victim.kill9()
    append_lines(500, 500)
    wait_running(survivor, NAMES, on=survivor.worker_id, seconds=120)
    wait_sink(1000)


def reconfigure(_bs, workers):
    alive = [w for w in workers if w.running()]
    # Through whichever worker is up: a follower forwards the PUT to the leader.
    cfg = dict(source_config(), **{"batch.size": "500"})
    status = alive[0].put("/connectors/file-source/config", cfg)
    if status // 100 != 2:
        fail(f"PUT config: HTTP {status}")
    append_lines(1000, 100)
    wait_running(alive[0], NAMES)
    wait_sink(1100)


def restart_resume(_bs, workers):
    for w in workers:
        if not w.running():
            w.start()
    wait_running(workers[0], NAMES)
    time.sleep(3)  # quiet: everything flushed and committed
    workers[1].stop()
    workers[0].kill9()
    append_lines(1100, 400)
    workers[1].start()
    workers[0].start()
    wait_running(workers[0], NAMES, seconds=120)
    wait_sink(1500)


def broker_restart(_bs, broker, workers):
    time.sleep(2)
    broker.kill9()
    time.sleep(1)
    broker.start()
    append_lines(1500, 500)
    wait_sink(2000, seconds=120)
    wait_running(workers[0], NAMES)


def internal_topics(bs):
    admin = AdminClient({"bootstrap.servers": bs})
    res = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in INTERNAL]
    for r, fut in admin.describe_configs(res).items():
        policy = fut.result(timeout=30)["cleanup.policy"].value
        if policy != "compact":
            fail(f"{r.name} cleanup.policy={policy}")
    pending = set(INTERNAL)
    seen = {}
    for _ in compat.deadline_loop(60, step=1):
        for t in sorted(pending):
            spans, records = count_records(bs, t)
            seen[t] = (spans, records)
            if records < spans:
                pending.discard(t)
        if not pending:
            return
    fail(f"not compacted (offsets in the log, records read): {[(t, seen.get(t)) for t in sorted(pending)]}")


def count_records(bs, topic):
    """(sum over partitions of high - low, records a reader from the start sees)."""
    c = Consumer({"bootstrap.servers": bs, "group.id": f"connect-reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        spans, parts = 0, []
        for p in md.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            spans += high - low
            if high > low:
                parts.append(TopicPartition(topic, p, low))
        if not parts:
            return 0, 0
        c.assign(parts)
        records, eof = 0, set()
        for _ in compat.deadline_loop(30, step=0):
            if len(eof) == len(parts):
                break
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                fail(f"read {topic}: {m.error()}")
            records += 1
        return spans, records
    finally:
        c.close()


def main():
    bs = compat.bootstrap()
    s = compat.Suite("connect")
    broker = Broker("connect", overrides=["log.roll.ms=1000", "log.cleaner.min.cleanable.ratio=0.01",
                                          "log.cleaner.backoff.ms=200"])
    workers = [Worker(1, bs), Worker(2, bs)]

    def on_term(*_):
        for w in workers:
            w.kill9()
        broker.stop()
        sys.exit(1)

    signal.signal(signal.SIGTERM, on_term)
    try:
        ok, _ = s.check("start", start, bs, broker, workers)
        # `run.sh debezium`: only the Debezium checks (after start).
        only_debezium = sys.argv[1:] == ["debezium"]
        if ok and only_debezium:
            import debezium
            debezium.run(s, bs, workers)
        elif ok:
            steps = [("pipeline", pipeline, bs, workers), ("failover", failover, bs, workers),
                     ("reconfigure", reconfigure, bs, workers), ("restart-resume", restart_resume, bs, workers),
                     ("broker-restart", broker_restart, bs, broker, workers)]
            for name, fn, *args in steps:
                ok, _ = s.check(name, fn, *args)
                if not ok:
                    break
            s.check("internal-topics-compacted", internal_topics, bs)
            import debezium
            debezium.run(s, bs, workers)
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    s.finish()


if __name__ == "__main__":
    main()
