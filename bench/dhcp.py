"""Time to a DHCP lease against one dnsmasq (--no-ping), Lark's client next to the usual ones.

    sudo .venv/bin/python bench/dhcp.py [--rounds 20]

Everything runs in throwaway namespaces: a site namespace with a bridge and
dnsmasq, and a client namespace on that bridge. Contenders, round-robin:
* Lark in-process: first DISCOVER sent to bound (trio driver, after imports);
* whole process, start to bound-and-exit: ``lark-agent dhcp-test`` (which also
  releases), busybox ``udhcpc -n -q`` and ISC ``dhclient -1`` (each skipped when
  not installed), given a script that does nothing instead of configuring.
pyroute2's ``pyroute2-dhcp-client`` has no exit-on-lease mode, so it is not in
the table yet.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio
from common import print_table
from sandbox import Sandbox, new_prefix

from dhcp import options as opt
from dhcp.client import Client, Config
from dhcp.events import Transmit
from dhcp.trio_driver import Driver, Sockets
from lark_async.backends import netns


def open_sockets(ns: str) -> Sockets:
    def inside() -> Sockets:
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        netns.setns(fd)
        os.close(fd)
        return Sockets.open("uplink")

    return netns.in_fresh_thread(inside)


async def lark_in_process(socks: Sockets, i: int) -> float:
    first: list[float] = []

    def on_action(action) -> None:
        if isinstance(action, Transmit) and not first:
            first.append(time.perf_counter())

    config = Config(
        chaddr=socks.mac,
        client_id=opt.client_id(i, opt.duid_ll(socks.mac)),
        retransmit_initial_s=1.0,
        timeout_s=10,
    )
    driver = Driver(Client(config, rng=random.Random()), socks, on_action=on_action)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        bound = time.perf_counter()
        await driver.release()
        nursery.cancel_scope.cancel()
    return bound - first[0]


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (it creates network namespaces)")
    prefix = new_prefix()
    box = Sandbox(prefix, Path(tempfile.mkdtemp(prefix=f"{prefix}.")), f"{prefix}-site")
    try:
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
        peers = {
            "lark-agent dhcp-test (whole process)": [
                sys.executable,
                "-m",
                "lark_async.cli",
                "dhcp-test",
                "--interface",
                "uplink",
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
        socks = open_sockets(host.netns)
        samples: dict[str, list[float]] = {"Lark in-process (DISCOVER to bound)": []}
        for r in range(args.rounds):
            samples["Lark in-process (DISCOVER to bound)"].append(
                trio.run(lark_in_process, socks, r)
            )
            for name, argv in list(peers.items()):
                try:
                    samples.setdefault(name, []).append(whole(host.netns, argv))
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                    print(f"{name}: failed ({exc}); dropped from the table", file=sys.stderr)
                    peers.pop(name)
                    samples.pop(name, None)
        socks.close()
        rows = [(k, v) for k, v in samples.items() if v]
        print_table(
            f"Time to a lease against dnsmasq --no-ping, {args.rounds} rounds",
            rows,
            ["Lark in-process (DISCOVER to bound)"],
        )
    finally:
        box.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
