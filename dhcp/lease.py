"""A lease: what the server granted and when, in the client's monotonic clock."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
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
    # the Ethernet source of the ACK: the next hop towards the server, for unicast frames
    # sent before the address is up (or by a port's client, which never has it)
    server_mac: bytes = b""

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


class Rejected(MalformedMessage):
    """A well-formed reply that breaks an acceptance rule; its text names the rule in fixed
    words (no values), so a client can count drops by rule."""


# RFC 6890's special-purpose blocks that can never be a host's address: "this network"
# (0/8, RFC 1122 section 3.2.1.3), loopback (127/8), multicast (224/4, RFC 5771) and the
# reserved class E with the limited broadcast (240/4, RFC 1112 section 4)
_UNUSABLE = tuple(
    ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")
)


def _prefixlen(mask: bytes) -> int:
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{opt.address(mask, opt.SUBNET_MASK)}").prefixlen
    except (ValueError, MalformedMessage) as exc:
        # RFC 4632 section 5.1: a mask is a prefix; a non-contiguous one means no network
        raise Rejected("a non-contiguous subnet mask") from exc


def _routes(o: Mapping[int, bytes]) -> tuple[opt.Route, ...]:
    """RFC 3442 routes, all or none: a route past 32 bits, with host bits set or cut short
    makes the whole reply one Lark will not act on. Half of the option applied would route
    the job wrongly, and falling back to the router option would let a responder that lies
    about its routes win over the site's server (with which a reply can be counted)."""
    try:
        return opt.classless_routes(o[opt.CLASSLESS_ROUTES]) if opt.CLASSLESS_ROUTES in o else ()
    except MalformedMessage as exc:
        raise Rejected("broken classless routes") from exc


def lease_from_reply(reply: Message, start: float) -> Lease:
    """The lease an OFFER proposes or an ACK grants; Rejected (or MalformedMessage for a
    badly sized option) when Lark will not act on it. Each rule names its RFC.

    T1/T2 default to 0.5 and 0.875 of the lease (RFC 2131 section 4.4.5) and are
    reset to those unless the server's values keep T1 < T2 < lease.
    """
    o = reply.options
    # RFC 2132 section 9.6: one octet. Two message type options concatenate (RFC 3396
    # section 7) into a longer one: a reply that says two things is neither.
    if len(o.get(opt.MESSAGE_TYPE, b"")) != 1:
        raise Rejected("more than one message type")
    # RFC 2131 section 4.3.1, table 3: an OFFER and an ACK MUST carry the server
    # identifier and (an ACK to a REQUEST) the lease time
    if opt.SERVER_ID not in o:
        raise Rejected("no server identifier")
    server = opt.address(o[opt.SERVER_ID], opt.SERVER_ID)
    if opt.LEASE_TIME not in o:
        raise Rejected("no lease time")
    raw = opt.u32(o[opt.LEASE_TIME], opt.LEASE_TIME)
    if raw < MIN_LEASE_S:  # a lease that is over before it is used
        raise Rejected("a lease time of 0")
    address = reply.yiaddr
    if any(address in net for net in _UNUSABLE):
        raise Rejected("an address no host can have")
    lifetime = float("inf") if raw == INFINITE else float(raw)
    sent_t1 = opt.u32(o[opt.RENEWAL_TIME], 58) if opt.RENEWAL_TIME in o else None
    sent_t2 = opt.u32(o[opt.REBINDING_TIME], 59) if opt.REBINDING_TIME in o else None
    t2 = float(sent_t2) if sent_t2 is not None and sent_t2 < lifetime else lifetime * 0.875
    if sent_t1 is not None and sent_t1 < t2:
        t1 = float(sent_t1)
    else:
        t1 = lifetime * 0.5 if lifetime * 0.5 < t2 else t2 * 0.5
    mask = o.get(opt.SUBNET_MASK)
    routes = _routes(o)
    # RFC 3442 section 2: with classless routes the router option is ignored
    routers = () if routes or opt.ROUTER not in o else opt.addresses(o[opt.ROUTER], opt.ROUTER)
    return Lease(
        address=address,
        prefixlen=_prefixlen(mask) if mask is not None else 32,
        server_id=server,
        lifetime_s=lifetime,
        t1_s=t1,
        t2_s=t2,
        start=start,
        routers=routers,
        dns_servers=opt.addresses(o[opt.DNS_SERVERS], 6) if opt.DNS_SERVERS in o else (),
        routes=routes,
        # NVT ASCII with every control character replaced (options.text): what a server
        # names us can reach a log line, a ClassAd or a script only as printable text
        hostname=opt.text(o[opt.HOSTNAME]) if opt.HOSTNAME in o else None,
        domain=opt.text(o[opt.DOMAIN_NAME]) if opt.DOMAIN_NAME in o else None,
        mtu=opt.u16(o[opt.INTERFACE_MTU], 26) if opt.INTERFACE_MTU in o else None,
    )
