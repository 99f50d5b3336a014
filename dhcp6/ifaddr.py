"""An interface's IPv6 addresses as rtnetlink tells them (pure: bytes in, facts out).

The client speaks from its link-local address (RFC 8415 section 7.1), which is unusable
while duplicate address detection runs (RFC 4862 section 5.4: *tentative*); the driver asks
the kernel (RTM_GETADDR) and listens (RTMGRP_IPV6_IFADDR) until it is usable, and hears
DAD fail for a leased address the caller put on the link. No sockets here.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTMGRP_IPV6_IFADDR = 0x100
AF_INET6 = 10
IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS = 1, 2, 8
IFA_F_OPTIMISTIC, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x04, 0x08, 0x40

_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBi")


@dataclass(frozen=True)
class IfAddr:
    """One IPv6 address of one interface; ``gone`` for an RTM_DELADDR."""

    index: int
    address: ipaddress.IPv6Address
    flags: int
    gone: bool = False

    @property
    def tentative(self) -> bool:
        return bool(self.flags & IFA_F_TENTATIVE)

    @property
    def dad_failed(self) -> bool:
        return bool(self.flags & IFA_F_DADFAILED)

    @property
    def optimistic(self) -> bool:
        """RFC 4429: usable while its DAD runs (the kernel's ``optimistic_dad``)."""
        return bool(self.flags & IFA_F_OPTIMISTIC)

    @property
    def usable(self) -> bool:
        return not (self.gone or self.dad_failed or (self.tentative and not self.optimistic))


def render_dump_request(seq: int) -> bytes:
    """RTM_GETADDR for every IPv6 address (the caller picks its interface's)."""
    body = _IFADDRMSG.pack(AF_INET6, 0, 0, 0, 0)
    return (
        _NLMSGHDR.pack(_NLMSGHDR.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        + body
    )


def parse_addresses(data: bytes) -> tuple[list[IfAddr], bool]:
    """The IPv6 addresses in one netlink datagram, and whether it ends a dump (NLMSG_DONE or
    an error). Anything else (other families, truncated messages) is skipped."""
    found: list[IfAddr] = []
    done = False
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        body = data[offset + _NLMSGHDR.size : offset + length]
        offset += length + (-length % 4)
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            done = True
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and len(body) >= _IFADDRMSG.size:
            family, _prefix, flags, _scope, index = _IFADDRMSG.unpack_from(body)
            if family != AF_INET6:
                continue
            attrs = _attrs(body[_IFADDRMSG.size :])
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is None or len(raw) != 16:
                continue
            if IFA_FLAGS in attrs and len(attrs[IFA_FLAGS]) == 4:
                flags = struct.unpack("=I", attrs[IFA_FLAGS])[0]
            address = ipaddress.IPv6Address(raw)
            found.append(IfAddr(index, address, flags, gone=kind == RTM_DELADDR))
    return found, done


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > len(data):
            break
        out.setdefault(kind & 0x3FFF, data[offset + 4 : offset + length])
        offset += length + (-length % 4)
    return out


def link_local(addresses: list[IfAddr], index: int) -> IfAddr | None:
    """The interface's link-local address: a usable one first, else one still tentative
    (or failed), else None."""
    mine = [a for a in addresses if a.index == index and a.address.is_link_local and not a.gone]
    mine.sort(key=lambda a: (not a.usable, a.dad_failed))
    return mine[0] if mine else None
