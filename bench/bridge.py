"""Bridge mode against NAT: job start to running, teardown, and bulk TCP throughput.

    sudo .venv/bin/python bench/bridge.py [--rounds 20] [--iperf-rounds 3] [--others 200]

    sudo .venv/bin/python bench/bridge.py --quick     # 3 rounds, 2 iperf rounds, 20 others

    sudo .venv/bin/python bench/bridge.py --skip-start --families 46   # IPv4 and IPv6 (issue 19)

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
3. IPv6 (``--families 6``, or ``46`` for both families in the same interleaved rounds):
   the execute host is made dual-stack (``fd77:0:0:1::11/64`` on its uplink and an IPv6
   default route to the site's ``fd77:0:0:1::1``, which the bridge ``lark`` takes over),
   the site runs radvd on br0 (tests/helpers/radvd.py: ``fd77:0:0:1::/64`` autonomous, an
   advertisement every 3-4 s) and ``iperf3 -s`` on its IPv6 address too. Then
   ``iperf3 -6 -c fd77:0:0:1::1`` as a NAT66 job (``--ipv6 on``: a pair from Lark's ULA
   pool, masqueraded by the node) and as a bridge + DHCP job with SLAAC (``--ipv6 on``; the
   job waits for its SLAAC address, then execs iperf3), against the job networks without
   Lark made dual-stack: ``<prefix>-plain`` also gets ``fd00:250::2/64`` (host end ``::1``,
   both without DAD), an IPv6 default route and ``table ip6 plainnat6`` masquerading it;
   ``<prefix>-plainbr`` forms its SLAAC address from the same advertisements. A NAT66
   ``true`` job runs first, so that Lark turns IPv6 forwarding on, as a node's first NAT66
   job does. The other jobs are the same as for IPv4 and, on this node, have IPv6 too.
Afterwards: nothing of the bench's may be left but the bridge ``lark`` (until the host
namespace goes), and the sandbox is destroyed.
"""

from __future__ import annotations

import argparse
import contextlib
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

from common import (
    agent_run,
    cpu_of,
    entered_netns,
    leftover_netns,
    need_root,
    print_table,
    quartiles,
    site_sandbox,
)
from helpers.agent import python_job
from helpers.radvd import start_radvd
from sandbox import SITE_ADDR, SITE_ADDR6, SITE_NET, Host, Sandbox, sh, start_kea

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
# the NAT66 pair without Lark: a ULA /64 that is neither Lark's pool nor the site's LAN
PLAIN_NAT6 = ("fd00:250::1", "fd00:250::2")  # host end, inside
# Kea's warnings about this bench's own configuration (in-memory leases, one thread)
KEA_BENIGN = ("DHCPSRV_MEMFILE_NO_STORAGE", "DHCP4_MULTI_THREADING_INFO")
TAG = {"nat": "n", "bridge+dhcp": "d", "bridge+static": "s", "nat66": "m", "bridge+slaac": "b"}
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+\[\d+\] (\w+) (\S+): (.*)$")
READY = re.compile(r"network ready \((\w+)\) in ([0-9.]+) ms \(([^)]*)\)")
# an agent's log line saying its job got IPv6 (NAT: LARK_IPV6_MODE's pair; bridge: SLAAC)
GOT_IPV6 = re.compile(r": IPv6 (?:nat66|routed) from |: IPv6 on the LAN: SLAAC")
# A bridged job's first act before iperf3 -6: wait for its SLAAC address (the kernel forms
# it from the site router's answer to the job's solicitation), then become iperf3.
SLAAC_WAIT = """\
import os, socket, sys, time
end = time.monotonic() + 20
while True:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.connect((sys.argv[1], 9))
        if not s.getsockname()[0].startswith("fe80"):
            break
    except OSError:
        pass
    finally:
        s.close()
    if time.monotonic() > end:
        sys.exit("no SLAAC address within 20 s")
    time.sleep(0.02)
os.execvp(sys.argv[2], sys.argv[2:])
"""


@dataclasses.dataclass(frozen=True)
class Family:
    """iperf3 to the site over one IP family, as throughput() runs it: from the host itself
    (no netns, the kind ``host``), and in pairs from a Lark job and from the same job network
    built without Lark (Plain's namespaces): (Lark's kind, its row label, the no-Lark kind,
    its row label). ``flags``: the agent's for each Lark kind; ``wait``: what a Lark kind's
    job runs iperf3 with; ``uplink``: the rates' key of the host's own traffic measured
    before the bridge exists."""

    name: str
    site: str  # iperf3 -s listens there
    host: str
    pairs: tuple[tuple[str, str, str, str], ...]
    flags: dict[str, tuple[str, ...]]
    uplink: str
    wait: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [self.host, *(k for lark, _, plain, _ in self.pairs for k in (lark, plain))]


IPV4 = Family(
    "IPv4",
    SITE_ADDR,
    "no Lark",
    (
        ("nat", "NAT job", "plain nat", "no-Lark NAT netns"),
        ("bridge+dhcp", "bridge+DHCP job", "plain bridge", "no-Lark bridged netns"),
    ),
    {"nat": MODES["nat"], "bridge+dhcp": MODES["bridge+dhcp"]},
    "plain",
)
# LARK_IPV6 = on: a job on a node without IPv6 fails, instead of being measured without it
IPV6 = Family(
    "IPv6",
    SITE_ADDR6,
    "no Lark, IPv6",
    (
        ("nat66", "NAT66 job", "plain nat66", "no-Lark NAT66 netns"),
        ("bridge+slaac", "bridge+SLAAC job", "plain bridge+slaac", "no-Lark bridged SLAAC netns"),
    ),
    {
        "nat66": (*MODES["nat"], "--ipv6", "on"),
        "bridge+slaac": (*MODES["bridge+dhcp"], "--ipv6", "on"),
    },
    "plain6",
    {"bridge+slaac": python_job(SLAAC_WAIT, SITE_ADDR6)},
)
FAMILIES = {"4": (IPV4,), "6": (IPV6,), "46": (IPV4, IPV6)}


def start_iperf_server(box: Sandbox, address: str = SITE_ADDR) -> subprocess.Popen:
    proc = box.start_in(box.site, ["iperf3", "-s", "-B", address, "-p", str(IPERF_PORT)])
    listening = f"{f'[{address}]' if ':' in address else address}:{IPERF_PORT} "
    end = time.monotonic() + 10
    while listening not in sh("ss", "-Hltn", netns=box.site).stdout:
        if proc.poll() is not None or time.monotonic() > end:
            sys.exit(f"iperf3 -s on {address} did not start (exit {proc.poll()})")
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


def iperf_argv(seconds: int, site: str = SITE_ADDR) -> list[str]:
    family = ["-6"] if ":" in site else []
    return ["iperf3", *family, "-c", site, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]


def iperf_direct(seconds: int, netns: str | None = None, site: str = SITE_ADDR) -> float:
    """iperf3 in the host namespace, or entered into ``netns`` as a job's is."""
    argv = iperf_argv(seconds, site)
    if netns is not None:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return gbits(r.stdout)


@dataclasses.dataclass
class Plain:
    """Job networks built without Lark, by plain ip and nft commands in the host namespace
    (every command names that namespace): one NAT, one bridged on ``lark``; with ``ipv6``
    both dual-stack, as Lark's jobs are on a dual-stack node: NAT66 (a ULA pair, ip6
    masquerade) and SLAAC from the site's router advertisements."""

    host: str  # the execute host's namespace
    prefix: str
    ipv6: bool = False
    made: list[str] = dataclasses.field(default_factory=list)  # what remove() undoes

    @property
    def nat_ns(self) -> str:
        return f"{self.prefix}-plain"

    @property
    def bridged_ns(self) -> str:
        return f"{self.prefix}-plainbr"

    def ns_of(self, kind: str) -> str:
        nat, bridged = self.nat_ns, self.bridged_ns
        return {
            "plain nat": nat,
            "plain bridge": bridged,
            "plain nat66": nat,
            "plain bridge+slaac": bridged,
        }[kind]

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
        if self.ipv6:
            self._add_ipv6()

    def _add_ipv6(self) -> None:
        outside, inside = PLAIN_NAT6
        # both ends without duplicate address detection, as Lark's pair
        sh("ip", "addr", "add", f"{outside}/64", "dev", "plain-nat", "nodad", netns=self.host)
        for step in (
            ("addr", "add", f"{inside}/64", "dev", "eth0", "nodad"),
            ("-6", "route", "add", "default", "via", outside, "dev", "eth0"),
        ):
            sh("ip", *step, netns=self.nat_ns)
        # (Lark's NAT66 jobs have turned it on already, and taken care of accept_ra)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", netns=self.host)
        rules = (
            "add table ip6 plainnat6\n"
            "add chain ip6 plainnat6 post { type nat hook postrouting priority 100 ; }\n"
            f"add rule ip6 plainnat6 post ip6 saddr {inside} masquerade\n"
        )
        self.made.append("table ip6 plainnat6")
        sh("nft", rules, netns=self.host)
        # the bridged one takes the site's router advertisements (a new namespace's defaults,
        # said once more) and forms its address from the prefix, as a bridged job does
        for knob in ("accept_ra=1", "autoconf=1"):
            sh("sysctl", "-qw", f"net.ipv6.conf.eth0.{knob}", netns=self.bridged_ns)
        end = time.monotonic() + 15
        while not self.slaac_address():
            if time.monotonic() > end:
                raise SystemExit(f"{self.bridged_ns}: no SLAAC address within 15 s")
            time.sleep(0.1)

    def slaac_address(self) -> str | None:
        """The bridged namespace's global IPv6 address, once usable (DAD done)."""
        out = sh("ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
                 netns=self.bridged_ns).stdout  # fmt: skip
        for line in out.splitlines():
            if "tentative" not in line:
                return line.split()[3].split("/")[0]
        return None

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
    ctx: Ctx,
    prefix: str,
    label: str,
    rounds: int,
    seconds: int,
    plain: Plain,
    families: tuple[Family, ...] = (IPV4,),
) -> dict[str, list[float]]:
    """Gbit/s by kind, every family's kinds interleaved in each round, in rotating order. A
    run that fails (iperf3 cannot connect, the agent fails) is run once more, and said in
    ``ctx.problems``: a second failure ends the bench."""
    samples: dict[str, list[float]] = {}
    kinds = [(family, kind) for family in families for kind in family.kinds]
    for r in range(rounds):
        for family, kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            name = f"{prefix}i{TAG.get(kind, '')}{label}{r}"
            try:
                value = rate(ctx, name, family, kind, seconds, plain)
            except SystemExit as exc:
                ctx.problems.append(f"bench: {kind}, round {r} ({label}): {exc}; measured again")
                value = rate(ctx, f"{name}r", family, kind, seconds, plain)
            samples.setdefault(kind, []).append(value)
    return samples


def rate(ctx: Ctx, name: str, family: Family, kind: str, seconds: int, plain: Plain) -> float:
    """One iperf3 run of ``kind`` (a Lark job runs as ``name``), in Gbit/s."""
    if kind == family.host:
        return iperf_direct(seconds, site=family.site)
    if kind not in family.flags:
        return iperf_direct(seconds, plain.ns_of(kind), family.site)
    job = [*family.wait.get(kind, ()), *iperf_argv(seconds, family.site)]
    return gbits(run_job(ctx, name, family.flags[kind], job).stdout)


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
    with_ipv6: int = 0  # of them, the jobs whose agent gave them IPv6

    def cpu_s(self) -> dict[str, float]:
        """User+system CPU seconds the running agents (not their jobs) have used so far, by
        their jobs' mode."""
        used = dict.fromkeys(self.kinds, 0.0)
        for proc, kind in zip(self.procs, self.kinds, strict=True):
            with contextlib.suppress(FileNotFoundError):  # (an agent that has exited)
                used[kind] += cpu_of(proc.pid)
        return used

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
        if GOT_IPV6.search(log.read_text()):
            others.with_ipv6 += 1
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
    families: str = "4",
) -> dict:
    """The whole bench in a throwaway sandbox. ``families``: "4" (an IPv4 node), "6" or "46"
    (a dual-stack node, radvd on the site LAN; the throughput of IPv6 alone, or of both).
    Returns (JSON) 'start' (seconds per row, see start_stop) and 'first_bridge'; 'rates'
    (Gbit/s: 'plain' and 'plain6' (host, before the bridge), and 'alone'/'busy' by kind,
    with 0 and with ``others`` other jobs: each Family's kinds, e.g. 'no Lark' (the host
    itself), 'nat', 'bridge+dhcp', and the job networks without Lark 'plain nat', 'plain
    bridge'); 'others' (how those went); 'left', 'gone' (leftovers), 'kea' (its lease
    counts and warnings) and 'problems' (agents' warnings)."""
    measured = FAMILIES[families]
    dual = any(family.site == SITE_ADDR6 for family in measured)
    running = Others()
    plain: Plain | None = None
    with site_sandbox(kept_links=["lark"]) as box:
        prefix = box.prefix
        res: dict = {"prefix": prefix, "start": {}, "first_bridge": "", "rates": {}, "others": {}}
        res["families"] = families
        try:
            box.create_site()
            host = box.add_host(ipv6=dual)
            kea_log, _kea = start_kea(box, lifetime=LIFETIME, pool=POOL)
            for family in measured:
                start_iperf_server(box, family.site)
            if dual:  # the site's router: SLAAC for bridged jobs (tests/helpers/radvd.py)
                start_radvd(box)
            ctx = Ctx(box, host, box.tmp / "logs")
            ctx.logs.mkdir()
            # this (main) thread and every child: the host namespace
            with entered_netns(host.netns):
                if not skip_iperf:
                    for family in measured:
                        res["rates"][family.uplink] = [
                            iperf_direct(iperf_seconds, site=family.site)
                            for _ in range(iperf_rounds)
                        ]
                if not skip_start:
                    res["start"], res["first_bridge"] = start_stop(ctx, prefix, rounds)
                if not skip_iperf:
                    if skip_start:  # make the bridge first, as the start rounds would have
                        run_job(ctx, f"{prefix}mk", MODES["bridge+static"], ["true"])
                    if dual:  # and IPv6 forwarding on, the way a NAT66 job turns it on
                        run_job(ctx, f"{prefix}mk6", IPV6.flags["nat66"], ["true"])
                    plain = Plain(host.netns, prefix, ipv6=dual)
                    plain.create()
                    res["rates"]["alone"] = throughput(
                        ctx, prefix, "a", iperf_rounds, iperf_seconds, plain, measured
                    )
                    start_others(ctx, prefix, others, others_kind, running)
                    rules = job_rules(host.netns)
                    rss = sorted(rss_mib(p.pid) for p in running.procs)
                    cpu_before, t0 = running.cpu_s(), time.perf_counter()
                    res["rates"]["busy"] = throughput(
                        ctx, prefix, "b", iperf_rounds, iperf_seconds, plain, measured
                    )
                    busy_s, cpu_after = time.perf_counter() - t0, running.cpu_s()
                    busy_cpu_s = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
                    stop_s, codes = running.stop()
                    plain.remove()  # before the check that nothing but lark is left in the host
                    plain = None
                    res["others"] = {
                        "n": others,
                        "kinds": {k: running.kinds.count(k) for k in sorted(set(running.kinds))},
                        "with_ipv6": running.with_ipv6,
                        "started_s": running.started_s,
                        "ready_s": running.ready_ms,
                        "rules": rules,
                        "rss_mib": rss,
                        "busy_s": busy_s,
                        "busy_cpu_s": busy_cpu_s,
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
    for family in FAMILIES[res["families"]]:
        print_family_rates(res, family, iperf_rounds, iperf_seconds)
    o = res["others"]
    ready = "; ".join(
        f"{k} median {statistics.median(v) * 1e3:.1f} ms, last 10 "
        f"{statistics.median(v[-10:]) * 1e3:.1f} ms"
        for k, v in o["ready_s"].items()
    )
    rss = o["rss_mib"]
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in o["busy_cpu_s"].items()) or "0"
    print(
        f"\n{o['n']} other jobs {o['kinds']}, {o['with_ipv6']} of them with IPv6: all running "
        f"after {o['started_s']:.1f} s (network ready: {ready}); {o['rules']}; agent RSS median "
        f"{rss[len(rss) // 2] if rss else 0:.1f} MiB, total {sum(rss):.0f} MiB; in the "
        f"{o['busy_s']:.0f} s of the busy rounds their agents used {cpu} s CPU; stopped in "
        f"{o['stop_s']:.1f} s, exit codes {o['codes']}"
    )


def print_family_rates(res: dict, family: Family, iperf_rounds: int, iperf_seconds: int) -> None:
    alone, busy, n_others = res["rates"]["alone"], res["rates"]["busy"], res["others"]["n"]
    host = family.host
    rows = [
        ("host -> site, plain uplink (no netns)", res["rates"][family.uplink]),
        ("host -> site via bridge lark (no netns)", alone[host]),
    ]
    for n, rates in ((0, alone), (n_others, busy)):
        if n:
            rows.append((f"host -> site (no netns), {n} others", rates[host]))
        for lark, lark_label, plain, plain_label in family.pairs:
            rows += [
                (f"{plain_label}, {n} others", rates[plain]),
                (f"{lark_label}, {n} others", rates[lark]),
            ]
    host_busy = f"host -> site (no netns), {n_others} others"
    print_table(
        f"Bulk TCP to the site over {family.name}, iperf3 -t {iperf_seconds}, {iperf_rounds} "
        f"rounds (target: Lark job >= 0.9x the same job network without Lark, same load)",
        rows,
        [rows[1][0], host_busy],
        labels=["host, 0", f"host, {n_others}"],
        unit="Gbit/s",
        scale=1,
    )
    for n, rates in ((0, alone), (n_others, busy)):
        for lark, lark_label, plain, _ in family.pairs:
            label = f"{lark_label.removesuffix(' job')}, {n} others"
            ratio = statistics.median(rates[lark]) / statistics.median(rates[plain])
            verdict = "met" if ratio >= 0.9 else "NOT met"
            # each round's pair, for the spread (both ran in the same round, seconds apart)
            paired = [a / b for a, b in zip(rates[lark], rates[plain], strict=True)]
            mid, p25, p75 = quartiles(paired)
            print(
                f"  {label:<28} {ratio:.3f}x of the no-Lark job network (same load): target "
                f"{verdict}; round by round {mid:.2f}x ({p25:.2f}-{p75:.2f})"
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
    parser.add_argument(
        "--families",
        choices=tuple(FAMILIES),
        default="4",
        help="throughput over IPv4 (an IPv4 node, the default), or on a dual-stack node (radvd "
        "on the site LAN) over IPv6 (6) or both (46); start/stop runs on that node too",
    )
    parser.add_argument("--json", type=Path, help="write the whole result (every sample) there")
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
        args.families,
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
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
