"""A real server behind a slow link: a namespace of its own on the site LAN whose every frame
reaches the LAN ``delay`` seconds late (no netem here: a user-space delay line).

``slow_server(sandbox, delay)`` makes the namespace ``<prefix>-slow`` with ``lan`` at
10.77.0.2/24, wired to the site bridge through this program, run in the site namespace
(``python slow_link.py LAN_SIDE SERVER_SIDE DELAY READY_FILE``): it copies every frame from the LAN
side (a port of br0) to the server at once, and every frame from the server to the LAN
``DELAY`` seconds later, in order. A DHCP server there (Kea: ``start_kea(...,
netns=slow, iface="lan")``) then answers every client after any responder on the LAN,
OFFERs and ACKs alike, however fast it is. Stopped with the sandbox's processes; the
namespace goes with the sandbox's (its name carries the test's prefix).
"""

from __future__ import annotations

import heapq
import select
import signal
import socket
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SERVER = "10.77.0.2"


def relay(lan_side: str, server_side: str, delay: float, ready: Path) -> None:
    lan = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    lan.bind((lan_side, ETH_P_ALL))
    srv = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    srv.bind((server_side, ETH_P_ALL))
    ready.touch()
    pending: list[tuple[float, int, bytes]] = []  # (due, sequence, frame) towards the LAN
    seq = 0
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    while not stopping:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            lan.send(heapq.heappop(pending)[2])
        timeout = min(0.2, pending[0][0] - now) if pending else 0.2
        try:
            readable, _, _ = select.select([lan, srv], [], [], max(0.0, timeout))
        except InterruptedError:
            continue
        for sock in readable:
            frame, addr = sock.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:  # what we sent ourselves
                continue
            if sock is lan:
                srv.send(frame)
            else:
                seq += 1
                heapq.heappush(pending, (time.monotonic() + delay, seq, frame))


def slow_server(sandbox, delay: float) -> str:
    """The server namespace behind a link of ``delay`` seconds; returns its name."""
    from sandbox import sh, wait_for

    ns = f"{sandbox.prefix}-slow"
    sh("ip", "netns", "add", ns)
    for step in (
        ("link", "add", "slow0", "type", "veth", "peer", "name", "slow1"),
        ("link", "set", "slow0", "master", "br0", "up"),
        ("link", "set", "slow1", "up"),
        ("link", "add", "slow2", "type", "veth", "peer", "name", "lan", "netns", ns),
        ("link", "set", "slow2", "up"),
    ):
        sh("ip", *step, netns=sandbox.site)
    for step in (
        ("link", "set", "lo", "up"),
        ("addr", "add", f"{SERVER}/24", "dev", "lan"),
        ("link", "set", "lan", "up"),
    ):
        sh("ip", *step, netns=ns)
    ready = sandbox.tmp / "slow-link.ready"
    argv = [sys.executable, "-I", str(Path(__file__).resolve()), "slow1", "slow2", str(delay)]
    sandbox.start_in(sandbox.site, [*argv, str(ready)])

    def running() -> bool:  # (Kea listens only on a link that is running)
        return (
            ready.exists() and "state UP" in sh("ip", "-o", "link", "show", "lan", netns=ns).stdout
        )

    assert wait_for(running, 5), "the slow link never came up"
    return ns


if __name__ == "__main__":
    relay(sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4]))
