"""The cluster suite's racks check (issue 12), on three nodes of its own: broker.rack r1, r1, r2.
DescribeCluster (kafka-python's describe_cluster) and Metadata (kafka-python's cluster view)
show each broker's rack, and a new topic's partitions (RF 2, no assignment given) each get a
replica in both racks, leaders spread over the three brokers (Kafka's rack-aware placement)."""

import os

from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from cluster import Cluster
from compat import fail
from replicated import partitions, wait_for

TOPIC = "cluster-racks"
RACKS = {1: "r1", 2: "r1", 3: "r2"}


def racks():
    work = os.path.join(os.environ["SLUICE_DATA_DIR"], "racks")
    os.makedirs(work, exist_ok=True)
    cl = Cluster(3, overrides=["auto.leader.rebalance.enable=false"], work=work)
    for n in cl.nodes:
        n.extra = [f"broker.rack={RACKS[n.id]}"]
    try:
        cl.start()
        kp = KafkaAdminClient(bootstrap_servers=cl.bootstrap(), client_id="compat-racks")
        try:
            described = {b["broker_id"]: b["rack"] for b in kp.describe_cluster()["brokers"]}
            # The brokers of the client's last Metadata response.
            in_metadata = {b.node_id: b.rack for b in kp._manager.cluster.brokers()}
        finally:
            kp.close()
        if described != RACKS or in_metadata != RACKS:
            fail(f"racks: DescribeCluster {described}, Metadata {in_metadata}")
        admin = AdminClient({"bootstrap.servers": cl.bootstrap()})
        admin.create_topics([NewTopic(TOPIC, 6, 2)])[TOPIC].result(timeout=30)
        parts, _ = wait_for("every partition led", lambda: (lambda ps: ps if all(v[1] >= 0 for v in ps.values())
                                                             else None)(partitions(cl, TOPIC)), 30)
        spans = {p: sorted({RACKS[r] for r in v[2]}) for p, v in parts.items()}
        if any(s != ["r1", "r2"] for s in spans.values()):
            fail(f"partitions not spread over both racks: {({p: v[2] for p, v in parts.items()})}")
        leaders = sorted(v[1] for v in parts.values())
        if leaders != [1, 1, 2, 2, 3, 3]:
            fail(f"leaders {leaders}")
    except BaseException:
        cl.print_logs(25)
        raise
    finally:
        cl.stop()
    print(f"# racks: DescribeCluster and Metadata show {RACKS}; 6 partitions of RF 2 each on both racks "
          f"({({p: v[2] for p, v in sorted(parts.items())})}), two leaders a broker", flush=True)
