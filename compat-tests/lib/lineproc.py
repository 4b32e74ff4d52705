"""A background process whose stdout lines are collected by a reader thread (for the suites'
Java helpers: transactions/suite.py and cluster/javaproc.py), its stderr appended to a log file,
killed by PID only."""

import os
import signal
import subprocess
import threading
import time

from compat import fail


class LineProc:
    def __init__(self, name, argv, log_path):
        self.name = name
        self.log_path = log_path
        self.lines = []
        self.times = []  # time.monotonic() at which each line was read
        self.cond = threading.Condition()
        with open(log_path, "ab") as err:
            self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.times.append(time.monotonic())
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.lines)

    def wait_line(self, pred, seconds, what, start=0):
        """(index, line) of the first line from `start` matching pred; fails after `seconds` or if
        the process exits first."""
        end = time.monotonic() + seconds
        with self.cond:
            while True:
                for i in range(start, len(self.lines)):
                    if pred(self.lines[i]):
                        return i, self.lines[i]
                start = len(self.lines)
                if self.p.poll() is not None and not self.t.is_alive():
                    fail(f"{self.name} exited with {self.p.returncode} before {what}; last lines: {self.tail()} "
                         f"(stderr: {self.log_path})")
                left = end - time.monotonic()
                if left <= 0:
                    fail(f"{self.name}: no {what} within {seconds} s; last lines: {self.tail()}")
                self.cond.wait(min(left, 0.5))

    def line_time(self, i):
        with self.cond:
            return self.times[i]

    def wait_exit(self, seconds):
        """The exit status once stdout is drained, or None if still running after `seconds`."""
        try:
            rc = self.p.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None
        self.t.join(timeout=10)
        return rc

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.t.join(timeout=5)

    def tail(self, n=6):
        with self.cond:
            lines = self.lines[-n:]
        return " | ".join(lines) if lines else "(no output)"
