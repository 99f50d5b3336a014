"""A bridged job's IPv6 addresses as its kernel forms them (link-local, SLAAC), kept in its
firewall's set for its whole life: anti-spoofing lets through exactly what the job has.

The job cannot add addresses (no CAP_NET_ADMIN in its namespace): what its interface holds
is the kernel's doing, from the LAN's router advertisements. A netlink socket in the job's
namespace, on the IPv6 address group, wakes the agent when one comes, goes or has its
lifetime renewed; the agent then reads them all (one dump) and replaces the set, each
element expiring with its valid lifetime, so an address the agent has not renewed is
dropped even if the agent is gone.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import struct
from collections.abc import Callable

import trio

from ..netlink import rtnl
from ..netlink.core import MalformedMessage, parse_messages
from . import ndopt

log = logging.getLogger("lark.bridged")

RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_IFINFO = 0x100, 0x800  # addresses; RA flags (M, O)
IFA_ADDRESS, IFA_CACHEINFO, IFA_FLAGS = 1, 6, 8
IFA_F_DADFAILED = 0x08
FOREVER = 0xFFFFFFFF
REFRESH_S = 60.0  # the addresses are looked at again at least this often
MARGIN_S = 5  # added to an element's timeout: a renewal arrives before it runs out

Binding6 = tuple[ipaddress.IPv6Address, float | None]  # an address, seconds it stays


def open_watch() -> socket.socket:
    """A netlink socket on the IPv6 address and link-information groups (the kernel tells
    the latter when a router advertisement changes the link's M or O flag), in the calling
    thread's namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        sock.bind((0, RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_IFINFO))
    except BaseException:
        sock.close()
        raise
    return sock


def parse_address(body: bytes, index: int) -> Binding6 | None:
    """An RTM_NEWADDR body of link ``index``: its address and valid lifetime, or None (another
    link, another family, or an address whose DAD failed)."""
    if len(body) < 8:
        return None
    family, _plen, flags, _scope, link = struct.unpack_from("=BBBBi", body)
    if family != socket.AF_INET6 or link != index:
        return None
    a = rtnl.parse_attrs(body, 8)
    if IFA_FLAGS in a and len(a[IFA_FLAGS]) >= 4:
        flags = struct.unpack_from("=I", a[IFA_FLAGS])[0]
    raw = a.get(IFA_ADDRESS, b"")
    if flags & IFA_F_DADFAILED or len(raw) != 16:
        return None
    valid: float | None = None
    info = a.get(IFA_CACHEINFO, b"")
    if len(info) >= 8:
        lifetime = struct.unpack_from("=I", info, 4)[0]
        valid = None if lifetime == FOREVER else float(lifetime + MARGIN_S)
    return ipaddress.IPv6Address(raw), valid


def addresses(channel: rtnl.Channel, index: int) -> list[Binding6]:
    """The IPv6 addresses of link ``index`` (one dump of the channel's namespace)."""
    found = (parse_address(body, index) for body in channel.dump(rtnl.RTM_GETADDR, socket.AF_INET6))
    return sorted((b for b in found if b is not None), key=lambda b: b[0])


Written = dict[ipaddress.IPv6Address, float]  # address: when its set element runs out


def stale(written: Written, found: list[Binding6], now: float) -> bool:
    """Whether the firewall's set must be written again: another set of addresses, a
    lifetime the router shortened (renumbering), or an element past half its time. Not
    for every advertisement that merely renews the lifetimes: a router may send one every
    few seconds, and a rewrite costs each agent a set transaction (100 idle bridged jobs
    rewriting on every advertisement took a quarter of a 2-core node)."""
    if set(written) != {a for a, _ in found}:
        return True
    for address, valid in found:
        ends, was = now + (math.inf if valid is None else valid), written[address]
        if ends < was - 1 or was - now < (ends - now) / 2:
            return True
    return False


def expiries(found: list[Binding6], now: float) -> Written:
    return {a: now + (math.inf if valid is None else valid) for a, valid in found}


async def keep(
    watch: socket.socket,
    channel: rtnl.Channel,
    index: int,
    apply: Callable[[list[Binding6]], None],
    changed: Callable[[], object],
    managed: Callable[[], object] = lambda: None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``apply``ing the link's addresses for the job's life, whenever the set is
    ``stale`` (started once the first are in the set); ``changed()`` when the addresses
    themselves changed (the update ad); ``managed()`` whenever a router advertisement has
    set the link's M flag. Owns and closes ``watch`` and ``channel``."""
    with trio.socket.from_stdlib_socket(watch) as sock, channel:
        known: list[ipaddress.IPv6Address] | None = None
        written: Written | None = None
        while True:
            link = channel.link_by_index(index)
            if link is not None and link.ra_managed:
                managed()
            found = addresses(channel, index)
            if written is None or stale(written, found, trio.current_time()):
                await trio.to_thread.run_sync(apply, found)
                written = expiries(found, trio.current_time())
            now = [addr for addr, _ in found]
            if now != known:
                if known is not None:
                    log.info("IPv6 addresses of the job now %s", ", ".join(map(str, now)))
                    changed()
                else:
                    task_status.started()
                known = now
            with trio.move_on_after(REFRESH_S):
                try:
                    await sock.recv(65536)
                except OSError as exc:  # ENOBUFS: events dropped; the dump sees all
                    log.debug("IPv6 address watch: %s", exc.strerror)
                await trio.sleep(0.01)  # (a burst of events: one dump for all)
                while True:
                    try:
                        watch.recv(65536, socket.MSG_DONTWAIT)  # (trio's, non-blocking)
                    except (BlockingIOError, OSError):
                        break


def open_ra_dns_watch() -> socket.socket:
    """A netlink socket on the ND user-option group (the RA options the kernel leaves to
    userspace: RDNSS, DNSSL), in the calling thread's namespace. Open it before the first
    advertisement can arrive: the next unsolicited one may be ten minutes away."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    try:
        sock.bind((0, ndopt.RTMGRP_ND_USEROPT))
    except BaseException:
        sock.close()
        raise
    return sock


async def keep_ra_dns(
    watch: socket.socket,
    index: int,
    changed: Callable[[tuple[ipaddress.IPv6Address, ...], tuple[str, ...]], object],
) -> None:
    """The DNS servers and search domains the LAN's routers advertise to link ``index``
    (RFC 8106), each kept for its lifetime: ``changed(servers, domains)`` whenever the
    list changes, by an advertisement or by an entry running out. Owns ``watch``."""
    book = ndopt.RaDnsBook()
    with trio.socket.from_stdlib_socket(watch) as sock:
        while True:
            expiry = book.next_expiry(trio.current_time())
            data = b""
            with trio.move_on_at(float("inf") if expiry is None else expiry):
                try:
                    data = await sock.recv(65536)
                except OSError as exc:  # ENOBUFS: options dropped; the next RA repeats them
                    log.debug("RA DNS watch: %s", exc.strerror)
                    continue
            now = trio.current_time()
            new = False
            try:
                for msg in parse_messages(data):
                    heard = ndopt.parse_useropt(msg.payload, index)
                    if msg.kind == ndopt.RTM_NEWNDUSEROPT and heard is not None:
                        new = book.update(heard, now) or new
            except MalformedMessage:
                log.debug("RA DNS watch: a malformed netlink message skipped")
            if new or not data:  # (nothing read: an entry ran out)
                servers, domains = book.current(now)
                log.info(
                    "DNS from the LAN's router advertisements now %s",
                    " ".join([*map(str, servers), *domains]) or "none",
                )
                changed(servers, domains)
