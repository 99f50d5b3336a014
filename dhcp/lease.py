"""A lease: what the server granted and when, in the client's monotonic clock."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import options as opt
from .errors import MalformedMessage
from .message import Message

INFINITE = 0xFFFFFFFF
MIN_LEASE_S = 1  # a shorter lease is absurd: the packet is dropped


@dataclass(frozen=True)
class Lease:
    address: ipaddress.IPv4Address
    prefixlen: int
    server_id: ipaddress.IPv4Address
    lifetime_s: float  # float("inf") for an infinite lease
    t1_s: float
    t2_s: float
    start: float  # monotonic seconds at which the REQUEST that got it was sent
    routers: tuple[ipaddress.IPv4Address, ...] = ()
    dns_servers: tuple[ipaddress.IPv4Address, ...] = ()
    routes: tuple[opt.Route, ...] = ()  # RFC 3442; when present, routers (option 3) are ignored
    hostname: str | None = None
    domain: str | None = None
    mtu: int | None = None

    @property
    def renew_at(self) -> float:
        return self.start + self.t1_s

    @property
    def rebind_at(self) -> float:
        return self.start + self.t2_s

    @property
    def expires_at(self) -> float:
        return self.start + self.lifetime_s

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network((self.address, self.prefixlen), strict=False)


def _prefixlen(mask: bytes) -> int:
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{opt.address(mask, opt.SUBNET_MASK)}").prefixlen
    except ValueError as exc:
        raise MalformedMessage("subnet mask is not contiguous") from exc


def lease_from_ack(ack: Message, start: float) -> Lease:
    """Build a lease from an ACK; raise MalformedMessage for missing or absurd values.

    T1/T2 default to 0.5 and 0.875 of the lease (RFC 2131 section 4.4.5) and are
    reset to those when the server's values are inconsistent (T1 <= T2 <= lease).
    """
    o = ack.options
    if opt.LEASE_TIME not in o:
        raise MalformedMessage("ACK without a lease time")
    if opt.SERVER_ID not in o:
        raise MalformedMessage("ACK without a server identifier")
    raw = opt.u32(o[opt.LEASE_TIME], opt.LEASE_TIME)
    if raw < MIN_LEASE_S:
        raise MalformedMessage(f"lease time {raw} s is absurd")
    lifetime = float("inf") if raw == INFINITE else float(raw)
    sent_t1 = opt.u32(o[opt.RENEWAL_TIME], 58) if opt.RENEWAL_TIME in o else None
    sent_t2 = opt.u32(o[opt.REBINDING_TIME], 59) if opt.REBINDING_TIME in o else None
    t2 = float(sent_t2) if sent_t2 is not None and sent_t2 < lifetime else lifetime * 0.875
    if sent_t1 is not None and sent_t1 < t2:
        t1 = float(sent_t1)
    else:
        t1 = lifetime * 0.5 if lifetime * 0.5 < t2 else t2 * 0.5
    if ack.yiaddr.is_unspecified or ack.yiaddr.is_multicast or ack.yiaddr.is_loopback:
        raise MalformedMessage(f"leased address {ack.yiaddr} is not usable")
    mask = o.get(opt.SUBNET_MASK)
    routes = opt.classless_routes(o[opt.CLASSLESS_ROUTES]) if opt.CLASSLESS_ROUTES in o else ()
    routers = () if routes or opt.ROUTER not in o else opt.addresses(o[opt.ROUTER], opt.ROUTER)
    return Lease(
        address=ack.yiaddr,
        prefixlen=_prefixlen(mask) if mask is not None else 32,
        server_id=opt.address(o[opt.SERVER_ID], opt.SERVER_ID),
        lifetime_s=lifetime,
        t1_s=t1,
        t2_s=t2,
        start=start,
        routers=routers,
        dns_servers=opt.addresses(o[opt.DNS_SERVERS], 6) if opt.DNS_SERVERS in o else (),
        routes=routes,
        hostname=opt.text(o[opt.HOSTNAME]) if opt.HOSTNAME in o else None,
        domain=opt.text(o[opt.DOMAIN_NAME]) if opt.DOMAIN_NAME in o else None,
        mtu=opt.u16(o[opt.INTERFACE_MTU], 26) if opt.INTERFACE_MTU in o else None,
    )
