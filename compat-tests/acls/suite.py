"""ACLs (issue #14): Kafka's StandardAuthorizer model with real clients.

Its own broker (lib/broker.py) with the ACL authorizer (authorizer.class.name = Kafka's
StandardAuthorizer), super.users = User:admin;User:ANONYMOUS (the PLAINTEXT listener, run.sh's
port, is the brokers' and the suite's administration path, as Kafka setups make it) and a
SASL_PLAINTEXT listener with PLAIN users admin, alice, bob and carol. ACLs are created by the
Java Admin client (security/ClientCheck.java, kafka-clients 4.3.0); clients are confluent-kafka
(librdkafka), kafka-python and the Java client. Checks:
  acl.create-java        the Java Admin client creates the bindings below
  acl.read-only-consumes alice (READ on `orders` and group `g-alice`) consumes with her group
                         and commits
  acl.read-only-cannot-produce  her produce to `orders` fails TOPIC_AUTHORIZATION_FAILED in
                         librdkafka; the idempotent Java producer is refused its producer id
                         (no WRITE anywhere: ClusterAuthorizationException)
  acl.group-denied       her consumer in another group gets GROUP_AUTHORIZATION_FAILED
  acl.metadata-hidden    carol (no ACL) sees no topic in Metadata; alice sees only `orders`;
                         kafka-python's view matches
  acl.prefixed           bob writes `pay-in` (PREFIXED `pay-` WRITE)
  acl.deny-wins          bob's write to `pay-secret` (LITERAL DENY) fails
  acl.super-user         admin (super user over SASL) writes any topic
  acl.not-admin          alice cannot create ACLs (CLUSTER_AUTHORIZATION_FAILED)
  acl.describe-delete    DescribeAcls lists the bindings; DeleteAcls of the DENY lets bob write
  acl.after-restart      after a restart the ACLs still apply
  acl.denials-counted    the broker counted the denials (sluice_authorization_denied_total)
"""

import os
import subprocess
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,  # noqa: E402
                                   AdminClient, NewTopic, ResourcePatternType, ResourceType)

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

CACHE = os.environ.get("SLUICE_CACHE", os.path.expanduser("~/.cache/sluice"))
JARS = os.path.join(CACHE, "java", "kafka-4.3.0")
CLIENT_CHECK = os.path.join(HERE, "..", "security", "ClientCheck.java")
USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
JAAS = ("org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" "
        "password=\"admin-secret\" " + " ".join(f'user_{u}="{p}"' for u, p in USERS.items()) + ";")
N = 20
ACLS = [
    "ALLOW,User:alice,READ,TOPIC,LITERAL,orders",
    "ALLOW,User:alice,READ,GROUP,LITERAL,g-alice",
    "ALLOW,User:bob,WRITE,TOPIC,PREFIXED,pay-",
    "DENY,User:bob,WRITE,TOPIC,LITERAL,pay-secret",
]


def conf(port, user):
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "sasl_plaintext",
            "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": USERS[user]}


def java(port, user, topic, args, timeout=90):
    props = [f"bootstrap.servers=127.0.0.1:{port}", "security.protocol=SASL_PLAINTEXT", "sasl.mechanism=PLAIN",
             "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'username="{user}" password="{USERS[user]}";']
    r = subprocess.run(["java", "-cp", os.path.join(JARS, "*"), CLIENT_CHECK, f"127.0.0.1:{port}", topic, "1",
                        *args, *props[1:]],
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout + r.stderr[-300:]


def produce(c, topic, n=N):
    """(delivered, error codes) of n records produced with `c`."""
    p = Producer(dict(c, **{"acks": "all", "message.timeout.ms": 10000, "retries": 0}))
    errors = []
    for i in range(n):
        p.produce(topic, value=f"v{i}", partition=0,
                  on_delivery=lambda err, msg: errors.append(err.code()) if err else None)
    left = p.flush(15)
    return n - left - len(errors), errors


def must_produce(c, topic):
    ok, errors = produce(c, topic)
    if ok != N or errors:
        fail(f"produce to {topic}: {ok} delivered, errors {errors[:3]}")


def must_be_denied(c, topic):
    ok, errors = produce(c, topic, n=1)
    if ok or KafkaError.TOPIC_AUTHORIZATION_FAILED not in errors:
        fail(f"produce to {topic}: {ok} delivered, errors {errors}")


def consume(c, topic, group):
    """Reads N records of partition 0 with group `group` and commits; returns the error code
    if the consumer got one instead."""
    consumer = Consumer(dict(c, **{"group.id": group, "auto.offset.reset": "earliest",
                                   "enable.auto.commit": False}))
    got = 0
    try:
        consumer.subscribe([topic])
        for _ in compat.deadline_loop(30, step=0):
            if got >= N:
                break
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                return m.error().code()
            got += 1
        if got < N:
            fail(f"consumed {got} of {N}")
        consumer.commit(asynchronous=False)
        committed = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        if committed[0].offset != N:
            fail(f"committed {committed[0].offset}")
        return None
    except KafkaException as e:
        return e.args[0].code()
    finally:
        consumer.close()


def topics_seen(c):
    return sorted(t for t in AdminClient(c).list_topics(timeout=10).topics if not t.startswith("__"))


def main():
    bs = compat.bootstrap()
    port = int(os.environ["SLUICE_PORT"])
    sasl = compat_free_port()
    s = compat.Suite("acls")
    broker = Broker("acls", overrides=[
        f"listeners=PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:admin;User:ANONYMOUS",
        "sasl.enabled.mechanisms=PLAIN",
        f"listener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}",
    ])
    ok, _ = s.check("start", broker.start)
    if not ok:
        s.finish()
    try:
        admin = AdminClient({"bootstrap.servers": bs})
        topics = ["orders", "pay-in", "pay-secret", "hidden"]
        for t, f in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).items():
            f.result(timeout=30)
        must_produce({"bootstrap.servers": bs}, "orders")

        def create_java():
            code, out = java(sasl, "admin", "@acl", [f"acl={a}" for a in ACLS])
            if code != 0 or f"ok {len(ACLS)}" not in out:
                fail(f"createAcls: {out[-500:]}")
        ok, _ = s.check("acl.create-java", create_java)
        if not ok:
            s.finish()
        alice, bob, carol, root = (conf(sasl, u) for u in ["alice", "bob", "carol", "admin"])

        def read_only_consumes():
            code = consume(alice, "orders", "g-alice")
            if code is not None:
                fail(f"alice's consumer got {code}")
        s.check("acl.read-only-consumes", read_only_consumes)

        def read_only_cannot_produce():
            must_be_denied(alice, "orders")
            # The Java producer is idempotent: without WRITE anywhere its InitProducerId is
            # refused first (ClusterAuthorizationException), as with Kafka.
            code, out = java(sasl, "alice", "orders", [])
            if code == 0 or "AuthorizationException" not in out:
                fail(f"Java producer as alice: {out[-400:]}")
            print(f"# java: {out.strip()[:300]}", flush=True)
        s.check("acl.read-only-cannot-produce", read_only_cannot_produce)

        def group_denied():
            code = consume(alice, "orders", "g-other")
            if code != KafkaError.GROUP_AUTHORIZATION_FAILED:
                fail(f"expected GROUP_AUTHORIZATION_FAILED, got {code}")
        s.check("acl.group-denied", group_denied)

        def metadata_hidden():
            if topics_seen(carol) != []:
                fail(f"carol sees {topics_seen(carol)}")
            if topics_seen(alice) != ["orders"]:
                fail(f"alice sees {topics_seen(alice)}")
            from kafka import KafkaConsumer
            kp = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{sasl}", security_protocol="SASL_PLAINTEXT",
                               sasl_mechanism="PLAIN", sasl_plain_username="alice",
                               sasl_plain_password=USERS["alice"])
            try:
                seen = sorted(t for t in kp.topics() if not t.startswith("__"))
            finally:
                kp.close()
            if seen != ["orders"]:
                fail(f"kafka-python as alice sees {seen}")
        s.check("acl.metadata-hidden", metadata_hidden)
        s.check("acl.prefixed", must_produce, bob, "pay-in")
        s.check("acl.deny-wins", must_be_denied, bob, "pay-secret")
        s.check("acl.super-user", must_produce, root, "hidden")

        def not_admin():
            a = AdminClient(alice)
            b = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:alice", "*",
                           AclOperation.WRITE, AclPermissionType.ALLOW)
            try:
                a.create_acls([b])[b].result(timeout=15)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.CLUSTER_AUTHORIZATION_FAILED:
                    fail(f"expected CLUSTER_AUTHORIZATION_FAILED, got {e}")
                return
            fail("alice created an ACL")
        s.check("acl.not-admin", not_admin)

        def describe_delete():
            a = AdminClient(root)
            everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                          AclOperation.ANY, AclPermissionType.ANY)
            listed = a.describe_acls(everything).result(timeout=15)
            if len(listed) != len(ACLS):
                fail(f"described {len(listed)} bindings: {listed}")
            deny = AclBindingFilter(ResourceType.TOPIC, "pay-secret", ResourcePatternType.LITERAL, "User:bob",
                                    None, AclOperation.ANY, AclPermissionType.DENY)
            deleted = a.delete_acls([deny])[deny].result(timeout=15)
            if len(deleted) != 1:
                fail(f"deleted {deleted}")
            must_produce(bob, "pay-secret")
        s.check("acl.describe-delete", describe_delete)

        broker.stop()
        ok, _ = s.check("restart", broker.start)
        if ok:
            def after_restart():
                if topics_seen(carol) != []:
                    fail(f"carol sees {topics_seen(carol)} after the restart")
                must_be_denied(alice, "orders")
                must_produce(bob, "pay-in")
            s.check("acl.after-restart", after_restart)

        def denials_counted():
            text = urllib.request.urlopen(f"http://127.0.0.1:{os.environ['SLUICE_METRICS_PORT']}/metrics",
                                          timeout=10).read().decode()
            lines = [ln for ln in text.splitlines() if ln.startswith("sluice_authorization_denied_total")]
            if not any('api="Produce"' in ln for ln in lines):
                fail(f"no Produce denial counted: {lines}")
        s.check("acl.denials-counted", denials_counted)
    finally:
        broker.stop()
    s.finish()


def compat_free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
