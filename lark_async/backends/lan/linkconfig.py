"""What the node has configured on one link, and the requests that put it on another.

A bridge made from the node's LAN device must take over everything the node had there, or
the node loses it: addresses of both families with their flags, lifetimes, labels and
route metrics; routes in every table out of the device or from one of its addresses, with
their flags (onlink), metrics (mtu, ...), protocol, scope and type; rules naming it (iif,
oif); static neighbour entries; the link's own settings (``net.ipv4.conf.DEV.*``,
``net.ipv6.conf.DEV.*``: accept_ra, rp_filter, ...). The kernel's own dumps are kept whole
and sent back with only the link changed, so nothing is rebuilt from a partial reading.
What the kernel makes itself for an address (proto kernel routes, local and broadcast
entries) and IPv6 temporary addresses (privacy extensions make new ones) are left to it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..netlink import NetlinkError, rtnl

IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_CACHEINFO, IFA_FLAGS = 1, 2, 3, 6, 8
IFA_F_SECONDARY = IFA_F_TEMPORARY = 0x01  # (one bit, named by family)
IFA_F_NODAD = 0x02
RTA_PREFSRC, RTA_METRICS, RTA_MULTIPATH, RTA_CACHEINFO, RTA_EXPIRES = 7, 8, 9, 12, 23
RTA_NH_ID = 30
RTNH_F_ONLINK, RTM_F_CLONED, RTPROT_RA = 0x4, 0x200, 9
FRA_IIFNAME, FRA_OIFNAME, FRA_PRIORITY = 3, 17, 6
FIB_RULE_IIF_DETACHED, FIB_RULE_OIF_DETACHED = 0x8, 0x10
NHA_OIF = 5
NDA_DST, NDA_CACHEINFO, NDA_PROBES, NUD_PERMANENT, NTF_PROXY = 1, 3, 4, 0x80, 0x08
_RTNEXTHOP = struct.Struct("=HBBi")
_RTA_EXPIRES_AT = 8  # rta_cacheinfo.rta_expires, in clock ticks
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _attrs(data: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """Every attribute in order, its type as sent (nested flag included)."""
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind, data[offset + 4 : offset + length]
        offset += length + (-length % 4)


def _pack(attrs: list[tuple[int, bytes]]) -> bytes:
    out = b""
    for kind, payload in attrs:
        length = 4 + len(payload)
        out += struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)
    return out


def _ip(family: int, raw: bytes) -> str:
    return str(ipaddress.ip_address(raw)) if family in (socket.AF_INET, socket.AF_INET6) else "?"


# -- addresses -------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """One address as the kernel dumped it (ifaddrmsg and attributes)."""

    body: bytes

    @property
    def family(self) -> int:
        return self.body[0]

    @property
    def index(self) -> int:
        return struct.unpack_from("=i", self.body, 4)[0]

    @property
    def flags(self) -> int:
        found = rtnl.parse_attrs(self.body, 8).get(IFA_FLAGS)
        return struct.unpack("=I", found)[0] if found else self.body[2]

    @property
    def local(self) -> str:
        a = rtnl.parse_attrs(self.body, 8)
        return _ip(self.family, a.get(IFA_LOCAL) or a.get(IFA_ADDRESS, b""))

    def __str__(self) -> str:
        return f"{self.local}/{self.body[1]}"

    def on(self, index: int, old: str = "", new: str = "", add_flags: int = 0) -> bytes:
        """The same address on link ``index``; a label naming ``old`` (``eth0``, ``eth0:1``)
        names ``new`` instead."""
        attrs = []
        for kind, payload in _attrs(self.body, 8):
            if kind == IFA_LABEL and old:
                label = payload.rstrip(b"\0").decode(errors="replace")
                if label == old or label.startswith(f"{old}:"):
                    payload = (new + label[len(old) :]).encode()[:15] + b"\0"
            elif kind == IFA_FLAGS:
                continue
            attrs.append((kind, payload))
        flags = (self.flags | add_flags) & ~(IFA_F_SECONDARY if self.family == 2 else 0)
        attrs.append((IFA_FLAGS, struct.pack("=I", flags)))
        family, prefix, _flags, scope, _index = struct.unpack_from("=BBBBi", self.body)
        return struct.pack("=BBBBi", family, prefix, flags & 0xFF, scope, index) + _pack(attrs)


def add_address(a: Address, index: int, old: str, new: str, what: str) -> list[rtnl.Message]:
    """Requests adding ``a`` to link ``index``. An IPv6 address is added without duplicate
    address detection (it only moves, on the same LAN with the same MAC: DAD would leave it
    tentative, unusable for a second, or failed for good should the LAN echo the probe),
    then given back its own flags (a change of flags runs no DAD). It replaces one the
    kernel may have made from a router advertisement in the meantime (SLAAC)."""
    flags = rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    if a.family == socket.AF_INET6:
        flags = rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE
    if a.family != socket.AF_INET6 or a.flags & IFA_F_NODAD:
        return [rtnl.Message(rtnl.RTM_NEWADDR, flags, a.on(index, old, new), f"add {a} to {what}")]
    return [
        rtnl.Message(
            rtnl.RTM_NEWADDR, flags, a.on(index, old, new, IFA_F_NODAD), f"add {a} to {what}"
        ),
        rtnl.Message(
            rtnl.RTM_NEWADDR,
            rtnl.NLM_F_REPLACE,
            a.on(index, old, new),
            f"set the flags of {a} on {what}",
        ),
    ]


def del_address(a: Address, index: int, old: str, new: str, what: str) -> rtnl.Message:
    return rtnl.Message(rtnl.RTM_DELADDR, 0, a.on(index, old, new), f"remove {a} from {what}")


# -- routes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One route as the kernel dumped it (rtmsg and attributes)."""

    body: bytes

    @property
    def family(self) -> int:
        return self.body[0]

    @property
    def attrs(self) -> dict[int, bytes]:
        return rtnl.parse_attrs(self.body, 12)

    @property
    def table(self) -> int:
        found = self.attrs.get(rtnl.RTA_TABLE)
        return struct.unpack("=I", found)[0] if found else self.body[4]

    @property
    def protocol(self) -> int:
        return self.body[5]

    @property
    def flags(self) -> int:
        return struct.unpack_from("=I", self.body, 8)[0]

    def links(self) -> set[int]:
        """The links the route leaves by (its own, or its nexthops')."""
        a = self.attrs
        found = {struct.unpack("=i", a[rtnl.RTA_OIF])[0]} if rtnl.RTA_OIF in a else set()
        offset, multipath = 0, a.get(RTA_MULTIPATH, b"")
        while offset + _RTNEXTHOP.size <= len(multipath):
            length, _flags, _hops, index = _RTNEXTHOP.unpack_from(multipath, offset)
            found.add(index)
            offset += max(length + (-length % 4), _RTNEXTHOP.size)
        return found

    @property
    def learned(self) -> bool:
        """Whether the kernel learned it from a router advertisement: a default router or
        route information (proto ra), or an on-link prefix (proto kernel, expiring)."""
        if self.family != socket.AF_INET6:
            return False
        if self.protocol == RTPROT_RA:
            return True
        cache = self.attrs.get(RTA_CACHEINFO, b"")
        expires = struct.unpack_from("=i", cache, _RTA_EXPIRES_AT)[0] if len(cache) >= 12 else 0
        return self.protocol == rtnl.RTPROT_KERNEL and expires > 0

    @property
    def gateway(self) -> bool:
        """Whether it needs a neighbour (a gateway) rather than only the link."""
        a = self.attrs
        return rtnl.RTA_GATEWAY in a or RTA_MULTIPATH in a or bool(self.flags & RTNH_F_ONLINK)

    def __str__(self) -> str:
        a = self.attrs
        dest = a.get(rtnl.RTA_DST)
        text = f"{_ip(self.family, dest)}/{self.body[1]}" if dest else "default"
        if rtnl.RTA_GATEWAY in a:
            text += f" via {_ip(self.family, a[rtnl.RTA_GATEWAY])}"
        table = self.table
        return f"route {text}" + (f" (table {table})" if table != rtnl.RT_TABLE_MAIN else "")

    def on(self, old: int, new: int) -> bytes:
        """The same route with link ``old`` replaced by ``new`` (in its nexthops too), as a
        request: only the flags a request sets (onlink), the remaining lifetime of an
        expiring IPv6 route as RTA_EXPIRES, no read-only cache information."""
        attrs = []
        for kind, payload in _attrs(self.body, 12):
            if kind == rtnl.RTA_OIF and struct.unpack("=i", payload)[0] == old:
                payload = struct.pack("=i", new)
            elif kind & 0x3FFF == RTA_MULTIPATH:
                payload = _nexthops_on(payload, old, new)
            elif kind == RTA_CACHEINFO:
                expires = struct.unpack_from("=i", payload, _RTA_EXPIRES_AT)[0]
                if expires > 0 and self.family == socket.AF_INET6:
                    seconds = max(1, -(-expires // _CLOCK_TICKS))
                    attrs.append((RTA_EXPIRES, struct.pack("=I", seconds)))
                continue
            attrs.append((kind, payload))
        head = bytearray(self.body[:12])
        struct.pack_into("=I", head, 8, self.flags & RTNH_F_ONLINK)
        return bytes(head) + _pack(attrs)


def _nexthops_on(data: bytes, old: int, new: int) -> bytes:
    out, offset = b"", 0
    while offset + _RTNEXTHOP.size <= len(data):
        length, flags, hops, index = _RTNEXTHOP.unpack_from(data, offset)
        rest = data[offset + _RTNEXTHOP.size : offset + length]
        index = new if index == old else index
        out += _RTNEXTHOP.pack(length, flags & RTNH_F_ONLINK, hops, index) + rest
        out += b"\0" * (-length % 4)
        offset += max(length + (-length % 4), _RTNEXTHOP.size)
    return out


def add_route(r: Route, old: int, new: int, what: str) -> rtnl.Message:
    """IPv4 appends (alternatives to one destination keep their order); IPv6 adds, beside
    a route of the same metric a router advertisement may have put there first (the new
    link solicits one as it comes up): not exclusive, which the kernel refuses whenever
    any route of that metric is there, whatever its gateway. The same route twice is
    still refused."""
    flags = rtnl.NLM_F_CREATE
    flags |= rtnl.NLM_F_APPEND if r.family == socket.AF_INET else 0
    return rtnl.Message(rtnl.RTM_NEWROUTE, flags, r.on(old, new), f"add {r} on {what}")


def del_route(r: Route, old: int, new: int, what: str) -> rtnl.Message:
    return rtnl.Message(rtnl.RTM_DELROUTE, 0, r.on(old, new), f"remove {r} from {what}")


# -- rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One policy-routing rule as dumped (fib_rule_hdr and attributes)."""

    body: bytes

    @property
    def priority(self) -> int:
        found = rtnl.parse_attrs(self.body, 12).get(FRA_PRIORITY)
        return struct.unpack("=I", found)[0] if found else 0

    @property
    def key(self) -> tuple[int, int]:
        """Family and priority: rules sharing it apply in the order they were added."""
        return self.body[0], self.priority

    def names(self, link: str) -> bool:
        a = rtnl.parse_attrs(self.body, 12)
        wanted = link.encode() + b"\0"
        return a.get(FRA_IIFNAME) == wanted or a.get(FRA_OIFNAME) == wanted

    def __str__(self) -> str:
        family = "IPv6" if self.body[0] == socket.AF_INET6 else "IPv4"
        return f"{family} rule {self.priority}"

    def on(self, old: str, new: str) -> bytes:
        """The same rule with ``iif``/``oif`` ``old`` as ``new``; no detached flags (the
        kernel sets them for a name that is no link)."""
        attrs = []
        for kind, payload in _attrs(self.body, 12):
            if kind in (FRA_IIFNAME, FRA_OIFNAME) and payload == old.encode() + b"\0":
                payload = new.encode() + b"\0"
            attrs.append((kind, payload))
        head = bytearray(self.body[:12])
        flags = struct.unpack_from("=I", head, 8)[0]
        struct.pack_into("=I", head, 8, flags & ~(FIB_RULE_IIF_DETACHED | FIB_RULE_OIF_DETACHED))
        return bytes(head) + _pack(attrs)


def add_rule(r: Rule, old: str, new: str, what: str) -> rtnl.Message:
    return rtnl.Message(rtnl.RTM_NEWRULE, rtnl.NLM_F_CREATE, r.on(old, new), f"add {r} {what}")


def del_rule(r: Rule, old: str, new: str, what: str) -> rtnl.Message:
    return rtnl.Message(rtnl.RTM_DELRULE, 0, r.on(old, new), f"remove {r} {what}")


# -- static neighbours -----------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    """A permanent neighbour entry (``ip neigh add ... nud permanent``) as dumped."""

    body: bytes

    def __str__(self) -> str:
        dest = rtnl.parse_attrs(self.body, 12).get(NDA_DST, b"")
        return f"neighbour {_ip(self.body[0], dest)}"

    def on(self, index: int) -> bytes:
        """The same entry on link ``index``, without its read-only statistics."""
        family, _p1, _p2, _index, state, flags, kind = struct.unpack_from("=BBHiHBB", self.body)
        attrs = [(k, v) for k, v in _attrs(self.body, 12) if k not in (NDA_CACHEINFO, NDA_PROBES)]
        return struct.pack("=BBHiHBB", family, 0, 0, index, state, flags, kind) + _pack(attrs)


def add_neighbour(n: Neighbour, index: int, what: str) -> rtnl.Message:
    flags = rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    return rtnl.Message(rtnl.RTM_NEWNEIGH, flags, n.on(index), f"add {n} on {what}")


def del_neighbour(n: Neighbour, index: int, what: str) -> rtnl.Message:
    return rtnl.Message(rtnl.RTM_DELNEIGH, 0, n.on(index), f"remove {n} from {what}")


# -- the link's own settings -----------------------------------------------------------

SYSCTL_ROOT = Path("/proc/sys/net")
# set otherwise: the bridge starts without a link-local, then takes the device's mode
NOT_COPIED = frozenset({"addr_gen_mode"})


def copy_link_sysctls(device: str, bridge: str) -> int:
    """Give the new (still down) bridge every per-link setting of the device that differs
    (``net.ipv{4,6}.conf.DEV.*``): what the node had set on its LAN link (accept_ra,
    rp_filter, arp_ignore, the IPv6 MTU, ...) applies to the LAN link it has now. Read-only
    entries and those the kernel will not show (an unset stable_secret) are skipped.
    Returns how many were copied; a refused write raises OSError naming the setting."""
    copied = 0
    for family in ("ipv4", "ipv6"):
        src, dst = SYSCTL_ROOT / family / "conf" / device, SYSCTL_ROOT / family / "conf" / bridge
        if not src.is_dir() or not dst.is_dir():
            continue
        for entry in sorted(src.iterdir()):
            if entry.name in NOT_COPIED or not entry.stat().st_mode & 0o200:
                continue
            try:
                value, now = entry.read_text(), (dst / entry.name).read_text()
            except OSError:
                continue
            if value == now:
                continue
            try:
                (dst / entry.name).write_text(value)
            except OSError as exc:
                exc.what = f"copy net.{family}.conf.{device}.{entry.name} to {bridge}"  # type: ignore[attr-defined]
                raise
            copied += 1
    return copied


# -- one link's whole configuration ---------------------------------------------------


@dataclass(frozen=True)
class LinkConfig:
    """What the node has on one link, each kind in the order it must be added back."""

    index: int
    name: str
    addresses: tuple[Address, ...]
    link_routes: tuple[Route, ...]  # need only the link (and the addresses)
    gateway_routes: tuple[Route, ...]  # need a neighbour: after the link routes
    rules: tuple[Rule, ...]
    neighbours: tuple[Neighbour, ...]
    # IPv6 routes learned from router advertisements (default routers, route information,
    # on-link prefixes): the kernel knows its own by flags no request can set, and would
    # refuse the next advertisement's default route (and the rest of that advertisement)
    # next to a copy, or keep a copied one for ever; so they go: the link-local arriving
    # on the bridge (or back on the device) makes the kernel solicit the routers at once
    # (RFC 4861 6.3.7), and their answer gives the link its own
    learned_routes: tuple[Route, ...] = ()

    def __str__(self) -> str:
        return (
            f"{len(self.addresses)} address(es), "
            f"{len(self.link_routes) + len(self.gateway_routes)} route(s), "
            f"{len(self.rules)} rule(s), {len(self.neighbours)} static neighbour(s)"
        )


def read_link_config(channel: rtnl.Channel, index: int, name: str) -> LinkConfig:
    """Addresses, routes (every table, both families), rules and static neighbours of link
    ``index``."""
    dumped = [Address(b) for b in channel.dump(rtnl.RTM_GETADDR)]
    mine = [a for a in dumped if a.index == index]
    v4 = [a for a in mine if a.family == socket.AF_INET]  # primaries first, as listed
    v6 = [a for a in mine if a.family == socket.AF_INET6 and not a.flags & IFA_F_TEMPORARY]
    # IPv6 lists global before link scope, each newest first: the oldest goes back first,
    # and the link-local last (its arrival makes the kernel solicit the routers, whose
    # answer then finds the addresses it made in place)
    v6.reverse()
    v6.sort(key=lambda a: a.body[3])  # (ifa_scope: global 0 ... link 253; a stable sort)
    sources = {a.local for a in mine}
    routes: list[Route] = []
    learned: list[Route] = []
    for body in channel.dump(rtnl.RTM_GETROUTE):
        r = Route(body)
        if r.flags & RTM_F_CLONED or (r.protocol == rtnl.RTPROT_KERNEL and not r.learned):
            continue  # the kernel's own, made again for the addresses where they go
        src = r.attrs.get(RTA_PREFSRC)
        if index in r.links() or (src is not None and _ip(r.family, src) in sources):
            (learned if r.learned else routes).append(r)
    rules: list[Rule] = []
    for body in channel.dump(rtnl.RTM_GETRULE):
        rule = Rule(body)
        # rules of one priority apply in the order they were added: those after a moved
        # one go back after it
        if rule.names(name) or any(r.key == rule.key for r in rules):
            rules.append(rule)
    neighbours = []
    for body in channel.dump(rtnl.RTM_GETNEIGH):
        family, _p1, _p2, owner, state, flags, _kind = struct.unpack_from("=BBHiHBB", body)
        static = state & NUD_PERMANENT and not flags & NTF_PROXY
        if owner == index and static and family in (socket.AF_INET, socket.AF_INET6):
            neighbours.append(Neighbour(body))
    return LinkConfig(
        index=index,
        name=name,
        addresses=(*v4, *v6),
        link_routes=tuple(r for r in routes if not r.gateway),
        gateway_routes=tuple(r for r in routes if r.gateway),
        rules=tuple(rules),
        neighbours=tuple(neighbours),
        learned_routes=tuple(learned),
    )


def nexthop_objects_on(channel: rtnl.Channel, index: int) -> int:
    """How many nexthop objects (``ip nexthop``, Linux 5.3) leave by link ``index``: they
    belong to it and cannot be moved, so the routes using them could not follow."""
    try:
        dumped = channel.dump(rtnl.RTM_GETNEXTHOP)
    except NetlinkError:  # a kernel without nexthop objects
        return 0
    count = 0
    for body in dumped:
        oif = rtnl.parse_attrs(body, 8).get(NHA_OIF)
        count += oif is not None and struct.unpack("=I", oif)[0] == index
    return count
