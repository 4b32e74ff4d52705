#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

Subcommands:
  freeport                       print a free TCP port on 127.0.0.1
  cpubusy SECONDS                sample /proc/stat; print "cpu0% cpu1%" busy over the window
  spawn --port P --result F --timeout S -- CMD...
                                 exec CMD in this process (so the caller's $! is the broker's
                                 pid) and, from a detached helper process pinned to CPU 1,
                                 measure the time from just before exec until a TCP connect
                                 to 127.0.0.1:P succeeds and until an ApiVersions v0 request
                                 is answered; writes JSON to F
  perfsum FILE                   parse the last rdkafka_performance summary line -> key=value
  pct FILE                       percentiles of a per-message latency file (us) -> key=value
  iperf FILE                     parse iperf3 -J output -> key=value
  startup FILE                   spawn's JSON result -> shell assignments
  cargo-exe FILE                 print the 'executable' of the sluice bin from cargo JSON output
  report RESULTS OUT             render the final table from the key=value RESULTS file
"""
import json
import os
import re
import socket
import struct
import sys
import time


def freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


def cpubusy(secs):
    def snap():
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                m = re.match(r"^(cpu\d+)\s+(.*)$", line)
                if m:
                    v = [int(x) for x in m.group(2).split()]
                    idle = v[3] + (v[4] if len(v) > 4 else 0)
                    out[m.group(1)] = (sum(v[:8]), idle)
        return out

    a = snap()
    time.sleep(float(secs))
    b = snap()
    res = []
    for cpu in sorted(a, key=lambda c: int(c[3:])):
        tot = b[cpu][0] - a[cpu][0]
        idle = b[cpu][1] - a[cpu][1]
        res.append("%.0f" % (100.0 * (tot - idle) / tot if tot else 0.0))
    print(" ".join(res))


# --------------------------------------------------------------------------- spawn

def _proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        state = st[st.rindex(")") + 2]
        return state not in ("Z", "X")
    except (OSError, ValueError, IndexError):
        return False


def _api_versions_probe(port, deadline):
    """Send ApiVersions v0, wait for the full response. Returns None or an error string."""
    s = socket.create_connection(("127.0.0.1", port), timeout=max(0.1, deadline - time.monotonic()))
    try:
        client_id = b"sluice-bench"
        body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
        s.sendall(struct.pack(">i", len(body)) + body)
        hdr = b""
        while len(hdr) < 4:
            chunk = s.recv(4 - len(hdr))
            if not chunk:
                return "connection closed before ApiVersions response"
            hdr += chunk
        (n,) = struct.unpack(">i", hdr)
        if n < 6 or n > 1 << 20:
            return "bad ApiVersions response size %d" % n
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                return "connection closed mid ApiVersions response"
            data += chunk
        corr, err = struct.unpack(">ih", data[:6])
        if corr != 7:
            return "ApiVersions correlation id %d != 7" % corr
        if err != 0:
            return "ApiVersions error code %d" % err
        return None
    finally:
        s.close()


def spawn(argv):
    port = result = None
    timeout = 30.0
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--port":
            port = int(argv[i + 1]); i += 2
        elif a == "--result":
            result = argv[i + 1]; i += 2
        elif a == "--timeout":
            timeout = float(argv[i + 1]); i += 2
        elif a == "--":
            i += 1
            break
        else:
            sys.exit("spawn: unknown option %s" % a)
    cmd = argv[i:]
    if not (port and result and cmd):
        sys.exit("spawn: need --port, --result and a command")

    parent = os.getpid()
    rfd, wfd = os.pipe()
    c = os.fork()
    if c == 0:
        # first child: fork the prober and exit at once, so the prober is not our
        # (soon to be the broker's) child and the broker never sees a stray zombie
        if os.fork() != 0:
            os._exit(0)
        os.close(wfd)
        _prober(rfd, parent, port, result, timeout)
        os._exit(0)
    os.close(rfd)
    os.waitpid(c, 0)
    t0 = time.monotonic_ns()
    os.write(wfd, struct.pack(">q", t0))
    os.close(wfd)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as e:
        sys.stderr.write("spawn: cannot exec %s: %s\n" % (cmd[0], e))
        os._exit(127)


def _prober(rfd, parent, port, result, timeout):
    try:
        os.sched_setaffinity(0, {1} if os.cpu_count() and os.cpu_count() > 1 else {0})
    except OSError:
        pass
    data = b""
    while len(data) < 8:
        chunk = os.read(rfd, 8 - len(data))
        if not chunk:
            break
        data += chunk
    os.close(rfd)
    out = {}
    if len(data) != 8:
        out["error"] = "spawner died before exec"
    else:
        (t0,) = struct.unpack(">q", data)
        deadline = time.monotonic() + timeout
        while True:
            if not _proc_alive(parent):
                out["error"] = "broker process exited before accepting TCP connections"
                break
            if time.monotonic() > deadline:
                out["error"] = "broker did not accept TCP connections within %.0f s" % timeout
                break
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
                t1 = time.monotonic_ns()
                out["connect_ms"] = (t1 - t0) / 1e6
                s.close()
                break
            except OSError:
                s.close()
                time.sleep(0.0002)
        if "connect_ms" in out:
            try:
                err = _api_versions_probe(port, deadline + 5)
                if err:
                    out["api_error"] = err
                else:
                    out["apiversions_ms"] = (time.monotonic_ns() - t0) / 1e6
            except OSError as e:
                out["api_error"] = "ApiVersions probe: %s" % e
    tmp = result + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.rename(tmp, result)


# --------------------------------------------------------------------------- parsers

PROD_RE = re.compile(
    r"^% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset (-?\d+), (\d+) failed\) "
    r"in (\d+)ms: (\d+) msgs/s and ([\d.]+) MB/s")
CONS_RE = re.compile(
    r"^% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


def perfsum(path):
    prod = cons = None
    with open(path, errors="replace") as f:
        for line in f:
            m = PROD_RE.match(line)
            if m:
                prod = m
            m = CONS_RE.match(line)
            if m:
                cons = m
    if prod:
        g = prod.groups()
        print("mode=produce")
        print("produced=%s" % g[0])
        print("bytes=%s" % g[1])
        print("delivered=%s" % g[2])
        print("failed=%s" % g[4])
        print("ms=%s" % g[5])
        print("msgs_s=%s" % g[6])
        print("mb_s=%s" % g[7])
    elif cons:
        g = cons.groups()
        print("mode=consume")
        print("consumed=%s" % g[0])
        print("bytes=%s" % g[1])
        print("ms=%s" % g[2])
        print("msgs_s=%s" % g[3])
        print("mb_s=%s" % g[4])
    else:
        print("mode=none")


def pct(path):
    vals = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                vals.append(int(line))
    vals.sort()
    n = len(vals)
    print("samples=%d" % n)
    if not n:
        return

    def q(permille):  # nearest-rank percentile
        k = -(-permille * n // 1000)
        return vals[min(n, max(1, k)) - 1]

    for name, pm in (("p50", 500), ("p99", 990), ("p999", 999)):
        print("%s_ms=%.3f" % (name, q(pm) / 1000.0))
    print("max_ms=%.3f" % (vals[-1] / 1000.0))
    print("mean_ms=%.3f" % (sum(vals) / n / 1000.0))


def iperf(path):
    with open(path) as f:
        d = json.load(f)
    if "error" in d:
        print("error=%s" % d["error"].replace("\n", " "))
        return
    end = d.get("end", {})
    recv = end.get("sum_received", {})
    sent = end.get("sum_sent", {})
    bps = recv.get("bits_per_second") or sent.get("bits_per_second")
    print("mb_s=%.2f" % (bps / 8 / 1e6))
    print("secs=%.1f" % recv.get("seconds", 0))


def startup(path):
    import shlex
    with open(path) as f:
        d = json.load(f)
    for k, var in (("error", "err"), ("connect_ms", "connect"), ("apiversions_ms", "api"), ("api_error", "apierr")):
        v = d.get(k, "")
        if isinstance(v, float):
            v = "%.1f" % v
        print("%s=%s" % (var, shlex.quote(str(v))))


def cargo_exe(path):
    exe = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "sluice" \
                    and "bin" in msg.get("target", {}).get("kind", []) and msg.get("executable"):
                exe = msg["executable"]
    if exe:
        print(exe)


# --------------------------------------------------------------------------- report

def _load(path):
    r = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                r[k] = v
    return r


def _f(r, k):
    try:
        return float(r[k])
    except (KeyError, ValueError):
        return None


RUN_RE = re.compile(r"^(.*)\.r(\d+)\.([a-z0-9_]+)$")


def _aggregate(raw):
    """Per-run keys GROUP.rN.METRIC -> GROUP.METRIC from the best run of each group.

    Best = highest throughput (msgs_s; mb_s for iperf and C1), or lowest p99 for latency (L1).
    Any run's error becomes the group's error. The broker's peak RSS is the max over runs."""
    r = {k: v for k, v in raw.items() if not RUN_RE.match(k)}
    groups = {}
    for k, v in raw.items():
        m = RUN_RE.match(k)
        if m:
            groups.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = v
    for g, runs in groups.items():
        errs = ["run %d: %s" % (n, runs[n]["error"]) for n in sorted(runs) if "error" in runs[n]]
        real = [e for e in errs if ": Sluice not available: " not in e]
        if real and len(real) < len(errs):
            errs = real  # the skipped runs only repeat the cause
        if errs:
            r[g + ".error"] = errs[0] if len(errs) == 1 else "%s (and %d more)" % (errs[0], len(errs) - 1)
            if len(set(e.split(": ", 1)[1] for e in errs)) == 1:
                r[g + ".error"] = errs[0].split(": ", 1)[1]
        if g.startswith("l1."):
            key, pick = "p99_ms", min
        elif g in ("sluice", "sluicenm"):
            key, pick = "connect_ms", min
        elif g.startswith(("iperf", "c1.")):
            key, pick = "mb_s", max
        else:
            key, pick = "msgs_s", max
        good = [n for n in runs if _f(runs[n], key) is not None]
        if good:
            best = pick(good, key=lambda n: _f(runs[n], key))
            for mk, mv in runs[best].items():
                if mk != "error":
                    r["%s.%s" % (g, mk)] = mv
            r[g + ".best_run"] = str(best)
            r[g + ".runs"] = "  ".join("%s" % runs[n].get(key, "-") for n in sorted(runs))
            r[g + ".runs_key"] = key
        hwm = [_f(runs[n], "hwm_kb") for n in runs if _f(runs[n], "hwm_kb") is not None]
        if hwm:
            r[g + ".hwm_kb"] = str(max(hwm))
    return r


def report(results, out):
    raw = _load(results)
    r = _aggregate(raw)
    notes = []
    counts = {"MET": 0, "NOT MET": 0, "ERROR": 0, "SKIPPED": 0}

    def fmt(v, spec, suffix=""):
        return "-" if v is None else format(v, spec) + suffix

    def err_of(*keys):
        for k in keys:
            e = r.get(k + ".error")
            if e:
                return e
        return None

    skipped = {}  # reason -> [phase, ...]
    prefix = "Sluice not available: "
    for k, v in sorted(r.items()):
        if k.endswith(".error"):
            if "skipped (--mock-only)" in v:
                continue
            if v.startswith(prefix):
                skipped.setdefault(v[len(prefix):], []).append(k[:-len(".error")].split(".")[0].upper())
                continue
            notes.append("%s: %s" % (k[:-len(".error")], v))
    for reason, phases in skipped.items():
        notes = [n for n in notes if not n.endswith(reason)]
        order = ["P1", "C1", "P2", "L1"]
        phases = sorted(phases, key=lambda ph: order.index(ph) if ph in order else 9)
        notes.append("Sluice phases %s not run: %s" % (", ".join(phases), reason))

    def verdict(ok, *errkeys):
        e = err_of(*errkeys)
        if e and "skipped (--mock-only)" in e:
            res = "SKIPPED"
        elif e:
            res = "ERROR"
        elif ok is None:
            res = "ERROR"
        else:
            res = "MET" if ok else "NOT MET"
        counts[res] += 1
        return res

    rows = []  # phase, what, unit, reference, sluice, ratio, target, result

    def ratio_row(phase, what, unit, refname, refkey, sk, target_txt, minimum, errkeys, spec):
        rv, sv = _f(r, refkey), _f(r, sk)
        ratio = sv / rv if (rv and sv is not None) else None
        rows.append((phase, what, unit, fmt(rv, spec, " (%s)" % refname), fmt(sv, spec), fmt(ratio, ".2f"),
                     target_txt, verdict(None if ratio is None else ratio >= minimum, *errkeys)))

    def info(phase, what, unit, ref, sv, target="", res=""):
        rows.append((phase, what, unit, ref, sv, "", target, res))

    ratio_row("P1", "produce 1 KiB, acks=1", "msgs/s", "mock", "p1.mock.msgs_s", "p1.sluice.msgs_s",
              "ratio >= 0.50", 0.5, ("p1.mock", "p1.sluice"), ",.0f")
    info("", "", "MB/s", fmt(_f(r, "p1.mock.mb_s"), ",.1f", " (mock)"), fmt(_f(r, "p1.sluice.mb_s"), ",.1f"))
    ratio_row("P2", "produce 100 B, acks=-1, idempotent", "msgs/s", "mock", "p2.mock.msgs_s", "p2.sluice.msgs_s",
              "ratio >= 0.85", 0.85, ("p2.mock", "p2.sluice"), ",.0f")
    info("", "", "MB/s", fmt(_f(r, "p2.mock.mb_s"), ",.1f", " (mock)"), fmt(_f(r, "p2.sluice.mb_s"), ",.1f"))
    # Metrics cost: the same workloads on a broker with metrics off; on/off must stay >= 0.97.
    ratio_row("M1", "P1 with metrics on vs off", "msgs/s", "off", "p1.sluicenm.msgs_s", "p1.sluice.msgs_s",
              "ratio >= 0.97", 0.97, ("p1.sluicenm", "p1.sluice"), ",.0f")
    ratio_row("M2", "P2 with metrics on vs off", "msgs/s", "off", "p2.sluicenm.msgs_s", "p2.sluice.msgs_s",
              "ratio >= 0.97", 0.97, ("p2.sluicenm", "p2.sluice"), ",.0f")
    ratio_row("C1", "consume 1 KiB from the beginning", "MB/s", "iperf3", "iperf.mb_s", "c1.sluice.mb_s",
              "ratio >= 0.70", 0.7, ("iperf", "c1.sluice"), ",.1f")
    info("", "", "msgs/s", "", fmt(_f(r, "c1.sluice.msgs_s"), ",.0f"))
    l1 = "1 KiB, acks=-1, -r %s, linger %s ms" % (r.get("l1.rate", "20000"), r.get("l1.linger", "?"))
    for name, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        m, sv = _f(r, "l1.mock.%s_ms" % name), _f(r, "l1.sluice.%s_ms" % name)
        what = l1 if name == "p50" else ""
        if name == "p99":
            rows.append(("", what, "%s ms" % label, fmt(m, ".3f", " (mock)"), fmt(sv, ".3f"), "", "< 2 ms",
                         verdict(None if sv is None else sv < 2.0, "l1.sluice")))
        else:
            info("L1" if name == "p50" else "", what, "%s ms" % label, fmt(m, ".3f", " (mock)"), fmt(sv, ".3f"))
    info("", "achieved rate", "msgs/s", fmt(_f(r, "l1.mock.msgs_s"), ",.0f", " (mock)"),
         fmt(_f(r, "l1.sluice.msgs_s"), ",.0f"))
    for who, label in (("broker", "CPU 0: broker busy, best runs"), ("client", "CPU 1: load generator busy")):
        cpu = []
        for ph in ("P1", "C1", "P2", "L1"):
            secs, ms = _f(r, "%s.sluice.%s_cpu_s" % (ph.lower(), who)), _f(r, "%s.sluice.ms" % ph.lower())
            if secs is not None and ms:
                cpu.append("%s %.0f%%" % (ph, 100 * secs / (ms / 1000.0)))
        if cpu:
            info("CPU" if who == "broker" else "", label, "%", "", "  ".join(cpu), "(info)")
    hwm = _f(r, "p1.sluice.hwm_kb")
    rss_all = [_f(raw, k) for k in raw if k.endswith(".idle_rss_kb") and _f(raw, k) is not None]
    rss0 = max(rss_all) if rss_all else None
    info("RSS", "broker peak during P1 (VmHWM, max)", "MiB", "", fmt(None if hwm is None else hwm / 1024, ",.1f"),
         "(info)")
    info("", "broker after start (VmRSS, max)", "MiB", "", fmt(None if rss0 is None else rss0 / 1024, ",.1f"), "(info)")
    info("Start", "process start -> accepts TCP (best)", "ms", "", fmt(_f(r, "sluice.connect_ms"), ".1f"), "(info)")
    info("", "process start -> answers ApiVersions", "ms", "", fmt(_f(r, "sluice.apiversions_ms"), ".1f"),
         "(info)")

    hdr = ("", "workload", "figure", "reference", "Sluice", "ratio", "target", "result")
    widths = [max(len(str(x[i])) for x in rows + [hdr]) for i in range(len(hdr))]
    right = {3, 4, 5}
    lines = ["Sluice benchmark  %s" % r.get("meta.date", "")]
    if "meta.rounds" in r:
        r["meta.rounds"] = "%s (each figure: best of the rounds' runs; all runs listed below)" % r["meta.rounds"]
    for k in ("meta.host", "meta.git", "meta.librdkafka", "meta.pinning", "meta.rounds", "meta.load",
              "meta.duration"):
        if k in r:
            lines.append("  %-11s %s" % (k[5:] + ":", r[k]))
    lines.append("")

    def line(cols):
        return "  ".join(str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                         for i, c in enumerate(cols)).rstrip()

    lines.append(line(hdr))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(line(row))
    lines.append("")
    lines.append("Targets: %d met, %d not met, %d error%s" % (
        counts["MET"], counts["NOT MET"], counts["ERROR"],
        (", %d skipped" % counts["SKIPPED"]) if counts["SKIPPED"] else ""))
    per_run = []
    for g, label in (("p1.mock", "P1 mock msgs/s"), ("p1.sluice", "P1 Sluice msgs/s"),
                     ("p2.mock", "P2 mock msgs/s"), ("p2.sluice", "P2 Sluice msgs/s"),
                     ("p1.sluicenm", "P1 metrics off"), ("p2.sluicenm", "P2 metrics off"),
                     ("iperf", "iperf3 MB/s"), ("c1.sluice", "C1 Sluice MB/s"),
                     ("l1.mock", "L1 mock p99 ms"), ("l1.sluice", "L1 Sluice p99 ms")):
        if g + ".runs" in r:
            per_run.append("  %-18s %s" % (label + ":", r[g + ".runs"]))
    if per_run:
        lines.append("")
        lines.append("Every run (in round order):")
        lines.extend(per_run)
    if notes:
        lines.append("")
        lines.append("Errors:")
        for n in notes:
            lines.append("  - " + n)
    warn = [v for k, v in sorted(r.items()) if k.startswith("warn.") and not k.startswith("warn.load.")]
    busy = ["%s %s" % (v.split(":")[0], "/".join(re.findall(r"(\d+)%", v.rsplit("(", 1)[-1])))
            for k, v in sorted(r.items()) if k.startswith("warn.load.")]
    if busy:
        warn.append("%d runs started while other processes kept a core >15%% busy (CPU 0/CPU 1 %%): %s"
                    % (len(busy), ", ".join(busy)))
    if warn:
        lines.append("")
        lines.append("Warnings:")
        import textwrap
        for w in warn:
            lines.extend(textwrap.wrap(w, 100, initial_indent="  - ", subsequent_indent="    "))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out, "w") as f:
        f.write(text)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "freeport":
        freeport()
    elif cmd == "cpubusy":
        cpubusy(args[0] if args else "1")
    elif cmd == "spawn":
        spawn(args)
    elif cmd == "perfsum":
        perfsum(args[0])
    elif cmd == "pct":
        pct(args[0])
    elif cmd == "iperf":
        iperf(args[0])
    elif cmd == "startup":
        startup(args[0])
    elif cmd == "cargo-exe":
        cargo_exe(args[0])
    elif cmd == "report":
        report(args[0], args[1])
    else:
        sys.exit("unknown subcommand %s\n%s" % (cmd, __doc__))


if __name__ == "__main__":
    main()
