"""The faults the checker injects, each a function (cluster context) -> description that injects the
fault, holds it, and undoes it (restart, SIGCONT, heal, free the disk); faultcheck.py then waits for
the cluster to recover. Processes are signalled by PID only (lib/cluster.py).

What each shows and what Sluice promises under it is in the README ("The fault checker").
"""

import os
import time

from cluster import metadata, quorum_leader
from workload import TOPIC_IDEM, TOPIC_TXN

HOLD_S = 5.0  # how long a killed node stays down
CUT_S = 12.0  # how long a network cut lasts
DISK_FULL_S = 10.0


class Skip(Exception):
    """The fault cannot be made on this machine (no root, no network namespaces, ...)."""


def leaders(ctx, topic):
    """{partition: leader} as a live node sees it ({} if none answers)."""
    for n in ctx.cl.live():
        try:
            return {p: v[1] for p, v in metadata(n.port, [topic], host=n.host, timeout=3)[3][topic].items()}
        except (OSError, KeyError):
            continue
    return {}


def busiest_leader(ctx):
    """The live node leading the most partitions of the checked topics."""
    count = {n.id: 0 for n in ctx.cl.live()}
    for topic in (TOPIC_IDEM, TOPIC_TXN):
        for leader in leaders(ctx, topic).values():
            if leader in count:
                count[leader] += 1
    if not count:
        raise Skip("no live node")
    best = max(count, key=lambda i: (count[i], ctx.rng.random()))
    return ctx.cl.node(best)


def controller_leader(ctx):
    for n in ctx.cl.live():
        try:
            leader = quorum_leader(n.port, host=n.host, timeout=3)
        except OSError:
            continue
        if leader is not None:
            return ctx.cl.node(leader)
    raise Skip("no quorum leader found")


def kill9(node, which):
    node.kill9()
    time.sleep(HOLD_S)
    node.start()
    return f"kill -9 node {node.id} ({which}), restarted after {HOLD_S:.0f} s"


def kill9_leader(ctx):
    return kill9(busiest_leader(ctx), "the busiest leader")


def kill9_controller(ctx):
    return kill9(controller_leader(ctx), "the controller quorum's leader")


def pause(ctx):
    """SIGSTOP longer than broker.session.timeout.ms: the node is fenced, its leaderships move;
    SIGCONT: it finds itself fenced, registers again and catches up."""
    node = busiest_leader(ctx)
    held = ctx.session_timeout_s + 3
    node.pause()
    time.sleep(held)
    node.resume()
    return f"SIGSTOP node {node.id} (the busiest leader) for {held:.0f} s, then SIGCONT"


def rolling_restart(ctx):
    """SIGTERM (a controlled shutdown) of each node in turn, the next once the cluster is whole."""
    statuses = []
    for node in list(ctx.cl.nodes):
        status = node.stop()
        statuses.append(f"{node.id}:{status}")
        if status != 0:
            ctx.violations.append(f"rolling-restart: node {node.id} exited with {status} on SIGTERM")
        node.start()
        ctx.wait_recovered(f"rolling restart, node {node.id}")
    return f"SIGTERM and restart of every node in turn (exit statuses {', '.join(statuses)})"


def cut(ctx, node, which):
    """`node` cut from every other broker (both ways; clients still reach it), then healed."""
    if ctx.net is None:
        raise Skip("no network namespaces here (needs root and iproute2; or --no-netns was given)")
    others = [n.id for n in ctx.cl.nodes if n.id != node.id]
    ctx.net.cut([node.id], others)
    time.sleep(CUT_S)
    ctx.net.heal()
    return f"node {node.id} ({which}) cut from nodes {others} for {CUT_S:.0f} s"


def network_cut(ctx):
    return cut(ctx, busiest_leader(ctx), "the busiest leader")


def network_cut_controller(ctx):
    return cut(ctx, controller_leader(ctx), "the controller quorum's leader")


def disk_full(ctx):
    """The disk node's data dir (a size-limited tmpfs) filled to the last byte, then freed."""
    if ctx.disk is None:
        raise Skip("no size-limited data dir here (needs root to mount a tmpfs)")
    node, mount = ctx.disk
    filler = os.path.join(mount, "faultcheck-filler")
    written = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 512):  # to the last few bytes
            block = b"\0" * size
            while True:
                try:
                    written += os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    time.sleep(DISK_FULL_S)
    os.remove(filler)
    return f"node {node.id}'s data disk filled ({written >> 20} MiB of filler) for {DISK_FULL_S:.0f} s, then freed"


FAULTS = {
    "kill9-leader": kill9_leader,
    "kill9-controller": kill9_controller,
    "pause": pause,
    "rolling-restart": rolling_restart,
    "network-cut": network_cut,
    "network-cut-controller": network_cut_controller,
    "disk-full": disk_full,
}

SCHEDULES = {
    # The one .ci/run runs: each fault once.
    "short": ["kill9-leader", "kill9-controller", "pause", "network-cut", "disk-full", "rolling-restart"],
}
