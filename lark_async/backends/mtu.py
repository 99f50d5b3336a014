"""The MTU of a job's veth: as large as the network the job's packets go out to.

A bridge's MTU is the smallest of its ports' unless someone set it: a job port of 1500 on a
9000-byte LAN would drop the bridge, and the node with it, to 1500 while the job runs. So a
bridged job's veth takes the bridge's MTU (one LAN, one frame size: a smaller port would
silently drop the LAN's large frames to the job). A NAT job's packets are routed out of the
node's uplink: its veth takes the uplink's MTU (the default route's device, lowered by the
route's own ``mtu`` metric), at most ``LARK_JOB_MTU`` -- routed, a smaller job MTU is told
to senders by ICMP, so the admin may cap it for paths beyond the LAN.
"""

from __future__ import annotations

import socket
import struct

from . import nodeip
from .netlink import rtnl

RTA_METRICS, RTA_MULTIPATH, RTAX_MTU = 8, 9, 2
DEFAULT_MTU = 1500


def uplink_mtu(channel: rtnl.Channel) -> int | None:
    """The MTU of the node's default route (IPv4's, else IPv6's on an IPv6-only node; main
    table, lowest metric), or None when the node has none."""
    route = nodeip.default_route(channel, socket.AF_INET)
    if route is None:
        route = nodeip.default_route(channel, socket.AF_INET6)
    if route is None:
        return None
    a = rtnl.parse_attrs(route, 12)
    sizes = [
        link.mtu
        for index in _links(a)
        if (link := channel.link_by_index(index)) is not None and link.mtu
    ]
    metric = rtnl.parse_attrs(a.get(RTA_METRICS, b"")).get(RTAX_MTU)
    if metric:
        sizes.append(struct.unpack("=I", metric)[0])
    return min(sizes) if sizes else None


def _links(a: dict[int, bytes]) -> list[int]:
    """The route's link, or each of its nexthops' (multipath)."""
    if rtnl.RTA_OIF in a:
        return [struct.unpack("=i", a[rtnl.RTA_OIF])[0]]
    found, offset, data = [], 0, a.get(RTA_MULTIPATH, b"")  # rtnexthop, attributes
    while offset + 8 <= len(data):
        length, _flags, _hops, index = struct.unpack_from("=HBBi", data, offset)
        found.append(index)
        offset += max(length + (-length % 4), 8)
    return found


def derive_nat_mtu(uplink: int | None, cap: int | None) -> int | None:
    """The uplink's MTU within the admin's cap; None: the kernel's default (1500)."""
    if cap is None:
        return uplink
    return min(uplink or DEFAULT_MTU, cap)
