"""For the cluster suite's Java checks (clients_failover.py, eos_failover.py, broker_only.py):
java/TxnClient.java (kafka-clients 4.3.0) processes, one JVM per step (lib/lineproc.py: stdout
lines collected by a reader thread, stderr in a log file in the cluster's work dir, killed by PID
only; run.sh compiles TxnClient and exports SLUICE_TXN_CLASSPATH); and a precondition the checks
share."""

import os

from cluster import metadata
from compat import fail
from lineproc import LineProc
from replicated import wait_for

JAVA_OPTS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
_started = [0]


def all_brokers_listed(cl):
    """Waits until a live node's Metadata lists every live node (a node can be briefly fenced
    just after a start or restart)."""
    want = sorted(n.id for n in cl.live())
    wait_for(f"brokers {want} all listed", lambda: sorted(metadata(cl.live()[0].port)[0]) == want, 30)


def classpath():
    cp = os.environ.get("SLUICE_TXN_CLASSPATH")
    if not cp:
        fail(os.environ.get("SLUICE_TXN_CLASSPATH_ERROR")
             or "SLUICE_TXN_CLASSPATH is not set (run through compat-tests/cluster/run.sh)")
    return cp


class Proc(LineProc):
    """A background `TxnClient --bootstrap-server BS CMD ARGS...`."""

    def __init__(self, cl, name, cmd, *args, bootstrap=None):
        _started[0] += 1
        argv = ["java", *JAVA_OPTS, "-cp", classpath(), "TxnClient", "--bootstrap-server",
                bootstrap or cl.bootstrap(), cmd, *map(str, args)]
        super().__init__(name, argv, os.path.join(cl.work, f"txnclient-{_started[0]:02d}-{name}.log"))


def parse_java(lines):
    """(acks {i: (partition, offset, seconds)}, errors {i: reason}, sent) from produce-acks."""
    acks, errors, sent = {}, {}, None
    for ln in lines:
        f = ln.split(" ", 2)
        if f[0] == "ACK":
            i, p, o, ms = map(int, ln.split()[1:])
            acks[i] = (p, o, ms / 1000)
        elif f[0] == "ERR":
            errors[int(f[1])] = f[2] if len(f) > 2 else ""
        elif f[0] == "SENT":
            sent = int(f[1])
    return acks, errors, sent
