"""Kafka transactions (KIP-98) with the official Java client, kafka-clients 4.3.0.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file; see
lib/broker.py) and drives java/TxnClient.java processes (one JVM per step; a loop or a producer
that must die is kill -9ed by PID). Checks, in order:
  abort.*     a transactional producer commits 100, aborts 100, commits 100 on a 3-partition topic:
              read_committed sees exactly the 200 committed records in order, read_uncommitted
              all 300 (one marker offset per partition per transaction); while a transaction is
              open (flushed), read_committed endOffsets, seekToEnd and Admin listOffsets
              (READ_COMMITTED) equal the LSO (its first offset) and read_uncommitted the high
              watermark; after the commit they are equal.
  fence.*     producer A opens a transaction (flushed); B with the same transactional.id inits;
              A's next send and its commit fail with Kafka's fencing errors; A's records never
              reach read_committed; B commits its own.
  timeout.*   transaction.timeout.ms=3000, the producer sleeps 6 s without committing: records
              another producer wrote after it become visible to read_committed once the broker
              aborts the transaction (bounded wait), the stuck records never; its commit fails.
  eos.*       consume-transform-produce exactly once: 20,000 records in a 6-partition topic, a
              Java loop (read_committed consumer in group eos-group, transactional.id eos-txn,
              sendOffsetsToTransaction per poll) copies them to eos-out. The loop is kill -9ed
              holding an open, flushed transaction (after 5,000); a new loop with the same id
              fences it and resumes at the committed offsets. Later the broker is kill -9ed while
              the loop holds another open transaction, restarted on the same data, and the loop
              commits it; then kill -9ed again mid-stream (down 2 s) and the loop carries on (or,
              if it dies, a new one takes over). Then every input i is in eos-out
              exactly once as "out-i", in input order per partition, to read_committed; the
              aborted attempts are visible to read_uncommitted only; the group's committed
              offsets are the input's end offsets.
  admin.*     listTransactions (states, filters), describeTransactions, describeProducers, for
              completed and ongoing transactions.
  restart.*   two producers hold open transactions across a SIGTERM restart and then a kill -9
              restart: the LSO is recovered each time (still the oldest open transaction's first
              offset, from the snapshot and from log recovery), one producer commits after the
              restart, a new instance of the other's transactional.id inits (aborting the old
              transaction) and commits; read_committed never sees the aborted records; earlier
              topics' aborted transactions stay invisible and every transactional id stays listed.

SLUICE_TXN_BROKER_OVERRIDES: extra broker `key=value` settings (space separated), e.g. a shorter
timed-out-transaction check interval if the broker has one.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402
from lineproc import LineProc as Proc  # noqa: E402

JAVA_OPTS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
N_EOS = int(os.environ.get("SLUICE_TXN_EOS_MESSAGES", "20000"))
EOS_PARTITIONS = 6
EOS_GROUP, EOS_TXN = "eos-group", "eos-txn"
# The first loop holds (and is killed) once this many inputs are committed; the second holds
# across the broker restart at the second mark.
KILL_LOOP_AT = N_EOS // 4
KILL_BROKER_AT = N_EOS * 11 // 20
# ... and is slowed down after that (100 ms between transactions) so that a second broker kill -9,
# with the broker down BROKER_DOWN_S, lands mid-stream.
KILL_BROKER_MID_AT = N_EOS * 3 // 4
BROKER_DOWN_S = 2
EOS_TXN_TIMEOUT_MS = 10000


# ------------------------------------------------------------------ Java processes (by PID)

class Java:
    def __init__(self, bootstrap, logdir):
        self.cp = os.environ.get("SLUICE_TXN_CLASSPATH")
        if not self.cp:
            sys.exit("SLUICE_TXN_CLASSPATH is not set (run through compat-tests/transactions/run.sh)")
        self.bs = bootstrap
        self.logdir = logdir
        self.procs = []
        self.n = 0

    def argv(self, cmd, args):
        return ["java", *JAVA_OPTS, "-cp", self.cp, "TxnClient", "--bootstrap-server", self.bs, cmd, *map(str, args)]

    def log_path(self, name):
        self.n += 1
        return os.path.join(self.logdir, f"txnclient-{self.n:02d}-{name}.log")

    def run(self, cmd, *args, timeout=60):
        """Runs one command to completion; returns its stdout lines. Fails on a non-zero exit or
        after `timeout` s (the JVM is then killed by PID)."""
        log = self.log_path(cmd)
        with open(log, "ab") as err:
            p = subprocess.Popen(self.argv(cmd, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            try:
                out, _ = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                out, _ = p.communicate()
                fail(f"TxnClient {cmd} did not finish within {timeout} s; last lines: "
                     f"{' | '.join(out.decode('utf-8', 'replace').splitlines()[-4:])} (stderr: {log})")
        lines = out.decode("utf-8", "replace").splitlines()
        if p.returncode != 0:
            errs = [ln[6:] for ln in lines if ln.startswith("ERROR ")]
            why = errs[-1] if errs else " | ".join(lines[-4:]) or "(no output)"
            fail(f"TxnClient {cmd} exited with {p.returncode}: {why} (stderr: {log})")
        return lines

    def run_checks(self, s, prefix, cmd, *args, timeout=90):
        """Runs a self-checking scenario: its PASS/FAIL/# lines are the suite's."""
        log = self.log_path(cmd)
        t0 = time.monotonic()
        with open(log, "ab") as err:
            p = subprocess.Popen(self.argv(cmd, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            seen_fail = False
            timer = threading.Timer(timeout, lambda: p.poll() is None and os.kill(p.pid, signal.SIGKILL))
            timer.start()
            try:
                for raw in p.stdout:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    if line.startswith("FAIL "):
                        s.failures += 1
                        seen_fail = True
                        print(line, flush=True)
                    elif line.startswith(("PASS ", "#")):
                        print(line, flush=True)
                    elif line.startswith("ERROR "):
                        print(f"# {cmd}: {line}", flush=True)
                rc = p.wait()
            finally:
                timer.cancel()
        if rc != 0 and not seen_fail:
            s.failures += 1
            how = f"killed after {timeout} s" if time.monotonic() - t0 >= timeout else f"exited with {rc}"
            print(f"FAIL {prefix}.scenario: TxnClient {cmd} {how} without a FAIL line (stderr: {log})", flush=True)

    def start(self, name, cmd, *args):
        p = Proc(name, self.argv(cmd, args), self.log_path(name))
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            if p.alive():
                p.kill9()


def parse_ends(lines, tag="END"):
    """{partition: offset} from "END p o" lines."""
    out = {}
    for ln in lines:
        f = ln.split()
        if len(f) == 3 and f[0] == tag:
            out[int(f[1])] = int(f[2])
    return out


def parse_offsets(lines):
    """(read_committed ends, read_uncommitted ends, committed) from `offsets` output."""
    rc, ru, com = {}, {}, {}
    for ln in lines:
        f = ln.split()
        if f[:2] == ["END", "read_committed"]:
            rc[int(f[2])] = int(f[3])
        elif f[:2] == ["END", "read_uncommitted"]:
            ru[int(f[2])] = int(f[3])
        elif f[0] == "COMMITTED":
            com[int(f[1])] = int(f[2])
    return rc, ru, com


def parse_records(lines):
    """{partition: [(offset, key, value)]} from `read` output."""
    out = {}
    for ln in lines:
        if ln.startswith("R "):
            _, p, off, key, value = ln.split(" ", 4)
            out.setdefault(int(p), []).append((int(off), key, value))
    return out


def parse_open(lines):
    """{partition: (first, last)} from open-txn's "OPEN p first last" lines."""
    out = {}
    for ln in lines:
        f = ln.split()
        if len(f) == 4 and f[0] == "OPEN":
            out[int(f[1])] = (int(f[2]), int(f[3]))
    return out


def field(line, name):
    m = re.search(rf"\b{name}=(-?\d+)", line)
    return int(m.group(1)) if m else None


def seq(prefix, count, partitions, p):
    return [f"{prefix}{i}" for i in range(p, count, partitions)]


def expect_values(what, recs, partitions, want):
    for p in range(partitions):
        got = [v for (_o, _k, v) in recs.get(p, [])]
        w = want.get(p, [])
        if got != w:
            i = 0
            while i < len(got) and i < len(w) and got[i] == w[i]:
                i += 1
            fail(f"{what} partition {p}: {len(got)} records, want {len(w)}; first difference at #{i}: "
                 f"got {got[i] if i < len(got) else '(end)'}, want {w[i] if i < len(w) else '(end)'}")


# ------------------------------------------------------------------ the suite

class Ctx:
    def __init__(self, broker, java):
        self.broker, self.java = broker, java
        self.tmp = tempfile.mkdtemp(prefix="txn-", dir=os.path.dirname(os.environ["SLUICE_BROKER_LOG"]))
        self.listed_before = {}  # transactional id -> (producer id, state), before the restarts

    def restart_kill9(self):
        t0 = time.monotonic()
        self.broker.kill9()
        self.broker.start()
        return time.monotonic() - t0


def eos(s, ctx):
    java = ctx.java
    common = ["--in", "eos-in", "--out", "eos-out", "--group", EOS_GROUP, "--txn-id", EOS_TXN,
              "--timeout-ms", EOS_TXN_TIMEOUT_MS, "--expect", N_EOS, "--partitions", EOS_PARTITIONS]
    release = os.path.join(ctx.tmp, "eos-release")
    st = {"held_a": 0, "loops": []}

    def setup():
        java.run("create-topic", "--topic", "eos-in", "--partitions", EOS_PARTITIONS)
        java.run("create-topic", "--topic", "eos-out", "--partitions", EOS_PARTITIONS)
        ends = parse_ends(java.run("produce-seq", "--topic", "eos-in", "--partitions", EOS_PARTITIONS, "--count", N_EOS))
        want = {p: len(range(p, N_EOS, EOS_PARTITIONS)) for p in range(EOS_PARTITIONS)}
        if ends != want:
            fail(f"input end offsets {ends}, want {want}")
        st["input_ends"] = ends

    ok, _ = s.check("eos.produce-input", setup)
    if not ok:
        return

    def start_loop(name, *extra):
        p = java.start(name, "eos-loop", *common, *extra)
        st["loops"].append(p)
        return p

    def kill_loop():
        p1 = start_loop("eos-loop-1", "--hold-at", KILL_LOOP_AT, "--release-file", release)
        _, line = p1.wait_line(lambda ln: ln.startswith("HOLDING"), 90, f"HOLDING (a transaction open at >= {KILL_LOOP_AT})")
        st["held_a"], t1 = field(line, "sent"), field(line, "total")
        inits = [ln for ln in p1.snapshot() if ln.startswith(("INIT", "ABORT", "COMMIT-RETRY"))]
        p1.kill9()
        print(f"# loop 1 killed -9 holding an open transaction of {st['held_a']} records; {t1} inputs committed "
              f"({'; '.join(inits)})", flush=True)
        p2 = start_loop("eos-loop-2", "--hold-at", KILL_BROKER_AT, "--release-file", release,
                        "--pause-after-hold-ms", 100)
        st["p2"] = p2
        _, init = p2.wait_line(lambda ln: ln.startswith("INIT"), 40, "INIT (initTransactions fencing loop 1)")
        _, asg = p2.wait_line(lambda ln: ln.startswith("ASSIGNED parts=6"), 60, "an assignment of all 6 partitions")
        print(f"# loop 2: {init}; {asg}", flush=True)
        if field(asg, "total") != t1:
            fail(f"loop 2 resumed at {field(asg, 'total')} committed inputs (OffsetFetch), loop 1 had committed {t1}: "
                 "the killed loop's open transaction's offsets must not count")
        p2.wait_line(lambda ln: ln.startswith("PROGRESS") and field(ln, "total") > t1, 60, "a commit after resuming")

    ok_kill, _ = s.check("eos.kill9-loop-fenced-and-resumed", kill_loop)

    def broker_restart_holding():
        p2 = st.get("p2")
        if p2 is None or not p2.alive():
            fail("no live loop 2 to carry through a broker restart (see the check before)")
        _, line = p2.wait_line(lambda ln: ln.startswith("HOLDING"), 90, f"HOLDING (an open transaction at >= {KILL_BROKER_AT})")
        held_b, t2 = field(line, "sent"), field(line, "total")
        t0 = time.monotonic()
        ctx.broker.kill9()
        ctx.broker.start()
        open(release, "w").close()
        window = time.monotonic() - t0
        st["window"] = window
        print(f"# broker killed -9 and restarted while loop 2 held an open transaction of {held_b} records at "
              f"{t2} committed; released {window:.1f} s after the kill", flush=True)
        rel, _ = p2.wait_line(lambda ln: ln == "RELEASED", 10, "RELEASED")
        i, first = p2.wait_line(lambda ln: not ln.startswith("#"), 60, "the held transaction's outcome", start=rel + 1)
        print(f"# loop 2 after the restart: {' | '.join(p2.snapshot()[rel + 1:i + 3])}", flush=True)
        st["held_committed"] = first.startswith("PROGRESS") and field(first, "total") == t2 + held_b
        st["held_outcome"] = first

    ok_restart, _ = s.check("eos.broker-kill9-holding-open-txn", broker_restart_holding)

    def held_committed():
        if not ok_restart:
            fail("the restart check failed")
        if st["window"] >= EOS_TXN_TIMEOUT_MS / 1000 * 0.7:
            print(f"# restart window {st['window']:.1f} s is close to the transaction timeout: not asserted", flush=True)
            return
        if not st["held_committed"]:
            fail(f"the transaction held open across the restart ({st['window']:.1f} s, transaction.timeout.ms "
                 f"{EOS_TXN_TIMEOUT_MS}) did not commit after it: {st['held_outcome']}")

    s.check("eos.open-txn-commits-after-broker-restart", held_committed)

    def broker_restart_mid_stream():
        p2 = st.get("p2")
        if p2 is None or not p2.alive():
            fail("no live loop 2 (see the checks before)")
        i, line = p2.wait_line(lambda ln: ln.startswith("PROGRESS") and field(ln, "total") >= KILL_BROKER_MID_AT, 60,
                               f"PROGRESS past {KILL_BROKER_MID_AT}")
        ctx.broker.kill9()
        time.sleep(BROKER_DOWN_S)
        ctx.broker.start()
        print(f"# broker killed -9 mid-stream (loop 2 had just printed: {line}), down {BROKER_DOWN_S} s, restarted",
              flush=True)
        rc = p2.wait_exit(120)
        lines = p2.snapshot()
        notes = [ln for ln in lines[i + 1:] if not ln.startswith("PROGRESS")]
        print(f"# loop 2 after the mid-stream restart: {' | '.join(notes[:8]) or 'only PROGRESS lines'}", flush=True)
        if rc is None:
            p2.kill9()
            fail(f"loop 2 not done 120 s after the broker restart; last lines: {p2.tail()}")
        if rc != 0:
            print(f"# loop 2 exited with {rc} ({p2.tail(2)}); a new loop takes over", flush=True)
            p3 = start_loop("eos-loop-3")
            if p3.wait_exit(120) != 0:
                p3.kill9()
                fail(f"loop 2 died after the broker restart ({p2.tail(2)}) and loop 3 did not finish: {p3.tail()}")

    ok_mid, _ = s.check("eos.broker-kill9-mid-stream", broker_restart_mid_stream)

    if not (ok_kill and ok_restart and ok_mid) and not any(ln.startswith("DONE") for p in st["loops"] for ln in p.snapshot()):
        # Finish the work anyway, so the checks below say what a failure left behind.
        for p in st["loops"]:
            p.kill9()
        p = start_loop("eos-loop-finish")
        if p.wait_exit(120) != 0:
            p.kill9()
            print(f"# the finishing loop did not finish: {p.tail()}", flush=True)

    committed_vals = {}

    def exactly_once():
        lines = java.run("read", "--topic", "eos-out", "--isolation", "read_committed", timeout=90)
        recs = parse_records(lines)
        for p in range(EOS_PARTITIONS):
            rs = recs.get(p, [])
            want = list(range(p, N_EOS, EOS_PARTITIONS))
            if len(rs) != len(want) or any(v != f"out-{i}" or k != str(i) for (_o, k, v), i in zip(rs, want)):
                seen = {}
                for (_o, _k, v) in rs:
                    seen[v] = seen.get(v, 0) + 1
                dups = [v for v, c in seen.items() if c > 1]
                missing = [i for i in want if f"out-{i}" not in seen]
                order = next((j for j, ((_o, _k, v), i) in enumerate(zip(rs, want)) if v != f"out-{i}"), None)
                fail(f"eos-out partition {p} (read_committed): {len(rs)} records, want {len(want)}; "
                     f"{len(dups)} duplicated (first {dups[:3]}), {len(missing)} missing (first {missing[:3]}), "
                     f"first out-of-order position {order}")
            committed_vals[p] = len(rs)

    s.check("eos.exactly-once-read-committed", exactly_once)

    def uncommitted():
        recs = parse_records(java.run("read", "--topic", "eos-out", "--isolation", "read_uncommitted", timeout=90))
        total = sum(len(v) for v in recs.values())
        vals = {v for rs in recs.values() for (_o, _k, v) in rs}
        missing = [i for i in range(N_EOS) if f"out-{i}" not in vals]
        print(f"# eos-out: {total} records to read_uncommitted, {N_EOS} committed; loop 1's killed transaction had "
              f"{st['held_a']}", flush=True)
        if missing:
            fail(f"read_uncommitted lacks {len(missing)} committed outputs (first {missing[:3]})")
        if total < N_EOS + st["held_a"]:
            fail(f"read_uncommitted sees {total} records, want >= {N_EOS} committed + {st['held_a']} of loop 1's aborted "
                 "transaction (flushed before the kill)")

    s.check("eos.read-uncommitted-has-aborted", uncommitted)

    def group_offsets():
        rc, ru, com = parse_offsets(java.run("offsets", "--topic", "eos-in", "--group", EOS_GROUP))
        want = st["input_ends"]
        if com != want:
            fail(f"{EOS_GROUP} committed offsets {com}, want the input end offsets {want}")
        if sum(com.values()) != N_EOS:
            fail(f"committed offsets sum to {sum(com.values())}, want {N_EOS}")

    s.check("eos.group-committed-offsets", group_offsets)


def listing(ctx):
    out = {}
    for ln in ctx.java.run("list-txns"):
        f = ln.split()
        if len(f) == 4 and f[0] == "TXN":
            out[f[1]] = (int(f[2]), f[3])
    return out


def broker_up(ctx):
    p = ctx.broker.proc
    return p is not None and p.poll() is None


def restart_open_txn(s, ctx):
    java = ctx.java
    topic, parts = "restart-t", 3
    rel_b = os.path.join(ctx.tmp, "restart-release-b")
    st = {}

    def setup():
        # Before the restart: what the admin API lists (to compare after it).
        try:
            ctx.listed_before.update(listing(ctx))
        except compat.CheckFailed as e:
            print(f"# listTransactions before the restart failed (restart.transactions-still-listed will too): {e}",
                  flush=True)
        java.run("create-topic", "--topic", topic, "--partitions", parts)
        pa = java.start("open-a", "open-txn", "--txn-id", "restart-txn", "--topic", topic, "--count", 30, "--prefix", "open-",
                        "--timeout-ms", 60000)
        st["pa"] = pa
        pa.wait_line(lambda ln: ln == "HOLDING", 40, "HOLDING (transaction A open)")
        pb = java.start("open-b", "open-txn", "--txn-id", "restart-kept-txn", "--topic", topic, "--count", 30, "--prefix",
                        "kept-", "--timeout-ms", 60000, "--release-file", rel_b)
        st["pb"] = pb
        pb.wait_line(lambda ln: ln == "HOLDING", 40, "HOLDING (transaction B open)")
        st["a"], st["b"] = parse_open(pa.snapshot()), parse_open(pb.snapshot())
        rc, ru, _ = parse_offsets(java.run("offsets", "--topic", topic))
        for p in range(parts):
            if rc[p] != st["a"][p][0] or ru[p] != st["b"][p][1] + 1:
                fail(f"partition {p} before the restart: read_committed end {rc[p]}, read_uncommitted end {ru[p]}; want "
                     f"A's first offset {st['a'][p][0]} and B's last + 1 = {st['b'][p][1] + 1}")

    ok, _ = s.check("restart.two-open-transactions", setup)
    if not ok:
        return

    def lso_check(when):
        rc, ru, _ = parse_offsets(java.run("offsets", "--topic", topic))
        for p in range(parts):
            if rc[p] != st["a"][p][0]:
                fail(f"partition {p} {when}: read_committed end offset (LSO) {rc[p]}, want {st['a'][p][0]}, the "
                     "first offset of the oldest transaction still open")
            if ru[p] != st["b"][p][1] + 1:
                fail(f"partition {p} {when}: read_uncommitted end offset {ru[p]}, want {st['b'][p][1] + 1}")

    def sigterm_restart():
        rc = ctx.broker.stop()
        if rc != 0:
            fail(f"broker exit status {rc} after SIGTERM (want 0, a clean shutdown)")
        ctx.broker.start()
        print("# broker stopped by SIGTERM and restarted with transactions A and B open", flush=True)
        lso_check("after a clean restart")

    s.check("restart.lso-after-sigterm-restart", sigterm_restart)
    if not broker_up(ctx):
        return

    def kill9_restart():
        took = ctx.restart_kill9()
        st["pa"].kill9()  # A's producer is gone for good; a new instance of its id comes later
        print(f"# broker killed -9 and restarted in {took:.1f} s with transactions A and B still open; A's JVM killed -9",
              flush=True)
        lso_check("after a kill -9 restart")

    s.check("restart.lso-after-kill9-restart", kill9_restart)
    if not broker_up(ctx):
        return

    def b_commits():
        open(rel_b, "w").close()
        pb = st["pb"]
        _, line = pb.wait_line(lambda ln: ln.startswith(("COMMITTED", "COMMIT-FAILED")), 40, "the commit's outcome")
        pb.wait_exit(10)
        if not line.startswith("COMMITTED"):
            fail(f"B's commitTransaction after the restart: {line}")
        rc, _, _ = parse_offsets(java.run("offsets", "--topic", topic))
        for p in range(parts):
            if rc[p] != st["a"][p][0]:
                fail(f"partition {p}: after B committed, read_committed end offset {rc[p]}, want {st['a'][p][0]} (A, older, "
                     "is still open)")

    s.check("restart.open-txn-commits-after-restart", b_commits)

    def new_instance():
        lines = java.run("txn-produce", "--txn-id", "restart-txn", "--topic", topic, "--count", 30, "--prefix", "after-",
                         timeout=60)
        print(f"# new instance of restart-txn: {' | '.join(ln for ln in lines if ln.startswith('INIT'))}", flush=True)

    s.check("restart.new-instance-inits-and-commits", new_instance)

    def read_committed():
        recs = parse_records(java.run("read", "--topic", topic, "--isolation", "read_committed"))
        want = {p: seq("kept-", 30, parts, p) + seq("after-", 30, parts, p) for p in range(parts)}
        expect_values("restart-t read_committed", recs, parts, want)

    s.check("restart.read-committed", read_committed)

    def read_uncommitted():
        recs = parse_records(java.run("read", "--topic", topic, "--isolation", "read_uncommitted"))
        want = {p: seq("open-", 30, parts, p) + seq("kept-", 30, parts, p) + seq("after-", 30, parts, p)
                for p in range(parts)}
        expect_values("restart-t read_uncommitted", recs, parts, want)
        rc, ru, _ = parse_offsets(java.run("offsets", "--topic", topic))
        if rc != ru:
            fail(f"end offsets read_committed {rc} != read_uncommitted {ru} with no transaction open")

    s.check("restart.read-uncommitted-and-lso", read_uncommitted)

    def abort_topic_after_restart():
        recs = parse_records(java.run("read", "--topic", "abort-t", "--isolation", "read_committed"))
        want = {p: seq("c1-", 100, 3, p) + seq("c2-", 100, 3, p) + seq("open-", 30, 3, p) for p in range(3)}
        expect_values("abort-t read_committed after the restarts", recs, 3, want)
        recs = parse_records(java.run("read", "--topic", "eos-out", "--isolation", "read_committed", timeout=90))
        n = sum(len(v) for v in recs.values())
        if n != N_EOS:
            fail(f"eos-out read_committed has {n} records after the restarts, want {N_EOS}")

    s.check("restart.aborted-stay-invisible", abort_topic_after_restart)

    def still_listed():
        if not ctx.listed_before:
            fail("nothing was listed before the restarts to compare with")
        now = listing(ctx)
        for tid in ("abort-txn", "fence-txn", "timeout-txn", "admin-txn", EOS_TXN):
            before = ctx.listed_before.get(tid)
            if before is None:
                continue
            if tid not in now:
                fail(f"{tid} no longer listed after the restarts (listed: {sorted(now)})")
            if now[tid] != before:
                fail(f"{tid}: listed as (producer id, state) {now[tid]} after the restarts, {before} before")
        for tid, want in (("restart-txn", "COMPLETE_COMMIT"), ("restart-kept-txn", "COMPLETE_COMMIT")):
            if now.get(tid, (None, None))[1] != want:
                fail(f"{tid}: listed as {now.get(tid)}, want state {want}")

    s.check("restart.transactions-still-listed", still_listed)


def main():
    s = compat.Suite("transactions")
    port = int(os.environ["SLUICE_PORT"])
    bs = os.environ.get("SLUICE_BOOTSTRAP") or f"127.0.0.1:{port}"
    overrides = ["group.initial.rebalance.delay.ms=0"] + os.environ.get("SLUICE_TXN_BROKER_OVERRIDES", "").split()
    broker = Broker("transactions", overrides)
    java = Java(bs, os.path.dirname(os.environ["SLUICE_BROKER_LOG"]))
    ctx = Ctx(broker, java)
    t0 = time.monotonic()
    try:
        broker.start()
        print(f"# kafka-clients 4.3.0 (java/TxnClient.java) against {bs}; Java logs in {java.logdir}", flush=True)
        java.run_checks(s, "abort", "abort-scenario", timeout=90)
        java.run_checks(s, "fence", "fence-scenario", timeout=90)
        java.run_checks(s, "timeout", "timeout-scenario", timeout=90)
        eos(s, ctx)
        java.run_checks(s, "admin", "admin-scenario", "--expect",
                        f"{EOS_TXN}=COMPLETE_COMMIT,fence-txn=COMPLETE_COMMIT,abort-txn=COMPLETE_COMMIT,"
                        "timeout-txn=COMPLETE_COMMIT", timeout=90)
        restart_open_txn(s, ctx)
    finally:
        java.kill_all()
        rc = broker.stop()
        print(f"# broker stop: {rc}; suite took {time.monotonic() - t0:.0f} s", flush=True)
    s.finish()


if __name__ == "__main__":
    main()
