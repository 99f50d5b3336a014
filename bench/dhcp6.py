"""DHCPv6 time to a lease against Kea: Lark's client in-process and whole-process, next to
ISC ``dhclient -6`` and busybox ``udhcpc6`` (issue 19).

    sudo .venv/bin/python bench/dhcp6.py [--rounds 20]

Everything runs in throwaway namespaces (common.site_sandbox): a site namespace with a
bridge and ``kea-dhcp6`` (tests/sandbox.py's start_kea6: rapid commit on the subnet,
memfile leases on a tmpfs, logging at INFO), and one client namespace per contender on
that bridge, so no two clients ever share an interface or UDP port 546. Contenders, one
after the other, in an order that rotates each round:

* Lark in-process: a dhcp6 Client and its trio Driver, one ``trio.run`` a round, on
  sockets opened once before the rounds (as bench/dhcp.py does), timed from making the
  client to the lease handed to ``nursery.start`` (the driver's link-local check
  included); released after (not timed);
* ``lark-agent dhcp-test -6 --interface uplink --json``, whole process: start to its lease
  printed on stdout (it then releases and exits, not timed);
* ISC ``dhclient -6 -1 -d``, whole process: start to its script's BOUND6, with a config
  asking for rapid commit and the same options as Lark (DNS servers, search list), a
  script that configures nothing, and its own lease and pid files; then stopped by its
  PID (no release: its identity is not used again);
* busybox ``udhcpc6 -q -R`` (exits after the lease, releasing it): start to its script's
  ``bound``; skipped, with a line saying why, when neither a ``udhcpc6`` nor a busybox
  with that applet is installed (Debian's busybox has none).

Fairness: every client namespace's link-local address is usable (DAD over) before the
first round, so no client waits for DAD; and every round is a client Kea has not seen:
Lark in-process gets a fresh DUID a round, ``lark-agent dhcp-test`` derives one from its
PID, dhclient gets a fresh DUID written to its (fresh) lease file as ``default-duid``,
and udhcpc6 (whose DUID follows its MAC) releases its lease on exit, so that Kea has
forgotten it. Kea's log is checked for one allocation, to a DUID of its own, per lease
timed.

Where the time goes: a packet socket on the site bridge stamps (kernel timestamps, wall
clock) each round's first SOLICIT and Kea's first REPLY after it. Set against the
contender's own start and lease (wall clock too), that splits its time into start to
SOLICIT (process start-up; dhclient's random 0-1 s delay before its first SOLICIT, RFC
8415 section 18.2.1, which Lark leaves out as a job's namespace is a host that starts
alone), SOLICIT to REPLY on the wire (the exchange, Kea's work included), and REPLY to
lease. Ratios are to Lark in-process; the last line checks that Lark in-process is the
fastest of them (exit status 1 when not).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import random
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import trio
from common import (
    dhcp6_sockets,
    drain,
    in_netns_thread,
    need_root,
    print_columns,
    print_table,
    site_sandbox,
)
from sandbox import SITE_NET6, link_local_usable, start_kea6

from dhcp6 import Client, Config, Dhcp6Error, derive_iaid, derive_job_duid, duid_uuid
from dhcp6 import client as client_module
from dhcp6.trio_driver import Driver, Sockets

LARK_IN = "Lark in-process (start to lease)"
LARK_WHOLE = "lark-agent dhcp-test -6 (whole process)"
DHCLIENT = "ISC dhclient -6 (whole process)"
UDHCPC6 = "busybox udhcpc6 (whole process)"
TIMEOUT_S = 10.0  # each client's, for one lease
# T1, T2, preferred, valid: nothing renews within a round, and what dhclient keeps expires
TIMERS = (30, 45, 60, 90)
POOL = (f"{SITE_NET6}::1:0", f"{SITE_NET6}::1:ffff")  # far more than the rounds' leases
ETH_P_ALL, SO_TIMESTAMPNS = 0x0003, 35
SOLICIT, REPLY = 1, 7
ALLOCATED = re.compile(r"DHCP6_LEASE_ALLOC duid=\[([0-9a-f:]+)\]")  # Kea's INFO line
# the script the whole-process peers run: their lease event, as one line, into the FIFO
EVENT_SCRIPT = """#!/bin/sh
case "$reason$1" in BOUND6|bound) echo "$reason$1" > {fifo} ;; esac
"""
PARTS = ("start to SOLICIT", "SOLICIT to REPLY (wire)", "REPLY to lease")


@dataclass
class Contender:
    name: str
    netns: str
    argv: Callable[[], list[str]] | None = None  # each round's command; None: in-process
    stdout: bool = False  # the lease comes as a line on stdout (else from the script)


@dataclass(frozen=True)
class Span:
    """One lease: start to lease by the monotonic clock (the time), and both ends by the
    wall clock, to set against the kernel's timestamps of the packets."""

    took_s: float
    start_epoch: float
    leased_epoch: float


class Stopwatch:
    """Started when made; ``span`` is the time since, by both clocks."""

    def __init__(self) -> None:
        self.t0, self.epoch0 = time.perf_counter(), time.time()

    def span(self) -> Span:
        t1, epoch1 = time.perf_counter(), time.time()
        return Span(t1 - self.t0, self.epoch0, epoch1)


# -- Lark in-process -----------------------------------------------------------------------


async def lark_in_process(socks: Sockets, identity: str) -> Span:
    """From making a client (DUID of ``identity``) to its lease; then released."""
    drain(socks.udp)  # the REPLY to the last round's RELEASE, if it came after the wait
    drain(socks.rtnl)
    watch = Stopwatch()
    duid = derive_job_duid(identity)
    config = Config(duid=duid, iaid=derive_iaid(duid), solicit_delay_max_s=0.0, timeout_s=TIMEOUT_S)
    driver = Driver(Client(config, rng=random.Random()), socks)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        span = watch.span()
        await driver.release()
        nursery.cancel_scope.cancel()
    return span


# -- whole processes -----------------------------------------------------------------------


@contextlib.contextmanager
def event_fifo(path: Path) -> Iterator[int]:
    """A FIFO for the peers' script, opened for reading; held open for writing too, so that
    a script that wrote and closed does not leave it readable at end-of-file."""
    os.mkfifo(path)
    rd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    wr = os.open(path, os.O_WRONLY)
    try:
        yield rd
    finally:
        os.close(wr)
        os.close(rd)


def drain_fd(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        os.read(fd, 4096)


def stop(proc: subprocess.Popen, graceful: bool) -> None:
    """Our process, by its PID: left to finish (``graceful``: Lark releases and exits), else
    sent SIGTERM; SIGKILL after 5 s either way."""
    if not graceful:
        proc.terminate()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def whole(c: Contender, events: int) -> Span:
    """From starting the client's process to its lease (a line on its stdout, or its
    script's line in the FIFO ``events``); the process then stopped."""
    assert c.argv is not None
    drain_fd(events)
    argv = ["nsenter", f"--net=/run/netns/{c.netns}", *c.argv()]
    watch = Stopwatch()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE if c.stdout else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    leased = False
    try:
        watched = proc.stdout.fileno() if proc.stdout is not None else events
        ready, _, _ = select.select([watched], [], [], TIMEOUT_S)
        span = watch.span()
        leased = bool(ready and os.read(watched, 4096).strip())
        if not leased:
            raise RuntimeError(f"no lease within {TIMEOUT_S:g} s (exit status {proc.poll()})")
    finally:
        stop(proc, graceful=leased and c.stdout)
    return span


def dhclient_argv(tmp: Path, conf: Path, script: Path) -> list[str]:
    """dhclient -6 for one round: once, in the foreground, with a fresh lease file that
    names a fresh DUID (``default-duid``, in octal escapes as dhclient writes it)."""
    leases = tmp / "dhclient6.leases"
    duid = duid_uuid(uuid.uuid4())
    leases.write_text('default-duid "' + "".join(f"\\{b:03o}" for b in duid) + '";\n')
    argv = ["dhclient", "-6", "-1", "-d", "-cf", str(conf), "-sf", str(script)]
    return [*argv, "-lf", str(leases), "-pf", str(tmp / "dhclient6.pid"), "uplink"]


def udhcpc6_command() -> tuple[list[str] | None, str]:
    """busybox udhcpc6's command, or None and why it is skipped."""
    if found := shutil.which("udhcpc6"):
        return [found], ""
    busybox = shutil.which("busybox")
    if busybox is None:
        return None, "no udhcpc6 and no busybox installed"
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split()
    if "udhcpc6" in listed:
        return [busybox, "udhcpc6"], ""
    banner = subprocess.run([busybox], capture_output=True, text=True).stdout.split("\n")[0]
    version = " ".join(banner.split()[:2]) or "this busybox"
    return None, f"{version} has no udhcpc6 applet (Debian builds busybox without it)"


# -- on the wire ---------------------------------------------------------------------------


def open_capture(netns: str, ifname: str) -> socket.socket:
    """A packet socket on ``ifname`` in ``netns`` seeing both directions (ETH_P_ALL: a
    socket for one protocol misses outgoing frames), with kernel timestamps."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((ifname, ETH_P_ALL))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return sock

    return in_netns_thread(netns, make)


def solicit_and_reply(sock: socket.socket) -> tuple[float, float] | None:
    """From what ``sock`` queued: the wall-clock times of the first SOLICIT and of the first
    REPLY after it (kernel timestamps); None when there is no such pair."""
    solicit = None
    while True:
        try:
            frame, ancillary, _flags, _addr = sock.recvmsg(2048, 64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        # Ethernet, IPv6 (next header UDP, no extension header), UDP, the message type
        if len(frame) < 14 + 40 + 8 + 1 or frame[12:14] != b"\x86\xdd" or frame[20] != 17:
            continue
        sport, dport = struct.unpack("!HH", frame[54:58])
        kind = frame[62]
        stamps = [data for _level, t, data in ancillary if t == SO_TIMESTAMPNS]
        if not stamps:
            continue
        sec, nsec = struct.unpack("qq", stamps[0][:16])
        at = sec + nsec / 1e9
        if solicit is None and kind == SOLICIT and dport == 547:
            solicit = at
        elif solicit is not None and kind == REPLY and sport == 547:
            drain(sock)
            return solicit, at


# -- the rounds ----------------------------------------------------------------------------


def measure(rounds: int = 20) -> dict:
    """``rounds`` rounds in a throwaway sandbox. Per contender (row name): 'lease', seconds
    to a lease; 'parts', each of PARTS's seconds per round; 'kea', its allocations and
    their distinct DUIDs; 'skipped', the peers left out, and why."""
    lease: dict[str, list[float]] = {}
    parts: dict[str, dict[str, list[float]]] = {}
    skipped: dict[str, str] = {}
    with site_sandbox() as box, contextlib.ExitStack() as closing:
        box.create_site()
        kea_dir, _kea = start_kea6(box, pool=POOL, timers=TIMERS, log_severity="INFO")
        tmp = box.tmp
        fifo = tmp / "lease-events"
        script = tmp / "lease-event.sh"
        script.write_text(EVENT_SCRIPT.format(fifo=fifo))
        script.chmod(0o755)
        conf = tmp / "dhclient6.conf"
        conf.write_text(
            "send dhcp6.rapid-commit;\nrequest dhcp6.name-servers, dhcp6.domain-search;\n"
        )
        if not Path(importlib.util.cache_from_source(client_module.__file__)).exists():
            print(
                "note: no bytecode cached for dhcp6 and none written (PYTHONDONTWRITEBYTECODE?):"
                " lark-agent compiles its modules at every start, which an installed one does"
                " not",
                file=sys.stderr,
            )
        agent = [sys.executable, "-m", "lark_async.cli", "dhcp-test", "-6"]
        agent += ["--interface", "uplink", "--json", "--timeout", f"{TIMEOUT_S:g}"]
        contenders = [
            Contender(LARK_IN, box.add_host().netns),
            Contender(LARK_WHOLE, box.add_host().netns, lambda: agent, stdout=True),
        ]
        if shutil.which("dhclient"):
            dhclient = Contender(DHCLIENT, box.add_host().netns)
            dhclient.argv = lambda: dhclient_argv(tmp, conf, script)
            contenders.append(dhclient)
        else:
            skipped[DHCLIENT] = "dhclient is not installed"
        udhcpc6, why = udhcpc6_command()
        if udhcpc6 is not None:
            argv = [*udhcpc6, "-i", "uplink", "-f", "-n", "-q", "-R", "-s", str(script)]
            argv += ["-t", str(int(TIMEOUT_S // 3)), "-T", "3"]
            contenders.append(Contender(UDHCPC6, box.add_host().netns, lambda: argv))
        else:
            skipped[UDHCPC6] = why
        for c in contenders:  # DAD over before any clock starts
            if not link_local_usable(c.netns, "uplink"):
                raise RuntimeError(f"uplink in {c.netns}: no usable link-local address")
        socks = dhcp6_sockets(contenders[0].netns)
        closing.callback(socks.close)
        capture = open_capture(box.site, "br0")
        closing.callback(capture.close)
        events = closing.enter_context(event_fifo(fifo))
        for r in range(rounds):
            turn = r % len(contenders)
            for c in contenders[turn:] + contenders[:turn]:
                if c.name in skipped:
                    continue
                drain(capture)
                try:
                    if c.argv is None:
                        span = trio.run(lark_in_process, socks, f"{box.prefix} {r}")
                    else:
                        span = whole(c, events)
                except (RuntimeError, OSError, Dhcp6Error) as exc:
                    print(f"{c.name}: failed in round {r + 1} ({exc}); dropped", file=sys.stderr)
                    skipped[c.name] = f"failed in round {r + 1}: {exc}"
                    continue
                lease.setdefault(c.name, []).append(span.took_s)
                stamps = solicit_and_reply(capture)
                if stamps is not None:
                    solicit, reply = stamps
                    split = (solicit - span.start_epoch, reply - solicit, span.leased_epoch - reply)
                    for part, s in zip(PARTS, split, strict=True):
                        parts.setdefault(c.name, {p: [] for p in PARTS})[part].append(s)
        # every lease timed was a client new to Kea: one allocation each, to a DUID of its own
        duids = ALLOCATED.findall((kea_dir / "kea.log").read_text())
        kea = {"allocated": len(duids), "duids": len(set(duids))}
        left = box.leftovers()
        if left:
            print(f"left behind: {left}", file=sys.stderr)
    return {"lease": lease, "parts": parts, "kea": kea, "skipped": skipped}


def fastest_other(lease: dict[str, list[float]]) -> tuple[str, float] | None:
    """The fastest contender other than Lark in-process, and Lark in-process's median over
    its (below 1: Lark in-process is the fastest)."""
    others = {k: statistics.median(v) for k, v in lease.items() if k != LARK_IN and v}
    if not others or not lease.get(LARK_IN):
        return None
    nearest = min(others, key=lambda k: others[k])
    return nearest, statistics.median(lease[LARK_IN]) / others[nearest]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    need_root()
    res = measure(args.rounds)
    lease, parts, kea = res["lease"], res["parts"], res["kea"]
    for name, why in res["skipped"].items():
        print(f"{name}: skipped: {why}")
    timed = sum(len(v) for v in lease.values())
    fresh = kea["allocated"] == kea["duids"] == timed
    print(
        f"Kea allocated {kea['allocated']} leases to {kea['duids']} distinct DUIDs for "
        f"{timed} leases timed{'' if fresh else ': NOT one new client per lease'}"
    )
    base = ([LARK_IN], ["Lark in-proc"]) if LARK_IN in lease else ([], [])
    print_table(
        f"DHCPv6 time to a lease against kea-dhcp6 (rapid commit), {args.rounds} rounds",
        list(lease.items()),
        *base,
    )
    wire = PARTS[1]
    print_table(
        f"On the wire: first SOLICIT to Kea's REPLY (kernel timestamps), {args.rounds} rounds",
        [(name, p[wire]) for name, p in parts.items()],
        *base,
    )
    print_columns(
        "Where the time goes (medians, ms; wall clock against the packets' kernel timestamps)",
        ["contender", "to a lease", *PARTS],
        [
            [name, f"{statistics.median(lease[name]) * 1e3:.2f}"]
            + [f"{statistics.median(p[part]) * 1e3:.2f}" for part in PARTS]
            for name, p in parts.items()
        ],
    )
    found = fastest_other(lease)
    if found is None:
        return 1 if LARK_IN not in lease else 0
    nearest, ratio = found
    print(
        f"\nLark in-process / the fastest other ({nearest}): {ratio:.3f}x: Lark in-process "
        f"{'is' if ratio < 1 else 'is NOT'} the fastest"
    )
    return 0 if ratio < 1 and fresh else 1


if __name__ == "__main__":
    sys.exit(main())
