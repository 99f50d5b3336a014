"""Facts in (past tense, carrying ``now``) and orders out (imperatives) of the sans-IO client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .lease import Lease
from .message import Message

# RFC 8415 section 7.1: every client message goes to All_DHCP_Relay_Agents_and_Servers,
# from the link-local address, UDP 546 -> 547. The client never unicasts: a server's
# UNICAST option (section 21.12) is read and ignored, so UseMulticast never applies.
ALL_DHCP_RELAY_AGENTS_AND_SERVERS = ipaddress.IPv6Address("ff02::1:2")
CLIENT_PORT, SERVER_PORT = 546, 547


# -- inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    now: float


@dataclass(frozen=True)
class PacketReceived:
    """A UDP payload for port 546."""

    now: float
    payload: bytes


@dataclass(frozen=True)
class TimerFired:
    now: float


@dataclass(frozen=True)
class ReleaseRequested:
    now: float


@dataclass(frozen=True)
class DadFailed:
    """Duplicate address detection failed for ``address`` (RFC 4862 section 5.4): the kernel
    marked it dadfailed. The client DECLINEs it (RFC 8415 section 18.2.8)."""

    now: float
    address: ipaddress.IPv6Address


# -- orders -------------------------------------------------------------------


@dataclass(frozen=True)
class Transmit:
    message: Message
    dest: ipaddress.IPv6Address = ALL_DHCP_RELAY_AGENTS_AND_SERVERS


@dataclass(frozen=True)
class LeaseBound:
    lease: Lease


@dataclass(frozen=True)
class LeaseRenewed:
    """The lease goes on; its addresses may differ from the last ones (a REBIND answered by
    another server, a binding re-established after NoBinding): the driver compares."""

    lease: Lease


@dataclass(frozen=True)
class LeaseLost:
    """Stop using the addresses: ``reason`` is expired, released, declined or the status
    name of the server's refusal."""

    lease: Lease
    reason: str


@dataclass(frozen=True)
class GaveUp:
    """No lease within the overall timeout; ``reason`` says, in one line, what was heard."""

    reason: str


@dataclass(frozen=True)
class ReconfigureIgnored:
    """RECONFIGUREs were heard and ignored (RFC 8415 section 18.2.11 needs authentication,
    which Lark has not): for the log, on the 1st, 2nd, 4th, 8th, ... one."""

    count: int


Input = Started | PacketReceived | TimerFired | ReleaseRequested | DadFailed
Action = Transmit | LeaseBound | LeaseRenewed | LeaseLost | GaveUp | ReconfigureIgnored
