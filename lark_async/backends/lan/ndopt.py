"""The DNS a bridged job's LAN advertises in its router advertisements (RFC 8106): RDNSS
(recursive servers) and DNSSL (search domains), as the job's kernel hands them over.

Linux forms the job's addresses from the RAs itself (slaac.py) but leaves the options it
does not act on to userspace: each RDNSS or DNSSL option of an accepted RA becomes one
RTM_NEWNDUSEROPT message on the rtnetlink group RTNLGRP_ND_USEROPT of the namespace the
RA arrived in (net/ipv6/ndisc.c, ``ndisc_ra_useropt``). Its body is a ``nduseroptmsg``
(family, option bytes, link, ICMPv6 type and code), the raw option, then the router's
address in an NDUSEROPT_SRCADDR attribute.

To listen, open a NETLINK_ROUTE socket in the job's namespace and join the group: bind
with ``(0, RTMGRP_ND_USEROPT)``, or ``setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP,
RTNLGRP_ND_USEROPT)`` (after any bind: a bind sets the first 32 groups afresh). Open it
before the job's link comes up: the kernel's router solicitations then bring RAs at once,
where an unsolicited one may be minutes away (MaxRtrAdvInterval, RFC 4861 section 6.2.1).
Feed each RTM_NEWNDUSEROPT body to ``parse_useropt`` and what it returns to a
``RaDnsBook``; the book's ``current`` goes into the job's ``Lan`` (decide/resolver.py).
Everything here is pure: bytes and clock readings in.

The LAN's routers are not the job, but what arrives is still parsed as hostile: a
malformed message, option or name is dropped, never raised.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ...decide.resolver import MAX_NAMESERVERS, MAX_SEARCH, is_hostname
from ..netlink import rtnl

RTM_NEWNDUSEROPT = 68  # linux/rtnetlink.h
RTNLGRP_ND_USEROPT = 20
RTMGRP_ND_USEROPT = 1 << (RTNLGRP_ND_USEROPT - 1)  # the same group as a bind() mask
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1  # (Python's socket module has neither)
NDUSEROPT_SRCADDR = 1
ND_ROUTER_ADVERT = 134  # ICMPv6 type (RFC 4861 section 4.2)
ND_OPT_RDNSS, ND_OPT_DNSSL = 25, 31  # RFC 8106 sections 5.1, 5.2
INFINITY = 0xFFFFFFFF  # a lifetime of all ones (RFC 8106 section 5.1)
MAX_HEARD = 16  # servers, and domains, taken from one message (an RDNSS holds up to 127)
MAX_SERVERS = MAX_NAMESERVERS  # RFC 8106 section 5.3.1's "sufficient number (e.g., three)"
MAX_DOMAINS = MAX_SEARCH
MAX_LABEL, MAX_NAME = 63, 255  # octets (RFC 1035 section 2.3.4)

_HEAD = struct.Struct("=BxHiBBxxxxxx")  # nduseroptmsg: family, opts_len, ifindex, type, code

Lifetime = float  # seconds from when it was heard; math.inf for INFINITY; 0: withdrawn


@dataclass(frozen=True)
class RaDns:
    """What one RA said about DNS, in its order: servers and domains with their lifetimes."""

    router: ipaddress.IPv6Address | None
    servers: tuple[tuple[ipaddress.IPv6Address, Lifetime], ...] = ()
    domains: tuple[tuple[str, Lifetime], ...] = ()


def parse_useropt(body: bytes, index: int) -> RaDns | None:
    """One RTM_NEWNDUSEROPT body (after the netlink header) for link ``index``: the RDNSS
    servers and DNSSL domains it carries, or None when there are none to act on.

    None for another family, link or ICMPv6 message than an RA, for lengths that do not add
    up, and for an option of length 0 (RFC 4861 section 4.6: the whole RA is discarded).
    An invalid RDNSS or DNSSL option is dropped alone (RFC 8106 section 5.3.1).

    Servers: link-local ones are kept (RFC 8106 section 5.1 allows them; the resolver
    needs the job's interface as their zone, which decide/resolver.py adds); unspecified,
    loopback, multicast and IPv4-mapped ones are no server on the link and are dropped.
    Domains: names that are not hostnames are dropped; their option's other names stay.
    """
    if len(body) < _HEAD.size:
        return None
    family, size, link, kind, code = _HEAD.unpack_from(body)
    if family != socket.AF_INET6 or link != index or kind != ND_ROUTER_ADVERT or code != 0:
        return None
    if size % 8 or _HEAD.size + size > len(body):
        return None
    options = body[_HEAD.size : _HEAD.size + size]
    servers: list[tuple[ipaddress.IPv6Address, Lifetime]] = []
    domains: list[tuple[str, Lifetime]] = []
    at = 0
    while at < len(options):
        units = options[at + 1]  # (size % 8 == 0: two octets are there)
        if units == 0:
            return None
        option = options[at : at + units * 8]
        if len(option) < units * 8:
            return None
        if option[0] == ND_OPT_RDNSS:
            servers += _rdnss(option)
        elif option[0] == ND_OPT_DNSSL:
            domains += _dnssl(option)
        at += units * 8
    if not servers and not domains:
        return None
    raw = rtnl.parse_attrs(body, _HEAD.size + size).get(NDUSEROPT_SRCADDR, b"")
    router = ipaddress.IPv6Address(raw) if len(raw) == 16 else None
    return RaDns(router, tuple(servers[:MAX_HEARD]), tuple(domains[:MAX_HEARD]))


def _lifetime(option: bytes) -> Lifetime:
    raw: int = struct.unpack_from("!I", option, 4)[0]
    return math.inf if raw == INFINITY else float(raw)


def _rdnss(option: bytes) -> list[tuple[ipaddress.IPv6Address, Lifetime]]:
    """RFC 8106 section 5.1: a length of 1 + 2 per address, at least one address."""
    units = option[1]
    if units < 3 or units % 2 == 0:
        return []
    life = _lifetime(option)
    found = []
    for at in range(8, units * 8, 16):
        a = ipaddress.IPv6Address(option[at : at + 16])
        if not (a.is_unspecified or a.is_loopback or a.is_multicast or a.ipv4_mapped):
            found.append((a, life))
    return found


def _dnssl(option: bytes) -> list[tuple[str, Lifetime]]:
    """RFC 8106 section 5.2: names in RFC 1035 section 3.1 form, uncompressed, zeros after
    the last. A name is kept when it is a hostname, each label as it came (a label ``a.b``
    must not read as two)."""
    names = decode_names(option[8:])
    if names is None:
        return []
    life = _lifetime(option)
    kept = []
    for labels in names:
        name = ".".join(labels)
        if is_hostname(name) and not any("." in label for label in labels):
            kept.append((name, life))
    return kept


def decode_names(data: bytes) -> list[tuple[str, ...]] | None:
    """The labels of each name in ``data`` (bytes as Latin-1, for a later check), or None
    when the encoding is broken: a name running past the end or over 255 octets, a label
    over 63 (0xc0 and up is a compression pointer). Zero octets between names (the
    padding, or an empty name) are skipped, as systemd-networkd does."""
    names = []
    at = 0
    while at < len(data):
        if data[at] == 0:
            at += 1
            continue
        labels = []
        wire = 1  # the final zero
        while True:
            if at >= len(data):
                return None
            n = data[at]
            if n == 0:
                at += 1
                break
            wire += 1 + n
            if n > MAX_LABEL or wire > MAX_NAME:
                return None  # (a label cut short leaves no final zero: None above)
            labels.append(data[at + 1 : at + 1 + n].decode("latin-1"))
            at += 1 + n
        names.append(tuple(labels))
    return names


K = TypeVar("K", ipaddress.IPv6Address, str)


class _Shelf(Generic[K]):
    """Entries with their expiry times, first heard first, at most ``size`` of them;
    ``fold`` gives the key that makes two entries one (a domain's case, RFC 4343)."""

    def __init__(self, size: int, fold: Callable[[K], K]) -> None:
        self.size = size
        self.fold: Callable[[K], K] = fold
        self.expires: dict[K, float] = {}  # by key
        self.spelling: dict[K, K] = {}  # by key: as first heard

    def drop(self, key: K) -> None:
        self.expires.pop(key, None)
        self.spelling.pop(key, None)

    def expire(self, now: float) -> None:
        for key in [k for k, at in self.expires.items() if at <= now]:
            self.drop(key)

    def update(self, heard: tuple[tuple[K, Lifetime], ...], now: float) -> None:
        """RFC 8106 section 5.3.1: a known entry takes the new lifetime, 0 deletes it; a
        new one is added, or, the shelf full, replaces the entry that expires first (never
        one this same RA named: a router lists its servers by preference)."""
        for value, life in heard:  # (removals first: they make room, wherever listed)
            if life == 0:
                self.drop(self.fold(value))
        named: set[K] = set()
        for value, life in heard:
            key = self.fold(value)
            named.add(key)
            if life == 0:
                continue
            if key not in self.expires and len(self.expires) >= self.size:
                others = [k for k in self.expires if k not in named]
                if not others:
                    continue
                self.drop(min(others, key=self.expires.__getitem__))
            self.expires[key] = now + life
            self.spelling.setdefault(key, value)

    def current(self) -> tuple[K, ...]:
        return tuple(self.spelling[k] for k in self.expires)


class RaDnsBook:
    """The DNS the LAN's routers advertise now: RDNSS servers and DNSSL domains, each until
    its lifetime runs out. Pure: the caller passes its monotonic ``now`` in, and wakes at
    ``next_expiry`` to read ``current`` again."""

    def __init__(self, servers: int = MAX_SERVERS, domains: int = MAX_DOMAINS) -> None:
        self._servers: _Shelf[ipaddress.IPv6Address] = _Shelf(servers, lambda a: a)
        self._domains: _Shelf[str] = _Shelf(domains, str.lower)

    def update(self, heard: RaDns, now: float) -> bool:
        """Take in one RA's options; True when ``current`` changed."""
        before = self.current(now)
        self._servers.update(heard.servers, now)
        self._domains.update(heard.domains, now)
        return self.current(now) != before

    def current(self, now: float) -> tuple[tuple[ipaddress.IPv6Address, ...], tuple[str, ...]]:
        """The servers and the domains not yet expired at ``now``, first heard first."""
        self._servers.expire(now)
        self._domains.expire(now)
        return self._servers.current(), self._domains.current()

    def next_expiry(self, now: float) -> float | None:
        """When the next entry runs out (None: none will), so ``current`` changes then."""
        self.current(now)
        times = [*self._servers.expires.values(), *self._domains.expires.values()]
        return min((t for t in times if t != math.inf), default=None)
