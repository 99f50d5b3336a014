"""Put an address with its routes on a link and take them off: a DHCP lease or a static one.

Used wherever Lark holds an address for an interface (a bridged job's inner
interface, ``dhcp-test --bridge``'s throwaway one). A lease's address must be
on the link for renewals: a server answers a unicast RENEW by ARP for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dhcp.lease import Lease

from ..netlink import NetlinkError, rtnl

ANYWHERE = ipaddress.IPv4Network("0.0.0.0/0")
Route = tuple[ipaddress.IPv4Network, ipaddress.IPv4Address | None]  # gateway None: on-link


@dataclass(frozen=True)
class OnLink:
    """What a link carries: one address with its prefix, and routes through that link."""

    interface: ipaddress.IPv4Interface
    routes: tuple[Route, ...] = ()

    @classmethod
    def static(
        cls, interface: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address | None
    ) -> OnLink:
        return cls(interface, ((ANYWHERE, gateway),) if gateway is not None else ())

    @classmethod
    def from_lease(cls, lease: Lease) -> OnLink:
        """Classless routes (RFC 3442) when given, else a default route via the first router;
        a classless route's gateway 0.0.0.0 means on-link."""
        if lease.routes:
            routes = tuple((n, None if g.is_unspecified else g) for n, g in lease.routes)
        else:
            routes = ((ANYWHERE, lease.routers[0]),) if lease.routers else ()
        return cls(ipaddress.IPv4Interface((lease.address, lease.prefixlen)), routes)


class LeaseOnLink:
    """What of an address is on one interface (through a channel in that interface's netns)."""

    def __init__(self, channel: rtnl.Channel, ifname: str) -> None:
        self.channel = channel
        self.ifname = ifname
        self.index = channel.index(ifname)
        self.current: OnLink | None = None

    def _add(self, c: OnLink) -> list[rtnl.Message]:
        addr = rtnl.address(rtnl.RTM_NEWADDR, self.index, c.interface, self.ifname)
        return [addr, *(rtnl.route(rtnl.RTM_NEWROUTE, n, g, self.index) for n, g in c.routes)]

    def _remove(self, c: OnLink) -> list[rtnl.Message]:
        routes = [rtnl.route(rtnl.RTM_DELROUTE, n, g, self.index) for n, g in c.routes]
        return [*routes, rtnl.address(rtnl.RTM_DELADDR, self.index, c.interface, self.ifname)]

    def apply(self, lease: Lease | None) -> None:
        self.apply_config(OnLink.from_lease(lease) if lease is not None else None)

    def apply_config(self, config: OnLink | None) -> None:
        """Make the link carry ``config`` (None: nothing); all or nothing. The same again (a
        renewal) changes nothing."""
        old = self.current
        if old == config:
            return
        if old is not None:
            self.current = None
            self.channel.request(*self._remove(old), absent_ok=True)
        if config is not None:
            try:
                self.channel.request(*self._add(config))
            except NetlinkError:
                self.channel.request(*self._remove(config), absent_ok=True)
                raise
            self.current = config
