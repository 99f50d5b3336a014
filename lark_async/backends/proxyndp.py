"""Routed IPv6 jobs on a prefix that is on-link on the node's uplink: the node answers
neighbour discovery there for each job's address (proxy NDP), so the site's router and
hosts reach the job as if it were on their LAN. A prefix routed to the node needs none of
it: the node simply forwards.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from ..errors import map_errors
from .netlink import rtnl


def on_link_uplink(addr: ipaddress.IPv6Address) -> str | None:
    """The link of the node's namespace where ``addr`` is on-link (asked before the job's
    veth holds it), or None: the site routes it to the node."""
    with rtnl.Channel() as host, map_errors(f"look up the route to {addr}"):
        index = host.on_link(addr)
        return socket.if_indextoname(index) if index is not None else None


def add(ifname: str, addr: ipaddress.IPv6Address) -> bool:
    """``proxy_ndp`` on the uplink (True when Lark turned it on, for the log) and the job's
    entry."""
    knob = Path(f"/proc/sys/net/ipv6/conf/{ifname}/proxy_ndp")
    with map_errors(f"turn proxy NDP on for {ifname}"):
        changed = knob.read_text().strip() == "0"
        if changed:
            knob.write_text("1\n")
    with rtnl.Channel() as host, map_errors(f"proxy {addr} on {ifname}"):
        host.request(rtnl.proxy_neighbour(rtnl.RTM_NEWNEIGH, host.index(ifname), addr, ifname))
    return changed


def discard(ifname: str, addr: ipaddress.IPv6Address) -> None:
    """Idempotent: an entry (or uplink) already gone is done. ``proxy_ndp`` stays on: other
    jobs' entries may need it, and on its own it answers for nothing."""
    with rtnl.Channel() as host:
        try:
            index = host.index(ifname)
        except OSError:
            return
        with map_errors(f"remove the proxy of {addr} on {ifname}"):
            message = rtnl.proxy_neighbour(rtnl.RTM_DELNEIGH, index, addr, ifname)
            host.request(message, absent_ok=True)
