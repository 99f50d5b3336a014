"""Many concurrent NAT jobs on one host: does setup slow down as jobs pile up?

    sudo .venv/bin/python bench/scale.py [--jobs 200]

Starts one ``lark-agent run`` after another (each job stays running), reads
each agent's own "network ready in X ms" from its log, then compares the
setup time of the last ten jobs with that of the first ten. Afterwards all
agents get SIGTERM (forwarded to their jobs) and the bench checks that every
namespace, link, nft chain and element, lock and state record is gone.
Runs inside a throwaway host namespace.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import agent_run, bench_prefix, bench_tmp, in_bench_host, print_table

READY = re.compile(r"network ready \(nat\) in ([0-9.]+) ms \(([^)]*)\)")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


PROBE = """
import ipaddress, sys, time
from lark_async.backends import netns
from lark_async.backends.firewall import nft
t1 = time.perf_counter()
netns.enable_forwarding(); t2 = time.perf_counter()
job = nft.JobRules("LARK_probe", "e_probe", ipaddress.IPv4Address("10.255.0.1"), nat=True)
nft.apply_job(job); t3 = time.perf_counter()
nft.read_counters("LARK_probe"); t4 = time.perf_counter()
nft.discard_job(job); t5 = time.perf_counter()
print(f"forwarding {1e3*(t2-t1):.2f}, add chain {1e3*(t3-t2):.2f}, "
      f"read counters {1e3*(t4-t3):.2f}, remove chain {1e3*(t5-t4):.2f} ms")
"""


def probe() -> str:
    """The firewall step's pieces, timed in a fresh process (as an agent would run them)."""
    return subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.strip()


HOG = (
    "import time; b = bytearray(40 << 20); b[::4096] = b'x' * len(b[::4096]); "
    "print('ok', flush=True); time.sleep(600)"
)


def control(n: int) -> str:
    """The same probe beside n idle 40 MiB processes and no Lark at all: how much of the
    slowdown is this machine's, not the number of jobs'."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    try:
        for hog in hogs:
            hog.stdout.readline()
        return probe()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def leftovers(prefix: str, tmp: Path) -> list[str]:
    found = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(f"lark-{prefix}")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [f"link {ln.split(':')[1].strip()}" for ln in links.splitlines() if " e_" in ln]
    out = subprocess.run(
        ["nft", "-j", "list", "table", "inet", "lark"], capture_output=True, text=True
    ).stdout
    for item in json.loads(out or "{}").get("nftables", []):
        if "chain" in item and item["chain"]["name"].startswith("LARK_"):
            found.append(f"chain {item['chain']['name']}")
        for kind in ("map", "set"):
            if item.get(kind, {}).get("elem"):
                found.append(f"{kind} {item[kind]['name']} not empty")
    for d in ("state", "lock"):
        if (tmp / d).exists():
            found += [f"file {p}" for p in (tmp / d).iterdir()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument(
        "--control",
        action="store_true",
        help="also probe beside as many idle 40 MiB processes, without Lark",
    )
    parser.add_argument("--interval", default="5", help="LARK_ACCOUNTING_INTERVAL of the jobs")
    args = parser.parse_args()
    rc = in_bench_host(__file__, sys.argv[1:])
    if rc >= 0:
        return rc
    prefix, tmp = bench_prefix(), bench_tmp()
    (tmp / "logs").mkdir()
    agents: list[subprocess.Popen] = []
    setup_ms: list[float] = []
    steps: list[str] = []
    probe_before = probe()
    t_start = time.perf_counter()
    try:
        for i in range(args.jobs):
            log = tmp / "logs" / f"{i}.log"
            proc = subprocess.Popen(
                [
                    *agent_run(tmp, "--name", f"{prefix}{i}", "--log-file", str(log)),
                    "--local-network",
                    "192.168.180.0/22",
                    "--accounting-interval",
                    args.interval,
                    "--",
                    "/bin/sh",
                    "-c",
                    "echo ready; exec sleep 3600",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            agents.append(proc)
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit(f"job {i} did not start; see {log}")
            match = READY.search(log.read_text())
            setup_ms.append(float(match.group(1)) / 1000 if match else float("nan"))
            steps.append(match.group(2) if match else "?")
        started_s = time.perf_counter() - t_start
        probe_after = probe()
        rss = sorted(rss_kib(p.pid) for p in agents)
        chains = subprocess.run(
            ["nft", "list", "table", "inet", "lark"], capture_output=True, text=True
        ).stdout.count("chain LARK_")
    finally:
        t0 = time.perf_counter()
        for proc in agents:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in agents]
        stop_s = time.perf_counter() - t0
    left = leftovers(prefix, tmp)
    n = args.jobs
    first, last = setup_ms[:10], setup_ms[-10:]
    print_table(
        f"{n} concurrent NAT jobs on one host: per-job network setup, from each agent's log",
        [("jobs 1-10", first), (f"jobs {n - 9}-{n}", last), ("all jobs", setup_ms)],
        ["jobs 1-10"],
    )
    blocks = [setup_ms[i : i + 20] for i in range(0, n, 20)]
    print(
        "\nmedian setup ms by 20 jobs: "
        + " ".join(f"{statistics.median(b) * 1e3:.1f}" for b in blocks)
    )
    per_step: dict[str, list[float]] = {}
    for text in steps:
        for part in text.split(", "):
            step, _, ms = part.rpartition(" ")
            per_step.setdefault(step, []).append(float(ms) / 1000)
    print(
        "\nper step, median ms: "
        + "; ".join(
            f"{step} {statistics.median(v[:10]) * 1e3:.2f}"
            f" -> {statistics.median(v[-10:]) * 1e3:.2f}"
            for step, v in per_step.items()
        )
    )
    print(f"firewall pieces, fresh process, 0 jobs: {probe_before}")
    print(f"firewall pieces, fresh process, {n} jobs: {probe_after}")
    if args.control:
        print(f"firewall pieces, fresh process, {n} idle 40 MiB processes, no jobs: {control(n)}")
    print(
        f"{chains} job chains while all ran; all {n} started in {started_s:.1f} s; "
        f"stopped in {stop_s:.1f} s; exit codes {sorted(set(codes))}"
    )
    print(f"agent RSS: median {rss[len(rss) // 2] / 1024:.1f} MiB, total {sum(rss) / 1024:.0f} MiB")
    print("nothing left behind" if not left else f"LEFT BEHIND: {left[:10]}")
    return 0 if not left and chains == n else 1


if __name__ == "__main__":
    sys.exit(main())
