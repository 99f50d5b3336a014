"""Named network namespaces and the job's veth pair.

Namespace switches happen only on throwaway threads (``in_fresh_thread``):
a namespace belongs to a thread, and trio's worker threads are reused, so a
worker that called setns() would leak that namespace into later calls. A
socket or child process keeps the namespace of the thread that made it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import KernelError, map_errors
from .netlink import NetlinkError, rtnl

NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_run_dir_ready = False
T = TypeVar("T")


def _check(result: int, doing: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{doing}: {os.strerror(err)}")


def setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a new thread that dies afterwards, so its namespace never leaks."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="lark-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def enter(netns: str) -> None:
    """Move the calling thread (and what it starts from now on) into a named namespace."""
    with map_errors(f"enter network namespace {netns}"):
        fd = os.open(path_of(netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
    finally:
        os.close(fd)


def inside(netns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` inside a named namespace, on a fresh thread that dies afterwards."""

    def entered() -> T:
        enter(netns)
        return fn()

    return in_fresh_thread(entered)


def path_of(netns: str) -> Path:
    return NETNS_RUN_DIR / netns


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount, as iproute2 does, so names are seen in every mount ns."""
    global _run_dir_ready
    if _run_dir_ready:
        return
    NETNS_RUN_DIR.mkdir(parents=True, exist_ok=True)
    d = bytes(NETNS_RUN_DIR)
    if _libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None) != 0:
        _check(_libc.mount(d, d, b"none", MS_BIND | MS_REC, None), f"bind {NETNS_RUN_DIR}")
        _check(_libc.mount(b"", d, b"none", MS_SHARED | MS_REC, None), f"share {NETNS_RUN_DIR}")
    _run_dir_ready = True


@dataclass(frozen=True)
class Addresses:
    external: ipaddress.IPv4Address
    internal: ipaddress.IPv4Address


@dataclass(frozen=True)
class Addresses6:
    external: ipaddress.IPv6Address
    internal: ipaddress.IPv6Address


def create_netns(netns: str) -> tuple[int, rtnl.Channel]:
    """Create and name a namespace; return its fd and a netlink channel inside it.

    Must run on a throwaway thread (it unshares the calling thread).
    """
    _ensure_run_dir()
    path = path_of(netns)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    _check(_libc.unshare(CLONE_NEWNET), "unshare")
    _check(_libc.mount(b"/proc/thread-self/ns/net", bytes(path), b"none", MS_BIND, None), "bind")
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC), rtnl.Channel()


def setup_job_netns(
    netns: str,
    external: str | None,
    internal: str,
    addresses: Addresses | None,
    before: Callable[[str], None],
    not_ours: Callable[[str], None],
    inside: Callable[[int], T] | None = None,
    bridge: int | None = None,
    mtu: int | None = None,
    addresses6: Addresses6 | None = None,
    slaac: bool = False,
) -> T | None:
    """Namespace, loopback, veth pair, addresses and default route, in the fewest round trips.

    NAT mode gives ``addresses``; bridge mode gives the ``bridge`` index instead: the host
    end becomes its port and the job's end stays unaddressed (DHCP or static comes later).
    ``before(step)`` is called ahead of each resource so the state record
    always knows more than the kernel has; ``not_ours(step)`` takes that back
    when the object already existed (someone else's: undo must not remove it).
    ``inside(ifindex)`` runs last, inside the job's namespace, with the index of
    the job's end of the veth (to open a socket there); its result is returned.
    ``mtu``: both ends' (backends/mtu.py). ``addresses6`` (NAT with IPv6, alone on an
    IPv6-only node or beside ``addresses``): both ends get IPv6 without duplicate address
    detection (``accept_dad`` 0: the pair is Lark's, and link-locals on a two-end link
    cannot collide) nor router advertisements, the pair and an IPv6 default route. Without
    it neither end has IPv6 (``disable_ipv6``, set before the job's end is up): no
    link-local address on either, and IPv6 reaching the node's end is dropped before any
    netfilter hook. The job's loopback keeps its ``::1`` (``all``/``default`` stay as they
    are). ``slaac`` (bridge mode with IPv6): the job's end takes the LAN's router
    advertisements and forms its addresses from them (stable, from its MAC: no temporary
    ones; optimistic DAD, so they serve at once), the port end stays without IPv6. Runs on
    a throwaway thread.
    """
    with rtnl.Channel() as host, contextlib.ExitStack() as stack:
        node_ns = -1
        if external is not None:  # (this thread leaves the node's namespace below)
            node_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            stack.callback(os.close, node_ns)
        before("netns")
        try:
            with map_errors(f"create network namespace {netns}"):
                ns_fd, inner = create_netns(netns)
        except KernelError as exc:
            if isinstance(exc.__cause__, FileExistsError):
                not_ours("netns")
            raise
        try:
            with inner:
                with map_errors(f"bring up loopback in {netns}"):
                    inner.request(rtnl.set_up(1, "lo"))
                if external is None:
                    return None
                before("veth")
                try:
                    with map_errors(f"create veth {external}/{internal}"):
                        _create_veth(host, external, internal, ns_fd, mtu)
                except KernelError as exc:
                    if getattr(exc.__cause__, "errno", None) == errno.EEXIST:
                        not_ours("veth")
                    raise
                knobs = IPV6_ON if addresses6 is not None else IPV6_OFF
                with map_errors(f"set IPv6 on {external}/{internal}"):
                    in_fresh_thread(lambda: _ipv6_knobs(external, knobs, node_ns))
                    # (this thread is in the job's namespace)
                    _ipv6_knobs(internal, IPV6_SLAAC if slaac else knobs)
                pairs = [p for p in (addresses, addresses6) if p is not None]
                with map_errors(f"configure {external}"):
                    if pairs:
                        index = host.index(external)
                        host.request(
                            *(
                                rtnl.new_peer_address(index, p.external, p.internal, external)
                                for p in pairs
                            )
                        )
                    elif bridge is not None:
                        host.request(rtnl.set_master(host.index(external), bridge, external))
                with map_errors(f"configure {internal} in {netns}"):
                    index = inner.index(internal)
                    inner.request(
                        rtnl.set_up(index, internal),
                        *(
                            rtnl.new_peer_address(index, p.internal, p.external, internal)
                            for p in pairs
                        ),
                        *(rtnl.new_default_route(p.external, index) for p in pairs),
                    )
                return inside(index) if inside is not None else None
        finally:
            os.close(ns_fd)


# /proc/sys/net/ipv6/conf/DEV knobs, in the order written (before the link is up)
IPV6_OFF = (("disable_ipv6", "1"),)
IPV6_ON = (("disable_ipv6", "0"), ("accept_dad", "0"), ("accept_ra", "0"))
IPV6_SLAAC = (
    ("disable_ipv6", "0"),
    ("accept_ra", "1"),
    ("autoconf", "1"),
    ("use_tempaddr", "0"),
    ("optimistic_dad", "1"),
    ("use_optimistic", "1"),
)


def _ipv6_knobs(
    ifname: str, knobs: tuple[tuple[str, str], ...], netns_fd: int | None = None
) -> None:
    """IPv6 settings of one link, in the calling thread's namespace or (``netns_fd``) that
    one: /proc/sys/net is the namespace of the thread that opens it. A kernel without IPv6
    has no such files: nothing to turn off (and ``addresses6`` fails when the address is
    added, with the kernel's words)."""
    if netns_fd is not None:
        setns(netns_fd)
    for knob, value in knobs:
        try:
            with open(f"/proc/sys/net/ipv6/conf/{ifname}/{knob}", "w") as f:
                f.write(f"{value}\n")
        except FileNotFoundError:
            return


LINGER_S = 1.0  # how long a finished job's veth may take to go with its namespace


def _create_veth(
    host: rtnl.Channel, external: str, internal: str, ns_fd: int, mtu: int | None
) -> None:
    """A job of the same name that just ended may have left its veth to the kernel,
    which deletes it with the old namespace within milliseconds: give it that time."""
    try:
        host.request(rtnl.new_veth(external, internal, ns_fd, mtu))
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise
        await_links_gone([external], LINGER_S, host)  # (this thread is in the job's netns)
        host.request(rtnl.new_veth(external, internal, ns_fd, mtu))


def discard_link(name: str) -> None:
    """Delete a link; absence is success (CNI DEL semantics)."""
    with rtnl.Channel() as host, map_errors(f"delete link {name}"):
        host.request(rtnl.del_link(name), absent_ok=True)


def await_links_gone(names: list[str], timeout_s: float, host: rtnl.Channel | None = None) -> None:
    """Return once none of ``names`` is a link any more, or after ``timeout_s``.

    ``host`` is a channel in the namespace to look in (else: the calling thread's)."""
    pending = set(names)
    deadline = time.monotonic() + timeout_s
    with contextlib.ExitStack() as stack:
        channel = host or stack.enter_context(rtnl.Channel())
        while pending and time.monotonic() < deadline:
            pending &= set(channel.link_names())
            if pending:
                time.sleep(0.005)


def discard_netns(netns: str) -> None:
    """Unname a namespace; the kernel frees it (and its veth end) once no process holds it."""
    path = path_of(netns)
    if _libc.umount2(bytes(path), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise KernelError(f"unmount network namespace {netns}: {os.strerror(err)}")
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise KernelError(f"remove network namespace {netns}: {exc.strerror}") from exc


def netns_exists(netns: str) -> bool:
    return path_of(netns).exists()


def enable_forwarding() -> None:
    """NAT needs IPv4 forwarding in the host namespace; written only when off (the write resets
    per-interface settings)."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    with map_errors("enable IPv4 forwarding"):
        if path.read_text().strip() != "1":
            path.write_text("1\n")


def enable_forwarding6() -> list[str]:
    """IPv6 forwarding in the host namespace, for NAT66 and routed jobs; written only when
    off. A forwarding node ignores router advertisements on links with ``accept_ra`` 1, and
    would lose an RA-learned default route when it expires: those links (and ``default``,
    for links to come) get 2, which accepts them while forwarding. Returns the links so
    changed, for the log."""
    conf = Path("/proc/sys/net/ipv6/conf")
    changed = []
    with map_errors("enable IPv6 forwarding"):
        if (conf / "all" / "forwarding").read_text().strip() == "1":
            return []
        for knob in sorted(conf.glob("*/accept_ra")):
            if knob.parent.name not in ("all", "lo") and knob.read_text().strip() == "1":
                knob.write_text("2\n")
                changed.append(knob.parent.name)
        (conf / "all" / "forwarding").write_text("1\n")
    return changed
