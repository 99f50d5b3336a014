"""Many Lark DHCP clients acquiring at once against one Kea: all bound, how fast, at what CPU.

    sudo .venv/bin/python bench/dhcp_many.py [--clients 200] [--rounds 1]

    sudo .venv/bin/python bench/dhcp_many.py --links macvlan

Everything runs in throwaway namespaces: a site namespace with a bridge and
``kea-dhcp4`` (raw socket, in-memory leases, a /16 pool far bigger than the
clients), and one client namespace on that bridge. Each client is one trio
driver with its own AF_PACKET socket and its own MAC (locally administered,
used as Ethernet source and chaddr) and client id, so to Kea and the bridge
they are distinct hosts. By default all sockets share the one uplink, as the
integration test does, so every client's socket also sees every other
client's (unicast) replies; with ``--links macvlan`` each client has a macvlan
of its own on the uplink, carrying its MAC, as a job has its own interface,
and sees only its own unicasts and the broadcasts (the macvlans are removed
before the leftover check). All start together in one
``trio.run``; each client is timed from that common start and from its own
first DISCOVER to bound. Once all are bound (or have given up) the wall time
and the CPU our process used (getrusage, user+sys, all threads) are taken;
then every client releases (not timed). Kea's own CPU over the same span is
shown for scale. Drops counts frames the kernel dropped on the clients'
sockets (PACKET_STATISTICS); resent counts DISCOVER/REQUEST retransmissions.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import resource
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio
from common import cpu_of, dhcp_sockets, drain, need_root, percentile, print_columns, site_sandbox
from sandbox import start_kea

from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.errors import DhcpFailed
from dhcp.events import Transmit
from dhcp.trio_driver import Driver, Sockets

SUBNET = "10.77.0.0/16"  # the site bridge is 10.77.0.1/24: Kea picks the subnet by it
POOL = ("10.77.1.0", "10.77.31.255")
SOL_PACKET, PACKET_STATISTICS = 263, 6


def links(netns_name: str, verb: str, macs: list[bytes]) -> None:
    """Add (up, with its MAC) or delete one macvlan per client on the uplink, in one batch."""
    if verb == "add":
        lines = [
            f"link add c{i} link uplink address {mac.hex(':')} type macvlan mode private\n"
            f"link set c{i} up"
            for i, mac in enumerate(macs)
        ]
    else:
        lines = [f"link del c{i}" for i in range(len(macs))]
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns_name}", "ip", "-batch", "-"],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
    )


def own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def dropped(sock: socket.socket) -> int:
    """Frames dropped on a packet socket since the last call (reading resets the counters)."""
    _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return drops


def fake_mac(prefix: str, i: int) -> bytes:
    """Locally administered unicast: 02, two bytes of the bench prefix, the client number."""
    return bytes((0x02, *bytes.fromhex(prefix[-4:]))) + (i + 1).to_bytes(3, "big")


@dataclasses.dataclass
class Outcome:
    n: int
    bound: list[float | None]  # from the common start
    own: list[float | None]  # from the client's first DISCOVER
    addresses: list[str]
    resent: int
    failures: list[str]
    wall_s: float
    cpu_s: float
    kea_cpu_s: float


async def acquire_all(socks: list[Sockets], iaid0: int, retransmit_s: float, kea: int) -> Outcome:
    n = len(socks)
    bound: list[float | None] = [None] * n
    first: list[float | None] = [None] * n
    sent = [0] * n
    addresses: list[str] = []
    failures: list[str] = []
    remaining = [n]
    all_done, release_now = trio.Event(), trio.Event()

    async def one(i: int, s: Sockets) -> None:
        def on_action(action) -> None:
            if isinstance(action, Transmit):
                sent[i] += 1
                if first[i] is None:
                    first[i] = time.perf_counter()

        config = Config(
            chaddr=s.mac,
            client_id=opt.client_id(iaid0 + i, opt.duid_ll(s.mac)),
            retransmit_initial_s=retransmit_s,
            timeout_s=30,
            probe=None,  # DHCP alone
        )
        client = Client(config, rng=random.Random())
        driver = Driver(client, s, on_action=on_action)
        async with trio.open_nursery() as nursery:
            try:
                lease = await nursery.start(driver.run)
                bound[i] = time.perf_counter()
                addresses.append(str(lease.address))
            except DhcpFailed as exc:
                failures.append(str(exc))
                lease = None
            remaining[0] -= 1
            if not remaining[0]:
                all_done.set()
            if lease is not None:
                await release_now.wait()
                await driver.release()
            nursery.cancel_scope.cancel()

    kea0, cpu0, t0 = cpu_of(kea), own_cpu(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i, s in enumerate(socks):
            nursery.start_soon(one, i, s)
        await all_done.wait()
        wall, cpu, kea1 = time.perf_counter() - t0, own_cpu() - cpu0, cpu_of(kea)
        resent = sum(max(0, k - 2) for k, b in zip(sent, bound, strict=True) if b is not None)
        release_now.set()
    return Outcome(
        n=n,
        bound=[None if b is None else b - t0 for b in bound],
        own=[None if b is None or f is None else b - f for b, f in zip(bound, first, strict=True)],
        addresses=addresses,
        resent=resent,
        failures=failures,
        wall_s=wall,
        cpu_s=cpu,
        kea_cpu_s=kea1 - kea0,
    )


def measure(
    clients: int = 200, rounds: int = 1, retransmit: float = 1.0, links_kind: str = "shared"
) -> list[dict]:
    """``rounds`` times ``clients`` Lark clients acquiring at once against Kea, in a throwaway
    sandbox: one Outcome (as a dict, times in seconds, plus 'drops') a round."""
    socks: list[Sockets] = []
    with site_sandbox() as box, contextlib.ExitStack() as closing:
        prefix = box.prefix
        closing.callback(lambda: [s.close() for s in socks])
        box.create_site()
        host = box.add_host()
        kea = start_kea(box, lifetime=600, pool=POOL, subnet=SUBNET)[1].pid
        macs = [fake_mac(prefix, i) for i in range(clients)]
        if links_kind == "macvlan":
            links(host.netns, "add", macs)
            for i, mac in enumerate(macs):
                socks.append(dhcp_sockets(host.netns, f"c{i}", mac))
        else:
            for mac in macs:
                socks.append(dhcp_sockets(host.netns, chaddr=mac))
        outcomes = []
        for r in range(rounds):
            for s in socks:
                drain(s.raw)
                dropped(s.raw)
            outcome = trio.run(acquire_all, socks, r * clients, retransmit, kea)
            drops = sum(dropped(s.raw) for s in socks)
            outcomes.append({**dataclasses.asdict(outcome), "drops": drops})
            for why in sorted(set(outcome.failures)):
                print(f"round {r + 1}: gave up: {why}", file=sys.stderr)
        for s in socks:
            s.close()
        socks.clear()
        if links_kind == "macvlan":
            links(host.netns, "del", macs)
        left = box.leftovers()
        if left:
            print(f"left behind: {left}", file=sys.stderr)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--retransmit", type=float, default=1.0, help="first retransmit, s")
    parser.add_argument(
        "--links",
        choices=("shared", "macvlan"),
        default="shared",
        help="all sockets on the one uplink, or one macvlan per client",
    )
    args = parser.parse_args()
    need_root()
    if not 1 <= args.clients <= 7000:
        sys.exit("--clients: 1 to 7000 (the pool's size)")
    outcomes = measure(args.clients, args.rounds, args.retransmit, args.links)
    title = (
        f"{args.clients} Lark clients at once against kea-dhcp4 (raw socket, memfile), "
        f"{'one macvlan each' if args.links == 'macvlan' else 'all on one uplink'}, "
        f"first retransmit {args.retransmit:g} s"
    )
    head = ["round", "bound", "distinct", "p50 ms", "p99 ms", "max ms", "own p50", "own p99"]
    head += ["wall ms", "our CPU s", "Kea CPU s", "resent", "drops"]
    rows = []
    for r, o in enumerate(outcomes, 1):
        ok = [b for b in o["bound"] if b is not None]
        own = [b for b in o["own"] if b is not None]
        times = [percentile(ok, 50), percentile(ok, 99), max(ok)] if ok else [None] * 3
        times += [percentile(own, 50), percentile(own, 99)] if own else [None] * 2
        rows.append(
            [r, f"{len(ok)}/{o['n']}", len(set(o["addresses"]))]
            + ["-" if t is None else f"{t * 1000:.1f}" for t in times]
            + [f"{o['wall_s'] * 1000:.1f}", f"{o['cpu_s']:.2f}", f"{o['kea_cpu_s']:.2f}"]
            + [o["resent"], o["drops"]]
        )
    print_columns(title, head, rows, ">" * len(head))
    print("p50/p99/max: from the common start; own: from each client's first DISCOVER")
    return 0


if __name__ == "__main__":
    sys.exit(main())
