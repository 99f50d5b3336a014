"""Time to a DHCP lease against one dnsmasq (--no-ping), Lark's client next to the usual ones.

    sudo .venv/bin/python bench/dhcp.py [--rounds 20]

Everything runs in throwaway namespaces: a site namespace with a bridge and
dnsmasq, and a client namespace on that bridge. Contenders, round-robin:
* in-process, first DISCOVER sent to bound (after imports and socket set-up):
  Lark (trio driver, timed from its first Transmit) and pyroute2's asyncio
  ``AsyncDHCPClient`` (pyroute2.dhcp.client, run with ``asyncio.run`` on a
  thread that entered the client namespace; timed from the return of its
  socket's ``put`` of the DISCOVER to its BOUND hook). pyroute2 gets no hooks
  that configure anything and a lease type that writes no file, so it adds no
  address or route and every round starts with a DISCOVER, as Lark's does;
* whole process, start to bound-and-exit: ``lark-agent dhcp-test`` (which also
  releases), ``pyroute2-dhcp-client -x 10 --disable-hooks`` with a lease type
  that only prints (it exits once bound, releasing on the way out), busybox
  ``udhcpc -n -q`` and ISC ``dhclient -1`` (each skipped when not installed),
  given a script that does nothing instead of configuring.
Every client releases its lease at the end of its round (not timed). The two
ratio columns are each row's median over Lark's in-process and whole-process
medians; the last line checks Lark's in-process median is at most pyroute2's
(exit status 1 when it is not). bench/dhcp_many.py has many Lark clients at once against Kea.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio
from common import dhcp_sockets, drain, in_netns_thread, need_root, print_table, site_sandbox
from pyroute2.dhcp.client import AsyncDHCPClient, ClientConfig
from pyroute2.dhcp.enums.dhcp import MessageType
from pyroute2.dhcp.fsm import State
from pyroute2.dhcp.hooks import Trigger, hook
from pyroute2.dhcp.leases import Lease as Pyroute2Lease
from sandbox import sh

from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.events import Transmit
from dhcp.trio_driver import Driver, Sockets

LARK_IN = "Lark in-process (DISCOVER to bound)"
TARGET_RATIO = 1.0  # issue 16: in-process time to a lease at most pyroute2's, same run
LARK_WHOLE = "lark-agent dhcp-test (whole process)"


async def lark_in_process(socks: Sockets, i: int) -> float:
    # what the other contenders' exchanges left queued (pyroute2's socket starts empty each
    # round, as it is opened anew)
    drain(socks.raw)
    first: list[float] = []

    def on_action(action) -> None:
        if isinstance(action, Transmit) and not first:
            first.append(time.perf_counter())

    config = Config(
        chaddr=socks.mac,
        client_id=opt.client_id(i, opt.duid_ll(socks.mac)),
        retransmit_initial_s=1.0,
        timeout_s=10,
        probe=None,  # no address-conflict probe: none of the peers probes by default either
    )
    driver = Driver(Client(config, rng=random.Random()), socks, on_action=on_action)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        bound = time.perf_counter()
        await driver.release()
        nursery.cancel_scope.cancel()
    return bound - first[0]


class UnkeptLease(Pyroute2Lease):
    """A pyroute2 lease that is neither written nor read back: every round starts in INIT."""

    def dump(self) -> None:
        pass

    @classmethod
    def load(cls, interface: str) -> None:
        return None


async def pyroute2_round(ifname: str) -> float:
    """pyroute2's AsyncDHCPClient: its first DISCOVER out to its BOUND hook, then release."""
    first: list[float] = []
    bound: list[float] = []

    @hook(Trigger.BOUND)
    async def on_bound(lease) -> None:
        bound.append(time.perf_counter())

    config = ClientConfig(
        interface=ifname,
        lease_type=UnkeptLease,
        hooks=(on_bound,),  # none of its address or route hooks
        handle_signals=False,  # not the main thread
        release=True,
    )
    client = AsyncDHCPClient(config)
    put = client._sock.put

    async def timed_put(msg):
        sent = await put(msg)
        if not first and msg.message_type == MessageType.DISCOVER:
            first.append(time.perf_counter())
        return sent

    client._sock.put = timed_put
    async with client:
        await client.bootstrap()
        await client.wait_for_state(State.BOUND, timeout=10)
    return bound[0] - first[0]


def pyroute2_in_process(ns: str) -> float:
    return in_netns_thread(ns, lambda: asyncio.run(pyroute2_round("uplink")))


def whole(ns: str, argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
    )
    return time.perf_counter() - t0


PYROUTE2_IN = "pyroute2 in-process (DISCOVER to bound)"


def measure(rounds: int = 20) -> dict[str, list[float]]:
    """Seconds to a lease, per contender (row name), ``rounds`` rounds in a throwaway sandbox;
    a peer that is not installed or fails is left out."""
    with site_sandbox() as box:
        box.create_site()
        host = box.add_host()
        box.start_in(
            box.site,
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--port=0",
                "--no-ping",
                "--interface=br0",
                "--bind-interfaces",
                "--dhcp-authoritative",
                "--dhcp-range=10.77.0.100,10.77.0.250,2m",
                f"--dhcp-leasefile={box.tmp}/leases",
                "--user=root",
            ],
        )
        time.sleep(0.5)
        tmp = box.tmp
        pyroute2_cli = Path(sys.executable).with_name("pyroute2-dhcp-client")
        peers = {
            LARK_WHOLE: [
                sys.executable,
                "-m",
                "lark_async.cli",
                "dhcp-test",
                "--interface",
                "uplink",
                "--probe",
                "off",
            ],
            "pyroute2-dhcp-client (whole process)": [
                *(
                    [str(pyroute2_cli)]
                    if pyroute2_cli.exists()
                    else [sys.executable, "-m", "pyroute2.dhcp.cli"]
                ),
                "uplink",
                "-x",
                "10",
                "--disable-hooks",
                "--lease-type",
                "pyroute2.dhcp.leases.JSONStdoutLease",
                "--log-level",
                "ERROR",
            ],
        }
        if shutil.which("udhcpc") or shutil.which("busybox"):
            udhcpc = shutil.which("udhcpc") or shutil.which("busybox")
            pre = [udhcpc] if udhcpc.endswith("udhcpc") else [udhcpc, "udhcpc"]
            peers["busybox udhcpc (whole process)"] = [
                *pre,
                "-i",
                "uplink",
                "-n",
                "-q",
                "-f",
                "-s",
                "/bin/true",
            ]
        if shutil.which("dhclient"):
            peers["ISC dhclient (whole process)"] = [
                "dhclient",
                "-1",
                "-sf",
                "/bin/true",
                "-lf",
                f"{tmp}/dhclient.leases",
                "-pf",
                f"{tmp}/dhclient.pid",
                "uplink",
            ]
        socks = dhcp_sockets(host.netns)
        samples: dict[str, list[float]] = {LARK_IN: [], PYROUTE2_IN: []}
        for r in range(rounds):
            samples[LARK_IN].append(trio.run(lark_in_process, socks, r))
            samples[PYROUTE2_IN].append(pyroute2_in_process(host.netns))
            for name, argv in list(peers.items()):
                try:
                    samples.setdefault(name, []).append(whole(host.netns, argv))
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                    print(f"{name}: failed ({exc}); dropped from the table", file=sys.stderr)
                    peers.pop(name)
                    samples.pop(name, None)
        socks.close()
        left = box.leftovers()
        addrs = sh("ip", "-o", "-4", "addr", "show", "dev", "uplink", netns=host.netns).stdout
        left += [f"address {a}" for a in re.findall(r"inet (\S+)/", addrs) if a != host.address]
        if left:
            print(f"left behind: {left}", file=sys.stderr)
    return {k: v for k, v in samples.items() if v}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    need_root()
    samples = measure(args.rounds)
    print_table(
        f"Time to a lease against dnsmasq --no-ping, {args.rounds} rounds",
        list(samples.items()),
        [b for b in (LARK_IN, LARK_WHOLE) if b in samples],
        [lab for b, lab in ((LARK_IN, "Lark in-proc"), (LARK_WHOLE, "Lark whole")) if b in samples],
    )
    ratio = statistics.median(samples[LARK_IN]) / statistics.median(samples[PYROUTE2_IN])
    met = ratio <= TARGET_RATIO
    print(
        f"\nLark in-process / pyroute2 in-process: {ratio:.2f}x "
        f"(target <= {TARGET_RATIO:.1f}x): {'met' if met else 'NOT MET'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
