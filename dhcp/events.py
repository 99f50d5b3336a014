"""Facts in (past tense, carrying ``now``) and orders out (imperatives) of the sans-IO client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .lease import Lease
from .message import Message

BROADCAST = ipaddress.IPv4Address("255.255.255.255")


# -- inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    now: float


@dataclass(frozen=True)
class PacketReceived:
    """A UDP payload for the client's port; ``src_mac`` is the frame's Ethernet source, when
    the driver read a frame (the next hop for unicast frames to the server)."""

    now: float
    payload: bytes
    src_mac: bytes = b""


@dataclass(frozen=True)
class ArpReceived:
    """An ARP frame heard on the link while the client probes a new lease (RFC 5227)."""

    now: float
    frame: bytes


@dataclass(frozen=True)
class TimerFired:
    now: float


@dataclass(frozen=True)
class ReleaseRequested:
    now: float


@dataclass(frozen=True)
class ConflictDetected:
    """The address being probed is known to be in use without an ARP answer (the driver's
    own host holds it: a probe from inside a bridge never hears that host answer)."""

    now: float


# -- actions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Transmit:
    """Send ``message``; ``dest`` is BROADCAST (raw socket, from 0.0.0.0 or the lease while
    rebinding) or the server (UDP from the leased address)."""

    message: Message
    dest: ipaddress.IPv4Address
    src: ipaddress.IPv4Address
    dst_mac: bytes = b""  # for a unicast sent as a raw frame: the next hop (else broadcast)


@dataclass(frozen=True)
class SendArp:
    """Send an ARP frame: a probe for ``probing`` (RFC 5227 section 2.1.1), or with
    ``probing`` None the announcement once the address is ours (section 2.3)."""

    frame: bytes
    probing: ipaddress.IPv4Address | None


@dataclass(frozen=True)
class AddressInUse:
    """The offered ``address`` was in use (``holder``'s MAC, empty when the driver said so):
    DECLINEd to ``server``, and the client starts over after a wait. For the log."""

    address: ipaddress.IPv4Address
    server: ipaddress.IPv4Address
    holder: bytes


@dataclass(frozen=True)
class LeaseBound:
    lease: Lease


@dataclass(frozen=True)
class LeaseRenewed:
    lease: Lease


@dataclass(frozen=True)
class LeaseLost:
    """Stop using the address: ``reason`` is expired, nak or released."""

    lease: Lease
    reason: str


@dataclass(frozen=True)
class GaveUp:
    """No lease within the overall timeout; ``reason`` says, in one line, what was heard."""

    reason: str


Input = Started | PacketReceived | ArpReceived | TimerFired | ReleaseRequested | ConflictDetected
Action = Transmit | SendArp | AddressInUse | LeaseBound | LeaseRenewed | LeaseLost | GaveUp
