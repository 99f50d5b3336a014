"""Put a DHCP lease on a link and take it off again: address, prefix and routes.

Used wherever Lark holds a lease for an interface (a bridged job's inner
interface, ``dhcp-test --bridge``'s throwaway one). The address must be on the
link for renewals: a server answers a unicast RENEW by ARP for that address.
"""

from __future__ import annotations

import ipaddress

from dhcp.lease import Lease

from . import rtnl

ANYWHERE = ipaddress.IPv4Network("0.0.0.0/0")
Route = tuple[ipaddress.IPv4Network, ipaddress.IPv4Address | None]


def lease_routes(lease: Lease) -> list[Route]:
    """Classless routes (RFC 3442) when given, else a default route via the first router.
    A route's gateway 0.0.0.0 means on-link (None)."""
    if lease.routes:
        return [(net, None if gw.is_unspecified else gw) for net, gw in lease.routes]
    return [(ANYWHERE, lease.routers[0])] if lease.routers else []


class LeaseOnLink:
    """What of a lease is on one interface (through a channel in that interface's netns)."""

    def __init__(self, channel: rtnl.Channel, ifname: str) -> None:
        self.channel = channel
        self.ifname = ifname
        self.index = channel.index(ifname)
        self.lease: Lease | None = None

    def _messages(self, kind: str, lease: Lease) -> list[rtnl.Message]:
        iface = ipaddress.IPv4Interface((lease.address, lease.prefixlen))
        if kind == "add":
            addr = rtnl.address(rtnl.RTM_NEWADDR, self.index, iface, self.ifname)
            routes = [
                rtnl.route(rtnl.RTM_NEWROUTE, n, g, self.index) for n, g in lease_routes(lease)
            ]
            return [addr, *routes]
        routes = [rtnl.route(rtnl.RTM_DELROUTE, n, g, self.index) for n, g in lease_routes(lease)]
        return [*routes, rtnl.address(rtnl.RTM_DELADDR, self.index, iface, self.ifname)]

    def apply(self, lease: Lease | None) -> None:
        """Make the link carry ``lease`` (None: nothing). A renewal of the same address with
        the same routes changes nothing."""
        old = self.lease
        if old is not None and lease is not None and _same_on_link(old, lease):
            self.lease = lease
            return
        if old is not None:
            self.lease = None
            self.channel.request(*self._messages("remove", old), absent_ok=True)
        if lease is not None:
            try:
                self.channel.request(*self._messages("add", lease))
            except rtnl.RequestError:  # all or nothing
                self.channel.request(*self._messages("remove", lease), absent_ok=True)
                raise
            self.lease = lease


def _same_on_link(a: Lease, b: Lease) -> bool:
    return (a.address, a.prefixlen, lease_routes(a)) == (b.address, b.prefixlen, lease_routes(b))
