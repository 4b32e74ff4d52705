"""The cluster suite's describe-topic-partitions check (issue 12): DescribeTopicPartitions
(KIP-966, what the 4.x `kafka-topics --describe` uses) paged with its cursor, through
kafka-python's `describe_topic_partitions` (two partitions a page) and kafka-clients 4.3.0's
`Admin.describeTopics` with `partitionSizeLimitPerResponse(2)`: both see every partition of two
topics once, with the leader, replicas and ISR Metadata reports."""

from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

import javaproc
from compat import fail
from replicated import partitions, wait_for

TOPICS = {"cluster-describe-a": 5, "cluster-describe-b": 3}


def describe_paged(cl, state):
    admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
    futures = admin.create_topics([NewTopic(t, n, 2) for t, n in TOPICS.items()])
    for f in futures.values():
        f.result(timeout=30)
    want = {}
    for t in TOPICS:
        parts, _ = wait_for(f"{t} led with whole ISRs",
                            lambda t=t: (lambda ps: ps if all(v[1] >= 0 and len(v[3]) == 2 for v in ps.values())
                                         else None)(partitions(cl, t)), 30)
        for p, v in parts.items():
            want[(t, p)] = (v[1], list(v[2]), sorted(v[3]))
    kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-describe")
    try:
        got, pages, cursor = {}, 0, None
        while True:
            resp = kp.describe_topic_partitions(sorted(TOPICS), response_partition_limit=2, cursor=cursor)
            pages += 1
            for t in resp["topics"]:
                if t["error_code"]:
                    fail(f"describe_topic_partitions: {t['name']} error {t['error_code']}")
                for p in t["partitions"]:
                    key = (t["name"], p["partition_index"])
                    if key in got:
                        fail(f"partition {key} on two pages")
                    got[key] = (p["leader_id"], list(p["replica_nodes"]), sorted(p["isr_nodes"]))
            cursor = resp["next_cursor"]
            if cursor is None or pages > 10:
                break
    finally:
        kp.close()
    if got != want or pages != 4:
        fail(f"kafka-python paged {pages} times: {got} (Metadata: {want})")
    proc = javaproc.Proc(cl, "describe-topics", "describe-topics", "--topics", ",".join(sorted(TOPICS)), "--page", "2")
    if proc.wait_exit(60) != 0:
        fail(f"describe-topics exited with {proc.p.returncode}: {proc.tail()} (stderr: {proc.log_path})")
    java = {}
    for line in proc.snapshot():
        if line.startswith("PARTITION "):
            _, t, p, leader, replicas, isr = line.split()
            java[(t, int(p))] = (int(leader.split("=")[1]), [int(r) for r in replicas.split("=")[1].split(",")],
                                 sorted(int(r) for r in isr.split("=")[1].split(",")))
    if java != want:
        fail(f"Admin.describeTopics(partitionSizeLimitPerResponse=2): {java} (Metadata: {want})")
    print(f"# describe-topic-partitions: {len(want)} partitions of two topics in {pages} pages of 2 (kafka-python), "
          f"and through kafka-clients' describeTopics paged by 2: the same leaders, replicas and ISRs as Metadata",
          flush=True)
