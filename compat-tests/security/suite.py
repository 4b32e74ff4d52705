"""Security (issue #14): TLS and SASL listeners beside the PLAINTEXT one, with test
certificates made at test time by the openssl command (a CA, a broker certificate with SAN
localhost and 127.0.0.1, a client certificate), and real clients over them.

This suite runs its own broker (lib/broker.py) with six listeners: PLAINTEXT (run.sh's port),
SSL (ssl.client.auth=requested), MTLS (an SSL listener with ssl.client.auth=required), SASLP
(SASL_PLAINTEXT) and SASLS (SASL_SSL) with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and REAUTH
(SASL_PLAINTEXT, PLAIN only, sessions of 3 s: connections.max.reauth.ms). PLAIN users come from
Kafka's JAAS line; SCRAM users are created by the Java Admin client and by confluent-kafka
(AlterUserScramCredentials). Checks:
  <client>.ssl    confluent-kafka (librdkafka), Debian's kcat (librdkafka 2.0), kafka-python and
                  kafka-clients 4.3.0 (ClientCheck.java) produce and read back over SSL, trusting
                  the test CA, hostname checked (librdkafka's default https identification)
  <client>.mtls   the same with a client certificate, on the listener that requires one
  <client>.<saslp|sasls>.<mechanism>  the same four clients over SASL_PLAINTEXT and SASL_SSL
                  with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
  mtls.no-cert    without a client certificate the MTLS listener lets nothing through
  ssl.wrong-ca    a client trusting another CA refuses the broker (a clean client error)
  ssl.plaintext-client  a PLAINTEXT client on the SSL port fails cleanly
  ssl.garbage     garbage and a stalled half handshake on the SSL port are closed; the broker
                  goes on serving every listener
  sasl.*          wrong password, unknown user, a mechanism the listener does not enable, a
                  PLAINTEXT client on a SASL port: each fails with Kafka's error (the Java
                  client's SaslAuthenticationException), and the broker serves the others
  sasl.hostile    before authentication: a request other than ApiVersions/SaslHandshake, an
                  oversize SASL token and a huge length prefix are closed at once
  reauth.*        the Java client and librdkafka produce across several 3 s sessions
                  (re-authenticating, KIP-368, counted by the broker's metric); a raw client
                  that lets its session expire is closed at its next request
  scram.*         users described (DescribeUserScramCredentials) and still valid after a restart;
                  two alterations of one user in one request are DUPLICATE_RESOURCE, as in Kafka
"""

import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from confluent_kafka import KafkaError, Producer  # noqa: E402
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


AUTH_FAILED = KafkaError._AUTHENTICATION
PLAIN_USER, SCRAM_USER = ("alice", "alice-secret"), ("scott", "tiger")
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
        'password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')


class Endpoint:
    """How a client reaches one listener: port, protocol, TLS material, SASL credentials."""

    def __init__(self, port, protocol, mtls=False, ca="ca.pem", mechanism=None, user=None, password=None):
        self.port, self.protocol, self.mtls, self.ca = port, protocol, mtls, ca
        self.mechanism, self.user, self.password = mechanism, user, password
        if mechanism and user is None:
            self.user, self.password = PLAIN_USER if mechanism == "PLAIN" else SCRAM_USER

    def tls(self):
        return self.protocol in ("ssl", "sasl_ssl")

    def sasl(self):
        return self.protocol.startswith("sasl")

    def librdkafka(self):
        conf = {"bootstrap.servers": f"127.0.0.1:{self.port}", "security.protocol": self.protocol}
        if self.tls():
            conf["ssl.ca.location"] = pki(self.ca)
        if self.mtls:
            conf.update({"ssl.certificate.location": pki("client.crt"), "ssl.key.location": pki("client.key")})
        if self.sasl():
            conf.update({"sasl.mechanisms": self.mechanism, "sasl.username": self.user,
                         "sasl.password": self.password})
        return conf

    def kafka_python(self):
        conf = {"bootstrap_servers": f"127.0.0.1:{self.port}", "security_protocol": self.protocol.upper()}
        if self.tls():
            conf["ssl_cafile"] = pki(self.ca)
        if self.mtls:
            conf.update({"ssl_certfile": pki("client.crt"), "ssl_keyfile": pki("client.key")})
        if self.sasl():
            conf.update({"sasl_mechanism": self.mechanism, "sasl_plain_username": self.user,
                         "sasl_plain_password": self.password})
        return conf

    def java(self):
        props = [f"security.protocol={self.protocol.upper()}"]
        if self.tls():
            props += ["ssl.truststore.type=PEM", f"ssl.truststore.location={pki(self.ca)}"]
        if self.mtls:
            props += ["ssl.keystore.type=PEM", f"ssl.keystore.location={pki('client.pem')}"]
        if self.sasl():
            module = "plain.PlainLoginModule" if self.mechanism == "PLAIN" else "scram.ScramLoginModule"
            props += [f"sasl.mechanism={self.mechanism}",
                      f"sasl.jaas.config=org.apache.kafka.common.security.{module} required "
                      f'username="{self.user}" password="{self.password}";']
        return props


def create_topic(bs, topic):
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)


def ck_roundtrip(ep, topic, pause=0.0):
    conf = ep.librdkafka()
    p = Producer(dict(conf, **{"acks": "all", "message.timeout.ms": 15000}))
    errors = []
    for i in range(N):
        p.produce(topic, key=f"k{i}", value=f"ck-{i}", partition=0,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        if pause:
            p.flush(10)
            time.sleep(pause)
    left = p.flush(20)
    if left or errors:
        fail(f"produce: {left} unsent, errors {errors[:2]}")
    got = [m.value().decode() for m in compat.read_partition(conf, topic, count=N)]
    if got != [f"ck-{i}" for i in range(N)]:
        fail(f"read {len(got)} of {N}")


def ck_fails(ep, what, expect=None):
    """Metadata through `ep` must fail within 10 s (and the client must survive it); with
    `expect`, librdkafka must have reported that error (e.g. _AUTHENTICATION) on the way."""
    errors = []
    admin = AdminClient(dict(ep.librdkafka(), **{"socket.timeout.ms": 5000, "error_cb": errors.append}))
    try:
        admin.list_topics(timeout=8)
    except Exception as e:  # noqa: BLE001 - the failure is the point
        print(f"# {what}: {type(e).__name__}: {str(e)[:160]}", flush=True)
        admin.poll(0)
        if expect is not None:
            if not any(err.code() == expect for err in errors):
                fail(f"{what}: expected {expect}, librdkafka reported {[str(err) for err in errors][:3]}")
            print(f"#   reported: {next(str(err) for err in errors if err.code() == expect)[:200]}", flush=True)
        return
    fail(f"{what}: the request succeeded")


def kcat(ep, topic):
    base = ["kcat", "-b", f"127.0.0.1:{ep.port}"]
    for k, v in ep.librdkafka().items():
        if k != "bootstrap.servers":
            base += ["-X", f"{k}={v}"]
    lines = "".join(f"kcat-{i}\n" for i in range(N))
    r = subprocess.run(base + ["-P", "-t", topic, "-p", "0"], input=lines, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        fail(f"kcat -P: {r.stderr[-300:]}")
    r = subprocess.run(base + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"], capture_output=True,
                       text=True, timeout=60)
    got = [ln for ln in r.stdout.splitlines() if ln.startswith("kcat-")]
    if r.returncode != 0 or got != [f"kcat-{i}" for i in range(N)]:
        fail(f"kcat -C: exit {r.returncode}, {len(got)} lines, {r.stderr[-300:]}")


def kafka_python(ep, topic):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    conf = ep.kafka_python()
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


def java_run(bootstrap, topic, n, props, timeout=120):
    if not os.path.exists(os.path.join(JARS, ".complete")):
        fail(f"no kafka-clients jars in {JARS}")
    r = subprocess.run(["java", "-cp", os.path.join(JARS, "*"), os.path.join(HERE, "ClientCheck.java"),
                        bootstrap, topic, str(n), *props],
                       capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def java(ep, topic, slow=False):
    code, out, err = java_run(f"127.0.0.1:{ep.port}", ("@slow:" if slow else "") + topic, N, ep.java())
    if code != 0 or f"ok {N}" not in out:
        fail(f"ClientCheck exit {code}: {out[-400:]} {err[-600:]}")


def java_fails(ep, expected):
    code, out, err = java_run(f"127.0.0.1:{ep.port}", "sasl-never", 1, ep.java())
    if code == 0 or expected not in out:
        fail(f"expected {expected}: exit {code}, {out[-400:]} {err[-300:]}")
    print(f"# java: {out.strip()[:200]}", flush=True)


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
    AdminClient(Endpoint(ssl_port, "ssl").librdkafka()).list_topics(timeout=10)
    stall.close()
    junk.close()


# ---- raw SASL on a socket (the v1 flow, as the Java client speaks it) --------------------

def request(sock, api_key, version, body, corr=1):
    client = b"raw"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    sock.sendall(struct.pack(">i", len(header) + len(body)) + header + body)


def response(sock):
    """The response body after the correlation id, or None if the broker closed."""
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf
    try:
        head = exactly(4)
        if head is None:
            return None
        body = exactly(struct.unpack(">i", head)[0])
    except OSError:
        return None
    return None if body is None else body[4:]


def raw_login(port, user, password):
    """SaslHandshake v1 PLAIN + SaslAuthenticate v1; the socket and the session lifetime."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    request(sock, 17, 1, struct.pack(">h", 5) + b"PLAIN")
    hs = response(sock)
    if hs is None or struct.unpack(">h", hs[:2])[0] != 0:
        fail(f"handshake answered {hs!r}")
    token = b"\0" + user.encode() + b"\0" + password.encode()
    request(sock, 36, 1, struct.pack(">i", len(token)) + token, corr=2)
    auth = response(sock)
    if auth is None or struct.unpack(">h", auth[:2])[0] != 0:
        fail(f"authenticate answered {auth!r}")
    return sock, struct.unpack(">q", auth[-8:])[0]


def closed_soon(sock, seconds=5):
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def metadata_request(sock):
    request(sock, 3, 1, struct.pack(">i", -1), corr=3)


def reauth_expired(port):
    sock, lifetime = raw_login(port, *PLAIN_USER)
    if lifetime != 3000:
        fail(f"session lifetime {lifetime} ms, expected 3000")
    metadata_request(sock)
    if response(sock) is None:
        fail("closed before the session expired")
    time.sleep(3.5)
    metadata_request(sock)
    if response(sock) is not None:
        fail("a request after the session expired was answered")
    sock.close()


def hostile(port, bs):
    # A request before authentication: closed without an answer.
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    metadata_request(sock)
    if response(sock) is not None:
        fail("Metadata answered before authentication")
    # An oversize SASL token (above sasl.server.max.receive.size), then a 1 GiB length prefix.
    for size in [600_000, 1 << 30]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        request(sock, 17, 1, struct.pack(">h", 5) + b"PLAIN")
        response(sock)
        sock.sendall(struct.pack(">i", size) + b"\0" * 1024)
        if not closed_soon(sock):
            fail(f"a {size}-byte frame before authentication was not refused")
    AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10)


def reauth_counted():
    """The broker counted re-authentications (its Prometheus endpoint)."""
    metrics_port = os.environ.get("SLUICE_METRICS_PORT")
    if not metrics_port:
        fail("no SLUICE_METRICS_PORT")
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    lines = [ln for ln in text.splitlines()
             if ln.startswith("sluice_sasl_authentications_total") and 'result="reauth_success"' in ln]
    total = sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)
    if total < 2:
        fail(f"re-authentications counted: {total} ({lines})")
    print(f"# re-authentications: {total:.0f}", flush=True)


def scram_users_java(bs):
    # One user alteration per request, as Kafka's controller wants (kafka-configs does the same).
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"]:
        code, out, err = java_run(bs, "@scram-user", 0, [f"{SCRAM_USER[0]}={mech}:{SCRAM_USER[1]}"])
        if code != 0 or "ok 1" not in out:
            fail(f"Admin.alterUserScramCredentials: exit {code}: {out[-400:]} {err[-400:]}")


def scram_duplicate(bs):
    """Two alterations of one user in one request: DUPLICATE_RESOURCE, as Kafka."""
    code, out, err = java_run(bs, "@scram-user", 0, ["dave=SCRAM-SHA-256:x1", "dave=SCRAM-SHA-512:x2"])
    if code == 0 or "DuplicateResourceException" not in out:
        fail(f"expected DuplicateResourceException: exit {code}: {out[-400:]} {err[-300:]}")
    print(f"# java: {out.strip()[:200]}", flush=True)


def scram_users_ck(bs):
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
    admin = AdminClient({"bootstrap.servers": bs})
    for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        up = UserScramCredentialUpsertion("carol", ScramCredentialInfo(m, 8192), b"carol-secret")
        for f in admin.alter_user_scram_credentials([up]).values():
            f.result(timeout=30)
    described = admin.describe_user_scram_credentials().result(timeout=30)
    got = {u: sorted((i.mechanism.name, i.iterations) for i in d.scram_credential_infos)
           for u, d in described.items()}
    want = {"carol": [("SCRAM_SHA_256", 8192), ("SCRAM_SHA_512", 8192)],
            "scott": [("SCRAM_SHA_256", 4096), ("SCRAM_SHA_512", 4096)]}
    if got != want:
        fail(f"described {got}")


def main():
    bs = compat.bootstrap()
    port = int(os.environ["SLUICE_PORT"])
    ssl_port, mtls_port, saslp, sasls, reauth = (free_port() for _ in range(5))
    s = compat.Suite("security")
    ok, _ = s.check("pki", make_pki)
    if not ok:
        s.finish()
    broker = Broker("security", overrides=[
        f"listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{ssl_port},MTLS://127.0.0.1:{mtls_port},"
        f"SASLP://127.0.0.1:{saslp},SASLS://127.0.0.1:{sasls},REAUTH://127.0.0.1:{reauth}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,MTLS:SSL,SASLP:SASL_PLAINTEXT,"
        "SASLS:SASL_SSL,REAUTH:SASL_PLAINTEXT",
        f"ssl.keystore.location={pki('broker.pem')}",
        f"ssl.truststore.location={pki('ca.pem')}",
        "listener.name.ssl.ssl.client.auth=requested",
        "listener.name.mtls.ssl.client.auth=required",
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        f"listener.name.saslp.plain.sasl.jaas.config={JAAS}",
        f"listener.name.sasls.plain.sasl.jaas.config={JAAS}",
        "listener.name.reauth.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.reauth.plain.sasl.jaas.config={JAAS}",
        "listener.name.reauth.connections.max.reauth.ms=3000",
    ])
    ok, _ = s.check("start", broker.start)
    if not ok:
        s.finish()
    clients = [("confluent-kafka", ck_roundtrip), ("kcat", kcat), ("kafka-python", kafka_python), ("java", java)]
    try:
        for client, fn in clients:
            for mode, ep in [("ssl", Endpoint(ssl_port, "ssl")), ("mtls", Endpoint(mtls_port, "ssl", mtls=True))]:
                topic = f"tls-{client}-{mode}"
                create_topic(bs, topic)
                s.check(f"{client}.{mode}", fn, ep, topic)
        s.check("mtls.no-cert", ck_fails, Endpoint(mtls_port, "ssl"), "no client certificate on the MTLS listener")
        s.check("ssl.wrong-ca", ck_fails, Endpoint(ssl_port, "ssl", ca="other-ca.pem"), "a client trusting another CA")
        s.check("ssl.plaintext-client", ck_fails, Endpoint(ssl_port, "plaintext"), "a PLAINTEXT client on the SSL port")
        s.check("ssl.garbage", garbage, bs, ssl_port)

        ok, _ = s.check("scram.users-java-admin", scram_users_java, bs)
        s.check("scram.users-confluent-admin", scram_users_ck, bs)
        s.check("scram.duplicate", scram_duplicate, bs)
        for client, fn in clients:
            for mode, p, protocol in [("saslp", saslp, "sasl_plaintext"), ("sasls", sasls, "sasl_ssl")]:
                for mech in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]:
                    topic = f"sasl-{client}-{mode}-{mech.lower()}"
                    create_topic(bs, topic)
                    s.check(f"{client}.{mode}.{mech.lower()}", fn, Endpoint(p, protocol, mechanism=mech), topic)
        s.check("sasl.wrong-password", ck_fails, Endpoint(saslp, "sasl_plaintext", mechanism="PLAIN", user="alice",
                                                          password="wrong"), "a wrong PLAIN password", AUTH_FAILED)
        s.check("sasl.wrong-password-scram", ck_fails, Endpoint(sasls, "sasl_ssl", mechanism="SCRAM-SHA-512",
                                                                user="scott", password="wrong"), "a wrong SCRAM password", AUTH_FAILED)
        s.check("sasl.unknown-user", ck_fails, Endpoint(saslp, "sasl_plaintext", mechanism="SCRAM-SHA-256",
                                                        user="nobody", password="x"), "an unknown SCRAM user", AUTH_FAILED)
        s.check("sasl.wrong-mechanism", ck_fails, Endpoint(reauth, "sasl_plaintext", mechanism="SCRAM-SHA-256"),
                "SCRAM on a PLAIN-only listener", AUTH_FAILED)
        s.check("sasl.plaintext-client", ck_fails, Endpoint(saslp, "plaintext"), "a PLAINTEXT client on a SASL port")
        s.check("sasl.java-wrong-password", java_fails,
                Endpoint(sasls, "sasl_ssl", mechanism="SCRAM-SHA-256", user="scott", password="wrong"),
                "SaslAuthenticationException")
        s.check("sasl.java-wrong-mechanism", java_fails, Endpoint(reauth, "sasl_plaintext", mechanism="SCRAM-SHA-512"),
                "UnsupportedSaslMechanismException")
        s.check("sasl.hostile", hostile, saslp, bs)
        for client, fn in [("java", lambda ep, t: java(ep, t, slow=True)),
                           ("confluent-kafka", lambda ep, t: ck_roundtrip(ep, t, pause=0.15))]:
            topic = f"reauth-{client}"
            create_topic(bs, topic)
            s.check(f"reauth.{client}", fn, Endpoint(reauth, "sasl_plaintext", mechanism="PLAIN"), topic)
        s.check("reauth.counted", reauth_counted)
        s.check("reauth.expired", reauth_expired, reauth)
        # SCRAM users are in the metadata log: still there after a restart.
        broker.stop()
        ok, _ = s.check("restart", broker.start)
        if ok:
            topic = "sasl-after-restart"
            create_topic(bs, topic)
            s.check("scram.after-restart", ck_roundtrip, Endpoint(sasls, "sasl_ssl", mechanism="SCRAM-SHA-512"), topic)
    finally:
        broker.stop()
    s.finish()


if __name__ == "__main__":
    main()
