"""IPv6 NAT jobs (issue 19): what a dual-stack job costs against an IPv4-only one.

    sudo .venv/bin/python bench/ipv6.py [--rounds N]

In a throwaway host namespace made dual-stack (a veth uplink with an IPv4 and a global
IPv6 address and both default routes, so that LARK_IPV6 = auto gives jobs IPv6), Lark's
in-process setup and teardown of one NAT job (bench/setup_teardown.py's ``Lark``), with
``LARK_IPV6 = off`` (IPv4 only) and ``auto`` (IPv4 and NAT66: a second locked pair,
both ends' IPv6 without duplicate address detection, the IPv6 rules in the same
nfnetlink batch), interleaved round by round in rotating order. Target: dual-stack at
most 1.3x IPv4-only (no DAD wait: with it the job's address would stay tentative for a
second). Nothing leaves the bench host.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio
from common import bench_tmp, call_in_bench_host, print_table, quartiles
from setup_teardown import Lark

from lark_async.decide.modes import IPv6Use

TARGET = 1.3  # dual-stack setup+teardown over IPv4-only's, at most (issue 19)
IPV4_ONLY, DUAL_STACK = "IPv4 only (LARK_IPV6 off)", "dual-stack NAT66 (LARK_IPV6 auto)"
UPLINK = (
    ("link", "add", "uplink", "type", "veth", "peer", "name", "uplink-peer"),
    ("link", "set", "uplink-peer", "up"),
    ("addr", "add", "10.99.0.2/24", "dev", "uplink"),
    ("addr", "add", "fd99::2/64", "dev", "uplink", "nodad"),
    ("link", "set", "uplink", "up"),
    ("route", "add", "default", "via", "10.99.0.1"),
    ("-6", "route", "add", "default", "via", "fd99::1", "dev", "uplink"),
)


class LarkFamilies(Lark):
    def __init__(self, tmp: Path, ipv6: IPv6Use, label: str) -> None:
        super().__init__(tmp)
        self.settings = dataclasses.replace(self.settings, ipv6=ipv6)
        self.label = label


def measure(rounds: int = 30) -> dict[str, list[float]]:
    """Seconds per round: '<label> setup+teardown', '... setup', '... teardown'. Inside a
    bench host, which it makes dual-stack first."""
    for step in UPLINK:
        subprocess.run(["ip", *step], check=True)
    return trio.run(_measure, rounds)


async def _measure(rounds: int) -> dict[str, list[float]]:
    tmp = bench_tmp()
    systems = [
        LarkFamilies(tmp, IPv6Use.OFF, IPV4_ONLY),
        LarkFamilies(tmp, IPv6Use.AUTO, DUAL_STACK),
    ]
    samples: dict[str, list[float]] = {}
    for r in range(-1, rounds):  # round -1: warm-up (the table, the caches)
        for c in systems[r % 2 :] + systems[: r % 2]:
            setup = await c.setup(f"{'4' if c.label == IPV4_ONLY else '6'}{r + 1}")
            teardown = await c.teardown(f"{'4' if c.label == IPV4_ONLY else '6'}{r + 1}")
            if r >= 0:
                for what, value in (("setup+teardown", setup + teardown), ("setup", setup),
                                    ("teardown", teardown)):  # fmt: skip
                    samples.setdefault(f"{c.label} {what}", []).append(value)
        time.sleep(0.01)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    res = call_in_bench_host("ipv6", "measure", rounds=args.rounds)
    for what in ("setup+teardown", "setup", "teardown"):
        names = [f"{IPV4_ONLY} {what}", f"{DUAL_STACK} {what}"]
        print_table(f"NAT job {what}", [(n, res[n]) for n in names], [names[0]], ["IPv4 only"])
    ratio = (
        quartiles(res[f"{DUAL_STACK} setup+teardown"])[0]
        / quartiles(res[f"{IPV4_ONLY} setup+teardown"])[0]
    )
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"\ndual-stack / IPv4-only setup+teardown: {ratio:.2f}x (<= {TARGET}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
