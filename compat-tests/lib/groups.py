"""Consumer-group scenarios shared by the confluent-kafka and kafka-python group suites.

A suite supplies a client adapter (see `Client` below); every scenario here runs each consumer in
its own thread through that adapter, so the scenario logic and its expectations are the same for
both clients. Messages: index i goes to partition i % partitions with key "gk-i" and value "gv-i";
the producer is idempotent, so message i sits at offset i // partitions of its partition and every
consumed record can be checked against its (partition, offset).

Each scenario uses its own topic and group names (passed in by the suite) and raises CheckFailed
(compat.fail) with the reason; waits are bounded polls on conditions, never fixed sleeps, except
where a check is that nothing happens during a window (static membership).
"""

import threading
import time
from collections import Counter

from compat import CheckFailed, fail

PARTITIONS = 6
# Consumer settings the adapters apply (Kafka's defaults are 45 s / 3 s; these make rebalances after
# a leave finish in about a second instead of three, and stay above group.min.session.timeout.ms).
SESSION_TIMEOUT_MS = 10000
HEARTBEAT_INTERVAL_MS = 1000


class Client:
    """What a suite provides (duck-typed; this class only documents it).

    name: short client name for client ids.
    create_topic(topic, partitions): through the client's admin API, waiting until it is usable.
    produce(topic, n, partitions): idempotent producer; message i (make_kv(i)) to partition
        i % partitions, in index order; every message acknowledged or raise.
    consumer(group, topic, client_id, listener, instance_id=None, auto_commit=True): a subscribed
        consumer group member (auto.offset.reset earliest), created and used in the calling
        thread only. listener.on_assign(parts) / on_revoke(parts) / on_lost(parts) take lists of
        partition numbers and are called from inside handle.poll (or close). The handle has:
          poll(timeout_s, max_records) -> [(partition, offset, key, value)]
          commit({partition: offset})  synchronous; raises on any error
          close()
          commit_in_callbacks: True if commit() may be called from inside on_revoke (librdkafka
            serves callbacks in the polling thread; kafka-python 3 runs listeners on its I/O loop)
    committed(group, topic, partitions) -> {partition: offset or None}  (a consumer's committed())
    group_offsets(group, topic) -> {partition: offset}  (the admin API's committed offsets)
    """


def make_kv(i):
    return f"gk-{i}".encode(), f"gv-{i}".encode()


def index_of(p, o, key, value, partitions):
    """The message index a record carries, after checking it is where that index was produced."""
    try:
        idx = int(bytes(value).decode()[3:])
    except (TypeError, ValueError):
        fail(f"record {p}/{o}: value {value!r} is not a gv-N value")
    k, v = make_kv(idx)
    if bytes(key or b"") != k or bytes(value) != v:
        fail(f"record {p}/{o}: key {key!r} / value {value!r} do not match")
    if idx % partitions != p or idx // partitions != o:
        fail(f"record {p}/{o} carries message {idx}, produced to {idx % partitions}/{idx // partitions}")
    return idx


class Member(threading.Thread):
    """One consumer group member in its own thread, recording what it consumed and was assigned.

    manual_commit: enable.auto.commit off; after every polled batch the batch's offsets are
    committed synchronously, and on revoke whatever was consumed but not yet committed is.
    abandon_after: with manual_commit, once this many records are consumed and something was
    committed, consume one more non-empty batch, do not commit it, and close (a crash-like stop).
    stop_after: once this many records are consumed (and, with manual_commit, committed), close.
    """

    def __init__(self, client, name, group, topic, *, instance_id=None, manual_commit=False,
                 abandon_after=None, stop_after=None, poll_max=200, partitions=PARTITIONS):
        super().__init__(name=name, daemon=True)
        self.client, self.group, self.topic = client, group, topic
        self.instance_id, self.manual_commit = instance_id, manual_commit
        self.abandon_after, self.poll_max, self.partitions = abandon_after, poll_max, partitions
        self.stop_after = stop_after
        self.client_id = f"compat-{client.name}-{name}"
        self.lock = threading.Lock()
        self.records = []        # (partition, offset, index) in consumption order
        self.assigned = set()
        self.events = []         # (monotonic time, "assign"|"revoke"|"lost", sorted partitions)
        self.commits = {}        # partition -> last successfully committed offset
        self.pending = {}        # partition -> offset to commit (consumed, not committed yet)
        self.uncommitted = []    # the abandoned batch: (partition, offset)
        self.commit_errors = []
        self.error = None
        self.abandoning = False
        self.started_evt = threading.Event()
        self.closed_evt = threading.Event()
        self.stop_evt = threading.Event()
        self.handle = None

    # ---- listener (called from inside poll/close, in this thread)
    def on_assign(self, parts):
        with self.lock:
            self.assigned |= set(parts)
            self.events.append((time.monotonic(), "assign", sorted(parts)))

    def on_revoke(self, parts):
        if getattr(self.handle, "commit_in_callbacks", False):
            self._commit_pending(set(parts))
        with self.lock:
            self.assigned -= set(parts)
            self.events.append((time.monotonic(), "revoke", sorted(parts)))

    def on_lost(self, parts):
        with self.lock:
            self.assigned -= set(parts)
            for p in parts:
                self.pending.pop(p, None)
            self.events.append((time.monotonic(), "lost", sorted(parts)))

    # ---- consumer loop
    def _commit_pending(self, only=None):
        if not self.manual_commit or self.abandoning or self.handle is None:
            return
        with self.lock:
            offs = {p: o for p, o in self.pending.items() if only is None or p in only}
        if not offs:
            return
        try:
            self.handle.commit(offs)
        except Exception as e:  # noqa: BLE001 - recorded; the scenario decides
            with self.lock:
                self.commit_errors.append(f"commit {offs}: {e}")
            return
        with self.lock:
            self.commits.update(offs)
            for p, o in offs.items():
                if self.pending.get(p) == o:
                    del self.pending[p]

    def _take(self, batch):
        with self.lock:
            for p, o, k, v in batch:
                self.records.append((p, o, index_of(p, o, k, v, self.partitions)))
                if self.manual_commit:
                    self.pending[p] = max(self.pending.get(p, 0), o + 1)

    def run(self):
        try:
            self.handle = self.client.consumer(self.group, self.topic, self.client_id, self,
                                               instance_id=self.instance_id,
                                               auto_commit=not self.manual_commit)
            self.started_evt.set()
            while not self.stop_evt.is_set():
                batch = self.handle.poll(0.2, self.poll_max)
                if batch:
                    self._take(batch)
                    self._commit_pending()
                if self.stop_after is not None and len(self.records) >= self.stop_after:
                    break
                if (self.abandon_after is not None and len(self.records) >= self.abandon_after
                        and self.commits):
                    self.abandoning = True
                    end = time.monotonic() + 20
                    while time.monotonic() < end:
                        batch = self.handle.poll(0.2, self.poll_max)
                        if batch:
                            self._take(batch)
                            self.uncommitted = [(p, o) for p, o, _, _ in batch]
                            break
                    break
        except CheckFailed as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001
            self.error = f"{type(e).__name__}: {e}"
        finally:
            self.started_evt.set()
            if self.handle is not None:
                try:
                    self.handle.close()
                except Exception as e:  # noqa: BLE001
                    self.error = self.error or f"close: {type(e).__name__}: {e}"
            self.closed_evt.set()

    # ---- for the scenario (main thread)
    def stop(self, timeout=30):
        self.stop_evt.set()
        self.join(timeout)
        if self.is_alive():
            fail(f"{self.name} did not close within {timeout} s")

    def snapshot(self):
        with self.lock:
            return set(self.assigned), list(self.records), list(self.events)

    def parts(self):
        with self.lock:
            return set(self.assigned)

    def count(self):
        with self.lock:
            return len(self.records)

    def describe(self):
        with self.lock:
            return (f"{self.name}: assigned {sorted(self.assigned)}, {len(self.records)} records, "
                    f"{sum(1 for e in self.events if e[1] == 'assign')} assignments"
                    + (f", error {self.error}" if self.error else ""))


def wait_until(cond, seconds, what, members=()):
    """Poll cond() every 50 ms for up to `seconds`; fail naming `what` and each member's state."""
    end = time.monotonic() + seconds
    while True:
        for m in members:
            if m.error:
                fail(f"{m.name} failed while waiting for {what}: {m.error}")
        if cond():
            return
        if time.monotonic() >= end:
            fail(f"{what}: not reached within {seconds} s; " + "; ".join(m.describe() for m in members))
        time.sleep(0.05)


def last_event(members):
    t = 0.0
    for m in members:
        evs = m.snapshot()[2]
        if evs:
            t = max(t, evs[-1][0])
    return t


def wait_settled(members, cond, seconds, what, quiet_s=2.5):
    """cond() holds and no member saw a rebalance callback for quiet_s (a rebalance started right
    after the first assignment, e.g. by a leader that rejoins, reaches every member within one
    heartbeat interval)."""
    wait_until(lambda: cond() and time.monotonic() - last_event(members) >= quiet_s, seconds, what, members)


def stop_all(members):
    for m in members:
        m.stop_evt.set()
    errors = []
    for m in members:
        if m.ident is None:  # never started
            continue
        if m.is_alive() or not m.closed_evt.is_set():
            m.join(30)
            if m.is_alive():
                errors.append(f"{m.name} did not close within 30 s")
    return errors


def start_all(members):
    for m in members:
        m.start()


def exclusive_cover(sets, partitions=PARTITIONS):
    """Every partition in exactly one of `sets`."""
    c = Counter(p for s in sets for p in s)
    return sorted(c) == list(range(partitions)) and all(v == 1 for v in c.values())


def unique_indexes(members):
    s = set()
    for m in members:
        with m.lock:
            s.update(idx for _, _, idx in m.records)
    return s


def check_exactly_once(members, n, what="group"):
    seen = Counter()
    for m in members:
        seen.update(idx for _, _, idx in m.snapshot()[1])
    dups = sorted(i for i, c in seen.items() if c > 1)
    missing = n - sum(1 for i in seen if 0 <= i < n)
    if dups:
        fail(f"{what}: {len(dups)} messages delivered more than once (first: {dups[:5]})")
    if missing:
        gone = [i for i in range(n) if i not in seen][:5]
        fail(f"{what}: {missing} of {n} messages never delivered (first: {gone})")


def assignments_note(members):
    return ", ".join(f"{m.name}={sorted(m.parts())}" for m in members)


def guarded(members, body):
    """Run body(), always stopping members; a member error or close failure fails the check."""
    try:
        body()
    finally:
        errs = stop_all(members)
    errs += [f"{m.name}: {m.error}" for m in members if m.error]
    if errs:
        fail("; ".join(errs))


# ------------------------------------------------------------------ scenarios

def three_consumers(client, topic, group, n=30000):
    client.create_topic(topic, PARTITIONS)
    client.produce(topic, n, PARTITIONS)
    ms = [Member(client, f"c{i}", group, topic) for i in range(3)]
    start_all(ms)

    def body():
        wait_until(lambda: len(unique_indexes(ms)) >= n, 90, f"all {n} messages consumed", ms)
        wait_until(lambda: all(len(m.parts()) == 2 for m in ms) and exclusive_cover([m.parts() for m in ms]),
                   30, "3 members with 2 partitions each", ms)
        # Anything still in flight would show as a duplicate: let each member poll once more.
        counts = [m.count() for m in ms]
        time.sleep(0.5)
        check_exactly_once(ms, n)
        final = [m.parts() for m in ms]
        if not exclusive_cover(final):
            fail(f"final assignments {final} do not cover 0..5 exactly once")
        for m in ms:
            if len(m.parts()) != 2:
                fail(f"{m.name} ends with {sorted(m.parts())}, want 2 partitions")
            wrong = {p for p, _, _ in m.snapshot()[1]} - m.parts()
            gens = sum(1 for e in m.snapshot()[2] if e[1] == "assign")
            if wrong and gens == 1:
                fail(f"{m.name} consumed partitions {sorted(wrong)} it was never assigned")
        print(f"# three-consumers: {assignments_note(ms)}; records per member {counts}; assignments per member "
              f"{[sum(1 for e in m.snapshot()[2] if e[1] == 'assign') for m in ms]}", flush=True)

    guarded(ms, body)


def failover(client, topic, group, n=18000):
    client.create_topic(topic, PARTITIONS)
    client.produce(topic, n, PARTITIONS)
    victim = Member(client, "victim", group, topic, manual_commit=True, abandon_after=600)
    survivors = [Member(client, f"s{i}", group, topic, manual_commit=True) for i in range(2)]
    ms = [victim] + survivors
    start_all(ms)

    def body():
        wait_until(lambda: victim.closed_evt.is_set(), 60, "the victim consumed 600+ records and closed", ms)
        if victim.error:
            fail(f"victim: {victim.error}")
        vparts = {p for p, _ in victim.uncommitted} | {p for p, _, _ in victim.records}
        wait_until(lambda: len(unique_indexes(ms)) >= n, 90, f"all {n} messages consumed after the failover",
                   survivors)
        wait_until(lambda: exclusive_cover([m.parts() for m in survivors]), 30,
                   "the 2 survivors own all 6 partitions", survivors)
        time.sleep(0.5)
        errs = [e for m in ms for e in m.commit_errors]
        if errs:
            fail(f"synchronous commits failed: {errs[:3]}")
        # Union: every message at least once.
        allrecs = [(p, o) for m in ms for p, o, _ in m.snapshot()[1]]
        seen = Counter(allrecs)
        missing = n - len({(p, o) for p, o in seen})
        if missing:
            fail(f"{missing} of {n} messages never delivered")
        dups = {k: c for k, c in seen.items() if c > 1}
        bad = []
        for (p, o), c in sorted(dups.items()):
            floor = victim.commits.get(p, 0)
            if p not in vparts or o < floor:
                bad.append(f"{p}/{o} x{c} (victim's last commit on {p}: "
                           f"{victim.commits.get(p, 'none')})")
            elif c > 2:
                bad.append(f"{p}/{o} delivered {c} times")
        if bad:
            fail(f"duplicates below the stopped member's last commit: {bad[:5]}")
        unacked = set(victim.uncommitted)
        if not unacked:
            fail("the victim closed without an uncommitted batch (scenario did not run as intended)")
        if set(dups) != unacked:
            extra = sorted(set(dups) - unacked)[:5]
            lost = sorted(unacked - set(dups))[:5]
            fail(f"re-delivered {len(dups)} records, the victim left {len(unacked)} uncommitted "
                 f"(re-delivered but committed: {extra}; uncommitted but not re-delivered: {lost})")
        # Whoever took over each of the victim's partitions started at the victim's commit.
        for p in sorted({p for p, _ in victim.uncommitted}):
            firsts = []
            for m in survivors:
                offs = [o for q, o, _ in m.snapshot()[1] if q == p]
                if offs:
                    firsts.append(offs[0])
            if victim.commits.get(p) is not None and (not firsts or min(firsts) != victim.commits[p]):
                fail(f"partition {p}: survivors started at {firsts}, the victim committed {victim.commits[p]}")
        print(f"# failover: victim consumed {victim.count()} records ({len(unacked)} uncommitted) on "
              f"{sorted(vparts)}, last commits {dict(sorted(victim.commits.items()))}; survivors "
              f"{assignments_note(survivors)}; {len(dups)} re-delivered", flush=True)

    guarded(ms, body)


def fourth_joins(client, topic, group, n=1200):
    client.create_topic(topic, PARTITIONS)
    ms = [Member(client, f"c{i}", group, topic) for i in range(3)]
    start_all(ms)
    fourth = Member(client, "c3", group, topic)
    everyone = ms + [fourth]

    def body():
        wait_settled(ms, lambda: all(len(m.parts()) == 2 for m in ms) and exclusive_cover([m.parts() for m in ms]),
                     40, "3 stable members with 2 partitions each")
        before = assignments_note(ms)
        fourth.start()
        wait_until(lambda: len(fourth.parts()) >= 1 and exclusive_cover([m.parts() for m in everyone]),
                   30, "the 4th member owns a partition and all 6 are owned once among 4", everyone)
        after = [m.parts() for m in everyone]
        # Every member reads exactly its partitions: produce now, each message to its owner only.
        client.produce(topic, n, PARTITIONS)
        wait_until(lambda: len(unique_indexes(everyone)) >= n, 60, f"{n} messages consumed by the 4", everyone)
        time.sleep(0.3)
        check_exactly_once(everyone, n)
        if [m.parts() for m in everyone] != after:
            fail(f"assignment changed again while consuming: {after} -> {assignments_note(everyone)}")
        for m, parts in zip(everyone, after):
            got = {p for p, _, _ in m.snapshot()[1]}
            if got != parts:
                fail(f"{m.name} owns {sorted(parts)} but consumed from {sorted(got)}")
        print(f"# fourth-joins: before {before}; after {assignments_note(everyone)}", flush=True)

    guarded(everyone, body)


def two_groups(client, topic, groups, n=6000):
    client.create_topic(topic, PARTITIONS)
    client.produce(topic, n, PARTITIONS)
    by_group = {g: [Member(client, f"{g[-1]}{i}", g, topic) for i in range(2)] for g in groups}
    everyone = [m for ms in by_group.values() for m in ms]
    start_all(everyone)

    def body():
        for g, ms in by_group.items():
            wait_until(lambda ms=ms: len(unique_indexes(ms)) >= n, 90, f"group {g}: all {n} messages", everyone)
        time.sleep(0.3)
        for g, ms in by_group.items():
            check_exactly_once(ms, n, f"group {g}")
            if not exclusive_cover([m.parts() for m in ms]):
                fail(f"group {g}: assignments {assignments_note(ms)} do not cover 0..5 once")
        print("# two-groups: " + "; ".join(f"{g}: {assignments_note(ms)}" for g, ms in by_group.items()),
              flush=True)

    guarded(everyone, body)


def committed_offsets(client, topic, group, n=6000):
    client.create_topic(topic, PARTITIONS)
    client.produce(topic, n, PARTITIONS)
    first = Member(client, "first", group, topic, manual_commit=True, stop_after=n // 2 + n // 12,
                   poll_max=50)
    second = Member(client, "second", group, topic)
    ms = [first, second]

    def body():
        first.start()
        wait_until(lambda: first.closed_evt.is_set(), 60, f"first consumer read {first.stop_after}+ messages and closed",
                   [first])
        first.stop()
        if first.error or first.commit_errors:
            fail(f"first consumer: {first.error or first.commit_errors[:3]}")
        recs = first.snapshot()[1]
        consumed = {}
        for p, o, _ in recs:
            consumed[p] = max(consumed.get(p, 0), o + 1)
        if first.commits != consumed:
            fail(f"committed {first.commits}, consumed up to {consumed}")
        want = {p: first.commits.get(p) for p in range(PARTITIONS)}
        got = client.committed(group, topic, list(range(PARTITIONS)))
        if got != want:
            fail(f"committed() after close: {got}, want {want}")
        admin = client.group_offsets(group, topic)
        want_admin = {p: o for p, o in want.items() if o is not None}
        if admin != want_admin:
            fail(f"admin group offsets {admin}, want {want_admin}")
        second.start()
        wait_until(lambda: len(unique_indexes(ms)) >= n, 60, "second consumer read the rest", ms)
        time.sleep(0.3)
        check_exactly_once(ms, n, "first + second")
        for p in range(PARTITIONS):
            offs = [o for q, o, _ in second.snapshot()[1] if q == p]
            start = want[p] or 0
            if start < n // PARTITIONS and (not offs or offs[0] != start):
                fail(f"partition {p}: second consumer started at {offs[:1]}, committed {want[p]}")
        print(f"# committed-offsets: first consumer committed {dict(sorted(first.commits.items()))} and "
              f"closed; the second read {second.count()} records from there", flush=True)

    guarded(ms, body)


def static_membership(client, topic, group, n=600, quiet_s=5.0):
    client.create_topic(topic, PARTITIONS)
    client.produce(topic, n, PARTITIONS)
    ms = [Member(client, f"static{i}", group, topic, instance_id=f"{group}-inst-{i}") for i in range(3)]
    start_all(ms)
    extra = []

    def body():
        wait_settled(ms, lambda: all(len(m.parts()) == 2 for m in ms) and exclusive_cover([m.parts() for m in ms]),
                     40, "3 static members with 2 partitions each, settled")
        old = ms[0].parts()
        others = ms[1:]
        seen_events = [len(m.snapshot()[2]) for m in others]
        t_close = time.monotonic()
        ms[0].stop()
        again = Member(client, "static0-again", group, topic, instance_id=f"{group}-inst-0")
        extra.append(again)
        again.start()
        wait_until(lambda: len(again.parts()) > 0, SESSION_TIMEOUT_MS / 1000 * 2,
                   "the restarted static member gets an assignment", [again] + others)
        took = time.monotonic() - t_close
        if took * 1000 >= SESSION_TIMEOUT_MS:
            fail(f"restarted member assigned only after {took:.1f} s (session timeout "
                 f"{SESSION_TIMEOUT_MS} ms): the group rebalanced")
        # A rebalance, if the coordinator started one, reaches the others within a few heartbeats.
        end = time.monotonic() + quiet_s
        while time.monotonic() < end:
            for m, k in zip(others, seen_events):
                evs = m.snapshot()[2][k:]
                if evs:
                    fail(f"{m.name} got rebalance callbacks while the static member restarted: "
                         f"{[(e[1], e[2]) for e in evs]}")
            if again.error:
                fail(f"restarted member: {again.error}")
            time.sleep(0.05)
        if again.parts() != old:
            fail(f"restarted member got {sorted(again.parts())}, it had {sorted(old)}")
        print(f"# static-membership: {ms[0].name} had {sorted(old)}; restarted with the same "
              f"group.instance.id it got {sorted(again.parts())} after {took:.1f} s; others "
              f"{assignments_note(others)} untouched for {quiet_s:.0f} s", flush=True)

    try:
        guarded(ms, body)
    finally:
        errs = stop_all(extra)
        if errs:
            fail("; ".join(errs))


def admin_setup(client, topic, g_active, g_empty, n=600):
    """For the admin checks: g_empty has committed every offset (n / partitions each) and no members;
    g_active has 2 live members with 3 partitions each. Returns the active members (stop_all them)."""
    client.create_topic(topic, PARTITIONS)
    client.produce(topic, n, PARTITIONS)
    e = Member(client, "e0", g_empty, topic, manual_commit=True)
    e.start()
    try:
        wait_until(lambda: e.count() >= n, 60, f"{g_empty}: {n} messages consumed", [e])
    finally:
        errs = stop_all([e])
    if errs or e.error or e.commit_errors:
        fail(f"{g_empty}: {errs or e.error or e.commit_errors[:3]}")
    per = n // PARTITIONS
    if e.commits != {p: per for p in range(PARTITIONS)}:
        fail(f"{g_empty}: committed {e.commits}, want {per} on every partition")
    act = [Member(client, f"a{i}", g_active, topic) for i in range(2)]
    start_all(act)
    try:
        wait_until(lambda: all(len(m.parts()) == 3 for m in act) and exclusive_cover([m.parts() for m in act]),
                   30, f"{g_active}: 2 members with 3 partitions each", act)
    except CheckFailed:
        stop_all(act)
        raise
    return act
