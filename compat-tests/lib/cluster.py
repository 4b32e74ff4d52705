"""Several broker processes on loopback forming one cluster (combined broker+controller nodes),
started, SIGTERMed, kill -9ed and SIGSTOPped by PID only.

Each node gets a client port and a controller port (free ports picked here), a data dir and a
log file under the suite's work dir; `controller.quorum.voters` lists every controller node.
`add_broker` adds a broker-only node (`process.roles=broker`, no controller listener). With a
`Netns`, each node runs in its own network namespace, so links between nodes can be cut. Every start
appends a banner to the node's log and its PID to SLUICE_PID_FILE's directory (`node<i>.pid`), so
run.sh can stop what a timed-out suite left behind.
"""

import os
import signal
import socket
import struct
import subprocess

import compat
from compat import fail


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, cluster, node_id, controller=True):
        self.cluster = cluster
        self.id = node_id
        # Loopback, or this node's address inside its own network namespace (see Netns).
        self.host = cluster.net.host(node_id) if cluster.net else "127.0.0.1"
        # A voter of the controller quorum (process.roles=broker,controller), or broker-only.
        self.controller = controller
        self.port = free_port()
        self.cport = free_port()
        self.data = os.path.join(cluster.work, f"data{node_id}")
        self.log_path = os.path.join(cluster.work, f"node{node_id}.log")
        self.proc = None
        self.starts = 0
        self.extra = []
        self.paused = False

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def args(self):
        voters = ",".join(f"{n.id}@{n.host}:{n.cport}" for n in self.cluster.nodes if n.controller)
        listeners = f"PLAINTEXT://{self.host}:{self.port}"
        if self.controller:
            listeners += f",CONTROLLER://{self.host}:{self.cport}"
        args = [self.cluster.bin, "--override", f"node.id={self.id}", "--override", f"listeners={listeners}",
                "--override", f"controller.quorum.voters={voters}", "--override", f"log.dirs={self.data}",
                "--override", "metrics.listener="]
        if not self.controller:
            args += ["--override", "process.roles=broker"]
        for kv in self.cluster.overrides + self.extra:
            args += ["--override", kv]
        return args

    def start(self, wait=True):
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== node {self.id}: start #{self.starts} =====\n".encode())
        log.flush()
        # `ip netns exec` execs the broker: the PID is the broker's.
        prefix = self.cluster.net.exec_prefix(self.id) if self.cluster.net else []
        self.proc = subprocess.Popen(prefix + self.args(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        with open(os.path.join(self.cluster.work, f"node{self.id}.pid"), "w") as f:
            f.write(str(self.proc.pid))
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout=60):
        """The client listener is bound once the node has joined the quorum and is unfenced."""
        for _ in compat.deadline_loop(timeout, step=0.1):
            if self.proc.poll() is not None:
                fail(f"node {self.id} exited with {self.proc.returncode} during start #{self.starts}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
        fail(f"node {self.id} not listening on {self.port} {timeout} s after start #{self.starts}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None and not self.paused

    def pause(self):
        """SIGSTOP: the process stays, silent (its connections accept nothing)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM, then SIGKILL after 15 s; the exit status (None if it was not running)."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return "killed after 15 s"

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return []


class Cluster:
    def __init__(self, size, overrides=(), net=None, work=None):
        self.bin = os.environ["SLUICE_BIN"]
        self.work = work or os.environ["SLUICE_DATA_DIR"]
        self.net = net
        self.overrides = list(overrides)
        self.nodes = []
        self.nodes = [Node(self, i) for i in range(1, size + 1)]

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    def add_broker(self):
        """A broker-only node (process.roles=broker) joining later: not started yet."""
        n = Node(self, max(m.id for m in self.nodes) + 1, controller=False)
        self.nodes.append(n)
        return n

    def start(self):
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait_listening()

    def live(self):
        return [n for n in self.nodes if n.alive()]

    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.live())

    def stop(self):
        return {n.id: n.stop() for n in self.nodes}

    def print_logs(self, lines=15):
        for n in self.nodes:
            print(f"# --- last lines of node {n.id}'s log ({n.log_path})", flush=True)
            for line in n.log_tail(lines):
                print(f"#   {line[:300]}", flush=True)


# ------------------------------------------------------------------ network namespaces

class Netns:
    """Each node in its own network namespace, joined by one bridge in the test's namespace
    (which the clients use, at .254): node i is 10.213.7.i. `cut(a, b)` puts blackhole routes
    between the two groups of nodes, both ways: packets of established connections vanish
    (silence, as a cut cable) and new connections fail at once; clients still reach every node.
    Needs root and iproute2 (`ip netns`); names are fixed so that a rerun removes what a killed
    run left behind."""

    PREFIX = "sluicecut"
    NET = "10.213.7"

    def __init__(self, size):
        self.size = size
        self.bridge = f"{self.PREFIX}br"
        self.cuts = set()

    def ns(self, node_id):
        return f"{self.PREFIX}{node_id}"

    def host(self, node_id):
        return f"{self.NET}.{node_id}"

    def exec_prefix(self, node_id):
        return ["ip", "netns", "exec", self.ns(node_id)]

    @staticmethod
    def ip(*args, check=True):
        r = subprocess.run(["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check and r.returncode != 0:
            fail(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
        return r.returncode == 0

    def setup(self):
        self.teardown()
        self.ip("link", "add", self.bridge, "type", "bridge")
        self.ip("addr", "add", f"{self.NET}.254/24", "dev", self.bridge)
        self.ip("link", "set", self.bridge, "up")
        for i in range(1, self.size + 1):
            ns, veth = self.ns(i), f"{self.PREFIX}v{i}"
            self.ip("netns", "add", ns)
            self.ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.ip("link", "set", veth, "master", self.bridge, "up")
            self.ip("-n", ns, "addr", "add", f"{self.host(i)}/24", "dev", "eth0")
            self.ip("-n", ns, "link", "set", "eth0", "up")
            self.ip("-n", ns, "link", "set", "lo", "up")

    def teardown(self):
        for i in range(1, self.size + 1):
            self.ip("netns", "del", self.ns(i), check=False)  # its veth end goes with it
            self.ip("link", "del", f"{self.PREFIX}v{i}", check=False)
        self.ip("link", "del", self.bridge, check=False)

    def cut(self, group_a, group_b):
        for a in group_a:
            for b in group_b:
                for x, y in ((a, b), (b, a)):
                    self.ip("-n", self.ns(x), "route", "add", "blackhole", f"{self.host(y)}/32")
                    self.cuts.add((x, y))

    def heal(self):
        for x, y in sorted(self.cuts):
            self.ip("-n", self.ns(x), "route", "del", "blackhole", f"{self.host(y)}/32", check=False)
        self.cuts.clear()

    @staticmethod
    def available():
        """(True, "") when namespaces can be made here, else (False, why)."""
        name = "sluicecutprobe"
        try:
            r = subprocess.run(["ip", "netns", "add", name], stdin=subprocess.DEVNULL, capture_output=True,
                               text=True)
        except OSError as e:
            return False, str(e)
        if r.returncode != 0:
            return False, r.stderr.strip() or "ip netns add failed"
        subprocess.run(["ip", "netns", "del", name], stdin=subprocess.DEVNULL, capture_output=True)
        return True, ""


# ------------------------------------------------------------------ raw requests (no client)

def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return bytes(buf)


class Reader:
    def __init__(self, b):
        self.b, self.at = b, 0

    def take(self, n):
        self.at += n
        return self.b[self.at - n:self.at]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self):
        return [self.i32() for _ in range(self.i32())]


def request(port, api, version, body, client=b"compat-cluster", host="127.0.0.1", timeout=10):
    frame = struct.pack(">hhi", api, version, 1) + struct.pack(">h", len(client)) + client + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        r = Reader(recv_exact(s, size))
    r.i32()  # correlation id
    return r


def metadata(port, topics=None, host="127.0.0.1", timeout=10, epochs=False):
    """Metadata v5: (brokers {id: port}, cluster id, controller id, {topic: {partition: (error,
    leader, replicas, isr, offline)}}); v7 adds each partition's leader epoch, with `epochs`
    the tuple's sixth member."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for t in topics:
            body += struct.pack(">h", len(t)) + t.encode()
    r = request(port, 3, 7 if epochs else 5, body + b"\x00", host=host, timeout=timeout)
    r.i32()  # throttle
    brokers = {}
    for _ in range(r.i32()):
        node_id, _host, bport, _rack = r.i32(), r.string(), r.i32(), r.string()
        brokers[node_id] = bport
    cluster_id, controller = r.string(), r.i32()
    out = {}
    for _ in range(r.i32()):
        r.i16()
        name = r.string()
        r.take(1)
        parts = {}
        for _ in range(r.i32()):
            error = r.i16()
            index = r.i32()
            leader = r.i32()
            if epochs:
                epoch = r.i32()
                parts[index] = (error, leader, r.array(), r.array(), r.array(), epoch)
            else:
                parts[index] = (error, leader, r.array(), r.array(), r.array())
        out[name] = parts
    return brokers, cluster_id, controller, out


def _uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_uvarint(r):
    shift = value = 0
    while True:
        b = r.take(1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7


def _skip_tags(r):
    for _ in range(_read_uvarint(r)):
        _read_uvarint(r)
        r.take(_read_uvarint(r))


def describe_quorum(port, host="127.0.0.1", timeout=10):
    """DescribeQuorum v0 (flexible) for __cluster_metadata-0, sent to a broker, which asks the
    quorum's leader: (error code, leader id, leader epoch, high watermark, {voter: log end},
    {observer: log end})."""
    client, topic = b"compat-cluster", b"__cluster_metadata"
    header = struct.pack(">hhi", 55, 0, 1) + struct.pack(">h", len(client)) + client + b"\x00"
    body = (_uvarint(2) + _uvarint(len(topic) + 1) + topic + _uvarint(2) + struct.pack(">i", 0)
            + b"\x00" + b"\x00" + b"\x00")
    frame = header + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", recv_exact(s, 4))[0]
        r = Reader(recv_exact(s, size))
    r.i32()  # correlation id
    _skip_tags(r)
    error = r.i16()
    topics = _read_uvarint(r) - 1
    if error or topics < 1:
        return error, -1, -1, -1, {}, {}
    r.take(_read_uvarint(r) - 1)  # topic name
    _read_uvarint(r)  # partitions: one
    r.i32()
    error, leader, epoch, hw = r.i16(), r.i32(), r.i32(), r.i64()

    def replicas():
        out = {}
        for _ in range(_read_uvarint(r) - 1):
            rid, leo = r.i32(), r.i64()
            _skip_tags(r)
            out[rid] = leo
        return out

    voters = replicas()
    observers = replicas()
    return error, leader, epoch, hw, voters, observers


def quorum_leader(port, host="127.0.0.1", timeout=10):
    """The quorum's leader as DescribeQuorum through broker `port` reports it (None if none
    answered)."""
    error, leader, *_ = describe_quorum(port, host=host, timeout=timeout)
    return None if error else leader


def list_offsets_latest(port, topic, partition):
    """ListOffsets v1 (latest) straight to one broker: (error code, offset)."""
    name = topic.encode()
    body = (struct.pack(">i", -1) + struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
            + struct.pack(">i", 1) + struct.pack(">iq", partition, -1))
    r = request(port, 2, 1, body)
    r.i32()
    r.string()
    r.i32()
    r.i32()  # partition
    error = r.i16()
    r.i64()  # timestamp
    return error, r.i64()
