"""Time to a DHCP lease with a black-hole responder on the LAN, against the same LAN without it.

    sudo .venv/bin/python bench/dhcp_hostile.py [--rounds 10] [--delay 1] [--timeout 20]

The LAN of issue 16, in throwaway namespaces (common.site_sandbox): a site bridge with
dnsmasq, which waits ``--delay`` seconds before each OFFER (``--dhcp-reply-delay``, its own
delay), and a client namespace on that bridge. On the hostile LAN the tests' hostile
responder (tests/helpers/hostile_dhcp.py) also plays a black hole: it OFFERs at once and
never ACKs. On the plain LAN the same program only listens. Each round runs every client
on both LANs, in alternating order, one after the other:

* ``lark-agent dhcp-test --interface uplink --probe off`` (whole process, as bench/dhcp.py);
* ``pyroute2-dhcp-client -x TIMEOUT`` (whole process), when installed; busybox ``udhcpc``
  and ISC ``dhclient`` when installed (as bench/dhcp.py runs them).

Two figures per client and LAN: the whole process, start to exit (bound, printed,
released), and on the wire, the client's first DISCOVER to dnsmasq's first ACK, both
seen by the responder on the bridge (no process start-up in it). A round that gets no
lease within ``--timeout`` counts as failed and adds no sample. Printed: medians, spreads,
the black-hole LAN's ratio to and difference from the plain LAN (same run), the REQUESTs
each client sent the black hole before it asked dnsmasq, and Lark's target: with the black
hole, on the wire, at most dnsmasq's own delay plus 1 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import need_root, print_columns, print_table, site_sandbox
from helpers import hostile_dhcp
from sandbox import SITE_ADDR

LARK = "lark-agent dhcp-test"
LANS = ("plain LAN", "black hole on the LAN")
TARGET_OVER_DELAY_S = 1.0  # issue 16: a lease within the real server's own delay plus 1 s


def clients(tmp: Path, timeout_s: float) -> dict[str, list[str]]:
    """The contenders' command lines (run in the client namespace); the missing left out."""
    found = {
        LARK: [
            sys.executable,
            "-m",
            "lark_async.cli",
            "dhcp-test",
            "--interface",
            "uplink",
            "--probe",
            "off",
            "--timeout",
            f"{timeout_s:g}",
        ]
    }
    pyroute2 = Path(sys.executable).with_name("pyroute2-dhcp-client")
    if pyroute2.exists():
        found["pyroute2-dhcp-client"] = [
            str(pyroute2),
            "uplink",
            "-x",
            f"{timeout_s:g}",
            "--disable-hooks",
            "--lease-type",
            "pyroute2.dhcp.leases.JSONStdoutLease",
            "--log-level",
            "ERROR",
        ]
    udhcpc = shutil.which("udhcpc") or shutil.which("busybox")
    if udhcpc:
        pre = [udhcpc] if udhcpc.endswith("udhcpc") else [udhcpc, "udhcpc"]
        tries = str(max(1, int(timeout_s // 3)))
        found["busybox udhcpc"] = [*pre, "-i", "uplink", "-n", "-q", "-f", "-t", tries]
        found["busybox udhcpc"] += ["-T", "3", "-s", "/bin/true"]
    if shutil.which("dhclient"):
        found["ISC dhclient"] = ["dhclient", "-1", "-sf", "/bin/true"]
        found["ISC dhclient"] += ["-lf", f"{tmp}/dhclient.leases", "-pf", f"{tmp}/dhclient.pid"]
        found["ISC dhclient"] += ["uplink"]
    return found


def one_round(box, ns: str, argv: list[str], hostile: bool, timeout_s: float) -> dict:
    """One client on one LAN: whole-process seconds, wire seconds, REQUESTs to the black hole
    before one to dnsmasq (None where there was no lease)."""
    listener = hostile_dhcp.start(box, *(["black-hole"] if hostile else []), tag="round")
    try:
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                ["nsenter", f"--net=/run/netns/{ns}", *argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout_s + 10,
            )
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        whole = time.perf_counter() - t0
        time.sleep(0.1)  # the ACK's record line
    finally:
        listener.stop()
    wire = listener.to_real_ack(SITE_ADDR)
    before = 0
    for request in listener.requests():
        if request["server_id"] == SITE_ADDR:
            break
        before += request in listener.named("black-hole")
    return {"whole": whole if ok else None, "wire": wire if ok else None, "requests": before}


def measure(rounds: int = 10, delay: int = 1, timeout_s: float = 20.0) -> dict:
    """Per client and LAN: whole-process and wire seconds of each round that got a lease, the
    rounds that did not, and the REQUESTs to the black hole of each round."""
    result: dict = {"delay_s": delay, "timeout_s": timeout_s, "rounds": rounds, "clients": {}}
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
                f"--dhcp-reply-delay={delay}",
                "--dhcp-range=10.77.0.100,10.77.0.250,2m",
                f"--dhcp-leasefile={box.tmp}/leases",
                "--user=root",
            ],
        )
        time.sleep(0.5)
        contenders = clients(box.tmp, timeout_s)
        for name in contenders:
            result["clients"][name] = {
                lan: {"whole": [], "wire": [], "failed": 0, "requests": []} for lan in LANS
            }
        for r in range(rounds):
            for name, argv in contenders.items():
                for lan in LANS if r % 2 == 0 else reversed(LANS):
                    got = one_round(box, host.netns, argv, lan != LANS[0], timeout_s)
                    cell = result["clients"][name][lan]
                    cell["requests"].append(got["requests"])
                    if got["whole"] is None:
                        cell["failed"] += 1
                        continue
                    cell["whole"].append(got["whole"])
                    if got["wire"] is not None:
                        cell["wire"].append(got["wire"])
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
        left = box.leftovers()
        if left:
            print(f"left behind: {left}", file=sys.stderr)
    return result


def report(result: dict) -> None:
    delay, rounds = result["delay_s"], result["rounds"]
    for what, title in (
        ("wire", "first DISCOVER to dnsmasq's ACK, on the wire"),
        ("whole", "whole process, start to exit"),
    ):
        rows, baselines, labels = [], [], []
        for name, lans in result["clients"].items():
            for lan in LANS:
                rows.append((f"{name}, {lan}", lans[lan][what]))
            if lans[LANS[0]][what]:
                baselines.append(f"{name}, {LANS[0]}")
                labels.append(f"{name.split()[0]} plain")
        print_table(
            f"Time to a lease, {title}: dnsmasq {delay} s late with each OFFER, {rounds} "
            "rounds (ratio: to the same client on the plain LAN)",
            rows,
            baselines,
            labels,
        )
    cells = []
    for name, lans in result["clients"].items():
        plain, hostile = lans[LANS[0]], lans[LANS[1]]
        diff = "-"
        if plain["wire"] and hostile["wire"]:
            diff = f"{statistics.median(hostile['wire']) - statistics.median(plain['wire']):+.2f} s"
        requests = hostile["requests"]
        cells.append(
            [
                name,
                diff,
                f"{statistics.median(requests):g}" if requests else "-",
                f"{max(requests)}" if requests else "-",
                f"{hostile['failed']}/{rounds}",
                f"{plain['failed']}/{rounds}",
            ]
        )
    print_columns(
        "The black hole's cost (same run)",
        [
            "client",
            "wire: black hole - plain",
            "REQUESTs to it, median",
            "max",
            "no lease (black hole)",
            "no lease (plain)",
        ],
        cells,
    )
    lark = result["clients"][LARK][LANS[1]]
    limit = delay + TARGET_OVER_DELAY_S
    if lark["wire"] and not lark["failed"]:
        got = statistics.median(lark["wire"])
        verdict = "met" if got <= limit else "MISSED"
        print(f"\ntarget: Lark's lease with a black hole on the wire <= {limit:g} s (dnsmasq's")
        print(f"{delay} s + {TARGET_OVER_DELAY_S:g} s): median {got:.2f} s, {verdict}")
    else:
        print(f"\ntarget: Lark's lease with a black hole on the wire <= {limit:g} s: MISSED")
        print(f"(no lease within {result['timeout_s']:g} s in {lark['failed']}/{rounds} rounds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--delay", type=int, default=1, help="dnsmasq's reply delay (s)")
    parser.add_argument("--timeout", type=float, default=20.0, help="per lease (s)")
    args = parser.parse_args()
    need_root()
    report(measure(args.rounds, args.delay, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
