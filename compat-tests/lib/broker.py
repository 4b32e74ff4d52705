"""The broker process of a self-managed suite (crash, groups-restart): started, SIGTERMed and
kill -9ed by PID only, on the port, data dir and log file compat-tests/run.sh hands over
(SLUICE_BIN, SLUICE_PORT, SLUICE_DATA_DIR, SLUICE_BROKER_LOG, SLUICE_PID_FILE).

Every start appends a banner "===== <label>: broker start #N =====" to the broker log and writes
the PID to SLUICE_PID_FILE, so run.sh can stop a broker the suite left behind (timeout).
"""

import os
import signal
import socket
import subprocess

import compat
from compat import fail


class Broker:
    """The broker process under test, started and killed by PID only.

    `overrides`: extra `--override key=value` settings, after listeners and log.dirs; `data`: a
    data dir other than run.sh's."""

    def __init__(self, label, overrides=(), data=None):
        self.label = label
        self.overrides = list(overrides)
        self.bin = os.environ["SLUICE_BIN"]
        self.port = int(os.environ["SLUICE_PORT"])
        self.data = data or os.environ["SLUICE_DATA_DIR"]
        self.log_path = os.environ["SLUICE_BROKER_LOG"]
        self.pid_file = os.environ.get("SLUICE_PID_FILE")
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        listener = f"PLAINTEXT://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        log.write(f"\n===== {self.label}: broker start #{self.starts} =====\n".encode())
        log.flush()
        args = [self.bin, "--override", f"listeners={listener}", "--override", f"advertised.listeners={listener}",
                "--override", f"log.dirs={self.data}"]
        # The Prometheus endpoint on the port run.sh picked (never the default 9644, which another
        # broker on this machine may hold).
        metrics_port = os.environ.get("SLUICE_METRICS_PORT")
        args += ["--override", f"metrics.listener=127.0.0.1:{metrics_port}" if metrics_port else "metrics.listener="]
        for kv in self.overrides:
            args += ["--override", kv]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        if self.pid_file:
            with open(self.pid_file, "w") as f:
                f.write(str(self.proc.pid))
        for _ in compat.deadline_loop(30, step=0.1):
            if self.proc.poll() is not None:
                fail(f"broker exited with {self.proc.returncode} during start #{self.starts}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
        fail(f"broker not listening on port {self.port} 30 s after start #{self.starts}")

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s. Returns the exit status, None if it was not running,
        or "killed after 10 s"."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return "killed after 10 s"
