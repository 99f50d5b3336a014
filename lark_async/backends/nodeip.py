"""Which IP families the node has where the agent runs: what ``LARK_IPV6 = auto`` and an
IPv6-only node decide by.

A family is the node's when it has a default route in it (main table, unicast) and, for
IPv6, a global address that is usable (not tentative, not failed DAD): a link-local
address alone, which every IPv6 link has, reaches nothing beyond the link.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from .netlink import rtnl

IFA_FLAGS = 8
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40


def default_route(channel: rtnl.Channel, family: int) -> bytes | None:
    """The family's default route in the main table (lowest metric), as the kernel sent it."""
    best: tuple[int, bytes] | None = None
    for body in channel.dump(rtnl.RTM_GETROUTE, family):
        dst_len, table, kind = body[1], body[4], body[7]  # rtmsg
        a = rtnl.parse_attrs(body, 12)
        if rtnl.RTA_TABLE in a:
            table = struct.unpack("=I", a[rtnl.RTA_TABLE])[0]
        if dst_len or table != rtnl.RT_TABLE_MAIN or kind != rtnl.RTN_UNICAST:
            continue
        priority = struct.unpack("=I", a[rtnl.RTA_PRIORITY])[0] if rtnl.RTA_PRIORITY in a else 0
        if best is None or priority < best[0]:
            best = (priority, body)
    return None if best is None else best[1]


def has_global_ipv6(channel: rtnl.Channel) -> bool:
    for body in channel.dump(rtnl.RTM_GETADDR, socket.AF_INET6):
        _family, _plen, flags, scope, _index = struct.unpack_from("=BBBBi", body)
        found = rtnl.parse_attrs(body, 8).get(IFA_FLAGS)
        if found is not None:
            flags = struct.unpack("=I", found)[0]
        if scope == rtnl.RT_SCOPE_UNIVERSE and not flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            return True
    return False


@dataclass(frozen=True)
class NodeFamilies:
    ipv4: bool  # an IPv4 default route
    ipv6: bool  # a global IPv6 address and an IPv6 default route
    why_not6: str = ""  # what it lacks, for the log and for LARK_IPV6 = on's refusal


def node_families(channel: rtnl.Channel) -> NodeFamilies:
    """Three dumps of the namespace the channel is in."""
    ipv4 = default_route(channel, socket.AF_INET) is not None
    lacks = []
    if not has_global_ipv6(channel):
        lacks.append("no global IPv6 address")
    if default_route(channel, socket.AF_INET6) is None:
        lacks.append("no IPv6 default route")
    return NodeFamilies(ipv4, not lacks, " and ".join(lacks))
