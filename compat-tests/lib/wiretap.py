"""A loopback TCP relay that records which Kafka APIs, at which versions, each client sends.

    wiretap.py LISTEN_PORT BROKER_PORT OUT_FILE

run.sh uses it when SLUICE_WIRETAP=1: the broker advertises the relay's port, so every
connection (bootstrap and after Metadata) goes through it. Bytes are forwarded untouched; only
request headers are read (api_key, api_version, client_id). On SIGTERM it writes one line per
(client_id, api, version) with a count, and a line per connection that the broker closed right
after a request (the usual sign of an unsupported version or a failed response encoding).

With SLUICE_WIRETAP_FRAMES=DIR it also saves the first frame (up to 64 KiB) of each (client, api,
version) as DIR/<api>-v<version>-<client>: the seed corpus of the `request` fuzz target.
"""

import asyncio
import collections
import os
import re
import signal
import struct
import sys

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics",
    20: "DeleteTopics", 21: "DeleteRecords", 22: "InitProducerId", 23: "OffsetForLeaderEpoch",
    24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn", 28: "TxnOffsetCommit",
    32: "DescribeConfigs", 33: "AlterConfigs", 35: "DescribeLogDirs", 36: "SaslAuthenticate",
    37: "CreatePartitions", 42: "DeleteGroups", 44: "IncrementalAlterConfigs",
    46: "ListPartitionReassignments", 47: "OffsetDelete", 60: "DescribeCluster", 61: "DescribeProducers",
    68: "ConsumerGroupHeartbeat", 71: "GetTelemetrySubscriptions", 72: "PushTelemetry",
    75: "DescribeTopicPartitions",
}

counts = collections.Counter()
closed_after = collections.Counter()


async def pump_requests(reader, writer, state):
    """Client -> broker: forward frames whole, noting each request header."""
    try:
        await _pump_requests(reader, writer, state)
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def _pump_requests(reader, writer, state):
    while True:
        head = await reader.readexactly(4)
        (size,) = struct.unpack(">i", head)
        body = await reader.readexactly(size) if size > 0 else b""
        if len(body) >= 10:
            key, ver, _corr, cid_len = struct.unpack(">hhih", body[:10])
            cid = body[10:10 + cid_len].decode("utf-8", "replace") if cid_len >= 0 else "-"
            if counts[(cid, key, ver)] == 0:
                save_frame(cid, key, ver, body)
            counts[(cid, key, ver)] += 1
            state["last"] = (cid, key, ver)
        writer.write(head + body)
        await writer.drain()


def save_frame(cid, key, ver, body):
    out = os.environ.get("SLUICE_WIRETAP_FRAMES")
    if not out or len(body) > 65536:
        return
    os.makedirs(out, exist_ok=True)
    client = re.sub(r"[^A-Za-z0-9_.-]", "_", cid)[:40]
    with open(os.path.join(out, f"{API_NAMES.get(key, key)}-v{ver}-{client}"), "wb") as f:
        f.write(body)


async def pump_raw(reader, writer):
    try:
        await _pump_raw(reader, writer)
    except ConnectionError:
        return


async def _pump_raw(reader, writer):
    while True:
        data = await reader.read(65536)
        if not data:
            return
        writer.write(data)
        await writer.drain()


async def handle(client_r, client_w, broker_port):
    state = {"last": None}
    try:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", broker_port)
    except OSError:
        client_w.close()
        return
    up = asyncio.ensure_future(pump_requests(client_r, broker_w, state))
    down = asyncio.ensure_future(pump_raw(broker_r, client_w))
    done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    if down in done and state["last"] is not None:
        closed_after[state["last"]] += 1  # the broker closed first, after this request
    for t in pending:
        t.cancel()
    for w in (client_w, broker_w):
        try:
            w.close()
        except Exception:  # noqa: BLE001
            pass


def report(path):
    with open(path, "w") as f:
        for (cid, key, ver), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            f.write(f"{cid}\t{API_NAMES.get(key, key)}\tv{ver}\t{n}\n")
        for (cid, key, ver), n in sorted(closed_after.items()):
            f.write(f"{cid}\t{API_NAMES.get(key, key)}\tv{ver}\tbroker closed the connection after it ({n}x)\n")


async def main():
    listen_port, broker_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = await asyncio.start_server(lambda r, w: handle(r, w, broker_port), "127.0.0.1", listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    report(out)


if __name__ == "__main__":
    asyncio.run(main())
