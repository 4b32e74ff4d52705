"""kafka-python consumer groups against Sluice: the classic group protocol.

Consumers are KafkaConsumer(group_id=...) + subscribe(listener=ConsumerRebalanceListener) with
kafka-python's default assignors (range, roundrobin; eager rebalancing); the scenarios are in
lib/groups.py. kafka-python 3.x names its group admin calls list_groups / describe_groups /
list_group_offsets / alter_group_offsets / delete_group_offsets / delete_groups (2.x had
list_consumer_groups and friends); the admin checks use all of them.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import kafka  # noqa: E402
import kafka.errors as Errors  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402
from kafka.consumer.subscription_state import ConsumerRebalanceListener  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

import compat  # noqa: E402
import groups  # noqa: E402  (lib/groups.py: lib is first on sys.path, ahead of this file's folder)
from compat import fail  # noqa: E402
from groups import PARTITIONS  # noqa: E402

TIMEOUT_MS = 30000


class _Listener(ConsumerRebalanceListener):
    def __init__(self, target, topic):
        self.target, self.topic = target, topic

    def _parts(self, tps):
        return [tp.partition for tp in tps if tp.topic == self.topic]

    def on_partitions_revoked(self, revoked):
        self.target.on_revoke(self._parts(revoked))

    def on_partitions_assigned(self, assigned):
        self.target.on_assign(self._parts(assigned))

    def on_partitions_lost(self, lost):
        self.target.on_lost(self._parts(lost))


class _Handle:
    # Listeners run on kafka-python's I/O event loop while poll() waits on it: a commit from there
    # would wait on the same loop. The scenarios commit after every poll, so nothing is pending.
    commit_in_callbacks = False

    def __init__(self, bs, group, topic, client_id, listener, instance_id, auto_commit):
        self.topic, self.auto_commit = topic, auto_commit
        self.c = KafkaConsumer(
            bootstrap_servers=bs,
            group_id=group,
            group_instance_id=instance_id,
            client_id=client_id,
            auto_offset_reset="earliest",
            enable_auto_commit=auto_commit,
            session_timeout_ms=groups.SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=groups.HEARTBEAT_INTERVAL_MS,
            request_timeout_ms=TIMEOUT_MS,
        )
        self.c.subscribe([topic], listener=_Listener(listener, topic))

    def poll(self, timeout, max_records):
        out = []
        for recs in self.c.poll(timeout_ms=int(timeout * 1000), max_records=max_records).values():
            out.extend((r.partition, r.offset, r.key, r.value) for r in recs)
        return out

    def commit(self, offsets):
        self.c.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})

    def close(self):
        self.c.close(autocommit=self.auto_commit)


class KafkaPythonClient:
    name = "kafka-python"

    def __init__(self, bs):
        self.bs = bs
        self.admin = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=TIMEOUT_MS,
                                      client_id="compat-kafka-python-admin")

    def create_topic(self, topic, partitions):
        self.admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                 timeout_ms=TIMEOUT_MS)
        for _ in compat.deadline_loop(15):
            if topic in self.admin.list_topics():
                return
        fail(f"{topic} not listed 15 s after creation")

    def produce(self, topic, n, partitions):
        p = KafkaProducer(bootstrap_servers=self.bs, client_id="compat-kafka-python-producer",
                          enable_idempotence=True, acks="all", linger_ms=5,
                          request_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS)
        try:
            futs = []
            for i in range(n):
                k, v = groups.make_kv(i)
                futs.append(p.send(topic, key=k, value=v, partition=i % partitions))
            p.flush(timeout=60)
            bad = [f for f in futs if not f.is_done or f.failed()]
            if bad:
                f = bad[0]
                fail(f"produce: {len(bad)} of {n} not acknowledged; first: "
                     f"{f.exception if f.is_done else 'not done after flush(60)'}")
        finally:
            p.close(timeout=10)

    def consumer(self, group, topic, client_id, listener, instance_id=None, auto_commit=True):
        return _Handle(self.bs, group, topic, client_id, listener, instance_id, auto_commit)

    def committed(self, group, topic, partitions):
        c = KafkaConsumer(bootstrap_servers=self.bs, group_id=group, enable_auto_commit=False,
                          client_id="compat-kafka-python-committed", request_timeout_ms=TIMEOUT_MS)
        try:
            return {p: c.committed(TopicPartition(topic, p)) for p in partitions}
        finally:
            c.close(autocommit=False)

    def group_offsets(self, group, topic):
        res = self.admin.list_group_offsets(group).get(group, {})
        return {tp.partition: om.offset for tp, om in res.items() if tp.topic == topic and om.offset >= 0}


# ------------------------------------------------------------------ admin checks

def listing(a, **kw):
    return {g["group_id"]: g for g in a.list_groups(**kw)}


def run_admin(s, client, topic, g_active, g_empty, g_missing):
    a = client.admin
    ok, act = s.check("admin.setup", groups.admin_setup, client, topic, g_active, g_empty)
    if not ok:
        return
    per = 600 // PARTITIONS
    try:
        def list_groups():
            all_ = listing(a)
            for g, want in ((g_active, "Stable"), (g_empty, "Empty")):
                if g not in all_:
                    fail(f"list_groups lacks {g}: {sorted(all_)}")
                got = all_[g]
                if got.get("group_state") != want or got.get("protocol_type") != "consumer":
                    fail(f"{g}: listed as {got}, want state {want}, protocol type consumer")
                if got.get("group_type", "classic") != "classic":
                    fail(f"{g}: group_type {got.get('group_type')!r}, want 'classic'")
            stable = listing(a, states_filter=["Stable"])
            if g_active not in stable or g_empty in stable:
                fail(f"states_filter=[Stable] listed {sorted(stable)}")
            empty = listing(a, states_filter=["Empty"])
            if g_empty not in empty or g_active in empty:
                fail(f"states_filter=[Empty] listed {sorted(empty)}")

        s.check("admin.list-groups", list_groups)

        def describe():
            d = a.describe_groups([g_active, g_empty])
            act_d = d[g_active]
            if act_d.get("error") or act_d.get("group_state") != "Stable":
                fail(f"{g_active}: {act_d.get('group_state')} error {act_d.get('error')}")
            if act_d.get("protocol_type") != "consumer" or act_d.get("protocol_data") != "range":
                fail(f"{g_active}: protocol {act_d.get('protocol_type')}/{act_d.get('protocol_data')}, "
                     "want consumer/range")
            members = {m["client_id"]: m for m in act_d["members"]}
            want = {m.client_id: m.parts() for m in act}
            if sorted(members) != sorted(want):
                fail(f"{g_active}: member client ids {sorted(members)}, want {sorted(want)}")
            for cid, parts in want.items():
                m = members[cid]
                assignment = m.get("member_assignment") or {}
                if not isinstance(assignment, dict):
                    fail(f"{g_active}: {cid}: assignment not decodable as the consumer protocol: {assignment!r}")
                got = {p for t in assignment.get("assigned_partitions", []) if t["topic"] == topic
                       for p in t["partitions"]}
                if got != parts:
                    fail(f"{g_active}: {cid} described with {sorted(got)}, the consumer has {sorted(parts)}")
                meta = m.get("member_metadata") or {}
                if not isinstance(meta, dict) or meta.get("topics") != [topic]:
                    fail(f"{g_active}: {cid} subscription metadata {meta!r}")
                if not m.get("member_id", "").startswith(cid):
                    fail(f"{g_active}: member id {m.get('member_id')!r} does not start with the client id")
            e = d[g_empty]
            if e.get("error") or e.get("group_state") != "Empty" or e.get("members"):
                fail(f"{g_empty}: {e}")

        s.check("admin.describe-groups", describe)

        def offsets():
            res = a.list_group_offsets(g_empty)[g_empty]
            got = {tp.partition: om.offset for tp, om in res.items() if tp.topic == topic}
            if got != {p: per for p in range(PARTITIONS)}:
                fail(f"{g_empty}: offsets {got}")
            res = a.list_group_offsets({g_empty: [TopicPartition(topic, 2)]})[g_empty]
            if {tp.partition: om.offset for tp, om in res.items()} != {2: per}:
                fail(f"{g_empty}, partition 2 only: {res}")

        s.check("admin.list-group-offsets", offsets)

        def alter():
            res = a.alter_group_offsets(g_empty, {TopicPartition(topic, 0): OffsetAndMetadata(5, "m", -1),
                                                  TopicPartition(topic, 1): OffsetAndMetadata(0, "", -1)})
            if any(err is not Errors.NoError for err in res.values()):
                fail(f"alter {g_empty}: {res}")
            got = a.list_group_offsets(g_empty)[g_empty]
            want = {p: per for p in range(PARTITIONS)}
            want.update({0: 5, 1: 0})
            if {tp.partition: om.offset for tp, om in got.items()} != want:
                fail(f"after alter: {got}, want {want}")
            if got[TopicPartition(topic, 0)].metadata != "m":
                fail(f"metadata of partition 0: {got[TopicPartition(topic, 0)].metadata!r}, want 'm'")
            res = a.alter_group_offsets(g_active, {TopicPartition(topic, 0): OffsetAndMetadata(1, "", -1)})
            if list(res.values()) != [Errors.UnknownMemberIdError]:
                fail(f"alter on the active group {g_active}: {res}, want UnknownMemberIdError")

        s.check("admin.alter-group-offsets", alter)

        def delete_offsets():
            res = a.delete_group_offsets(g_active, [TopicPartition(topic, 0)])
            if list(res.values()) != [Errors.GroupSubscribedToTopicError]:
                fail(f"OffsetDelete on the subscribed group {g_active}: {res}, want GroupSubscribedToTopicError")
            res = a.delete_group_offsets(g_empty, [TopicPartition(topic, 0), TopicPartition(topic, 3)])
            if any(err is not Errors.NoError for err in res.values()) or len(res) != 2:
                fail(f"OffsetDelete on {g_empty}: {res}")
            got = client.group_offsets(g_empty, topic)
            want = {p: per for p in (2, 4, 5)}
            want[1] = 0
            if got != want:
                fail(f"after OffsetDelete of 0 and 3: {got}, want {want}")
            try:
                a.delete_group_offsets(g_missing, [TopicPartition(topic, 0)])
                fail(f"OffsetDelete on the unknown group {g_missing} succeeded")
            except Errors.GroupIdNotFoundError:
                pass

        s.check("admin.delete-group-offsets", delete_offsets)

        def delete():
            res = a.delete_groups([g_active, g_empty, g_missing])
            want = {g_active: "NonEmptyGroupError", g_empty: "OK", g_missing: "GroupIdNotFoundError"}
            if res != want:
                fail(f"delete_groups: {res}, want {want}")
            if g_empty in listing(a):
                fail(f"{g_empty} still listed after deletion")
            if client.group_offsets(g_empty, topic):
                fail(f"{g_empty} still has offsets after deletion")
            errs = groups.stop_all(act)
            if errs:
                fail("; ".join(errs))
            groups.wait_until(lambda: listing(a).get(g_active, {}).get("group_state") == "Empty", 15,
                              f"{g_active} listed as Empty after its members closed")
            res = a.delete_groups([g_active])
            if res != {g_active: "OK"}:
                fail(f"deleting {g_active} once empty: {res}")
            if g_active in listing(a):
                fail(f"{g_active} still listed after deletion")

        s.check("admin.delete-groups", delete)

        def describe_missing():
            # DescribeGroups v6 (KIP-1043): an unknown group is GROUP_ID_NOT_FOUND, state Dead.
            d = a.describe_groups([g_missing, g_empty])
            for g in (g_missing, g_empty):
                if d[g].get("group_state") != "Dead" or not d[g].get("error") or "GroupIdNotFound" not in d[g]["error"]:
                    fail(f"describing unknown/deleted group {g}: state {d[g].get('group_state')!r}, "
                         f"error {d[g].get('error')!r}; Kafka answers DescribeGroups v6 with "
                         "GROUP_ID_NOT_FOUND (69), state Dead")

        s.check("admin.describe-unknown-group", describe_missing)
    finally:
        groups.stop_all(act)


def main():
    bs = compat.bootstrap()
    print(f"# kafka-python {kafka.__version__}, groups against {bs}", flush=True)
    s = compat.Suite("kafka-python-groups")
    ok, client = s.check("cluster", KafkaPythonClient, bs)
    if not ok:
        s.finish()
    pre = "compat-kafka-python-g"
    try:
        s.check("three-consumers", groups.three_consumers, client, f"{pre}-three", f"{pre}-three")
        s.check("failover", groups.failover, client, f"{pre}-failover", f"{pre}-failover")
        s.check("fourth-joins", groups.fourth_joins, client, f"{pre}-fourth", f"{pre}-fourth")
        s.check("two-groups", groups.two_groups, client, f"{pre}-two", (f"{pre}-two-A", f"{pre}-two-B"))
        s.check("committed-offsets", groups.committed_offsets, client, f"{pre}-committed", f"{pre}-committed")
        s.check("static-membership", groups.static_membership, client, f"{pre}-static", f"{pre}-static")
        run_admin(s, client, f"{pre}-admin", f"{pre}-admin-active", f"{pre}-admin-empty", f"{pre}-admin-missing")
    finally:
        client.admin.close()
    s.finish()


if __name__ == "__main__":
    main()
