"""Security (issue #14), the TLS part: SSL listeners beside the PLAINTEXT one, with test
certificates made at test time by the openssl command (a CA, a broker certificate with SAN
localhost and 127.0.0.1, a client certificate), and real clients over them.

This suite runs its own broker (lib/broker.py) with three listeners: PLAINTEXT (run.sh's port),
SSL (ssl.client.auth=requested) and MTLS (an SSL listener with ssl.client.auth=required), each
given its endpoints in Metadata. Checks:
  <client>.ssl    confluent-kafka (librdkafka), Debian's kcat (librdkafka 2.0), kafka-python and
                  kafka-clients 4.3.0 (TlsCheck.java) produce and read back over SSL, trusting
                  the test CA, hostname checked (librdkafka's default https identification)
  <client>.mtls   the same with a client certificate, on the listener that requires one
  mtls.no-cert    without a client certificate the MTLS listener lets nothing through
  ssl.wrong-ca    a client trusting another CA refuses the broker (a clean client error)
  ssl.plaintext-client  a PLAINTEXT client on the SSL port fails cleanly
  ssl.garbage     garbage and a stalled half handshake on the SSL port are closed; the broker
                  goes on serving every listener
"""

import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import compat  # noqa: E402
from broker import Broker  # noqa: E402
from compat import fail  # noqa: E402

CACHE = os.environ.get("SLUICE_CACHE", os.path.expanduser("~/.cache/sluice"))
JARS = os.path.join(CACHE, "java", "kafka-4.3.0")
WORK = os.path.dirname(os.environ["SLUICE_BROKER_LOG"])
PKI = os.path.join(WORK, "pki")
N = 50


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, cwd=PKI)
    if r.returncode != 0:
        fail(f"openssl {' '.join(args[:2])}: {r.stderr[-300:]}")


def make_pki():
    """ca.pem (+ other-ca.pem, a CA nobody uses), broker.pem (key + chain), client.crt/.key/.pem."""
    os.makedirs(PKI, exist_ok=True)
    for ca in ["ca", "other-ca"]:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                "-days", "2", "-subj", f"/CN=sluice {ca}")
    for name, san in [("broker", "subjectAltName=DNS:localhost,IP:127.0.0.1"), ("client", "subjectAltName=DNS:client")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}/O=sluice-test")
        with open(os.path.join(PKI, f"{name}.ext"), "w") as f:
            f.write(san + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
        with open(os.path.join(PKI, f"{name}.pem"), "w") as out:
            for part in [f"{name}.key", f"{name}.crt"]:
                with open(os.path.join(PKI, part)) as f:
                    out.write(f.read())


def pki(name):
    return os.path.join(PKI, name)


def ck_conf(port, mtls=False, ca="ca.pem", protocol="ssl"):
    conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": protocol}
    if protocol == "ssl":
        conf["ssl.ca.location"] = pki(ca)
    if mtls:
        conf.update({"ssl.certificate.location": pki("client.crt"), "ssl.key.location": pki("client.key")})
    return conf


def create_topic(bs, topic):
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)


def ck_roundtrip(conf, topic):
    p = Producer(dict(conf, **{"acks": "all", "message.timeout.ms": 15000}))
    errors = []
    for i in range(N):
        p.produce(topic, key=f"k{i}", value=f"ck-{i}", partition=0,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    left = p.flush(20)
    if left or errors:
        fail(f"produce over TLS: {left} unsent, errors {errors[:2]}")
    got = [m.value().decode() for m in compat.read_partition(conf, topic, count=N)]
    if got != [f"ck-{i}" for i in range(N)]:
        fail(f"read {len(got)} of {N}")


def ck_fails(conf, what):
    """Metadata through `conf` must fail within 10 s (and the client must survive it)."""
    admin = AdminClient(dict(conf, **{"socket.timeout.ms": 5000}))
    try:
        admin.list_topics(timeout=8)
    except Exception as e:  # noqa: BLE001 - the failure is the point
        print(f"# {what}: {type(e).__name__}: {str(e)[:120]}", flush=True)
        return
    fail(f"{what}: the request succeeded")


def kcat(port, topic, mtls=False):
    base = ["kcat", "-b", f"127.0.0.1:{port}", "-X", "security.protocol=ssl", "-X", f"ssl.ca.location={pki('ca.pem')}"]
    if mtls:
        base += ["-X", f"ssl.certificate.location={pki('client.crt')}", "-X", f"ssl.key.location={pki('client.key')}"]
    lines = "".join(f"kcat-{i}\n" for i in range(N))
    r = subprocess.run(base + ["-P", "-t", topic, "-p", "0"], input=lines, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail(f"kcat -P: {r.stderr[-300:]}")
    r = subprocess.run(base + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"], capture_output=True,
                       text=True, timeout=60)
    got = [ln for ln in r.stdout.splitlines() if ln.startswith("kcat-")]
    if r.returncode != 0 or got != [f"kcat-{i}" for i in range(N)]:
        fail(f"kcat -C: exit {r.returncode}, {len(got)} lines, {r.stderr[-300:]}")


def kafka_python(port, topic, mtls=False):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    conf = {"bootstrap_servers": f"127.0.0.1:{port}", "security_protocol": "SSL", "ssl_cafile": pki("ca.pem")}
    if mtls:
        conf.update({"ssl_certfile": pki("client.crt"), "ssl_keyfile": pki("client.key")})
    p = KafkaProducer(acks="all", **conf)
    offsets = [p.send(topic, key=f"k{i}".encode(), value=f"kp-{i}".encode(), partition=0).get(15).offset for i in range(N)]
    p.close()
    c = KafkaConsumer(enable_auto_commit=False, **conf)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek(tp, offsets[0])
        got = []
        for _ in compat.deadline_loop(30, step=0):
            if len(got) >= N:
                break
            for recs in c.poll(500).values():
                got += [r.value.decode() for r in recs]
        if got[:N] != [f"kp-{i}" for i in range(N)]:
            fail(f"kafka-python read {len(got)} of {N}")
    finally:
        c.close()


def java(port, topic, mtls=False):
    if not os.path.exists(os.path.join(JARS, ".complete")):
        fail(f"no kafka-clients jars in {JARS}")
    props = ["security.protocol=SSL", "ssl.truststore.type=PEM", f"ssl.truststore.location={pki('ca.pem')}"]
    if mtls:
        props += ["ssl.keystore.type=PEM", f"ssl.keystore.location={pki('client.pem')}"]
    r = subprocess.run(["java", "-cp", os.path.join(JARS, "*"), os.path.join(HERE, "TlsCheck.java"),
                        f"127.0.0.1:{port}", topic, str(N), *props],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode != 0 or f"ok {N}" not in r.stdout:
        fail(f"TlsCheck exit {r.returncode}: {r.stdout[-400:]} {r.stderr[-600:]}")


def garbage(bs, ssl_port):
    # Garbage where a ClientHello should be, and a half handshake left hanging.
    junk = socket.create_connection(("127.0.0.1", ssl_port), timeout=10)
    junk.sendall(b"\x16\x03\x01\xff\xff" + os.urandom(2048))
    stall = socket.create_connection(("127.0.0.1", ssl_port), timeout=10)
    stall.sendall(b"\x16\x03\x01\x02\x00\x01")
    junk.settimeout(10)
    try:
        while junk.recv(4096):
            pass
    except OSError:
        pass
    # The broker still serves the PLAINTEXT and SSL listeners.
    AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10)
    AdminClient(ck_conf(ssl_port)).list_topics(timeout=10)
    stall.close()
    junk.close()


def main():
    bs = compat.bootstrap()
    port = int(os.environ["SLUICE_PORT"])
    ssl_port, mtls_port = free_port(), free_port()
    s = compat.Suite("security")
    ok, _ = s.check("pki", make_pki)
    if not ok:
        s.finish()
    broker = Broker("security", overrides=[
        f"listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},MTLS://127.0.0.1:{mtls_port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL",
        f"ssl.keystore.location={pki('broker.pem')}",
        f"ssl.truststore.location={pki('ca.pem')}",
        "listener.name.ssl.ssl.client.auth=requested",
        "listener.name.mtls.ssl.client.auth=required",
    ])
    ok, _ = s.check("start", broker.start)
    if not ok:
        s.finish()
    try:
        for client, fn in [("confluent-kafka", lambda p, t, m: ck_roundtrip(ck_conf(p, mtls=m), t)),
                           ("kcat", kcat), ("kafka-python", kafka_python), ("java", java)]:
            for mode, p, mtls in [("ssl", ssl_port, False), ("mtls", mtls_port, True)]:
                topic = f"tls-{client}-{mode}"
                create_topic(bs, topic)
                s.check(f"{client}.{mode}", fn, p, topic, mtls)
        s.check("mtls.no-cert", ck_fails, ck_conf(mtls_port), "no client certificate on the MTLS listener")
        s.check("ssl.wrong-ca", ck_fails, ck_conf(ssl_port, ca="other-ca.pem"), "a client trusting another CA")
        s.check("ssl.plaintext-client", ck_fails, ck_conf(ssl_port, protocol="plaintext"),
                "a PLAINTEXT client on the SSL port")
        s.check("ssl.garbage", garbage, bs, ssl_port)
    finally:
        broker.stop()
    s.finish()


if __name__ == "__main__":
    main()
