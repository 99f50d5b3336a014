"""What an ADVERTISE or a REPLY must hold to be acted on (each rule with its RFC 8415
section), and the Lease a REPLY gives, in the client's monotonic clock."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from . import options as opt
from .errors import Dhcp6Error, MalformedMessage
from .message import Message

Address = ipaddress.IPv6Address


@dataclass(frozen=True)
class LeasedAddress:
    address: Address
    preferred_s: float  # float("inf") for INFINITY (section 7.7)
    valid_s: float


@dataclass(frozen=True)
class Lease:
    """One IA_NA as granted: its addresses, T1/T2 and the server that holds the binding.
    All times are seconds after ``start`` (when the exchange that got it began)."""

    addresses: tuple[LeasedAddress, ...]
    iaid: int
    server_duid: bytes
    t1_s: float
    t2_s: float
    start: float
    dns_servers: tuple[Address, ...] = ()
    domains: tuple[str, ...] = ()

    @property
    def address(self) -> Address:
        return self.addresses[0].address

    @property
    def valid_s(self) -> float:
        """The shortest valid lifetime: the lease (as Lark uses it) ends with its first
        address, rather than carry on with a part of it."""
        return min(a.valid_s for a in self.addresses)

    @property
    def renew_at(self) -> float:
        return self.start + self.t1_s

    @property
    def rebind_at(self) -> float:
        return self.start + self.t2_s

    @property
    def expires_at(self) -> float:
        return self.start + self.valid_s


@dataclass(frozen=True)
class Advert:
    """A valid ADVERTISE (section 18.2.9): its server, preference and offered addresses."""

    server_duid: bytes
    preference: int
    addresses: tuple[Address, ...]


class Rejected(MalformedMessage):
    """A well-formed message that breaks an acceptance rule; its text names the rule in
    fixed words (no values), so a client can count drops by rule."""


class Refused(Dhcp6Error):
    """A server's well-formed "no": a status code other than Success, for the whole message
    or for our IA_NA (section 21.13). The client decides what to do (section 18.2.10)."""

    def __init__(self, status: opt.StatusCode) -> None:
        super().__init__(f"{status.name}: {status.text}" if status.message else status.name)
        self.status = status.status
        self.name = status.name


def _life(seconds: int) -> float:
    return float("inf") if seconds == opt.INFINITY else float(seconds)


def _usable(address: Address) -> bool:
    """RFC 4291 section 2.4: an address a server may assign to an interface; never the
    unspecified, loopback, multicast or link-local one (the link-local one is the host's)."""
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address.is_link_local
    )


# RFC 952 / RFC 1123 section 2.1 host names (and the underscore of service names): a name
# that goes into the job's resolv.conf search line is never more than that
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def check_reply(msg: Message, *, xid: int, client_duid: bytes) -> bytes:
    """Section 16.3 (ADVERTISE) and 16.10 (REPLY): the transaction is ours, a server
    identifier is present, and the client identifier is present and ours. Returns the
    server's DUID; raises Rejected."""
    if msg.xid != xid:
        raise Rejected("another transaction")
    server = msg.get(opt.ServerId)
    if server is None:
        raise Rejected("no server identifier")
    client = msg.get(opt.ClientId)
    if client is None:
        raise Rejected("no client identifier")
    if client.duid != client_duid:
        raise Rejected("another client's identifier")
    return server.duid


def sol_max_rt(msg: Message) -> float | None:
    """Section 21.24: a SOL_MAX_RT outside 60-86400 is ignored."""
    o = msg.get(opt.SolMaxRt)
    return float(o.seconds) if o is not None and 60 <= o.seconds <= 86400 else None


def _refusal(status: opt.StatusCode | None) -> None:
    if status is not None and status.status != opt.Status.SUCCESS:
        raise Refused(status)


def _our_ia(msg: Message, iaid: int) -> opt.IaNa:
    # Section 21.13: a status code in the message's own options answers the whole message
    _refusal(msg.get(opt.StatusCode))
    ours = [ia for ia in msg.all(opt.IaNa) if ia.iaid == iaid]
    if not ours:
        raise Rejected("no IA_NA for our IAID")
    if len(ours) > 1:  # section 12: an IAID names one IA of the client
        raise Rejected("two IA_NA for one IAID")
    ia = ours[0]
    _refusal(ia.status)  # section 21.4: the IA's own status (NoAddrsAvail, NoBinding, ...)
    # Section 21.4: T1 > T2, both non-zero: the client discards the IA_NA
    if ia.t1 and ia.t2 and ia.t1 > ia.t2:
        raise Rejected("T1 after T2")
    return ia


def _addresses(ia: opt.IaNa) -> tuple[LeasedAddress, ...]:
    kept: dict[Address, LeasedAddress] = {}
    why = "no address"
    for a in ia.addresses:
        status = next((o for o in a.options if isinstance(o, opt.StatusCode)), None)
        if status is not None and status.status != opt.Status.SUCCESS:
            why = "an address with a failure status"  # section 21.6: the address's own status
        elif a.valid == 0:
            why = "an address with a valid lifetime of 0"  # 18.2.10.1: no longer the client's
        elif a.preferred > a.valid:
            why = "a preferred lifetime over the valid one"  # 21.6: the client discards it
        elif not _usable(a.address):
            why = "an address no host can have"
        elif a.address not in kept:  # the same address twice counts once
            kept[a.address] = LeasedAddress(a.address, _life(a.preferred), _life(a.valid))
    if not kept:
        raise Rejected(why)
    return tuple(kept.values())


def advert_from(msg: Message, *, iaid: int) -> Advert:
    """Section 18.2.9: an ADVERTISE with no address for us is ignored (Rejected, or Refused
    when it says NoAddrsAvail); its preference defaults to 0 (section 21.8)."""
    addresses = _addresses(_our_ia(msg, iaid))
    server = msg.get(opt.ServerId)
    assert server is not None  # check_reply first
    pref = msg.get(opt.Preference)
    return Advert(server.duid, pref.preference if pref else 0, tuple(a.address for a in addresses))


def lease_from_reply(msg: Message, *, iaid: int, start: float) -> Lease:
    """The lease a REPLY grants (section 18.2.10.1); Rejected when Lark will not act on it,
    Refused when the server says no. Call check_reply first."""
    ia = _our_ia(msg, iaid)
    addresses = _addresses(ia)
    valid = min(a.valid_s for a in addresses)
    preferred = min(a.preferred_s for a in addresses)
    # Sections 14.2 and 21.4: T1/T2 of 0 leave the times to the client: 0.5 and 0.8 of the
    # shortest preferred lifetime (the valid one when every address is deprecated)
    base = preferred or valid
    t1 = _life(ia.t1) if ia.t1 else base * 0.5
    t2 = _life(ia.t2) if ia.t2 else base * 0.8
    # a renewal after the addresses are gone is no renewal: T2, then T1, at most the lease
    t2 = min(t2, valid)
    t1 = min(t1, t2)
    server = msg.get(opt.ServerId)
    assert server is not None  # check_reply first
    dns = msg.get(opt.DnsServers)
    domains = msg.get(opt.DomainList)
    return Lease(
        addresses=addresses,
        iaid=iaid,
        server_duid=server.duid,
        t1_s=t1,
        t2_s=t2,
        start=start,
        # RFC 3646 section 3: the servers in order of preference; none that no host has
        dns_servers=tuple(a for a in dns.addresses if _usable(a) or a.is_link_local) if dns else (),
        domains=tuple(n for n in domains.names if _NAME.fullmatch(n)) if domains else (),
    )
