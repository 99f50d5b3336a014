"""Many jobs at once, and many orphans swept: concurrent starts and ``cleanup --orphans``.

    sudo .venv/bin/python bench/faults.py [--jobs 100] [--orphans 200] [--batch 20]

    sudo .venv/bin/python bench/faults.py --quick      # 20 jobs, 20 orphans

Everything runs in throwaway namespaces (tests/sandbox.py): a site namespace with bridge
br0 (10.77.0.1/24) and an HTTP server, and one execute-host namespace on it. State, locks
and logs live on a tmpfs of the bench's own (as /run/lark does on a node). The bench itself
enters the host namespace, so every ``lark-agent`` is started (and timed) as on a node.

1. N concurrent job starts: N ``lark-agent run`` (NAT) are launched back to back, each job
   connecting to the site, printing its own address and then waiting until a "go" file
   exists (as tests/integration/test_many.py). Per job: launch -> its first stdout line
   (job running), and the agent's own "network ready in X ms" from its log. Then the go
   file appears and every agent's exit is timed (job release -> agent exit). Afterwards
   the sandbox's ``leftovers()`` must be empty once the kernel has deleted the veths the
   agents left to it with their namespaces (timed).
2. M orphans swept: agents started with ``_LARK_TEST_PAUSE_AFTER=firewall`` (in batches,
   about 40 MB each) are SIGKILLed by PID as soon as their log says "test pause after
   firewall", leaving each job's namespace, veth, nft chain, NAT source, state record and
   lock file. Then ``lark-agent cleanup --orphans --match PREFIX`` is timed: ``--dry-run``
   first, then the real run, then once more with nothing left to do (the fixed cost of
   starting the command). Its output is counted per kind; ``leftovers()`` must be empty.
Agents' stderr is kept per agent; non-empty stderr and WARNING/ERROR log lines (but the
test pause's own warning) are reported. Nothing of the bench's may be left afterwards.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import re
import selectors
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import (
    agent_run,
    entered_netns,
    leftover_netns,
    need_root,
    percentile,
    print_columns,
    site_sandbox,
)
from sandbox import HTTP_PORT, SITE_ADDR, Sandbox, netns_list, sh

ROOT = Path(__file__).resolve().parent.parent
NAT_NET = "192.168.180.0/22"  # room for hundreds of jobs at once
PAUSE = {"_LARK_TEST_PAUSE_AFTER": "firewall"}
PAUSED = "test pause after firewall"
JOB = (
    "import os, socket, sys, time\n"
    f"print(socket.create_connection(('{SITE_ADDR}', {HTTP_PORT})).getsockname()[0], flush=True)\n"
    "end = time.time() + 600\n"
    "while not os.path.exists(sys.argv[1]) and time.time() < end:\n"
    "    time.sleep(0.05)\n"
)
LINE = re.compile(r"^\S+ \S+ \S+\[\d+\] (\w+) (\S+): (.*)$")
READY = re.compile(r"network ready \((\w+)\) in ([0-9.]+) ms")


@dataclasses.dataclass
class Bench:
    box: Sandbox
    logs: Path
    problems: list[str] = dataclasses.field(default_factory=list)
    procs: list[subprocess.Popen] = dataclasses.field(default_factory=list)

    def agent(self, name: str, job: list[str], env: dict | None = None) -> subprocess.Popen:
        """``lark-agent run`` (NAT, as nobody) with its own log and stderr files."""
        log = str(self.logs / f"{name}.log")
        # (the sandbox keeps its state and locks where agent_run puts them: tmp/state, tmp/lock)
        argv = agent_run(
            self.box.tmp, "--name", name, "--log-file", log, "--local-network", NAT_NET, "--", *job
        )
        with open(self.logs / f"{name}.stderr", "w") as err:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env={**os.environ, **(env or {})},
            )
        self.procs.append(proc)
        return proc

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def check_agent(self, name: str, allowed: tuple[str, ...] = ()) -> tuple[bool, float | None]:
        """Note WARNING/ERROR log lines (but ``allowed``); (stderr non-empty, ready seconds)."""
        ready = None
        for line in self.log_text(name).splitlines():
            m = LINE.match(line)
            if not m:
                continue
            level, _logger, message = m.groups()
            if level not in ("INFO", "DEBUG") and not any(a in message for a in allowed):
                self.problems.append(f"{name}: log {level} {message}")
            if r := READY.search(message):
                ready = float(r.group(2)) / 1000
        text = (self.logs / f"{name}.stderr").read_text()
        err = [ln for ln in text.splitlines() if ln.strip() and not any(a in ln for a in allowed)]
        if err:
            self.problems.append(f"{name}: stderr: {err[0]}")
        return bool(err), ready

    def stop_all(self) -> None:
        """Whatever of ours still runs: SIGKILL by PID (a failed run only)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    print_columns(title, ["", ""], rows, "<<")


def dist(values: list[float]) -> str:
    if not values:
        return "-"
    ms = [v * 1e3 for v in values]
    return (
        f"p50 {statistics.median(ms):8.1f} ms   p99 {percentile(ms, 99):8.1f} ms   "
        f"min {min(ms):8.1f}   max {max(ms):8.1f}   n {len(ms)}"
    )


def group(left: list[str]) -> dict[str, int]:
    """Leftovers (as ``Sandbox.leftovers`` words them) counted per kind."""
    kinds: collections.Counter[str] = collections.Counter()
    for item in left:
        if item.startswith("file "):
            kinds[f"file in {Path(item.split()[1]).parent.name}/"] += 1
        elif item.startswith("job netns"):
            kinds["job netns"] += 1
        elif item.startswith("link "):
            kinds["host link"] += 1
        elif " elements " in item:
            kinds[item.split(" elements ")[0].rsplit(" in ", 1)[0]] += 1
        else:
            kinds[" ".join(item.split()[:3])] += 1
    return dict(sorted(kinds.items()))


def counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counter.items()) or "none"


# -- 1: concurrent starts ---------------------------------------------------------------


def concurrent(bench: Bench, prefix: str, n: int) -> bool:
    box = bench.box
    go = box.tmp / "go"  # all jobs hold their addresses until this exists
    names = [f"{prefix}m{i}" for i in range(n)]
    job = ["/usr/bin/python3", "-I", "-c", JOB, str(go)]
    mem_before = mem_available_mib()
    launched: list[float] = []
    agents: list[subprocess.Popen] = []
    t0 = time.perf_counter()
    for name in names:
        launched.append(time.perf_counter())
        agents.append(bench.agent(name, job))
    launch_spread = time.perf_counter() - t0

    running: dict[int, float] = {}
    addresses: dict[int, str] = {}
    failed: dict[int, str] = {}
    sel = selectors.DefaultSelector()
    for i, agent in enumerate(agents):
        sel.register(agent.stdout, selectors.EVENT_READ, i)
    deadline = time.monotonic() + 300
    peak_mem_drop = 0
    while len(running) + len(failed) < n and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            i = key.data
            now = time.perf_counter()
            line = agents[i].stdout.readline()
            sel.unregister(agents[i].stdout)
            if line:
                running[i] = now
                addresses[i] = line.strip()
            else:
                failed[i] = f"exit {agents[i].wait()} before its job printed"
        peak_mem_drop = max(peak_mem_drop, mem_before - mem_available_mib())
    for i in range(n):
        if i not in running and i not in failed:
            failed[i] = "no output within 300 s"
    sel.close()
    all_running_s = max(running.values()) - t0 if running else float("nan")
    per_job = [running[i] - launched[i] for i in sorted(running)]
    nft_chains = chains_in(box.hosts[0].netns)

    go.touch()
    released = time.perf_counter()
    exited: dict[int, float] = {}
    end = time.monotonic() + 300
    while len(exited) < n and time.monotonic() < end:
        for i, agent in enumerate(agents):
            if i not in exited and agent.poll() is not None:
                exited[i] = time.perf_counter()
        time.sleep(0.005)
    teardown_s = max(exited.values()) - released if exited else float("nan")
    per_exit = [t - released for t in exited.values()]
    codes = collections.Counter(a.returncode for a in agents)
    for agent in agents:
        agent.stdout.close()
    # the kernel deletes each job's veth with its namespace just after the agent exits
    settle_start = time.perf_counter()
    left = box.wait_clean(timeout=5.0)
    settled_s = time.perf_counter() - settle_start

    stderr_count = 0
    ready: list[float] = []
    for name in names:
        had_err, r = bench.check_agent(name)
        stderr_count += had_err
        if r is not None:
            ready.append(r)
    distinct = len(set(addresses.values())) == len(addresses) == n
    in_pool = all(a.startswith("192.168.18") for a in addresses.values())
    rows = [
        ("launch of all agents (Popen loop)", f"{launch_spread * 1e3:.1f} ms"),
        ("first launch -> all jobs running", f"{all_running_s:.2f} s"),
        ("launch -> job running, per job", dist(per_job)),
        ("agent's own 'network ready', per job", dist(ready)),
        ("jobs running / failed", f"{len(running)} / {len(failed)}"),
        (
            "addresses distinct",
            f"{'yes' if distinct else 'NO'} ({len(set(addresses.values()))} distinct of {n}"
            f"{', all in ' + NAT_NET if in_pool else ', NOT all in ' + NAT_NET})",
        ),
        ("job chains in inet lark while all ran", str(nft_chains)),
        ("memory in use while starting (peak)", f"{peak_mem_drop} MiB"),
        ("go -> all agents exited", f"{teardown_s:.2f} s"),
        ("go -> agent exit, per agent", dist(per_exit)),
        ("exit codes", ", ".join(f"{c}: {k}" for c, k in sorted(codes.items(), key=str))),
        ("agents with non-empty stderr", str(stderr_count)),
        ("last exit -> kernel done with the veths", f"{settled_s * 1e3:.0f} ms"),
        ("leftovers after that", f"{len(left)} ({counts(group(left))})"),
    ]
    print_rows(
        f"1. {n} concurrent job starts on one host (NAT; kernel {os.uname().release}, "
        f"{os.cpu_count()} CPUs)",
        rows,
    )
    for i, why in sorted(failed.items())[:5]:
        print(f"  job {names[i]} failed: {why}")
    if left:
        print(f"  LEFT: {left[:10]}")
    return not failed and distinct and not left and set(codes) == {0} and not stderr_count


def chains_in(host_netns: str) -> int:
    out = sh("nft", "list", "table", "inet", "lark", netns=host_netns, check=False).stdout
    return out.count("chain LARK_")


# -- 2: orphans ---------------------------------------------------------------------------


def vanished(names: list[str]) -> tuple[list[str], list[str]]:
    """Orphans whose job namespace, or host veth, is no longer there."""
    spaces = set(netns_list())
    links = {
        ln.split(":")[1].strip().split("@")[0] for ln in sh("ip", "-o", "link").stdout.splitlines()
    }
    return (
        [n for n in names if f"lark-{n}" not in spaces],
        [n for n in names if f"e_{n}" not in links],
    )


def make_orphans(bench: Bench, prefix: str, m: int, batch: int) -> tuple[float, list[str]]:
    """m agents SIGKILLed in their pause after the firewall step; (seconds, failures).

    After each batch, every orphan so far must still have its namespace and veth: anything
    else removed them (e.g. another ``cleanup --orphans`` on this machine without --match;
    /run/netns is shared by every host namespace)."""
    failures: list[str] = []
    seen_gone: set[str] = set()
    t0 = time.perf_counter()
    for start in range(0, m, batch):
        names = [f"{prefix}o{i}" for i in range(start, min(m, start + batch))]
        agents = {name: bench.agent(name, ["true"], env=PAUSE) for name in names}
        end = time.monotonic() + 50  # well inside the pause's 60 s
        waiting = dict(agents)
        while waiting and time.monotonic() < end:
            for name, agent in list(waiting.items()):
                if PAUSED in bench.log_text(name):
                    agent.send_signal(signal.SIGKILL)
                    del waiting[name]
                elif agent.poll() is not None:
                    failures.append(f"{name}: exited {agent.returncode} before its pause")
                    del waiting[name]
            time.sleep(0.02)
        for name, agent in waiting.items():
            failures.append(f"{name}: no pause within 50 s")
            agent.kill()
        for agent in agents.values():
            agent.wait()
            agent.stdout.close()
        gone_ns, gone_veth = vanished([f"{prefix}o{i}" for i in range(start + len(names))])
        if new := set(gone_ns + gone_veth) - seen_gone:
            seen_gone |= new
            failures.append(
                f"after {time.perf_counter() - t0:.1f} s (batch {start // batch}): "
                f"{len(gone_ns)} job netns and {len(gone_veth)} veths of earlier orphans "
                "have VANISHED (removed from outside the bench)"
            )
    return time.perf_counter() - t0, failures


def cleanup_cmd(bench: Bench, prefix: str, tag: str, *flags: str) -> tuple[float, str, int]:
    box = bench.box
    argv = [
        sys.executable,
        "-m",
        "lark_async.cli",
        "cleanup",
        "--orphans",
        "--state-dir",
        str(box.state_dir),
        "--lock-dir",
        str(box.lock_dir),
        "--match",
        prefix,
        "--log-file",
        str(bench.logs / f"cleanup-{tag}.log"),
        *flags,
    ]
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if r.stderr.strip():
        bench.problems.append(f"cleanup {tag}: stderr: {r.stderr.strip()[:500]}")
    for line in (bench.logs / f"cleanup-{tag}.log").read_text().splitlines():
        m = LINE.match(line)
        if m and m.group(1) not in ("INFO", "DEBUG"):
            bench.problems.append(f"cleanup {tag}: log {m.group(1)} {m.group(3)}")
    return wall, r.stdout, r.returncode


def kinds_printed(out: str, verb: str) -> dict[str, int]:
    """Lines ``<verb> <kind> <name>`` counted per kind; anything else under "other"."""
    kinds: collections.Counter[str] = collections.Counter()
    for line in out.splitlines():
        if line.startswith(f"{verb} "):
            kinds[line.removeprefix(f"{verb} ").rsplit(" ", 1)[0]] += 1
        elif line.strip():
            kinds[f"other: {line.strip()[:60]}"] += 1
    return dict(sorted(kinds.items()))


def orphans(bench: Bench, prefix: str, m: int, batch: int) -> bool:
    box = bench.box
    made_s, failures = make_orphans(bench, prefix, m, batch)
    stderr_count = 0
    for i in range(m):
        had_err, _ = bench.check_agent(f"{prefix}o{i}", allowed=(PAUSED,))
        stderr_count += had_err
    before = box.leftovers()
    pairs = collections.Counter(
        json.loads(p.read_text())["steps"].get("address", {}).get("lock")
        for p in box.state_dir.glob("*.json")
    )
    shared = sum(k for k in pairs.values() if k > 1)
    dry_s, dry_out, dry_rc = cleanup_cmd(bench, prefix, "dry", "--dry-run")
    after_dry = box.leftovers()
    real_s, real_out, real_rc = cleanup_cmd(bench, prefix, "real")
    left = box.leftovers()
    empty_s, empty_out, empty_rc = cleanup_cmd(bench, prefix, "again")
    per = (real_s - empty_s) / m
    rows = [
        (f"orphans made (batches of {batch}, SIGKILL in pause)", f"{made_s:.1f} s"),
        ("problems making the orphans", str(len(failures))),
        ("killed agents with non-empty stderr (beyond the pause)", str(stderr_count)),
        (
            "orphans sharing an address pair",
            f"{shared} (in {sum(k > 1 for k in pairs.values())} pairs; a killed agent's pair "
            "is free to the next agent)",
        ),
        ("left by the killed agents", f"{len(before)} ({counts(group(before))})"),
        ("cleanup --orphans --dry-run: wall", f"{dry_s:.2f} s, exit {dry_rc}"),
        ("  printed", counts(kinds_printed(dry_out, "orphan"))),
        ("  changed anything", "NO (good)" if after_dry == before else "YES"),
        ("cleanup --orphans: wall", f"{real_s:.2f} s, exit {real_rc}"),
        ("  per orphan (wall / M)", f"{real_s / m * 1e3:.1f} ms"),
        ("  per orphan (wall - empty run) / M", f"{per * 1e3:.1f} ms"),
        ("  printed", counts(kinds_printed(real_out, "removed"))),
        ("cleanup --orphans again (nothing to do)", f"{empty_s:.2f} s, exit {empty_rc}"),
        ("  printed", counts(kinds_printed(empty_out, "removed"))),
        ("leftovers after cleanup", f"{len(left)} ({counts(group(left))})"),
    ]
    print_rows(f"2. {m} orphaned jobs (SIGKILLed after firewall) swept by cleanup --orphans", rows)
    for line in failures[:5]:
        print(f"  {line}")
    if left:
        print(f"  LEFT: {left[:10]}")
    return (
        not failures
        and not left
        and dry_rc == real_rc == empty_rc == 0
        and after_dry == before
        and empty_out.strip() == "no orphans"
    )


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="concurrent job starts (100)")
    parser.add_argument("--orphans", type=int, default=None, help="orphans to sweep (200)")
    parser.add_argument("--batch", type=int, default=20, help="orphan agents alive at once")
    parser.add_argument("--quick", action="store_true", help="20 jobs, 20 orphans")
    parser.add_argument("--skip-jobs", action="store_true")
    parser.add_argument("--skip-orphans", action="store_true")
    args = parser.parse_args()
    n = args.jobs if args.jobs is not None else (20 if args.quick else 100)
    m = args.orphans if args.orphans is not None else (20 if args.quick else 200)
    need_root()
    need = 45 * max(n, args.batch) + 1024
    if mem_available_mib() < need:
        sys.exit(f"need about {need} MiB of free memory for {n} agents at once")

    ok = True
    with site_sandbox() as box:
        prefix = box.prefix
        bench = Bench(box, box.tmp / "logs")
        try:
            box.create_site()
            host = box.add_host()
            bench.logs.mkdir()
            # this (main) thread and every child: the host namespace
            with entered_netns(host.netns):
                if not args.skip_jobs:
                    ok &= concurrent(bench, prefix, n)
                if not args.skip_orphans:
                    ok &= orphans(bench, prefix, m, args.batch)
            if bench.problems:
                print(f"\nagent/cleanup warnings, errors, stderr ({len(bench.problems)}):")
                for line in sorted(set(bench.problems))[:20]:
                    print(f"  {line}")
                ok = False
            else:
                print("\nno warnings or errors in any agent's or cleanup's log or stderr")
        finally:
            bench.stop_all()
    gone = leftover_netns(prefix)
    if gone:
        print(f"namespaces left after destroy: {gone}")
        ok = False
    else:
        print(f"sandbox destroyed: no {prefix} namespaces, tmpfs unmounted")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
