"""Shared bits of the benchmarks: a throwaway host namespace, statistics, tables."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

INNER = "LARK_BENCH_INNER"


def agent_run(tmp: Path, *flags: str) -> list[str]:
    """``lark-agent run`` as nobody, with the bench's own state, lock and log places."""
    return [
        sys.executable,
        "-m",
        "lark_async.cli",
        "run",
        "--user",
        "nobody",
        "--state-dir",
        str(tmp / "state"),
        "--lock-dir",
        str(tmp / "lock"),
        *flags,
    ]


def new_bench_prefix() -> str:
    """A fresh name prefix for what one benchmark creates (``lkb`` and four hex digits)."""
    return f"lkb{secrets.token_hex(2)}"


@contextlib.contextmanager
def bench_host() -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A fresh host namespace (network only) and a tmpfs, both removed afterwards.

    Yields the namespace's name, the tmpfs and the environment that tells a process run in
    there (with ``nsenter``) its prefix and tmpfs (see ``bench_prefix``, ``bench_tmp``).
    Everything a benchmark creates lives in that namespace or in /run/netns under the
    prefix; the machine's own network is never touched.
    """
    if os.geteuid() != 0:
        sys.exit("run the benchmarks as root (they create network namespaces)")
    prefix = new_bench_prefix()
    host = f"{prefix}-host"
    # State, locks and logs live on a tmpfs of their own, as /run/lark does on a real node
    # (here /run is on disk, where ext4's flush-on-rename would dominate the figures).
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}."))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512m,mode=0755", "lark-bench", str(tmp)], check=True
    )
    try:
        subprocess.run(["ip", "netns", "add", host], check=True)
        subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)
        yield host, tmp, {**os.environ, INNER: prefix, "LARK_BENCH_TMP": str(tmp)}
    finally:
        for ns in os.listdir("/run/netns"):
            if ns.startswith((prefix, f"lark-{prefix}")):
                subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["umount", str(tmp)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def in_bench_host(script: str, argv: Sequence[str]) -> int:
    """Re-run ``script`` inside a fresh bench host (``bench_host``); -1 when already inside."""
    if os.environ.get(INNER):
        return -1
    with bench_host() as (host, _tmp, env):
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{host}", sys.executable, script, *argv], env=env
        ).returncode


def call_in_bench_host(module: str, function: str, **kwargs: Any) -> Any:
    """``function(**kwargs)`` of the bench module ``module``, in a fresh process inside a fresh
    bench host; returns what it returned (which must be JSON). Its output goes to ours."""
    with bench_host() as (host, tmp, env):
        result = tmp / "result.json"
        call = [module, function, json.dumps(kwargs), str(result)]
        argv = ["nsenter", f"--net=/run/netns/{host}", sys.executable, __file__, *call]
        rc = subprocess.run(argv, env=env).returncode
        if rc != 0:
            raise RuntimeError(f"{module}.{function} failed (exit {rc})")
        return json.loads(result.read_text())


def cpu_of(pid: int) -> float:
    """User+system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kib(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status (VmRSS, RssAnon, ...), in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            fields[name] = int(value.split()[0])
    return fields


def bench_prefix() -> str:
    return os.environ[INNER]


def bench_tmp() -> Path:
    return Path(os.environ["LARK_BENCH_TMP"])


def summary(samples_s: Sequence[float]) -> tuple[float, float, float]:
    """Median and interquartile range, in milliseconds."""
    ms = sorted(s * 1000 for s in samples_s)
    q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return statistics.median(ms), q[0], q[2]


def print_table(
    title: str,
    rows: list[tuple[str, Sequence[float]]],
    baselines: Sequence[str],
    labels: Sequence[str] | None = None,
):
    """One row per contender: median, IQR, and the ratio of medians to each baseline row.

    ``labels``, when given, are short column heads for the baselines (in their order).
    """
    medians = {name: summary(s)[0] for name, s in rows}
    print(f"\n{title}")
    head = f"{'contender':<44} {'median ms':>10} {'p25-p75 ms':>16} {'n':>4}"
    head += "".join(f" {'/ ' + b:>16}" for b in (labels or baselines))
    print(head)
    print("-" * len(head))
    for name, samples in rows:
        med, p25, p75 = summary(samples)
        line = f"{name:<44} {med:>10.2f} {f'{p25:.2f}-{p75:.2f}':>16} {len(samples):>4}"
        line += "".join(f" {med / medians[b]:>15.2f}x" for b in baselines)
        print(line)


def in_netns_thread(netns_name: str, fn):
    """``fn()`` on a fresh thread that has entered the named network namespace (and then ends,
    so the namespace never leaks into another thread); sockets it opens stay in there."""
    from lark_async.backends import netns

    return netns.inside(netns_name, fn)


def dhcp_sockets(netns_name: str, ifname: str = "uplink", chaddr: bytes | None = None):
    """Lark's DHCP client sockets on ``ifname`` in the named network namespace."""
    from dhcp.trio_driver import Sockets

    return in_netns_thread(netns_name, lambda: Sockets.open(ifname, chaddr))


def rate_summary(samples: Sequence[float]) -> tuple[float, float, float]:
    """Median and interquartile range of rates, in their own unit."""
    values = sorted(samples)
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return statistics.median(values), q[0], q[2]


def print_rates(
    title: str,
    rows: list[tuple[str, Sequence[float]]],
    baselines: Sequence[str],
    unit: str = "Gbit/s",
    labels: Sequence[str] | None = None,
):
    """``print_table`` for rates (higher is better): median, IQR, n, ratio of medians to each
    baseline row. Rows without samples print as such and get no ratio."""
    medians = {name: rate_summary(s)[0] for name, s in rows if s}
    print(f"\n{title}")
    head = f"{'contender':<44} {'median ' + unit:>14} {'p25-p75':>16} {'n':>4}"
    head += "".join(f" {'/ ' + b:>16}" for b in (labels or baselines))
    print(head)
    print("-" * len(head))
    for name, samples in rows:
        if not samples:
            print(f"{name:<44} {'-':>14} {'-':>16} {0:>4}")
            continue
        med, p25, p75 = rate_summary(samples)
        line = f"{name:<44} {med:>14.2f} {f'{p25:.2f}-{p75:.2f}':>16} {len(samples):>4}"
        line += "".join(
            f" {med / medians[b]:>15.2f}x" if medians.get(b) else f" {'-':>16}" for b in baselines
        )
        print(line)


if __name__ == "__main__":  # call_in_bench_host's other end: MODULE FUNCTION KWARGS-JSON OUT
    _module, _function, _kwargs, _out = sys.argv[1:]
    # by its file, under another name: bench/dhcp.py is not the package dhcp
    _spec = importlib.util.spec_from_file_location(
        f"bench_{_module}", Path(__file__).with_name(f"{_module}.py")
    )
    _bench = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _bench  # dataclasses look their module up there
    _spec.loader.exec_module(_bench)
    _result = getattr(_bench, _function)(**json.loads(_kwargs))
    Path(_out).write_text(json.dumps(_result))
