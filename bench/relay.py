"""The loopback relay's cost: a node loopback service reached through the relay (job/relay.py)
against the same service reached directly on loopback.

    sudo .venv/bin/python bench/relay.py [--rounds 5] [--megabytes 100] [--requests 1000]

Two private network namespaces (tests/helpers/private_net.py: unnamed, gone with the
process), never this machine's: ``node``, where a TCP server listens on 127.0.0.1 (its own
process: a sink, a source and an echo, a thread per connection), and ``job``, where the
relay listens on the same address and port. The relay runs in this process, on a trio
loop in ``node``, as the agent's does in its own namespace. Each round runs every client
(its own process, timing itself, so no start-up is in the figures) once directly, from
``node``, and once through the relay, from ``job``, the order alternating between rounds:

* job to node: ``--megabytes`` MiB sent, then the server's count of what it got;
* node to job: the same the other way, read to the end of the stream;
* round trip: ``--requests`` times 64 bytes sent and the same 64 read back, one connection;
* new connection: connect, one 64-byte round trip, close, ``--requests`` / 5 times.

Printed: medians, p25-p75 and each relayed row's ratio to the direct row; then the relay's
own CPU time (its loop's thread, ``time.thread_time``) per GiB carried and per round trip,
load-independent where the times are not; its peak of bytes held (``Relay.buffered_peak``);
and its byte counts, which must be exactly what the clients moved (else it exits 1). On
this project's 2-core machine the clients, the server and the relay share the cores, and
the machine is shared: the ratios and the CPU, not the times, are what to read.
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio
from common import need_root, print_columns, print_table
from helpers.private_net import PrivateNet

from lark_async.decide.reach import Proto, Service
from lark_async.job.relay import Relay

PORT = 7000  # in the private namespaces: nothing else is there
MESSAGE = 64
SERVER = r"""
import socket, struct, sys, threading

def exactly(c, n):
    got = bytearray()
    while len(got) < n:
        data = c.recv(n - len(got))
        if not data:
            return bytes(got)
        got += data
    return bytes(got)

def serve(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mode = c.recv(1)
        if mode == b"S":  # a sink: read to the end, answer the count
            n, buf = 0, bytearray(1 << 20)
            while k := c.recv_into(buf):
                n += k
            c.sendall(struct.pack("!Q", n))
        elif mode == b"D":  # a source: the count asked for, then the end
            (n,) = struct.unpack("!Q", exactly(c, 8))
            block = memoryview(bytes(1 << 20))
            while n > 0:
                c.sendall(block[: min(n, len(block))])
                n -= min(n, len(block))
        elif mode == b"E":  # an echo of 64-byte messages
            while len(data := exactly(c, 64)) == 64:
                c.sendall(data)

s = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=256)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
CLIENT = r"""
import socket, struct, sys, time
mode, port, arg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
address = ("127.0.0.1", port)

def exactly(c, n):
    got = bytearray()
    while len(got) < n:
        data = c.recv(n - len(got))
        assert data, "the stream ended early"
        got += data
    return bytes(got)

def connect():
    c = socket.create_connection(address)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c

msg = bytes(64)
if mode == "up":  # arg MiB; prints seconds
    c = connect()
    block = bytes(1 << 20)
    start = time.perf_counter()
    c.sendall(b"S")
    for _ in range(arg):
        c.sendall(block)
    c.shutdown(socket.SHUT_WR)
    (n,) = struct.unpack("!Q", exactly(c, 8))
    print(time.perf_counter() - start)
    assert n == arg << 20, n
elif mode == "down":
    c = connect()
    buf, n = bytearray(1 << 20), 0
    start = time.perf_counter()
    c.sendall(b"D" + struct.pack("!Q", arg << 20))
    while k := c.recv_into(buf):
        n += k
    print(time.perf_counter() - start)
    assert n == arg << 20, n
elif mode == "rtt":  # arg round trips; prints seconds per round trip
    c = connect()
    c.sendall(b"E")
    start = time.perf_counter()
    for _ in range(arg):
        c.sendall(msg)
        exactly(c, 64)
    print((time.perf_counter() - start) / arg)
elif mode == "connect":  # arg connections; prints seconds per connection
    start = time.perf_counter()
    for _ in range(arg):
        c = connect()
        c.sendall(b"E" + msg)
        exactly(c, 64)
        c.close()
    print((time.perf_counter() - start) / arg)
"""
UP, DOWN = "TCP job to node, Gbit/s", "TCP node to job, Gbit/s"
RTT, CONNECT = "64-byte round trip, us", "new connection + round trip, us"
WAYS = ("direct loopback", "through the relay")
CPU_BULK, CPU_RTT = "relay: CPU s per GiB carried", "relay: CPU us per 64-byte round trip"


def _client(net: PrivateNet, mode: str, arg: int) -> float:
    argv = [sys.executable, "-I", "-c", CLIENT, mode, str(PORT), str(arg)]
    done = net.run(lambda: subprocess.run(argv, capture_output=True, text=True, timeout=300))
    if done.returncode != 0:
        raise SystemExit(f"client {mode} failed: {done.stderr.strip()}")
    return float(done.stdout)


def measure(rounds: int = 5, megabytes: int = 100, requests: int = 1000) -> dict[str, list[float]]:
    """{row: [values in the unit its name says]}, rows ``<what>, <way>``; plus the relay's
    own figures under ``relay: ...``."""
    need_root()
    rows = {f"{what}, {way}": [] for what in (UP, DOWN, RTT, CONNECT) for way in WAYS}
    node, job = PrivateNet(), PrivateNet()
    server = None
    try:
        node.run(lambda: None)
        job.run(lambda: None)
        argv = [sys.executable, "-I", "-c", SERVER, str(PORT)]
        server = node.run(lambda: subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        service = Service(Proto.TCP, ipaddress.ip_address("127.0.0.1"), PORT, why="bench")
        extra: dict[str, list[float]] = {CPU_BULK: [], CPU_RTT: []}
        gib = 2 * megabytes / 1024  # both bulk transfers of a round

        async def main() -> None:
            with Relay.open([service], listen_in=job.run) as relay:
                async with trio.open_nursery() as nursery:
                    await nursery.start(relay.serve)
                    for r in range(rounds):
                        for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                            net = node if way == WAYS[0] else job
                            cpu = time.thread_time()

                            async def run(mode: str, arg: int, net: PrivateNet = net) -> float:
                                return await trio.to_thread.run_sync(_client, net, mode, arg)

                            bits = (megabytes << 20) * 8 / 1e9
                            rows[f"{UP}, {way}"].append(bits / await run("up", megabytes))
                            rows[f"{DOWN}, {way}"].append(bits / await run("down", megabytes))
                            if way == WAYS[1]:
                                extra[CPU_BULK].append((time.thread_time() - cpu) / gib)
                            cpu = time.thread_time()
                            rows[f"{RTT}, {way}"].append(1e6 * await run("rtt", requests))
                            if way == WAYS[1]:
                                extra[CPU_RTT].append(1e6 * (time.thread_time() - cpu) / requests)
                            n = max(1, requests // 5)
                            rows[f"{CONNECT}, {way}"].append(1e6 * await run("connect", n))
                    nursery.cancel_scope.cancel()
                counts = relay.counts[service]
                extra["relay: bytes job to node"] = [counts.outgoing]
                extra["relay: bytes node to job"] = [counts.incoming]
                extra["relay: connections"] = [counts.connections]
                extra["relay: peak bytes held"] = [relay.buffered_peak]

        node.run_trio(main)
    finally:
        if server is not None:
            server.kill()
            server.wait()
        node.close()
        job.close()
    return {**rows, **extra}


def expected(rounds: int, megabytes: int, requests: int) -> dict[str, int]:
    """What the relay must have counted: every byte the relayed clients moved."""
    per_round_up = 1 + (megabytes << 20) + 9 + (1 + MESSAGE * requests)  # S, data; D+count; E
    per_round_up += max(1, requests // 5) * (1 + MESSAGE)
    per_round_down = 8 + (megabytes << 20) + MESSAGE * requests + max(1, requests // 5) * MESSAGE
    connections = 3 + max(1, requests // 5)
    return {
        "relay: bytes job to node": rounds * per_round_up,
        "relay: bytes node to job": rounds * per_round_down,
        "relay: connections": rounds * connections,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--megabytes", type=int, default=100, help="MiB per bulk transfer")
    parser.add_argument("--requests", type=int, default=1000, help="64-byte round trips")
    args = parser.parse_args()
    need_root()
    res = measure(args.rounds, args.megabytes, args.requests)
    for what, unit in ((UP, "Gbit/s"), (DOWN, "Gbit/s"), (RTT, "us"), (CONNECT, "us")):
        names = [f"{what}, {way}" for way in WAYS]
        print_table(
            f"{what.rsplit(',', 1)[0]}, {args.rounds} rounds",
            [(name, res[name]) for name in names],
            [names[0]],
            ["direct"],
            unit=unit,
            scale=1,
        )
    print_table(
        f"The relay's own CPU (its loop's thread), {args.rounds} rounds",
        [(CPU_BULK, res[CPU_BULK]), (CPU_RTT, res[CPU_RTT])],
        unit="",
        scale=1,
    )
    want = expected(args.rounds, args.megabytes, args.requests)
    print_columns(
        "The relay's counts",
        ["", "counted", "moved by the clients"],
        [(name, res[name][0], want.get(name, "")) for name in res if name.startswith("relay: ")
         and name not in (CPU_BULK, CPU_RTT)],
    )  # fmt: skip
    wrong = {name: res[name][0] for name in want if res[name][0] != want[name]}
    if wrong:
        print(f"\nthe relay's counts differ from what the clients moved: {wrong}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
