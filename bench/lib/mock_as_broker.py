#!/usr/bin/env python3
"""A stand-in for the Sluice binary, to test bench/run.sh itself without a working broker.

    SLUICE_BIN=bench/lib/mock_as_broker.py bench/run.sh

Takes the same `--override listeners=PLAINTEXT://HOST:PORT` arguments as sluice (ignores the
rest), keeps librdkafka's mock cluster alive inside an idle rdkafka_performance process, and
forwards connections made to HOST:PORT to it. The mock advertises its own address in Metadata,
so after bootstrapping the clients talk to the mock directly. The figures it gives are the
mock's, not Sluice's: use it only to check the script. C1 fails with it: the mock keeps only
the last ~5 MiB / 100,000 messages of each partition, so "from the beginning" is not 2M messages.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading


def main():
    listen = None
    args = sys.argv[1:]
    for i, a in enumerate(args):
        if a == "--override" and i + 1 < len(args) and args[i + 1].startswith("listeners="):
            m = re.match(r"listeners=\w+://([^:]+):(\d+)", args[i + 1])
            listen = (m.group(1), int(m.group(2)))
    if not listen:
        sys.exit("mock_as_broker: need --override listeners=PLAINTEXT://HOST:PORT")
    rp = os.environ.get("RP")  # exported by bench/run.sh
    if not rp:
        sys.exit("mock_as_broker: set RP to the rdkafka_performance binary")
    child = subprocess.Popen([rp, "-P", "-I", "-t", "mock-keepalive", "-X", "test.mock.num.brokers=1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(*_):
        child.terminate()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    target = None
    for line in child.stderr:
        m = re.search(r"replaced with (127\.0\.0\.1):(\d+)", line)
        if m:
            target = (m.group(1), int(m.group(2)))
            break
    if not target:
        child.terminate()
        sys.exit("mock_as_broker: the mock cluster did not start")
    threading.Thread(target=lambda: [None for _ in child.stderr], daemon=True).start()

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(listen)
    srv.listen(64)
    print("mock_as_broker: %s:%d -> mock at %s:%d" % (listen + target), flush=True)

    def pipe(a, b):
        try:
            while True:
                d = a.recv(1 << 16)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    while True:
        c, _ = srv.accept()
        try:
            u = socket.create_connection(target)
        except OSError:
            c.close()
            continue
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()


if __name__ == "__main__":
    main()
