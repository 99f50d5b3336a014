"""Bridge mode against NAT: job start to running, teardown, and bulk TCP throughput.

    sudo .venv/bin/python bench/bridge.py [--rounds 20] [--iperf-rounds 3] [--others 200]

    sudo .venv/bin/python bench/bridge.py --quick     # 3 rounds, 2 iperf rounds, 20 others

Everything runs in throwaway namespaces (tests/sandbox.py): a site namespace with
bridge br0 (10.77.0.1/24), an HTTP server, ``kea-dhcp4`` (lifetime 3600 s) and
``iperf3 -s``; one execute-host namespace on it whose ``uplink`` the first bridge job
turns into the bridge ``lark``. The bench itself enters the host namespace, so every
``lark-agent run`` is started (and timed) exactly as on a node, with no nsenter.

1. Start and teardown, round by round and in rotating order so drift hits all alike:
   NAT (``--local-network 192.168.180.0/22``), bridge + DHCP (``--network-type bridge
   --bridge-device uplink``), bridge + static (``--address-type static``). Each round runs
   ``lark-agent run -- true`` (wall time) and ``lark-agent run -- date +%s.%N``: the job's
   own clock reading gives start -> job running and job exit -> agent exit. From the
   agent's log: its "network ready in X ms" with the per-step breakdown, and the
   timestamps (ms) of "job exited" and "cleaned up" (teardown inside the agent).
   One warm-up round per mode is not counted; the first bridge job's bridge step
   (making ``lark`` from ``uplink``) is shown on its own.
2. Bulk TCP job -> site: ``iperf3 -c 10.77.0.1 -t S -J`` as the job (NAT job, bridge +
   DHCP job), in the same job networks built without Lark (below), and run directly in
   the host namespace (no namespace, no veth: for information), interleaved, with 0 and
   with N other jobs running (``lark-agent run -- sleep``; half NAT, half bridge +
   static on 10.77.1.x/16 by default, so both of Lark's tables hold N/2 other jobs).
   host -> site is also measured once before the bridge exists (plain veth uplink).
   The job networks without Lark ("plain"), made with ip and nft in the host namespace
   once the bridge exists, and removed at the end: ``<prefix>-plain``, a veth pair
   (192.168.250.1/30 on the host end ``plain-nat``, .2 inside, default route to .1),
   IPv4 forwarding on, and ``table ip plainnat`` masquerading 192.168.250.2; and
   ``<prefix>-plainbr``, a veth whose host end ``plain-br`` is a port of the bridge
   ``lark``, 10.77.0.253/24 inside (outside Kea's pool), default route via 10.77.0.1.
   Their iperf3 runs with nsenter into them, as the job's does.
Afterwards: nothing of the bench's may be left but the bridge ``lark`` (until the host
namespace goes), and the sandbox is destroyed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import agent_run, entered_netns, leftover_netns, need_root, print_table, site_sandbox
from sandbox import SITE_ADDR, SITE_NET, Host, Sandbox, sh, start_kea

ROOT = Path(__file__).resolve().parent.parent
IPERF_PORT = 5201
POOL = (f"{SITE_NET}.100", f"{SITE_NET}.250")
STATIC = f"{SITE_NET}.60"
NAT_NET = "192.168.180.0/22"  # room for the measured jobs and hundreds of others
LIFETIME = 3600
MODES = {
    "nat": ("--local-network", NAT_NET),
    "bridge+dhcp": ("--network-type", "bridge", "--bridge-device", "uplink"),
    "bridge+static": (
        "--network-type",
        "bridge",
        "--bridge-device",
        "uplink",
        "--address-type",
        "static",
        "--static-address",
        f"{STATIC}/24",
        "--gateway",
        SITE_ADDR,
    ),
}
# The job networks without Lark (see the docstring): addresses in no pool of this bench's
PLAIN_NAT = ("192.168.250.1", "192.168.250.2")  # host end, inside; a /30 not in NAT_NET
PLAIN_BRIDGED = f"{SITE_NET}.253"  # not Kea's POOL, the host's .11, STATIC, nor 10.77.1.x
# Kea's warnings about this bench's own configuration (in-memory leases, one thread)
KEA_BENIGN = ("DHCPSRV_MEMFILE_NO_STORAGE", "DHCP4_MULTI_THREADING_INFO")
TAG = {"nat": "n", "bridge+dhcp": "d", "bridge+static": "s"}
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+\[\d+\] (\w+) (\S+): (.*)$")
READY = re.compile(r"network ready \((\w+)\) in ([0-9.]+) ms \(([^)]*)\)")


def start_iperf_server(box: Sandbox) -> subprocess.Popen:
    proc = box.start_in(box.site, ["iperf3", "-s", "-B", SITE_ADDR, "-p", str(IPERF_PORT)])
    end = time.monotonic() + 10
    while f":{IPERF_PORT}" not in sh("ss", "-Hltn", netns=box.site).stdout:
        if proc.poll() is not None or time.monotonic() > end:
            sys.exit("iperf3 -s did not start")
        time.sleep(0.05)
    return proc


@dataclasses.dataclass
class Ctx:
    box: Sandbox
    host: Host
    logs: Path
    problems: list[str] = dataclasses.field(default_factory=list)

    def agent(self, name: str, *flags: str) -> tuple[list[str], Path]:
        log = self.logs / f"{name}.log"
        # (the sandbox keeps its state and locks where agent_run puts them: tmp/state, tmp/lock)
        return agent_run(self.box.tmp, "--name", name, "--log-file", str(log), *flags), log


@dataclasses.dataclass
class Run:
    wall_s: float
    started_at: float  # time.time() just before the agent was started
    ended_at: float  # time.time() just after it exited
    stdout: str
    ready_s: float | None = None
    steps: dict[str, float] = dataclasses.field(default_factory=dict)
    job_exited_at: float | None = None  # log timestamps, ms resolution
    cleaned_up_at: float | None = None


def stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_log(name: str, log: Path, run: Run, problems: list[str]) -> None:
    for line in log.read_text().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        when, level, _logger, message = m.groups()
        if level not in ("INFO", "DEBUG"):
            problems.append(f"{name}: {level} {message}")
        if ready := READY.search(message):
            run.ready_s = float(ready.group(2)) / 1000
            for part in ready.group(3).split(", "):
                step, _, ms = part.rpartition(" ")
                run.steps[step] = float(ms) / 1000
        elif "job exited with status" in message:
            run.job_exited_at = stamp(when)
        elif message.endswith("cleaned up"):
            run.cleaned_up_at = stamp(when)


def run_job(ctx: Ctx, name: str, flags: tuple[str, ...], job: list[str]) -> Run:
    argv, log = ctx.agent(name, *flags, "--", *job)
    started_at, t0 = time.time(), time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    wall, ended_at = time.perf_counter() - t0, time.time()
    if r.returncode != 0:
        text = log.read_text() if log.exists() else ""
        raise SystemExit(f"{name}: exit {r.returncode}\n{r.stderr}{text}")
    if r.stderr.strip():
        ctx.problems.append(f"{name}: stderr: {r.stderr.strip()}")
    run = Run(wall, started_at, ended_at, r.stdout)
    parse_log(name, log, run, ctx.problems)
    return run


# -- 1: start and teardown ----------------------------------------------------


def start_stop(ctx: Ctx, prefix: str, rounds: int) -> tuple[dict[str, list[float]], str]:
    samples: dict[str, list[float]] = {}

    def add(key: str, value: float | None) -> None:
        if value is not None:
            samples.setdefault(key, []).append(value)

    first_bridge = ""
    modes = list(MODES)
    for r in range(-1, rounds):  # round -1: warm-up, not counted
        order = modes[r % len(modes) :] + modes[: r % len(modes)]
        for mode in order:
            base = f"{prefix}{TAG[mode]}"
            true = run_job(ctx, f"{base}t{r + 1}", MODES[mode], ["true"])
            date = run_job(ctx, f"{base}d{r + 1}", MODES[mode], ["date", "+%s.%N"])
            if r < 0:
                if mode != "nat" and not first_bridge:
                    first_bridge = (
                        f"first bridge job ({mode}): bridge step "
                        f"{true.steps.get('bridge', float('nan')) * 1e3:.1f} ms (made lark from "
                        f"uplink), network ready {(true.ready_s or float('nan')) * 1e3:.1f} ms; "
                        f"the next: bridge step {date.steps.get('bridge', float('nan')) * 1e3:.1f}"
                        " ms"
                    )
                continue
            add(f"{mode}: wall, run -- true", true.wall_s)
            add(f"{mode}: wall, run -- date", date.wall_s)
            job_ran_at = float(date.stdout.strip())
            add(f"{mode}: start -> job running", job_ran_at - date.started_at)
            add(f"{mode}: job exit -> agent exit", date.ended_at - job_ran_at)
            for run in (true, date):
                add(f"{mode}: network ready (agent)", run.ready_s)
                for step, s in run.steps.items():
                    add(f"{mode}:   {step}", s)
                if run.job_exited_at is not None and run.cleaned_up_at is not None:
                    add(f"{mode}: teardown (log, ms res.)", run.cleaned_up_at - run.job_exited_at)
        if r >= 0:
            # the same without Lark, for scale
            t0 = time.perf_counter()
            subprocess.run(["true"], check=True)
            add("true alone: wall", time.perf_counter() - t0)
    return samples, first_bridge


def print_start_stop(samples: dict[str, list[float]], rounds: int) -> None:
    rows = lambda keys: [(k, samples[k]) for k in keys if k in samples]  # noqa: E731
    modes = list(MODES)
    print_table(
        f"Whole run, {rounds} rounds (kernel {os.uname().release}, {os.cpu_count()} CPUs)",
        rows(
            [f"{m}: wall, run -- true" for m in modes]
            + [f"{m}: wall, run -- date" for m in modes]
            + ["true alone: wall"]
        ),
        ["nat: wall, run -- true"],
        ["nat"],
    )
    print_table(
        "Start -> job running (job's own clock) and the agent's own setup figure",
        rows(
            [f"{m}: start -> job running" for m in modes]
            + [f"{m}: network ready (agent)" for m in modes]
        ),
        ["nat: start -> job running", "nat: network ready (agent)"],
        ["nat start", "nat ready"],
    )
    steps = sorted(
        (k for k in samples if ":   " in k),
        key=lambda k: (modes.index(k.split(":")[0]), k),
    )
    order = {"address": 9, "bridge": 0, "netns": 1, "firewall": 2, "forwarding": 3}
    steps.sort(key=lambda k: (modes.index(k.split(":")[0]), order.get(k.split()[-1], 5)))
    print_table("Setup steps, from the agent's log (both jobs of each round)", rows(steps), [])
    print_table(
        "Teardown: job exit (its clock) -> agent exit; agent log 'job exited' -> 'cleaned up'",
        rows(
            [f"{m}: job exit -> agent exit" for m in modes]
            + [f"{m}: teardown (log, ms res.)" for m in modes]
        ),
        ["nat: job exit -> agent exit"],
        ["nat"],
    )


# -- 2: throughput ---------------------------------------------------------------


def gbits(text: str) -> float:
    result = json.loads(text)
    if "error" in result:
        raise SystemExit(f"iperf3: {result['error']}")
    return result["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf_argv(seconds: int) -> list[str]:
    return ["iperf3", "-c", SITE_ADDR, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]


def iperf_direct(seconds: int, netns: str | None = None) -> float:
    """iperf3 in the host namespace, or entered into ``netns`` as a job's is."""
    argv = iperf_argv(seconds)
    if netns is not None:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return gbits(r.stdout)


@dataclasses.dataclass
class Plain:
    """Job networks built without Lark, by plain ip and nft commands in the host namespace
    (every command names that namespace): one NAT, one bridged on ``lark``."""

    host: str  # the execute host's namespace
    prefix: str
    made: list[str] = dataclasses.field(default_factory=list)  # what remove() undoes

    @property
    def nat_ns(self) -> str:
        return f"{self.prefix}-plain"

    @property
    def bridged_ns(self) -> str:
        return f"{self.prefix}-plainbr"

    def ns_of(self, kind: str) -> str:
        return {"plain nat": self.nat_ns, "plain bridge": self.bridged_ns}[kind]

    def _veth(self, ns: str, host_end: str) -> None:
        sh("ip", "netns", "add", ns)
        self.made.append(f"netns {ns}")
        veth = ("type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "add", host_end, *veth, netns=self.host)
        self.made.append(f"link {host_end}")
        sh("ip", "link", "set", "lo", "up", netns=ns)

    def create(self) -> None:
        outside, inside = PLAIN_NAT
        self._veth(self.nat_ns, "plain-nat")
        sh("ip", "addr", "add", f"{outside}/30", "dev", "plain-nat", netns=self.host)
        sh("ip", "link", "set", "plain-nat", "up", netns=self.host)
        for step in (
            ("addr", "add", f"{inside}/30", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("route", "add", "default", "via", outside),
        ):
            sh("ip", *step, netns=self.nat_ns)
        # the bench host's own namespace (Lark's NAT jobs have turned it on already)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=self.host)
        rules = (
            "add table ip plainnat\n"
            "add chain ip plainnat post { type nat hook postrouting priority 100 ; }\n"
            f"add rule ip plainnat post ip saddr {inside} masquerade\n"
        )
        self.made.append("table ip plainnat")
        sh("nft", rules, netns=self.host)

        self._veth(self.bridged_ns, "plain-br")
        sh("ip", "link", "set", "plain-br", "master", "lark", "up", netns=self.host)
        for step in (
            ("addr", "add", f"{PLAIN_BRIDGED}/24", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("route", "add", "default", "via", SITE_ADDR),
        ):
            sh("ip", *step, netns=self.bridged_ns)

    def remove(self) -> None:
        """Undo what create() made, in reverse, each step even when another fails."""
        for item in reversed(self.made):
            kind, _, name = item.partition(" ")
            if kind == "netns":
                sh("ip", "netns", "del", name, check=False)
            elif kind == "link":
                sh("ip", "link", "del", name, check=False, netns=self.host)
            else:
                sh("nft", "delete", *item.split(), check=False, netns=self.host)
        self.made.clear()


def throughput(
    ctx: Ctx, prefix: str, label: str, rounds: int, seconds: int, plain: Plain
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    kinds = ["no Lark", "nat", "plain nat", "bridge+dhcp", "plain bridge"]
    for r in range(rounds):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            if kind == "no Lark":
                value = iperf_direct(seconds)
            elif kind.startswith("plain "):
                value = iperf_direct(seconds, plain.ns_of(kind))
            else:
                name = f"{prefix}i{TAG[kind]}{label}{r}"
                value = gbits(run_job(ctx, name, MODES[kind], iperf_argv(seconds)).stdout)
            samples.setdefault(kind, []).append(value)
    return samples


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


@dataclasses.dataclass
class Others:
    procs: list[subprocess.Popen] = dataclasses.field(default_factory=list)
    kinds: list[str] = dataclasses.field(default_factory=list)
    started_s: float = 0.0
    ready_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def stop(self) -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(120))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        self.procs.clear()
        return time.perf_counter() - t0, codes


def start_others(ctx: Ctx, prefix: str, n: int, kind: str, others: Others) -> None:
    """n jobs that sleep, one after another, each waited for until its job runs."""
    t0 = time.perf_counter()
    bridged = 0
    for i in range(n):
        if mem_available_mib() < 2048:
            raise SystemExit(f"stopping at {i} other jobs: less than 2 GiB of memory left")
        mode = kind if kind != "mixed" else ("nat" if i % 2 == 0 else "bridge+static")
        if mode == "nat":
            flags = MODES["nat"]
        else:
            addr = f"10.77.{1 + bridged // 250}.{1 + bridged % 250}/16"
            bridged += 1
            flags = (*MODES["bridge+static"][:6], "--static-address", addr, "--gateway", SITE_ADDR)
        name = f"{prefix}o{i}"
        argv, log = ctx.agent(name, *flags, "--", "/bin/sh", "-c", "echo ready; exec sleep 3600")
        with open(ctx.logs / f"{name}.stderr", "w") as err:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        others.procs.append(proc)
        others.kinds.append(mode)
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        if not ready or proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"other job {name} did not start; see {log}")
        run = Run(0, 0, 0, "")
        parse_log(name, log, run, ctx.problems)
        if run.ready_s is not None:
            others.ready_ms.setdefault(mode, []).append(run.ready_s)
    others.started_s = time.perf_counter() - t0


def job_rules(netns_name: str) -> str:
    """Jobs in Lark's two tables of the host namespace, for the record."""
    counts = []
    for family in ("inet", "bridge"):
        out = sh("nft", "list", "table", family, "lark", netns=netns_name, check=False).stdout
        counts.append(f"{family} lark: {out.count('chain LARK_')} job chains")
    return ", ".join(counts)


# -- main -----------------------------------------------------------------------------


def measure(
    rounds: int = 20,
    iperf_rounds: int = 3,
    iperf_seconds: int = 3,
    others: int = 200,
    others_kind: str = "mixed",
    skip_start: bool = False,
    skip_iperf: bool = False,
) -> dict:
    """The whole bench in a throwaway sandbox. Returns (JSON) 'start' (seconds per row, see
    start_stop) and 'first_bridge'; 'rates' (Gbit/s: 'plain' (host, before the bridge), and
    'alone'/'busy' by kind, with 0 and with ``others`` other jobs: 'no Lark' (the host
    itself), 'nat', 'bridge+dhcp', and the job networks without Lark 'plain nat', 'plain
    bridge'); 'others' (how those went); 'left', 'gone'
    (leftovers), 'kea' (its lease counts and warnings) and 'problems' (agents' warnings)."""
    running = Others()
    plain: Plain | None = None
    with site_sandbox(kept_links=["lark"]) as box:
        prefix = box.prefix
        res: dict = {"prefix": prefix, "start": {}, "first_bridge": "", "rates": {}, "others": {}}
        try:
            box.create_site()
            host = box.add_host()
            kea_log, _kea = start_kea(box, lifetime=LIFETIME, pool=POOL)
            start_iperf_server(box)
            ctx = Ctx(box, host, box.tmp / "logs")
            ctx.logs.mkdir()
            # this (main) thread and every child: the host namespace
            with entered_netns(host.netns):
                if not skip_iperf:
                    res["rates"]["plain"] = [
                        iperf_direct(iperf_seconds) for _ in range(iperf_rounds)
                    ]
                if not skip_start:
                    res["start"], res["first_bridge"] = start_stop(ctx, prefix, rounds)
                if not skip_iperf:
                    if skip_start:  # make the bridge first, as the start rounds would have
                        run_job(ctx, f"{prefix}mk", MODES["bridge+static"], ["true"])
                    plain = Plain(host.netns, prefix)
                    plain.create()
                    res["rates"]["alone"] = throughput(
                        ctx, prefix, "a", iperf_rounds, iperf_seconds, plain
                    )
                    start_others(ctx, prefix, others, others_kind, running)
                    rules = job_rules(host.netns)
                    rss = sorted(rss_mib(p.pid) for p in running.procs)
                    res["rates"]["busy"] = throughput(
                        ctx, prefix, "b", iperf_rounds, iperf_seconds, plain
                    )
                    stop_s, codes = running.stop()
                    plain.remove()  # before the check that nothing but lark is left in the host
                    plain = None
                    res["others"] = {
                        "n": others,
                        "kinds": {k: running.kinds.count(k) for k in sorted(set(running.kinds))},
                        "started_s": running.started_s,
                        "ready_s": running.ready_ms,
                        "rules": rules,
                        "rss_mib": rss,
                        "stop_s": stop_s,
                        "codes": sorted(set(codes)),
                    }
            res["left"] = box.wait_clean()
            kea_text = kea_log.read_text()
            res["kea"] = {
                "allocated": kea_text.count("DHCP4_LEASE_ALLOC"),
                "released": kea_text.count("DHCP4_RELEASE "),
                "problems": [
                    ln
                    for ln in kea_text.splitlines()
                    if (" WARN " in ln or " ERROR " in ln) and not any(b in ln for b in KEA_BENIGN)
                ],
            }
            res["problems"] = sorted(set(ctx.problems))
        finally:
            if running.procs:
                running.stop()
            if plain is not None:
                plain.remove()
    res["gone"] = leftover_netns(prefix)
    return res


def print_rates_of(res: dict, iperf_rounds: int, iperf_seconds: int) -> None:
    alone, busy, n_others = res["rates"]["alone"], res["rates"]["busy"], res["others"]["n"]
    rows = [
        ("host -> site, plain uplink (no netns)", res["rates"]["plain"]),
        ("host -> site via bridge lark (no netns)", alone["no Lark"]),
        ("no-Lark NAT netns, 0 others", alone["plain nat"]),
        ("NAT job, 0 others", alone["nat"]),
        ("no-Lark bridged netns, 0 others", alone["plain bridge"]),
        ("bridge+DHCP job, 0 others", alone["bridge+dhcp"]),
        (f"host -> site (no netns), {n_others} others", busy["no Lark"]),
        (f"no-Lark NAT netns, {n_others} others", busy["plain nat"]),
        (f"NAT job, {n_others} others", busy["nat"]),
        (f"no-Lark bridged netns, {n_others} others", busy["plain bridge"]),
        (f"bridge+DHCP job, {n_others} others", busy["bridge+dhcp"]),
    ]
    print_table(
        f"Bulk TCP to the site, iperf3 -t {iperf_seconds}, {iperf_rounds} rounds "
        f"(target: Lark job >= 0.9x the same job network without Lark, same load)",
        rows,
        [rows[1][0], rows[6][0]],
        labels=["host, 0", f"host, {n_others}"],
        unit="Gbit/s",
        scale=1,
    )
    for label, base, values in (
        ("NAT, 0 others", alone["plain nat"], alone["nat"]),
        ("bridge+DHCP, 0 others", alone["plain bridge"], alone["bridge+dhcp"]),
        (f"NAT, {n_others} others", busy["plain nat"], busy["nat"]),
        (f"bridge+DHCP, {n_others} others", busy["plain bridge"], busy["bridge+dhcp"]),
    ):
        ratio = statistics.median(values) / statistics.median(base)
        verdict = "met" if ratio >= 0.9 else "NOT met"
        print(
            f"  {label:<28} {ratio:.3f}x of the no-Lark job network (same load): target {verdict}"
        )
    o = res["others"]
    ready = "; ".join(
        f"{k} median {statistics.median(v) * 1e3:.1f} ms, last 10 "
        f"{statistics.median(v[-10:]) * 1e3:.1f} ms"
        for k, v in o["ready_s"].items()
    )
    rss = o["rss_mib"]
    print(
        f"\n{n_others} other jobs {o['kinds']}: all running after {o['started_s']:.1f} s "
        f"(network ready: {ready}); {o['rules']}; agent RSS median "
        f"{rss[len(rss) // 2] if rss else 0:.1f} MiB, total {sum(rss):.0f} MiB; "
        f"stopped in {o['stop_s']:.1f} s, exit codes {o['codes']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=None, help="start/stop rounds (20)")
    parser.add_argument("--iperf-rounds", type=int, default=None, help="iperf3 rounds (3)")
    parser.add_argument("--iperf-seconds", type=int, default=3)
    parser.add_argument("--others", type=int, default=None, help="other running jobs (200)")
    parser.add_argument(
        "--others-kind",
        choices=("mixed", "nat", "bridge+static"),
        default="mixed",
        help="the other jobs' mode (mixed: every other one NAT, the rest bridge + static)",
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds, 2 iperf rounds, 20 others")
    parser.add_argument("--skip-start", action="store_true", help="throughput only")
    parser.add_argument("--skip-iperf", action="store_true", help="start and teardown only")
    args = parser.parse_args()
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 20)
    iperf_rounds = args.iperf_rounds if args.iperf_rounds is not None else (2 if args.quick else 3)
    n_others = args.others if args.others is not None else (20 if args.quick else 200)
    need_root()
    res = measure(
        rounds,
        iperf_rounds,
        args.iperf_seconds,
        n_others,
        args.others_kind,
        args.skip_start,
        args.skip_iperf,
    )
    if not args.skip_start:
        print_start_stop(res["start"], rounds)
        print(f"\n{res['first_bridge']}")
    if not args.skip_iperf:
        print_rates_of(res, iperf_rounds, args.iperf_seconds)
    rc = 0
    if res.get("left"):
        print(f"\nLEFT BEHIND: {res['left']}")
        rc = 1
    elif "left" in res:
        print("\nnothing left behind in the host namespace but the bridge lark")
    kea = res.get("kea", {})
    if kea:
        print(f"kea: {kea['allocated']} leases allocated, {kea['released']} released")
        if kea["problems"]:
            print(f"kea warnings/errors ({len(kea['problems'])}), first: {kea['problems'][:3]}")
    if res.get("problems"):
        print(f"agent warnings/errors ({len(res['problems'])}):")
        for line in res["problems"][:20]:
            print(f"  {line}")
    else:
        print("no warnings or errors in any agent's log or stderr")
    if res["gone"]:
        print(f"namespaces left after destroy: {res['gone']}")
        rc = 1
    else:
        print(f"sandbox destroyed: no {res['prefix']} namespaces, tmpfs unmounted")
    return rc


if __name__ == "__main__":
    sys.exit(main())
