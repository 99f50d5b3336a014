"""Router solicitation (RFC 4861 section 6.3.7): ask the LAN's IPv6 routers to advertise now.

What a node learned from router advertisements (its default routers, on-link prefixes) is
kept by the kernel with flags no netlink request can set; a copy made by a request is not
recognised, and the next advertisement's default route is refused next to it. So when the
site bridge takes over the LAN device, those routes are left behind, and the bridge (or,
after a rollback, the device) asks the routers to advertise again at once instead of
waiting for their next periodic advertisement.
"""

from __future__ import annotations

import logging
import socket

log = logging.getLogger("lark.ndisc")

ALL_ROUTERS = "ff02::2"
ROUTER_SOLICITATION = bytes([133, 0, 0, 0, 0, 0, 0, 0])  # type, code, checksum, reserved
IPV6_MULTICAST_IF, IPV6_MULTICAST_HOPS = 17, 18


def solicit_routers(ifindex: int, name: str) -> None:
    """One router solicitation out of link ``ifindex`` (the kernel sums it and picks the
    link-local source); a failure is logged, the routers' next advertisement then does."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_HOPS, 255)  # RFC 4861 6.1.1
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_IF, ifindex)
            sock.sendto(ROUTER_SOLICITATION, (ALL_ROUTERS, 0, 0, ifindex))
    except OSError as exc:
        log.warning("could not ask the IPv6 routers to advertise on %s: %s", name, exc.strerror)
