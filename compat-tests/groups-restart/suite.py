"""Consumer groups across broker restarts: committed offsets must survive a clean stop (SIGTERM)
and a kill -9, deleted topics must take their offsets with them, and a live consumer must ride
out a restart by itself. confluent-kafka (librdkafka) subscribe() consumers, classic protocol.

This suite runs its own broker (run.sh gives it the binary, port, data dir and log file; see
lib/broker.py). Checks:
  clean-restart                 6 partitions, 30,000 messages; 3 consumers consume about half and
                                commit synchronously, close; SIGTERM; restart; 2 new consumers of
                                the same group resume exactly at the commits and finish: every
                                message consumed exactly once across both phases.
  group-listed-after-restart    right after that restart: ListGroups/DescribeGroups show the group
                                Empty, as before the stop, and OffsetFetch returns the commits.
  kill9-restart                 the same, but kill -9 after the commits were acknowledged while the
                                consumers keep polling (consuming past the commits); they die with
                                the broker (closed while it is down, session.timeout.ms 6000). After
                                the restart the commits are exactly the acknowledged ones, the dead
                                members expire, and 3 new consumers resume at the commits: nothing
                                lost, duplicates only after the last acknowledged commit.
  deleted-topic-offsets-gone    commit on two topics, delete one and recreate it: its offsets are
                                gone (a new consumer starts per auto.offset.reset=earliest), the
                                other topic's are kept; the same after a restart.
  live-consumer-across-restart  a consumer (auto commit) and a producer keep running while the
                                broker is restarted; the consumer gets every acknowledged message
                                and is again a Stable member committing offsets, within deadlines.

group.initial.rebalance.delay.ms stays at Kafka's 3000 on purpose: the three consumers of a phase
subscribe together and the delay lets them form the group in one rebalance, so all of them share
the work from the first message (with 0 the first member would take every partition and could
consume its half alone before the others join). It costs about 3 s per group formation.
"""

import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import (  # noqa: E402
    Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, Producer,
    TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

OP_TIMEOUT = 30
N_MESSAGES = int(os.environ.get("SLUICE_GROUPS_RESTART_MESSAGES", "30000"))
PARTITIONS = 6
# librdkafka debug contexts for the group consumers (e.g. "cgrp,protocol"), printed to stderr.
RDKAFKA_DEBUG = os.environ.get("SLUICE_RDKAFKA_DEBUG")
LIVE_RATE = 2000  # messages/s produced during live-consumer-across-restart
# kill9-restart's first consumers die with the broker; the restarted broker holds their (restored)
# membership until this session timeout (the broker's group.min.session.timeout.ms) expires.
KILL9_SESSION_TIMEOUT_MS = 6000
# Phase 1 consumers fetch little at a time, so the members read their partitions side by side (each
# partition is about half read when phase 1 stops) and a kill -9 leaves records unread.
PHASE1_CONF = {"queued.min.messages": 1000, "max.partition.fetch.bytes": 16384}


# ------------------------------------------------------------------ admin helpers

def admin(bs):
    return AdminClient({"bootstrap.servers": bs, "socket.timeout.ms": 15000, "client.id": "groups-restart-admin"})


def create_topic(a, topic, partitions):
    futs = a.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=OP_TIMEOUT)
    for t, f in futs.items():
        try:
            f.result(timeout=OP_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            fail(f"create_topics {t}: {e}")
    # Wait until the metadata shows every partition with a leader (a new consumer would otherwise
    # be assigned nothing for a moment).
    for _ in compat.deadline_loop(15):
        t = a.list_topics(topic, timeout=OP_TIMEOUT).topics.get(topic)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
    fail(f"{topic}: not in metadata with {partitions} partitions 15 s after creation")


def delete_topic(a, topic):
    for t, f in a.delete_topics([topic], operation_timeout=OP_TIMEOUT).items():
        try:
            f.result(timeout=OP_TIMEOUT)
        except Exception as e:  # noqa: BLE001
            fail(f"delete_topics {t}: {e}")
    for _ in compat.deadline_loop(15):
        if topic not in a.list_topics(timeout=OP_TIMEOUT).topics:
            return
    fail(f"{topic} still listed 15 s after deletion")


def committed_offsets(a, group):
    """{(topic, partition): offset} from OffsetFetch for every partition the group has offsets for
    (negative offsets, i.e. none, left out)."""
    futs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=OP_TIMEOUT)
    res = futs[group].result(timeout=OP_TIMEOUT)
    out = {}
    for tp in res.topic_partitions:
        if tp.error is not None:
            fail(f"OffsetFetch {group} {tp.topic}/{tp.partition}: {tp.error}")
        if tp.offset >= 0:
            out[(tp.topic, tp.partition)] = tp.offset
    return out


def describe_group(a, group):
    return a.describe_consumer_groups([group], request_timeout=OP_TIMEOUT)[group].result(timeout=OP_TIMEOUT)


def listed_group(a, group):
    res = a.list_consumer_groups(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    if res.errors:
        fail(f"list_consumer_groups errors: {res.errors}")
    for g in res.valid:
        if g.group_id == group:
            return g
    return None


def group_view(a, group):
    """What ListGroups and DescribeGroups say about a group, as one comparable tuple."""
    g = listed_group(a, group)
    if g is None:
        fail(f"list_consumer_groups does not list {group}")
    d = describe_group(a, group)
    return (g.state, g.is_simple_consumer_group, d.state, d.is_simple_consumer_group, len(d.members))


def fmt_offsets(offs):
    return ", ".join(f"{t}/{p}={o}" for (t, p), o in sorted(offs.items()))


# ------------------------------------------------------------------ producing

def value_for(tag, i):
    return f"{tag}-{i}".encode()


def produce(bs, topic, n, tag):
    """Produces n keyed messages, acks=all; returns {(partition, offset): value}."""
    p = Producer({"bootstrap.servers": bs, "client.id": "groups-restart-producer", "acks": "all",
                  "linger.ms": 5, "partitioner": "murmur2_random", "message.timeout.ms": 30000})
    acked, errors = {}, []

    def cb(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[(msg.partition(), msg.offset())] = msg.value()

    for i in range(n):
        while True:
            try:
                p.produce(topic, key=f"k{i}".encode(), value=value_for(tag, i), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    if left or errors or len(acked) != n:
        fail(f"produce {topic}: {len(acked)} of {n} acknowledged, {left} left, errors {errors[:3]}")
    return acked


def high_watermarks(acked):
    hw = {}
    for (p, off) in acked:
        hw[p] = max(hw.get(p, 0), off + 1)
    return hw


# ------------------------------------------------------------------ consuming in a group

class Ledger:
    """Every record the consumers of one check returned, and every commit acknowledged."""

    def __init__(self):
        self.records = []  # (phase, consumer name, topic, partition, offset, value)
        self.acked_commits = {}  # (topic, partition) -> last acknowledged committed offset
        self.errors = []

    def count(self, phase=None):
        return sum(1 for r in self.records if phase is None or r[0] == phase)


class GroupMember:
    """One subscribe() consumer without auto commit. It commits what it has returned (next offset
    per partition) synchronously: when asked, and in on_revoke before a rebalance takes partitions
    away, so a rebalance neither skips nor redelivers. Consumed by the caller's poll loop."""

    def __init__(self, bs, group, topics, name, ledger, phase, reset="earliest", extra=None):
        self.name, self.ledger, self.phase = name, ledger, phase
        self.processed = {}  # (topic, partition) -> next offset to commit
        self.assigned = set()
        self.commit_on_revoke = True
        self.c = Consumer({
            "bootstrap.servers": bs,
            "group.id": group,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": reset,
            "enable.partition.eof": False,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
            "log_level": 2,  # connection-refused noise while the broker is down is expected
        } | (extra or {}) | ({"debug": RDKAFKA_DEBUG} if RDKAFKA_DEBUG else {}), error_cb=self._error)
        self.c.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)

    def _error(self, err):
        if err.fatal():
            self.ledger.errors.append(f"{self.name}: fatal: {err}")

    def _on_assign(self, c, parts):
        self.assigned = {(tp.topic, tp.partition) for tp in parts}

    def _on_revoke(self, c, parts):
        keys = [(tp.topic, tp.partition) for tp in parts]
        if self.commit_on_revoke:
            try:
                self.commit([k for k in keys if k in self.processed])
            except Exception as e:  # noqa: BLE001 - recorded, the check fails on it
                self.ledger.errors.append(f"{self.name}: commit in on_revoke failed: {e}")
        for k in keys:
            self.processed.pop(k, None)
        self.assigned = set()

    def _on_lost(self, c, parts):
        # Lost partitions cannot be committed; what was returned after the last commit comes again.
        for tp in parts:
            self.processed.pop((tp.topic, tp.partition), None)
        self.assigned = set()

    def poll(self, timeout=0.05):
        """Consumes one batch; returns how many records it returned."""
        n = 0
        for m in self.c.consume(num_messages=500, timeout=timeout):
            err = m.error()
            if err is not None:
                self.ledger.errors.append(f"{self.name}: consumer error {err}")
                continue
            self.ledger.records.append((self.phase, self.name, m.topic(), m.partition(), m.offset(), m.value()))
            self.processed[(m.topic(), m.partition())] = m.offset() + 1
            n += 1
        return n

    def commit(self, keys=None):
        """Synchronous commit of what was returned (for `keys`, default all); records the acks."""
        keys = list(self.processed) if keys is None else keys
        if not keys:
            return
        tps = [TopicPartition(t, p, self.processed[(t, p)]) for (t, p) in keys]
        res = self.c.commit(offsets=tps, asynchronous=False)
        for tp in res:
            if tp.error is not None:
                raise KafkaException(tp.error)
            self.ledger.acked_commits[(tp.topic, tp.partition)] = tp.offset

    def close(self):
        self.c.close()


def check_no_errors(ledger):
    if ledger.errors:
        fail(f"{len(ledger.errors)} client error(s), first: {ledger.errors[0]}")


def poll_all(members, until, seconds, what):
    """Polls every member round-robin until `until()` holds; fails after `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for m in members:
            m.poll()
        if members and members[0].ledger.errors:
            check_no_errors(members[0].ledger)
        if until():
            return
    fail(f"{what}: not reached within {seconds} s")


def phase_offsets(ledger, phase, topic):
    """{partition: sorted offsets} the consumers returned in `phase`."""
    out = {}
    for (ph, _name, t, p, off, _v) in ledger.records:
        if ph == phase and t == topic:
            out.setdefault(p, []).append(off)
    return {p: sorted(v) for p, v in out.items()}


def verify_values(ledger, topic, acked):
    for (_ph, name, t, p, off, v) in ledger.records:
        if t == topic and acked.get((p, off)) != v:
            fail(f"{name} read {topic}/{p}@{off} = {compat.short(v)}, produced {compat.short(acked.get((p, off)))}")


def consumed_everything(ledger, topic, hw):
    seen = {(p, off) for (_ph, _n, t, p, off, _v) in ledger.records if t == topic}
    return all((p, off) in seen for p, h in hw.items() for off in range(h))


def run_phase1(bs, group, topic, ledger, n_members, target, extra=None):
    """n_members consumers join, consume until `target` records in total, commit synchronously.
    Returns the members (still open)."""
    conf = dict(PHASE1_CONF, **(extra or {}))
    members = [GroupMember(bs, group, [topic], f"{group}-p1-c{i}", ledger, 1, extra=conf) for i in range(n_members)]
    poll_all(members, lambda: ledger.count(1) >= target, 60, f"{target} records consumed by the group")
    for m in members:
        m.commit()
    check_no_errors(ledger)
    per_member = {m.name: sum(1 for r in ledger.records if r[1] == m.name) for m in members}
    print(f"# {group} phase 1: {ledger.count(1)} records, per consumer {per_member}, "
          f"acknowledged commits {fmt_offsets(ledger.acked_commits)}", flush=True)
    if sum(1 for v in per_member.values() if v) < 2:
        fail(f"only one consumer of {n_members} got records in phase 1: {per_member}")
    return members


def run_phase2(bs, group, topic, ledger, n_members, hw, start):
    """New consumers of the same group resume and read every partition p from start[p] to its high
    watermark (or fail after 60 s); commit; close.
    (auto.offset.reset=earliest: a partition phase 1 never read has no commit; a lost commit
    shows up as records read twice.)"""
    members = [GroupMember(bs, group, [topic], f"{group}-p2-c{i}", ledger, 2) for i in range(n_members)]
    try:
        def done():
            got = {(r[3], r[4]) for r in ledger.records if r[0] == 2 and r[2] == topic}
            return all((p, o) in got for p, h in hw.items() for o in range(start.get(p, 0), h))

        poll_all(members, done, 60, "every partition read from its committed offset to its end")
        # A moment more, so a redelivery after the last message would be seen too.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            for m in members:
                m.poll()
        for m in members:
            m.commit()
        check_no_errors(ledger)
    finally:
        for m in members:
            m.close()
    print(f"# {group} phase 2: {ledger.count(2)} records, final commits {fmt_offsets(ledger.acked_commits)}",
          flush=True)


def view_str(v):
    return f"listed state {v[0]} simple={v[1]}, described state {v[2]} simple={v[3]} members={v[4]}"


# ------------------------------------------------------------------ the checks

class Ctx:
    """The broker, and an AdminClient that is replaced after every restart.

    Why replaced: librdkafka 2.16 re-bootstraps when its only broker goes down and decommissions
    that broker's handle, but keeps it as the cached group coordinator; an admin call that needs
    the coordinator (DescribeGroups, OffsetFetch) then waits on the dead handle until it times
    out, and a later one can abort the process (rd_kafka_enq_once_del_source_return assertion).
    librdkafka issues #5511 and #4605; see FINDINGS.md. Consumers re-query their coordinator."""

    def __init__(self, bs, broker):
        self.bs, self.broker = bs, broker
        self.a = admin(bs)

    def started(self):
        self.a = admin(self.bs)

    def start(self):
        self.broker.start()
        self.started()

    def restart_sigterm(self):
        rc = self.broker.stop()
        if rc != 0:
            fail(f"broker exit status {rc} after SIGTERM (want 0, a clean shutdown)")
        self.start()


def clean_restart(s, ctx):
    topic, group = "gr-clean", "gr-clean-group"
    ledger = Ledger()
    state = {}

    def setup():
        create_topic(ctx.a, topic, PARTITIONS)
        state["acked"] = produce(ctx.bs, topic, N_MESSAGES, "clean")
        state["hw"] = high_watermarks(state["acked"])

    ok, _ = s.check("clean-restart.produce", setup)
    if not ok:
        return

    def phase1():
        members = run_phase1(ctx.bs, group, topic, ledger, 3, N_MESSAGES // 2)
        for m in members:
            m.close()
        check_no_errors(ledger)
        got = {k: v for k, v in committed_offsets(ctx.a, group).items() if k[0] == topic}
        if got != ledger.acked_commits:
            fail(f"before the restart OffsetFetch says {fmt_offsets(got)}, "
                 f"acknowledged {fmt_offsets(ledger.acked_commits)}")
        state["view"] = group_view(ctx.a, group)
        print(f"# {group} before the stop: {view_str(state['view'])}", flush=True)

    ok, _ = s.check("clean-restart.phase1-commit", phase1)
    if not ok:
        return
    ok, _ = s.check("clean-restart.sigterm-restart", ctx.restart_sigterm)
    if not ok:
        return

    def listed():
        view = None
        for _ in compat.deadline_loop(15):
            try:
                view = group_view(ctx.a, group)
                break
            except compat.CheckFailed:
                pass
        if view is None:
            view = group_view(ctx.a, group)  # fails with the reason
        print(f"# {group} after the restart: {view_str(view)}", flush=True)
        if view[0] != ConsumerGroupState.EMPTY or view[2] != ConsumerGroupState.EMPTY or view[4] != 0:
            fail(f"after the restart: {view_str(view)}; want Empty with no members")
        if view != state["view"]:
            fail(f"after the restart: {view_str(view)}; before the stop: {view_str(state['view'])}")
        got = {k: v for k, v in committed_offsets(ctx.a, group).items() if k[0] == topic}
        if got != ledger.acked_commits:
            fail(f"after the restart OffsetFetch says {fmt_offsets(got)}, committed before the stop "
                 f"{fmt_offsets(ledger.acked_commits)}")

    s.check("group-listed-after-restart", listed)

    def resume():
        committed = dict(ledger.acked_commits)
        run_phase2(ctx.bs, group, topic, ledger, 2, state["hw"], {p: o for (_t, p), o in committed.items()})
        verify_values(ledger, topic, state["acked"])
        p1, p2 = phase_offsets(ledger, 1, topic), phase_offsets(ledger, 2, topic)
        for p in range(PARTITIONS):
            c, h = committed.get((topic, p), 0), state["hw"].get(p, 0)
            if p1.get(p, []) != list(range(c)):
                fail(f"partition {p}: phase 1 read {summarize(p1.get(p, []))}, committed {c} (want 0..{c - 1} once)")
            if p2.get(p, []) != list(range(c, h)):
                fail(f"partition {p}: after the restart the group read {summarize(p2.get(p, []))}, "
                     f"want {c}..{h - 1} once (committed {c}, high watermark {h})")
        if ledger.count() != N_MESSAGES:
            fail(f"{ledger.count()} records consumed in all, produced {N_MESSAGES}")

    s.check("clean-restart", resume)


def summarize(offs):
    if not offs:
        return "nothing"
    dups = len(offs) - len(set(offs))
    return f"{len(offs)} records, offsets {offs[0]}..{offs[-1]}" + (f", {dups} duplicate(s)" if dups else "")


def kill9_restart(s, ctx):
    topic, group = "gr-kill9", "gr-kill9-group"
    ledger = Ledger()
    state = {}

    def setup():
        create_topic(ctx.a, topic, PARTITIONS)
        state["acked"] = produce(ctx.bs, topic, N_MESSAGES, "kill9")
        state["hw"] = high_watermarks(state["acked"])

    ok, _ = s.check("kill9-restart.produce", setup)
    if not ok:
        return

    def phase1_and_kill():
        members = run_phase1(ctx.bs, group, topic, ledger, 3, N_MESSAGES // 2,
                             extra={"session.timeout.ms": KILL9_SESSION_TIMEOUT_MS})
        state["members"] = members
        state["acked_commits"] = dict(ledger.acked_commits)
        # Keep consuming past the commits (these records may come again), then kill -9 mid-poll.
        for m in members:
            m.commit_on_revoke = False  # the acknowledged commits above stay the last ones
        before = ledger.count(1)
        end = time.monotonic() + 10
        while time.monotonic() < end and ledger.count(1) < before + 2000:
            for m in members:
                m.poll()
        ctx.broker.kill9()
        after_commit = ledger.count(1) - before
        end = time.monotonic() + 1  # the consumers keep polling a dead broker for a second
        while time.monotonic() < end:
            for m in members:
                m.poll()
        # The consumers go away with the broker down (they cannot leave the group), as if their
        # process had died with it: the restarted broker must expire them by session timeout.
        for m in members:
            m.close()
        state["members"] = []
        print(f"# {group}: kill -9 after the commits, with {after_commit} records consumed past them "
              f"({ledger.count(1) - before - after_commit} more returned while the broker was down); "
              "consumers closed while it was down", flush=True)
        ctx.start()
        state["t_up"] = time.monotonic()

    ok, _ = s.check("kill9-restart.kill-while-polling", phase1_and_kill)
    if not ok:
        for m in state.get("members", []):
            m.close()
        return

    def resume():
        ledger.errors = [e for e in ledger.errors if "fatal" in e]  # transport errors while it was down
        check_no_errors(ledger)
        acked = state["acked_commits"]
        got = {k: v for k, v in committed_offsets(ctx.a, group).items() if k[0] == topic}
        if got != acked:
            fail(f"after kill -9 and restart OffsetFetch says {fmt_offsets(got)}, acknowledged before "
                 f"the kill {fmt_offsets(acked)}")
        p1_end = {p: (max(v) + 1) for p, v in phase_offsets(ledger, 1, topic).items()}
        run_phase2(ctx.bs, group, topic, ledger, 3, state["hw"], {p: o for (_t, p), o in acked.items()})
        took = time.monotonic() - state["t_up"]
        verify_values(ledger, topic, state["acked"])
        p2 = phase_offsets(ledger, 2, topic)
        dups = 0
        for p in range(PARTITIONS):
            c, h = acked.get((topic, p), 0), state["hw"].get(p, 0)
            got2 = p2.get(p, [])
            if got2 != list(range(c, h)):
                fail(f"partition {p}: after kill -9 the group read {summarize(got2)}, want {c}..{h - 1} once "
                     f"(acknowledged commit {c}, high watermark {h})")
            dups += max(0, p1_end.get(p, 0) - c)
        seen = {(r[3], r[4]) for r in ledger.records if r[2] == topic}
        lost = [(p, o) for p, h in state["hw"].items() for o in range(h) if (p, o) not in seen]
        if lost:
            fail(f"{len(lost)} messages never consumed, first {lost[0]}")
        print(f"# {group}: resumed at the acknowledged commits and finished {took:.1f} s after the restart "
              f"(the dead members' sessions: {KILL9_SESSION_TIMEOUT_MS} ms); {dups} records redelivered (all "
              "consumed after the last acknowledged commit, before the kill)", flush=True)

    s.check("kill9-restart", resume)


def deleted_topic_offsets(s, ctx):
    topic, other, group = "gr-deleted", "gr-kept", "gr-deleted-group"

    def consume_all(topics, hw_by_topic, name, commit):
        """One member of `group` reads `topics` to their high watermarks; returns the ledger."""
        ledger = Ledger()
        m = GroupMember(ctx.bs, group, topics, name, ledger, 1, reset="earliest")
        m.commit_on_revoke = commit
        try:
            poll_all([m], lambda: all(consumed_everything(ledger, t, hw) for t, hw in hw_by_topic.items()), 30,
                     f"{name} reading {', '.join(topics)}")
            if commit:
                m.commit()
        finally:
            m.close()
        check_no_errors(ledger)
        return ledger

    def run():
        create_topic(ctx.a, topic, 3)
        create_topic(ctx.a, other, 3)
        hw_old = high_watermarks(produce(ctx.bs, topic, 300, "old"))
        hw_other = high_watermarks(produce(ctx.bs, other, 30, "other"))
        consume_all([topic, other], {topic: hw_old, other: hw_other}, "gr-deleted-c1", commit=True)
        before = committed_offsets(ctx.a, group)
        want_old = {(topic, p): h for p, h in hw_old.items()}
        want_other = {(other, p): h for p, h in hw_other.items()}
        if before != {**want_old, **want_other}:
            fail(f"committed {fmt_offsets(before)}, want {fmt_offsets({**want_old, **want_other})}")

        delete_topic(ctx.a, topic)
        after_delete = committed_offsets(ctx.a, group)
        if after_delete != want_other:
            fail(f"after deleting {topic}: the group's offsets are {fmt_offsets(after_delete)}, "
                 f"want only {fmt_offsets(want_other)}")

        create_topic(ctx.a, topic, 3)
        # More messages than were committed on the old topic: leaked old offsets would skip some.
        acked_new = produce(ctx.bs, topic, 600, "new")
        hw_new = high_watermarks(acked_new)

        def fresh_consumer_starts_at_zero(name):
            ledger = consume_all([topic], {topic: hw_new}, name, commit=False)
            first = {p: v[0] for p, v in phase_offsets(ledger, 1, topic).items()}
            if any(o != 0 for o in first.values()) or len(first) != len(hw_new):
                fail(f"{name}: first offsets read per partition {first} on the recreated {topic}, want 0 "
                     "(no committed offset, auto.offset.reset=earliest)")
            verify_values(ledger, topic, acked_new)

        fresh_consumer_starts_at_zero("gr-deleted-c2")
        got = committed_offsets(ctx.a, group)
        if got != want_other:
            fail(f"after reading the recreated {topic} without committing: offsets {fmt_offsets(got)}, "
                 f"want {fmt_offsets(want_other)}")

        ctx.restart_sigterm()
        got = None
        for _ in compat.deadline_loop(15):
            try:
                got = committed_offsets(ctx.a, group)
                break
            except Exception:  # noqa: BLE001 - coordinator still loading
                pass
        if got != want_other:
            fail(f"after a restart: offsets {fmt_offsets(got or {})}, want only {fmt_offsets(want_other)} "
                 f"(the deleted {topic}'s offsets came back?)")
        fresh_consumer_starts_at_zero("gr-deleted-c3")

    s.check("deleted-topic-offsets-gone", run)


def live_consumer(s, ctx):
    topic, group = "gr-live", "gr-live-group"

    def run():
        create_topic(ctx.a, topic, 3)
        stop = threading.Event()
        acked, prod_errors, seen, events, errors = {}, [], {}, [], []
        lock = threading.Lock()

        def producer():
            p = Producer({"bootstrap.servers": ctx.bs, "client.id": "gr-live-producer", "acks": "all",
                          "linger.ms": 5, "partitioner": "murmur2_random", "message.timeout.ms": 60000,
                          "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500, "log_level": 2})

            def cb(err, msg):
                if err is not None:
                    prod_errors.append(str(err))
                else:
                    with lock:
                        acked[(msg.partition(), msg.offset())] = msg.value()

            i, t0 = 0, time.monotonic()
            while not stop.is_set():
                if i < (time.monotonic() - t0) * LIVE_RATE:
                    p.produce(topic, key=f"k{i}".encode(), value=value_for("live", i), on_delivery=cb)
                    i += 1
                    p.poll(0)
                else:
                    p.poll(0.01)
            left = p.flush(60)
            if left:
                prod_errors.append(f"{left} messages unacknowledged 60 s after the producer stopped")

        cstop = threading.Event()

        def consumer():
            c = Consumer({"bootstrap.servers": ctx.bs, "group.id": group, "client.id": "gr-live-consumer",
                          "enable.auto.commit": True, "auto.commit.interval.ms": 1000,
                          "auto.offset.reset": "earliest", "reconnect.backoff.ms": 50,
                          "reconnect.backoff.max.ms": 500, "log_level": 2},
                         error_cb=lambda e: e.fatal() and errors.append(f"fatal: {e}"))
            c.subscribe([topic],
                        on_assign=lambda c, ps: events.append((time.monotonic(), "assign", len(ps))),
                        on_revoke=lambda c, ps: events.append((time.monotonic(), "revoke", len(ps))),
                        on_lost=lambda c, ps: events.append((time.monotonic(), "lost", len(ps))))
            try:
                while not cstop.is_set():
                    for m in c.consume(num_messages=500, timeout=0.1):
                        if m.error() is not None:
                            errors.append(f"consumer error {m.error()}")
                            continue
                        with lock:
                            k = (m.partition(), m.offset())
                            seen[k] = (m.value(), seen[k][1] + 1 if k in seen else 1)
            finally:
                c.close()

        pt = threading.Thread(target=producer, daemon=True)
        ct = threading.Thread(target=consumer, daemon=True)
        pt.start()
        ct.start()
        try:
            def wait(cond, seconds, what):
                for _ in compat.deadline_loop(seconds, step=0.05):
                    if errors:
                        fail(errors[0])
                    with lock:
                        if cond():
                            return
                fail(f"{what}: not within {seconds} s")

            wait(lambda: len(seen) >= 3000, 30, "3,000 records consumed before the restart")
            rc = ctx.broker.stop()
            if rc != 0:
                fail(f"broker exit status {rc} after SIGTERM")
            t_down = time.monotonic()
            with lock:
                acked_at_stop, seen_at_stop = len(acked), len(seen)
            time.sleep(1)  # a deliberate outage: both clients must notice the broker is gone
            ctx.start()
            t_up = time.monotonic()
            wait(lambda: len(seen) >= seen_at_stop + 3000, 30, "3,000 more records consumed after the restart")
            t_flowing = time.monotonic()
            stop.set()
            pt.join(75)
            if prod_errors:
                fail(f"producer: {prod_errors[0]}")
            wait(lambda: all(k in seen for k in acked), 30,
                 f"every acknowledged message ({len(acked)}) consumed")
            for k, (v, _n) in seen.items():
                if acked.get(k) != v:
                    fail(f"read {topic}/{k[0]}@{k[1]} = {compat.short(v)}, produced {compat.short(acked.get(k))}")
            hw = high_watermarks(acked)
            # The consumer is a Stable member again, owning all partitions, and its automatic
            # commits reach the end.
            d = None
            for _ in compat.deadline_loop(30):
                d = describe_group(ctx.a, group)
                offs = committed_offsets(ctx.a, group)
                if (d.state == ConsumerGroupState.STABLE and len(d.members) == 1
                        and offs == {(topic, p): h for p, h in hw.items()}):
                    break
            else:
                fail(f"30 s after the last message: group {d.state if d else None}, "
                     f"{len(d.members) if d else 0} member(s), committed {fmt_offsets(offs)}, "
                     f"high watermarks {hw}")
            owned = sorted(tp.partition for tp in d.members[0].assignment.topic_partitions)
            if owned != list(range(3)):
                fail(f"the member owns partitions {owned} of {topic}")
            dups = sum(n - 1 for (_v, n) in seen.values())
            ev = ", ".join(f"{name}({n}) at {t - t_up:+.1f}s" for (t, name, n) in events if t >= t_down)
            print(f"# {group}: {acked_at_stop} acknowledged before the stop, {len(acked)} in all; consumption "
                  f"flowing again {t_flowing - t_up:.1f} s after the restart; {dups} redelivered; "
                  f"rebalance events after the stop: {ev or 'none'}", flush=True)
        finally:
            stop.set()
            cstop.set()
            pt.join(75)
            ct.join(30)

    s.check("live-consumer-across-restart", run)


def main():
    bs = compat.bootstrap()
    s = compat.Suite("groups-restart")
    broker = Broker("groups-restart suite")
    t0 = time.monotonic()
    try:
        ok, _ = s.check("start", broker.start)
        if not ok:
            s.finish()
        ctx = Ctx(bs, broker)
        clean_restart(s, ctx)
        kill9_restart(s, ctx)
        deleted_topic_offsets(s, ctx)
        live_consumer(s, ctx)

        def clean_stop():
            rc = broker.stop()
            if rc not in (0, None):
                fail(f"broker exit status {rc} after SIGTERM")

        if broker.proc is not None and broker.proc.poll() is None:
            s.check("clean-shutdown", clean_stop)
    finally:
        broker.stop()
    print(f"# groups-restart: {time.monotonic() - t0:.1f} s", flush=True)
    s.finish()


if __name__ == "__main__":
    main()
