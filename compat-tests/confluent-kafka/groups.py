"""confluent-kafka (librdkafka) consumer groups against Sluice: the classic group protocol.

Consumers use Consumer.subscribe with on_assign/on_revoke/on_lost (librdkafka's default
"range,roundrobin" assignors, eager rebalancing); the scenarios are in lib/groups.py. The admin
checks use AdminClient.list_consumer_groups (with a state filter), describe_consumer_groups,
list_consumer_group_offsets, alter_consumer_group_offsets and delete_consumer_groups (the Python
binding has no delete-offsets call).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import confluent_kafka  # noqa: E402
from confluent_kafka import (  # noqa: E402
    ConsumerGroupState, ConsumerGroupTopicPartitions, Consumer, KafkaError, KafkaException, Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
import groups  # noqa: E402  (lib/groups.py: lib is first on sys.path, ahead of this file's folder)
from compat import fail  # noqa: E402
from groups import PARTITIONS  # noqa: E402

OP_TIMEOUT = 30


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class _Handle:
    commit_in_callbacks = True  # rebalance callbacks run inside poll(), in the polling thread

    def __init__(self, bs, group, topic, client_id, listener, instance_id, auto_commit):
        conf = {
            "bootstrap.servers": bs,
            "group.id": group,
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": auto_commit,
            "session.timeout.ms": groups.SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": groups.HEARTBEAT_INTERVAL_MS,
            "error_cb": lambda e: log(f"# {client_id} error_cb: {e}"),
        }
        if instance_id is not None:
            conf["group.instance.id"] = instance_id
        self.topic, self.client_id = topic, client_id
        self.c = Consumer(conf)
        parts = lambda ps: [tp.partition for tp in ps if tp.topic == topic]  # noqa: E731
        self.c.subscribe(
            [topic],
            on_assign=lambda c, ps: listener.on_assign(parts(ps)),
            on_revoke=lambda c, ps: listener.on_revoke(parts(ps)),
            on_lost=lambda c, ps: listener.on_lost(parts(ps)),
        )

    def poll(self, timeout, max_records):
        out = []
        end = time.monotonic() + timeout
        while len(out) < max_records:
            m = self.c.poll(0 if out else max(0.0, end - time.monotonic()))
            if m is None:
                break
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                log(f"# {self.client_id} consumer error: {err}")
                continue
            out.append((m.partition(), m.offset(), m.key(), m.value()))
        return out

    def commit(self, offsets):
        res = self.c.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())],
                            asynchronous=False)
        bad = [f"{tp.partition}: {tp.error}" for tp in res or [] if tp.error is not None]
        if bad:
            raise RuntimeError(f"commit partition errors: {bad}")

    def close(self):
        self.c.close()


class ConfluentClient:
    name = "confluent"

    def __init__(self, bs):
        self.bs = bs
        self.admin = AdminClient({"bootstrap.servers": bs, "client.id": "compat-confluent-admin",
                                  "socket.timeout.ms": 15000})

    def create_topic(self, topic, partitions):
        futs = self.admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=OP_TIMEOUT)
        futs[topic].result(timeout=OP_TIMEOUT)
        for _ in compat.deadline_loop(15):
            md = self.admin.list_topics(topic=topic, timeout=OP_TIMEOUT).topics.get(topic)
            if md is not None and md.error is None and len(md.partitions) == partitions:
                return
        fail(f"{topic} not in metadata with {partitions} partitions 15 s after creation")

    def produce(self, topic, n, partitions):
        errors = []
        p = Producer({"bootstrap.servers": self.bs, "client.id": "compat-confluent-producer",
                      "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 30000},
                     error_cb=lambda e: errors.append(str(e)))
        failed = []

        def cb(err, _msg):
            if err is not None:
                failed.append(str(err))

        for i in range(n):
            k, v = groups.make_kv(i)
            while True:
                try:
                    p.produce(topic, key=k, value=v, partition=i % partitions, on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.1)
            if i % 1000 == 0:
                p.poll(0)
        left = p.flush(60)
        if left or failed:
            fail(f"produce: {left} undelivered, {len(failed)} failed ({failed[:3]}); client errors {errors[:3]}")

    def consumer(self, group, topic, client_id, listener, instance_id=None, auto_commit=True):
        return _Handle(self.bs, group, topic, client_id, listener, instance_id, auto_commit)

    def committed(self, group, topic, partitions):
        c = Consumer({"bootstrap.servers": self.bs, "group.id": group, "client.id": "compat-confluent-committed",
                      "enable.auto.commit": False})
        try:
            res = c.committed([TopicPartition(topic, p) for p in partitions], timeout=OP_TIMEOUT)
        finally:
            c.close()
        out = {}
        for tp in res:
            if tp.error is not None:
                fail(f"committed(): partition {tp.partition}: {tp.error}")
            out[tp.partition] = None if tp.offset < 0 else tp.offset
        return out

    def group_offsets(self, group, topic):
        futs = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                      request_timeout=OP_TIMEOUT)
        res = futs[group].result(timeout=OP_TIMEOUT)
        out = {}
        for tp in res.topic_partitions:
            if tp.error is not None:
                fail(f"list_consumer_group_offsets {group}: partition {tp.partition}: {tp.error}")
            if tp.topic == topic and tp.offset >= 0:
                out[tp.partition] = tp.offset
        return out


# ------------------------------------------------------------------ admin checks

def listing(a, **kw):
    res = a.list_consumer_groups(request_timeout=OP_TIMEOUT, **kw).result(timeout=OP_TIMEOUT)
    if res.errors:
        fail(f"list_consumer_groups({kw}) errors: {res.errors}")
    return {g.group_id: g for g in res.valid}


def kafka_error_code(exc):
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].code()
    return None


def run_admin(s, client, topic, g_active, g_empty, g_missing):
    a = client.admin
    ok, act = s.check("admin.setup", groups.admin_setup, client, topic, g_active, g_empty)
    if not ok:
        return
    try:
        def list_groups():
            all_ = listing(a)
            for g, want in ((g_active, ConsumerGroupState.STABLE), (g_empty, ConsumerGroupState.EMPTY)):
                if g not in all_:
                    fail(f"list_consumer_groups lacks {g}: {sorted(all_)}")
                if all_[g].state != want:
                    fail(f"{g}: state {all_[g].state}, want {want}")
                if all_[g].is_simple_consumer_group:
                    fail(f"{g}: listed as a simple group (protocol type not 'consumer')")
            stable = listing(a, states={ConsumerGroupState.STABLE})
            empty = listing(a, states={ConsumerGroupState.EMPTY})
            if g_active not in stable or g_empty in stable:
                fail(f"states={{STABLE}} listed {sorted(stable)}")
            if g_empty not in empty or g_active in empty:
                fail(f"states={{EMPTY}} listed {sorted(empty)}")
            both = listing(a, states={ConsumerGroupState.STABLE, ConsumerGroupState.EMPTY})
            if g_active not in both or g_empty not in both:
                fail(f"states={{STABLE, EMPTY}} listed {sorted(both)}")

        s.check("admin.list-groups", list_groups)

        def describe():
            futs = a.describe_consumer_groups([g_active, g_empty], request_timeout=OP_TIMEOUT)
            d = futs[g_active].result(timeout=OP_TIMEOUT)
            if d.state != ConsumerGroupState.STABLE:
                fail(f"{g_active}: state {d.state}")
            if d.partition_assignor != "range":
                fail(f"{g_active}: partition_assignor {d.partition_assignor!r}, want 'range'")
            if d.coordinator is None or d.coordinator.id != 1:
                fail(f"{g_active}: coordinator {d.coordinator}")
            if d.is_simple_consumer_group:
                fail(f"{g_active}: is_simple_consumer_group")
            by_client = {m.client_id: m for m in d.members}
            want = {m.client_id: m.parts() for m in act}
            if sorted(by_client) != sorted(want):
                fail(f"{g_active}: members' client ids {sorted(by_client)}, want {sorted(want)}")
            for cid, parts in want.items():
                got = {tp.partition for tp in by_client[cid].assignment.topic_partitions if tp.topic == topic}
                if got != parts:
                    fail(f"{g_active}: {cid} described with {sorted(got)}, the consumer has {sorted(parts)}")
                if not by_client[cid].member_id or not by_client[cid].host:
                    fail(f"{g_active}: member {cid} without member id/host")
            e = futs[g_empty].result(timeout=OP_TIMEOUT)
            if e.state != ConsumerGroupState.EMPTY or e.members:
                fail(f"{g_empty}: state {e.state}, {len(e.members)} members")

        s.check("admin.describe-groups", describe)

        per = 600 // PARTITIONS

        def offsets():
            got = client.group_offsets(g_empty, topic)
            if got != {p: per for p in range(PARTITIONS)}:
                fail(f"{g_empty}: offsets {got}")

        s.check("admin.list-group-offsets", offsets)

        def alter():
            req = [ConsumerGroupTopicPartitions(g_empty, [TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 0)])]
            res = a.alter_consumer_group_offsets(req, request_timeout=OP_TIMEOUT)[g_empty].result(timeout=OP_TIMEOUT)
            bad = [f"{tp.partition}: {tp.error}" for tp in res.topic_partitions if tp.error is not None]
            if bad:
                fail(f"alter {g_empty}: {bad}")
            got = client.group_offsets(g_empty, topic)
            want = {p: per for p in range(PARTITIONS)}
            want.update({0: 5, 1: 0})
            if got != want:
                fail(f"after alter: {got}, want {want}")
            # On a group with members, Kafka refuses the (generation -1) commit: UNKNOWN_MEMBER_ID.
            req = [ConsumerGroupTopicPartitions(g_active, [TopicPartition(topic, 0, 1)])]
            try:
                res = a.alter_consumer_group_offsets(req, request_timeout=OP_TIMEOUT)[g_active].result(
                    timeout=OP_TIMEOUT)
            except KafkaException as e:
                if kafka_error_code(e) != KafkaError.UNKNOWN_MEMBER_ID:
                    fail(f"alter on the active group {g_active}: {e}, want UNKNOWN_MEMBER_ID")
                return
            errs = [tp.error for tp in res.topic_partitions]
            if not errs or any(e is None or e.code() != KafkaError.UNKNOWN_MEMBER_ID for e in errs):
                fail(f"alter on the active group {g_active}: {errs}, want UNKNOWN_MEMBER_ID")

        s.check("admin.alter-group-offsets", alter)

        def delete():
            futs = a.delete_consumer_groups([g_active], request_timeout=OP_TIMEOUT)
            try:
                futs[g_active].result(timeout=OP_TIMEOUT)
                fail(f"deleting the active group {g_active} succeeded")
            except KafkaException as e:
                if kafka_error_code(e) != KafkaError.NON_EMPTY_GROUP:
                    fail(f"deleting the active group {g_active}: {e}, want NON_EMPTY_GROUP")
            a.delete_consumer_groups([g_empty], request_timeout=OP_TIMEOUT)[g_empty].result(timeout=OP_TIMEOUT)
            if g_empty in listing(a):
                fail(f"{g_empty} still listed after deletion")
            if client.group_offsets(g_empty, topic):
                fail(f"{g_empty} still has offsets after deletion")
            # librdkafka 2.16 sends DescribeGroups v5: an unknown group is state Dead, no error
            # (GROUP_ID_NOT_FOUND only from v6, KIP-1043).
            d = a.describe_consumer_groups([g_empty], request_timeout=OP_TIMEOUT)[g_empty].result(
                timeout=OP_TIMEOUT)
            if d.state != ConsumerGroupState.DEAD or d.members:
                fail(f"{g_empty} described as {d.state} with {len(d.members)} members after deletion, want DEAD")
            try:
                a.delete_consumer_groups([g_missing], request_timeout=OP_TIMEOUT)[g_missing].result(
                    timeout=OP_TIMEOUT)
                fail(f"deleting the unknown group {g_missing} succeeded")
            except KafkaException as e:
                if kafka_error_code(e) != KafkaError.GROUP_ID_NOT_FOUND:
                    fail(f"deleting the unknown group {g_missing}: {e}, want GROUP_ID_NOT_FOUND")
            # Once its members leave, the active group is empty and can be deleted.
            errs = groups.stop_all(act)
            if errs:
                fail("; ".join(errs))
            groups.wait_until(lambda: getattr(listing(a).get(g_active), "state", None) == ConsumerGroupState.EMPTY,
                              15, f"{g_active} listed as EMPTY after its members closed")
            a.delete_consumer_groups([g_active], request_timeout=OP_TIMEOUT)[g_active].result(timeout=OP_TIMEOUT)
            if g_active in listing(a):
                fail(f"{g_active} still listed after deletion")

        s.check("admin.delete-groups", delete)
    finally:
        groups.stop_all(act)


def main():
    bs = compat.bootstrap()
    print(f"# confluent-kafka {confluent_kafka.version()[0]}, librdkafka {confluent_kafka.libversion()[0]}, "
          f"groups against {bs}", flush=True)
    s = compat.Suite("confluent-kafka-groups")
    client = ConfluentClient(bs)
    ok, _ = s.check("cluster", lambda: client.admin.list_topics(timeout=OP_TIMEOUT))
    if not ok:
        s.finish()
    pre = "compat-confluent-g"
    s.check("three-consumers", groups.three_consumers, client, f"{pre}-three", f"{pre}-three")
    s.check("failover", groups.failover, client, f"{pre}-failover", f"{pre}-failover")
    s.check("fourth-joins", groups.fourth_joins, client, f"{pre}-fourth", f"{pre}-fourth")
    s.check("two-groups", groups.two_groups, client, f"{pre}-two", (f"{pre}-two-A", f"{pre}-two-B"))
    s.check("committed-offsets", groups.committed_offsets, client, f"{pre}-committed", f"{pre}-committed")
    s.check("static-membership", groups.static_membership, client, f"{pre}-static", f"{pre}-static")
    run_admin(s, client, f"{pre}-admin", f"{pre}-admin-active", f"{pre}-admin-empty", f"{pre}-admin-missing")
    s.finish()


if __name__ == "__main__":
    main()
