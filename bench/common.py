"""Shared bits of the benchmarks: the throwaway sandboxes, statistics, the one table printer.

Sandboxes (each a context manager that removes what it made on the way out, also after an
exception, Ctrl-C or SIGTERM): ``bench_host`` (a bare host namespace and a tmpfs, for a
bench that re-runs itself in there: ``in_bench_host``, ``call_in_bench_host``) and
``site_sandbox`` (tests/sandbox.py's site with hosts, peers and servers, on a tmpfs).
Tables: ``print_table`` (samples: median, p25-p75, n, ratios to named baseline rows) and
``print_columns`` (cells already worked out).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


def leftover_netns(prefix: str) -> list[str]:
    """Network namespaces named for a bench prefix (the bench's own, and Lark's for its jobs)."""
    if not os.path.isdir("/run/netns"):
        return []
    return sorted(
        ns for ns in os.listdir("/run/netns") if ns.startswith((prefix, f"lark-{prefix}"))
    )


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit in the main thread, so ``finally`` blocks run as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def unwind(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def scratch_tmpfs(prefix: str) -> Iterator[Path]:
    """A fresh directory with a tmpfs of its own, unmounted and removed afterwards.

    State, locks and logs go there, as /run/lark is a tmpfs on a real node (here /run is on
    disk, where ext4's flush-on-rename would dominate the figures).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}."))
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512m,mode=0755", "lark-bench", str(tmp)],
            check=True,
        )
        yield tmp
    finally:
        subprocess.run(["umount", str(tmp)], check=False, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


def _discard_netns(prefix: str) -> None:
    for ns in leftover_netns(prefix):
        subprocess.run(["ip", "netns", "del", ns], check=False)


def need_root() -> None:
    if os.geteuid() != 0:
        sys.exit("run the benchmarks as root (they create network namespaces)")


@contextlib.contextmanager
def bench_host() -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A fresh host namespace (network only) and a tmpfs, both removed afterwards, also after
    an exception, Ctrl-C or SIGTERM.

    Yields the namespace's name, the tmpfs and the environment that tells a process run in
    there (with ``nsenter``) its prefix and tmpfs (see ``bench_prefix``, ``bench_tmp``).
    Everything a benchmark creates lives in that namespace or in /run/netns under the
    prefix; the machine's own network is never touched.
    """
    need_root()
    prefix = new_bench_prefix()
    host = f"{prefix}-host"
    with _sigterm_unwinds(), scratch_tmpfs(prefix) as tmp:
        try:
            subprocess.run(["ip", "netns", "add", host], check=True)
            subprocess.run(["ip", "-n", host, "link", "set", "lo", "up"], check=True)
            yield host, tmp, {**os.environ, INNER: prefix, "LARK_BENCH_TMP": str(tmp)}
        finally:
            _discard_netns(prefix)


@contextlib.contextmanager
def site_sandbox(kept_links: Sequence[str] = ()) -> Iterator[Any]:
    """A sandbox site (tests/sandbox.py's ``Sandbox``: a site namespace with its bridge, hosts
    added with ``add_host``) under a fresh prefix, its state on a tmpfs. On the way out, also
    after an exception, Ctrl-C or SIGTERM: its processes stopped, its namespaces (and Lark's
    for its jobs) deleted, the tmpfs unmounted; ``leftover_netns(box.prefix)`` then says
    whether any namespace survived.
    """
    need_root()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from sandbox import Sandbox

    prefix = new_bench_prefix()
    print(f"sandbox prefix {prefix}", file=sys.stderr, flush=True)
    with _sigterm_unwinds(), scratch_tmpfs(prefix) as tmp:
        box = Sandbox(prefix, tmp, f"{prefix}-site")
        box.kept_links.update(kept_links)
        try:
            yield box
        finally:
            box.destroy()
            _discard_netns(prefix)


@contextlib.contextmanager
def entered_netns(name: str) -> Iterator[None]:
    """This thread (and every child it starts) in the named network namespace; back in its
    own afterwards, whatever happens."""
    from lark_async.backends import netns as lark_netns

    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        lark_netns.enter(name)
        try:
            yield
        finally:
            lark_netns.setns(own)
    finally:
        os.close(own)


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


CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")  # Debian's containernetworking-plugins; upstream's


def cni_plugin_dir(plugin: str = "bridge") -> str | None:
    """The directory holding the CNI plugin ``plugin`` (and its fellows), or None."""
    return next((d for d in CNI_DIRS if Path(d, plugin).exists()), None)


def cni_env(
    command: str, container_id: str, netns: str, plugin_dir: str, ifname: str = "eth0"
) -> dict[str, str]:
    """The environment of one CNI plugin call (the config goes on its stdin): ``command``
    ADD, DEL or CHECK for the container ``container_id`` in the named network namespace."""
    return {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": f"/run/netns/{netns}",
        "CNI_IFNAME": ifname,
        "CNI_PATH": plugin_dir,
    }


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


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, p25 and p75, in the values' own unit."""
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return statistics.median(ordered), q[0], q[2]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def print_table(
    title: str,
    rows: Sequence[tuple[str, Sequence[float]]],
    baselines: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    *,
    unit: str = "ms",
    scale: float = 1e3,
) -> None:
    """The benchmarks' one table: a row per contender with the median, p25-p75 and n of its
    samples, and the ratio of its median to each baseline row's (named by row name).

    Samples are multiplied by ``scale`` into ``unit`` (the default: seconds shown as ms; rates
    pass ``scale=1``). ``labels``, when given, are short column heads for the baselines (in
    their order). A row without samples prints as such and gets no ratio.
    """
    medians = {name: quartiles(s)[0] * scale for name, s in rows if s}
    print(f"\n{title}")
    head = f"{'contender':<44} {'median ' + unit:>14} {'p25-p75':>16} {'n':>4}"
    head += "".join(f" {'/ ' + b:>16}" for b in (labels or baselines))
    print(head)
    print("-" * len(head))
    for name, samples in rows:
        if not samples:
            print(f"{name:<44} {'-':>14} {'-':>16} {0:>4}")
            continue
        med, p25, p75 = (x * scale for x in quartiles(samples))
        line = f"{name:<44} {med:>14.2f} {f'{p25:.2f}-{p75:.2f}':>16} {len(samples):>4}"
        line += "".join(
            f" {med / medians[b]:>15.2f}x" if medians.get(b) else f" {'-':>16}" for b in baselines
        )
        print(line)


def print_columns(
    title: str, head: Sequence[str], rows: Sequence[Sequence[object]], align: str = ""
) -> None:
    """A table of cells already worked out (per round, per check): each column as wide as its
    widest cell; ``align`` gives each column's ``<`` or ``>`` (default: the first left, the
    rest right)."""
    cells = [[str(c) for c in row] for row in [head, *rows]]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(head))]
    align = align or "<" + ">" * (len(head) - 1)
    lines = [
        " ".join(f"{c:{align[i]}{widths[i]}}" for i, c in enumerate(row)).rstrip() for row in cells
    ]
    print(f"\n{title}")
    if any(head):
        print(lines[0])
    print("-" * max(len(line) for line in lines))
    for line in lines[1:]:
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


def dhcp6_sockets(netns_name: str, ifname: str = "uplink"):
    """Lark's DHCPv6 client sockets (UDP port 546, rtnetlink) on ``ifname`` in the named
    network namespace."""
    from dhcp6.trio_driver import Sockets

    return in_netns_thread(netns_name, lambda: Sockets.open(ifname))


def drain(sock: socket.socket) -> None:
    """Drop what is queued on a socket (what an earlier round or another client left)."""
    while True:
        try:
            sock.recv(65535, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return


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
