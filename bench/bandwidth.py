"""Bandwidth limits (issue 20): Lark's shaping against the CNI bandwidth plugin, in one run.

    sudo .venv/bin/python bench/bandwidth.py [--rounds 3] [--seconds 4]

    sudo .venv/bin/python bench/bandwidth.py --quick     # 1 round of 2 s transfers

    sudo .venv/bin/python bench/bandwidth.py --limits 1000 --probes 0 --rounds 7  # CPU only

A site namespace (``iperf3 -s`` and a UDP echo server on 10.77.0.1) and an execute host on
its LAN, as in the tests (tests/sandbox.py), all throwaway. Two contenders, interleaved
round by round in rotating order so drift hits both alike, each a NAT job network with the
same limit both ways:

* Lark: ``lark-agent run --bandwidth-limit L -- <job>`` (HTB on each end of the job's veth:
  short packets in a class of their own served first, the rest through a TBF that splits
  GSO segments, with fq_codel where the kernel has it, else a byte FIFO: the leaf it used
  is printed; backends/shaping.py);
* CNI: Debian's containernetworking-plugins, the way a container runtime chains them:
  ``ptp`` (a veth pair, host-local IPAM, ``ipMasq``), then ``bandwidth`` with its
  ``prevResult`` (tbf on the host end for traffic towards the job; an ifb device fed by a
  mirred redirect from the host end's ingress, with a tbf, for traffic from it), at
  ``ingressRate = egressRate = L`` and the same burst as Lark's (shaping.derive_shape);
  its queue is fixed by the plugin (25 ms at the rate, plus the burst). The job runs in
  the CNI namespace with ``nsenter -S nobody``.

The same job (``JOB`` below, run as nobody) in both:

1. Rate: ``iperf3 -c`` (job sending) and ``iperf3 -c -R`` (job receiving) for S s after
   a first second left out (``-O 1``), at 10, 50, 200 and 1000 Mbit/s: what the receiver
   counted (TCP payload) over the limit; target within [0.95, 1.02]. (The shapers count
   Ethernet frames, 1514 bytes for 1448 of payload with TCP timestamps: 0.956 at best.)
2. Latency under load, at --latency-limit (50 Mbit/s): the job saturates its own limit
   (iperf3 in the background, one way, then the other) and, after a second, sends a UDP
   probe every 10 ms to the site's echo server: round-trip p50 and p99 over every round's
   probes, and with no load for reference. Short probes (92 bytes of IP) stand for ping
   (84 bytes; no ping binary on these machines), and both shapers treat them alike, so
   the target is theirs: Lark's p99 at most half the CNI's. Full-size probes (1428 bytes)
   go through the bulk queue in Lark too, so they show that queue's latency (for
   information).
3. CPU per shaped Gbit/s: the transfer's own CPU time, read by the job just before and
   after its iperf3: its iperf3's user and system time, the site's ``iperf3 -s``'s, and
   the node's irq and softirq time (/proc/stat), where the kernel forwards, shapes and
   fires the shapers' timers; over the transfer's Gbit/s, at 1000 Mbit/s, against the same
   transfer unshaped (the same contender's network without a limit, iperf3 pacing itself
   with ``-b 1000M``). Other processes on the machine are not in it (their softirq time
   is, if they use the network). The whole node's busy time is shown beside it, and the
   node's with no transfer, for the background.

Everything lives in namespaces named for the bench's prefix (the CNI's ifb devices and
iptables rules in the execute host's), removed on the way out, also after a failure,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from bridge import IPERF_PORT, start_iperf_server
from common import (
    cni_env,
    cni_plugin_dir,
    entered_netns,
    leftover_netns,
    need_root,
    percentile,
    print_columns,
    print_table,
    quartiles,
    site_sandbox,
)
from helpers.agent import python_job
from helpers.udp import ECHO
from sandbox import SITE_ADDR, Host, Sandbox, sh

from lark_async.backends.shaping import derive_shape

LIMITS_MBIT = (10, 50, 200, 1000)
LATENCY_LIMIT_MBIT = 50
CPU_LIMIT_MBIT = 1000
RATE_BAND = (0.95, 1.02)
P99_VS_CNI = 0.5
ECHO_PORT = 7007
PROBE_SIZES = {"short": 64, "full-size": 1400}  # UDP payload: 92 and 1428 bytes of IP
PROBE_INTERVAL_S = 0.01
WARMUP_S = 1.0  # load before the first probe: the queue is full by then
CNI_SUBNET = "10.89.0.0/24"  # neither the site's LAN nor Lark's NAT pool
NOBODY = 65534
LEAF = re.compile(r"HTB with a (\S+) leaf")
WAYS = {"sending": (), "receiving": ("-R",)}  # the job's side of the transfer

# The job: ``python3 -I -c JOB SPEC``, SPEC a JSON list of tests, each {"iperf": argv or
# null, "probes": n, "size": the probes' UDP payload}; prints a JSON list, one result per
# test: the receiver's bits/s and the sender's retransmits (or "error"), the node's busy
# and total jiffies over the iperf3 run, the transfer's own (``transfer``: the job's iperf3
# and the site's ``iperf3 -s``, SPEC's "server" pid, user and system time, and the node's
# irq and softirq time, where the kernel forwards and shapes), and with probes their
# round-trip times (s) and how many went unanswered.
JOB = f"""
import json, os, resource, select, socket, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")

def jiffies():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(f) - f[3] - f[4], sum(f), f[5] + f[6]

def process_ticks(pid):
    try:
        with open(f"/proc/{{pid}}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime

def children_ticks():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * TICK

def iperf_result(text, code, err):
    try:
        res = json.loads(text)
    except ValueError:
        return {{"error": f"iperf3 exit {{code}}: {{err.strip()[-300:]}}"}}
    if "error" in res:
        return {{"error": res["error"]}}
    end = res["end"]
    return {{"bps": end["sum_received"]["bits_per_second"],
             "retransmits": end.get("sum_sent", {{}}).get("retransmits", 0)}}

def probe(count, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("{SITE_ADDR}", {ECHO_PORT}))
    sent, rtts = {{}}, []
    def receive(until):
        while (left := until - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                return
            data = s.recv(2048)
            at = sent.pop(int.from_bytes(data[:4], "big"), None)
            if at is not None:
                rtts.append(time.monotonic() - at)
    start = time.monotonic()
    for seq in range(count):
        sent[seq] = time.monotonic()
        s.send(seq.to_bytes(4, "big") + bytes(size - 4))
        receive(start + (seq + 1) * {PROBE_INTERVAL_S})
    receive(time.monotonic() + 1.0)
    return rtts, len(sent)

out = []
for test in json.loads(sys.argv[1]):
    res = {{}}
    busy0, total0, irq0 = jiffies()
    mine0, server0 = children_ticks(), process_ticks(test.get("server"))
    proc = None
    if test["iperf"]:
        proc = subprocess.Popen(test["iperf"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    if test["probes"]:
        if proc:
            time.sleep({WARMUP_S})
        res["rtts"], res["lost"] = probe(test["probes"], test["size"])
    if proc:
        text, err = proc.communicate()
        res.update(iperf_result(text, proc.returncode, err))
    busy1, total1, irq1 = jiffies()
    res["busy"], res["total"] = busy1 - busy0, total1 - total0
    res["transfer"] = (children_ticks() - mine0) + (process_ticks(test.get("server")) - server0)
    res["transfer"] += irq1 - irq0
    out.append(res)
print(json.dumps(out))
"""


def iperf(
    seconds: float, way: str, rate_mbit: int | None = None, omit: bool = True, cc: str = ""
) -> list[str]:
    """``cc``: the TCP congestion control of both ends (iperf3 -C), or the namespaces' own."""
    argv = [shutil.which("iperf3") or "iperf3", "-c", SITE_ADDR, "-p", str(IPERF_PORT)]
    argv += ["-C", cc] if cc else []
    argv += ["-t", str(math.ceil(seconds)), "-J", *WAYS[way]]  # (whole seconds only)
    argv += ["-O", "1"] if omit else []
    return argv + (["-b", f"{rate_mbit}M"] if rate_mbit else [])


def node_jiffies() -> tuple[int, int]:
    """The whole node's busy and total jiffies so far (/proc/stat's ``cpu`` line; idle and
    iowait are not busy)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(f) - f[3] - f[4], sum(f)


def cores(busy: int, total: int) -> float:
    """CPUs kept busy on average, from jiffies (every CPU's ticks count in ``total``)."""
    return busy / total * (os.cpu_count() or 1) if total else 0.0


# -- the contenders: a job network at a limit (None: unshaped), running the JOB -------------


@dataclasses.dataclass
class Lark:
    box: Sandbox
    host: Host
    label: str = "Lark"
    count: int = 0

    def run(self, limit: int | None, tests: list[dict], timeout: float) -> list[dict]:
        self.count += 1
        name = f"{self.box.prefix}j{self.count}"
        flags = ("--bandwidth-limit", str(limit)) if limit else ()
        job = python_job(JOB, json.dumps(tests))
        r = self.box.run_agent(self.host, *self.box.who(name), *flags, "--", *job, timeout=timeout)
        if r.returncode != 0:
            raise SystemExit(f"lark-agent run (job {name}) failed ({r.returncode}): {r.stderr}")
        return json.loads(r.stdout)


@dataclasses.dataclass
class Cni:
    """ptp (host-local IPAM, ipMasq) chained with bandwidth, called the CNI way from the
    execute host's namespace (which the bench has entered)."""

    box: Sandbox
    plugins: str
    label: str = "CNI"
    count: int = 0

    def call(self, plugin: str, command: str, key: str, config: dict) -> dict:
        netns = f"{self.box.prefix}-c{key}"
        env = cni_env(command, f"{self.box.prefix}{key}", netns, self.plugins)
        conf = {"cniVersion": "1.0.0", "name": "lkbw", "type": plugin, **config}
        r = subprocess.run(
            [f"{self.plugins}/{plugin}"], input=json.dumps(conf), env=env,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if r.returncode != 0:
            raise SystemExit(
                f"CNI {plugin} {command} failed ({r.returncode}): {r.stdout}{r.stderr}"
            )
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def ptp(self) -> dict:
        ipam = {
            "type": "host-local",
            "subnet": CNI_SUBNET,
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(self.box.tmp / "cni"),
        }
        return {"ipMasq": True, "ipam": ipam}

    @staticmethod
    def shaping(limit: int) -> dict:
        bits, burst = limit * 1_000_000, derive_shape(limit).burst_bytes * 8
        return {
            "ingressRate": bits,
            "ingressBurst": burst,
            "egressRate": bits,
            "egressBurst": burst,
        }

    def up(self, key: str, limit: int | None) -> str:
        netns = f"{self.box.prefix}-c{key}"
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "set", "lo", "up", netns=netns)
        result = self.call("ptp", "ADD", key, self.ptp())
        if limit:
            self.call("bandwidth", "ADD", key, {**self.shaping(limit), "prevResult": result})
        return netns

    def down(self, key: str, limit: int | None) -> None:
        try:
            if limit:
                self.call("bandwidth", "DEL", key, self.shaping(limit))
            self.call("ptp", "DEL", key, self.ptp())
        finally:
            sh("ip", "netns", "del", f"{self.box.prefix}-c{key}", check=False)

    def run(self, limit: int | None, tests: list[dict], timeout: float) -> list[dict]:
        self.count += 1
        key = str(self.count)
        netns = self.up(key, limit)
        try:
            argv = ["nsenter", f"--net=/run/netns/{netns}", "-S", str(NOBODY), "-G", str(NOBODY)]
            r = subprocess.run(
                [*argv, *python_job(JOB, json.dumps(tests))],
                capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
            if r.returncode != 0:
                raise SystemExit(f"the job in {netns} failed ({r.returncode}): {r.stderr}")
            return json.loads(r.stdout)
        finally:
            self.down(key, limit)

    def qdiscs(self, limit: int) -> str:
        """What the plugin put on the host's devices at ``limit`` (one line each)."""
        key = "q"
        self.up(key, limit)
        try:
            out = sh("tc", "qdisc", "show").stdout
            return "\n".join(ln for ln in out.splitlines() if " tbf " in ln or "ingress" in ln)
        finally:
            self.down(key, limit)


# -- the measurements --------------------------------------------------------------------------


def checked(results: list[dict], what: str) -> list[dict]:
    for res in results:
        if "error" in res:
            raise RuntimeError(f"{what}: iperf3: {res['error']}")
    return results


def run_checked(contender, limit: int | None, tests: list[dict], what: str) -> list[dict]:
    """One job; run once more if its iperf3 failed (a server still busy with the last
    test), and a second failure ends the bench."""
    timeout = 60 + sum(float(t["iperf"][t["iperf"].index("-t") + 1]) for t in tests if t["iperf"])
    try:
        return checked(contender.run(limit, tests, timeout), what)
    except RuntimeError as exc:
        print(f"{exc}; once more", file=sys.stderr)
        time.sleep(1)
        return checked(contender.run(limit, tests, timeout), what)


def rotated(items: list, r: int) -> list:
    return items[r % len(items) :] + items[: r % len(items)]


def measure(
    rounds: int = 3,
    seconds: float = 4.0,
    limits: list[int] | None = None,
    probes: int = 300,
    latency_limit: int = LATENCY_LIMIT_MBIT,
    congestion: str = "",
) -> dict:
    """The whole bench in a throwaway sandbox (see the docstring). Returns (JSON):
    'rates' {contender: {limit: {way: [Mbit/s]}}}, 'rtt_ms' {contender: {load: [ms]}} with
    'lost' and 'p99_by_round' alike, 'cpu' {row: [cores per Gbit/s]} and 'cpu_gbit',
    'idle_cores', 'leaf' (Lark's, from its log), 'cni_qdiscs', 'congestion' (TCP's, as
    ``congestion`` asked, else the site's default), 'left' and 'gone'."""
    limits = list(limits or LIMITS_MBIT)
    plugins = cni_plugin_dir("bandwidth")
    if plugins is None:
        raise SystemExit("no CNI bandwidth plugin (install containernetworking-plugins)")
    res: dict = {"limits": limits, "seconds": seconds, "rounds": rounds, "probes": probes}
    res.update(latency_limit=latency_limit, cpu_limit=CPU_LIMIT_MBIT)
    with site_sandbox() as box:
        res["prefix"] = box.prefix
        box.create_site()
        host = box.add_host()
        res["server_pid"] = start_iperf_server(box).pid  # (nsenter execs iperf3)
        default_cc = sh("cat", "/proc/sys/net/ipv4/tcp_congestion_control", netns=box.site)
        res["congestion"] = congestion or f"{default_cc.stdout.strip()} (the default)"
        box.start_in(box.site, [sys.executable, "-I", "-c", ECHO, SITE_ADDR, str(ECHO_PORT)])
        with entered_netns(host.netns):
            contenders = [Lark(box, host), Cni(box, plugins)]
            res["cni_qdiscs"] = contenders[1].qdiscs(latency_limit)
            measure_rounds(
                res, contenders, rounds, seconds, limits, probes, latency_limit, congestion
            )
        log = box.log_file.read_text() if box.log_file.exists() else ""
        res["leaf"] = sorted(set(LEAF.findall(log)))
        res["left"] = box.wait_clean()
    res["gone"] = leftover_netns(res["prefix"])
    return res


def measure_rounds(
    res: dict,
    contenders: list,
    rounds: int,
    seconds: float,
    limits: list[int],
    probes: int,
    latency_limit: int,
    cc: str,
) -> None:
    rates: dict = {c.label: {str(lim): {w: [] for w in WAYS} for lim in limits} for c in contenders}
    rtt: dict = {c.label: {} for c in contenders}
    lost: dict = {c.label: {} for c in contenders}
    p99s: dict = {c.label: {} for c in contenders}
    cpu: dict[str, list[float]] = {}
    cpu_gbit: dict[str, list[float]] = {}
    idle: list[float] = []
    cpu_node: dict[str, list[float]] = {}
    load_s = WARMUP_S + probes * PROBE_INTERVAL_S + 0.5
    res.update(rates=rates, rtt_ms=rtt, lost=lost, p99_by_round=p99s, cpu=cpu, cpu_gbit=cpu_gbit)
    res["cpu_node"] = cpu_node
    server = res["server_pid"]

    def count_cpu(row: str, out: dict) -> None:
        gbit = out["bps"] / 1e9
        cpu.setdefault(row, []).append(cores(out["transfer"], out["total"]) / gbit)
        cpu_node.setdefault(row, []).append(cores(out["busy"], out["total"]) / gbit)
        cpu_gbit.setdefault(row, []).append(gbit)

    res["idle_cores"] = idle
    for r in range(rounds):
        ways = rotated(list(WAYS), r)
        for limit in rotated(limits, r):
            for c in rotated(contenders, r):
                tests = [
                    {"iperf": iperf(seconds, way, cc=cc), "probes": 0, "size": 0, "server": server}
                    for way in ways
                ]
                results = run_checked(c, limit, tests, f"{c.label} at {limit} Mbit/s")
                for way, out in zip(ways, results, strict=True):
                    rates[c.label][str(limit)][way].append(out["bps"] / 1e6)
                    if limit == CPU_LIMIT_MBIT:
                        count_cpu(f"{c.label} shaped to {limit} Mbit/s, job {way}", out)
        for c in rotated(contenders, r):  # the same transfers unshaped, iperf3 pacing itself
            tests = [
                {
                    "iperf": iperf(seconds, way, CPU_LIMIT_MBIT, cc=cc),
                    "probes": 0,
                    "size": 0,
                    "server": server,
                }
                for way in ways
            ]
            results = run_checked(c, None, tests, f"{c.label} unshaped")
            for way, out in zip(ways, results, strict=True):
                count_cpu(f"{c.label} unshaped (iperf3 -b {CPU_LIMIT_MBIT}M), job {way}", out)
        busy0, total0 = node_jiffies()
        time.sleep(min(seconds, 3))
        busy1, total1 = node_jiffies()
        idle.append(cores(busy1 - busy0, total1 - total0))
        for c in rotated(contenders, r) if probes else ():
            tests, loads = [], []
            for kind, size in PROBE_SIZES.items():
                tests.append({"iperf": None, "probes": probes, "size": size})
                tests += [
                    {"iperf": iperf(load_s, way, omit=False, cc=cc), "probes": probes, "size": size}
                    for way in ways
                ]
                loads += [f"{kind}, {load}" for load in ["no load", *(f"job {w}" for w in ways)]]
            results = run_checked(c, latency_limit, tests, f"{c.label} latency")
            for load, out in zip(loads, results, strict=True):
                ms = [x * 1e3 for x in out["rtts"]]
                rtt[c.label].setdefault(load, []).extend(ms)
                lost[c.label][load] = lost[c.label].get(load, 0) + out["lost"]
                if ms:
                    p99s[c.label].setdefault(load, []).append(percentile(ms, 99))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)


# -- output ----------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    m, p25, p75 = quartiles(values)
    return f"{m:.{digits}f} ({p25:.{digits}f}-{p75:.{digits}f})"


def rate_verdicts(res: dict) -> list[tuple[str, bool]]:
    """(what, met) for each Lark rate: its median over the limit in RATE_BAND."""
    lo, hi = RATE_BAND
    out = []
    for limit in res["limits"]:
        for way in WAYS:
            ratio = statistics_median(res["rates"]["Lark"][str(limit)][way]) / limit
            out.append((f"{limit} Mbit/s, job {way}", lo <= ratio <= hi))
    return out


def statistics_median(values: list[float]) -> float:
    return quartiles(values)[0] if values else math.nan


def print_rates(res: dict) -> None:
    lo, hi = RATE_BAND
    rows = []
    for limit in res["limits"]:
        for way in WAYS:
            lark = [v / limit for v in res["rates"]["Lark"][str(limit)][way]]
            cni = [v / limit for v in res["rates"]["CNI"][str(limit)][way]]
            ok = lo <= statistics_median(lark) <= hi
            cni_ok = lo <= statistics_median(cni) <= hi
            rows.append(
                [
                    f"{limit} Mbit/s, job {way}",
                    spread(lark),
                    spread(cni),
                    len(lark),
                    f"{statistics_median(lark) / statistics_median(cni):.3f}x",
                    f"{statistics_median(lark) * limit:.1f} / {statistics_median(cni) * limit:.1f}",
                    f"Lark {'met' if ok else 'NOT met'}, CNI {'in' if cni_ok else 'out'}",
                ]
            )
    print_columns(
        f"Achieved rate / limit (iperf3 -t {res['seconds']:g} -O 1, receiver's TCP payload), "
        f"median (p25-p75) of {res['rounds']} rounds; target [{lo}, {hi}]; at most 0.956 of "
        "payload fits the frames a shaper counts",
        ["limit, direction", "Lark", "CNI bandwidth", "n", "Lark/CNI", "Mbit/s Lark / CNI",
         "verdict"],
        rows,
    )  # fmt: skip


def print_latency(res: dict) -> None:
    limit = res["latency_limit"]
    rows = []
    cni_p99 = {load: percentile(v, 99) for load, v in res["rtt_ms"]["CNI"].items() if v}
    for load in res["rtt_ms"]["Lark"]:
        for label in ("Lark", "CNI"):
            ms = res["rtt_ms"][label].get(load, [])
            if not ms:
                rows.append([f"{label}, {load}", "-", "-", "-", "-", 0, "-", ""])
                continue
            p99 = percentile(ms, 99)
            by_round = res["p99_by_round"][label].get(load, [])
            to_cni = f"{p99 / cni_p99[load]:.2f}x" if cni_p99.get(load) else "-"
            rows.append(
                [
                    f"{label}, {load}",
                    f"{percentile(ms, 50):.2f}",
                    f"{p99:.2f}",
                    f"{min(by_round):.1f}-{max(by_round):.1f}" if by_round else "-",
                    f"{max(ms):.1f}",
                    len(ms),
                    res["lost"][label].get(load, 0),
                    to_cni,
                ]
            )
    print_columns(
        f"Round trip from the job under load, at {limit} Mbit/s both ways: a UDP probe (short: "
        f"{PROBE_SIZES['short'] + 28} B, full-size: {PROBE_SIZES['full-size'] + 28} B of IP) every "
        f"{PROBE_INTERVAL_S * 1e3:g} ms to the site's echo server, {res['probes']} a round, "
        f"{res['rounds']} rounds (target: Lark's p99 <= {P99_VS_CNI:g}x the CNI's)",
        ["contender, load", "p50 ms", "p99 ms", "p99 by round", "max ms", "n", "lost",
         "p99 / CNI"],
        rows,
    )  # fmt: skip
    shape = derive_shape(limit)
    rate = shape.rate_bytes_s
    print(
        f"  queues at {limit} Mbit/s: Lark HTB and splitter burst {shape.burst_bytes} B "
        f"({shape.burst_bytes / rate * 1e3:.1f} ms), short packets first, leaves "
        f"{', '.join(res['leaf']) or '?'} (limit {shape.fifo_limit_bytes} B, "
        f"{shape.fifo_limit_bytes / rate * 1e3:.1f} ms, when bfifo); CNI tbf (same burst):"
    )
    for line in res["cni_qdiscs"].splitlines():
        print(f"    {line.strip()}")


def print_cpu(res: dict) -> None:
    limit = res["cpu_limit"]
    for way in WAYS:
        rows = [(row, v) for row, v in res["cpu"].items() if row.endswith(f"job {way}")]
        base = [row for row, _ in rows if "unshaped" in row]
        print_table(
            f"The transfer's CPU per Gbit/s at {limit} Mbit/s, job {way} (cores: iperf3 at both "
            "ends and the node's irq and softirq time, where the kernel forwards and shapes; "
            "per Gbit/s received)",
            rows,
            base,
            [b.split()[0] + " unshaped" for b in base],
            unit="cores/Gbit/s",
            scale=1,
        )
        for row, _ in rows:
            print(
                f"  {row}: {spread(res['cpu_gbit'][row])} Gbit/s; the whole node "
                f"{spread(res['cpu_node'][row], 2)} cores/Gbit/s"
            )
    idle = res["idle_cores"]
    print(f"  the node with no transfer: {spread(idle, 2)} cores busy (other work on it)")


def print_result(res: dict) -> int:
    print(
        f"\nkernel {os.uname().release}, {os.cpu_count()} CPUs, TCP congestion control "
        f"{res['congestion']}; Lark's leaf: "
        f"{', '.join(res['leaf']) or 'not logged'}"
        + (" (no fq_codel in this kernel: the byte-FIFO fallback)" if res["leaf"] == ["bfifo"]
           else "")
    )  # fmt: skip
    print_rates(res)
    if res["probes"]:
        print_latency(res)
    print_cpu(res)
    verdicts = rate_verdicts(res)
    missed = [what for what, ok in verdicts if not ok]
    print(
        f"\nrate target (Lark within {list(RATE_BAND)}): "
        + ("met in all" if not missed else f"NOT met for {', '.join(missed)}")
    )
    loads = [k for k in res["rtt_ms"]["Lark"] if "no load" not in k]
    for load in loads:
        lark, cni = res["rtt_ms"]["Lark"].get(load), res["rtt_ms"]["CNI"].get(load)
        if lark and cni:
            ratio = percentile(lark, 99) / percentile(cni, 99)
            verdict = "met" if ratio <= P99_VS_CNI else "NOT met"
            if not load.startswith("short"):  # (the target is a ping's; this for information)
                verdict = "for information"
            print(f"latency target ({load} probes): Lark p99 {ratio:.2f}x CNI's: {verdict}")
    rc = 0
    if res["left"]:
        print(f"LEFT BEHIND: {res['left']}")
        rc = 1
    if res["gone"]:
        print(f"namespaces left after destroy: {res['gone']}")
        rc = 1
    else:
        print(f"sandbox destroyed: no {res['prefix']} namespaces, tmpfs unmounted")
    return rc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds (3; quick 1)")
    parser.add_argument("--seconds", type=float, default=None, help="iperf3 -t (4; quick 2)")
    parser.add_argument(
        "--probes", type=int, default=None, help="probes a load (300; quick 200; 0: no latency)"
    )
    parser.add_argument(
        "--limits",
        default="",
        help="the rates' limits, comma-separated (10,50,200,1000; 1000 alone: the CPU part)",
    )
    parser.add_argument("--latency-limit", type=int, default=LATENCY_LIMIT_MBIT)
    parser.add_argument("--quick", action="store_true", help="1 round, 2 s, 200 probes")
    parser.add_argument(
        "--congestion",
        default="",
        help="TCP congestion control (iperf3 -C): one a job that is not root may pick "
        "(net.ipv4.tcp_allowed_congestion_control), e.g. reno, loss-based like cubic",
    )
    parser.add_argument("--json", type=Path, help="write the whole result there")
    args = parser.parse_args()
    need_root()
    res = measure(
        args.rounds or (1 if args.quick else 3),
        args.seconds or (2.0 if args.quick else 4.0),
        [int(x) for x in args.limits.split(",") if x.strip()] or None,
        (200 if args.quick else 300) if args.probes is None else args.probes,
        args.latency_limit,
        args.congestion,
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return print_result(res)


if __name__ == "__main__":
    sys.exit(main())
