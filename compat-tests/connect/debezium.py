"""The connect suite's Debezium checks: Debezium 3.6.3's PostgreSQL connector (pgoutput logical
decoding), running on the suite's two Connect workers, captures a table of a real PostgreSQL server
(Debian's package, started here on a free loopback port) into a compacted Sluice topic.

  debezium.snapshot   rows inserted before the connector starts arrive as snapshot events (op "r"),
                      keyed by primary key ({"id": N}, JsonConverter without schemas)
  debezium.stream     inserts, updates and a delete made afterwards arrive as change events (op c, u,
                      d), the delete followed by a tombstone (a null value) for its key, in commit order
  debezium.compacted  the topic is cleanup.policy=compact (segment.ms=100, delete.retention.ms=3000):
                      a reader from the start sees exactly each live row's latest state and the
                      deleted row as a lone tombstone, then, after delete.retention.ms, not at all
"""

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

import compat
from compat import fail

TOPIC = "pg.public.customers"
NAME = "pg-customers"


class Postgres:
    """A throwaway PostgreSQL cluster (initdb, pg_ctl) with wal_level=logical on a free port. Run as
    the postgres user when we are root (initdb refuses root)."""

    def __init__(self, data_dir_marker):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bin = os.path.dirname(bins[-1]) if bins else None
        self.marker = data_dir_marker
        self.dir = None
        self.port = None

    def _as_owner(self, args, **kw):
        if os.geteuid() == 0:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, **kw)

    def start(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="sluice-pg.")
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        pgdata = os.path.join(self.dir, "data")
        r = self._as_owner([f"{self.bin}/initdb", "-D", pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        if r.returncode != 0:
            fail(f"initdb: {r.stderr[-500:]}")
        with open(os.path.join(pgdata, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                    "wal_level = logical\nmax_replication_slots = 4\nmax_wal_senders = 4\nfsync = off\n")
        r = self._as_owner([f"{self.bin}/pg_ctl", "-D", pgdata, "-l", os.path.join(self.dir, "log"), "-w", "start"])
        if r.returncode != 0:
            fail(f"pg_ctl start: {r.stderr[-500:]} {r.stdout[-500:]}")
        with open(os.path.join(pgdata, "postmaster.pid")) as f:
            pid = f.readline().strip()
        with open(self.marker, "w") as f:
            f.write(f"{pid} postgres\n")

    def sql(self, statement):
        r = self._as_owner([f"{self.bin}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            "-v", "ON_ERROR_STOP=1", "-q", "-c", statement])
        if r.returncode != 0:
            fail(f"psql {statement!r}: {r.stderr[-500:]}")

    def stop(self):
        if self.dir is None:
            return
        self._as_owner([f"{self.bin}/pg_ctl", "-D", os.path.join(self.dir, "data"), "-m", "immediate", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None


def connector_config(pg):
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": "127.0.0.1",
        "database.port": str(pg.port),
        "database.user": "postgres",
        "database.password": "unused",
        "database.dbname": "postgres",
        "topic.prefix": "pg",
        "plugin.name": "pgoutput",
        "slot.name": "sluice_slot",
        "publication.autocreate.mode": "filtered",
        "table.include.list": "public.customers",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
    }


def read_topic(bs):
    """[(offset, key dict, value dict or None)] from the beginning to the end offset."""
    from confluent_kafka import Consumer, TopicPartition
    probe = Consumer({"bootstrap.servers": bs, "group.id": "dbz-probe"})
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
    finally:
        probe.close()
    if high <= low:
        return []
    msgs = compat.read_partition({"bootstrap.servers": bs}, TOPIC, start=low)
    return [(m.offset(), json.loads(m.key()), None if m.value() is None else json.loads(m.value())) for m in msgs]


def wait_events(bs, pred, what, workers, seconds=90):
    got = []
    for _ in compat.deadline_loop(seconds, step=1):
        got = read_topic(bs)
        if pred(got):
            return got
        for w in workers:
            st = w.status(NAME) if w.running() else None
            for t in (st or {}).get("tasks", []):
                if t["state"] == "FAILED":
                    fail(f"{NAME} task FAILED on {t['worker_id']}: {t.get('trace', '')}")
    fail(f"{what}: after {seconds} s the topic holds {[(o, k, v and v.get('op')) for o, k, v in got][-20:]}")


def snapshot(bs, pg, workers):
    pg.sql("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text)")
    pg.sql("INSERT INTO customers VALUES " + ",".join(f"({i}, 'name-{i}', 'c{i}@example.com')" for i in range(1, 6)))
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1, config={
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "3000",
        # Nothing is compacted until `compacted` lowers this: the snapshot and stream checks
        # read every event by position (the cleaner runs every 200 ms here).
        "min.compaction.lag.ms": "3600000"})])[TOPIC].result(timeout=30)
    alive = next(w for w in workers if w.running())
    status = alive.put(f"/connectors/{NAME}/config", connector_config(pg))
    if status // 100 != 2:
        fail(f"PUT {NAME} config: HTTP {status}")
    got = wait_events(bs, lambda g: len(g) >= 5, "5 snapshot events", workers)
    ops = [(k["id"], v["op"], v["after"]["name"]) for _, k, v in got[:5]]
    if sorted(ops) != [(i, "r", f"name-{i}") for i in range(1, 6)]:
        fail(f"snapshot events {ops}")


def stream(bs, pg, workers):
    pg.sql("INSERT INTO customers VALUES (6, 'name-6', NULL), (7, 'name-7', NULL)")
    pg.sql("UPDATE customers SET name = 'renamed-2' WHERE id = 2")
    pg.sql("UPDATE customers SET email = 'first@example.com' WHERE id = 3")
    pg.sql("UPDATE customers SET email = 'second@example.com' WHERE id = 3")
    pg.sql("DELETE FROM customers WHERE id = 4")
    want = [(6, "c"), (7, "c"), (2, "u"), (3, "u"), (3, "u"), (4, "d"), (4, None)]
    got = wait_events(bs, lambda g: len(g) >= 5 + len(want), "the change events", workers)
    events = [(k["id"], v and v["op"]) for _, k, v in got[5:5 + len(want)]]
    if events != want:
        fail(f"change events {events}, expected {want}")
    last3 = got[9][2]
    if last3["after"]["email"] != "second@example.com" or got[7][2]["after"]["name"] != "renamed-2":
        fail(f"update payloads wrong: {got[7][2]['after']} {last3['after']}")


def compacted(bs, pg):
    state = {1: "name-1", 2: "renamed-2", 3: "name-3", 5: "name-5", 6: "name-6", 7: "name-7"}
    filler = [1000]

    def write_more():
        # Later writes roll the active segment (segment.ms=100) so everything before is cleanable.
        i = filler[0]
        filler[0] += 1
        pg.sql(f"INSERT INTO customers VALUES ({i}, 'name-{i}', NULL)")
        state[i] = f"name-{i}"

    def view(got):
        latest, count = {}, {}
        for _, k, v in got:
            latest[k["id"]] = v
            count[k["id"]] = count.get(k["id"], 0) + 1
        return latest, count

    def live_ok(latest, count):
        # Every live row's latest state, and (cleaned) only once for the rows changed before.
        return all(latest.get(i) is not None and latest[i]["after"]["name"] == n for i, n in state.items()) \
            and all(count.get(i) == 1 for i in (2, 3))

    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    admin = AdminClient({"bootstrap.servers": bs})
    lag = ConfigResource(ConfigResource.Type.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([lag]).values():
        f.result(timeout=30)
    seen_lone_tombstone = False
    last = None
    for _ in compat.deadline_loop(90, step=1):
        write_more()
        time.sleep(0.3)
        got = read_topic(bs)
        latest, count = view(got)
        last = (sorted(count.items())[:8], len(got))
        if not live_ok(latest, count):
            continue
        if 4 in latest and latest[4] is None and count[4] == 1:
            seen_lone_tombstone = True
        if 4 not in latest:
            if not seen_lone_tombstone:
                fail("row 4's tombstone went before it was seen alone (delete.retention.ms=3000)")
            return
    fail(f"not compacted as expected (tombstone seen alone: {seen_lone_tombstone}); "
         f"(id, records) {last[0]}, {last[1]} records")


def run(s, bs, workers):
    pg = Postgres(os.path.join(os.environ["SLUICE_DATA_DIR"], "extra-postgres.pid"))
    if pg.bin is None:
        print("SKIP debezium: no PostgreSQL server (/usr/lib/postgresql/*/bin/initdb); setup.sh installs it",
              flush=True)
        return
    try:
        ok, _ = s.check("debezium.postgres-start", pg.start)
        ok = ok and s.check("debezium.snapshot", snapshot, bs, pg, workers)[0]
        ok = ok and s.check("debezium.stream", stream, bs, pg, workers)[0]
        if ok:
            s.check("debezium.compacted", compacted, bs, pg)
    finally:
        pg.stop()
